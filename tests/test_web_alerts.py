"""The alert monitor's API, live stream and manual look-up; the alert data functions.

Alerts are raised by the real ingest pipeline (no MQTT needed) into the web
tests' migrated SQLite database (tests/fixtures/web.py); the data functions
underneath also run on PostgreSQL through the ``engine`` fixture. The live
stream is read over real HTTP from the app served by uvicorn.

The test world (tests/ingest_world.py): checkpoint ``cp-phap-van`` in Phường
Hoàn Kiếm (ward 70, where the web fixtures scope place-bound officers) and
``cp-bac-thang-long`` in Phường Ba Đình (ward 4), out of that scope.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, insert, select

from aggregator.api.app import ROUTERS
from aggregator.api.routes import alerts as alert_routes
from aggregator.api.routes import command as command_routes
from aggregator.api.routes import monitor as monitor_routes
from aggregator.auth.model import Officer, Scope
from aggregator.db.alerts import (
    AlertAction,
    AlertStateError,
    act_on_alert,
    action_updates,
    alert_heads,
    check_note,
    get_alert,
    list_alerts,
    next_status,
)
from aggregator.db.people import VaccinationMark, vaccination_mark
from aggregator.db.schema import (
    AlertStatus,
    HealthStatus,
    Role,
    alert_actions,
    alerts,
    audit_log,
    officers,
)
from aggregator.ingest.control import Received
from aggregator.ingest.pipeline import IngestPipeline
from aggregator.ingest.tokens import TokenVerifier
from aggregator.ingest.validate import Inbound
from aggregator.web.live import LiveHub
from contract.messages import AlertKind, AlertNotice, ScanEvent, encode
from contract.token import Keyring, SigningKey
from contract.topics import alert_topic, scan_topic
from tests.fixtures.web import Account, LoggedIn, LoginFactory, OfficerFactory, ServerFactory
from tests.ingest_world import (
    CHECKPOINT,
    GATES,
    OTHER_CHECKPOINT,
    OTHER_GATE,
    World,
    build_world,
    forge,
)

LIVE_ROUTERS = (alert_routes.router, monitor_routes.router, command_routes.router)
CROP = b"\xff\xd8\xff\xe0 not really a jpeg, but the bytes must come back unchanged \xff\xd9"


def include_live_routes(app: FastAPI) -> None:
    """Serve the live screens' routes (a no-op once app.ROUTERS lists them)."""
    for router in LIVE_ROUTERS:
        if router not in ROUTERS:
            app.include_router(router)


# --- raising alerts through the real pipeline ---------------------------------------


def ingest(engine: Engine, keyring: Keyring, events: Sequence[ScanEvent]) -> list[int]:
    """Store scans as the consumer does; returns the ids of the alerts raised, in order."""
    pipeline = IngestPipeline(engine, TokenVerifier(keyring))
    items = [Inbound(scan_topic(e.device_id), encode(e), datetime.now(UTC)) for e in events]
    outcome = pipeline.store(pipeline.prepare(items))
    assert not outcome.letters, outcome.letters
    return [a.alert_id for a in outcome.result.alerts]


@dataclass
class Scene:
    """The world, with one way to raise each kind of alert."""

    world: World
    engine: Engine
    keyring: Keyring

    def f0(self, *, checkpoint: str = CHECKPOINT, crop: bytes | None = CROP) -> int:
        gate = GATES[0] if checkpoint == CHECKPOINT else OTHER_GATE
        event = self.world.scan(
            self.world.people["f0"].token, device_id=gate, checkpoint_id=checkpoint, crop=crop
        )
        return ingest(self.engine, self.keyring, [event])[0]

    def forged(self, *, checkpoint: str = CHECKPOINT) -> int:
        gate = GATES[1] if checkpoint == CHECKPOINT else OTHER_GATE
        token = forge(self.world.people["an"].token)
        event = self.world.scan(token, device_id=gate, checkpoint_id=checkpoint)
        return ingest(self.engine, self.keyring, [event])[0]


@pytest.fixture
def scene(web_engine: Engine, signing_key: SigningKey, keyring: Keyring) -> Scene:
    return Scene(build_world(web_engine, signing_key), web_engine, keyring)


@pytest.fixture
def app(web_app: FastAPI, scene: Scene, keyring: Keyring) -> FastAPI:
    include_live_routes(web_app)
    # Pass codes typed into the look-up are verified with the service's keyring.
    web_app.state.service.verifier.replace_keyring(keyring)
    return web_app


@pytest.fixture
def officer(app: FastAPI, login_as: LoginFactory) -> LoggedIn:
    """A checkpoint officer scoped to Phường Hoàn Kiếm (cp-phap-van, not cp-bac-thang-long)."""
    return login_as(Role.CHECKPOINT_OFFICER, full_name="Trần Thị Bình")


def audit_rows(engine: Engine, action: str) -> list[Any]:
    with engine.connect() as conn:
        query = select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)
        return list(conn.execute(query))


# --- life cycle rules (pure) ---------------------------------------------------------

_EXPECTED = {
    (AlertStatus.OPEN, AlertAction.ACKNOWLEDGE): AlertStatus.ACKNOWLEDGED,
    (AlertStatus.OPEN, AlertAction.CONFIRM): AlertStatus.ACKNOWLEDGED,
    (AlertStatus.OPEN, AlertAction.RESOLVE): AlertStatus.RESOLVED,
    (AlertStatus.OPEN, AlertAction.FALSE_READ): AlertStatus.RESOLVED,
    (AlertStatus.ACKNOWLEDGED, AlertAction.CONFIRM): AlertStatus.ACKNOWLEDGED,
    (AlertStatus.ACKNOWLEDGED, AlertAction.RESOLVE): AlertStatus.RESOLVED,
    (AlertStatus.ACKNOWLEDGED, AlertAction.FALSE_READ): AlertStatus.RESOLVED,
}


@pytest.mark.parametrize("status", list(AlertStatus))
@pytest.mark.parametrize("action", list(AlertAction))
def test_alert_life_cycle(status: AlertStatus, action: AlertAction) -> None:
    expected = _EXPECTED.get((status, action))
    if expected is None:
        with pytest.raises(AlertStateError, match=status.value):
            next_status(status, action)
    else:
        assert next_status(status, action) is expected


def test_a_resolution_needs_a_note_of_bounded_length() -> None:
    with pytest.raises(ValueError, match="note"):
        check_note(AlertAction.RESOLVE, "   ")
    with pytest.raises(ValueError, match="too long"):
        check_note(AlertAction.FALSE_READ, "x" * 2001)
    assert check_note(AlertAction.RESOLVE, "  đã chuyển y tế  ") == "đã chuyển y tế"
    assert check_note(AlertAction.ACKNOWLEDGE, "") is None


def test_vaccination_marks() -> None:
    assert [vaccination_mark(n) for n in (0, 1, 2, 3)] == [
        VaccinationMark.NONE,
        VaccinationMark.YELLOW,
        VaccinationMark.GREEN,
        VaccinationMark.GREEN,
    ]


# --- data functions on SQLite and PostgreSQL ---------------------------------------------


def _officer_row(engine: Engine) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(officers)
                .values(
                    username="tran-thi-binh",
                    full_name="Trần Thị Bình",
                    password_hash="not used here",
                    role=Role.CHECKPOINT_OFFICER.value,
                )
                .returning(officers.c.id)
            ).scalar_one()
        )


def test_alert_reads_scopes_and_actions(
    engine: Engine, signing_key: SigningKey, keyring: Keyring
) -> None:
    scene = Scene(build_world(engine, signing_key), engine, keyring)
    f0 = scene.f0()
    forged = scene.forged()
    elsewhere = scene.f0(checkpoint=OTHER_CHECKPOINT, crop=None)
    at_ward = Officer(
        id=1, username="x", full_name="x", role=Role.CHECKPOINT_OFFICER,
        scopes=[Scope.parse("ward:70")],
    )  # fmt: skip
    in_hanoi = Officer(
        id=1, username="x", full_name="x", role=Role.COMMAND_CENTRE,
        scopes=[Scope.parse("province:1")],
    )  # fmt: skip
    with engine.connect() as conn:
        mine = list_alerts(conn, scope=at_ward.checkpoint_filter())
        hanoi = list_alerts(conn, scope=in_hanoi.checkpoint_filter())
        forged_only = list_alerts(conn, scope=None, kinds=[AlertKind.FORGED])
        view = get_alert(conn, alert_id=f0)
        forged_view = get_alert(conn, alert_id=forged)
    assert [a.id for a in mine] == [forged, f0]  # newest first, own checkpoint only
    assert [a.id for a in hanoi] == [elsewhere, forged, f0]
    assert [a.id for a in forged_only] == [forged]

    assert view is not None and view.person is not None and view.declaration is not None
    person = scene.world.people["f0"]
    assert (view.kind, view.status, view.checkpoint_name) == (
        AlertKind.F0,
        AlertStatus.OPEN,
        "Chốt Pháp Vân",
    )
    assert (view.device_id, view.has_crop, view.health_status_at_alert) == (
        GATES[0],
        True,
        HealthStatus.F0,
    )
    assert view.person.full_name == "Nguyễn Văn F0"
    assert view.person.identity_no == f"001090{person.citizen_id:06d}"
    assert view.person.date_of_birth.isoformat() == "1990-01-01"
    assert view.person.vaccination is VaccinationMark.GREEN
    assert view.person.health_status is HealthStatus.F0
    assert view.person.permanent_ward is not None
    assert view.person.permanent_ward.name == "Phường Hoàn Kiếm"
    assert view.declaration.id == person.declaration_id
    assert view.declaration.origin_ward is not None
    assert view.declaration.origin_ward.name == "Phường Hoàn Kiếm"
    assert view.declaration.destination_ward is not None
    assert view.declaration.destination_ward.province_name == "Thành phố Hồ Chí Minh"
    # A forged code names someone's declaration: nobody's data is shown for it.
    assert forged_view is not None
    assert (forged_view.person, forged_view.declaration) == (None, None)
    assert forged_view.claimed_declaration_id == scene.world.people["an"].declaration_id

    officer_id = _officer_row(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        confirmed = act_on_alert(
            conn, alert_id=f0, action=AlertAction.CONFIRM, officer_id=officer_id, note=None, at=now
        )
        resolved = act_on_alert(
            conn,
            alert_id=f0,
            action=AlertAction.RESOLVE,
            officer_id=officer_id,
            note="Đã chuyển trạm y tế phường",
            at=now,
        )
    assert confirmed.status is AlertStatus.ACKNOWLEDGED
    assert resolved.status is AlertStatus.RESOLVED
    assert resolved.action.officer is not None
    assert resolved.action.officer.full_name == "Trần Thị Bình"
    with pytest.raises(AlertStateError), engine.begin() as conn:
        act_on_alert(
            conn, alert_id=f0, action=AlertAction.ACKNOWLEDGE, officer_id=officer_id, note=None,
            at=now,
        )  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(
            select(alert_actions.c.action, alert_actions.c.officer_id, alert_actions.c.note)
            .where(alert_actions.c.alert_id == f0)
            .order_by(alert_actions.c.id)
        ).all()
        stored = conn.execute(
            select(alerts.c.status, alerts.c.acknowledged_by, alerts.c.resolved_by).where(
                alerts.c.id == f0
            )
        ).one()
        updates = action_updates(conn, after_id=0)
        heads = alert_heads(conn, after_id=f0, scope=at_ward.checkpoint_filter())
    assert [tuple(r) for r in rows] == [
        ("confirm", officer_id, None),
        ("resolve", officer_id, "Đã chuyển trạm y tế phường"),
    ]
    assert tuple(stored) == ("resolved", officer_id, officer_id)
    assert [(u.alert_id, u.action, u.status) for u in updates] == [
        (f0, AlertAction.CONFIRM, AlertStatus.RESOLVED),
        (f0, AlertAction.RESOLVE, AlertStatus.RESOLVED),
    ]
    assert [h.id for h in heads] == [forged]


# --- JSON API ------------------------------------------------------------------------------


def test_alerts_need_a_login_and_a_monitor_role(
    app: FastAPI, client: Any, login_as: LoginFactory, scene: Scene
) -> None:
    alert_id = scene.f0()
    for path in ("/api/alerts", f"/api/alerts/{alert_id}", f"/api/alerts/{alert_id}/crop"):
        answer = client.get(path)
        assert answer.status_code == 401, path
        assert answer.json()["detail"]["code"] == "not_authenticated"
    investigator = login_as(Role.INVESTIGATOR)
    for path in ("/api/alerts", f"/api/alerts/{alert_id}", f"/api/alerts/{alert_id}/crop"):
        assert investigator.client.get(path).status_code == 403, path
    answer = investigator.send_json(
        "POST", f"/api/alerts/{alert_id}/actions", {"action": "acknowledge"}
    )
    assert answer.status_code == 403
    assert audit_rows(scene.engine, "alert.view") == []


def test_officer_lists_own_checkpoint_alerts_and_the_read_is_audited(
    app: FastAPI, officer: LoggedIn, scene: Scene
) -> None:
    mine = scene.f0()
    scene.f0(checkpoint=OTHER_CHECKPOINT)
    forged = scene.forged()

    answer = officer.client.get("/api/alerts")
    assert answer.status_code == 200
    listed = answer.json()["alerts"]
    assert [a["id"] for a in listed] == [forged, mine]
    first = listed[1]
    assert first["reason"] == "F0 — ca bệnh đã xác nhận"
    assert first["person"]["full_name"] == "Nguyễn Văn F0"
    assert first["declaration"]["destination_ward"]["name"] == "Phường Bến Thành"
    english = officer.client.get("/api/alerts?lang=en").json()["alerts"]
    assert english[1]["reason"] == "F0 — confirmed case"

    only_open_forged = officer.client.get("/api/alerts?status=open&kind=forged").json()
    assert [a["id"] for a in only_open_forged["alerts"]] == [forged]
    assert officer.client.get("/api/alerts?status=nonsense").status_code == 422

    refused = officer.client.get(f"/api/alerts?checkpoint={OTHER_CHECKPOINT}")
    assert refused.status_code == 403
    assert refused.json()["detail"]["code"] == "checkpoint_forbidden"
    assert officer.client.get("/api/alerts?checkpoint=no-such-checkpoint").status_code == 403

    reads = audit_rows(scene.engine, "alert.list")
    # The two lists showing a person; the forged-only list named nobody.
    assert len(reads) == 2
    assert all(r.officer_id == officer.account.id and r.purpose for r in reads)
    assert reads[0].detail["citizen_ids"] == [scene.world.people["f0"].citizen_id]
    assert sorted(reads[0].detail["alert_ids"]) == sorted([mine, forged])


def test_alert_detail_and_crop_within_scope_only(
    app: FastAPI, officer: LoggedIn, scene: Scene
) -> None:
    mine = scene.f0()
    theirs = scene.f0(checkpoint=OTHER_CHECKPOINT)
    no_crop = scene.forged()

    detail = officer.client.get(f"/api/alerts/{mine}")
    assert detail.status_code == 200
    body = detail.json()
    assert body["person"]["identity_no"] == f"001090{scene.world.people['f0'].citizen_id:06d}"
    assert body["person"]["vaccination"] == "green"
    assert body["has_crop"] is True
    crop = officer.client.get(f"/api/alerts/{mine}/crop")
    assert crop.status_code == 200
    assert crop.headers["content-type"] == "image/jpeg"
    assert "no-store" in crop.headers["cache-control"]
    assert crop.content == CROP

    for path in (f"/api/alerts/{theirs}", f"/api/alerts/{theirs}/crop"):
        refused = officer.client.get(path)
        assert refused.status_code == 403, path
        assert refused.json()["detail"]["code"] == "forbidden"
    assert officer.client.get("/api/alerts/999999").status_code == 404
    assert officer.client.get(f"/api/alerts/{no_crop}/crop").status_code == 404

    views = audit_rows(scene.engine, "alert.view")
    assert [(r.officer_id, r.subject) for r in views] == [
        (officer.account.id, f"citizen:{scene.world.people['f0'].citizen_id}")
    ]
    crops = audit_rows(scene.engine, "alert.crop")
    assert [r.subject for r in crops] == [f"alert:{mine}"]


def test_actions_are_recorded_with_the_officer(
    app: FastAPI, officer: LoggedIn, login_as: LoginFactory, scene: Scene
) -> None:
    alert_id = scene.f0()
    theirs = scene.f0(checkpoint=OTHER_CHECKPOINT)
    url = f"/api/alerts/{alert_id}/actions"

    # The cookie session must send its CSRF token with a change.
    assert officer.client.post(url, json={"action": "acknowledge"}).status_code == 403
    ack = officer.send_json("POST", url, {"action": "acknowledge"})
    assert ack.status_code == 200
    assert ack.json()["status"] == "acknowledged"
    assert ack.json()["action"]["officer"]["full_name"] == "Trần Thị Bình"
    twice = officer.send_json("POST", url, {"action": "acknowledge"})
    assert twice.status_code == 409
    assert twice.json()["detail"]["code"] == "wrong_status"

    no_note = officer.send_json("POST", url, {"action": "resolve", "note": "  "})
    assert no_note.status_code == 422
    assert "ghi chú" in no_note.json()["detail"]["message"]
    assert officer.send_json("POST", url, {"action": "shrug"}).status_code == 422
    assert officer.send_json("POST", url, {"action": "resolve", "x": 1}).status_code == 422

    colleague = login_as(Role.CHECKPOINT_OFFICER, full_name="Lê Văn Cường")
    resolved = colleague.send_json("POST", url, {"action": "resolve", "note": "Đã cách ly"})
    assert resolved.status_code == 200
    assert resolved.json()["status"] == "resolved"
    late = officer.send_json("POST", url, {"action": "false_read"})
    assert late.status_code == 409
    assert late.json()["detail"]["status"] == "resolved"

    refused = officer.send_json("POST", f"/api/alerts/{theirs}/actions", {"action": "confirm"})
    assert refused.status_code == 403
    unknown = officer.send_json("POST", "/api/alerts/999999/actions", {"action": "confirm"})
    assert unknown.status_code == 404

    with scene.engine.connect() as conn:
        rows = conn.execute(
            select(alert_actions.c.alert_id, alert_actions.c.action, alert_actions.c.officer_id)
            .order_by(alert_actions.c.id)
        ).all()  # fmt: skip
    assert [tuple(r) for r in rows] == [
        (alert_id, "acknowledge", officer.account.id),
        (alert_id, "resolve", colleague.account.id),
    ]
    history = officer.client.get(f"/api/alerts/{alert_id}").json()
    assert history["status"] == "resolved"
    assert history["acknowledged_by"]["full_name"] == "Trần Thị Bình"
    assert history["resolved_by"]["full_name"] == "Lê Văn Cường"
    assert [a["note"] for a in history["actions"]] == [None, "Đã cách ly"]


# --- manual look-up --------------------------------------------------------------------------


def test_lookup_by_identity_number(
    app: FastAPI, officer: LoggedIn, login_as: LoginFactory, scene: Scene
) -> None:
    person = scene.world.people["f0"]
    number = f"001090{person.citizen_id:06d}"
    found = officer.send_json("POST", "/api/lookup/identity", {"identity_no": number})
    assert found.status_code == 200
    body = found.json()
    assert (body["verdict"]["color"], body["verdict"]["code"]) == ("red", "f0")
    assert body["person"]["full_name"] == "Nguyễn Văn F0"
    assert body["person"]["health_status"] == "F0"
    assert body["declaration"]["id"] == person.declaration_id
    # Spaces and dots as printed on the card are accepted.
    spaced = " ".join(number[i : i + 3] for i in range(0, 12, 3))
    again = officer.send_json("POST", "/api/lookup/identity", {"identity_no": spaced})
    assert again.json()["person"]["citizen_id"] == person.citizen_id
    binh = scene.world.people["binh"]  # one dose: passes, yellow
    yellow = officer.send_json(
        "POST", "/api/lookup/identity", {"identity_no": f"001090{binh.citizen_id:06d}"}
    )
    assert yellow.json()["verdict"]["color"] == "yellow"
    assert yellow.json()["person"]["vaccination"] == "yellow"

    for bad in ("12345", "00109000000a", "0010900000011", ""):
        refused = officer.send_json("POST", "/api/lookup/identity", {"identity_no": bad})
        assert refused.status_code == 422, bad
        assert refused.json()["detail"]["message"].startswith("Số CCCD phải gồm đúng 12 chữ số")
    missing = officer.send_json("POST", "/api/lookup/identity", {"identity_no": "099999999999"})
    assert missing.status_code == 404

    commander = login_as(Role.COMMAND_CENTRE)
    denied = commander.send_json("POST", "/api/lookup/identity", {"identity_no": number})
    assert denied.status_code == 403

    reads = audit_rows(scene.engine, "lookup.identity")
    assert [(r.subject, r.detail["found"]) for r in reads] == [
        (f"citizen:{person.citizen_id}", True),
        (f"citizen:{person.citizen_id}", True),
        (f"citizen:{binh.citizen_id}", True),
        ("identity:099999999999", False),
    ]


def test_lookup_by_pass_code(
    app: FastAPI, client: Any, officer: LoggedIn, login_as: LoginFactory, scene: Scene
) -> None:
    people = scene.world.people
    for path, body in (
        ("/api/lookup/token", {"token": people["an"].token}),
        ("/api/lookup/identity", {"identity_no": "001090000001"}),
    ):
        assert client.post(path, json=body).status_code == 401, path
        commander = login_as(Role.COMMAND_CENTRE)
        assert commander.send_json("POST", path, body).status_code == 403, path

    def check(token: str) -> dict[str, Any]:
        answer = officer.send_json("POST", "/api/lookup/token", {"token": token})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    clear = check(people["an"].token)
    assert (clear["verdict"]["color"], clear["verdict"]["code"]) == ("green", "clear")
    assert clear["person"]["full_name"] == "Nguyễn Văn An"
    assert clear["token_check"] == "ok"
    revoked = check(people["revoked"].token)
    assert (revoked["verdict"]["color"], revoked["verdict"]["code"]) == ("red", "revoked")
    forged = check(forge(people["an"].token))
    assert (forged["verdict"]["code"], forged["person"], forged["declaration_id"]) == (
        "forged",
        None,
        None,
    )
    garbage = check("https://example.com/not-a-pass")
    assert (garbage["verdict"]["color"], garbage["verdict"]["code"]) == ("invalid", "malformed")
    assert garbage["verdict"]["reason"].startswith("Không phải mã thông hành")

    empty = officer.send_json("POST", "/api/lookup/token", {"token": "   "})
    assert empty.status_code == 422
    assert empty.json()["detail"]["code"] == "token"

    reads = audit_rows(scene.engine, "lookup.token")
    assert [r.subject for r in reads] == [
        f"citizen:{people['an'].citizen_id}",
        f"citizen:{people['revoked'].citizen_id}",
    ]


# --- pages ------------------------------------------------------------------------------------


def test_monitor_and_lookup_pages(
    app: FastAPI, client: Any, officer: LoggedIn, login_as: LoginFactory
) -> None:
    page = officer.client.get("/monitor")
    assert page.status_code == 200
    assert "Cảnh báo tại chốt" in page.text
    assert f'value="{CHECKPOINT}"' in page.text
    assert f'value="{OTHER_CHECKPOINT}"' not in page.text  # out of scope: not offered
    assert "monitor.js" in page.text and "<script>" not in page.text
    english = officer.client.get("/monitor?lang=en")
    assert "Checkpoint alerts" in english.text
    lookup = officer.client.get("/lookup")
    assert lookup.status_code == 200
    assert "vendor/jsqr/jsQR.js" in lookup.text
    assert officer.client.get("/static/vendor/jsqr/jsQR.js").status_code == 200

    anonymous = client.get("/monitor")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/login?next=%2Fmonitor")
    assert login_as(Role.HEALTH_OFFICIAL).client.get("/monitor").status_code == 403
    assert login_as(Role.COMMAND_CENTRE).client.get("/lookup").status_code == 403


# --- the live stream over real HTTP ----------------------------------------------------------


@dataclass
class SseEvent:
    """One Server-Sent Event."""

    event: str
    data: dict[str, Any]
    id: str | None


@dataclass
class SseStream:
    """Reads events from an open ``text/event-stream`` response."""

    response: httpx.Response
    lines: Iterator[str] = field(init=False)
    comments: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lines = self.response.iter_lines()

    def next(self, timeout: float = 20.0) -> SseEvent:
        """The next event (comments are kept aside); fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        fields: dict[str, str] = {}
        for line in self.lines:
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            elif "event" in fields:
                return SseEvent(fields["event"], json.loads(fields["data"]), fields.get("id"))
            assert time.monotonic() < deadline, f"no event within {timeout} s"
        raise AssertionError("the stream ended")

    def connected(self) -> None:
        """Wait for the greeting comment: the server listens from here on."""
        for line in self.lines:
            if line.startswith(":") and "kiemdich live" in line:
                return
        raise AssertionError("the stream ended before its greeting")


@pytest.fixture
def served(app: FastAPI, scene: Scene, live_server_factory: ServerFactory) -> tuple[str, LiveHub]:
    """The app over real HTTP, its hub polling the store every 0.1 s."""
    hub = LiveHub(scene.engine, None, poll_s=0.1)
    app.state.live_hub = hub
    return live_server_factory(app), hub


def bearer(base: str, account: Account) -> dict[str, str]:
    answer = httpx.post(
        f"{base}/api/auth/token", json={"username": account.username, "password": account.password}
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_live_stream_pushes_in_scope_alerts_and_resumes_after_a_drop(
    served: tuple[str, LiveHub], make_officer: OfficerFactory, scene: Scene
) -> None:
    base, _hub = served
    officer = make_officer(Role.CHECKPOINT_OFFICER)
    headers = bearer(base, officer)
    url = f"{base}/api/live/alerts"
    with httpx.Client(timeout=httpx.Timeout(30.0)) as http:
        with http.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = SseStream(response)
            stream.connected()
            scene.f0(checkpoint=OTHER_CHECKPOINT)  # not theirs: never sent to them
            first = scene.f0()
            event = stream.next()
            assert (event.event, event.id) == ("alert", str(first))
            assert event.data["kind"] == "f0" and event.data["checkpoint_id"] == CHECKPOINT
            assert "person" not in event.data and "full_name" not in json.dumps(event.data)

        # Disconnected: two alerts are raised meanwhile, then the browser comes back.
        missed = [scene.forged(), scene.f0()]
        with http.stream("GET", url, headers={**headers, "Last-Event-ID": str(first)}) as response:
            stream = SseStream(response)
            replayed = [stream.next() for _ in range(3)]
        # The replay re-reads a few ids below the cursor (alerts committed out of id
        # order on PostgreSQL); the one the screen already had comes again and is
        # skipped there. The other checkpoint's alert never comes.
        assert [e.event for e in replayed] == ["alert"] * 3
        assert [int(e.id or 0) for e in replayed] == [first, *missed]
        assert {e.data["checkpoint_id"] for e in replayed} == {CHECKPOINT}


def test_live_stream_sends_actions_and_notices(
    served: tuple[str, LiveHub], make_officer: OfficerFactory, login_as: LoginFactory,
    scene: Scene,
) -> None:  # fmt: skip
    base, hub = served
    officer = make_officer(Role.CHECKPOINT_OFFICER)
    alert_id = scene.f0()
    with (
        httpx.Client(timeout=httpx.Timeout(30.0)) as http,
        http.stream(
            "GET", f"{base}/api/live/alerts?checkpoint={CHECKPOINT}", headers=bearer(base, officer)
        ) as response,
    ):
        stream = SseStream(response)
        stream.connected()
        colleague = login_as(Role.CHECKPOINT_OFFICER)
        acted = colleague.send_json(
            "POST", f"/api/alerts/{alert_id}/actions", {"action": "confirm"}
        )
        assert acted.status_code == 200
        update = stream.next()
        assert (update.event, update.id) == ("update", None)  # updates do not move the cursor
        assert (update.data["alert_id"], update.data["action"], update.data["status"]) == (
            alert_id,
            "confirm",
            "acknowledged",
        )
        # An alert notice from MQTT (another aggregator process) reaches the stream.
        notice = AlertNotice(
            alert_id=10_000_001,
            event_id=scene.world.scan(scene.world.people["f1"].token).event_id,
            checkpoint_id=CHECKPOINT,
            device_id=GATES[1],
            kind=AlertKind.F1,
            created_at=datetime.now(UTC),
        )
        hub.on_notice(
            Received(alert_topic(CHECKPOINT), encode(notice), datetime.now(UTC), retained=False)
        )
        pushed = stream.next()
        assert (pushed.event, pushed.id, pushed.data["kind"]) == ("alert", "10000001", "f1")
        hub.on_notice(Received(alert_topic(CHECKPOINT), b"{not json", datetime.now(UTC), False))
    assert hub.stats.rejected == 1


def test_live_stream_refusals(served: tuple[str, LiveHub], make_officer: OfficerFactory) -> None:
    base, _hub = served
    url = f"{base}/api/live/alerts"
    assert httpx.get(url).status_code == 401
    investigator = bearer(base, make_officer(Role.INVESTIGATOR))
    assert httpx.get(url, headers=investigator).status_code == 403
    officer = bearer(base, make_officer(Role.CHECKPOINT_OFFICER))
    other = httpx.get(f"{url}?checkpoint={OTHER_CHECKPOINT}", headers=officer)
    assert other.status_code == 403
    assert other.json()["detail"]["code"] == "checkpoint_forbidden"
    bad_cursor = httpx.get(url, headers={**officer, "Last-Event-ID": "abc"})
    assert bad_cursor.status_code == 422
