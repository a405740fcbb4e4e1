"""The ward notifier: queued passage notifications into the wards' inboxes, in bulk.

Ingest writes each passage's departure and arrival notifications into
``ward_notification_queue``, in the passage's own transaction. That table has
no ward-keyed index, so the write appends. :func:`move_queued` moves the
queue into ``ward_notifications`` in one statement, oldest first, so each
ward's inbox-index leaf is written once per move, not once per scan.
:class:`WardNotifier` runs the move every ``interval_s`` on its own thread.

A notification therefore reaches the ward's inbox about a second after its
passage is committed. It is never lost: the rows leave the queue in the
same transaction that adds them to the inbox, so a crash or a database
error leaves them queued for the next move. It is never moved twice either.
On PostgreSQL the move takes its rows ``FOR UPDATE SKIP LOCKED``, so
aggregators sharing the stream never move the same row. On SQLite the
transaction holds the write lock from its start.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Connection, Engine, delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from aggregator.db.engine import write_transaction
from aggregator.db.schema import ward_notification_queue, ward_notifications

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 1.0
# A move at 5,000 scans/s (10,000 notifications/s) holds SQLite's write lock for
# a fraction of a second; a backlog after a stop is moved in several.
DEFAULT_MOVE_LIMIT = 50_000
COLUMNS = ("ward_code", "kind", "citizen_id", "event_id", "payload", "created_at")


def move_queued(conn: Connection, *, limit: int = DEFAULT_MOVE_LIMIT) -> int:
    """Move up to ``limit`` queued notifications, oldest first, in the caller's transaction.

    Returns how many were moved. On SQLite the transaction must be a
    :func:`~aggregator.db.engine.write_transaction` (nothing may be queued
    between the copy and the delete).
    """
    if limit < 1:
        raise ValueError(f"limit must be positive: {limit}")
    q = ward_notification_queue
    picked = select(q.c.id).order_by(q.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        moved = (
            delete(q)
            .where(q.c.id.in_(picked.with_for_update(skip_locked=True)))
            .returning(q.c.id, *(q.c[c] for c in COLUMNS))
            .cte("moved")
        )
        rows = select(*(moved.c[c] for c in COLUMNS)).order_by(moved.c.id)
        # psycopg reports no row count for an INSERT fed by a data-modifying CTE.
        added = insert(ward_notifications).from_select(COLUMNS, rows)
        return len(conn.execute(added.returning(ward_notifications.c.id)).all())
    last = conn.execute(select(func.max(picked.subquery().c.id))).scalar_one()
    if last is None:
        return 0
    rows = select(*(q.c[c] for c in COLUMNS)).where(q.c.id <= last).order_by(q.c.id)
    conn.execute(insert(ward_notifications).from_select(COLUMNS, rows))
    return conn.execute(delete(q).where(q.c.id <= last)).rowcount


def deliver(engine: Engine, *, limit: int = DEFAULT_MOVE_LIMIT) -> int:
    """Move the whole queue, ``limit`` rows per transaction; returns how many were moved."""
    total = 0
    while True:
        with write_transaction(engine) as conn:
            moved = move_queued(conn, limit=limit)
        total += moved
        if moved < limit:
            return total


def queued(engine: Engine) -> int:
    """How many notifications wait in the queue."""
    with engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).select_from(ward_notification_queue)).scalar_one()
        )


class WardNotifier:
    """Moves the queue every ``interval_s`` on a background thread."""

    def __init__(
        self,
        engine: Engine,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        limit: int = DEFAULT_MOVE_LIMIT,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive: {interval_s}")
        self.engine = engine
        self.interval_s = interval_s
        self.limit = limit
        self.moved = 0
        self.failures = 0
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (it moves what an earlier run left queued first)."""
        if self._thread is not None:
            return
        self._halt.clear()
        self._thread = threading.Thread(target=self._run, name="ward-notifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last move (what cannot be moved stays queued)."""
        if self._thread is None:
            return
        self._halt.set()
        self._thread.join(timeout=30)
        self._thread = None

    def _tick(self) -> None:
        try:
            self.moved += deliver(self.engine, limit=self.limit)
        except SQLAlchemyError as exc:
            # Nothing left the queue: the next tick tries the same rows again.
            self.failures += 1
            log.warning("could not move ward notifications, retrying: %s", exc)

    def _run(self) -> None:
        while True:
            self._tick()
            if self._halt.wait(self.interval_s):
                self._tick()
                return
