"""Registry data functions on real SQLite and PostgreSQL: bulk load, look-ups, search, status."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from aggregator.db.registry import (
    CitizenNotFoundError,
    CitizenRow,
    DeclarationRow,
    HealthStatus,
    count_citizens,
    get_citizen,
    get_citizen_by_identity,
    get_declaration,
    insert_citizens,
    insert_declarations,
    search_citizen_query,
    search_citizens,
    set_health_status,
)
from aggregator.db.schema import citizens
from contract.text import fold

HOAN_KIEM = 70
BEN_THANH = 26743  # Phường Bến Thành, TP Hồ Chí Minh
T0 = datetime(2021, 7, 9, 8, 0, tzinfo=UTC)


def citizen(i: int, full_name: str = "Nguyễn Văn An", **extra: object) -> CitizenRow:
    row: CitizenRow = {
        "id": i,
        "identity_no": f"001090{i:06d}",
        "full_name": full_name,
        "date_of_birth": date(1990, 1, 1) + timedelta(days=i % 3000),
        "sex": "male",
        "phone": f"09{i:08d}",
        "permanent_ward_code": HOAN_KIEM,
        "temporary_ward_code": BEN_THANH if i % 5 == 0 else None,
        "vaccine_doses": i % 3,
        "health_status": "none",
        "status_since": T0,
        "updated_at": T0,
    }
    return {**row, **extra}  # type: ignore[typeddict-item]


def declaration(declaration_id: int, citizen_id: int) -> DeclarationRow:
    return {
        "id": declaration_id,
        "citizen_id": citizen_id,
        "origin_ward_code": HOAN_KIEM,
        "destination_ward_code": BEN_THANH,
        "origin_detail": "Số 12 Hàng Bạc",
        "destination_detail": "Số 5 Lê Lợi",
        "symptoms": ["sốt", "ho"] if citizen_id % 2 else [],
        "contact_risk": citizen_id % 2 == 1,
        "source": "app",
        "entered_by": None,
        "key_id": 1,
        "created_at": T0,
        "expires_at": T0 + timedelta(days=14),
    }


def test_bulk_insert_and_point_lookups(engine: Engine) -> None:
    n = 25_000  # more than one executemany chunk
    with engine.begin() as conn:
        assert insert_citizens(conn, rows=(citizen(i) for i in range(1, n + 1))) == n
        assert (
            insert_declarations(
                conn, rows=(declaration(4_000_000_000 - i, i) for i in range(1, n + 1))
            )
            == n
        )
    with engine.connect() as conn:
        assert count_citizens(conn) == n
        found = get_citizen_by_identity(conn, identity_no="001090012345")
        missing = get_citizen_by_identity(conn, identity_no="999999999999")
        decl = get_declaration(conn, declaration_id=4_000_000_000 - 777)
        assert get_declaration(conn, declaration_id=1) is None
    assert missing is None
    assert found is not None
    assert found.id == 12345
    assert found.full_name == "Nguyễn Văn An"
    assert found.temporary_ward_code == BEN_THANH
    assert found.status_since == T0
    assert found.status_since.tzinfo is UTC
    assert decl is not None
    assert decl.citizen.id == 777
    assert decl.citizen.identity_no == "001090000777"
    assert decl.symptoms == ["sốt", "ho"]
    assert decl.contact_risk is True
    assert decl.expires_at == T0 + timedelta(days=14)


def test_loaded_ids_do_not_block_later_inserts(engine: Engine) -> None:
    with engine.begin() as conn:
        insert_citizens(conn, rows=[citizen(i) for i in range(1, 11)])
        values = {**citizen(99), "full_name_folded": "x"}
        del values["id"]  # type: ignore[misc]
        new_id = conn.execute(insert(citizens).values(values).returning(citizens.c.id)).scalar()
    assert new_id == 11


def test_duplicate_identity_is_refused_on_both_backends(engine: Engine) -> None:
    with engine.begin() as conn:
        insert_citizens(conn, rows=[citizen(1)])
    duplicate = citizen(2, identity_no="001090000001")
    with pytest.raises(IntegrityError), engine.begin() as conn:
        insert_citizens(conn, rows=[duplicate])
    with engine.connect() as conn:
        assert count_citizens(conn) == 1


@pytest.mark.parametrize("bad", ["12345", "00109000000A", "００１０９０００００１２", ""])
def test_malformed_identity_is_refused_before_the_database(engine: Engine, bad: str) -> None:
    with pytest.raises(ValueError, match="12 digits"), engine.begin() as conn:
        insert_citizens(conn, rows=[citizen(1, identity_no=bad)])
    with engine.connect() as conn:
        assert count_citizens(conn) == 0


NAMES = [
    "Nguyễn Văn An",
    "Nguyễn Văn Anh",
    "Nguyễn Thị Ánh",
    "Đặng Thị Đào",
    "Đỗ Đức Dũng",
    "Trần Văn Bình",
]


@pytest.fixture
def named(engine: Engine) -> Engine:
    with engine.begin() as conn:
        insert_citizens(conn, rows=[citizen(i + 1, name) for i, name in enumerate(NAMES)])
    return engine


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("nguyen van an", ["Nguyễn Văn An", "Nguyễn Văn Anh"]),
        ("  NGUYỄN   văn AN ", ["Nguyễn Văn An", "Nguyễn Văn Anh"]),
        ("nguyen thi anh", ["Nguyễn Thị Ánh"]),
        ("dang thi dao", ["Đặng Thị Đào"]),
        ("đặng", ["Đặng Thị Đào"]),
        ("do duc dung", ["Đỗ Đức Dũng"]),
        ("d", ["Đặng Thị Đào", "Đỗ Đức Dũng"]),
        ("tran van binh x", []),
        ("%", []),
        ("_", []),
        ("   ", []),
    ],
)
def test_search_ignores_diacritics(named: Engine, query: str, expected: list[str]) -> None:
    with named.connect() as conn:
        found = search_citizens(conn, name_query=query, limit=10)
    assert [c.full_name for c in found] == expected


def test_search_respects_limit(named: Engine) -> None:
    with named.connect() as conn:
        assert len(search_citizens(conn, name_query="nguyen", limit=2)) == 2
        with pytest.raises(ValueError, match="limit"):
            search_citizens(conn, name_query="nguyen", limit=0)


def test_search_is_served_by_the_folded_name_index(engine: Engine) -> None:
    with engine.begin() as conn:
        insert_citizens(
            conn,
            rows=(citizen(i, f"{NAMES[i % 6]} {i}") for i in range(1, 20_001)),
        )
        conn.exec_driver_sql(
            "ANALYZE citizens" if engine.dialect.name == "postgresql" else "ANALYZE"
        )
    query = search_citizen_query(fold("dang thi dao 12"), limit=20)
    compiled = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        plan = "\n".join(str(r[-1]) for r in conn.exec_driver_sql(prefix + compiled))
        found = search_citizens(conn, name_query="Đặng Thị Đào 12", limit=20)
    assert "ix_citizens_full_name_folded" in plan, plan
    assert found and all(c.full_name.startswith("Đặng Thị Đào 12") for c in found)


def test_set_health_status(engine: Engine) -> None:
    with engine.begin() as conn:
        insert_citizens(conn, rows=[citizen(1)])
    later = T0 + timedelta(days=3, hours=2)
    with engine.begin() as conn:
        change = set_health_status(conn, citizen_id=1, status=HealthStatus.F1, at=later)
    assert change.changed
    assert change.previous is HealthStatus.NONE
    assert change.citizen.health_status is HealthStatus.F1
    assert change.citizen.status_since == later
    with engine.begin() as conn:
        again = set_health_status(
            conn, citizen_id=1, status=HealthStatus.F1, at=later + timedelta(1)
        )
        assert not again.changed
        assert again.citizen.status_since == later  # unchanged status keeps its start date
        with pytest.raises(CitizenNotFoundError):
            set_health_status(conn, citizen_id=404, status=HealthStatus.F0, at=later)
        with pytest.raises(ValueError):
            set_health_status(conn, citizen_id=1, status="F9", at=later)  # type: ignore[arg-type]
    with engine.connect() as conn:
        stored = get_citizen(conn, citizen_id=1)
        assert stored is not None
        assert stored.health_status is HealthStatus.F1
        assert conn.execute(select(citizens.c.health_status)).scalar_one() == "F1"
