"""The ward inbox: arrivals, departures and status changes in a ward police officer's wards.

- ``GET /inbox``: the page (filters: kind, handled or not; mark one or all shown).
- ``GET /api/inbox?kind=&handled=&limit=``: notifications in scope, newest first,
  with the citizen's name and birth date (an audited read).
- ``GET /api/inbox/counts``: unhandled notifications per kind (no personal data).
- ``POST /api/inbox/handled`` ``{"ids": [...]}``: mark handled (ids outside the
  officer's wards are ignored and reported as not found).

Ward police see their wards (or province); admins everything.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Select, func, select, update
from starlette.concurrency import run_in_threadpool

from aggregator.auth.audit import record_action, record_read
from aggregator.auth.deps import Officer, client_ip, get_engine, require_roles
from aggregator.db.engine import write_transaction
from aggregator.db.schema import (
    HealthStatus,
    NotificationKind,
    Role,
    citizens,
    ward_notifications,
    wards,
)
from aggregator.web.forms import RowId, form_fields, row_id
from aggregator.web.templating import register_nav, render
from contract.messages import Color

router = APIRouter(tags=["inbox"])

InboxOfficer = Annotated[Officer, Depends(require_roles(Role.WARD_POLICE, Role.ADMIN))]
register_nav("/inbox", "nav.inbox", {Role.WARD_POLICE, Role.ADMIN}, order=12)
READ_PURPOSE = "Xử lý thông báo của phường / ward notifications"
INBOX_KINDS = (NotificationKind.ARRIVAL, NotificationKind.DEPARTURE, NotificationKind.STATUS_CHANGE)
# Codes in notification payloads the page shows in words (i18n key prefix -> codes).
WORDED: dict[str, frozenset[str]] = {
    "registry.status.": frozenset(s.value for s in HealthStatus),
    "verdict.": frozenset(c.value for c in Color),
}


class InboxItem(BaseModel):
    """One notification as the inbox shows it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int
    ward_code: int
    ward_name: str
    kind: NotificationKind
    citizen_id: int | None
    full_name: str | None
    date_of_birth: date | None
    payload: dict[str, Any]
    created_at: datetime
    handled_at: datetime | None
    handled_by: int | None


class HandledBody(BaseModel):
    """Which notifications to mark handled."""

    model_config = ConfigDict(extra="forbid")

    ids: list[RowId] = Field(min_length=1, max_length=1000)


def _scoped(officer: Officer) -> list[Any]:
    clause = officer.ward_filter(ward_notifications.c.ward_code)
    return [] if clause is None else [clause]


def _half(
    officer: Officer, kind: NotificationKind | None, handled: bool, limit: int
) -> Select[Any]:
    n = ward_notifications.c
    query = (
        select(
            n.id,
            n.ward_code,
            wards.c.name.label("ward_name"),
            n.kind,
            n.citizen_id,
            citizens.c.full_name,
            citizens.c.date_of_birth,
            n.payload,
            n.created_at,
            n.handled_at,
            n.handled_by,
        )
        .join(wards, wards.c.code == n.ward_code)
        .outerjoin(citizens, citizens.c.id == n.citizen_id)
        .where(
            n.kind.in_([k.value for k in INBOX_KINDS]),
            # Spelled as the partial indexes' conditions, so each half reads its own.
            n.handled_at.is_not(None) if handled else n.handled_at.is_(None),
            *_scoped(officer),
        )
        .order_by(n.created_at.desc(), n.id.desc())
        .limit(limit)
    )
    if kind is not None:
        query = query.where(n.kind == NotificationKind(kind).value)
    return query


def list_inbox(
    conn: Connection,
    *,
    officer: Officer,
    kind: NotificationKind | None = None,
    handled: bool | None = False,
    limit: int = 100,
) -> list[InboxItem]:
    """Notifications in the officer's wards, newest first.

    ``handled`` None lists both kinds: the unhandled and the handled halves
    are indexed apart (``ix_ward_notifications_inbox`` and ``_handled``), so
    each is read newest first on its own index and the two are merged.
    """
    halves = [False, True] if handled is None else [handled]
    rows = [
        dict(row)
        for half in halves
        for row in conn.execute(_half(officer, kind, half, limit)).mappings()
    ]
    rows.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
    return [InboxItem.model_validate(r) for r in rows[:limit]]


def unhandled_counts(conn: Connection, *, officer: Officer) -> dict[str, int]:
    """Unhandled notifications per kind in the officer's wards (every kind listed)."""
    n = ward_notifications.c
    rows = conn.execute(
        select(n.kind, func.count())
        .where(
            n.handled_at.is_(None), n.kind.in_([k.value for k in INBOX_KINDS]), *_scoped(officer)
        )
        .group_by(n.kind)
    )
    counts = {k.value: 0 for k in INBOX_KINDS}
    counts.update({kind: int(count) for kind, count in rows})
    return counts


def mark_handled(
    conn: Connection, *, officer: Officer, ids: list[int], now: datetime | None = None
) -> list[int]:
    """Mark the officer's unhandled notifications among ``ids`` handled; returns those marked."""
    n = ward_notifications.c
    now = now if now is not None else datetime.now(UTC)
    found = list(
        conn.execute(
            select(n.id).where(n.id.in_(ids), n.handled_at.is_(None), *_scoped(officer))
        ).scalars()
    )
    if found:
        conn.execute(
            update(ward_notifications)
            .where(n.id.in_(found))
            .values(handled_at=now, handled_by=officer.id)
        )
    return sorted(found)


def _read(
    request: Request,
    officer: Officer,
    kind: NotificationKind | None,
    handled: bool | None,
    limit: int,
) -> tuple[list[InboxItem], dict[str, int]]:
    with write_transaction(get_engine(request)) as conn:
        items = list_inbox(conn, officer=officer, kind=kind, handled=handled, limit=limit)
        if items:
            record_read(
                conn,
                officer=officer,
                action="inbox.view",
                subject="ward_notifications",
                purpose=READ_PURPOSE,
                detail={"ids": [i.id for i in items][:500]},
                ip=client_ip(request),
            )
        counts = unhandled_counts(conn, officer=officer)
    return items, counts


def _handle(request: Request, officer: Officer, ids: list[int]) -> list[int]:
    with write_transaction(get_engine(request)) as conn:
        marked = mark_handled(conn, officer=officer, ids=ids)
        if marked:
            record_action(
                conn,
                officer=officer,
                action="inbox.handled",
                subject="ward_notifications",
                detail={"ids": marked[:500], "count": len(marked)},
                ip=client_ip(request),
            )
    return marked


def _handled_param(value: str) -> bool | None:
    return {"true": True, "false": False, "all": None}.get(value, False)


@router.get("/api/inbox", response_model=list[InboxItem])
async def api_inbox(
    request: Request,
    officer: InboxOfficer,
    kind: NotificationKind | None = None,
    handled: Annotated[str, Query(pattern="^(true|false|all)$")] = "false",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[InboxItem]:
    """Notifications of the officer's wards (unhandled by default)."""
    items, _ = await run_in_threadpool(
        _read, request, officer, kind, _handled_param(handled), limit
    )
    return items


@router.get("/api/inbox/counts")
async def api_counts(request: Request, officer: InboxOfficer) -> dict[str, int]:
    """Unhandled notifications per kind."""

    def count() -> dict[str, int]:
        with get_engine(request).connect() as conn:
            return unhandled_counts(conn, officer=officer)

    return await run_in_threadpool(count)


@router.post("/api/inbox/handled")
async def api_handled(request: Request, officer: InboxOfficer, body: HandledBody) -> Response:
    """Mark notifications handled (one or many)."""
    marked = await run_in_threadpool(_handle, request, officer, body.ids)
    missing = sorted(set(body.ids) - set(marked))
    return JSONResponse({"handled": marked, "not_found": missing})


@router.get("/inbox", include_in_schema=False)
async def inbox_page(
    request: Request, officer: InboxOfficer, kind: str = "", handled: str = "false"
) -> Response:
    """The ward inbox page."""
    chosen = NotificationKind(kind) if kind in {k.value for k in INBOX_KINDS} else None
    items, counts = await run_in_threadpool(
        _read, request, officer, chosen, _handled_param(handled), 200
    )
    return render(
        request,
        "inbox.html",
        {
            "items": items,
            "counts": counts,
            "kind": chosen.value if chosen else "",
            "handled": handled if handled in {"true", "all"} else "false",
            "kinds": INBOX_KINDS,
            "worded": WORDED,
        },
        officer=officer,
    )


@router.post("/inbox/handled", include_in_schema=False)
async def inbox_handled_form(request: Request, officer: InboxOfficer) -> Response:
    """Mark the ticked notifications (or only the one whose row button was pressed) handled."""
    form = await request.form()
    # A row's own button names its row ("one"): boxes ticked on other rows are not meant.
    one = form.get("one")
    chosen = [one] if isinstance(one, str) else form.getlist("id")
    ids = [i for v in chosen if isinstance(v, str) and (i := row_id(v)) is not None]
    data = await form_fields(request)
    if ids:
        await run_in_threadpool(_handle, request, officer, ids)
    back = "/inbox" + (f"?kind={data['kind']}" if data.get("kind") else "")
    return RedirectResponse(back, status_code=303)
