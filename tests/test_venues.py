"""Venues: registration, check-in through the real ingest pipeline, tracing; the API and pages.

Store tests run on SQLite and PostgreSQL (the ``engine`` fixture); the API tests
on the web fixtures' SQLite, and the check-in path once more on PostgreSQL
(:class:`TestApiOnPostgres`). The alert notice a check-in publishes is checked
on a real mosquitto (:class:`TestAlertNotices`).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, func, select

from aggregator.auth import accounts
from aggregator.auth.audit import LOCAL_TZ as LOCAL
from aggregator.auth.model import Officer, Scope
from aggregator.auth.problems import ProblemError
from aggregator.db.alerts import alert_heads
from aggregator.db.fleet import check_device_password, get_device
from aggregator.db.schema import (
    CheckpointKind,
    HealthStatus,
    Role,
    VenueCategory,
    alerts,
    audit_log,
    checkpoint_minute_rollups,
    checkpoints,
    dead_letters,
    device_seq_gaps,
    passages,
    venues,
    ward_notifications,
)
from aggregator.db.tracing import citizen_route, place_passages
from aggregator.db.venues import (
    NO_BROKER_LOGIN,
    CheckInError,
    Venue,
    VenueDetails,
    check_in,
    get_venue,
    list_venues,
    register_venue,
    set_venue_active,
    unregistered_venue_places,
    venue_day,
)
from aggregator.ingest.pipeline import IngestPipeline, assemble
from aggregator.ingest.tokens import TokenVerifier
from aggregator.ingest.validate import Inbound
from aggregator.service import AggregatorService
from aggregator.settings import AggregatorSettings
from aggregator.web.live import LiveHub
from aggregator.web.qr import qr_svg
from contract.ids import new_event_id
from contract.messages import encode
from contract.token import HOUR, Keyring, SigningKey, issue_token
from contract.topics import scan_topic
from contract.vectors import vector_key
from tests.fixtures.db import PgServer, url_string
from tests.fixtures.mqtt import Broker
from tests.fixtures.web import HOAN_KIEM, LoggedIn, LoginFactory, OfficerFactory
from tests.ingest_world import BA_DINH, BEN_THANH, CHECKPOINT, GATES, World, build_world, wait_for

DONG_XUAN = VenueDetails(
    name="Siêu thị Co.opmart Hàng Đào",
    category=VenueCategory.SUPERMARKET,
    address="Số 10 phố Hàng Đào",
    ward_code=HOAN_KIEM,
    lat=21.0335,
    lon=105.8520,
    contact_name="Phạm Thị Quản Lý",
    contact_phone="0912 345 678",
)
HOSPITAL = VenueDetails(
    name="Bệnh viện Bạch Mai",
    category=VenueCategory.HOSPITAL,
    address="78 đường Giải Phóng",
    ward_code=BA_DINH,
    contact_name="Nguyễn Văn Trực",
    contact_phone="+84243869 3731",
)


# --- helpers ------------------------------------------------------------------------------


def make_account(engine: Engine, role: Role, scopes: list[str], name: str = "quan-ly") -> Officer:
    """An officer account in the store, as the request dependencies would see it."""
    with engine.begin() as conn:
        officer_id = accounts.create_officer(
            conn,
            username=f"{name}-{uuid.uuid4().hex[:6]}",
            full_name="Phạm Thị Quản Lý",
            role=role,
            scopes=[Scope.parse(s) for s in scopes],
            password=f"mat-khau-{uuid.uuid4().hex}",
        )
        row = accounts.get_officer(conn, officer_id=officer_id)
    assert row is not None
    return row.officer()


def reload(engine: Engine, officer: Officer) -> Officer:
    """The officer with the scopes the store holds now."""
    with engine.connect() as conn:
        row = accounts.get_officer(conn, officer_id=officer.id)
    assert row is not None
    return row.officer()


def count(conn: Connection, table: Any, *where: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def gate_scan(engine: Engine, pipeline: IngestPipeline, world: World, token: str) -> None:
    """A checkpoint gate's scan, stored as the ingest consumer stores it."""
    event = world.scan(token, device_id=GATES[0], checkpoint_id=CHECKPOINT)
    inbound = Inbound(scan_topic(event.device_id), encode(event), datetime.now(UTC))
    outcome = pipeline.store(assemble([pipeline.prepare_one(inbound)]))
    assert not outcome.letters and len(outcome.result.stored) == 1


def notifications_of(conn: Connection, checkpoint_id: str) -> list[tuple[int, str, int]]:
    rows = conn.execute(
        select(
            ward_notifications.c.ward_code,
            ward_notifications.c.kind,
            ward_notifications.c.citizen_id,
        )
        .join(passages, passages.c.event_id == ward_notifications.c.event_id)
        .where(passages.c.checkpoint_id == checkpoint_id)
    )
    return sorted((r.ward_code, r.kind, r.citizen_id) for r in rows)


@pytest.fixture
def world(engine: Engine, signing_key: SigningKey) -> World:
    return build_world(engine, signing_key)


@pytest.fixture
def pipeline(engine: Engine, keyring: Keyring) -> IngestPipeline:
    return IngestPipeline(engine, TokenVerifier(keyring))


@pytest.fixture
def manager(engine: Engine, world: World) -> Officer:
    # A venue manager needs a scope to exist; the world's gate stands in for an older venue.
    return make_account(engine, Role.VENUE_MANAGER, [f"checkpoint:{CHECKPOINT}"])


@pytest.fixture
def venue(engine: Engine, manager: Officer) -> Venue:
    with engine.begin() as conn:
        return register_venue(conn, details=DONG_XUAN, officer=manager, ip="10.0.0.9")


# --- store: registration --------------------------------------------------------------------


def test_register_makes_a_venue_checkpoint_a_virtual_device_and_a_scope(
    engine: Engine, manager: Officer, venue: Venue
) -> None:
    assert venue.id.startswith("sieu-thi-co-opmart-hang-dao-")
    assert venue.name == DONG_XUAN.name and venue.category is VenueCategory.SUPERMARKET
    assert venue.contact_phone == "0912345678" and venue.active
    assert venue.ward_label == "Phường Hoàn Kiếm, Thành phố Hà Nội"
    with engine.connect() as conn:
        kind = conn.execute(
            select(checkpoints.c.kind).where(checkpoints.c.id == venue.id)
        ).scalar_one()
        device = get_device(conn, device_id=venue.device_id)
        # The virtual device never logs in to the broker.
        assert not check_device_password(conn, device_id=venue.device_id, password="")
        assert not check_device_password(conn, device_id=venue.device_id, password=NO_BROKER_LOGIN)
        audit = conn.execute(
            select(audit_log.c.officer_id, audit_log.c.subject, audit_log.c.ip).where(
                audit_log.c.action == "venue.register"
            )
        ).one()
    assert kind == CheckpointKind.VENUE.value
    assert device is not None and device.checkpoint_id == venue.id and device.last_seq is None
    assert audit == (manager.id, f"checkpoint:{venue.id}", "10.0.0.9")
    # The manager now sees the venue: scopes are read from the store on every request.
    now_scoped = reload(engine, manager)
    assert f"checkpoint:{venue.id}" in [str(s) for s in now_scoped.scopes]
    with engine.connect() as conn:
        assert [v.id for v in list_venues(conn, scope=now_scoped.checkpoint_filter())] == [venue.id]
        assert list_venues(conn, scope=manager.checkpoint_filter()) == []
        assert get_venue(conn, venue_id=venue.id) == venue
        # A provincial account's scope holds its own query on wards.
        for province, expected in ((venue.province_code, [venue.id]), (79, [])):
            provincial = Officer(
                id=0, username="tinh", full_name="Tỉnh", role=Role.COMMAND_CENTRE,
                scopes=[Scope.parse(f"province:{province}")],
            )  # fmt: skip
            found = list_venues(conn, scope=provincial.checkpoint_filter())
            assert [v.id for v in found] == expected


def test_unknown_ward_is_refused_and_an_admin_registers_for_a_manager(
    engine: Engine, manager: Officer
) -> None:
    details = DONG_XUAN.model_copy(update={"ward_code": 999_999})
    with engine.connect() as conn:
        before = count(conn, checkpoints)
    with pytest.raises(ProblemError) as caught, engine.begin() as conn:
        register_venue(conn, details=details, officer=manager)
    assert [(p.field, p.key) for p in caught.value.problems] == [
        ("ward_code", "error.unknown_ward")
    ]
    with engine.connect() as conn:
        assert count(conn, checkpoints) == before
        assert count(conn, venues) == 0
    # An administrator sees every place: the scope goes to the manager named, not to them.
    admin = make_account(engine, Role.ADMIN, [], name="admin")
    with engine.begin() as conn:
        venue = register_venue(conn, details=HOSPITAL, officer=admin, manager_id=manager.id)
    assert venue.contact_phone == "+842438693731" and venue.lat is None
    assert reload(engine, admin).scopes == []
    assert f"checkpoint:{venue.id}" in [str(s) for s in reload(engine, manager).scopes]


def test_an_existing_venue_checkpoint_is_completed_not_duplicated(
    engine: Engine, manager: Officer
) -> None:
    with engine.begin() as conn:
        conn.execute(
            checkpoints.insert().values(
                id="hn-cho-dong-xuan", name="Chợ Đồng Xuân", kind="venue", ward_code=HOAN_KIEM
            )
        )
        pending = unregistered_venue_places(conn)
        assert [p.id for p in pending] == ["hn-cho-dong-xuan"]
        details = DONG_XUAN.model_copy(
            update={"name": "Chợ Đồng Xuân", "category": VenueCategory.MARKET}
        )
        venue = register_venue(conn, details=details, officer=manager, checkpoint_id=pending[0].id)
        assert unregistered_venue_places(conn) == []
        # Twice is refused; a gate is not a venue.
        with pytest.raises(ProblemError, match="đã được đăng ký"):
            register_venue(conn, details=details, officer=manager, checkpoint_id=venue.id)
        with pytest.raises(ProblemError, match="không phải địa điểm"):
            register_venue(conn, details=details, officer=manager, checkpoint_id=CHECKPOINT)
    assert venue.id == "hn-cho-dong-xuan" and venue.device_id == "hn-cho-dong-xuan-web"
    assert venue.category is VenueCategory.MARKET and venue.lat == DONG_XUAN.lat


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"contact_phone": "12345"}, "venue.error.phone"),
        ({"contact_phone": "0912 34"}, "venue.error.phone"),
        ({"name": " x "}, "venue.error.name"),
        ({"address": "số"}, "venue.error.address"),
        ({"lat": 21.0, "lon": None}, "error.coordinates_pair"),
        ({"lat": 91.0, "lon": 105.0}, "error.lat"),
        ({"category": "casino"}, "enum"),
    ],
)
def test_venue_details_are_validated_with_message_keys(change: dict[str, Any], key: str) -> None:
    with pytest.raises(ValidationError) as caught:
        VenueDetails.model_validate({**DONG_XUAN.model_dump(), **change})
    assert caught.value.errors()[0]["type"] == key


# --- store: check-in --------------------------------------------------------------------------


def test_f0_at_a_venue_raises_what_a_checkpoint_passage_raises(
    engine: Engine, pipeline: IngestPipeline, world: World, venue: Venue
) -> None:
    f0 = world.people["f0_tam_tru"]  # temporary residence in Ba Đình: notified too
    result = check_in(engine, pipeline, venue=venue, token=f0.token)
    gate_scan(engine, pipeline, world, f0.token)
    assert result.color.value == "red" and result.code.value == "f0"
    assert [
        a.accepted.decision.alert.value for a in result.alerts if a.accepted.decision.alert
    ] == ["f0"]
    with engine.connect() as conn:
        raised = {
            row.checkpoint_id: row
            for row in conn.execute(
                select(alerts.c.checkpoint_id, alerts.c.kind, alerts.c.citizen_id,
                       alerts.c.health_status, alerts.c.detail)
            )
        }  # fmt: skip
        at_venue = notifications_of(conn, venue.id)
        at_gate = notifications_of(conn, CHECKPOINT)
        rollup = conn.execute(
            select(checkpoint_minute_rollups.c.passages, checkpoint_minute_rollups.c.flagged).where(
                checkpoint_minute_rollups.c.checkpoint_id == venue.id
            )
        ).one()
        stored = conn.execute(
            select(passages.c.device_id, passages.c.seq, passages.c.verdict, passages.c.citizen_id)
            .where(passages.c.checkpoint_id == venue.id)
        ).one()  # fmt: skip
    venue_alert, gate_alert = raised[venue.id], raised[CHECKPOINT]
    assert (venue_alert.kind, venue_alert.citizen_id, venue_alert.health_status) == (
        gate_alert.kind, gate_alert.citizen_id, gate_alert.health_status
    ) == ("f0", f0.citizen_id, "F0")  # fmt: skip
    assert venue_alert.detail["device_id"] == venue.device_id
    assert at_venue == at_gate == sorted(
        [(HOAN_KIEM, "departure", f0.citizen_id), (BEN_THANH, "arrival", f0.citizen_id),
         (BA_DINH, "alert", f0.citizen_id)]
    )  # fmt: skip
    assert tuple(rollup) == (1, 1)
    assert tuple(stored) == (venue.device_id, 1, "red", f0.citizen_id)
    # Codes that are not a known person's pass raise the alerts a gate raises too.
    start = int(datetime.now(UTC).timestamp()) - HOUR
    forged = issue_token(
        vector_key(2), declaration_id=77, issued_at=start, expires_at=start + HOUR * 5
    )
    unknown = issue_token(
        world.key, declaration_id=4_242, issued_at=start, expires_at=start + HOUR * 5
    )
    results = [check_in(engine, pipeline, venue=venue, token=t) for t in (forged, unknown)]
    assert [(r.color.value, r.code.value) for r in results] == [
        ("invalid", "forged"), ("invalid", "unknown_declaration")
    ]  # fmt: skip
    with engine.connect() as conn:
        kinds = sorted(
            conn.execute(select(alerts.c.kind).where(alerts.c.checkpoint_id == venue.id)).scalars()
        )
    assert kinds == ["f0", "forged", "unknown_citizen"]


def test_check_in_is_idempotent_numbered_and_deduped(
    engine: Engine, pipeline: IngestPipeline, world: World, venue: Venue
) -> None:
    now = datetime.now(UTC)
    event_id = new_event_id()
    an, binh = world.people["an"], world.people["binh"]
    first = check_in(engine, pipeline, venue=venue, token=an.token, event_id=event_id, now=now)
    retried = check_in(engine, pipeline, venue=venue, token=an.token, event_id=event_id, now=now)
    assert (first.color.value, first.seq, first.duplicate) == ("green", 1, False)
    assert (retried.event_id, retried.seq, retried.color, retried.duplicate) == (
        event_id, 1, first.color, True
    )  # fmt: skip
    # The same pass again a moment later is the same visit (the camera sees a phone twice).
    again = check_in(engine, pipeline, venue=venue, token=an.token, now=now + timedelta(seconds=5))
    assert again.repeat and again.event_id == event_id and not again.alerts
    second = check_in(engine, pipeline, venue=venue, token=binh.token, now=now)
    later = check_in(engine, pipeline, venue=venue, token=an.token, now=now + timedelta(seconds=40))
    assert (second.seq, second.color.value) == (2, "yellow")  # one dose
    assert (later.seq, later.repeat) == (3, False)
    with engine.connect() as conn:
        assert count(conn, passages, passages.c.checkpoint_id == venue.id) == 3
        assert get_device(conn, device_id=venue.device_id).last_seq == 3  # type: ignore[union-attr]
        assert count(conn, device_seq_gaps) == 0
        assert count(conn, dead_letters) == 0


def test_check_in_refusals_store_nothing(
    engine: Engine, pipeline: IngestPipeline, world: World, venue: Venue, manager: Officer
) -> None:
    an = world.people["an"]
    for text in ("https://example.com/dia-diem/x", "", "KD1:" + "A" * 500):
        with pytest.raises(CheckInError) as caught:
            check_in(engine, pipeline, venue=venue, token=text)
        assert caught.value.code == "not_a_pass"
    gate_scan(engine, pipeline, world, an.token)
    with engine.connect() as conn:
        gate_event = conn.execute(
            select(passages.c.event_id).where(passages.c.checkpoint_id == CHECKPOINT)
        ).scalar_one()
    with pytest.raises(CheckInError) as caught:
        check_in(engine, pipeline, venue=venue, token=an.token, event_id=gate_event)
    assert caught.value.code == "event_id_taken"
    with engine.begin() as conn:
        assert set_venue_active(conn, venue_id=venue.id, active=False, officer=manager)
        assert not set_venue_active(conn, venue_id=CHECKPOINT, active=False, officer=manager)
        closed = get_venue(conn, venue_id=venue.id)
    assert closed is not None and not closed.active
    with pytest.raises(CheckInError) as caught:
        check_in(engine, pipeline, venue=closed, token=an.token)
    assert caught.value.code == "venue_inactive"
    with engine.connect() as conn:
        assert count(conn, passages, passages.c.checkpoint_id == venue.id) == 0
        assert get_device(conn, device_id=venue.device_id).last_seq is None  # type: ignore[union-attr]


def test_concurrent_check_ins_get_distinct_sequence_numbers(
    engine: Engine, keyring: Keyring, world: World, venue: Venue
) -> None:
    tokens = [p.token for p in world.people.values()]
    errors: list[BaseException] = []

    def visit(token: str) -> None:
        try:
            # Each thread its own pipeline, as each web process has its own.
            check_in(
                engine, IngestPipeline(engine, TokenVerifier(keyring)), venue=venue, token=token
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=visit, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with engine.connect() as conn:
        seqs = sorted(
            conn.execute(
                select(passages.c.seq).where(passages.c.checkpoint_id == venue.id)
            ).scalars()
        )
    assert seqs == list(range(1, len(tokens) + 1))


def test_tracing_finds_the_visitor_at_the_venue(
    engine: Engine, pipeline: IngestPipeline, world: World, venue: Venue
) -> None:
    now = datetime.now(UTC)
    f0, an = world.people["f0"], world.people["an"]
    check_in(engine, pipeline, venue=venue, token=f0.token, now=now - timedelta(minutes=3))
    check_in(engine, pipeline, venue=venue, token=an.token, now=now)
    with engine.connect() as conn:
        page = place_passages(
            conn,
            checkpoint_id=venue.id,
            since=now - timedelta(hours=1),
            until=now + timedelta(minutes=1),
        )
        route = citizen_route(
            conn,
            citizen_id=an.citizen_id,
            since=now - timedelta(hours=1),
            until=now + timedelta(minutes=1),
        )
        day = venue_day(conn, checkpoint_id=venue.id, day=now.astimezone(LOCAL).date())
    assert [(h.full_name, h.health_status) for h in page.hits] == [
        ("Nguyễn Văn F0", HealthStatus.F0), ("Nguyễn Văn An", HealthStatus.NONE)
    ]  # fmt: skip
    assert route is not None
    assert [(s.checkpoint_id, s.checkpoint_kind) for s in route.stops] == [
        (venue.id, CheckpointKind.VENUE)
    ]
    assert [(p.initials, p.verdict.value, p.seq) for p in day.passages] == [
        ("N.V.A.", "green", 2), ("N.V.F.", "red", 1)
    ]  # fmt: skip
    assert {c.value: n for c, n in day.counts.items()} == {"green": 1, "red": 1}


# --- API and pages (SQLite) -------------------------------------------------------------------


@pytest.fixture
def scene(web_engine: Engine, signing_key: SigningKey) -> World:
    return build_world(web_engine, signing_key)


@pytest.fixture
def app(web_app: FastAPI, scene: World, keyring: Keyring) -> FastAPI:
    web_app.state.service.verifier.replace_keyring(keyring)
    return web_app


REGISTRATION = {
    "name": "Bến xe Giáp Bát",
    "category": "bus_station",
    "address": "Số 6 đường Giải Phóng",
    "ward_code": HOAN_KIEM,
    "contact_name": "Trần Văn Bến",
    "contact_phone": "0243 864 1467",
}


def register(me: LoggedIn, **change: Any) -> Any:
    return me.send_json("POST", "/api/venues", {**REGISTRATION, **change})


def audits(engine: Engine, action: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(audit_log.c.officer_id, audit_log.c.subject, audit_log.c.purpose,
                       audit_log.c.detail)
                .where(audit_log.c.action == action).order_by(audit_log.c.id)
            )
        )  # fmt: skip


def test_api_register_list_get_and_scope(app: FastAPI, login_as: LoginFactory) -> None:
    me = login_as(Role.VENUE_MANAGER)
    created = register(me)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["category_label"] == "Bến xe" and body["contact_phone"] == "02438641467"
    assert body["public_url"] == f"http://testserver/dia-diem/{body['id']}"
    listed = me.client.get("/api/venues").json()
    assert [v["id"] for v in listed] == [body["id"]]
    assert me.client.get(f"/api/venues/{body['id']}").json()["name"] == "Bến xe Giáp Bát"
    english = me.client.get(f"/api/venues/{body['id']}?lang=en").json()
    assert english["category_label"] == "Bus station"
    # Problems come back per field, in both languages.
    huge = register(me, ward_code=2**70)
    assert huge.status_code == 422 and huge.json()["detail"][0]["loc"][-1] == "ward_code"
    bad = register(me, contact_phone="123", ward_code=999_999)
    assert bad.status_code == 422
    assert {e["loc"][-1] for e in bad.json()["detail"]} == {"contact_phone"}
    unknown_ward = register(me, ward_code=999_999)
    assert unknown_ward.status_code == 422
    assert "Không có phường/xã" in unknown_ward.json()["detail"][0]["msg"]
    # Only an administrator names another manager.
    refused = register(me, manager_username="someone")
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["type"] == "venue.error.manager_admin_only"


def test_an_admin_registers_for_a_manager_who_then_sees_it(
    app: FastAPI, login_as: LoginFactory, make_officer: OfficerFactory
) -> None:
    manager = make_officer(Role.VENUE_MANAGER)
    admin = login_as(Role.ADMIN)
    missing = register(admin, manager_username="khong-co-ai")
    assert (
        missing.status_code == 422 and missing.json()["detail"][0]["type"] == "venue.error.manager"
    )
    created = register(admin, manager_username=manager.username.upper())
    assert created.status_code == 201, created.text
    seen = login_as(manager).client.get("/api/venues").json()
    assert [v["id"] for v in seen] == [created.json()["id"]]
    assert '<a href="/venues" aria-current="page">' in admin.client.get("/venues").text


def test_form_registers_and_the_list_shows_it(app: FastAPI, login_as: LoginFactory) -> None:
    me = login_as(Role.VENUE_MANAGER)
    page = me.client.get("/venues/new")
    assert page.status_code == 200 and "Đăng ký địa điểm quét mã" in page.text
    assert 'name="manager_username"' not in page.text
    wrong = me.post_form("/venues/new", {**REGISTRATION, "ward_code": "", "contact_phone": "1"})
    assert wrong.status_code == 422
    assert "Số điện thoại Việt Nam" in wrong.text and "Bắt buộc nhập." in wrong.text
    # Without JavaScript a typed ward name with one match is taken.
    done = me.post_form("/venues/new", {**REGISTRATION, "ward_code": "", "ward_q": "hoan kiem"})
    assert done.status_code == 303 and done.headers["location"].startswith("/venues?created=")
    listing = me.client.get(done.headers["location"])
    assert "Đã đăng ký Bến xe Giáp Bát" in listing.text
    assert "Phường Hoàn Kiếm" in listing.text
    assert '<a href="/venues" aria-current="page">' in listing.text  # the navigation entry
    # The fixture's venue manager scope holds a venue checkpoint without registration.
    assert "Chợ Đồng Xuân (thử)" in listing.text and "Thiết lập" in listing.text


def test_completing_a_venue_checkpoint_through_the_form(
    app: FastAPI, login_as: LoginFactory, web_engine: Engine
) -> None:
    me = login_as(Role.VENUE_MANAGER)  # scoped to the fixture's test venue checkpoint
    venue_id = me.account.scopes[0].split(":", 1)[1]
    form = me.client.get(f"/venues/new?checkpoint={venue_id}")
    assert form.status_code == 200 and "Hoàn tất đăng ký" in form.text
    assert me.client.get("/venues/new?checkpoint=cp-phap-van").status_code == 403
    done = me.post_form(
        "/venues/new", {**REGISTRATION, "name": "Chợ Đồng Xuân", "category": "market",
                        "checkpoint_id": venue_id}
    )  # fmt: skip
    assert done.status_code == 303 and done.headers["location"] == f"/venues?created={venue_id}"
    stolen = me.send_json("POST", "/api/venues", {**REGISTRATION, "checkpoint_id": "cp-phap-van"})
    assert stolen.status_code == 422
    assert stolen.json()["detail"][0]["type"] == "venue.error.not_a_venue"


def test_check_in_api_answers_the_door_without_health_reasons(
    app: FastAPI, login_as: LoginFactory, scene: World, web_engine: Engine
) -> None:
    me = login_as(Role.VENUE_MANAGER)
    venue_id = register(me).json()["id"]
    url = f"/api/venues/{venue_id}/checkins"
    hub = LiveHub(web_engine)
    hub.prime()
    event_id = str(new_event_id())
    red = me.send_json("POST", url, {"token": scene.people["f0"].token, "event_id": event_id,
                                    "source": "camera"})  # fmt: skip
    assert red.status_code == 200, red.text
    answer = red.json()
    assert (answer["color"], answer["headline"], answer["code"]) == ("red", "Không được vào", None)
    assert "F0" not in answer["detail"] and answer["seq"] == 1 and answer["event_id"] == event_id
    again = me.send_json("POST", url, {"token": scene.people["f0"].token, "event_id": event_id})
    assert again.json()["duplicate"] and again.json()["seq"] == 1
    green = me.send_json("POST", url + "?lang=en", {"token": scene.people["an"].token})
    assert (green.json()["color"], green.json()["headline"]) == ("green", "Come in")
    expired_start = int(datetime.now(UTC).timestamp()) - 10 * HOUR
    forged = issue_token(
        vector_key(2), declaration_id=9, issued_at=expired_start, expires_at=expired_start + HOUR
    )
    bad = me.send_json("POST", url, {"token": forged}).json()
    assert (bad["color"], bad["code"], bad["detail"]) == ("invalid", "forged", "Mã giả mạo")
    # The monitor learns of the venue's alerts like any (here from its database poll).
    hub.poll_once()
    assert hub.stats.polled_alerts == 2
    admin = login_as(Role.ADMIN)
    listed = admin.client.get("/api/alerts", params={"checkpoint_id": venue_id}).json()["alerts"]
    assert sorted(a["kind"] for a in listed) == ["f0", "forged"]
    f0_id = scene.people["f0"].citizen_id
    with web_engine.connect() as conn:
        # The F0's wards of departure and arrival, as for a gate's passage.
        assert count(conn, ward_notifications, ward_notifications.c.citizen_id == f0_id) == 2


def test_check_in_api_refuses_bad_input_clearly(
    app: FastAPI, login_as: LoginFactory, scene: World, web_engine: Engine
) -> None:
    me = login_as(Role.VENUE_MANAGER)
    venue_id = register(me).json()["id"]
    url = f"/api/venues/{venue_id}/checkins"
    not_a_pass = me.send_json("POST", url, {"token": "https://example.com/x"})
    assert not_a_pass.status_code == 422 and not_a_pass.json()["detail"]["code"] == "not_a_pass"
    v4 = me.send_json(
        "POST", url, {"token": scene.people["an"].token, "event_id": str(uuid.uuid4())}
    )
    assert v4.status_code == 422 and "UUID" in v4.text
    extra = me.send_json("POST", url, {"token": scene.people["an"].token, "seq": 5})
    assert extra.status_code == 422
    closed = me.send_json("PATCH", f"/api/venues/{venue_id}", {"active": False})
    assert closed.status_code == 200 and closed.json()["active"] is False
    refused = me.send_json("POST", url, {"token": scene.people["an"].token})
    assert refused.status_code == 409 and refused.json()["detail"]["code"] == "venue_inactive"
    assert "đang đóng" in refused.json()["detail"]["message"]
    assert me.send_json("PATCH", f"/api/venues/{venue_id}", {"active": True}).json()["active"]
    with web_engine.connect() as conn:
        assert count(conn, passages) == 0
        actions = [a for a, in conn.execute(
            select(audit_log.c.action).where(audit_log.c.action.like("venue.%"))
            .order_by(audit_log.c.id)
        )]  # fmt: skip
    assert actions == ["venue.register", "venue.deactivate", "venue.activate"]


def test_keyring_is_loaded_from_the_configured_file_or_refused(
    *,
    web_app: FastAPI,
    scene: World,
    login_as: LoginFactory,
    keyring: Keyring,
    web_engine: Engine,
) -> None:
    me = login_as(Role.VENUE_MANAGER)
    venue_id = register(me).json()["id"]
    url = f"/api/venues/{venue_id}/checkins"
    # No keyring file: every code would look forged, so nothing is checked in.
    missing = me.send_json("POST", url, {"token": scene.people["an"].token})
    assert missing.status_code == 503 and missing.json()["detail"]["code"] == "keyring_unavailable"
    keyring.save(web_app.state.service.settings.keyring_path)
    loaded = me.send_json("POST", url, {"token": scene.people["an"].token})
    assert loaded.status_code == 200 and loaded.json()["color"] == "green"
    with web_engine.connect() as conn:
        assert count(conn, passages) == 1 and count(conn, alerts) == 0


def test_passages_are_listed_with_initials_and_audited(
    app: FastAPI, login_as: LoginFactory, scene: World, web_engine: Engine
) -> None:
    me = login_as(Role.VENUE_MANAGER)
    venue_id = register(me).json()["id"]
    for name in ("an", "f0", "binh"):
        me.send_json(
            "POST", f"/api/venues/{venue_id}/checkins", {"token": scene.people[name].token}
        )
    day = me.client.get(f"/api/venues/{venue_id}/passages")
    assert day.status_code == 200
    body = day.json()
    # The F0's check-in says red, never why: a venue's staff are not health officers.
    assert [(p["initials"], p["verdict"], p["headline"], p["code"]) for p in body["passages"]] == [
        ("N.V.B.", "yellow", "Mời vào — lưu ý", None), ("N.V.F.", "red", "Không được vào", None),
        ("N.V.A.", "green", "Mời vào", None),
    ]  # fmt: skip
    assert all("reason" not in p for p in body["passages"])
    assert body["counts"] == {"green": 1, "red": 1, "yellow": 1}
    page = me.client.get(f"/venues/{venue_id}/passages")
    assert page.status_code == 200 and "N.V.F." in page.text and "Tổng: 3 lượt" in page.text
    old = me.client.get(f"/api/venues/{venue_id}/passages", params={"day": "2021-07-09"}).json()
    for day in ("0001-01-01", "9999-12-31"):
        far = me.client.get(f"/api/venues/{venue_id}/passages", params={"day": day})
        assert far.status_code == 422 and far.json()["detail"]["code"] == "bad_day"
        assert me.client.get(f"/venues/{venue_id}/passages?day={day}").status_code == 422
    assert old["passages"] == [] and old["counts"] == {}
    rows = audits(web_engine, "venue.passages")
    assert [(r.officer_id, r.subject, r.detail["rows"]) for r in rows] == [
        (me.account.id, f"checkpoint:{venue_id}", 3),
        (me.account.id, f"checkpoint:{venue_id}", 3),
        (me.account.id, f"checkpoint:{venue_id}", 0),
    ]
    assert rows[0].purpose.startswith("lượt vào trong ngày")


def test_poster_qr_and_public_page(
    app: FastAPI, login_as: LoginFactory, client: TestClient
) -> None:
    me = login_as(Role.VENUE_MANAGER)
    venue_id = register(me).json()["id"]
    poster = me.client.get(f"/venues/{venue_id}/poster?lang=en")
    assert poster.status_code == 200
    for text in (
        "Bến xe Giáp Bát",
        "ĐIỂM QUÉT MÃ KIỂM DỊCH",
        "CHECK-IN POINT",
        "Cách vào",
        "How to enter",
        "http://testserver/khai-bao",
        f'src="/venues/{venue_id}/qr.svg"',
    ):
        assert text in poster.text, text  # fmt: skip
    qr = me.client.get(f"/venues/{venue_id}/qr.svg")
    assert qr.headers["content-type"] == "image/svg+xml"
    assert qr.content == qr_svg(f"http://testserver/dia-diem/{venue_id}")
    public = client.get(f"/dia-diem/{venue_id}")
    assert public.status_code == 200 and "Bến xe Giáp Bát" in public.text
    assert REGISTRATION["contact_name"] not in public.text and "02438641467" not in public.text
    assert client.get("/dia-diem/khong-co").status_code == 404
    checkin = me.client.get(f"/venues/{venue_id}/checkin")
    assert checkin.status_code == 200 and "vendor/jsqr/jsQR.js" in checkin.text
    assert me.client.get(f"/venues/{venue_id}").headers["location"] == f"/venues/{venue_id}/checkin"


def test_refusals_anonymous_wrong_role_and_outside_scope(
    app: FastAPI, client: TestClient, login_as: LoginFactory, scene: World, web_engine: Engine
) -> None:
    owner = login_as(Role.VENUE_MANAGER)
    venue_id = register(owner).json()["id"]
    token = scene.people["an"].token
    api = [
        ("GET", "/api/venues", None),
        ("POST", "/api/venues", REGISTRATION),
        ("GET", f"/api/venues/{venue_id}", None),
        ("PATCH", f"/api/venues/{venue_id}", {"active": False}),
        ("POST", f"/api/venues/{venue_id}/checkins", {"token": token}),
        ("GET", f"/api/venues/{venue_id}/passages", None),
    ]
    pages = ["/venues", "/venues/new", f"/venues/{venue_id}/poster", f"/venues/{venue_id}/qr.svg",
             f"/venues/{venue_id}/checkin", f"/venues/{venue_id}/passages"]  # fmt: skip
    for method, url, body in api:
        assert client.request(method, url, json=body).status_code == 401, url
    for url in pages:
        answer = client.get(url)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    for role in (Role.CHECKPOINT_OFFICER, Role.WARD_POLICE, Role.INVESTIGATOR,
                 Role.COMMAND_CENTRE, Role.HEALTH_OFFICIAL):  # fmt: skip
        other = login_as(role)
        for method, url, body in api:
            assert other.send_json(method, url, body).status_code == 403, (role, url)
        for url in pages:
            assert other.client.get(url).status_code == 403, (role, url)
        # The refusal page carries the officer's navigation: no entry for venues.
        assert 'href="/venues"' not in other.client.get("/venues").text
    # Another venue's manager: the venue is refused like an unknown one.
    stranger = login_as(Role.VENUE_MANAGER)
    for method, url, body in api[2:]:
        answer = stranger.send_json(method, url, body)
        assert answer.status_code == 403 and answer.json()["detail"]["code"] == "venue_forbidden"
    assert stranger.send_json("GET", "/api/venues/khong-co").status_code == 403
    assert [v["id"] for v in stranger.client.get("/api/venues").json()] == []
    for url in pages[2:]:
        assert stranger.client.get(url).status_code == 403, url
    assert stranger.post_form(f"/venues/{venue_id}/active", {"active": "0"}).status_code == 403
    # A cookie session's write without the CSRF token.
    no_csrf = owner.client.post(f"/api/venues/{venue_id}/checkins", json={"token": token})
    assert no_csrf.status_code == 403 and no_csrf.json()["detail"]["code"] == "csrf"
    with web_engine.connect() as conn:
        assert count(conn, passages) == 0
        assert conn.execute(
            select(checkpoints.c.active).where(checkpoints.c.id == venue_id)
        ).scalar_one()
    assert audits(web_engine, "venue.passages") == []


# --- the check-in path on PostgreSQL ------------------------------------------------------------


@pytest.mark.postgres
class TestApiOnPostgres:
    """The web fixtures on a PostgreSQL database instead of SQLite."""

    @pytest.fixture
    def web_db_url(self, pg_server: PgServer, _pg_template: str) -> Iterator[str]:
        name = pg_server.create(template=_pg_template)
        yield url_string(pg_server.url(name))
        pg_server.drop(name)

    def test_check_in_raises_the_alert_and_tracing_finds_the_visitor(
        self, app: FastAPI, login_as: LoginFactory, scene: World, web_engine: Engine
    ) -> None:
        assert web_engine.dialect.name == "postgresql"
        me = login_as(Role.VENUE_MANAGER)
        venue_id = register(me).json()["id"]
        event_id = str(new_event_id())
        body = {"token": scene.people["f0"].token, "event_id": event_id}
        first = me.send_json("POST", f"/api/venues/{venue_id}/checkins", body)
        retried = me.send_json("POST", f"/api/venues/{venue_id}/checkins", body)
        assert first.json()["color"] == "red" and retried.json()["duplicate"]
        investigator = login_as(Role.INVESTIGATOR)
        now = datetime.now(LOCAL).replace(tzinfo=None)
        traced = investigator.client.get(
            "/api/trace/place",
            params={"checkpoint_id": venue_id, "purpose": "truy vết ca F0 tại bến xe",
                    "since": (now - timedelta(hours=1)).isoformat(timespec="minutes"),
                    "until": (now + timedelta(hours=1)).isoformat(timespec="minutes")},
        )  # fmt: skip
        assert traced.status_code == 200, traced.text
        assert [h["full_name"] for h in traced.json()["hits"]] == ["Nguyễn Văn F0"]
        with web_engine.connect() as conn:
            assert [h.kind.value for h in alert_heads(conn, after_id=0, scope=None)] == ["f0"]


# --- the alert notice over MQTT -------------------------------------------------------------------


class TestAlertNotices:
    """A started control link on a real broker: the monitors hear the venue's alert at once."""

    @pytest.fixture
    def web_service(
        self, web_db_url: str, tmp_path: Path, mosquitto: Broker
    ) -> Iterator[AggregatorService]:
        service = AggregatorService(
            AggregatorSettings(
                environment="development",
                db_url=web_db_url,
                keyring_path=tmp_path / "keyring.json",
                client_id=f"venue-test-{uuid.uuid4().hex[:8]}",
                migrate_on_start=False,
                mqtt_host=mosquitto.host,
                mqtt_port=mosquitto.port,
            )
        )
        service.control.start()
        yield service
        service.control.stop()
        service.engine.dispose()

    def test_an_f0_check_in_is_announced_on_the_alert_topic(
        self, app: FastAPI, login_as: LoginFactory, scene: World, web_engine: Engine
    ) -> None:
        service: AggregatorService = app.state.service
        hub = LiveHub(web_engine)
        hub.prime()
        hub.attach(service.control)
        assert service.control.wait_connected(10)
        me = login_as(Role.VENUE_MANAGER)
        venue_id = register(me).json()["id"]
        answer = me.send_json(
            "POST", f"/api/venues/{venue_id}/checkins", {"token": scene.people["f1"].token}
        )
        assert answer.json()["color"] == "red"
        assert wait_for(lambda: hub.stats.notices >= 1, timeout=10)
        assert hub.stats.notices == 1 and hub.stats.polled_alerts == 0
