"""The investigator's screens: who passed a place, a citizen's route, an F0's likely contacts.

``GET /trace``                                 the page (three tabs; static/trace.js)
``GET /api/trace/place``                       everyone at a checkpoint/venue in a window (paged)
``GET /api/trace/place.csv`` / ``.xlsx``       the same, every page, as a file
``GET /api/trace/citizens``                    find a citizen by identity number or name
``GET /api/trace/route`` (+ ``.csv``/``.xlsx``)     one citizen's timeline
``GET /api/trace/contacts`` (+ ``.csv``/``.xlsx``)  likely contacts of an F0, ranked
``POST /api/trace/contacts/mark-f1``           set contacts to F1 and notify their wards

Who: investigators, health officials and administrators. An account with
scopes (a provincial investigator) sees passages at the checkpoints of its
scope only; a checkpoint outside it is refused like an unknown one (403).
It finds, traces and marks only the citizens within its scope (residents of
its wards, or people with a passage at its checkpoints); anyone else is
answered like an unknown id (404).
Ward police are not given tracing: they learn of their residents' passages
and status changes through their ward's notifications, and a city-wide
"who was there" list is the investigator's tool, not a ward's. Marking F1
is open to the same three roles (health officials decide statuses;
investigators act on a traced case).

Every read carries a purpose the officer types (``purpose``, at least five
characters) and is recorded with :func:`~aggregator.auth.audit.record_read`
in the same transaction; a request without one is refused (400) and reads
nothing. Times without a zone are Vietnam time (what ``datetime-local``
inputs send).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from aggregator.api.routes.alerts import EngineDep, refuse
from aggregator.auth.audit import LOCAL_TZ, record_read
from aggregator.auth.deps import Officer, client_ip, require_roles
from aggregator.db.engine import in_transaction
from aggregator.db.places import CheckpointPlace, checkpoint_places
from aggregator.db.registry import Citizen, CitizenNotFoundError
from aggregator.db.schema import HealthStatus, Role
from aggregator.db.tracing import (
    MAX_PAGE,
    Contacts,
    F1Marked,
    PlaceCursor,
    PlacePage,
    Route,
    TraceInputError,
    citizen_route,
    find_citizens,
    likely_contacts,
    mark_contacts_f1,
    place_passages,
    visible_citizens,
)
from aggregator.web import i18n_trace
from aggregator.web.exports import ExportFormat, export
from aggregator.web.forms import RowId
from aggregator.web.i18n import Lang, request_lang, t
from aggregator.web.templating import register_nav, render
from contract.messages import Color

router = APIRouter(tags=["tracing"])

TRACE_ROLES = (Role.INVESTIGATOR, Role.HEALTH_OFFICIAL, Role.ADMIN)
MARK_F1_ROLES = TRACE_ROLES
Investigator = Annotated[Officer, Depends(require_roles(*TRACE_ROLES))]
F1Marker = Annotated[Officer, Depends(require_roles(*MARK_F1_ROLES))]
register_nav("/trace", "nav.trace", set(TRACE_ROLES), order=40)

MIN_PURPOSE_CHARS = 5
EXPORT_MAX_ROWS = 100_000


def _purpose(value: str) -> str:
    text = value.strip()
    if len(text) < MIN_PURPOSE_CHARS:
        raise refuse(400, "purpose_required", "trace.error.purpose")
    return text


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=LOCAL_TZ) if value.tzinfo is None else value


def _utc(value: datetime) -> datetime:
    try:
        return _aware(value).astimezone(UTC)
    except OverflowError as exc:  # year 1 or 9999 shifted across midnight by the zone
        raise _bad_input(ValueError(f"{value.isoformat()}: out of range")) from exc


def _window(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    return _utc(since), _utc(until)


def _bad_input(exc: ValueError) -> HTTPException:
    return refuse(400, "bad_window", "trace.error.window", why=str(exc))


Purpose = Annotated[str, Query(max_length=200, description="mục đích / purpose (audited)")]
Since = Annotated[datetime, Query(description="start (no zone: Vietnam time)")]
Until = Annotated[datetime, Query(description="end, excluded (no zone: Vietnam time)")]


def _scope_ids(conn: Connection, officer: Officer) -> dict[str, CheckpointPlace] | None:
    """The checkpoints the officer may trace at (None: every one)."""
    if officer.unrestricted:
        return None
    return checkpoint_places(conn, scope=officer.checkpoint_filter())


def _check_citizens(conn: Connection, officer: Officer, citizen_ids: list[int]) -> None:
    """Refuse (404, as for an unknown id) any citizen outside the officer's scope.

    A scoped account sees the residents of its wards and whoever passed its
    checkpoints; anyone else's name, birth date and status stay hidden, and
    cannot be set to F1 from there.
    """
    scope = officer.citizen_filter()
    if scope is None:
        return
    if len(visible_citizens(conn, citizen_ids, scope=scope)) < len(set(citizen_ids)):
        raise refuse(404, "citizen_not_found", "trace.error.citizen")


def _check_place(conn: Connection, officer: Officer, checkpoint_id: str) -> CheckpointPlace:
    place = checkpoint_places(conn, ids=[checkpoint_id]).get(checkpoint_id)
    if place is None or not officer.can_see_checkpoint(
        place.id, ward_code=place.ward_code, province_code=place.province_code
    ):
        raise refuse(
            403, "checkpoint_forbidden", "trace.error.checkpoint", checkpoint=checkpoint_id
        )
    return place


# --- pages -----------------------------------------------------------------------------------


@router.get("/trace", response_class=HTMLResponse, include_in_schema=False)
async def trace_page(request: Request, officer: Investigator, engine: EngineDep) -> HTMLResponse:
    """The investigator's page: place + window, citizen route, F0 contacts."""

    def load() -> list[CheckpointPlace]:
        with engine.connect() as conn:
            scope = None if officer.unrestricted else officer.checkpoint_filter()
            return list(checkpoint_places(conn, scope=scope).values())

    places = await run_in_threadpool(load)
    lang = request_lang(request)
    now = datetime.now(LOCAL_TZ).replace(second=0, microsecond=0, tzinfo=None)
    return render(
        request,
        "trace.html",
        {
            "places": places,
            "default_since": (now - timedelta(days=1)).isoformat(timespec="minutes"),
            "default_until": (now + timedelta(minutes=1)).isoformat(timespec="minutes"),
            "strings": i18n_trace.js_strings(lang),
            "can_mark": officer.role in MARK_F1_ROLES,
            "verdict_labels": {c.value: t(f"verdict.{c.value}", lang) for c in Color},
            "health_labels": {h.value: t(f"health.{h.value}", lang) for h in HealthStatus},
        },
        officer=officer,
    )


# --- place + window --------------------------------------------------------------------------


def _place_page(
    engine: EngineDep,
    officer: Officer,
    ip: str,
    *,
    checkpoint_id: str,
    since: datetime,
    until: datetime,
    purpose: str,
    limit: int,
    after: PlaceCursor | None,
    action: str,
) -> PlacePage:
    def work(conn: Connection) -> PlacePage:
        _check_place(conn, officer, checkpoint_id)
        try:
            page = place_passages(
                conn,
                checkpoint_id=checkpoint_id,
                since=since,
                until=until,
                limit=limit,
                after=after,
            )
        except TraceInputError as exc:
            raise _bad_input(exc) from exc
        record_read(
            conn,
            officer=officer,
            action=action,
            subject=f"checkpoint:{checkpoint_id}",
            purpose=purpose,
            detail={
                "since": since.isoformat(),
                "until": until.isoformat(),
                "rows": len(page.hits),
                "after": after.model_dump(mode="json") if after else None,
            },
            ip=ip,
        )
        return page

    return in_transaction(engine, work)


@router.get("/api/trace/place")
def place_json(
    request: Request,
    *,
    officer: Investigator,
    engine: EngineDep,
    checkpoint_id: str,
    since: Since,
    until: Until,
    purpose: Purpose,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 500,
    after_seen_at: datetime | None = None,
    after_event_id: UUID | None = None,
) -> PlacePage:
    """Everyone who passed the checkpoint or venue in ``[since, until)``, oldest first (audited).

    Page on with ``after_seen_at``/``after_event_id`` from ``next_after``.
    """
    text = _purpose(purpose)
    start, end = _window(since, until)
    after = None
    if after_seen_at is not None and after_event_id is not None:
        after = PlaceCursor(seen_at=_utc(after_seen_at), event_id=after_event_id)
    return _place_page(
        engine,
        officer,
        client_ip(request),
        checkpoint_id=checkpoint_id,
        since=start,
        until=end,
        purpose=text,
        limit=limit,
        after=after,
        action="trace.place",
    )


def _person_cells(lang: Lang) -> list[str]:
    return [
        t("trace.col.identity_no", lang),
        t("trace.col.full_name", lang),
        t("trace.col.date_of_birth", lang),
        t("trace.col.phone", lang),
        t("trace.col.health_status", lang),
        t("trace.col.permanent_ward", lang),
        t("trace.col.temporary_ward", lang),
    ]


def _direction(value: str, lang: Lang) -> str:
    return t(f"trace.direction.{value}", lang)


@router.get("/api/trace/place.{fmt}")
def place_export(
    request: Request,
    *,
    officer: Investigator,
    engine: EngineDep,
    fmt: ExportFormat,
    checkpoint_id: str,
    since: Since,
    until: Until,
    purpose: Purpose,
) -> Response:
    """The whole list as CSV (UTF-8 with BOM) or XLSX, up to 100,000 rows (audited)."""
    text = _purpose(purpose)
    start, end = _window(since, until)
    lang = request_lang(request)
    hits = []
    after: PlaceCursor | None = None
    while len(hits) < EXPORT_MAX_ROWS:
        page = _place_page(
            engine,
            officer,
            client_ip(request),
            checkpoint_id=checkpoint_id,
            since=start,
            until=end,
            purpose=text,
            limit=MAX_PAGE,
            after=after,
            action="trace.place.export",
        )
        hits.extend(page.hits)
        if page.next_after is None:
            break
        after = page.next_after
    header = [
        t("trace.col.seen_at", lang),
        t("trace.col.direction", lang),
        t("trace.col.verdict", lang),
        *_person_cells(lang),
    ]
    rows = (
        [
            h.seen_at,
            _direction(h.direction.value, lang),
            h.verdict.value,
            h.identity_no,
            h.full_name,
            h.date_of_birth,
            h.phone,
            h.health_status,
            h.permanent_ward,
            h.temporary_ward,
        ]
        for h in hits[:EXPORT_MAX_ROWS]
    )
    stem = f"truy-vet-{checkpoint_id}-{start.astimezone(LOCAL_TZ):%Y%m%d-%H%M}"
    return export(fmt, filename_stem=stem, title=checkpoint_id, header=header, rows=rows)


# --- citizens, route ------------------------------------------------------------------------


class CitizenHit(BaseModel):
    """A citizen the search found (enough to choose the right one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    citizen_id: int
    identity_no: str
    full_name: str
    date_of_birth: str
    health_status: str

    @classmethod
    def of(cls, citizen: Citizen) -> CitizenHit:
        """From the registry's record."""
        return cls(
            citizen_id=citizen.id,
            identity_no=citizen.identity_no,
            full_name=citizen.full_name,
            date_of_birth=citizen.date_of_birth.isoformat(),
            health_status=citizen.health_status.value,
        )


@router.get("/api/trace/citizens")
def citizens_json(
    request: Request,
    *,
    officer: Investigator,
    engine: EngineDep,
    q: Annotated[str, Query(min_length=1, max_length=120)],
    purpose: Purpose,
) -> list[CitizenHit]:
    """Citizens by 12-digit identity number or by name prefix ignoring diacritics (audited)."""
    text = _purpose(purpose)

    def work(conn: Connection) -> list[CitizenHit]:
        scope = officer.citizen_filter()
        found = [CitizenHit.of(c) for c in find_citizens(conn, query=q, limit=20, scope=scope)]
        record_read(
            conn,
            officer=officer,
            action="trace.search",
            subject="citizens:search",
            purpose=text,
            detail={"query": q, "rows": len(found), "ids": [c.citizen_id for c in found]},
            ip=client_ip(request),
        )
        return found

    return in_transaction(engine, work)


def _route(
    engine: EngineDep,
    officer: Officer,
    ip: str,
    *,
    citizen_id: int,
    since: datetime,
    until: datetime,
    purpose: str,
    action: str,
) -> Route:
    def work(conn: Connection) -> Route:
        _check_citizens(conn, officer, [citizen_id])
        scope = _scope_ids(conn, officer)
        try:
            route = citizen_route(
                conn,
                citizen_id=citizen_id,
                since=since,
                until=until,
                checkpoint_ids=None if scope is None else list(scope),
            )
        except TraceInputError as exc:
            raise _bad_input(exc) from exc
        if route is None:
            raise refuse(404, "citizen_not_found", "trace.error.citizen")
        record_read(
            conn,
            officer=officer,
            action=action,
            subject=f"citizen:{citizen_id}",
            purpose=purpose,
            detail={
                "since": since.isoformat(),
                "until": until.isoformat(),
                "rows": len(route.stops),
            },
            ip=ip,
        )
        return route

    return in_transaction(engine, work)


@router.get("/api/trace/route")
def route_json(
    request: Request,
    *,
    officer: Investigator,
    engine: EngineDep,
    citizen_id: RowId,
    since: Since,
    until: Until,
    purpose: Purpose,
) -> Route:
    """One citizen's passages across checkpoints and venues, oldest first (audited)."""
    text = _purpose(purpose)
    start, end = _window(since, until)
    return _route(
        engine,
        officer,
        client_ip(request),
        citizen_id=citizen_id,
        since=start,
        until=end,
        purpose=text,
        action="trace.route",
    )


@router.get("/api/trace/route.{fmt}")
def route_export(
    request: Request,
    *,
    officer: Investigator,
    engine: EngineDep,
    fmt: ExportFormat,
    citizen_id: RowId,
    since: Since,
    until: Until,
    purpose: Purpose,
) -> Response:
    """The route as CSV or XLSX (audited)."""
    text = _purpose(purpose)
    start, end = _window(since, until)
    lang = request_lang(request)
    route = _route(
        engine,
        officer,
        client_ip(request),
        citizen_id=citizen_id,
        since=start,
        until=end,
        purpose=text,
        action="trace.route.export",
    )
    header = [
        t("trace.col.seen_at", lang),
        t("trace.col.checkpoint_id", lang),
        t("trace.col.checkpoint", lang),
        t("trace.col.ward", lang),
        t("trace.col.direction", lang),
        t("trace.col.verdict", lang),
        t("trace.col.reason", lang),
        t("trace.col.identity_no", lang),
        t("trace.col.full_name", lang),
    ]
    rows = (
        [
            s.seen_at,
            s.checkpoint_id,
            s.checkpoint_name,
            s.ward_name,
            _direction(s.direction.value, lang),
            s.verdict.value,
            s.reason,
            route.person.identity_no,
            route.person.full_name,
        ]
        for s in route.stops
    )
    stem = f"lo-trinh-{route.person.identity_no}"
    return export(fmt, filename_stem=stem, title=route.person.identity_no, header=header, rows=rows)


# --- contacts --------------------------------------------------------------------------------


def _contacts(
    engine: EngineDep,
    officer: Officer,
    ip: str,
    *,
    citizen_id: int,
    since: datetime,
    until: datetime,
    window_minutes: int,
    purpose: str,
    action: str,
) -> Contacts:
    def work(conn: Connection) -> Contacts:
        _check_citizens(conn, officer, [citizen_id])
        scope = _scope_ids(conn, officer)
        try:
            found = likely_contacts(
                conn,
                citizen_id=citizen_id,
                since=since,
                until=until,
                window_minutes=window_minutes,
                checkpoint_ids=None if scope is None else list(scope),
            )
        except TraceInputError as exc:
            raise _bad_input(exc) from exc
        if found is None:
            raise refuse(404, "citizen_not_found", "trace.error.citizen")
        record_read(
            conn,
            officer=officer,
            action=action,
            subject=f"citizen:{citizen_id}",
            purpose=purpose,
            detail={
                "since": since.isoformat(),
                "until": until.isoformat(),
                "window_minutes": window_minutes,
                "contacts": [c.person.citizen_id for c in found.contacts][:500],
            },
            ip=ip,
        )
        return found

    return in_transaction(engine, work)


WindowMinutes = Annotated[int, Query(ge=1, le=240)]


@router.get("/api/trace/contacts")
def contacts_json(
    request: Request,
    *,
    officer: Investigator,
    engine: EngineDep,
    citizen_id: RowId,
    since: Since,
    until: Until,
    purpose: Purpose,
    window_minutes: WindowMinutes = 15,
) -> Contacts:
    """Likely contacts of the citizen (same place within ±N minutes), ranked (audited)."""
    text = _purpose(purpose)
    start, end = _window(since, until)
    return _contacts(
        engine,
        officer,
        client_ip(request),
        citizen_id=citizen_id,
        since=start,
        until=end,
        window_minutes=window_minutes,
        purpose=text,
        action="trace.contacts",
    )


@router.get("/api/trace/contacts.{fmt}")
def contacts_export(
    request: Request,
    *,
    officer: Investigator,
    engine: EngineDep,
    fmt: ExportFormat,
    citizen_id: RowId,
    since: Since,
    until: Until,
    purpose: Purpose,
    window_minutes: WindowMinutes = 15,
) -> Response:
    """The ranked contacts as CSV or XLSX (audited)."""
    text = _purpose(purpose)
    start, end = _window(since, until)
    lang = request_lang(request)
    found = _contacts(
        engine,
        officer,
        client_ip(request),
        citizen_id=citizen_id,
        since=start,
        until=end,
        window_minutes=window_minutes,
        purpose=text,
        action="trace.contacts.export",
    )
    header = [
        *_person_cells(lang),
        t("trace.col.shared", lang),
        t("trace.col.closest", lang),
        t("trace.col.mean", lang),
        t("trace.col.places", lang),
    ]
    rows = (
        [
            c.person.identity_no,
            c.person.full_name,
            c.person.date_of_birth,
            c.person.phone,
            c.person.health_status,
            c.person.permanent_ward,
            c.person.temporary_ward,
            c.shared_passages,
            round(c.closest_gap_s / 60, 1),
            round(c.mean_gap_s / 60, 1),
            ", ".join(c.places),
        ]
        for c in found.contacts
    )
    stem = f"tiep-xuc-{found.source.identity_no}"
    return export(fmt, filename_stem=stem, title=found.source.identity_no, header=header, rows=rows)


class MarkF1In(BaseModel):
    """Contacts to set to F1, and the F0 they were traced from."""

    model_config = ConfigDict(extra="forbid")

    source_citizen_id: RowId
    citizen_ids: list[RowId] = Field(min_length=1, max_length=1_000)


class MarkF1Out(BaseModel):
    """What changed; ``denylist_published`` says the gates were told at once."""

    model_config = ConfigDict(extra="forbid")

    marked: list[F1Marked]
    changed: int
    kept: int
    denylist_published: bool


@router.post("/api/trace/contacts/mark-f1")
def mark_f1(request: Request, officer: F1Marker, engine: EngineDep, body: MarkF1In) -> MarkF1Out:
    """Set the contacts to F1 and notify their wards in one transaction (audited per citizen).

    After the commit the gates' deny-list is published at once when this
    process runs the aggregator service; otherwise its next poll picks it up.
    """
    if body.source_citizen_id in body.citizen_ids:
        raise refuse(400, "source_in_contacts", "trace.error.source_in_contacts")

    def work(conn: Connection) -> list[F1Marked]:
        _check_citizens(conn, officer, [body.source_citizen_id, *body.citizen_ids])
        try:
            return mark_contacts_f1(
                conn,
                citizen_ids=body.citizen_ids,
                officer=officer,
                at=datetime.now(UTC),
                source_citizen_id=body.source_citizen_id,
                ip=client_ip(request),
            )
        except CitizenNotFoundError as exc:
            raise refuse(404, "citizen_not_found", "trace.error.citizen") from exc

    marked = in_transaction(engine, work)
    changed = sum(m.changed for m in marked)
    published = False
    service = getattr(request.app.state, "service", None)
    if changed and service is not None and service.started:
        service.denylist.publish_now()
        published = True
    return MarkF1Out(
        marked=marked, changed=changed, kept=len(marked) - changed, denylist_published=published
    )
