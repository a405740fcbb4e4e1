"""Every route is classified; every route that shows personal data refuses strangers and outsiders.

:data:`PUBLIC`, :data:`OWN_SESSION`, :data:`NO_PERSONAL_DATA` and :data:`PERSONAL`
together name every route of the app; a new route fails
``test_every_route_is_classified`` until someone decides which it is (and, for
personal data, writes its scope check here).

Then, on a world where the real ingest pipeline stored an F0's passage (alert,
camera crop, ward notifications) and a contact's:

* without a session every non-public route answers 401 (``/api/*``) or a
  redirect to the login page (pages);
* for each personal-data route an *insider* (the role and scope it is for)
  sees the data, proving the route really returns it, and an *outsider* (a
  ward police account of another ward, an investigator scoped elsewhere, a
  role the route is not for) is refused with 403 or gets the same answer with
  the data filtered out, as the route's design says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, select
from starlette.routing import BaseRoute, Mount

from aggregator.auth.audit import LOCAL_TZ
from aggregator.db.schema import Role, citizens, ward_notifications
from contract.token import Keyring, SigningKey
from tests.conftest import Reliability
from tests.fixtures.web import TEST_VENUE, LoggedIn, LoginFactory
from tests.ingest_world import CHECKPOINT, OTHER_CHECKPOINT, OTHER_GATE, World, build_world
from tests.test_web_alerts import CROP, ingest

pytestmark = pytest.mark.reliability

Route = tuple[str, str]  # (method, path template)

PUBLIC: frozenset[Route] = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"),
        ("GET", "/login"),
        ("POST", "/login"),
        ("GET", "/"),  # the login page or the role's home
        ("POST", "/api/auth/token"),
        ("GET", "/khai-bao"),
        ("POST", "/khai-bao"),  # answers the filer's own pass (initials only)
        ("POST", "/api/declarations"),
        ("GET", "/khai-bao/qr.png"),
        ("GET", "/khai-bao/qr.svg"),
        ("GET", "/api/public/wards"),
        ("GET", "/dia-diem/{venue_id}"),  # what a venue poster's QR opens
        ("MOUNT", "/static"),
    }
)
"""Open to anyone; none returns personal data of anybody but the caller."""

OWN_SESSION: frozenset[Route] = frozenset(
    {("GET", "/api/auth/me"), ("DELETE", "/api/auth/token"), ("POST", "/logout")}
)
"""The caller's own session and account."""

NO_PERSONAL_DATA: frozenset[Route] = frozenset(
    {
        ("GET", "/admin"),
        ("GET", "/admin/checkpoints"),
        ("POST", "/admin/checkpoints"),
        ("GET", "/admin/devices"),
        ("POST", "/admin/devices"),
        ("POST", "/admin/devices/broker"),
        ("GET", "/api/admin/checkpoints"),
        ("POST", "/api/admin/checkpoints"),
        ("GET", "/api/admin/devices"),
        ("POST", "/api/admin/devices"),
        ("POST", "/api/admin/broker/sync"),
        ("GET", "/api/wards"),
        ("GET", "/api/live/alerts"),  # ids only; details are fetched (and audited)
        ("GET", "/monitor"),
        ("GET", "/lookup"),
        ("GET", "/api/command/summary"),
        ("GET", "/api/command/checkpoints/{checkpoint_id}"),
        ("GET", "/command"),
        ("GET", "/command/checkpoints/{checkpoint_id}"),
        ("GET", "/declarations/paper"),
        ("GET", "/registry"),
        ("GET", "/api/inbox/counts"),
        ("GET", "/trace"),
        ("GET", "/reports/daily"),
        ("GET", "/api/reports/daily"),
        ("GET", "/api/reports/daily.csv"),
        ("GET", "/api/reports/daily.xlsx"),
        ("GET", "/venues"),
        ("GET", "/venues/new"),
        ("POST", "/venues/new"),
        ("GET", "/venues/{venue_id}"),
        ("GET", "/venues/{venue_id}/poster"),
        ("GET", "/venues/{venue_id}/qr.svg"),
        ("GET", "/venues/{venue_id}/checkin"),
        ("POST", "/venues/{venue_id}/active"),
        ("GET", "/api/venues"),
        ("POST", "/api/venues"),
        ("GET", "/api/venues/{venue_id}"),
        ("PATCH", "/api/venues/{venue_id}"),
    }
)
"""Need a session; show places, counts, devices or forms, never a person."""


@dataclass(frozen=True)
class Check:
    """How a personal-data route is tried: who is inside, who is outside, what they get.

    ``marker`` is text of the personal data the insider must see and the
    outsider must not. ``outsider_gets`` is 403 (refused) or 200/303/422 (the
    same answer with the data filtered out).
    """

    insider: tuple[Role, tuple[str, ...]] | None
    outsider: tuple[Role, tuple[str, ...]]
    marker: str | None = None
    outsider_gets: int = 403
    insider_gets: int = 200
    json: Any = None
    form: dict[str, str] | None = None
    content: bytes | None = None


WARD_70 = ("ward:70",)  # Phường Hoàn Kiếm: the checkpoint's ward and everyone's origin
WARD_4 = ("ward:4",)  # Phường Ba Đình: another ward of Hà Nội
F0_NAME = "Nguyễn Văn F0"
F0_IDENTITY = "001090000003"
PURPOSE = "purpose=điều tra ca F0 số 1"
# Tracing windows are at most 31 days; times without a zone are Vietnam time.
_NOW = datetime.now(LOCAL_TZ)
_MINUTE = "%Y-%m-%dT%H:%M"
WINDOW = f"since={_NOW - timedelta(days=1):{_MINUTE}}&until={_NOW + timedelta(days=1):{_MINUTE}}"
VENUE = {
    "name": "Chợ Hôm (thử)",
    "category": "market",
    "address": "Số 79 phố Huế",
    "ward_code": 70,
    "contact_name": "Trần Văn Chợ",
    "contact_phone": "0243 864 1467",
}
ADMIN = (Role.ADMIN, ())
COMMANDER = (Role.COMMAND_CENTRE, ())
INVESTIGATOR = (Role.INVESTIGATOR, ())
INVESTIGATOR_ELSEWHERE = (Role.INVESTIGATOR, WARD_4)
CHECKPOINT_OFFICER = (Role.CHECKPOINT_OFFICER, WARD_70)
CHECKPOINT_OFFICER_ELSEWHERE = (Role.CHECKPOINT_OFFICER, WARD_4)
WARD_POLICE = (Role.WARD_POLICE, WARD_70)
WARD_POLICE_ELSEWHERE = (Role.WARD_POLICE, WARD_4)
VENUE_MANAGER = (Role.VENUE_MANAGER, (f"checkpoint:{TEST_VENUE}",))
VENUE_MANAGER_ELSEWHERE = (Role.VENUE_MANAGER, (f"checkpoint:{OTHER_CHECKPOINT}",))

PERSONAL: dict[Route, Check] = {
    # The alert monitor: scoped by checkpoint.
    ("GET", "/api/alerts"): Check(
        CHECKPOINT_OFFICER, CHECKPOINT_OFFICER_ELSEWHERE, F0_NAME, outsider_gets=200
    ),
    ("GET", "/api/alerts/{alert_id}"): Check(
        CHECKPOINT_OFFICER, CHECKPOINT_OFFICER_ELSEWHERE, F0_NAME
    ),
    ("GET", "/api/alerts/{alert_id}/crop"): Check(
        CHECKPOINT_OFFICER, CHECKPOINT_OFFICER_ELSEWHERE, "not really a jpeg"
    ),
    ("POST", "/api/alerts/{alert_id}/actions"): Check(
        CHECKPOINT_OFFICER, CHECKPOINT_OFFICER_ELSEWHERE, json={"action": "acknowledge"}
    ),
    # Look-ups are not bound to a place by design (a traveller comes from anywhere): by role.
    ("POST", "/api/lookup/identity"): Check(
        CHECKPOINT_OFFICER, VENUE_MANAGER, F0_NAME, json={"identity_no": F0_IDENTITY}
    ),
    ("POST", "/api/lookup/token"): Check(CHECKPOINT_OFFICER, VENUE_MANAGER, F0_NAME),
    # The ward inbox: filtered to the officer's wards.
    ("GET", "/api/inbox"): Check(WARD_POLICE, WARD_POLICE_ELSEWHERE, F0_NAME, outsider_gets=200),
    ("GET", "/inbox"): Check(WARD_POLICE, WARD_POLICE_ELSEWHERE, F0_NAME, outsider_gets=200),
    ("POST", "/api/inbox/handled"): Check(WARD_POLICE, WARD_POLICE_ELSEWHERE, outsider_gets=200),
    ("POST", "/inbox/handled"): Check(
        WARD_POLICE, WARD_POLICE_ELSEWHERE, insider_gets=303, outsider_gets=303
    ),
    # Tracing: by role, and by checkpoint for a scoped investigator.
    ("GET", "/api/trace/place"): Check(INVESTIGATOR, INVESTIGATOR_ELSEWHERE, F0_NAME),
    ("GET", "/api/trace/place.{fmt}"): Check(INVESTIGATOR, INVESTIGATOR_ELSEWHERE, F0_NAME),
    # A scoped investigator finds only the citizens within its scope (residents of
    # its wards, people who passed its checkpoints): the F0 lives in ward 70 and
    # passed there only, so ward 4's investigator finds nobody and is answered 404
    # for the F0's route and contacts, as for an unknown id. Role refusals are
    # checked in test_scoped_investigator_sees_only_citizens_within_scope.
    ("GET", "/api/trace/citizens"): Check(
        INVESTIGATOR, INVESTIGATOR_ELSEWHERE, F0_NAME, outsider_gets=200
    ),
    ("GET", "/api/trace/route"): Check(
        INVESTIGATOR, INVESTIGATOR_ELSEWHERE, CHECKPOINT, outsider_gets=404
    ),
    ("GET", "/api/trace/route.{fmt}"): Check(
        INVESTIGATOR, INVESTIGATOR_ELSEWHERE, "Chốt Pháp Vân", outsider_gets=404
    ),
    ("GET", "/api/trace/contacts"): Check(
        INVESTIGATOR, INVESTIGATOR_ELSEWHERE, "Nguyễn Văn An", outsider_gets=404
    ),
    ("GET", "/api/trace/contacts.{fmt}"): Check(
        INVESTIGATOR, INVESTIGATOR_ELSEWHERE, "Nguyễn Văn An", outsider_gets=404
    ),
    ("POST", "/api/trace/contacts/mark-f1"): Check(
        (Role.HEALTH_OFFICIAL, ()),
        INVESTIGATOR_ELSEWHERE,
        outsider_gets=404,
        json={"source_citizen_id": 3, "citizen_ids": [2]},
    ),
    # Registry updates: ward police only for their residents.
    ("POST", "/api/registry/status"): Check(
        WARD_POLICE,
        WARD_POLICE_ELSEWHERE,
        F0_IDENTITY,
        json={"identity_no": F0_IDENTITY, "status": "f0", "since": "2026-01-02", "doses": 2},
    ),
    ("POST", "/registry/status"): Check(
        WARD_POLICE,
        WARD_POLICE_ELSEWHERE,
        form={"identity_no": F0_IDENTITY, "status": "f0", "since": "2026-01-02", "doses": "2"},
    ),
    ("POST", "/api/registry/import"): Check(
        WARD_POLICE,
        WARD_POLICE_ELSEWHERE,
        F0_NAME,
        outsider_gets=422,
        content=f"identity_no,status,since,doses\n{F0_IDENTITY},f0,2026-01-02,2\n".encode(),
    ),
    ("POST", "/registry/import"): Check(None, WARD_POLICE_ELSEWHERE, outsider_gets=422),
    # Paper declarations: checkpoint officers and administrators.
    ("POST", "/declarations/paper"): Check(None, VENUE_MANAGER, form={}),
    ("POST", "/api/declarations/paper"): Check(None, VENUE_MANAGER, json={}),
    # Accounts and the audit log: administrators only.
    ("GET", "/api/admin/officers"): Check(ADMIN, COMMANDER, "Người Trong Cuộc"),
    ("POST", "/api/admin/officers"): Check(None, COMMANDER, json={}),
    ("GET", "/api/admin/officers/{officer_id}"): Check(ADMIN, COMMANDER, "Người Trong Cuộc"),
    ("PATCH", "/api/admin/officers/{officer_id}"): Check(None, COMMANDER, json={}),
    ("PUT", "/api/admin/officers/{officer_id}/password"): Check(None, COMMANDER, json={}),
    ("GET", "/api/admin/audit"): Check(ADMIN, COMMANDER, "alert.view"),
    ("GET", "/admin/officers"): Check(ADMIN, COMMANDER, "Người Trong Cuộc"),
    ("POST", "/admin/officers"): Check(None, COMMANDER, form={}),
    ("GET", "/admin/officers/{officer_id}"): Check(ADMIN, COMMANDER, "Người Trong Cuộc"),
    ("POST", "/admin/officers/{officer_id}"): Check(None, COMMANDER, form={}),
    ("POST", "/admin/officers/{officer_id}/password"): Check(None, COMMANDER, form={}),
    ("GET", "/admin/audit"): Check(ADMIN, COMMANDER, "alert.view"),
    # Venues: the day's visitors, and check-ins, only at the manager's venues.
    ("GET", "/api/venues/{venue_id}/passages"): Check(
        VENUE_MANAGER, VENUE_MANAGER_ELSEWHERE, '"passages":[{'
    ),
    ("GET", "/venues/{venue_id}/passages"): Check(VENUE_MANAGER, VENUE_MANAGER_ELSEWHERE),
    ("POST", "/api/venues/{venue_id}/checkins"): Check(
        None, VENUE_MANAGER_ELSEWHERE, json={"token": "KD1:X", "source": "manual"}
    ),
}
"""Routes that return (or change) a person's data, with their scope check."""


def _routes(routes: list[BaseRoute]) -> Iterator[Route]:
    for route in routes:
        # FastAPI keeps included routers as one entry each; their routes are inside.
        candidates = getattr(route, "effective_candidates", None)
        if candidates is not None:
            yield from _routes(candidates())
        elif isinstance(getattr(route, "original_route", route), Mount):
            # A mount inside a router keeps its own path on the original route.
            yield ("MOUNT", getattr(route, "original_route", route).path)
        else:
            for method in sorted(getattr(route, "methods", None) or ()):
                if method != "HEAD":
                    yield (method, str(route.path))  # type: ignore[attr-defined]


def app_routes(app: FastAPI) -> set[Route]:
    """Every (method, path) the app serves."""
    return set(_routes(app.routes))


def test_every_route_is_classified(web_app: FastAPI) -> None:
    served = app_routes(web_app)
    classes = [PUBLIC, OWN_SESSION, NO_PERSONAL_DATA, frozenset(PERSONAL)]
    classified = frozenset().union(*classes)
    assert sum(len(c) for c in classes) == len(classified), "a route is in two classes"
    unclassified = sorted(served - classified)
    assert not unclassified, (
        f"new routes: add each to PUBLIC, OWN_SESSION, NO_PERSONAL_DATA or PERSONAL "
        f"(with its scope check) in {__file__}: {unclassified}"
    )
    assert sorted(classified - served) == [], "classified routes the app no longer serves"


# --- the world -------------------------------------------------------------------------


@dataclass
class Scene:
    """What the routes are tried on."""

    world: World
    alert_id: int
    notification_id: int
    officer_id: int = 0
    venue_id: str = TEST_VENUE


@pytest.fixture
def scene(web_app: FastAPI, web_engine: Engine, signing_key: SigningKey, keyring: Keyring) -> Scene:
    world = build_world(web_engine, signing_key)
    web_app.state.service.verifier.replace_keyring(keyring)
    f0 = world.scan(world.people["f0"].token, crop=CROP)
    contact = world.scan(world.people["an"].token, seen_at=f0.seen_at + timedelta(minutes=2))
    alert_ids = ingest(web_engine, keyring, [f0, contact])
    with web_engine.connect() as conn:
        notification_id = conn.execute(
            select(ward_notifications.c.id).where(
                ward_notifications.c.event_id == f0.event_id,
                ward_notifications.c.ward_code == 70,
            )
        ).scalar_one()
    return Scene(world, alert_ids[0], notification_id)


def _fill(path: str, scene: Scene) -> str:
    values = {
        "alert_id": scene.alert_id,
        "officer_id": scene.officer_id,
        "checkpoint_id": CHECKPOINT,
        "venue_id": scene.venue_id,
        "fmt": "csv",
    }
    for name, value in values.items():
        path = path.replace("{" + name + "}", str(value))
    query = {
        "/api/trace/place": f"checkpoint_id={CHECKPOINT}&{WINDOW}&{PURPOSE}",
        "/api/trace/place.csv": f"checkpoint_id={CHECKPOINT}&{WINDOW}&{PURPOSE}",
        "/api/trace/citizens": f"q={F0_IDENTITY}&{PURPOSE}",
        "/api/trace/route": f"citizen_id=3&{WINDOW}&{PURPOSE}",
        "/api/trace/route.csv": f"citizen_id=3&{WINDOW}&{PURPOSE}",
        "/api/trace/contacts": f"citizen_id=3&{WINDOW}&{PURPOSE}",
        "/api/trace/contacts.csv": f"citizen_id=3&{WINDOW}&{PURPOSE}",
        "/api/registry/import": "dry_run=true",
    }.get(path)
    return f"{path}?{query}" if query else path


def _is_page(path: str) -> bool:
    return not path.startswith("/api/")


def _send(who: LoggedIn | None, client: Any, method: str, url: str, check: Check | None) -> Any:
    body: dict[str, Any] = {}
    if check is not None and check.json is not None:
        body["json"] = check.json
    if check is not None and check.content is not None:
        body["content"] = check.content
    if who is None:
        if check is not None and check.form is not None:
            body["data"] = check.form
        return client.request(method, url, **body)
    headers = {"X-CSRF-Token": who.csrf}
    if check is not None and check.form is not None:
        body["data"] = {"csrf_token": who.csrf, **check.form}
    return who.client.request(method, url, headers=headers, **body)


def test_strangers_get_the_login_and_nothing_else(
    web_app: FastAPI, scene: Scene, client: Any, reliability: Reliability
) -> None:
    """Without a session: 401 for the API, a redirect to the login page for pages."""
    protected = sorted(app_routes(web_app) - PUBLIC)
    wrong = []
    for method, path in protected:
        url = _fill(path, scene)
        answer = _send(None, client, method, url, PERSONAL.get((method, path)))
        if _is_page(path):
            ok = answer.status_code == 303 and answer.headers["location"].startswith("/login")
        else:
            ok = answer.status_code == 401
        if not ok:
            wrong.append(f"{method} {url}: {answer.status_code} {answer.text[:120]}")
    reliability(
        scenario="HTTP without a session: protected routes / refused / served as lost",
        sent=len(protected),
        stored=len(protected) - len(wrong),
        duplicates=0,
        lost=len(wrong),
    )
    assert not wrong, "\n".join(wrong)


LoginBy = Callable[[tuple[Role, tuple[str, ...]]], LoggedIn]


@pytest.fixture
def login_by(login_as: LoginFactory, scene: Scene) -> LoginBy:
    """One logged-in account per (role, scopes), made on first use."""
    made: dict[tuple[Role, tuple[str, ...]], LoggedIn] = {}

    def login(key: tuple[Role, tuple[str, ...]]) -> LoggedIn:
        if key not in made:
            role, scopes = key
            name = "Người Trong Cuộc" if role is Role.ADMIN else "Nguyễn Thị Thử"
            made[key] = login_as(role, scopes=list(scopes), full_name=name)
        return made[key]

    return login


def test_personal_data_stays_within_role_and_scope(
    scene: Scene, login_by: LoginBy, web_engine: Engine, reliability: Reliability
) -> None:
    admin = login_by(ADMIN)
    scene.officer_id = admin.account.id
    # A venue its manager registered (it joins their scope), with one visitor checked in.
    manager = login_by(VENUE_MANAGER)
    registered = manager.send_json("POST", "/api/venues", VENUE)
    assert registered.status_code == 201, registered.text
    scene.venue_id = registered.json()["id"]
    visitor = {"token": scene.world.people["an"].token, "source": "manual"}
    checked_in = manager.send_json("POST", f"/api/venues/{scene.venue_id}/checkins", visitor)
    assert checked_in.status_code in (200, 201), checked_in.text
    token_check = PERSONAL[("POST", "/api/lookup/token")]
    checks = {
        **PERSONAL,
        ("POST", "/api/lookup/token"): Check(
            token_check.insider,
            token_check.outsider,
            token_check.marker,
            json={"token": scene.world.people["f0"].token},
        ),
        ("POST", "/api/inbox/handled"): Check(
            WARD_POLICE,
            WARD_POLICE_ELSEWHERE,
            f'"handled":[{scene.notification_id}]',
            outsider_gets=200,
            json={"ids": [scene.notification_id]},
        ),
        ("POST", "/inbox/handled"): Check(
            WARD_POLICE,
            WARD_POLICE_ELSEWHERE,
            insider_gets=303,
            outsider_gets=303,
            form={"id": str(scene.notification_id)},
        ),
    }
    wrong: list[str] = []
    tried = 0
    # Outsiders first: their refusals must leave the data as the insiders then find it.
    for (method, path), check in checks.items():
        url = _fill(path, scene)
        outsider = login_by(check.outsider)
        answer = _send(outsider, outsider.client, method, url, check)
        tried += 1
        leaked = check.marker is not None and check.marker in answer.text
        if answer.status_code != check.outsider_gets or leaked:
            wrong.append(
                f"outsider {check.outsider} {method} {url}: {answer.status_code}"
                f"{' with the data' if leaked else ''} (expected {check.outsider_gets})"
            )
        if check.outsider_gets == 403 and answer.status_code == 403:
            assert F0_NAME not in answer.text
    assert not _handled(web_engine, scene.notification_id), (
        "an outsider marked another ward's notification handled"
    )
    for (method, path), check in checks.items():
        if check.insider is None:
            continue
        url = _fill(path, scene)
        insider = login_by(check.insider)
        answer = _send(insider, insider.client, method, url, check)
        tried += 1
        missing = check.marker is not None and check.marker not in answer.text
        if answer.status_code != check.insider_gets or missing:
            wrong.append(
                f"insider {check.insider} {method} {url}: {answer.status_code}"
                f"{' without the data' if missing else ''}: {answer.text[:200]}"
            )
    reliability(
        scenario="HTTP personal data: role/scope checks / as designed / leaks as lost",
        sent=tried,
        stored=tried - len(wrong),
        duplicates=0,
        lost=len(wrong),
    )
    assert not wrong, "\n".join(wrong)


def _handled(engine: Engine, notification_id: int) -> bool:
    with engine.connect() as conn:
        at = conn.execute(
            select(ward_notifications.c.handled_at).where(
                ward_notifications.c.id == notification_id
            )
        ).scalar_one()
    return at is not None


def test_scoped_investigator_sees_only_citizens_within_scope(
    scene: Scene, login_by: LoginBy, web_engine: Engine, signing_key: SigningKey, keyring: Keyring
) -> None:
    """Ward 4's investigator finds its temporary residents, not ward 70's F0, until the
    F0 passes a ward-4 checkpoint; refused people cannot be marked F1; ward police
    have no tracing at all."""
    world = scene.world
    elsewhere = login_by(INVESTIGATOR_ELSEWHERE)
    police = login_by(WARD_POLICE)

    def search(q: str) -> list[str]:
        answer = elsewhere.client.get(f"/api/trace/citizens?q={q}&{PURPOSE}")
        assert answer.status_code == 200, answer.text
        return sorted(hit["full_name"] for hit in answer.json())

    # Temporary residents of ward 4 (binh, f0_tam_tru); nobody else of the nine "Nguyễn".
    assert search("nguyen") == ["Nguyễn Văn Binh", "Nguyễn Văn F0_Tam_Tru"]
    assert search(F0_IDENTITY) == []
    for path in ("/api/trace/route", "/api/trace/contacts"):
        answer = elsewhere.client.get(f"{path}?citizen_id=3&{WINDOW}&{PURPOSE}")
        assert answer.status_code == 404 and F0_NAME not in answer.text, answer.text
    an = world.people["an"].citizen_id
    marked = elsewhere.send_json(
        "POST", "/api/trace/contacts/mark-f1", {"source_citizen_id": 3, "citizen_ids": [an]}
    )
    assert marked.status_code == 404, marked.text
    with web_engine.connect() as conn:
        status = conn.execute(select(citizens.c.health_status).where(citizens.c.id == an))
        assert status.scalar_one() == "none"
    assert police.client.get(f"/api/trace/citizens?q=nguyen&{PURPOSE}").status_code == 403

    # The F0 passes ward 4's gate: now within that investigator's scope, route
    # limited to ward 4's checkpoint.
    passed = world.scan(
        world.people["f0"].token, device_id=OTHER_GATE, checkpoint_id=OTHER_CHECKPOINT
    )
    ingest(web_engine, keyring, [passed])
    assert F0_NAME in search(F0_IDENTITY)
    route = elsewhere.client.get(f"/api/trace/route?citizen_id=3&{WINDOW}&{PURPOSE}")
    assert route.status_code == 200, route.text
    assert [stop["checkpoint_id"] for stop in route.json()["stops"]] == [OTHER_CHECKPOINT]
