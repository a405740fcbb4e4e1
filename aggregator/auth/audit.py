"""The privacy audit log: who read which personal data, why, when and from where.

Every route that returns personal data calls :func:`record_read` on the same
connection (same transaction) as the read, so a read that is not recorded
cannot be committed either. Administrative changes and logins are recorded
with :func:`record_action`. :func:`query_audit` serves the admin viewer:
filters by officer, action (exact, or every ``action.*`` below it), subject
(exact, or a prefix ending in ``*``) and date range, newest first, paged by
id (keyset), so page 1,000 costs what page 1 does.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, Connection, and_, exists, insert, or_, select

from aggregator.auth.model import Officer
from aggregator.db.schema import audit_log, officers

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
"""Dates typed into the viewer are days in Vietnam."""

_TEXT_MAX = 200


def _clip(value: str | None) -> str | None:
    return None if value is None else value[:_TEXT_MAX]


def record_read(
    conn: Connection,
    *,
    officer: Officer,
    action: str,
    subject: str,
    purpose: str,
    detail: Mapping[str, Any] | None = None,
    ip: str | None = None,
) -> None:
    """Record that ``officer`` read personal data about ``subject`` (e.g. ``citizen:42``).

    ``action`` names the read (``alert.view``, ``citizen.lookup``...), ``purpose``
    why (required: a read without a purpose is refused with ``ValueError``).
    """
    if not action or not subject:
        raise ValueError("action and subject are required")
    if not purpose.strip():
        raise ValueError("Thiếu mục đích truy cập / a purpose is required for every read")
    conn.execute(
        insert(audit_log).values(
            at=datetime.now(UTC),
            officer_id=officer.id,
            action=action[:64],
            subject=_clip(subject),
            purpose=_clip(purpose.strip()),
            detail=dict(detail) if detail is not None else None,
            ip=_clip(ip),
        )
    )


def record_action(
    conn: Connection,
    *,
    officer: Officer | None,
    action: str,
    subject: str | None = None,
    detail: Mapping[str, Any] | None = None,
    ip: str | None = None,
) -> None:
    """Record a change or a login event (``officer`` None: nobody logged in, e.g. a failure)."""
    conn.execute(
        insert(audit_log).values(
            at=datetime.now(UTC),
            officer_id=officer.id if officer is not None else None,
            action=action[:64],
            subject=_clip(subject),
            detail=dict(detail) if detail is not None else None,
            ip=_clip(ip),
        )
    )


class AuditFilter(BaseModel):
    """What the viewer narrows the log to (None: any)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    officer_id: int | None = None
    action: str | None = None
    subject: str | None = None
    since: date | None = None
    until: date | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        """The WHERE clauses on ``audit_log`` for these filters."""
        out: list[ColumnElement[bool]] = []
        if self.officer_id is not None:
            out.append(audit_log.c.officer_id == self.officer_id)
        if self.action:
            escaped = _like_escape(self.action)
            out.append(
                or_(
                    audit_log.c.action == self.action,
                    audit_log.c.action.like(f"{escaped}.%", escape="\\"),
                )
            )
        if self.subject:
            if self.subject.endswith("*"):
                prefix = _like_escape(self.subject[:-1])
                out.append(audit_log.c.subject.like(f"{prefix}%", escape="\\"))
            else:
                out.append(audit_log.c.subject == self.subject)
        if self.since is not None:
            out.append(audit_log.c.at >= _local_midnight(self.since))
        if self.until is not None:
            out.append(audit_log.c.at < _local_midnight(self.until + timedelta(days=1)))
        return out


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=LOCAL_TZ).astimezone(UTC)


class AuditEntry(BaseModel):
    """One line of the log, with the officer's name resolved."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    at: datetime
    officer_id: int | None
    officer_username: str | None
    officer_name: str | None
    action: str
    subject: str | None
    purpose: str | None
    detail: dict[str, Any] | None
    ip: str | None


class AuditPage(BaseModel):
    """One page of entries, newest first, and whether pages exist on either side."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entries: list[AuditEntry]
    has_newer: bool
    has_older: bool


_COLUMNS = (
    audit_log.c.id,
    audit_log.c.at,
    audit_log.c.officer_id,
    officers.c.username.label("officer_username"),
    officers.c.full_name.label("officer_name"),
    audit_log.c.action,
    audit_log.c.subject,
    audit_log.c.purpose,
    audit_log.c.detail,
    audit_log.c.ip,
)


def query_audit(
    conn: Connection,
    *,
    filters: AuditFilter,
    before_id: int | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> AuditPage:
    """A page of entries matching ``filters``, newest first.

    ``before_id`` pages to older entries (ids below it), ``after_id`` to newer
    ones (ids above it); with neither, the newest page.
    """
    where = filters.clauses()
    query = select(*_COLUMNS).outerjoin(officers, officers.c.id == audit_log.c.officer_id)
    if after_id is not None:
        query = query.where(audit_log.c.id > after_id, *where).order_by(audit_log.c.id)
    else:
        if before_id is not None:
            where = [*where, audit_log.c.id < before_id]
        query = query.where(*where).order_by(audit_log.c.id.desc())
    rows = [AuditEntry.model_validate(dict(r)) for r in conn.execute(query.limit(limit)).mappings()]
    if after_id is not None:
        rows.reverse()
    if not rows:
        return AuditPage(
            entries=[], has_newer=after_id is not None, has_older=before_id is not None
        )
    base = filters.clauses()

    def any_where(*extra: ColumnElement[bool]) -> bool:
        return bool(conn.execute(select(exists().where(and_(*base, *extra)))).scalar_one())

    return AuditPage(
        entries=rows,
        has_newer=any_where(audit_log.c.id > rows[0].id),
        has_older=any_where(audit_log.c.id < rows[-1].id),
    )
