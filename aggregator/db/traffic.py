"""Traffic through the checkpoints for the command centre, from the per-minute rollups.

The ingest writer keeps ``checkpoint_minute_rollups`` (passages and flagged
passages per checkpoint, minute seen at the gate, and direction), so the
live chart and the day's totals never scan the passages table. Queries
name the checkpoints they want: the rollups' key starts with the checkpoint,
so ``checkpoint_id IN (...) AND minute >= ...`` is an index range on both
backends, where a bare time range would scan the whole table.

A day is a day in Vietnam (UTC+7, no daylight saving time), whatever the
server's time zone.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, or_, select

from aggregator.db.fleet import DeviceRecord
from aggregator.db.schema import checkpoint_minute_rollups, devices
from aggregator.db.venues import NO_BROKER_LOGIN
from contract.messages import Direction

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def local_day_start(now: datetime, tz: ZoneInfo = LOCAL_TZ) -> datetime:
    """Midnight of ``now``'s day in ``tz`` (an aware datetime)."""
    if now.tzinfo is None:
        raise ValueError(f"naive datetime refused: {now!r}")
    local = now.astimezone(tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def minute_floor(at: datetime) -> datetime:
    """``at`` rounded down to its minute."""
    return at.replace(second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class MinuteCount:
    """Passages through one checkpoint in one direction during one minute."""

    checkpoint_id: str
    minute: datetime
    direction: Direction
    passages: int
    flagged: int


@dataclass(frozen=True, slots=True)
class Totals:
    """Passages in each direction, and how many raised an alert."""

    passages_in: int = 0
    passages_out: int = 0
    flagged: int = 0

    @property
    def passages(self) -> int:
        """Both directions."""
        return self.passages_in + self.passages_out


_ROLLUP = checkpoint_minute_rollups.c


def minute_counts(
    conn: Connection, *, checkpoint_ids: Collection[str], since: datetime
) -> list[MinuteCount]:
    """Per-minute counts of these checkpoints from ``since`` on, by minute."""
    if not checkpoint_ids:
        return []
    query = (
        select(
            _ROLLUP.checkpoint_id,
            _ROLLUP.minute,
            _ROLLUP.direction,
            _ROLLUP.passages,
            _ROLLUP.flagged,
        )
        .where(_ROLLUP.checkpoint_id.in_(sorted(checkpoint_ids)), _ROLLUP.minute >= since)
        .order_by(_ROLLUP.minute, _ROLLUP.checkpoint_id, _ROLLUP.direction)
    )
    return [
        MinuteCount(row[0], row[1], Direction(row[2]), int(row[3]), int(row[4]))
        for row in conn.execute(query)
    ]


def totals(
    conn: Connection, *, checkpoint_ids: Collection[str], since: datetime
) -> dict[str, Totals]:
    """Each checkpoint's totals from ``since`` on (checkpoints without traffic are absent)."""
    if not checkpoint_ids:
        return {}
    query = (
        select(
            _ROLLUP.checkpoint_id,
            _ROLLUP.direction,
            func.sum(_ROLLUP.passages),
            func.sum(_ROLLUP.flagged),
        )
        .where(_ROLLUP.checkpoint_id.in_(sorted(checkpoint_ids)), _ROLLUP.minute >= since)
        .group_by(_ROLLUP.checkpoint_id, _ROLLUP.direction)
    )
    found: dict[str, Totals] = {}
    for checkpoint_id, direction, passages, flagged in conn.execute(query):
        t = found.get(checkpoint_id, Totals())
        n = int(passages or 0)
        found[checkpoint_id] = Totals(
            passages_in=t.passages_in + (n if direction == Direction.IN.value else 0),
            passages_out=t.passages_out + (n if direction == Direction.OUT.value else 0),
            flagged=t.flagged + int(flagged or 0),
        )
    return found


def sum_totals(values: Collection[Totals]) -> Totals:
    """The totals of several checkpoints together."""
    return Totals(
        passages_in=sum(t.passages_in for t in values),
        passages_out=sum(t.passages_out for t in values),
        flagged=sum(t.flagged for t in values),
    )


def per_minute_series(
    counts: Collection[MinuteCount], *, start: datetime, minutes: int
) -> dict[str, list[int]]:
    """Passages per minute (both directions) per checkpoint: ``minutes`` values from ``start``.

    Minutes without a rollup row count zero; rows outside the window are ignored.
    """
    series: dict[str, list[int]] = {}
    for c in counts:
        index = int((c.minute - start) / timedelta(minutes=1))
        if 0 <= index < minutes:
            series.setdefault(c.checkpoint_id, [0] * minutes)[index] += c.passages
    return series


_DEVICE_FIELDS = tuple(DeviceRecord.model_fields)


def devices_at(conn: Connection, *, checkpoint_ids: Collection[str]) -> list[DeviceRecord]:
    """The devices registered at these checkpoints, by checkpoint then id."""
    if not checkpoint_ids:
        return []
    # A venue's door scanner is a virtual device that never connects to the
    # broker: listed, it would mark every venue "down" on the wall screen.
    hardware = or_(
        devices.c.mqtt_password_hash.is_(None), devices.c.mqtt_password_hash != NO_BROKER_LOGIN
    )
    query = (
        select(*(devices.c[f] for f in _DEVICE_FIELDS))
        .where(devices.c.checkpoint_id.in_(sorted(checkpoint_ids)), hardware)
        .order_by(devices.c.checkpoint_id, devices.c.id)
    )
    return [DeviceRecord.model_validate(dict(row)) for row in conn.execute(query).mappings()]
