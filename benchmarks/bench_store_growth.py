"""Benchmark: WAL written per ingest batch as the SQLite store grows, and which index writes it.

    .venv/bin/python benchmarks/bench_store_growth.py [--quick]

Each batch is what ingest writes for 500 scans: 500 passages and two ward
notifications per passage (origin and destination), into the real schema
(``aggregator.db.schema``), with the raw sqlite3 driver so that only the
store's own work is measured. Citizens are drawn from 1,000,000 and wards
from 10,000 across the country. The automatic checkpoint is off and the WAL
truncated before each measure, so the WAL's growth over a commit is exactly
the pages that commit wrote (the background checkpoint later writes them
into the database file a second time).

Printed: pages and MiB per batch, and raw time per batch, at each store
size beside the empty store (the baseline); then, at the largest size, the
same with each index that takes a random key dropped in turn.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine

from aggregator.db.schema import metadata

BATCH = 500
CITIZENS = 1_000_000
WARDS = 10_000
PAGE = 4096 + 24  # a WAL frame: page plus frame header
SAMPLES = 20
RANDOM_KEYED = {
    "passages(citizen_id, seen_at)": ("ix_passages_citizen_id_seen_at",),
    "ward_notifications by ward (the unhandled inbox)": ("ix_ward_notifications_inbox",),
}
_PASSAGE_SQL = (
    "INSERT INTO passages (event_id, device_id, checkpoint_id, seq, lane, direction, seen_at,"
    " received_at, declaration_id, citizen_id, verdict, reason, quality, clock_skew_s)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_NOTIFICATION_SQL = (
    "INSERT INTO ward_notifications (ward_code, kind, citizen_id, event_id, payload, created_at)"
    " VALUES (?,?,?,?,?,?)"
)


class Store:
    """A fresh store on the real schema, filled batch by batch with synthetic ingest."""

    def __init__(self, path: Path, drop: tuple[str, ...] = ()) -> None:
        engine = create_engine(f"sqlite:///{path}")
        metadata.create_all(engine)
        engine.dispose()
        self.path = path
        self.wal = Path(f"{path}-wal")
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=OFF",  # no registry here to point at
            "cache_size=-65536",  # as the aggregator's connections
            "wal_autocheckpoint=0",
        ):
            self.conn.execute(f"PRAGMA {pragma}")
        for index in drop:
            self.conn.execute(f"DROP INDEX {index}")
        self.rnd = random.Random(1)
        self.wards = [self.rnd.randrange(1, 32_000) for _ in range(WARDS)]
        self.clock = 1_700_000_000.0
        self.passages = 0

    def batch(self) -> None:
        """Write one ingest batch in one transaction."""
        rnd = self.rnd
        passages, notifications = [], []
        for _ in range(BATCH):
            self.clock += 1 / 4000
            ms = int(self.clock * 1000)
            event_id = uuid.UUID(int=(ms << 80) | rnd.getrandbits(80)).hex  # time-ordered, as v7
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.clock))
            at += f".{int(self.clock % 1 * 1e6):06d}"
            citizen = rnd.randrange(1, CITIZENS + 1)
            where = (f"dev-{rnd.randrange(180)}", f"cp-{rnd.randrange(45)}", 1, 0, "in")
            passages.append((event_id, *where, at, at, citizen, citizen, "green", "ok", None, None))
            payload = json.dumps({"checkpoint_id": "cp", "seen_at": at})
            for ward in (rnd.choice(self.wards), rnd.choice(self.wards)):
                notifications.append((ward, "arrival", citizen, event_id, payload, at))
        self.conn.execute("BEGIN")
        self.conn.executemany(_PASSAGE_SQL, passages)
        self.conn.executemany(_NOTIFICATION_SQL, notifications)
        self.conn.execute("COMMIT")
        self.passages += BATCH

    def grow_to(self, passages: int) -> None:
        """Fill up to ``passages``, checkpointing now and then as the aggregator does."""
        while self.passages < passages:
            self.batch()
            if self.passages % 50_000 == 0:
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def measure(self) -> tuple[float, float]:
        """Mean WAL bytes and seconds per batch over SAMPLES batches."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        written = 0
        started = time.perf_counter()
        for _ in range(SAMPLES):
            before = self.wal.stat().st_size if self.wal.exists() else 0
            self.batch()
            written += self.wal.stat().st_size - before
        return written / SAMPLES, (time.perf_counter() - started) / SAMPLES

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _row(label: str, wal: float, seconds: float, base: tuple[float, float] | None) -> str:
    ratio = f"{wal / base[0]:4.1f}× pages, {seconds / base[1]:4.1f}× time" if base else "baseline"
    return (
        f"{label:<50} {wal / PAGE:7,.0f} pages {wal / 2**20:6.2f} MiB "
        f"{seconds * 1000:6.1f} ms   {ratio}"
    )


def main(argv: list[str] | None = None) -> int:
    """Grow a store, print the WAL per batch at each size and per dropped index."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="up to 200,000 passages")
    args = parser.parse_args(argv)
    sizes = (0, 200_000) if args.quick else (0, 100_000, 1_000_000, 3_000_000)
    with tempfile.TemporaryDirectory(prefix="kd-growth-") as tmp:
        print(f"== SQLite WAL per ingest batch ({BATCH} passages + {2 * BATCH} notifications)")
        store = Store(Path(tmp) / "all.db")
        base = None
        for size in sizes:
            store.grow_to(size)
            wal, seconds = store.measure()
            print(_row(f"store of {size:,} passages", wal, seconds, base), flush=True)
            base = base or (wal, seconds)
        whole = (wal, seconds)
        store.close()
        largest = sizes[-1]
        print(f"-- at {largest:,} passages, one random-keyed index dropped at a time")
        for label, indexes in RANDOM_KEYED.items():
            variant = Store(Path(tmp) / f"{indexes[0]}.db", drop=indexes)
            variant.grow_to(largest)
            wal, seconds = variant.measure()
            variant.close()
            print(_row(f"without {label}", wal, seconds, whole), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
