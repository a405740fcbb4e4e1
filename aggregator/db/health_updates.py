"""F-status and vaccination updates by health officials and ward police, one by one or in bulk.

Each change that changes something is sent to the ward of temporary residence
(the permanent one when the citizen has no temporary residence) as a
``status_change`` ward notification, in the same transaction. The caller
then asks the deny-list publisher to publish (the gates learn of a new F0
without waiting for the poll).

A health department's CSV (``identity_no,status,since,doses``; UTF-8, with or
without BOM; ``doses`` may be blank) is checked whole by :func:`check_import`:
every row gets its problems (format, unknown citizen, out of the officer's
scope, repeated in the file). :func:`apply_import` writes only a file without a
single problem, all in the caller's transaction: nothing is ever half-imported.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Connection, insert, select, update

from aggregator.auth.model import Officer
from aggregator.auth.problems import custom_error, from_validation_error
from aggregator.db.declarations import LOCAL_TZ, check_identity_no
from aggregator.db.registry import Citizen, get_citizen_by_identity, set_health_status
from aggregator.db.schema import (
    HealthStatus,
    NotificationKind,
    citizens,
    ward_notifications,
    wards,
)

MAX_DOSES = 10
MAX_IMPORT_ROWS = 50_000
CSV_COLUMNS = ("identity_no", "status", "since", "doses")


class StatusUpdate(BaseModel):
    """One citizen's new status as of a day, and optionally their vaccine doses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    identity_no: str
    status: HealthStatus
    since: date
    doses: int | None = Field(default=None, ge=0, le=MAX_DOSES)

    @field_validator("identity_no")
    @classmethod
    def _identity(cls, value: str) -> str:
        return check_identity_no(value)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        # Health departments write "f0" as often as "F0".
        if isinstance(value, str):
            text = value.strip()
            upper = text.upper()
            return upper if upper in {"F0", "F1", "F2", "F3"} else text.lower()
        return value

    @field_validator("since")
    @classmethod
    def _not_future(cls, value: date) -> date:
        if value > datetime.now(LOCAL_TZ).date():
            raise custom_error("registry.error.future")
        return value


class Applied(BaseModel):
    """What one update did."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    citizen_id: int
    identity_no: str
    full_name: str
    previous: HealthStatus
    status: HealthStatus
    previous_doses: int
    doses: int
    notified_ward: int | None

    @property
    def changed(self) -> bool:
        """True when the status or the doses changed."""
        return self.previous is not self.status or self.previous_doses != self.doses


class OutOfScopeError(PermissionError):
    """The officer may not change this citizen (a ward police officer outside their wards)."""


def _province_of(conn: Connection, ward_codes: set[int]) -> dict[int, int]:
    rows = conn.execute(
        select(wards.c.code, wards.c.province_code).where(wards.c.code.in_(ward_codes))
    )
    return {code: province for code, province in rows}


def in_scope(conn: Connection, officer: Officer, citizen: Citizen) -> bool:
    """Whether ``officer`` may change ``citizen``: a resident (permanent or temporary) in scope."""
    if officer.unrestricted:
        return True
    homes = {citizen.permanent_ward_code}
    if citizen.temporary_ward_code is not None:
        homes.add(citizen.temporary_ward_code)
    provinces = _province_of(conn, homes)
    return any(officer.can_see_ward(w, province_code=provinces.get(w, -1)) for w in homes)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=LOCAL_TZ).astimezone(UTC)


def apply_update(
    conn: Connection,
    *,
    citizen: Citizen,
    update_: StatusUpdate,
    officer: Officer,
    now: datetime | None = None,
) -> Applied:
    """Set the status (as of ``since``) and doses, and notify the ward if anything changed."""
    now = now if now is not None else datetime.now(UTC)
    change = set_health_status(
        conn, citizen_id=citizen.id, status=update_.status, at=_day_start(update_.since)
    )
    doses = citizen.vaccine_doses if update_.doses is None else update_.doses
    if change.changed or doses != citizen.vaccine_doses:
        # updated_at is "when the registry learnt it" (the deny-list watches it), not ``since``.
        conn.execute(
            update(citizens)
            .where(citizens.c.id == citizen.id)
            .values(vaccine_doses=doses, updated_at=now)
        )
    applied = Applied(
        citizen_id=citizen.id,
        identity_no=citizen.identity_no,
        full_name=citizen.full_name,
        previous=change.previous,
        status=update_.status,
        previous_doses=citizen.vaccine_doses,
        doses=doses,
        notified_ward=None,
    )
    if not applied.changed:
        return applied
    ward = citizen.temporary_ward_code or citizen.permanent_ward_code
    conn.execute(
        insert(ward_notifications).values(
            ward_code=ward,
            kind=NotificationKind.STATUS_CHANGE.value,
            citizen_id=citizen.id,
            payload={
                "previous": change.previous.value,
                "status": update_.status.value,
                "since": update_.since.isoformat(),
                "previous_doses": citizen.vaccine_doses,
                "doses": doses,
                "by": officer.id,
            },
            created_at=now,
        )
    )
    return applied.model_copy(update={"notified_ward": ward})


# --- bulk import ---------------------------------------------------------------------


@dataclass
class ImportRow:
    """One CSV line: its number in the file, what it asks, and what is wrong with it."""

    line: int
    raw: dict[str, str]
    update: StatusUpdate | None = None
    citizen: Citizen | None = None
    problems: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class ImportCheck:
    """A whole file checked: its rows, and problems about the file itself."""

    rows: list[ImportRow]
    file_problems: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when not one row, nor the file, has a problem."""
        return not self.file_problems and all(not r.problems for r in self.rows)

    @property
    def error_count(self) -> int:
        """Rows with at least one problem."""
        return sum(1 for r in self.rows if r.problems)


def _decode(data: bytes) -> str | None:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def check_import(conn: Connection, *, data: bytes, officer: Officer) -> ImportCheck:
    """Parse and check a CSV file row by row (reads only; writes nothing)."""
    text = _decode(data)
    if text is None:
        return ImportCheck([], [("registry.import.error.encoding", {})])
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in CSV_COLUMNS[:3] if c not in header]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if missing or unknown:
        return ImportCheck(
            [],
            [
                (
                    "registry.import.error.header",
                    {"expected": ",".join(CSV_COLUMNS), "found": ",".join(header)},
                )
            ],
        )
    reader.fieldnames = header
    rows: list[ImportRow] = []
    seen: dict[str, int] = {}
    for number, record in enumerate(reader, start=2):
        if len(rows) >= MAX_IMPORT_ROWS:
            return ImportCheck(rows, [("registry.import.error.too_many", {"max": MAX_IMPORT_ROWS})])
        raw = {k: (v or "").strip() for k, v in record.items() if k is not None}
        if not any(raw.values()):
            continue  # blank line
        row = ImportRow(number, raw)
        rows.append(row)
        given = {k: v for k, v in raw.items() if v}
        try:
            row.update = StatusUpdate.model_validate(given)
        except ValidationError as exc:
            row.problems = [(p.field, p.key, dict(p.params)) for p in from_validation_error(exc)]
            continue
        identity = row.update.identity_no
        if identity in seen:
            row.problems.append(
                ("identity_no", "registry.import.error.repeated", {"line": seen[identity]})
            )
            continue
        seen[identity] = number
        row.citizen = get_citizen_by_identity(conn, identity_no=identity)
        if row.citizen is None:
            row.problems.append(("identity_no", "registry.error.unknown_citizen", {}))
        elif not in_scope(conn, officer, row.citizen):
            row.problems.append(("identity_no", "registry.error.out_of_scope", {}))
    if not rows:
        return ImportCheck([], [("registry.import.error.empty", {})])
    return ImportCheck(rows)


def apply_import(
    conn: Connection, *, check: ImportCheck, officer: Officer, now: datetime | None = None
) -> list[Applied]:
    """Apply a checked file in the caller's transaction; refuses one with any problem."""
    if not check.ok:
        raise ValueError(f"{check.error_count} rows have problems: nothing imported")
    out = []
    for row in check.rows:
        if row.update is None or row.citizen is None:
            raise ValueError(f"line {row.line} was not checked")
        out.append(
            apply_update(conn, citizen=row.citizen, update_=row.update, officer=officer, now=now)
        )
    return out
