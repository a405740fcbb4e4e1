"""Benchmark: build a synthetic registry, then time point look-ups by identity number.

    .venv/bin/python benchmarks/bench_population.py [--citizens 1000000] [--lookups 10000]

Builds ``--citizens`` people (each with a signed declaration) into a temporary
SQLite file and, when reachable, a temporary PostgreSQL database; prints build
time, rows/s and size on disk, then p50/p99 of ``get_citizen_by_identity``
over random identity numbers beside baselines measured in the same run on the
same connection:

- ``SELECT 1``: one round trip through SQLAlchemy, the floor of any query;
- the same indexed SELECT through the raw driver (no SQLAlchemy, no pydantic);
- a Python dict holding the same keys (the in-memory lower bound).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, create_engine, select, text

from aggregator.db.engine import make_engine, normalize_url
from aggregator.db.registry import get_citizen_by_identity
from aggregator.db.schema import citizens
from simulators.population import PopulationConfig, build_population

PG_ENV = "KIEMDICH_TEST_PG"
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
AS_OF = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass
class Timing:
    """Percentiles of one measured operation, in microseconds."""

    name: str
    p50_us: float
    p99_us: float


@dataclass
class BackendResult:
    """Figures for one backend."""

    backend: str
    citizens: int
    declarations: int
    build_s: float
    size_bytes: int
    timings: list[Timing]


def _percentiles(name: str, samples_ns: list[int]) -> Timing:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Timing(name, statistics.median(ordered) / 1000, p99 / 1000)


def _time_each(keys: list[str], call: Callable[[str], object]) -> list[int]:
    samples = []
    for key in keys:
        start = time.perf_counter_ns()
        call(key)
        samples.append(time.perf_counter_ns() - start)
    return samples


def _sample_keys(conn: Connection, citizens_n: int, lookups: int, seed: int) -> list[str]:
    ids = np.random.default_rng(seed).integers(1, citizens_n + 1, size=lookups).tolist()
    found = dict(
        conn.execute(
            select(citizens.c.id, citizens.c.identity_no).where(citizens.c.id.in_(set(ids)))
        ).all()
    )
    return [found[i] for i in ids]


def _measure_lookups(conn: Connection, citizens_n: int, lookups: int) -> list[Timing]:
    keys = _sample_keys(conn, citizens_n, lookups, seed=99)
    # Warm the caches the same way for every contender.
    for key in keys[:200]:
        get_citizen_by_identity(conn, identity_no=key)

    raw = conn.connection.driver_connection
    if raw is None:
        raise RuntimeError("connection closed")
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    raw_sql = f"SELECT * FROM citizens WHERE identity_no = {mark}"

    def raw_lookup(key: str) -> object:
        cursor = raw.cursor()
        cursor.execute(raw_sql, (key,))
        row = cursor.fetchone()
        cursor.close()
        return row

    every = dict(conn.execute(select(citizens.c.identity_no, citizens.c.id)).all())
    select_one = text("SELECT 1")
    timings = [
        _percentiles(
            "get_citizen_by_identity (ours)",
            _time_each(keys, lambda k: get_citizen_by_identity(conn, identity_no=k)),
        ),
        _percentiles("raw driver, same indexed SELECT", _time_each(keys, raw_lookup)),
        _percentiles(
            "baseline: SELECT 1 round trip",
            _time_each(keys, lambda _k: conn.execute(select_one).scalar()),
        ),
        _percentiles("baseline: Python dict look-up", _time_each(keys, every.__getitem__)),
    ]
    missing = [k for k in keys[:100] if get_citizen_by_identity(conn, identity_no=k) is None]
    if missing:
        raise RuntimeError(f"look-ups failed for {missing[:3]}")
    return timings


def _sqlite_size(path: Path) -> int:
    return sum(
        p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )


def _build(url: str, out: Path, citizens_n: int, seed: int) -> tuple[int, float]:
    config = PopulationConfig(citizens=citizens_n, db_url=url, seed=seed, out=out, as_of=AS_OF)
    result = build_population(config, progress=sys.stderr.isatty())
    return result.declarations, result.seconds


def bench_sqlite(workdir: Path, citizens_n: int, lookups: int, seed: int) -> BackendResult:
    """Build into a fresh SQLite file and measure it."""
    path = workdir / "registry.db"
    url = f"sqlite:///{path}"
    declarations, seconds = _build(url, workdir / "sqlite-out", citizens_n, seed)
    engine = make_engine(url)
    try:
        size = _sqlite_size(path)
        with engine.connect() as conn:
            timings = _measure_lookups(conn, citizens_n, lookups)
    finally:
        engine.dispose()
    return BackendResult("sqlite", citizens_n, declarations, seconds, size, timings)


def bench_postgres(
    base_url: str, workdir: Path, citizens_n: int, lookups: int, seed: int
) -> BackendResult | str:
    """Build into a fresh PostgreSQL database and measure it; a reason string if unreachable."""
    base = normalize_url(base_url)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"kd_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "skip PostgreSQL"
        admin.dispose()
        return f"PostgreSQL not reachable at {base.render_as_string()}: {exc}"
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        declarations, seconds = _build(url, workdir / "pg-out", citizens_n, seed)
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                size = int(
                    conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
                )
                timings = _measure_lookups(conn, citizens_n, lookups)
        finally:
            engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return BackendResult("postgresql", citizens_n, declarations, seconds, size, timings)


def _print(result: BackendResult) -> None:
    rows = result.citizens + result.declarations
    print(
        f"\n== {result.backend}: {result.citizens:,} citizens"
        f" + {result.declarations:,} declarations"
    )
    print(f"{'build time':<40}{result.build_s:>12.1f} s")
    print(f"{'citizens/s (incl. signing tokens)':<40}{result.citizens / result.build_s:>12,.0f}")
    print(f"{'rows/s (citizens + declarations)':<40}{rows / result.build_s:>12,.0f}")
    print(f"{'size on disk':<40}{result.size_bytes / 2**20:>12,.1f} MiB")
    print(
        f"{'bytes per citizen (tables + indexes)':<40}{result.size_bytes / result.citizens:>12,.0f}"
    )
    print(
        f"\n{'point look-up by identity number':<40}{'p50 µs':>10}{'p99 µs':>10}{'p50 ratio':>11}"
    )
    ours = result.timings[0]
    for timing in result.timings:
        ratio = ours.p50_us / timing.p50_us if timing.p50_us else float("inf")
        shown = "—" if timing is ours else f"{ratio:.1f}×"
        print(f"{timing.name:<40}{timing.p50_us:>10.1f}{timing.p99_us:>10.1f}{shown:>11}")
    print("(ratio = ours p50 / that row's p50)")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one table per backend."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--citizens", type=lambda s: int(float(s)), default=1_000_000)
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--pg-url", default=os.environ.get(PG_ENV, PG_DEFAULT))
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args(argv)
    print(
        f"bench_population: {args.citizens:,} citizens, {args.lookups:,} look-ups, seed {args.seed}"
    )
    with tempfile.TemporaryDirectory(prefix="kd-bench-") as tmp:
        workdir = Path(tmp)
        _print(bench_sqlite(workdir, args.citizens, args.lookups, args.seed))
        if not args.skip_postgres:
            pg = bench_postgres(args.pg_url, workdir, args.citizens, args.lookups, args.seed)
            if isinstance(pg, str):
                print(f"\n== postgresql: skipped — {pg}")
            else:
                _print(pg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
