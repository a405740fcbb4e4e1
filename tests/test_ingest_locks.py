"""Row-lock order on PostgreSQL: concurrent writers of the same gates queue, never deadlock.

Two aggregators sharing the stream commit batches for the same gates at the
same time, and each process's fleet flusher updates those gates' rows too.
The interleavings that deadlocked are forced here with a barrier and by
waiting until one transaction is blocked, so these tests fail every time
on the old lock order (``DeadlockDetected``), not once in a while.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text

import aggregator.ingest.writer as writer_module
from aggregator.db.fleet import DeviceStatusRow, record_device_status
from aggregator.db.schema import devices, passages
from aggregator.ingest.lookup import device_states
from aggregator.ingest.pipeline import BatchOutcome, IngestPipeline
from aggregator.ingest.tokens import TokenVerifier
from aggregator.ingest.validate import Inbound
from contract.token import Keyring, SigningKey
from contract.topics import scan_topic
from tests.ingest_world import GATES, World, build_world, payload, wait_for

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])


@pytest.fixture
def world(engine: Engine, signing_key: SigningKey) -> World:
    return build_world(engine, signing_key)


def run_together(*work: Callable[[], Any]) -> list[Any]:
    """Run each callable in its own thread; their results or the exceptions they raised."""
    results: list[Any] = [None] * len(work)

    def run(i: int) -> None:
        try:
            results[i] = work[i]()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_two_batches_of_the_same_gates_commit_side_by_side(
    engine: Engine, world: World, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both transactions have inserted their passages (foreign keys: KEY SHARE
    # locks on both gates' rows) before either takes its device-row locks.
    barrier = threading.Barrier(2, timeout=30)
    real = writer_module._track_sequences

    def after_both_inserted(*args: Any, **kwargs: Any) -> None:
        barrier.wait()
        real(*args, **kwargs)

    monkeypatch.setattr(writer_module, "_track_sequences", after_both_inserted)
    pipeline = IngestPipeline(engine, TokenVerifier(keyring))
    tokens = [p.token for p in world.people.values()]
    now = datetime.now(UTC)

    def batch(offset: int) -> Callable[[], BatchOutcome]:
        events = [
            world.scan(tokens[i % len(tokens)], device_id=GATES[i % 2])
            for i in range(offset, offset + 20)
        ]
        items = [Inbound(scan_topic(e.device_id), payload(e), now) for e in events]
        prepared = pipeline.prepare(items)
        return lambda: pipeline.store(prepared)

    outcomes = run_together(batch(0), batch(100))
    assert [type(o).__name__ for o in outcomes] == ["BatchOutcome", "BatchOutcome"], outcomes
    assert sum(len(o.result.stored) for o in outcomes) == 40
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(passages)).scalar_one() == 40
        last = dict(conn.execute(select(devices.c.id, devices.c.last_seq)).all())
    assert last[GATES[0]] is not None and last[GATES[1]] is not None


def test_fleet_flush_and_ingest_lock_gates_in_the_same_order(engine: Engine, world: World) -> None:
    now = datetime.now(UTC)
    with engine.connect() as ingest, engine.connect() as watcher:
        ingest.execute(text("SET lock_timeout = '20s'"))  # the session's, kept after commit
        ingest.commit()
        # The ingest holds the first gate's row (it locks in id order)...
        device_states(ingest, device_ids=[GATES[0]], lock=True)

        def flush() -> int:
            with engine.begin() as conn:
                # ...while the flusher has both gates to update, listed the other way round.
                rows = [DeviceStatusRow(g, "online", now, 0.5) for g in reversed(GATES)]
                return record_device_status(conn, rows=rows)

        flusher_result: list[Any] = []
        flusher = threading.Thread(target=lambda: flusher_result.extend(run_together(flush)))
        flusher.start()

        def flusher_waits() -> bool:
            waiting = watcher.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            watcher.rollback()  # pg_stat_activity is a snapshot per transaction
            return bool(waiting)

        assert wait_for(flusher_waits, timeout=30)
        # Then the ingest needs the second gate: the flusher must not be holding it.
        device_states(ingest, device_ids=[GATES[1]], lock=True)
        ingest.commit()
        flusher.join(timeout=60)
    assert flusher_result == [2]
    with engine.connect() as conn:
        states = dict(conn.execute(select(devices.c.id, devices.c.state)).all())
    assert states[GATES[0]] == states[GATES[1]] == "online"
