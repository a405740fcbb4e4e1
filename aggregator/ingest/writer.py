"""One batch of passages into the store, exactly once, in the caller's transaction.

Passages are inserted with ``INSERT ... ON CONFLICT (event_id) DO NOTHING
RETURNING event_id``: the rows that come back are the only ones new to the
store, and only they produce side effects (crops, alerts, ward notifications,
sequence bookkeeping, rollups). A batch delivered twice, or an event
published twice by its gate, therefore changes nothing the second time.

Statement order matters on PostgreSQL when several aggregators share the
stream: passages go in sorted by event id, and the device rows (sequence
bookkeeping) and rollup rows are locked last, in key order, just before the
commit, so transactions touching the same gates queue briefly instead of
deadlocking. Device rows are locked ``FOR NO KEY UPDATE``, which does not
conflict with the key-share locks the passages' foreign keys take.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Table, and_, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from aggregator.db.schema import (
    alerts,
    checkpoint_minute_rollups,
    dead_letters,
    device_seq_gaps,
    devices,
    passage_crops,
    passages,
    ward_notifications,
)
from aggregator.ingest.bulk import bind, insert_rows
from aggregator.ingest.lookup import DeviceState, device_states
from aggregator.ingest.validate import DeadLetter
from aggregator.ingest.verdicts import Decision
from contract.messages import ScanEvent


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid scan event with its verdict, ready to store."""

    event: ScanEvent
    received_at: datetime
    decision: Decision
    declaration_id: int | None
    judged_at: datetime  # seen_at, or received_at when the device clock ran ahead
    clock_skew_s: float | None = None


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    """An alert the batch created."""

    alert_id: int
    accepted: Accepted
    created_at: datetime


@dataclass
class WriteResult:
    """What one batch changed in the store."""

    stored: list[Accepted] = field(default_factory=list)
    duplicates: list[Accepted] = field(default_factory=list)
    alerts: list[RaisedAlert] = field(default_factory=list)
    notifications: int = 0
    dead_letters: int = 0
    gaps_opened: int = 0
    seqs_filled: int = 0


def _insert(conn: Connection, table: Table) -> Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


_PASSAGE_COLUMNS = (
    "event_id",
    "device_id",
    "checkpoint_id",
    "seq",
    "lane",
    "direction",
    "seen_at",
    "received_at",
    "declaration_id",
    "citizen_id",
    "verdict",
    "reason",
    "quality",
    "clock_skew_s",
)


def _passage_row(item: Accepted) -> tuple[Any, ...]:
    event, decision = item.event, item.decision
    return (
        event.event_id,
        event.device_id,
        event.checkpoint_id,
        event.seq,
        event.lane,
        event.direction.value,
        # A gate whose clock runs ahead would put its passages in the future of
        # every other gate's (tracing and timelines sort on seen_at): they are
        # stored at their arrival, the gate's own time being seen_at + clock_skew_s.
        item.judged_at,
        item.received_at,
        item.declaration_id,
        decision.citizen_id,
        decision.color.value,
        decision.code.value,
        event.quality,
        item.clock_skew_s,
    )


def _insert_passages(conn: Connection, items: Sequence[Accepted]) -> set[UUID]:
    # Sorted by key: concurrent transactions inserting overlapping events then
    # wait on each other in the same order instead of deadlocking.
    ordered = sorted(items, key=lambda item: item.event.event_id)
    if conn.dialect.name == "sqlite":
        return _insert_new_passages(conn, ordered)
    as_bound = {
        bind(conn, passages, _PASSAGE_COLUMNS, item.event.event_id, "event_id"): item.event.event_id
        for item in ordered
    }
    returned = insert_rows(
        conn,
        passages,
        _PASSAGE_COLUMNS,
        [_passage_row(item) for item in ordered],
        on_conflict_do_nothing="event_id",
        returning="event_id",
    )
    return {as_bound[value] for value in returned}


def _insert_new_passages(conn: Connection, ordered: Sequence[Accepted]) -> set[UUID]:
    # SQLite: which events are stored already, in one probe, then a plain
    # INSERT. ``RETURNING`` would hand back one row per sqlite3 step, and the
    # driver releases and retakes the GIL around every step: 500 handovers a
    # batch, each a wait behind whichever thread took the GIL meanwhile. The
    # write transaction holds SQLite's write lock (BEGIN IMMEDIATE), so no
    # other writer can store one of them in between; if one ever did, the
    # INSERT fails on the key and the pipeline stores the batch event by event.
    # One probe: a batch holds at most 10,000 events (settings.batch_size), well
    # under SQLite's 32,766 bound variables.
    wanted = [item.event.event_id for item in ordered]
    stored = set(
        conn.execute(select(passages.c.event_id).where(passages.c.event_id.in_(wanted))).scalars()
    )
    new = [item for item in ordered if item.event.event_id not in stored]
    insert_rows(conn, passages, _PASSAGE_COLUMNS, [_passage_row(item) for item in new])
    return {item.event.event_id for item in new}


def _insert_alerts(conn: Connection, items: Sequence[Accepted], now: datetime) -> list[RaisedAlert]:
    flagged = [item for item in items if item.decision.alert is not None]
    if not flagged:
        return []
    rows = []
    for item in flagged:
        decision = item.decision
        rows.append(
            {
                "kind": decision.alert.value if decision.alert else None,
                "status": "open",
                "event_id": item.event.event_id,
                "checkpoint_id": item.event.checkpoint_id,
                "citizen_id": decision.citizen_id,
                "health_status": decision.health_status.value if decision.health_status else None,
                "detail": {
                    "device_id": item.event.device_id,
                    "declaration_id": item.declaration_id,
                    "verdict": decision.color.value,
                    "code": decision.code.value,
                },
                "created_at": now,
            }
        )
    statement = alerts.insert().returning(alerts.c.id, alerts.c.event_id)
    ids = {event_id: alert_id for alert_id, event_id in conn.execute(statement, rows)}
    return [RaisedAlert(ids[item.event.event_id], item, now) for item in flagged]


_NOTIFICATION_COLUMNS = ("ward_code", "kind", "citizen_id", "event_id", "payload", "created_at")


def _insert_notifications(conn: Connection, items: Sequence[Accepted], now: datetime) -> int:
    def bound(value: Any, column: str) -> Any:
        return bind(conn, ward_notifications, _NOTIFICATION_COLUMNS, value, column)

    # One JSON document and one timestamp per event, shared by its rows.
    created = bound(now, "created_at")
    rows: list[tuple[Any, ...]] = []
    for item in items:
        decision, event = item.decision, item.event
        if not decision.notifications:
            continue
        payload = bound(
            {
                "checkpoint_id": event.checkpoint_id,
                "device_id": event.device_id,
                "direction": event.direction.value,
                "seen_at": event.seen_at.isoformat(),
                "declaration_id": item.declaration_id,
                "verdict": decision.color.value,
                "code": decision.code.value,
                "alert": decision.alert.value if decision.alert else None,
            },
            "payload",
        )
        rows.extend(
            (
                notify.ward_code,
                notify.kind.value,
                decision.citizen_id,
                event.event_id,
                payload,
                created,
            )
            for notify in decision.notifications
        )
    insert_rows(
        conn,
        ward_notifications,
        _NOTIFICATION_COLUMNS,
        rows,
        bound=frozenset({"payload", "created_at"}),
    )
    return len(rows)


def _insert_dead_letters(conn: Connection, letters: Sequence[DeadLetter]) -> None:
    if letters:
        conn.execute(
            dead_letters.insert(),
            [
                {
                    "received_at": d.received_at,
                    "topic": d.topic[:255],
                    "payload": d.payload,
                    "reason": d.reason.value,
                    "detail": d.detail,
                }
                for d in letters
            ],
        )


# --- per-device sequence bookkeeping ------------------------------------------


def new_gaps(last_seq: int | None, seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Missing ranges revealed by ``seqs`` arriving after ``last_seq`` (pure).

    A device's first event ever (``last_seq`` None) reveals nothing: where its
    numbering starts is not known.
    """
    gaps: list[tuple[int, int]] = []
    previous = last_seq
    for seq in sorted(set(seqs)):
        if previous is not None and seq <= previous:
            continue
        if previous is not None and seq > previous + 1:
            gaps.append((previous + 1, seq - 1))
        previous = seq
    return gaps


def split_gap(first: int, last: int, arrived: Sequence[int]) -> list[tuple[int, int]]:
    """What remains missing of ``[first, last]`` once ``arrived`` seqs came in (pure)."""
    remaining: list[tuple[int, int]] = []
    start = first
    for seq in sorted(set(arrived)):
        if seq < start or seq > last:
            continue
        if seq > start:
            remaining.append((start, seq - 1))
        start = seq + 1
    if start <= last:
        remaining.append((start, last))
    return remaining


_UPDATE_DEVICE = (
    devices.update()
    .where(devices.c.id == bindparam("b_id"))
    .values(last_seq=bindparam("b_seq"), last_seen_at=bindparam("b_seen"))
)
_UPDATE_GAP = (
    device_seq_gaps.update()
    .where(device_seq_gaps.c.id == bindparam("b_id"))
    .values(
        first_missing=bindparam("b_first"),
        last_missing=bindparam("b_last"),
        filled_at=bindparam("b_filled"),
    )
)


def _open_gaps(conn: Connection, device_ids: Sequence[str]) -> dict[str, list[Any]]:
    rows = conn.execute(
        select(
            device_seq_gaps.c.id,
            device_seq_gaps.c.device_id,
            device_seq_gaps.c.first_missing,
            device_seq_gaps.c.last_missing,
            device_seq_gaps.c.detected_at,
        )
        .where(
            and_(
                device_seq_gaps.c.device_id.in_(sorted(device_ids)),
                device_seq_gaps.c.filled_at.is_(None),
            )
        )
        .order_by(device_seq_gaps.c.id)
    )
    found: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        found[row.device_id].append(row)
    return found


def _track_sequences(
    conn: Connection, items: Sequence[Accepted], now: datetime, result: WriteResult
) -> None:
    by_device: dict[str, list[Accepted]] = defaultdict(list)
    for item in items:
        by_device[item.event.device_id].append(item)
    states: dict[str, DeviceState] = device_states(conn, device_ids=by_device.keys(), lock=True)

    late: dict[str, list[int]] = {}
    gap_rows: list[dict[str, Any]] = []
    device_rows: list[dict[str, Any]] = []
    for device_id in sorted(by_device):
        state = states.get(device_id)
        if state is None:  # deleted since validation; the passages' FK has already failed
            continue
        seqs = [item.event.seq for item in by_device[device_id]]
        last = state.last_seq
        if last is not None:
            behind = [s for s in seqs if s <= last]
            if behind:
                late[device_id] = behind
        for first, last_missing in new_gaps(last, seqs):
            gap_rows.append(
                {
                    "device_id": device_id,
                    "first_missing": first,
                    "last_missing": last_missing,
                    "detected_at": now,
                }
            )
        top = max(seqs) if last is None else max(last, *seqs)
        seen = max(item.received_at for item in by_device[device_id])
        device_rows.append({"b_id": device_id, "b_seq": top, "b_seen": seen})

    result.gaps_opened = len(gap_rows)
    if late:
        updates: list[dict[str, Any]] = []
        for device_id, gaps in _open_gaps(conn, list(late)).items():
            for gap in gaps:
                arrived = [s for s in late[device_id] if gap.first_missing <= s <= gap.last_missing]
                if not arrived:
                    continue
                result.seqs_filled += len(set(arrived))
                remaining = split_gap(gap.first_missing, gap.last_missing, arrived)
                if not remaining:
                    updates.append(
                        {
                            "b_id": gap.id,
                            "b_first": gap.first_missing,
                            "b_last": gap.last_missing,
                            "b_filled": now,
                        }
                    )
                    continue
                head, *rest = remaining
                updates.append(
                    {"b_id": gap.id, "b_first": head[0], "b_last": head[1], "b_filled": None}
                )
                gap_rows.extend(
                    {
                        "device_id": device_id,
                        "first_missing": a,
                        "last_missing": b,
                        "detected_at": gap.detected_at,
                    }
                    for a, b in rest
                )
        if updates:
            conn.execute(_UPDATE_GAP, updates)
    if gap_rows:
        conn.execute(device_seq_gaps.insert(), gap_rows)
    if device_rows:
        conn.execute(_UPDATE_DEVICE, device_rows)


def _upsert_rollups(conn: Connection, items: Sequence[Accepted]) -> None:
    counts: dict[tuple[str, datetime, str], list[int]] = defaultdict(lambda: [0, 0])
    for item in items:
        key = (item.event.checkpoint_id, _minute(item.judged_at), item.event.direction.value)
        counts[key][0] += 1
        counts[key][1] += int(item.decision.flagged)
    if not counts:
        return
    statement = _insert(conn, checkpoint_minute_rollups)
    table = checkpoint_minute_rollups.c
    statement = statement.on_conflict_do_update(  # type: ignore[attr-defined]
        index_elements=[table.checkpoint_id, table.minute, table.direction],
        set_={
            "passages": table.passages + statement.excluded.passages,  # type: ignore[attr-defined]
            "flagged": table.flagged + statement.excluded.flagged,  # type: ignore[attr-defined]
        },
    )
    rows = [
        {"checkpoint_id": c, "minute": m, "direction": d, "passages": n, "flagged": f}
        for (c, m, d), (n, f) in sorted(counts.items())
    ]
    conn.execute(statement, rows)


def write_batch(
    conn: Connection,
    *,
    accepted: Sequence[Accepted],
    letters: Sequence[DeadLetter] = (),
    now: datetime,
) -> WriteResult:
    """Store a batch in the caller's transaction; returns what was new.

    Events already stored (redelivery, a gate publishing twice, the same
    event twice in the batch) are counted as duplicates and change nothing.
    """
    result = WriteResult()
    unique: dict[UUID, Accepted] = {}
    for item in accepted:
        if item.event.event_id in unique:
            result.duplicates.append(item)
        else:
            unique[item.event.event_id] = item
    inserted = _insert_passages(conn, list(unique.values())) if unique else set()
    for event_id, item in unique.items():
        (result.stored if event_id in inserted else result.duplicates).append(item)
    new = result.stored

    crops = [
        {"event_id": item.event.event_id, "jpeg": item.event.crop_jpeg}
        for item in new
        if item.event.crop_jpeg
    ]
    if crops:
        conn.execute(passage_crops.insert(), crops)
    result.alerts = _insert_alerts(conn, new, now)
    result.notifications = _insert_notifications(conn, new, now)
    _insert_dead_letters(conn, letters)
    result.dead_letters = len(letters)
    if new:
        _track_sequences(conn, new, now, result)
        _upsert_rollups(conn, new)
    return result
