"""Investigation queries on SQLite and PostgreSQL: a place in a window, a route, F0 contacts,
and marking contacts F1 (status, ward notifications, audit rows, one transaction).

Passages are written straight into the migrated store at chosen times, so
every expected row is known exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, func, select

from aggregator.auth.model import Officer
from aggregator.db.fleet import add_device, upsert_checkpoint
from aggregator.db.registry import CitizenNotFoundError, CitizenRow, get_citizen, insert_citizens
from aggregator.db.schema import HealthStatus, Role, audit_log, passages, ward_notifications
from aggregator.db.tracing import (
    PlaceCursor,
    TraceInputError,
    citizen_route,
    find_citizens,
    likely_contacts,
    mark_contacts_f1,
    place_passages,
)
from contract.ids import new_event_id

HOAN_KIEM = 70
BA_DINH = 4
GATE = "cp-phap-van"
MARKET = "venue-cho-dong-xuan"
T0 = datetime(2021, 8, 20, 8, 0, tzinfo=UTC)

# name: (id, full name, temporary ward, status)
PEOPLE: dict[str, tuple[int, str, int | None, HealthStatus]] = {
    "f0": (1, "Trần Thị Bệnh", None, HealthStatus.F0),
    "an": (2, "Nguyễn Văn An", BA_DINH, HealthStatus.NONE),
    "anh": (3, "Nguyễn Văn Anh", None, HealthStatus.NONE),
    "duc": (4, "Đặng Minh Đức", None, HealthStatus.F2),
    "far": (5, "Lê Văn Xa", None, HealthStatus.NONE),
    "other_f0": (6, "Phạm Thị Ca", None, HealthStatus.F0),
}


@dataclass
class Seeded:
    engine: Engine
    ids: dict[str, int]


def _citizen(cid: int, name: str, temporary: int | None, status: HealthStatus) -> CitizenRow:
    then = T0 - timedelta(days=10)
    return {
        "id": cid,
        "identity_no": f"001090{cid:06d}",
        "full_name": name,
        "date_of_birth": date(1985, 3, cid),
        "sex": "female" if cid % 2 else "male",
        "phone": f"0912{cid:06d}",
        "permanent_ward_code": HOAN_KIEM,
        "temporary_ward_code": temporary,
        "vaccine_doses": 2,
        "health_status": status.value,
        "status_since": then,
        "updated_at": then,
    }


def add_passage(
    conn: Connection,
    *,
    citizen_id: int | None,
    checkpoint_id: str,
    at: datetime,
    direction: str = "in",
) -> None:
    device = "gate-pv-1" if checkpoint_id == GATE else "venue-cdx-1"
    conn.execute(
        passages.insert().values(
            event_id=new_event_id(),
            device_id=device,
            checkpoint_id=checkpoint_id,
            seq=1,
            lane=0,
            direction=direction,
            seen_at=at,
            received_at=at,
            declaration_id=None,
            citizen_id=citizen_id,
            verdict="green" if citizen_id else "invalid",
            reason="clear" if citizen_id else "unknown_declaration",
        )
    )


def seed(engine: Engine) -> dict[str, int]:
    """The people of PEOPLE, a city gate and a market, and passages around the F0's two visits.

    The F0 passes the gate at T0 and the market at T0+2h. Near them:
    - an: gate T0+3 min, market T0+2h-1 min  -> 2 shared, closest 60 s
    - anh: gate T0-10 min                      -> 1 shared, 600 s
    - duc: gate T0+1 min                       -> 1 shared, 60 s (ranks before anh)
    - far: gate T0+40 min (outside ±15 min)    -> none
    - an unknown code at the gate at T0+2 min  -> never a contact
    """
    with engine.begin() as conn:
        insert_citizens(conn, rows=[_citizen(*row) for row in PEOPLE.values()])
        upsert_checkpoint(
            conn, id=GATE, name="Chốt Pháp Vân", kind="city_gate", ward_code=HOAN_KIEM,
            lat=20.95, lon=105.84,
        )  # fmt: skip
        upsert_checkpoint(
            conn, id=MARKET, name="Chợ Đồng Xuân", kind="venue", ward_code=HOAN_KIEM,
            lat=21.04, lon=105.85,
        )  # fmt: skip
        add_device(
            conn, id="gate-pv-1", checkpoint_id=GATE, lane=0, direction="both", mqtt_password="x"
        )
        add_device(
            conn, id="venue-cdx-1", checkpoint_id=MARKET, lane=0, direction="in", mqtt_password="x"
        )
        ids = {name: row[0] for name, row in PEOPLE.items()}
        minute = timedelta(minutes=1)
        for who, where, at in [
            ("f0", GATE, T0),
            ("f0", MARKET, T0 + 120 * minute),
            ("an", GATE, T0 + 3 * minute),
            ("an", MARKET, T0 + 119 * minute),
            ("anh", GATE, T0 - 10 * minute),
            ("duc", GATE, T0 + minute),
            ("far", GATE, T0 + 40 * minute),
            ("other_f0", MARKET, T0 + 400 * minute),
        ]:
            add_passage(conn, citizen_id=ids[who], checkpoint_id=where, at=at)
        add_passage(conn, citizen_id=None, checkpoint_id=GATE, at=T0 + 2 * minute)
        add_passage(
            conn, citizen_id=ids["an"], checkpoint_id=GATE, at=T0 + 50 * minute, direction="out"
        )
    return ids


@pytest.fixture
def seeded(engine: Engine) -> Iterator[Seeded]:
    """The world of :func:`seed` on the backend under test."""
    yield Seeded(engine, seed(engine))


def test_place_lists_everyone_in_the_window_with_their_details(seeded: Seeded) -> None:
    with seeded.engine.connect() as conn:
        page = place_passages(
            conn,
            checkpoint_id=GATE,
            since=T0 - timedelta(minutes=15),
            until=T0 + timedelta(minutes=15),
        )
    names = [h.full_name for h in page.hits]
    assert names == [
        "Nguyễn Văn Anh", "Trần Thị Bệnh", "Đặng Minh Đức", None, "Nguyễn Văn An"
    ]  # fmt: skip
    assert page.next_after is None
    an = page.hits[-1]
    assert an.identity_no == "001090000002"
    assert an.date_of_birth == date(1985, 3, 2)
    assert an.phone == "0912000002"
    assert an.permanent_ward == "Phường Hoàn Kiếm"
    assert an.temporary_ward == "Phường Ba Đình"
    assert an.seen_at == T0 + timedelta(minutes=3)
    assert an.direction == "in" and an.verdict == "green"
    unknown = page.hits[3]
    assert unknown.citizen_id is None and unknown.verdict == "invalid"


def test_place_window_is_half_open_and_per_place(seeded: Seeded) -> None:
    with seeded.engine.connect() as conn:
        page = place_passages(conn, checkpoint_id=GATE, since=T0, until=T0 + timedelta(minutes=3))
        market = place_passages(conn, checkpoint_id=MARKET, since=T0, until=T0 + timedelta(hours=3))
    assert [h.seen_at for h in page.hits] == [
        T0,
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=2),
    ]
    assert {h.full_name for h in market.hits} == {"Trần Thị Bệnh", "Nguyễn Văn An"}


def test_place_pages_by_keyset_without_gaps_or_repeats(seeded: Seeded) -> None:
    since, until = T0 - timedelta(hours=1), T0 + timedelta(hours=1)
    seen: list[datetime] = []
    after: PlaceCursor | None = None
    pages = 0
    with seeded.engine.connect() as conn:
        everything = place_passages(conn, checkpoint_id=GATE, since=since, until=until, limit=100)
        while True:
            page = place_passages(
                conn, checkpoint_id=GATE, since=since, until=until, limit=2, after=after
            )
            pages += 1
            seen.extend(h.seen_at for h in page.hits)
            if page.next_after is None:
                break
            after = page.next_after
    assert seen == [h.seen_at for h in everything.hits]
    assert len(seen) == 7 and pages == 4


def test_place_refuses_a_reversed_or_overlong_window(seeded: Seeded) -> None:
    with seeded.engine.connect() as conn:
        with pytest.raises(TraceInputError, match="after the start"):
            place_passages(conn, checkpoint_id=GATE, since=T0, until=T0)
        with pytest.raises(TraceInputError, match="at most"):
            place_passages(conn, checkpoint_id=GATE, since=T0, until=T0 + timedelta(days=40))
        with pytest.raises(TraceInputError, match="limit"):
            place_passages(conn, checkpoint_id=GATE, since=T0, until=T0 + timedelta(1), limit=0)


def test_route_is_a_timeline_across_gates_and_venues(seeded: Seeded) -> None:
    with seeded.engine.connect() as conn:
        route = citizen_route(
            conn,
            citizen_id=seeded.ids["an"],
            since=T0 - timedelta(days=1),
            until=T0 + timedelta(days=1),
        )
        scoped = citizen_route(
            conn, citizen_id=seeded.ids["an"], since=T0 - timedelta(days=1),
            until=T0 + timedelta(days=1), checkpoint_ids=[MARKET],
        )  # fmt: skip
        nobody = citizen_route(conn, citizen_id=999, since=T0, until=T0 + timedelta(days=1))
    assert route is not None and scoped is not None
    assert [(s.checkpoint_name, s.direction.value) for s in route.stops] == [
        ("Chốt Pháp Vân", "in"), ("Chốt Pháp Vân", "out"), ("Chợ Đồng Xuân", "in")
    ]  # fmt: skip
    assert route.stops[2].checkpoint_kind == "venue"
    assert route.stops[0].ward_name == "Phường Hoàn Kiếm"
    assert route.person.full_name == "Nguyễn Văn An" and not route.truncated
    assert [s.checkpoint_id for s in scoped.stops] == [MARKET]
    assert nobody is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("nguyen van an", ["Nguyễn Văn An", "Nguyễn Văn Anh"]),
        ("NGUYỄN VĂN ANH", ["Nguyễn Văn Anh"]),
        ("dang minh duc", ["Đặng Minh Đức"]),
        ("001090000004", ["Đặng Minh Đức"]),
        ("001 090 000 004", ["Đặng Minh Đức"]),
        ("001090000099", []),
        ("   ", []),
    ],
)
def test_find_citizens_by_identity_or_name_ignoring_diacritics(
    seeded: Seeded, query: str, expected: list[str]
) -> None:
    with seeded.engine.connect() as conn:
        found = find_citizens(conn, query=query)
    assert [c.full_name for c in found] == expected


def test_contacts_ranked_by_shared_passages_then_closeness(seeded: Seeded) -> None:
    with seeded.engine.connect() as conn:
        result = likely_contacts(
            conn, citizen_id=seeded.ids["f0"], since=T0 - timedelta(days=1),
            until=T0 + timedelta(days=1), window_minutes=15,
        )  # fmt: skip
    assert result is not None
    assert result.source.full_name == "Trần Thị Bệnh" and result.source_passages == 2
    ranked = [(c.person.full_name, c.shared_passages, c.closest_gap_s) for c in result.contacts]
    assert ranked == [
        ("Nguyễn Văn An", 2, 60.0),
        ("Đặng Minh Đức", 1, 60.0),
        ("Nguyễn Văn Anh", 1, 600.0),
    ]
    an = result.contacts[0]
    assert an.places == [GATE, MARKET]
    assert an.mean_gap_s == 120.0  # 180 s at the gate, 60 s at the market
    assert an.person.phone == "0912000002"


def test_contacts_window_and_scope_narrow_the_list(seeded: Seeded) -> None:
    with seeded.engine.connect() as conn:
        narrow = likely_contacts(
            conn, citizen_id=seeded.ids["f0"], since=T0 - timedelta(days=1),
            until=T0 + timedelta(days=1), window_minutes=2,
        )  # fmt: skip
        wide = likely_contacts(
            conn, citizen_id=seeded.ids["f0"], since=T0 - timedelta(days=1),
            until=T0 + timedelta(days=1), window_minutes=60,
        )  # fmt: skip
        market_only = likely_contacts(
            conn, citizen_id=seeded.ids["f0"], since=T0 - timedelta(days=1),
            until=T0 + timedelta(days=1), checkpoint_ids=[MARKET],
        )  # fmt: skip
        with pytest.raises(TraceInputError):
            likely_contacts(conn, citizen_id=1, since=T0, until=T0 + timedelta(1), window_minutes=0)
    assert narrow is not None and wide is not None and market_only is not None
    assert [c.person.full_name for c in narrow.contacts] == ["Nguyễn Văn An", "Đặng Minh Đức"]
    assert "Lê Văn Xa" in [c.person.full_name for c in wide.contacts]
    assert all(c.person.citizen_id != seeded.ids["f0"] for c in wide.contacts)
    assert [c.person.full_name for c in market_only.contacts] == ["Nguyễn Văn An"]


def _officer(engine: Engine) -> Officer:
    from aggregator.auth import accounts

    with engine.begin() as conn:
        officer_id = accounts.create_officer(
            conn, username="dieu-tra-1", full_name="Vũ Điều Tra", role=Role.INVESTIGATOR,
            scopes=[], password="mat-khau-dieu-tra-1",
        )  # fmt: skip
    return Officer(
        id=officer_id, username="dieu-tra-1", full_name="Vũ Điều Tra", role=Role.INVESTIGATOR,
        scopes=[],
    )  # fmt: skip


def test_mark_f1_sets_status_notifies_wards_and_audits(seeded: Seeded) -> None:
    officer = _officer(seeded.engine)
    at = T0 + timedelta(hours=5)
    ids = seeded.ids
    with seeded.engine.begin() as conn:
        marked = mark_contacts_f1(
            conn, citizen_ids=[ids["an"], ids["anh"], ids["other_f0"], ids["an"]],
            officer=officer, at=at, source_citizen_id=ids["f0"],
        )  # fmt: skip
    assert [(m.citizen_id, m.previous, m.changed, m.notified_ward) for m in marked] == [
        (ids["an"], HealthStatus.NONE, True, BA_DINH),  # temporary residence
        (ids["anh"], HealthStatus.NONE, True, HOAN_KIEM),  # permanent: no temporary one
        (ids["other_f0"], HealthStatus.F0, False, None),  # an F0 stays F0
    ]
    with seeded.engine.connect() as conn:
        an = get_citizen(conn, citizen_id=ids["an"])
        f0 = get_citizen(conn, citizen_id=ids["other_f0"])
        notes = conn.execute(
            select(ward_notifications.c.ward_code, ward_notifications.c.kind,
                   ward_notifications.c.citizen_id, ward_notifications.c.payload)
            .order_by(ward_notifications.c.id)
        ).all()  # fmt: skip
        audits = conn.execute(
            select(audit_log.c.officer_id, audit_log.c.action, audit_log.c.subject)
            .where(audit_log.c.action == "citizen.status.f1")
            .order_by(audit_log.c.id)
        ).all()  # fmt: skip
    assert an is not None and an.health_status is HealthStatus.F1 and an.status_since == at
    assert f0 is not None and f0.health_status is HealthStatus.F0
    assert [(n.ward_code, n.kind, n.citizen_id) for n in notes] == [
        (BA_DINH, "status_change", ids["an"]),
        (HOAN_KIEM, "status_change", ids["anh"]),
    ]
    assert notes[0].payload["status"] == "F1"
    assert notes[0].payload["source_citizen_id"] == ids["f0"]
    assert [tuple(a) for a in audits] == [
        (officer.id, "citizen.status.f1", f"citizen:{ids['an']}"),
        (officer.id, "citizen.status.f1", f"citizen:{ids['anh']}"),
    ]


def test_mark_f1_with_an_unknown_citizen_changes_nothing(seeded: Seeded) -> None:
    officer = _officer(seeded.engine)
    with pytest.raises(CitizenNotFoundError), seeded.engine.begin() as conn:
        mark_contacts_f1(conn, citizen_ids=[seeded.ids["an"], 999], officer=officer, at=T0)
    with seeded.engine.connect() as conn:
        an = get_citizen(conn, citizen_id=seeded.ids["an"])
        notes = conn.execute(select(func.count()).select_from(ward_notifications)).scalar_one()
    assert an is not None and an.health_status is HealthStatus.NONE
    assert notes == 0
