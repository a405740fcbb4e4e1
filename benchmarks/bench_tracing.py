"""Benchmark: the three tracing queries on 10 million passages, SQLite and PostgreSQL.

    .venv/bin/python benchmarks/bench_tracing.py [--quick] [--passages 10000000]

Builds (once, cached under ``var/bench/tracing/``) a registry of ``--citizens``
people, 100 checkpoints and venues, and ``--passages`` passages over 30 days,
then times, on the same data and connection:

- place: everyone at a checkpoint in a random one-hour window (first page of 500);
- route: one random citizen's passages over the 30 days;
- contacts: likely contacts (±15 min) of a random citizen with passages;

and, as the baseline, the same place query with its index made unusable
(``NOT INDEXED`` on SQLite; ``enable_indexscan``/``enable_bitmapscan`` off on
PostgreSQL), with the ratio. ``--quick``: 1 million passages, 200,000 citizens.
The PostgreSQL database is kept between runs too (``kd_bench_tracing_<size>``).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, Engine, Index, create_engine, func, select, text
from sqlalchemy.schema import CreateIndex

from aggregator.db.engine import make_engine, normalize_url
from aggregator.db.fleet import add_device, upsert_checkpoint
from aggregator.db.migrate import upgrade
from aggregator.db.registry import CitizenRow, insert_citizens
from aggregator.db.schema import passages, wards
from aggregator.db.tracing import citizen_route, likely_contacts, place_passages, place_query

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "var" / "bench" / "tracing"
PG_ENV = "KIEMDICH_TEST_PG"
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
START = datetime(2026, 2, 1, tzinfo=UTC)
DAYS = 30
CHECKPOINTS = 100
CHUNK = 50_000
SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Hồ")
MIDDLE = ("Văn", "Thị", "Minh", "Hữu", "Đức", "Thu", "Ngọc")
GIVEN = ("An", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hùng", "Lan", "Long", "Mai", "Nam", "Tâm")


def _wards(engine: Engine) -> tuple[int, ...]:
    """Eight wards of Hanoi (migration 0002 loads the country's wards)."""
    with engine.connect() as conn:
        province = conn.execute(
            select(wards.c.province_code).where(wards.c.code == 70)
        ).scalar_one()
        return tuple(
            conn.execute(
                select(wards.c.code)
                .where(wards.c.province_code == province)
                .order_by(wards.c.code)
                .limit(8)
            ).scalars()
        )


def _citizens(n: int, rng: random.Random, ward_codes: tuple[int, ...]) -> Iterator[CitizenRow]:
    then = START - timedelta(days=60)
    for i in range(1, n + 1):
        yield {
            "id": i,
            "identity_no": f"{i:012d}",
            "full_name": f"{rng.choice(SURNAMES)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}",
            "date_of_birth": date(1950 + i % 55, 1 + i % 12, 1 + i % 28),
            "sex": "male" if i % 2 else "female",
            "phone": f"09{i:08d}",
            "permanent_ward_code": ward_codes[i % len(ward_codes)],
            "temporary_ward_code": None if i % 3 else ward_codes[(i + 1) % len(ward_codes)],
            "vaccine_doses": i % 3,
            "health_status": "none",
            "status_since": then,
            "updated_at": then,
        }


Gate = tuple[str, str, int, str]  # device id, checkpoint id, lane, direction


def passage_rows(
    n: int,
    *,
    citizens_n: int,
    gates: Sequence[Gate],
    weights: Sequence[float],
    start: datetime,
    span: timedelta,
    rng: random.Random,
    sqlite: bool,
) -> Iterator[tuple[object, ...]]:
    """``n`` passages of citizens 1..``citizens_n`` at ``gates`` (chosen by ``weights``)
    over ``span`` from ``start``, as rows for :data:`PASSAGE_COLUMNS`.

    Times are sorted and ids are UUIDv7 of those times, so the load appends as
    the ingest does. For SQLite, values are what SQLAlchemy stores (hex UUIDs,
    naive ISO times with microseconds).
    """
    span_us = span / timedelta(microseconds=1)
    step = span_us / n
    picks = rng.choices(range(len(gates)), weights=weights, k=n)
    for i in range(n):
        at = start + timedelta(microseconds=int(i * step + rng.random() * step))
        ms = int(at.timestamp() * 1000)
        event = uuid.UUID(int=(ms << 80) | (0x7 << 76) | rng.getrandbits(76))
        device_id, checkpoint_id, lane, direction = gates[picks[i]]
        seen: object = at.replace(tzinfo=None).isoformat(sep=" ") if sqlite else at
        if sqlite and at.microsecond == 0:
            seen = f"{seen}.000000"
        yield (
            event.hex if sqlite else event,
            device_id,
            checkpoint_id,
            i,
            lane,
            direction,
            seen,
            seen,
            None,
            rng.randint(1, citizens_n),
            "green",
            "clear",
            0.9,
            None,
        )


def _passage_rows(
    n: int, citizens_n: int, rng: random.Random, sqlite: bool
) -> Iterator[tuple[object, ...]]:
    gates = [(f"dev-{k:03d}", f"cp-{k:03d}", 0, "in") for k in range(CHECKPOINTS)]
    return passage_rows(
        n,
        citizens_n=citizens_n,
        gates=gates,
        weights=[1 / (k + 1) for k in range(CHECKPOINTS)],  # a few busy gates, many quiet venues
        start=START,
        span=timedelta(days=DAYS),
        rng=rng,
        sqlite=sqlite,
    )


PASSAGE_COLUMNS = (
    "event_id, device_id, checkpoint_id, seq, lane, direction, seen_at, received_at, "
    "declaration_id, citizen_id, verdict, reason, quality, clock_skew_s"
)


def _load(engine: Engine, citizens_n: int, passages_n: int) -> None:
    rng = random.Random(2021)
    sqlite = engine.dialect.name == "sqlite"
    ward_codes = _wards(engine)
    started = time.monotonic()
    with engine.begin() as conn:
        insert_citizens(conn, rows=_citizens(citizens_n, rng, ward_codes))
        for k in range(CHECKPOINTS):
            upsert_checkpoint(
                conn,
                id=f"cp-{k:03d}",
                name=f"{'Chốt' if k < 45 else 'Địa điểm'} số {k}",
                kind="city_gate" if k < 45 else "venue",
                ward_code=ward_codes[k % len(ward_codes)],
                lat=21.0,
                lon=105.8,
            )
            add_device(
                conn,
                id=f"dev-{k:03d}",
                checkpoint_id=f"cp-{k:03d}",
                lane=0,
                direction="both",
                mqtt_password="bench",
            )
    print(f"  registry: {citizens_n:,} citizens in {time.monotonic() - started:.0f} s", flush=True)
    started = time.monotonic()
    rows = _passage_rows(passages_n, citizens_n, rng, sqlite)
    if sqlite:
        bulk_sqlite(engine, rows)
    else:
        _bulk_postgres(engine, rows)
    seconds = time.monotonic() - started
    print(f"  passages: {passages_n:,} in {seconds:.0f} s ({passages_n / seconds:,.0f}/s)")
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def _secondary_indexes() -> list[Index]:
    return sorted(passages.indexes, key=lambda index: index.name or "")


def bulk_sqlite(engine: Engine, rows: Iterator[tuple[object, ...]]) -> None:
    """Append the generated passages, then build the indexes once, sorted.

    Maintaining two secondary indexes row by row over 10 M random citizen ids, with
    foreign-key probes on every row, took hours; a sorted build after the load takes
    minutes. The rows are generated valid, so the checks are skipped for the load only.
    """
    marks = ", ".join("?" * 14)
    insert = f"INSERT INTO passages ({PASSAGE_COLUMNS}) VALUES ({marks})"
    # The driver's own connection in autocommit mode: SQLAlchemy would open a
    # transaction first, and SQLite ignores PRAGMA foreign_keys inside one.
    raw = engine.raw_connection()
    try:
        db = raw.driver_connection
        assert db is not None
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute("PRAGMA cache_size=-1000000")  # 1 GB for the index sorts
        for index in _secondary_indexes():
            db.execute(f"DROP INDEX {index.name}")
        batch: list[tuple[object, ...]] = []
        db.execute("BEGIN")
        for n, row in enumerate(rows, 1):
            batch.append(row)
            if len(batch) == CHUNK:
                db.executemany(insert, batch)
                batch = []
                if n % (20 * CHUNK) == 0:  # commits keep the WAL bounded
                    db.execute("COMMIT")
                    print(f"    {n:,} rows", flush=True)
                    db.execute("BEGIN")
        if batch:
            db.executemany(insert, batch)
        db.execute("COMMIT")
        for index in _secondary_indexes():
            db.execute(str(CreateIndex(index).compile(dialect=engine.dialect)))
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


def _bulk_postgres(engine: Engine, rows: Iterator[tuple[object, ...]]) -> None:
    """COPY the generated passages with the indexes and foreign-key triggers off, then index."""
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '1GB'")
        for index in _secondary_indexes():
            index.drop(conn)
        driver = conn.connection.driver_connection
        assert driver is not None
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY passages ({PASSAGE_COLUMNS}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        for index in _secondary_indexes():
            index.create(conn)


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(passages)).scalar_one())


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99


def _time(runs: int, call: Callable[[int], object]) -> tuple[float, float]:
    samples = []
    for i in range(runs):
        started = time.perf_counter()
        call(i)
        samples.append((time.perf_counter() - started) * 1000)
    return _percentiles(samples)


def _measure(engine: Engine, citizens_n: int, runs: int, baseline_runs: int) -> None:
    rng = random.Random(7)
    windows = [
        (f"cp-{rng.randrange(CHECKPOINTS):03d}",
         START + timedelta(seconds=rng.randrange((DAYS - 1) * 86_400)))
        for _ in range(max(runs, baseline_runs))
    ]  # fmt: skip
    people = [rng.randint(1, citizens_n) for _ in range(runs)]
    end = START + timedelta(days=DAYS)
    hour = timedelta(hours=1)
    with engine.connect() as conn:
        for cp, at in windows[:5]:  # warm the caches alike for every contender
            place_passages(conn, checkpoint_id=cp, since=at, until=at + hour)
        hits = [
            len(place_passages(conn, checkpoint_id=cp, since=at, until=at + hour).hits)
            for cp, at in windows[:runs]
        ]
        place = _time(
            runs,
            lambda i: place_passages(
                conn, checkpoint_id=windows[i][0], since=windows[i][1], until=windows[i][1] + hour
            ),
        )
        route = _time(
            runs,
            lambda i: citizen_route(conn, citizen_id=people[i], since=START, until=end),
        )
        contacts = _time(
            max(1, runs // 4),
            lambda i: likely_contacts(
                conn, citizen_id=people[i], since=START, until=end, window_minutes=15
            ),
        )
        baseline = _time(baseline_runs, lambda i: _unindexed_place(conn, *windows[i], hour))
    print(f"\n  {'query':<52}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"  {'place, 1 h window, first 500 (index)':<52}{place[0]:>10.2f}{place[1]:>10.2f}")
    label = "place, same query, index unusable (baseline)"
    print(f"  {label:<52}{baseline[0]:>10.2f}{baseline[1]:>10.2f}")
    print(f"  {'route, one citizen over 30 days':<52}{route[0]:>10.2f}{route[1]:>10.2f}")
    print(f"  {'contacts ±15 min over 30 days':<52}{contacts[0]:>10.2f}{contacts[1]:>10.2f}")
    print(f"  place: mean {statistics.mean(hits):.0f} rows per window; "
          f"baseline/ours p50 = {baseline[0] / place[0]:,.0f}×")  # fmt: skip


def _unindexed_place(conn: Connection, cp: str, at: datetime, hour: timedelta) -> None:
    query = place_query(checkpoint_id=cp, since=at, until=at + hour, limit=500)
    if conn.dialect.name == "sqlite":
        compiled = query.compile(dialect=conn.dialect)
        sql = str(compiled).replace("FROM passages ", "FROM passages NOT INDEXED ", 1)
        params = compiled.construct_params()
        processors = compiled._bind_processors  # the same conversions as ours
        values = tuple(
            processors[name](params[name]) if name in processors else params[name]
            for name in compiled.positiontup or []
        )
        conn.exec_driver_sql(sql, values).fetchall()
        return
    conn.exec_driver_sql("SET enable_indexscan = off")
    conn.exec_driver_sql("SET enable_bitmapscan = off")
    # A statement text of its own: psycopg prepares a statement after a few runs, and a
    # prepared plan made with the index allowed would ignore the settings above.
    compiled = query.compile(dialect=conn.dialect)
    try:
        conn.exec_driver_sql(f"/* baseline: no index */ {compiled}", compiled.params).fetchall()
    finally:
        conn.exec_driver_sql("RESET enable_indexscan")
        conn.exec_driver_sql("RESET enable_bitmapscan")


def bench_sqlite(citizens_n: int, passages_n: int, runs: int, baseline_runs: int) -> None:
    """Build (or reuse) the SQLite store and measure it."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"tracing-{passages_n}.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        if not path.exists() or _safe_count(engine) != passages_n:
            engine.dispose()
            path.unlink(missing_ok=True)
            engine = make_engine(f"sqlite:///{path}")
            upgrade(engine)
            _load(engine, citizens_n, passages_n)
        print(f"\n== sqlite: {passages_n:,} passages ({path.stat().st_size / 2**30:.2f} GiB)")
        _measure(engine, citizens_n, runs, baseline_runs)
    finally:
        engine.dispose()


def _safe_count(engine: Engine) -> int:
    try:
        return _count(engine)
    except Exception:  # noqa: BLE001 - a missing or half-built cache is rebuilt
        return -1


def bench_postgres(
    base_url: str, citizens_n: int, passages_n: int, runs: int, baseline_runs: int
) -> None:
    """Build (or reuse) a PostgreSQL database and measure it; skipped when unreachable."""
    base = normalize_url(base_url)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"kd_bench_tracing_{passages_n}"
    try:
        with admin.connect() as conn:
            known = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
    except Exception as exc:  # noqa: BLE001 - any connection failure means "skip PostgreSQL"
        print(f"\n== postgresql: skipped — not reachable: {exc}")
        admin.dispose()
        return
    engine = make_engine(base.set(database=name))
    try:
        if known is None or _safe_count(engine) != passages_n:
            engine.dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            engine = make_engine(base.set(database=name))
            upgrade(engine)
            _load(engine, citizens_n, passages_n)
        print(f"\n== postgresql: {passages_n:,} passages (database {name}, kept)")
        _measure(engine, citizens_n, runs, baseline_runs)
    finally:
        engine.dispose()
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark on both backends."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M passages, 200k citizens")
    parser.add_argument("--passages", type=lambda s: int(float(s)), default=None)
    parser.add_argument("--citizens", type=lambda s: int(float(s)), default=None)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--baseline-runs", type=int, default=5)
    parser.add_argument("--pg-url", default=os.environ.get(PG_ENV, PG_DEFAULT))
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args(argv)
    passages_n = args.passages or (1_000_000 if args.quick else 10_000_000)
    citizens_n = args.citizens or (200_000 if args.quick else 1_000_000)
    print(f"bench_tracing: {passages_n:,} passages, {citizens_n:,} citizens, {args.runs} runs")
    if not args.skip_sqlite:
        bench_sqlite(citizens_n, passages_n, args.runs, args.baseline_runs)
    if not args.skip_postgres:
        bench_postgres(args.pg_url, citizens_n, passages_n, args.runs, args.baseline_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
