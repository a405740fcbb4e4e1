"""The ward notifier on real SQLite and PostgreSQL: queued passage notifications reach
the inboxes once, in order, and survive a failed move."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, text

from aggregator.db.schema import ward_notification_queue, ward_notifications
from aggregator.ingest.notifier import COLUMNS, WardNotifier, deliver, queued
from aggregator.ingest.pipeline import IngestPipeline
from aggregator.ingest.tokens import TokenVerifier
from aggregator.ingest.validate import Inbound
from contract.messages import encode
from contract.token import Keyring, SigningKey
from contract.topics import scan_topic
from tests.ingest_world import HOAN_KIEM, World, build_world, wait_for

WARD = HOAN_KIEM


@pytest.fixture
def world(engine: Engine, signing_key: SigningKey) -> World:
    return build_world(engine, signing_key)


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _rows(engine: Engine, table: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(select(*(table.c[c] for c in COLUMNS)).order_by(table.c.id))
        ]


def _queue(engine: Engine, n: int, start: int = 0) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(ward_notification_queue),
            [
                {"ward_code": WARD, "kind": "arrival", "payload": {"i": i}, "created_at": now}
                for i in range(start, start + n)
            ],
        )


def _moved_payloads(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        rows = conn.execute(select(ward_notifications.c.payload).order_by(ward_notifications.c.id))
        return [p["i"] for p in rows.scalars()]


def test_passages_queue_their_notifications_and_a_move_delivers_them_once(
    engine: Engine, world: World, keyring: Keyring
) -> None:
    pipeline = IngestPipeline(engine, TokenVerifier(keyring))
    events = [world.scan(p.token) for p in world.people.values()]
    items = [Inbound(scan_topic(e.device_id), encode(e), datetime.now(UTC)) for e in events]
    outcome = pipeline.store(pipeline.prepare(items))
    made = outcome.result.notifications
    assert made > 0
    waiting = _rows(engine, ward_notification_queue)
    assert (len(waiting), queued(engine), _count(engine, ward_notifications)) == (made, made, 0)

    assert deliver(engine) == made
    assert _rows(engine, ward_notifications) == waiting  # same rows, same order
    assert queued(engine) == 0
    assert deliver(engine) == 0  # nothing moves twice
    assert _count(engine, ward_notifications) == made


def test_a_backlog_moves_in_several_transactions_in_order(engine: Engine) -> None:
    _queue(engine, 23)
    assert deliver(engine, limit=5) == 23
    assert _moved_payloads(engine) == list(range(23))
    assert queued(engine) == 0


def test_a_failed_move_leaves_everything_queued_for_the_next(engine: Engine) -> None:
    _queue(engine, 10)
    notifier = WardNotifier(engine, interval_s=0.05)
    with engine.begin() as conn:  # a real failure: the inbox table is gone for a while
        conn.execute(text("ALTER TABLE ward_notifications RENAME TO inbox_away"))
    notifier.start()
    try:
        assert wait_for(lambda: notifier.failures >= 2)
        assert queued(engine) == 10
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE inbox_away RENAME TO ward_notifications"))
        assert wait_for(lambda: queued(engine) == 0)
    finally:
        notifier.stop()
    assert _moved_payloads(engine) == list(range(10))
    assert notifier.moved == 10


def test_stopping_moves_what_was_queued_last(engine: Engine) -> None:
    notifier = WardNotifier(engine, interval_s=60)
    _queue(engine, 3)
    notifier.start()
    assert wait_for(lambda: notifier.moved == 3)  # the first move comes at once
    _queue(engine, 4, start=3)
    notifier.stop()
    assert _moved_payloads(engine) == list(range(7))
    assert queued(engine) == 0


def test_movers_at_once_move_each_row_once(engine: Engine) -> None:
    """Aggregators sharing the stream each run a notifier (PostgreSQL): no row moves twice."""
    _queue(engine, 2000)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def mover() -> None:
        try:
            start.wait()
            deliver(engine, limit=50)
        except Exception as exc:  # noqa: BLE001 - reported below, from the main thread
            errors.append(exc)

    threads = [threading.Thread(target=mover) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(_moved_payloads(engine)) == list(range(2000))
    assert queued(engine) == 0
