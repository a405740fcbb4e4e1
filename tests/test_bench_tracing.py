"""The tracing benchmark's bulk build leaves a store like the ingest's: every row, every
index, the foreign keys enforced again (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.exc import IntegrityError

from aggregator.db.schema import passages
from aggregator.db.tracing import place_passages
from benchmarks import bench_tracing


def test_bulk_build_keeps_indexes_and_foreign_keys(engine: Engine) -> None:
    bench_tracing._load(engine, citizens_n=300, passages_n=3_000)

    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(passages)).scalar_one() == 3_000
        names = {index["name"] for index in inspect(conn).get_indexes("passages")}
        assert {"ix_passages_checkpoint_id_seen_at", "ix_passages_citizen_id_seen_at"} <= names
        # The busiest gate over the whole month: the indexed query finds each of its rows.
        since = bench_tracing.START
        until = since + timedelta(days=bench_tracing.DAYS + 1)
        expected = conn.execute(
            select(func.count()).select_from(passages).where(passages.c.checkpoint_id == "cp-000")
        ).scalar_one()
        found = place_passages(
            conn, checkpoint_id="cp-000", since=since, until=until, limit=5_000
        ).hits
        assert len(found) == expected > 0

    # A fresh connection checks foreign keys again (the load turned them off for itself).
    row = dict(
        zip(
            [c.strip() for c in bench_tracing.PASSAGE_COLUMNS.split(",")],
            next(bench_tracing._passage_rows(1, 300, random.Random(1), False)),
            strict=True,
        )
    )
    row["device_id"] = "no-such-device"
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(passages.insert().values(**row))
