"""Data retention: delete what the system no longer needs, a few thousand rows per transaction.

What is deleted (docs/architecture.md, "Data retention", says why):

=============================  ===============================================================
table                          deleted when
=============================  ===============================================================
``passages`` (+ crops)         seen (or received) before the passage cutoff, unless an alert
                               or a ward notification that is kept still points at it
``ward_notifications``         handled and created before the passage cutoff; unhandled ones
                               only before the longer ``unhandled_notification_days`` cutoff
``alerts`` (+ actions)         resolved, and resolved before the alert cutoff; open and
                               acknowledged alerts never
``checkpoint_minute_rollups``  minute before the rollup cutoff (reports read only these)
``dead_letters``               received before the passage cutoff
``device_seq_gaps``            detected before the passage cutoff
``public_requests``,           older than :data:`RATE_LIMIT_KEEP` (rate-limit counters; the
``login_failures``             windows they serve are minutes to an hour)
``officer_sessions``           expired
``audit_log``                  only when ``audit_retention_days`` is set (default: kept)
=============================  ===============================================================

Day cutoffs fall on a Vietnam midnight: keeping N days keeps today and the N
whole days before it, so a day the daily report can still show is never cut in
half.

Each transaction deletes at most ``chunk_rows`` rows of a table, found through
an index: by the time column where one exists, else by walking the primary key
in order (``passages`` by its time-ordered UUIDv7 event id, ``ward_notifications``
by its growing id). The walk stops at the first chunk whose rows are all a day
or more newer than the cutoff, so a run reads the old end of a table, never all
of it. Keys are read in a read-only transaction and deleted in a separate
transaction that starts with the delete and re-checks the condition: on SQLite
that transaction takes the write lock first (and waits for it), and a row
changed in between is simply left for the next run. The ingest writer
therefore waits at most one chunk's delete.

A dry run reads the same chunks and counts instead of deleting. The counts of
both are exact: a passage kept only by an alert or a notification that the
same run deletes is counted as deleted.

Two runs never overlap: :func:`retention_lock` is a PostgreSQL advisory lock,
or an exclusive ``flock`` on a file beside the SQLite database.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    delete,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    text,
)

from aggregator.db.engine import in_transaction
from aggregator.db.schema import (
    AlertStatus,
    alert_actions,
    alerts,
    audit_log,
    checkpoint_minute_rollups,
    checkpoints,
    dead_letters,
    device_seq_gaps,
    login_failures,
    officer_sessions,
    passage_crops,
    passages,
    public_requests,
    ward_notifications,
)
from aggregator.db.traffic import local_day_start

log = logging.getLogger(__name__)

# Rate-limit rows are pruned by the forms themselves once older than their window
# (15 min for logins, 1 h for the public form); these are the leftovers of
# addresses that never came back.
RATE_LIMIT_KEEP = timedelta(days=2)
# A walked table is left once a whole chunk is this much newer than its cutoff:
# rows are appended roughly in time order, a few seconds out of order at most.
WALK_SLACK = timedelta(days=1)
# Key of the PostgreSQL advisory lock (any constant shared by every process): "kdretent".
ADVISORY_LOCK_KEY = 0x6B64_7265_7465_6E74

# In the order they are processed (children before their parents), as reported.
TABLES: tuple[str, ...] = (
    "alert_actions",
    "alerts",
    "ward_notifications",
    "passage_crops",
    "passages",
    "checkpoint_minute_rollups",
    "dead_letters",
    "device_seq_gaps",
    "public_requests",
    "login_failures",
    "officer_sessions",
    "audit_log",
)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long each kind of row is kept (days; 0 = forever) and how big a transaction is.

    ``retention_days`` 0 disables retention altogether (nothing is deleted).
    ``unhandled_notification_days`` below ``retention_days`` is raised to it:
    an unhandled notification is never deleted before a handled one.
    """

    retention_days: int = 28
    unhandled_notification_days: int = 90
    alert_retention_days: int = 365
    rollup_retention_days: int = 400
    audit_retention_days: int = 0
    chunk_rows: int = 5000
    pause_s: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "retention_days",
            "unhandled_notification_days",
            "alert_retention_days",
            "rollup_retention_days",
            "audit_retention_days",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = keep forever)")
        if self.chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")
        if self.pause_s < 0:
            raise ValueError("pause_s must be >= 0")

    @property
    def enabled(self) -> bool:
        """False when ``retention_days`` is 0: nothing is ever deleted."""
        return self.retention_days > 0


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Rows older than these instants (UTC) go; None: that kind is kept forever."""

    passages: datetime
    unhandled_notifications: datetime
    alerts: datetime | None
    rollups: datetime | None
    audit: datetime | None
    rate_limits: datetime
    sessions: datetime


def day_cutoff(now: datetime, days: int) -> datetime:
    """Vietnam midnight starting the day ``days`` days before ``now``'s day, in UTC."""
    return (local_day_start(now) - timedelta(days=days)).astimezone(UTC)


def cutoffs(policy: RetentionPolicy, now: datetime) -> Cutoffs:
    """The cutoffs ``policy`` gives at ``now`` (an aware datetime)."""

    def optional(days: int) -> datetime | None:
        return day_cutoff(now, days) if days > 0 else None

    unhandled = max(policy.unhandled_notification_days, policy.retention_days)
    return Cutoffs(
        passages=day_cutoff(now, policy.retention_days),
        unhandled_notifications=day_cutoff(now, unhandled),
        alerts=optional(policy.alert_retention_days),
        rollups=optional(policy.rollup_retention_days),
        audit=optional(policy.audit_retention_days),
        rate_limits=now.astimezone(UTC) - RATE_LIMIT_KEEP,
        sessions=now.astimezone(UTC),
    )


@dataclass
class RetentionReport:
    """What one run deleted (or, dry, would delete): rows and transactions per table."""

    dry_run: bool
    now: datetime
    cutoffs: Cutoffs | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    chunks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    largest_chunk: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def total(self) -> int:
        """Rows deleted (or that would be) over every table."""
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line for the log: the non-zero counts."""
        parts = [f"{name}={n}" for name, n in self.counts.items() if n]
        verb = "would delete" if self.dry_run else "deleted"
        what = ", ".join(parts) if parts else "nothing"
        tail = " (interrupted)" if self.interrupted else ""
        transactions = sum(self.chunks.values())
        return f"{verb} {what} in {self.elapsed_s:.2f} s, {transactions} chunks{tail}"

    def _add(self, table: str, rows: int) -> None:
        self.counts[table] += rows
        self.largest_chunk = max(self.largest_chunk, rows)


# --- conditions ------------------------------------------------------------------------


def _alert_expired(cut: Cutoffs) -> ColumnElement[bool]:
    if cut.alerts is None:
        return false()
    a = alerts.c
    return and_(
        a.status == AlertStatus.RESOLVED.value,
        # resolved_at >= created_at: this bound lets the (status, created_at) index serve.
        a.created_at < cut.alerts,
        func.coalesce(a.resolved_at, a.created_at) < cut.alerts,
    )


def _notification_expired(cut: Cutoffs) -> ColumnElement[bool]:
    n = ward_notifications.c
    return or_(
        and_(n.handled_at.is_not(None), n.created_at < cut.passages),
        n.created_at < cut.unhandled_notifications,
    )


def _passage_expired(cut: Cutoffs) -> ColumnElement[bool]:
    p = passages.c
    # An alert or a notification that stays keeps its passage (the alert screen shows
    # the gate, lane, time and crop); one this run deletes does not.
    kept_alert = exists().where(alerts.c.event_id == p.event_id, not_(_alert_expired(cut)))
    kept_notice = exists().where(
        ward_notifications.c.event_id == p.event_id, not_(_notification_expired(cut))
    )
    return and_(
        or_(p.seen_at < cut.passages, p.received_at < cut.passages),
        not_(kept_alert),
        not_(kept_notice),
    )


# --- the run ---------------------------------------------------------------------------


class _Run:
    def __init__(
        self,
        engine: Engine,
        policy: RetentionPolicy,
        report: RetentionReport,
        cut: Cutoffs,
        should_stop: Callable[[], bool],
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.report = report
        self.cut = cut
        self.should_stop = should_stop
        self.dry = report.dry_run

    # Reads never hold a write lock; writes start with their DELETE (see the module doc).
    def _read(self, query: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def _count(self, query: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def _write(self, work: Callable[[Connection], dict[str, int]]) -> dict[str, int]:
        deleted = in_transaction(self.engine, work)
        for table, rows in deleted.items():
            self.report._add(table, rows)
        self.report.chunks[next(reversed(deleted))] += 1
        if self.policy.pause_s:
            # Let the ingest writer in between two chunks.
            time.sleep(self.policy.pause_s)
        return deleted

    def _stopping(self) -> bool:
        if self.should_stop():
            self.report.interrupted = True
            return True
        return False

    def by_condition(
        self,
        table: Table,
        condition: ColumnElement[bool],
        order_by: ColumnElement[Any],
        children: Sequence[tuple[Table, ColumnElement[Any]]] = (),
    ) -> None:
        """Delete ``table``'s rows matching ``condition`` (found through ``order_by``'s index)."""
        key = table.primary_key.columns.values()[0]
        if self.dry:
            matching = select(key).where(condition).scalar_subquery()
            for child, fk in children:
                self.report._add(
                    child.name,
                    self._count(select(func.count()).select_from(child).where(fk.in_(matching))),
                )
            self.report._add(
                table.name, self._count(select(func.count()).select_from(table).where(condition))
            )
            return
        n = self.policy.chunk_rows
        while not self._stopping():
            keys = [
                row[0]
                for row in self._read(select(key).where(condition).order_by(order_by).limit(n))
            ]
            if not keys:
                return

            def work(conn: Connection, keys: list[Any] = keys) -> dict[str, int]:
                out: dict[str, int] = {}
                for child, fk in children:
                    out[child.name] = conn.execute(delete(child).where(fk.in_(keys))).rowcount
                out[table.name] = conn.execute(
                    delete(table).where(key.in_(keys), condition)
                ).rowcount
                return out

            deleted = self._write(work)
            # Fewer than asked: the rest is newer. None at all: rows changed under us.
            if len(keys) < n or deleted[table.name] == 0:
                return

    def walk(
        self,
        table: Table,
        condition: ColumnElement[bool],
        ages: Sequence[ColumnElement[Any]],
        horizon: datetime,
        children: Sequence[tuple[Table, ColumnElement[Any]]] = (),
    ) -> None:
        """Delete ``table``'s rows matching ``condition``, walking its primary key from the start.

        Each step reads the next ``chunk_rows`` keys (and the ``ages`` columns), then
        deletes the matching rows within that key range. The walk ends when a whole
        step is at or after ``horizon``.
        """
        key = table.primary_key.columns.values()[0]
        n = self.policy.chunk_rows
        last: Any = None
        while not self._stopping():
            query = select(key, *ages).order_by(key).limit(n)
            if last is not None:
                query = query.where(key > last)
            rows = self._read(query)
            if not rows:
                return
            low, high = rows[0][0], rows[-1][0]
            in_range = and_(key >= low, key <= high, condition)
            if self.dry:
                matching = select(key).where(in_range).scalar_subquery()
                for child, fk in children:
                    self.report._add(
                        child.name,
                        self._count(
                            select(func.count()).select_from(child).where(fk.in_(matching))
                        ),
                    )
                self.report._add(
                    table.name, self._count(select(func.count()).select_from(table).where(in_range))
                )
            else:

                def work(
                    conn: Connection, in_range: ColumnElement[bool] = in_range
                ) -> dict[str, int]:
                    out: dict[str, int] = {}
                    for child, fk in children:
                        matching = select(key).where(in_range)
                        out[child.name] = conn.execute(
                            delete(child).where(fk.in_(matching))
                        ).rowcount
                    out[table.name] = conn.execute(delete(table).where(in_range)).rowcount
                    return out

                self._write(work)
            last = high
            if len(rows) < n or all(min(row[1:]) >= horizon for row in rows):
                return

    def rollups(self, cutoff: datetime) -> None:
        """Delete minute rollups before ``cutoff``, one checkpoint's key range at a time."""
        r = checkpoint_minute_rollups.c
        ids = [row[0] for row in self._read(select(checkpoints.c.id).order_by(checkpoints.c.id))]
        n = self.policy.chunk_rows
        for checkpoint_id in ids:
            old = and_(r.checkpoint_id == checkpoint_id, r.minute < cutoff)
            if self.dry:
                self.report._add(
                    checkpoint_minute_rollups.name,
                    self._count(
                        select(func.count()).select_from(checkpoint_minute_rollups).where(old)
                    ),
                )
                continue
            while not self._stopping():
                rows = self._read(
                    select(r.minute, r.direction)
                    .where(old)
                    .order_by(r.minute, r.direction)
                    .limit(n)
                )
                if not rows:
                    break
                minute, direction = rows[-1]
                upto = or_(r.minute < minute, and_(r.minute == minute, r.direction <= direction))

                def work(
                    conn: Connection, upto: ColumnElement[bool] = upto, old: Any = old
                ) -> dict[str, int]:
                    result = conn.execute(delete(checkpoint_minute_rollups).where(old, upto))
                    return {checkpoint_minute_rollups.name: result.rowcount}

                self._write(work)
                if len(rows) < n:
                    break


def run_retention(
    engine: Engine,
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> RetentionReport:
    """Delete (or with ``dry_run`` count) what ``policy`` no longer keeps at ``now``.

    Takes no lock: callers that may run concurrently hold :func:`retention_lock`.
    ``should_stop`` is asked between chunks; a run it stops reports what it did
    so far with ``interrupted`` set. Returns the counts per table (every table of
    :data:`TABLES`, zeros included).
    """
    now = now if now is not None else datetime.now(UTC)
    started = time.monotonic()
    if not policy.enabled:
        return RetentionReport(dry_run=dry_run, now=now, cutoffs=None)
    cut = cutoffs(policy, now)
    report = RetentionReport(dry_run=dry_run, now=now, cutoffs=cut)
    run = _Run(engine, policy, report, cut, should_stop or (lambda: False))

    if cut.alerts is not None:
        run.by_condition(
            alerts,
            _alert_expired(cut),
            alerts.c.created_at,
            children=[(alert_actions, alert_actions.c.alert_id)],
        )
    run.walk(
        ward_notifications,
        _notification_expired(cut),
        [ward_notifications.c.created_at],
        cut.passages + WALK_SLACK,
    )
    run.walk(
        passages,
        _passage_expired(cut),
        [passages.c.seen_at, passages.c.received_at],
        cut.passages + WALK_SLACK,
        children=[(passage_crops, passage_crops.c.event_id)],
    )
    if cut.rollups is not None:
        run.rollups(cut.rollups)
    run.by_condition(
        dead_letters, dead_letters.c.received_at < cut.passages, dead_letters.c.received_at
    )
    run.by_condition(
        device_seq_gaps, device_seq_gaps.c.detected_at < cut.passages, device_seq_gaps.c.id
    )
    run.by_condition(public_requests, public_requests.c.at < cut.rate_limits, public_requests.c.at)
    run.by_condition(login_failures, login_failures.c.at < cut.rate_limits, login_failures.c.at)
    run.by_condition(
        officer_sessions,
        officer_sessions.c.expires_at <= cut.sessions,
        officer_sessions.c.expires_at,
    )
    if cut.audit is not None:
        run.by_condition(audit_log, audit_log.c.at < cut.audit, audit_log.c.at)

    report.elapsed_s = time.monotonic() - started
    return report


# --- one run at a time ---------------------------------------------------------------------

_MEMORY_LOCK = threading.Lock()


@contextmanager
def retention_lock(engine: Engine) -> Iterator[bool]:
    """Hold the retention lock while the block runs; yields False if another run holds it.

    PostgreSQL: a session advisory lock on a connection kept for the block (its
    transaction is committed at once, so no snapshot stays open). SQLite: an
    exclusive ``flock`` on ``<database>-retention.lock`` (processes on one machine
    share a SQLite file), or a process lock for an in-memory database.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = bool(
                conn.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
                ).scalar_one()
            )
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY}
                    )
                    conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:" or "mode=memory" in str(engine.url):
        got = _MEMORY_LOCK.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                _MEMORY_LOCK.release()
        return
    fd = os.open(f"{database}-retention.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
