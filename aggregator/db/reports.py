"""Daily in/out statistics per checkpoint, per hour, per ward and per province.

Read from ``checkpoint_minute_rollups`` (the ingest keeps one row per
checkpoint, minute and direction), never from the passages, so a month's
report over every gate reads a few hundred thousand small rows at most. The
figures equal counting the passages themselves: a passage is counted in the
minute it was judged at (seen at the gate, or received when the gate's clock
ran ahead) and flagged when it raised an alert (tests/test_web_reports.py
checks this on both backends).

Days and hours are Vietnam's (UTC+7, no daylight saving time): the rollup's
UTC minute is shifted by seven hours in SQL, so a local hour is a whole UTC
hour and grouping by it is exact.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, Date, Integer, cast, func, literal_column, select
from sqlalchemy.sql import ColumnElement

from aggregator.db.places import CheckpointPlace
from aggregator.db.schema import checkpoint_minute_rollups
from aggregator.db.traffic import LOCAL_TZ
from contract.messages import Direction

MAX_DAYS = 31
_UTC_OFFSET_HOURS = 7  # Asia/Ho_Chi_Minh has kept UTC+7 since 1975


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Counts(_Record):
    """Passages in, out, and flagged (raised an alert) among them."""

    passages_in: int = 0
    passages_out: int = 0
    flagged: int = 0

    @property
    def passages(self) -> int:
        """Both directions."""
        return self.passages_in + self.passages_out

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            passages_in=self.passages_in + other.passages_in,
            passages_out=self.passages_out + other.passages_out,
            flagged=self.flagged + other.flagged,
        )


class CheckpointDay(_Record):
    """One checkpoint's counts on one day."""

    day: date
    checkpoint_id: str
    checkpoint_name: str
    ward_code: int
    ward_name: str
    province_name: str
    counts: Counts


class HourRow(_Record):
    """Counts in one local hour (``hour`` 0-23) of one day, for one checkpoint or all."""

    day: date
    hour: int
    checkpoint_id: str | None
    counts: Counts


class AreaRow(_Record):
    """Counts of every checkpoint of a ward (or a province) over the report's days."""

    code: int
    name: str
    province_name: str
    checkpoints: int
    counts: Counts


class DailyReport(_Record):
    """The report for ``first_day`` .. ``last_day`` (inclusive) over the given checkpoints."""

    first_day: date
    last_day: date
    by_checkpoint_day: list[CheckpointDay]
    by_hour: list[HourRow]
    by_checkpoint_hour: list[HourRow]
    by_ward: list[AreaRow]
    by_province: list[AreaRow]
    total: Counts


class ReportInputError(ValueError):
    """The report's days are reversed or span too long."""


def day_bounds(first_day: date, last_day: date) -> tuple[datetime, datetime]:
    """UTC instants of local midnight starting ``first_day`` and ending ``last_day``."""
    if last_day < first_day:
        raise ReportInputError(
            "Ngày kết thúc phải từ ngày bắt đầu trở đi / the last day is before the first"
        )
    if (last_day - first_day).days + 1 > MAX_DAYS:
        raise ReportInputError(
            f"Báo cáo tối đa {MAX_DAYS} ngày / a report covers at most {MAX_DAYS} days"
        )
    start = datetime.combine(first_day, time(0), tzinfo=LOCAL_TZ).astimezone(UTC)
    end = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=LOCAL_TZ).astimezone(UTC)
    return start, end


def _local_day_hour(conn: Connection) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    minute = checkpoint_minute_rollups.c.minute
    if conn.dialect.name == "postgresql":
        local = func.timezone(literal_column("'Asia/Ho_Chi_Minh'"), minute)
        return (
            cast(local, Date).label("day"),
            cast(func.extract("hour", local), Integer).label("hour"),
        )
    # SQLite keeps naive UTC text: shift it to local time and cut out the day and hour.
    shift = f"+{_UTC_OFFSET_HOURS} hours"
    return (
        func.date(minute, shift).label("day"),
        cast(func.strftime("%H", minute, shift), Integer).label("hour"),
    )


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _counts(direction: str, passages: int, flagged: int) -> Counts:
    return Counts(
        passages_in=passages if direction == Direction.IN.value else 0,
        passages_out=passages if direction == Direction.OUT.value else 0,
        flagged=flagged,
    )


def daily_report(
    conn: Connection,
    *,
    first_day: date,
    last_day: date,
    places: dict[str, CheckpointPlace],
) -> DailyReport:
    """Counts per checkpoint per day, per hour, per ward and per province.

    ``places`` are the checkpoints to report (an officer's scope, from
    :func:`aggregator.db.places.checkpoint_places`); every one of them appears
    in the ward and province rows, with zeros when it saw nobody.
    """
    start, end = day_bounds(first_day, last_day)
    rollup = checkpoint_minute_rollups.c
    day, hour = _local_day_hour(conn)
    grouped: list[tuple[str, date, int, str, int, int]] = []
    if places:
        query = (
            select(
                rollup.checkpoint_id,
                day,
                hour,
                rollup.direction,
                func.sum(rollup.passages),
                func.sum(rollup.flagged),
            )
            .where(
                rollup.checkpoint_id.in_(sorted(places)),
                rollup.minute >= start,
                rollup.minute < end,
            )
            .group_by(rollup.checkpoint_id, day, hour, rollup.direction)
        )
        grouped = [
            (cp, _as_date(d), int(h), direction, int(n or 0), int(f or 0))
            for cp, d, h, direction, n, f in conn.execute(query)
        ]
    return build_report(first_day=first_day, last_day=last_day, places=places, grouped=grouped)


def build_report(
    *,
    first_day: date,
    last_day: date,
    places: dict[str, CheckpointPlace],
    grouped: Iterable[tuple[str, date, int, str, int, int]],
) -> DailyReport:
    """Assemble the report from (checkpoint, day, hour, direction, passages, flagged) groups."""
    cp_day: dict[tuple[date, str], Counts] = defaultdict(Counts)
    cp_hour: dict[tuple[date, int, str], Counts] = defaultdict(Counts)
    all_hour: dict[tuple[date, int], Counts] = defaultdict(Counts)
    per_cp: dict[str, Counts] = defaultdict(Counts)
    for checkpoint_id, day, hour, direction, passages, flagged in grouped:
        counts = _counts(direction, passages, flagged)
        cp_day[day, checkpoint_id] += counts
        cp_hour[day, hour, checkpoint_id] += counts
        all_hour[day, hour] += counts
        per_cp[checkpoint_id] += counts
    by_checkpoint_day = [
        CheckpointDay(
            day=day,
            checkpoint_id=cp,
            checkpoint_name=places[cp].name,
            ward_code=places[cp].ward_code,
            ward_name=places[cp].ward_name,
            province_name=places[cp].province_name,
            counts=counts,
        )
        for (day, cp), counts in sorted(cp_day.items())
    ]
    days = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
    by_hour = [
        HourRow(day=d, hour=h, checkpoint_id=None, counts=all_hour.get((d, h), Counts()))
        for d in days
        for h in range(24)
    ]
    by_checkpoint_hour = [
        HourRow(day=d, hour=h, checkpoint_id=cp, counts=counts)
        for (d, h, cp), counts in sorted(cp_hour.items())
    ]
    return DailyReport(
        first_day=first_day,
        last_day=last_day,
        by_checkpoint_day=by_checkpoint_day,
        by_hour=by_hour,
        by_checkpoint_hour=by_checkpoint_hour,
        by_ward=_areas(places.values(), per_cp, by_province=False),
        by_province=_areas(places.values(), per_cp, by_province=True),
        total=sum(per_cp.values(), Counts()),
    )


def _areas(
    places: Collection[CheckpointPlace], per_cp: dict[str, Counts], *, by_province: bool
) -> list[AreaRow]:
    counts: dict[int, Counts] = defaultdict(Counts)
    members: dict[int, int] = defaultdict(int)
    names: dict[int, tuple[str, str]] = {}
    for place in places:
        code = place.province_code if by_province else place.ward_code
        name = place.province_name if by_province else place.ward_name
        names[code] = (name, place.province_name)
        members[code] += 1
        counts[code] += per_cp.get(place.id, Counts())
    return sorted(
        (
            AreaRow(
                code=code,
                name=names[code][0],
                province_name=names[code][1],
                checkpoints=members[code],
                counts=counts[code],
            )
            for code in names
        ),
        key=lambda row: (-row.counts.passages, row.province_name, row.name),
    )
