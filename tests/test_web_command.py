"""The command centre's API and pages: traffic per minute, the day in and out, open alerts,
devices and ingest health, and one checkpoint's page; the traffic data functions.

Passages go through the real ingest pipeline into the web tests' migrated SQLite
database (tests/fixtures/web.py); the rollup queries also run on PostgreSQL. Expected
figures are computed from the times the test chose and the window the answer reports,
so a run across a minute or midnight boundary still checks exact numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, func, select

from aggregator.api.app import ROUTERS
from aggregator.api.routes import alerts as alert_routes
from aggregator.api.routes import command as command_routes
from aggregator.api.routes import monitor as monitor_routes
from aggregator.api.routes.command import STALE_AFTER_S, alert_counts, device_out
from aggregator.db.fleet import DeviceRecord
from aggregator.db.schema import AlertStatus, DeviceDirection, Role, audit_log
from aggregator.db.traffic import (
    Totals,
    local_day_start,
    minute_counts,
    minute_floor,
    per_minute_series,
    totals,
)
from aggregator.ingest.control import Received
from aggregator.ingest.fleet_state import DeviceView
from aggregator.ingest.pipeline import IngestPipeline
from aggregator.ingest.tokens import TokenVerifier
from aggregator.ingest.validate import Inbound
from aggregator.service import AggregatorService
from contract.messages import (
    AlertKind,
    CameraState,
    DeviceState,
    DeviceStatus,
    Direction,
    ScanEvent,
    encode,
)
from contract.token import Keyring, SigningKey
from contract.topics import scan_topic, status_topic
from tests.fixtures.web import LoggedIn, LoginFactory
from tests.ingest_world import CHECKPOINT, GATES, OTHER_CHECKPOINT, OTHER_GATE, World, build_world

LIVE_ROUTERS = (alert_routes.router, monitor_routes.router, command_routes.router)


def include_live_routes(app: FastAPI) -> None:
    """Serve the live screens' routes (a no-op once app.ROUTERS lists them)."""
    for router in LIVE_ROUTERS:
        if router not in ROUTERS:
            app.include_router(router)


def ingest(engine: Engine, keyring: Keyring, events: Sequence[ScanEvent]) -> None:
    pipeline = IngestPipeline(engine, TokenVerifier(keyring))
    items = [Inbound(scan_topic(e.device_id), encode(e), datetime.now(UTC)) for e in events]
    outcome = pipeline.store(pipeline.prepare(items))
    assert not outcome.letters, outcome.letters


def traffic(world: World, now: datetime) -> list[ScanEvent]:
    """Seven passages over the last minutes: five in at Pháp Vân (one F0), two out elsewhere."""
    people = world.people
    at_phap_van = [
        (people["an"].token, 0),
        (people["binh"].token, 2),
        (people["f0"].token, 2),
        (people["f2"].token, 5),
        (people["recovered"].token, 5),
    ]
    events = [
        world.scan(token, device_id=GATES[i % 2], seen_at=now - timedelta(minutes=m))
        for i, (token, m) in enumerate(at_phap_van)
    ]
    events += [
        world.scan(
            people[name].token,
            device_id=OTHER_GATE,
            checkpoint_id=OTHER_CHECKPOINT,
            direction=Direction.OUT,
            seen_at=now - timedelta(minutes=1),
        )
        for name in ("an", "binh")
    ]
    return events


def expected_series(events: Sequence[ScanEvent], start: datetime, minutes: int) -> list[int]:
    out = [0] * minutes
    for e in events:
        index = int((minute_floor(e.seen_at) - start) / timedelta(minutes=1))
        if 0 <= index < minutes:
            out[index] += 1
    return out


@pytest.fixture
def world(web_engine: Engine, signing_key: SigningKey) -> World:
    return build_world(web_engine, signing_key)


@pytest.fixture
def app(web_app: FastAPI, world: World) -> FastAPI:
    include_live_routes(web_app)
    return web_app


def report_status(service: AggregatorService, device_id: str, checkpoint_id: str) -> None:
    """A device's status message as the control link hands it to the fleet view."""
    status = DeviceStatus(
        device_id=device_id,
        checkpoint_id=checkpoint_id,
        state=DeviceState.ONLINE,
        at=datetime.now(UTC),
        software="kd-edge/1.0",
        camera=CameraState.OK,
        fps=14.6,
        outbox_depth=3,
    )
    service.fleet.on_status(
        Received(status_topic(device_id), encode(status), datetime.now(UTC), retained=False)
    )


def audit_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())


# --- pure parts ----------------------------------------------------------------------------


def test_the_day_starts_at_midnight_in_vietnam() -> None:
    # 17:30 UTC is 00:30 the next day in Hà Nội.
    start = local_day_start(datetime(2026, 3, 1, 17, 30, tzinfo=UTC))
    assert start.astimezone(UTC) == datetime(2026, 3, 1, 17, 0, tzinfo=UTC)
    start = local_day_start(datetime(2026, 3, 1, 16, 59, tzinfo=UTC))
    assert start.astimezone(UTC) == datetime(2026, 2, 28, 17, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        local_day_start(datetime(2026, 3, 1, 12, 0))  # naive: refused


def _record(device_id: str, state: str = "unknown") -> DeviceRecord:
    return DeviceRecord(
        id=device_id,
        checkpoint_id=CHECKPOINT,
        lane=0,
        direction=DeviceDirection.IN,
        mqtt_username=device_id,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        last_seen_at=None,
        last_seq=None,
        state=state,
        clock_skew_s=None,
    )


def test_device_health_from_the_fleet_view_or_the_store() -> None:
    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    status = DeviceStatus(
        device_id="gate-1", checkpoint_id=CHECKPOINT, state=DeviceState.ONLINE, at=now,
        fps=14.5, outbox_depth=7, camera=CameraState.OK,
    )  # fmt: skip
    fresh = DeviceView("gate-1", CHECKPOINT, DeviceState.ONLINE, status, now, 0.2)
    silent = DeviceView(
        "gate-1", CHECKPOINT, DeviceState.ONLINE, status,
        now - timedelta(seconds=STALE_AFTER_S + 1), None,
    )  # fmt: skip
    live = device_out(_record("gate-1"), fresh, now)
    assert (live.state, live.stale, live.fps, live.outbox_depth) == ("online", False, 14.5, 7)
    assert device_out(_record("gate-1"), silent, now).stale is True
    never = device_out(_record("gate-2"), None, now)
    assert (never.state, never.stale, never.last_seen_at, never.fps) == (
        "unknown",
        False,
        None,
        None,
    )
    assert device_out(_record("gate-3", "offline"), None, now).state == "offline"


def test_alert_counts_list_every_kind() -> None:
    counts = alert_counts(
        [
            (AlertKind.F0, AlertStatus.OPEN, 2),
            (AlertKind.F0, AlertStatus.ACKNOWLEDGED, 1),
            (AlertKind.FORGED, AlertStatus.OPEN, 4),
        ]
    )
    table = {c.kind: (c.open, c.acknowledged) for c in counts}
    assert table[AlertKind.F0] == (2, 1)
    assert table[AlertKind.FORGED] == (4, 0)
    assert table[AlertKind.F1] == (0, 0)
    assert [c.kind for c in counts] == list(AlertKind)


# --- rollup queries on SQLite and PostgreSQL ------------------------------------------------


def test_minute_counts_and_totals(
    engine: Engine, signing_key: SigningKey, keyring: Keyring
) -> None:
    world = build_world(engine, signing_key)
    now = datetime.now(UTC)
    events = traffic(world, now)
    ingest(engine, keyring, events)
    start = minute_floor(now) - timedelta(minutes=9)
    with engine.connect() as conn:
        counts = minute_counts(conn, checkpoint_ids=[CHECKPOINT, OTHER_CHECKPOINT], since=start)
        found = totals(
            conn, checkpoint_ids=[CHECKPOINT, OTHER_CHECKPOINT], since=now - timedelta(hours=1)
        )
        only_other = totals(conn, checkpoint_ids=[OTHER_CHECKPOINT], since=start)
        nobody = totals(conn, checkpoint_ids=[], since=start)
    series = per_minute_series(counts, start=start, minutes=10)
    mine = [e for e in events if e.checkpoint_id == CHECKPOINT]
    theirs = [e for e in events if e.checkpoint_id == OTHER_CHECKPOINT]
    assert series[CHECKPOINT] == expected_series(mine, start, 10)
    assert series[OTHER_CHECKPOINT] == expected_series(theirs, start, 10)
    assert found[CHECKPOINT] == Totals(passages_in=5, passages_out=0, flagged=1)
    assert found[OTHER_CHECKPOINT] == Totals(passages_in=0, passages_out=2, flagged=0)
    assert only_other == {OTHER_CHECKPOINT: Totals(passages_in=0, passages_out=2, flagged=0)}
    assert nobody == {}


# --- JSON API -----------------------------------------------------------------------------------


def test_summary_needs_a_command_role(app: FastAPI, client: Any, login_as: LoginFactory) -> None:
    answer = client.get("/api/command/summary")
    assert answer.status_code == 401
    assert answer.json()["detail"]["code"] == "not_authenticated"
    for role in (Role.CHECKPOINT_OFFICER, Role.WARD_POLICE, Role.INVESTIGATOR):
        assert login_as(role).client.get("/api/command/summary").status_code == 403, role
    for role in (Role.COMMAND_CENTRE, Role.HEALTH_OFFICIAL, Role.ADMIN):
        assert login_as(role).client.get("/api/command/summary").status_code == 200, role


def test_summary_figures(
    *,
    app: FastAPI,
    login_as: LoginFactory,
    world: World,
    web_engine: Engine,
    keyring: Keyring,
    web_service: AggregatorService,
) -> None:
    now = datetime.now(UTC)
    events = traffic(world, now)
    ingest(web_engine, keyring, events)
    report_status(web_service, GATES[0], CHECKPOINT)
    commander = login_as(Role.COMMAND_CENTRE)
    before = audit_count(web_engine)

    answer = commander.client.get("/api/command/summary")
    assert answer.status_code == 200
    body = answer.json()
    start = datetime.fromisoformat(body["window_start"])
    day_start = datetime.fromisoformat(body["day_start"])
    minutes = body["minutes"]
    today = [e for e in events if e.seen_at >= day_start]
    inbound = [e for e in events if e.direction is Direction.IN]
    outbound = [e for e in events if e.direction is Direction.OUT]
    assert body["per_minute_in"] == expected_series(inbound, start, minutes)
    assert body["per_minute_out"] == expected_series(outbound, start, minutes)
    assert body["today"] == {
        "passages_in": sum(e.direction is Direction.IN for e in today),
        "passages_out": sum(e.direction is Direction.OUT for e in today),
        "flagged": sum(e.token == world.people["f0"].token for e in today),
    }
    kinds = {c["kind"]: c for c in body["alerts_by_kind"]}
    assert (kinds["f0"]["open"], kinds["f1"]["open"]) == (1, 0)

    by_id = {c["id"]: c for c in body["checkpoints"]}
    assert set(by_id) == {CHECKPOINT, OTHER_CHECKPOINT}
    phap_van = by_id[CHECKPOINT]
    assert phap_van["name"] == "Chốt Pháp Vân"
    assert (phap_van["lat"], phap_van["lon"]) == (20.95, 105.84)
    assert phap_van["ward_name"] == "Phường Hoàn Kiếm"
    assert phap_van["unresolved_alerts"] == 1
    assert phap_van["per_minute"] == expected_series(
        [e for e in events if e.checkpoint_id == CHECKPOINT], start, minutes
    )
    assert (phap_van["devices_online"], phap_van["devices_total"]) == (1, 2)

    devices = {d["id"]: d for d in body["devices"]}
    assert set(devices) == {*GATES, OTHER_GATE}
    reporting = devices[GATES[0]]
    assert (reporting["state"], reporting["stale"], reporting["fps"]) == ("online", False, 14.6)
    assert (reporting["outbox_depth"], reporting["camera"]) == (3, "ok")
    assert reporting["seconds_since_seen"] is not None
    assert devices[GATES[1]]["state"] == "unknown"

    ingest_health = body["ingest"]
    assert set(ingest_health) >= {"lag_s", "queue_depth", "connected", "received", "stored"}
    assert ingest_health["connected"] is False  # this test's service never connected
    assert body["poll_s"] == command_routes.POLL_S
    # Counts and device health only: nothing personal was read, nothing to audit.
    assert audit_count(web_engine) == before


def test_summary_stays_within_a_provincial_scope(
    app: FastAPI, login_as: LoginFactory, world: World, web_engine: Engine, keyring: Keyring
) -> None:
    ingest(web_engine, keyring, traffic(world, datetime.now(UTC)))
    saigon = login_as(Role.COMMAND_CENTRE, scopes=["province:79"]).client
    body = saigon.get("/api/command/summary").json()
    assert (body["checkpoints"], body["devices"]) == ([], [])
    assert body["today"] == {"passages_in": 0, "passages_out": 0, "flagged": 0}
    assert sum(c["open"] for c in body["alerts_by_kind"]) == 0
    hanoi = login_as(Role.COMMAND_CENTRE, scopes=["province:1"]).client
    assert len(hanoi.get("/api/command/summary").json()["checkpoints"]) == 2


def test_checkpoint_detail(
    app: FastAPI, login_as: LoginFactory, world: World, web_engine: Engine, keyring: Keyring
) -> None:
    events = traffic(world, datetime.now(UTC))
    ingest(web_engine, keyring, events)
    officer: LoggedIn = login_as(Role.CHECKPOINT_OFFICER)  # Phường Hoàn Kiếm
    answer = officer.client.get(f"/api/command/checkpoints/{CHECKPOINT}")
    assert answer.status_code == 200
    body = answer.json()
    assert body["checkpoint"]["id"] == CHECKPOINT
    assert [d["id"] for d in body["devices"]] == list(GATES)
    assert body["last_hour"] == {"passages_in": 5, "passages_out": 0, "flagged": 1}
    start = datetime.fromisoformat(body["window_start"])
    assert body["per_minute_in"] == expected_series(
        [e for e in events if e.checkpoint_id == CHECKPOINT], start, body["minutes"]
    )
    assert sum(body["per_minute_out"]) == 0
    assert [(a["kind"], a["status"]) for a in body["unresolved"]] == [("f0", "open")]
    assert "person" not in body["unresolved"][0]

    refused = officer.client.get(f"/api/command/checkpoints/{OTHER_CHECKPOINT}")
    assert refused.status_code == 403
    assert refused.json()["detail"]["code"] == "checkpoint_forbidden"
    assert officer.client.get("/api/command/checkpoints/no-such-gate").status_code == 404
    investigator = login_as(Role.INVESTIGATOR).client
    assert investigator.get(f"/api/command/checkpoints/{CHECKPOINT}").status_code == 403
    commander = login_as(Role.COMMAND_CENTRE).client
    other = commander.get(f"/api/command/checkpoints/{OTHER_CHECKPOINT}").json()
    assert other["last_hour"] == {"passages_in": 0, "passages_out": 2, "flagged": 0}


def test_command_pages(app: FastAPI, client: Any, login_as: LoginFactory) -> None:
    commander = login_as(Role.COMMAND_CENTRE).client
    page = commander.get("/command")
    assert page.status_code == 200
    assert "Trung tâm chỉ huy" in page.text
    assert "command.js" in page.text and "<script>" not in page.text
    assert 'href="/command"' in page.text  # in the navigation
    detail = commander.get(f"/command/checkpoints/{CHECKPOINT}")
    assert detail.status_code == 200
    assert "Chốt Pháp Vân" in detail.text and "Phường Hoàn Kiếm" in detail.text
    assert commander.get("/command/checkpoints/no-such-gate").status_code == 404
    officer = login_as(Role.CHECKPOINT_OFFICER).client
    assert officer.get("/command").status_code == 403
    assert officer.get(f"/command/checkpoints/{CHECKPOINT}").status_code == 200
    assert officer.get(f"/command/checkpoints/{OTHER_CHECKPOINT}").status_code == 403
    assert client.get("/command").status_code == 303
