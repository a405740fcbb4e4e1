"""The SQL store's schema: migrations, metadata parity, time zones, constraints, indexes.

Every test runs on real SQLite and real PostgreSQL (see tests/fixtures/db.py).
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from aggregator.db import migrate
from aggregator.db.engine import (
    DEFAULT_SQLITE_CACHE_MIB,
    make_engine,
    normalize_url,
    write_transaction,
)
from aggregator.db.schema import (
    checkpoints,
    citizens,
    dead_letters,
    devices,
    metadata,
    passages,
)
from aggregator.db.wards import get_ward, list_wards, search_wards

HOAN_KIEM = 70  # Phường Hoàn Kiếm, Thành phố Hà Nội


def _diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, metadata))


def test_upgrade_gives_exactly_the_metadata(db_url: str) -> None:
    assert migrate.current_revision(db_url) is None
    migrate.upgrade(db_url)
    assert migrate.current_revision(db_url) == migrate.head_revision()
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert _diff(conn) == []
            names = set(inspect(conn).get_table_names())
            assert set(metadata.tables) <= names
        # The comparison does see a difference when there is one.
        with engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_passages_citizen_id_seen_at"))
        with engine.connect() as conn:
            diff = _diff(conn)
        assert [d[0] for d in diff] == ["add_index"]  # type: ignore[index]
        assert diff[0][1].name == "ix_passages_citizen_id_seen_at"  # type: ignore[index]
    finally:
        engine.dispose()


def test_downgrade_to_base_then_up_again(db_url: str) -> None:
    migrate.upgrade(db_url)
    migrate.downgrade(db_url, "base")
    assert migrate.current_revision(db_url) is None
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM wards")).scalar_one() == 3321
    finally:
        engine.dispose()


def test_cli_upgrade_and_current(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # migrations are found from any working directory
    assert migrate.main(["current", "--url", db_url]) == 1  # behind head
    assert migrate.main(["upgrade", "--url", db_url]) == 0
    assert migrate.main(["current", "--url", db_url]) == 0
    assert migrate.head_revision() in capsys.readouterr().out


def test_wards_are_loaded_by_migration(engine: Engine) -> None:
    with engine.connect() as conn:
        everything = list_wards(conn)
        hoan_kiem = get_ward(conn, code=HOAN_KIEM)
        found = search_wards(conn, name_query="hoan kiem")
        assert get_ward(conn, code=-1) is None
        assert len(list_wards(conn, province_code=79)) > 100
    assert len(everything) == 3321
    assert len({w.province_code for w in everything}) == 34
    assert hoan_kiem is not None
    assert hoan_kiem.label == "Phường Hoàn Kiếm, Thành phố Hà Nội"
    assert HOAN_KIEM in [w.code for w in found]


def test_timestamps_round_trip_as_aware_utc(engine: Engine) -> None:
    hanoi = timezone(timedelta(hours=7))
    sent = [
        datetime(2021, 7, 9, 6, 30, 15, 123456, tzinfo=hanoi),
        datetime(2021, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2022, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
    ]
    with engine.begin() as conn:
        for at in sent:
            conn.execute(
                insert(dead_letters).values(received_at=at, topic="t", payload=b"x", reason="r")
            )
    with engine.connect() as conn:
        back = conn.execute(select(dead_letters.c.received_at).order_by(dead_letters.c.id))
        received = list(back.scalars())
        # A bound aware datetime in another zone compares in UTC too.
        later = conn.execute(
            select(dead_letters.c.received_at).where(
                dead_letters.c.received_at > datetime(2021, 7, 9, 6, 30, 15, 123456, tzinfo=hanoi)
            )
        ).scalars()
        later_list = list(later)
    assert received == sent
    assert all(r.tzinfo is UTC for r in received)
    assert [r.isoformat() for r in received] == [s.astimezone(UTC).isoformat() for s in sent]
    assert later_list == sent[1:]


def test_naive_timestamps_are_refused(engine: Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime refused"), engine.begin() as conn:
        conn.execute(
            insert(dead_letters).values(
                received_at=datetime(2021, 7, 9, 6, 30), topic="t", payload=b"x", reason="r"
            )
        )


def _citizen(ward_code: int, identity_no: str = "001090000001") -> dict[str, object]:
    now = datetime(2021, 7, 9, tzinfo=UTC)
    return {
        "identity_no": identity_no,
        "full_name": "Nguyễn Văn An",
        "full_name_folded": "nguyen van an",
        "date_of_birth": date(1990, 1, 2),
        "sex": "male",
        "permanent_ward_code": ward_code,
        "status_since": now,
        "updated_at": now,
    }


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(citizens).values(_citizen(ward_code=999_999)))
    with engine.begin() as conn:
        conn.execute(insert(citizens).values(_citizen(ward_code=HOAN_KIEM)))


def test_check_constraints_refuse_bad_vocabulary(engine: Engine) -> None:
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(citizens).values({**_citizen(HOAN_KIEM), "health_status": "F9"}))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(citizens).values({**_citizen(HOAN_KIEM), "identity_no": "12345"}))


def test_sqlite_connection_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'k.db'}")
    try:
        with engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                for name in (
                    "journal_mode",
                    "foreign_keys",
                    "synchronous",
                    "busy_timeout",
                    "cache_size",
                )
            }
    finally:
        engine.dispose()
    assert pragma == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "synchronous": 1,
        "busy_timeout": 10000,
        "cache_size": -DEFAULT_SQLITE_CACHE_MIB * 1024,  # KiB, per connection
    }
    assert (tmp_path / "nested" / "dir" / "k.db").exists()


def test_sqlite_cache_size_comes_from_the_aggregator_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``KIEMDICH_SQLITE_CACHE_MIB`` reaches every connection of the service's engine;
    a value out of range is refused by the settings, not by SQLite."""
    from pydantic import ValidationError

    from aggregator.service import AggregatorService
    from aggregator.settings import AggregatorSettings

    monkeypatch.setenv("KIEMDICH_SQLITE_CACHE_MIB", "8")
    settings = AggregatorSettings(
        environment="development",
        db_url=f"sqlite:///{tmp_path / 'k.db'}",
        keyring_path=tmp_path / "keyring.json",
    )
    assert settings.sqlite_cache_mib == 8
    engine = AggregatorService(settings).engine
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar_one() == -8 * 1024
    finally:
        engine.dispose()
    monkeypatch.setenv("KIEMDICH_SQLITE_CACHE_MIB", "0")
    with pytest.raises(ValidationError, match="sqlite_cache_mib"):
        AggregatorSettings(environment="development", db_url=f"sqlite:///{tmp_path / 'k.db'}")


def test_read_then_write_survives_a_commit_in_between(tmp_path: Path) -> None:
    """An audit row written after a read, while another connection commits
    (the ingest), is stored: the write transaction holds the lock from its start.
    A plain deferred transaction in the same race fails at once."""
    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (v INTEGER)")

        def other_writer_commits() -> None:
            with engine.begin() as other:
                other.exec_driver_sql("INSERT INTO t VALUES (2)")

        with (
            pytest.raises(OperationalError, match="database is locked"),
            engine.begin() as conn,
        ):
            conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one()
            other_writer_commits()
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")

        writer = threading.Thread(target=other_writer_commits)
        with write_transaction(engine) as conn:
            before = conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one()
            writer.start()
            writer.join(timeout=0.3)
            assert writer.is_alive()  # waits for our lock instead of slipping in between
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        writer.join(timeout=10)
        assert not writer.is_alive()
        with engine.connect() as conn:
            values = sorted(conn.exec_driver_sql("SELECT v FROM t").scalars())
    finally:
        engine.dispose()
    assert (before, values) == (1, [1, 2, 2])


def test_postgres_urls_use_psycopg3() -> None:
    assert normalize_url("postgresql://u@h:5432/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"
    with pytest.raises(ValueError, match="only SQLite and PostgreSQL"):
        normalize_url("mysql://u@h/db")


def _seed_passages(engine: Engine) -> datetime:
    """20 checkpoints, 300 citizens, 12,000 passages over 10 days; returns the start time."""
    start = datetime(2021, 8, 1, tzinfo=UTC)
    created = datetime(2021, 7, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(citizens),
            [{**_citizen(HOAN_KIEM, identity_no=f"001090{i:06d}"), "id": i} for i in range(1, 301)],
        )
        for c in range(20):
            conn.execute(
                insert(checkpoints).values(
                    id=f"cp-{c}",
                    name=f"Chốt {c}",
                    kind="city_gate",
                    ward_code=HOAN_KIEM,
                    created_at=created,
                )
            )
            conn.execute(
                insert(devices).values(
                    id=f"dev-{c}",
                    checkpoint_id=f"cp-{c}",
                    lane=0,
                    direction="both",
                    mqtt_username=f"dev-{c}",
                    mqtt_password_hash="x",
                    created_at=created,
                )
            )
        rows = []
        for i in range(12_000):
            seen = start + timedelta(seconds=i * 72)
            rows.append(
                {
                    "event_id": uuid.UUID(int=i + 1),
                    "device_id": f"dev-{i % 20}",
                    "checkpoint_id": f"cp-{i % 20}",
                    "seq": i,
                    "lane": 0,
                    "direction": "in" if i % 2 else "out",
                    "seen_at": seen,
                    "received_at": seen,
                    "declaration_id": i,
                    "citizen_id": i % 300 + 1,
                    "verdict": "green",
                    "reason": "clear",
                    "quality": 0.9,
                }
            )
        conn.execute(insert(passages), rows)
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE passages"))
        else:
            conn.execute(text("ANALYZE"))
    return start


def _plan(conn: Connection, statement: object) -> str:
    compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})  # type: ignore[attr-defined]
    prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
    rows = conn.exec_driver_sql(prefix + str(compiled)).all()
    return "\n".join(str(row[-1]) for row in rows)


def test_investigation_queries_use_their_indexes(engine: Engine) -> None:
    start = _seed_passages(engine)
    who_passed = (
        select(passages.c.event_id, passages.c.citizen_id, passages.c.seen_at)
        .where(
            passages.c.checkpoint_id == "cp-3",
            passages.c.seen_at >= start + timedelta(days=2),
            passages.c.seen_at < start + timedelta(days=2, hours=3),
        )
        .order_by(passages.c.seen_at)
    )
    route = (
        select(passages.c.checkpoint_id, passages.c.seen_at)
        .where(passages.c.citizen_id == 42)
        .order_by(passages.c.seen_at)
    )
    with engine.connect() as conn:
        who_plan = _plan(conn, who_passed)
        route_plan = _plan(conn, route)
        assert len(conn.execute(who_passed).all()) == 8  # 3 h / 72 s / 20 checkpoints
        assert len(conn.execute(route).all()) == 40
    assert "ix_passages_checkpoint_id_seen_at" in who_plan, who_plan
    assert "ix_passages_citizen_id_seen_at" in route_plan, route_plan
