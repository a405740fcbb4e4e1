"""The edge agent's durable outbox: every passage is on disk before it is published.

Storage
    One SQLite file in WAL mode with ``synchronous=FULL``: a commit is on the
    SD card when :meth:`Outbox.enqueue` returns, so kill -9 or a power cut
    loses nothing that was reported as enqueued. Only the stdlib ``sqlite3``
    is used (the edge does not carry SQLAlchemy). One connection, guarded by
    a lock, serves every thread (the capture thread enqueues, the MQTT
    publisher reads and acknowledges).

Sequence numbers
    One outbox belongs to one device. Each event gets the next per-device
    ``seq`` inside the transaction that stores it (the caller's ``build``
    callback writes it into the ScanEvent), so a seq is never reused: the
    counter lives in its own row and only grows, whatever is deleted. A
    sidecar file ``<path>.seq`` reserves seqs in blocks of
    :data:`SEQ_BLOCK`, so a database moved aside as corrupt (or deleted by
    hand) restarts numbering above every seq it may have handed out; the
    aggregator sees one gap there, which is true: those events are gone.

Capacity policy (``max_events`` / ``max_bytes``, payload bytes)
    ``strip_crops_then_drop_oldest`` (default): over ``max_bytes``, the JPEG
    crops of the oldest events are removed first (the passage record itself
    is a few hundred bytes and is all tracing needs); if still over, or over
    ``max_events`` (which stripping cannot fix), the oldest events are
    dropped. ``drop_oldest`` skips the stripping. Every strip and drop is
    counted and raises the alarms ``outbox_full`` (capacity reached) and
    ``outbox_dropped`` (events lost) for ``alarm_hold_s``; the agent's status
    message carries them.

Disk full and I/O errors
    A failed write (``database or disk is full``, an I/O error, ``max_file_bytes``
    reached) is logged, raises the alarm ``disk_full`` (or ``outbox_io_error``)
    and never reaches the caller: the event goes to an in-memory overflow
    buffer (``overflow_max_events`` / ``overflow_max_bytes``, default 1,000
    events / 8 MiB, the same strip-then-drop policy) that is written to disk,
    in order, as soon as a write succeeds again (tried at most every
    ``overflow_retry_s``). Overflow events are published like the others.
    When the overflow is full too, it strips the crops of its oldest events,
    then drops its oldest: what is lost is the oldest of the events made
    after the disk filled; everything already on disk and the newest events
    are kept (the aggregator sees the dropped ones as one sequence gap).
    Limits: overflow events die with the process; and if even the counter
    row could not be updated, their seqs may be handed out again after that
    restart.

    An outbox must never fill its card by itself: SQLite needs new pages to
    delete (Debian's build zeroes what it deletes, through the WAL) and to
    checkpoint, so a full card would keep acknowledged events forever.
    Without ``max_file_bytes`` the ceiling is the outbox's size plus the free
    space at start, less a quarter of that (at most 64 MiB), and the WAL is
    checkpointed within half that reserve; if a deletion still fails for want
    of space, events are deleted one per transaction with a checkpoint
    between.

Corruption
    At start the file gets ``PRAGMA quick_check``; a file SQLite calls
    corrupt or not a database (or one written by a newer schema) is renamed
    ``<name>.corrupt-<UTC timestamp>`` with its WAL, a new one is created and
    the alarm ``outbox_corrupt`` is raised. Nothing is deleted.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contract.messages import MAX_SCAN_BYTES, ScanEvent, encode

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SEQ_BLOCK = 1024
_PAGE_SIZE = 4096
_SQLITE_MAX_PAGES = 4294967294
# Room the outbox leaves on its card when no max_file_bytes is set: SQLite needs
# new pages to delete (the WAL) and to checkpoint, so an outbox that filled the
# card by itself could never remove the events the broker acknowledged.
_RESERVE_MAX = 64 * 1024 * 1024
_SIDE_FILES = 64 * 1024


def automatic_ceiling(path: Path) -> tuple[int, int]:
    """The file ceiling used when none is configured, and the reserve it leaves: what
    the outbox holds plus the free space, less a quarter of that (at most 64 MiB)."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return _SQLITE_MAX_PAGES * _PAGE_SIZE, _RESERVE_MAX
    used = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            used += os.stat(f"{path}{suffix}").st_size
    room = used + st.f_bavail * st.f_frsize
    reserve = min(_RESERVE_MAX, room // 4)
    # Besides the WAL: the shared-memory index (32 KiB) and the sequence file.
    return max(16 * _PAGE_SIZE, room - reserve - _SIDE_FILES), reserve


_EVICT_BATCH = 64
_EVICTION_LOG_EVERY_S = 60.0

ALARM_FULL = "outbox_full"
ALARM_DROPPED = "outbox_dropped"
ALARM_DISK_FULL = "disk_full"
ALARM_IO_ERROR = "outbox_io_error"
ALARM_CORRUPT = "outbox_corrupt"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        created_at REAL NOT NULL,
        payload BLOB NOT NULL,
        crop_bytes INTEGER NOT NULL DEFAULT 0
    )""",
    # Stripping walks the oldest events that still carry a crop; without the
    # partial index it would rescan every already-stripped row each time.
    "CREATE INDEX IF NOT EXISTS events_with_crop ON events(seq) WHERE crop_bytes > 0",
    """CREATE TABLE IF NOT EXISTS counter (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        next_seq INTEGER NOT NULL
    )""",
)


class CapacityPolicy(StrEnum):
    """What the outbox gives up first when it is full."""

    STRIP_CROPS_THEN_DROP_OLDEST = "strip_crops_then_drop_oldest"
    DROP_OLDEST = "drop_oldest"


class OutboxConfig(BaseModel):
    """Where the outbox lives and how large it may grow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path = Path("var/edge/outbox.sqlite3")
    max_events: int = Field(
        default=200_000, ge=1, description="events kept while offline (~3 weeks at one gate)"
    )
    max_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=MAX_SCAN_BYTES,
        description="payload bytes kept (the file is somewhat larger)",
    )
    policy: CapacityPolicy = CapacityPolicy.STRIP_CROPS_THEN_DROP_OLDEST
    synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL", description="FULL survives power loss; NORMAL only a process crash"
    )
    max_file_bytes: int | None = Field(
        default=None,
        ge=16 * _PAGE_SIZE,
        description="hard ceiling on the database file (SQLite max_page_count), so logs "
        "and config on the same card keep room; unset: the outbox's size plus the free space "
        "at start, less a quarter of that (at most 64 MiB)",
    )
    overflow_max_events: int = Field(default=1000, ge=1)
    overflow_max_bytes: int = Field(default=8 * 1024 * 1024, ge=MAX_SCAN_BYTES)
    overflow_retry_s: float = Field(default=1.0, ge=0.0)
    alarm_hold_s: float = Field(
        default=3600.0, gt=0, description="how long a strip/drop/disk alarm stays raised"
    )
    check_on_start: bool = Field(default=True, description="PRAGMA quick_check when opening")


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One stored event, ready to publish as is."""

    seq: int
    payload: bytes
    created_at: float


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Counters since start, for the status message and metrics."""

    depth: int
    payload_bytes: int
    oldest_age_s: float | None
    next_seq: int
    capacity: int
    enqueued: int
    acked: int
    crops_stripped: int
    dropped: int
    write_errors: int
    overflow_depth: int
    corrupt_files_moved: int


class OutboxError(RuntimeError):
    """The outbox could not complete an operation (the caller retries later)."""


@dataclass(slots=True)
class _Pending:
    seq: int
    payload: bytes
    created_at: float
    crop_bytes: int


def strip_crop(payload: bytes) -> bytes:
    """The same scan event without its JPEG crop.

    Works on the JSON itself rather than the model, so events stored by an
    older firmware are stripped the same way.
    """
    doc = json.loads(payload)
    doc.pop("crop_jpeg", None)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _write_alarm(exc: sqlite3.Error | OSError) -> str:
    if isinstance(exc, OSError):
        return ALARM_DISK_FULL if exc.errno == errno.ENOSPC else ALARM_IO_ERROR
    code = getattr(exc, "sqlite_errorcode", None)
    return ALARM_DISK_FULL if code == sqlite3.SQLITE_FULL else ALARM_IO_ERROR


class _CorruptOutboxError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Outbox:
    """Durable FIFO of encoded scan events for one device (thread-safe)."""

    def __init__(self, config: OutboxConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._listener: Callable[[], None] | None = None
        self._overflow: deque[_Pending] = deque()
        self._overflow_bytes = 0
        self._next_overflow_try = 0.0
        self._alarm_until: dict[str, float] = {}
        self._count = 0
        self._bytes = 0
        self._enqueued = 0
        self._acked = 0
        self._stripped = 0
        self._dropped = 0
        self._write_errors = 0
        self._corrupt_moved = 0
        self._unlogged_strips = 0
        self._unlogged_drops = 0
        self._next_eviction_log = 0.0
        self._closed = False
        self._seq_file = Path(f"{config.path}.seq")
        config.path.parent.mkdir(parents=True, exist_ok=True)
        self._reserved_until = self._read_reservation()
        self._conn, self._next_seq = self._open()
        self._reserve(self._next_seq)

    # -- opening -----------------------------------------------------------

    def _open(self) -> tuple[sqlite3.Connection, int]:
        try:
            return self._open_once()
        except _CorruptOutboxError as corrupt:
            moved = self._move_aside()
            self._corrupt_moved += 1
            self._raise_alarm(ALARM_CORRUPT)
            log.error(
                "hộp thư đi hỏng, đã chuyển sang %s và tạo tệp mới / "
                "outbox database is corrupt (%s); moved it to %s and started a new one",
                moved,
                corrupt.detail,
                moved,
            )
            return self._open_once()

    def _open_once(self) -> tuple[sqlite3.Connection, int]:
        conn = self._connect_checked()
        try:
            return conn, self._load_state(conn)
        except sqlite3.DatabaseError as exc:
            # Damage quick_check did not see (or check_on_start is off).
            conn.close()
            if _is_corruption(exc):
                raise _CorruptOutboxError(str(exc)) from exc
            raise

    def _connect_checked(self) -> sqlite3.Connection:
        path = self.config.path
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        try:
            if self.config.check_on_start:
                rows = conn.execute("PRAGMA quick_check").fetchall()
                if [r[0] for r in rows] != ["ok"]:
                    raise _CorruptOutboxError("; ".join(str(r[0]) for r in rows[:3]))
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise _CorruptOutboxError(f"schema {version} is newer than {SCHEMA_VERSION}")
            conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise OutboxError(f"cannot switch {path} to WAL (journal_mode is {mode})")
            conn.execute(f"PRAGMA synchronous = {self.config.synchronous}")
            # Keep the WAL from staying at its high-water mark on a small card.
            conn.execute("PRAGMA journal_size_limit = 4194304")
            for statement in _SCHEMA:
                conn.execute(statement)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            ceiling = self.config.max_file_bytes
            if ceiling is None:
                ceiling, reserve = automatic_ceiling(path)
                # The WAL grows outside the file ceiling until a checkpoint: keep
                # it within half the reserve (SQLite's default is 1,000 pages).
                wal_pages = max(4, min(1000, reserve // 2 // _PAGE_SIZE))
                conn.execute(f"PRAGMA wal_autocheckpoint = {wal_pages}")
                log.info("outbox: file ceiling %d bytes (free space at start)", ceiling)
            self._apply_max_file_bytes(conn, ceiling)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _is_corruption(exc):
                raise _CorruptOutboxError(str(exc)) from exc
            raise
        except BaseException:
            conn.close()
            raise
        return conn

    def _move_aside(self) -> Path:
        path = self.config.path
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{path}{suffix}")
            if src.exists():
                src.rename(Path(f"{target}{suffix}"))
        return target

    def _load_state(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT count(*), coalesce(sum(length(payload)), 0) FROM events")
        self._count, self._bytes = row.fetchone()
        counter = conn.execute("SELECT next_seq FROM counter WHERE id = 0").fetchone()
        top = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
        if counter is None:
            # A new file (first start, or the old one was moved aside): number
            # above everything the sidecar says may have been handed out.
            start = max(self._reserved_until, 0 if top is None else top + 1)
            conn.execute("INSERT INTO counter (id, next_seq) VALUES (0, ?)", (start,))
            return start
        return max(int(counter[0]), 0 if top is None else top + 1)

    # -- sequence reservation ----------------------------------------------

    def _read_reservation(self) -> int:
        try:
            return int(self._seq_file.read_text().strip())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            log.warning("outbox: ignoring unreadable %s (%s)", self._seq_file, exc)
            return 0

    def _reserve(self, seq: int) -> None:
        if seq < self._reserved_until:
            return
        until = seq + SEQ_BLOCK
        tmp = self._seq_file.with_name(self._seq_file.name + ".tmp")
        try:
            with tmp.open("w") as fh:
                fh.write(f"{until}\n")
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(self._seq_file)
            dir_fd = os.open(self._seq_file.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            # Only numbering after a corrupt-file recovery depends on it; the
            # event itself is still stored. Tried again on the next enqueue.
            log.warning("outbox: cannot reserve seqs in %s (%s)", self._seq_file, exc)
            return
        self._reserved_until = until

    # -- alarms --------------------------------------------------------------

    def _raise_alarm(self, name: str) -> None:
        self._alarm_until[name] = time.monotonic() + self.config.alarm_hold_s

    def alarms(self) -> list[str]:
        """Alarm names raised within ``alarm_hold_s`` (and ``disk_full`` while overflowing)."""
        now = time.monotonic()
        with self._lock:
            active = {name for name, until in self._alarm_until.items() if until > now}
            if self._overflow:
                active.add(ALARM_DISK_FULL)
        return sorted(active)

    # -- writing ---------------------------------------------------------------

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        """Call ``listener`` (outside the lock) after each enqueue, e.g. to wake a publisher."""
        self._listener = listener

    def enqueue(self, build: Callable[[int], ScanEvent]) -> int:
        """Store the event ``build(seq)`` durably and return its seq.

        ``build`` runs under the outbox lock with the seq this event gets; it
        must be quick and must put that seq in the event. Storage errors are
        absorbed (overflow buffer, alarm, log); only a wrong seq raises.
        """
        with self._lock:
            if self._closed:
                raise OutboxError("the outbox is closed")
            seq = self._next_seq
            event = build(seq)
            if event.seq != seq:
                raise ValueError(f"build() returned seq {event.seq}, expected {seq}")
            item = _Pending(
                seq=seq,
                payload=encode(event),
                created_at=time.time(),
                crop_bytes=len(event.crop_jpeg or b""),
            )
            self._next_seq = seq + 1
            self._enqueued += 1
            self._reserve(seq)
            if not self._overflow or self._flush_overflow_locked(force=False):
                try:
                    self._write_locked([item])
                except (sqlite3.Error, OSError) as exc:
                    self._write_failed(exc, stored_in_memory=1)
                    self._to_overflow(item)
            else:
                self._to_overflow(item)
        listener = self._listener
        if listener is not None:
            listener()
        return seq

    def _write_locked(self, items: list[_Pending]) -> None:
        conn = self._conn
        count, size = self._count, self._bytes
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO events (seq, created_at, payload, crop_bytes) VALUES (?, ?, ?, ?)",
                [(i.seq, i.created_at, i.payload, i.crop_bytes) for i in items],
            )
            conn.execute(
                "UPDATE counter SET next_seq = max(next_seq, ?) WHERE id = 0", (self._next_seq,)
            )
            self._count += len(items)
            self._bytes += sum(len(i.payload) for i in items)
            stripped, dropped = self._enforce_capacity_locked()
            conn.execute("COMMIT")
        except BaseException:
            self._count, self._bytes = count, size
            self._rollback_locked()
            raise
        self._note_evictions(stripped, dropped)

    def _rollback_locked(self) -> None:
        # SQLite may already have rolled back on its own (e.g. after SQLITE_FULL).
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def _enforce_capacity_locked(self) -> tuple[int, int]:
        conn, cfg = self._conn, self.config
        stripped = dropped = 0
        if cfg.policy is CapacityPolicy.STRIP_CROPS_THEN_DROP_OLDEST:
            while self._bytes > cfg.max_bytes:
                rows = conn.execute(
                    "SELECT seq, payload FROM events WHERE crop_bytes > 0 ORDER BY seq LIMIT ?",
                    (_EVICT_BATCH,),
                ).fetchall()
                if not rows:
                    break
                for seq, payload in rows:
                    smaller = strip_crop(payload)
                    conn.execute(
                        "UPDATE events SET payload = ?, crop_bytes = 0 WHERE seq = ?",
                        (smaller, seq),
                    )
                    self._bytes -= len(payload) - len(smaller)
                    stripped += 1
                    if self._bytes <= cfg.max_bytes:
                        break
        while self._count > cfg.max_events or self._bytes > cfg.max_bytes:
            rows = conn.execute(
                "SELECT seq, length(payload) FROM events ORDER BY seq LIMIT ?",
                (max(_EVICT_BATCH, self._count - cfg.max_events),),
            ).fetchall()
            last = None
            for seq, size in rows:
                if self._count <= cfg.max_events and self._bytes <= cfg.max_bytes:
                    break
                last = seq
                self._count -= 1
                self._bytes -= size
                dropped += 1
            if last is None:
                break
            conn.execute("DELETE FROM events WHERE seq <= ?", (last,))
        return stripped, dropped

    def _note_evictions(self, stripped: int, dropped: int) -> None:
        if not stripped and not dropped:
            return
        self._stripped += stripped
        self._dropped += dropped
        self._raise_alarm(ALARM_FULL)
        if dropped:
            self._raise_alarm(ALARM_DROPPED)
        # A full outbox evicts on every enqueue: log a summary at most once a minute.
        self._unlogged_strips += stripped
        self._unlogged_drops += dropped
        now = time.monotonic()
        if now < self._next_eviction_log:
            return
        self._next_eviction_log = now + _EVICTION_LOG_EVERY_S
        log.log(
            logging.ERROR if self._unlogged_drops else logging.WARNING,
            "hộp thư đi đầy: bỏ ảnh của %d, xóa %d sự kiện cũ nhất / "
            "outbox full: stripped the crops of %d and dropped %d of the oldest events",
            self._unlogged_strips,
            self._unlogged_drops,
            self._unlogged_strips,
            self._unlogged_drops,
        )
        self._unlogged_strips = self._unlogged_drops = 0

    def _write_failed(self, exc: sqlite3.Error | OSError, *, stored_in_memory: int) -> None:
        alarm = _write_alarm(exc)
        self._write_errors += 1
        self._raise_alarm(alarm)
        disk_full = alarm == ALARM_DISK_FULL
        vi, en = ("đĩa đầy", "disk full") if disk_full else ("lỗi ghi", "write error")
        waiting = len(self._overflow) + stored_in_memory
        log.error(
            "hộp thư đi: %s (%s); %d sự kiện chờ trong bộ nhớ / "
            "outbox: %s (%s); %d event(s) kept in memory until a write succeeds",
            vi,
            exc,
            waiting,
            en,
            exc,
            waiting,
        )
        self._next_overflow_try = time.monotonic() + self.config.overflow_retry_s
        # Make the seq durable even if the event is not, so a restart does not
        # hand it out again; an in-place update often fits where an insert did not.
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute(
                "UPDATE counter SET next_seq = max(next_seq, ?) WHERE id = 0", (self._next_seq,)
            )

    def _to_overflow(self, item: _Pending) -> None:
        cfg = self.config
        self._overflow.append(item)
        self._overflow_bytes += len(item.payload)
        stripped = dropped = 0
        if cfg.policy is CapacityPolicy.STRIP_CROPS_THEN_DROP_OLDEST:
            for pending in self._overflow:
                if self._overflow_bytes <= cfg.overflow_max_bytes:
                    break
                if pending.crop_bytes:
                    smaller = strip_crop(pending.payload)
                    self._overflow_bytes -= len(pending.payload) - len(smaller)
                    pending.payload, pending.crop_bytes = smaller, 0
                    stripped += 1
        while self._overflow and (
            len(self._overflow) > cfg.overflow_max_events
            or self._overflow_bytes > cfg.overflow_max_bytes
        ):
            gone = self._overflow.popleft()
            self._overflow_bytes -= len(gone.payload)
            dropped += 1
        self._note_evictions(stripped, dropped)

    def _flush_overflow_locked(self, *, force: bool) -> bool:
        """Write the overflow buffer to disk; True when it is empty afterwards."""
        if not self._overflow:
            return True
        if not force and time.monotonic() < self._next_overflow_try:
            return False
        items = list(self._overflow)
        try:
            self._write_locked(items)
        except (sqlite3.Error, OSError) as exc:
            self._write_failed(exc, stored_in_memory=0)
            return False
        self._overflow.clear()
        self._overflow_bytes = 0
        log.warning(
            "hộp thư đi: đã ghi lại %d sự kiện từ bộ nhớ / "
            "outbox: wrote %d buffered event(s) to disk again",
            len(items),
            len(items),
        )
        return True

    def retry_overflow(self) -> bool:
        """Try now to write the in-memory overflow to disk; True if nothing is left in memory."""
        with self._lock:
            return self._flush_overflow_locked(force=True)

    # -- reading and acknowledging ------------------------------------------------

    def pending(self, limit: int) -> list[OutboxItem]:
        """Up to ``limit`` unacknowledged events, oldest first (disk, then overflow).

        Raises :class:`OutboxError` if the file cannot be read.
        """
        with self._lock:
            if self._closed:
                raise OutboxError("the outbox is closed")
            self._flush_overflow_locked(force=False)
            try:
                rows = self._conn.execute(
                    "SELECT seq, payload, created_at FROM events ORDER BY seq LIMIT ?", (limit,)
                ).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot read the outbox: {exc}") from exc
            items = [OutboxItem(seq, bytes(payload), created) for seq, payload, created in rows]
            for pending in self._overflow:
                if len(items) >= limit:
                    break
                items.append(OutboxItem(pending.seq, pending.payload, pending.created_at))
        return items

    def ack(self, seq: int) -> bool:
        """Remove one event after the broker's PUBACK; False if it was not there."""
        return self.ack_many([seq]) == 1

    def ack_many(self, seqs: Iterable[int]) -> int:
        """Remove events after their PUBACKs in one transaction; returns how many were there.

        Raises :class:`OutboxError` if the deletion could not be written (the
        events stay; the caller retries later).
        """
        wanted = sorted(set(seqs))
        if not wanted:
            return 0
        with self._lock:
            if self._closed:
                raise OutboxError("the outbox is closed")
            removed = 0
            if self._overflow:
                gone = set(wanted)
                keep = deque(p for p in self._overflow if p.seq not in gone)
                removed += len(self._overflow) - len(keep)
                self._overflow = keep
                self._overflow_bytes = sum(len(p.payload) for p in keep)
            try:
                rows = self._delete_locked(wanted)
            except sqlite3.Error as exc:
                self._rollback_locked()
                rows = None
                if _write_alarm(exc) == ALARM_DISK_FULL and len(wanted) > 1:
                    # Deleting writes pages to the WAL too (Debian's SQLite zeroes
                    # what it deletes): with the card full, free it event by
                    # event, checkpointing between, so each step needs little room.
                    rows = self._delete_one_by_one_locked(wanted)
                if rows is None:
                    self._write_errors += 1
                    self._raise_alarm(_write_alarm(exc))
                    log.error("outbox: cannot remove acknowledged events (%s); retrying later", exc)
                    raise OutboxError(str(exc)) from exc
            self._count -= len(rows)
            self._bytes -= sum(r[0] for r in rows)
            removed += len(rows)
            self._acked += removed
        return removed

    def _delete_locked(self, seqs: list[int]) -> list[tuple[int]]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        rows: list[tuple[int]] = []
        for chunk in _chunks(seqs, 500):
            marks = ",".join("?" * len(chunk))
            rows += conn.execute(
                f"DELETE FROM events WHERE seq IN ({marks}) RETURNING length(payload)",
                chunk,
            ).fetchall()
        conn.execute("COMMIT")
        return rows

    def _delete_one_by_one_locked(self, seqs: list[int]) -> list[tuple[int]] | None:
        """Delete ``seqs`` one per transaction; None if not even one could go."""
        rows: list[tuple[int]] = []
        for seq in seqs:
            try:
                rows += self._delete_locked([seq])
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error:
                self._rollback_locked()
                if not rows:
                    return None
                break  # what went is counted; the rest is retried with the next PUBACKs
        return rows

    # -- figures -------------------------------------------------------------

    def depth(self) -> int:
        """Events waiting for a PUBACK (on disk and in the overflow buffer)."""
        with self._lock:
            return self._count + len(self._overflow)

    def size_bytes(self) -> int:
        """Payload bytes waiting (on disk and in the overflow buffer)."""
        with self._lock:
            return self._bytes + self._overflow_bytes

    def oldest_age_s(self) -> float | None:
        """Age of the oldest waiting event in seconds (None when empty).

        Wall-clock based: a Pi without an RTC may jump its clock at boot, so
        the age is never reported negative.
        """
        with self._lock:
            return self._oldest_age_locked()

    def _oldest_age_locked(self) -> float | None:
        if self._closed:
            return None
        row = self._conn.execute("SELECT created_at FROM events ORDER BY seq LIMIT 1").fetchone()
        if row is not None:
            created = float(row[0])
        elif self._overflow:
            created = self._overflow[0].created_at
        else:
            return None
        return max(0.0, time.time() - created)

    def next_seq(self) -> int:
        """The seq the next event will get."""
        with self._lock:
            return self._next_seq

    def stats(self) -> OutboxStats:
        """A consistent snapshot of the outbox's figures."""
        with self._lock:
            return OutboxStats(
                depth=self._count + len(self._overflow),
                payload_bytes=self._bytes + self._overflow_bytes,
                oldest_age_s=self._oldest_age_locked(),
                next_seq=self._next_seq,
                capacity=self.config.max_events,
                enqueued=self._enqueued,
                acked=self._acked,
                crops_stripped=self._stripped,
                dropped=self._dropped,
                write_errors=self._write_errors,
                overflow_depth=len(self._overflow),
                corrupt_files_moved=self._corrupt_moved,
            )

    # -- settings and lifecycle ----------------------------------------------

    def set_max_file_bytes(self, max_file_bytes: int | None) -> int:
        """Change the hard ceiling on the database file at run time; returns the page limit.

        SQLite never lowers it below the file's current size.
        """
        with self._lock:
            return self._apply_max_file_bytes(self._conn, max_file_bytes)

    @staticmethod
    def _apply_max_file_bytes(conn: sqlite3.Connection, max_file_bytes: int | None) -> int:
        pages = _SQLITE_MAX_PAGES if max_file_bytes is None else max_file_bytes // _PAGE_SIZE
        return int(conn.execute(f"PRAGMA max_page_count = {int(pages)}").fetchone()[0])

    def close(self) -> None:
        """Write what the overflow buffer holds if possible, then close the file."""
        with self._lock:
            if self._closed:
                return
            if not self._flush_overflow_locked(force=True):
                log.error(
                    "hộp thư đi: mất %d sự kiện chưa ghi được khi đóng / "
                    "outbox: %d event(s) that could not be written are lost at close",
                    len(self._overflow),
                    len(self._overflow),
                )
            self._closed = True
            self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chunks(values: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
