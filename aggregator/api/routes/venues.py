"""Venues: managers register premises as check-in points, print the poster, scan visitors in.

Pages (venue managers within their scope, administrators):

``GET /venues``                    my venues, and venue checkpoints still to register
``GET /venues/new``                the registration form (``?checkpoint=<id>`` completes one)
``POST /venues/new``               register it (form)
``GET /venues/{id}``               -> the check-in page
``GET /venues/{id}/poster``        the printable A4 poster: the venue's QR, name, instructions
``GET /venues/{id}/qr.svg``        the poster's QR alone
``GET /venues/{id}/checkin``       the door scanner: camera (BarcodeDetector or jsQR), typed code
``GET /venues/{id}/passages``      the day's check-ins with the visitors' initials (audited)
``POST /venues/{id}/active``       close or reopen the venue for check-ins (form)

Public: ``GET /dia-diem/{id}``, what the poster's QR opens on a visitor's phone:
the venue's name and address, what to do at the door, where to declare.

JSON: ``GET /api/venues``, ``POST /api/venues``, ``GET /api/venues/{id}``,
``PATCH /api/venues/{id}`` (``{"active": false}``),
``POST /api/venues/{id}/checkins`` (``{"token", "event_id", "source"}``) and
``GET /api/venues/{id}/passages?day=YYYY-MM-DD`` (audited).

Who: a venue manager sees and scans only at the venues of their scope (a
venue they register is added to it); an administrator everywhere, and may
register a venue for a venue manager account (``manager_username``), which is
how a new manager gets their first venue. A venue outside the scope is
refused like an unknown one (403), so ids cannot be probed.

A check-in runs the real ingest pipeline of this process
(:func:`aggregator.db.venues.check_in`); its alerts are announced to every
officer's monitor on ``kd/v1/alerts/<venue>`` through the service's control
link, as the ingest consumer announces a gate's, and the monitors' database
poll picks them up anyway when the broker is unreachable. The verdict shown
at the door says admit or not, never why for a health reason: a venue's
staff are not health officers (the alert carries the reason to those who are).
"""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from aggregator.api.deps import ServiceDep
from aggregator.api.routes.alerts import EngineDep, refuse
from aggregator.auth.audit import record_read
from aggregator.auth.deps import Officer, client_ip, get_engine, require_roles
from aggregator.auth.problems import Problem, ProblemError, custom_error
from aggregator.db.engine import in_transaction
from aggregator.db.places import CheckpointPlace, checkpoint_places
from aggregator.db.schema import Role, VenueCategory
from aggregator.db.venues import (
    FIRST_DAY,
    LAST_DAY,
    CheckIn,
    CheckInError,
    Venue,
    VenueDay,
    VenueDetails,
    VenuePassage,
    check_in,
    door_code,
    find_manager,
    get_venue,
    list_venues,
    register_venue,
    set_venue_active,
    today,
    unregistered_venue_places,
    venue_day,
)
from aggregator.ingest.keyring import load_keyring
from aggregator.ingest.pipeline import IngestPipeline
from aggregator.ingest.writer import RaisedAlert
from aggregator.service import AggregatorService
from aggregator.web import admin_ops
from aggregator.web.forms import by_field, form_fields, validate
from aggregator.web.i18n import Lang, request_lang, t
from aggregator.web.i18n_venues import js_strings
from aggregator.web.qr import qr_svg
from aggregator.web.templating import PAGE_HEADERS, register_nav, render
from contract.messages import AlertNotice, Color, VerdictCode, encode
from contract.topics import alert_topic

log = logging.getLogger(__name__)

router = APIRouter(tags=["venues"])

VENUE_ROLES = (Role.VENUE_MANAGER, Role.ADMIN)
VenueOfficer = Annotated[Officer, Depends(require_roles(*VENUE_ROLES))]
register_nav("/venues", "nav.venues", set(VENUE_ROLES), order=15)

PURPOSE_VENUE_DAY = "lượt vào trong ngày tại địa điểm / a venue's check-ins of the day"
PUBLIC_PATH = "/dia-diem"
_KEYRING_LOCK = threading.Lock()


# --- bodies and answers -------------------------------------------------------------------


class VenueCreate(VenueDetails):
    """A new venue (``manager_username``: administrators registering for a venue manager;
    ``checkpoint_id``: complete an existing venue checkpoint instead of making one)."""

    manager_username: str | None = Field(default=None, max_length=64)
    checkpoint_id: str | None = Field(default=None, max_length=64)


class VenueOut(Venue):
    """A venue with its category in the officer's language and its pages."""

    category_label: str
    checkin_url: str
    poster_url: str
    public_url: str


class VenueActive(BaseModel):
    """Open (``true``) or close (``false``) a venue for check-ins."""

    model_config = ConfigDict(extra="forbid")

    active: bool


class CheckInRequest(BaseModel):
    """A pass code read at the venue's door.

    ``event_id``: a UUIDv7 the page made for this scan and sends again on a
    retry, so a retried request never checks the visitor in twice.
    """

    model_config = ConfigDict(extra="forbid")

    token: str = Field(max_length=4096)
    event_id: UUID | None = None
    source: Literal["camera", "manual"] = "manual"

    @field_validator("event_id")
    @classmethod
    def _uuid7(cls, value: UUID | None) -> UUID | None:
        if value is not None and value.version != 7:
            raise custom_error("venue.error.event_id")
        return value


class CheckInOut(BaseModel):
    """What the door shows: admit or not, in the officer's language."""

    model_config = ConfigDict(extra="forbid")

    event_id: UUID
    venue_id: str
    seq: int
    seen_at: datetime
    color: Color
    headline: str
    detail: str
    # Only for reasons about the code (forged, expired...): a health reason stays hidden.
    code: VerdictCode | None
    duplicate: bool
    repeat: bool


class PassageOut(VenuePassage):
    """A check-in with its verdict in the officer's language."""

    headline: str


class VenueDayOut(BaseModel):
    """A venue's check-ins of one day (Vietnam time), newest first."""

    model_config = ConfigDict(extra="forbid")

    venue_id: str
    day: date
    passages: list[PassageOut]
    truncated: bool
    counts: dict[Color, int]


# --- helpers -------------------------------------------------------------------------------


def venue_headline(color: Color, lang: Lang) -> str:
    """The big words at the door for a verdict colour."""
    return t(f"venue.verdict.{color.value}", lang)


def check_in_out(result: CheckIn, lang: Lang) -> CheckInOut:
    """The answer for the door (a health reason is never named)."""
    shown = door_code(result.code)
    detail = (
        t(f"code.{shown.value}", lang)
        if shown is not None
        else t(f"venue.verdict.{result.color.value}.detail", lang)
    )
    return CheckInOut(
        event_id=result.event_id,
        venue_id=result.venue_id,
        seq=result.seq,
        seen_at=result.seen_at,
        color=result.color,
        headline=venue_headline(result.color, lang),
        detail=detail,
        code=shown,
        duplicate=result.duplicate,
        repeat=result.repeat,
    )


def _in_scope(officer: Officer, venue: Venue) -> bool:
    return officer.can_see_checkpoint(
        venue.id, ward_code=venue.ward_code, province_code=venue.province_code
    )


def scoped_venue(conn: Connection, officer: Officer, venue_id: str) -> Venue | None:
    """The venue if it exists and is within the officer's scope, else None."""
    venue = get_venue(conn, venue_id=venue_id)
    return venue if venue is not None and _in_scope(officer, venue) else None


def _forbidden(venue_id: str) -> Exception:
    return refuse(403, "venue_forbidden", "venue.error.forbidden", id=venue_id)


def _api_venue(request: Request, officer: Officer, venue_id: str) -> Venue:
    with get_engine(request).connect() as conn:
        venue = scoped_venue(conn, officer, venue_id)
    if venue is None:
        raise _forbidden(venue_id)
    return venue


def _venue_out(request: Request, venue: Venue, lang: Lang) -> VenueOut:
    return VenueOut(
        **venue.model_dump(),
        category_label=t(f"venue.category.{venue.category.value}", lang),
        checkin_url=f"/venues/{venue.id}/checkin",
        poster_url=f"/venues/{venue.id}/poster",
        public_url=public_url(request, venue.id),
    )


def public_url(request: Request, venue_id: str) -> str:
    """The absolute address of the venue's public page (what its poster's QR holds)."""
    return f"{str(request.base_url).rstrip('/')}{PUBLIC_PATH}/{venue_id}"


def _problems_json(problems: list[Problem], status: int = 422) -> JSONResponse:
    return JSONResponse({"detail": [p.as_json() for p in problems]}, status_code=status)


def _page_refusal(
    request: Request, officer: Officer | None, key: str, status_code: int = 403
) -> HTMLResponse:
    return render(
        request, "error.html", {"message_key": key}, officer=officer, status_code=status_code
    )


def venue_pipeline(service: AggregatorService) -> IngestPipeline:
    """This process's ingest pipeline, its verifier holding the configured keyring.

    A started service loaded the keyring and keeps it current; an app serving
    a service it did not start (tests, a screens-only process) loads the file
    on first use. Raises 503 when there is no usable keyring: every code
    would otherwise be judged forged and raise a false alert.
    """
    verifier = service.verifier
    if not len(verifier.keyring):
        with _KEYRING_LOCK:
            if not len(verifier.keyring):
                try:
                    verifier.replace_keyring(load_keyring(service.settings.keyring_path))
                except ValueError as exc:
                    log.error("venue check-in without a keyring: %s", exc)
                    raise refuse(503, "keyring_unavailable", "venue.error.keyring") from exc
    return service.pipeline


def announce_alerts(service: AggregatorService, alerts: list[RaisedAlert]) -> int:
    """Tell the officers' monitors of the check-in's alerts, as the ingest consumer does for a
    gate's (``kd/v1/alerts/<venue>``, QoS 1); returns how many the broker took.

    Without the broker the monitors still learn of them from their database poll.
    """
    sent = 0
    for alert in alerts:
        accepted = alert.accepted
        kind = accepted.decision.alert
        if kind is None:
            continue
        notice = AlertNotice(
            alert_id=alert.alert_id,
            event_id=accepted.event.event_id,
            checkpoint_id=accepted.event.checkpoint_id,
            device_id=accepted.event.device_id,
            kind=kind,
            created_at=alert.created_at,
        )
        if service.control.publish(alert_topic(notice.checkpoint_id), encode(notice), qos=1):
            sent += 1
    if sent < len(alerts):
        log.info("venue alerts: %d of %d announced over MQTT", sent, len(alerts))
    return sent


def _register(
    request: Request, officer: Officer, body: VenueCreate
) -> tuple[Venue | None, list[Problem]]:
    """Register ``body`` for ``officer``; the venue, or the problems that prevented it."""

    def work(conn: Connection) -> Venue:
        problems: list[Problem] = []
        manager_id = None
        if body.manager_username:
            if officer.role is not Role.ADMIN:
                problems.append(Problem("manager_username", "venue.error.manager_admin_only"))
            else:
                manager_id = find_manager(conn, username=body.manager_username)
                if manager_id is None:
                    problems.append(
                        Problem(
                            "manager_username",
                            "venue.error.manager",
                            {"username": body.manager_username},
                        )
                    )
        if body.checkpoint_id is not None:
            place = checkpoint_places(conn, ids=[body.checkpoint_id]).get(body.checkpoint_id)
            if place is None or not officer.can_see_checkpoint(
                place.id, ward_code=place.ward_code, province_code=place.province_code
            ):
                # Another's checkpoint answers like an unknown one.
                problems.append(
                    Problem("checkpoint_id", "venue.error.not_a_venue", {"id": body.checkpoint_id})
                )
        if problems:
            raise ProblemError(problems)
        return register_venue(
            conn,
            details=body,
            officer=officer,
            manager_id=manager_id,
            checkpoint_id=body.checkpoint_id,
            ip=client_ip(request),
        )

    try:
        return in_transaction(get_engine(request), work), []
    except ProblemError as exc:
        return None, exc.problems


# === pages ===================================================================================


@router.get("/venues", include_in_schema=False)
def venues_page(
    request: Request, officer: VenueOfficer, engine: EngineDep, created: str | None = None
) -> HTMLResponse:
    """The officer's venues, with links to their poster, scanner and check-ins."""
    with engine.connect() as conn:
        scope = officer.checkpoint_filter()
        found = list_venues(conn, scope=scope)
        pending = unregistered_venue_places(conn, scope=scope)
    return render(
        request,
        "venues/list.html",
        {
            "venues": found,
            "pending": pending,
            "created": created,
            "page": {"title": t("venue.list.title", request_lang(request))},
        },
        officer=officer,
    )


def _form_page(
    request: Request,
    officer: Officer,
    *,
    values: dict[str, str],
    problems: list[Problem] | None = None,
    adopt: CheckpointPlace | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with get_engine(request).connect() as conn:
        chosen = values.get("ward_code", "").strip()
        options = admin_ops.find_wards(conn, chosen) if chosen.isdigit() else []
        typed = values.get("ward_q", "").strip()
        if typed:
            options += [w for w in admin_ops.find_wards(conn, typed) if w not in options]
    return render(
        request,
        "venues/register.html",
        {
            "values": values,
            "problems": by_field(problems or []),
            "ward_options": options,
            "categories": list(VenueCategory),
            "adopt": adopt,
            "may_name_manager": officer.role is Role.ADMIN,
        },
        officer=officer,
        status_code=status_code,
    )


@router.get("/venues/new", include_in_schema=False)
def register_page(
    request: Request, officer: VenueOfficer, checkpoint: str | None = None
) -> HTMLResponse:
    """The registration form (``checkpoint``: complete that existing venue checkpoint)."""
    values: dict[str, str] = {}
    adopt = None
    if checkpoint:
        with get_engine(request).connect() as conn:
            scope = officer.checkpoint_filter()
            adopt = next(
                (p for p in unregistered_venue_places(conn, scope=scope) if p.id == checkpoint),
                None,
            )
        if adopt is None:
            return _page_refusal(request, officer, "venue.error.forbidden_page")
        values = {
            "checkpoint_id": adopt.id,
            "name": adopt.name,
            "ward_code": str(adopt.ward_code),
            "lat": "" if adopt.lat is None else str(adopt.lat),
            "lon": "" if adopt.lon is None else str(adopt.lon),
        }
    return _form_page(request, officer, values=values, adopt=adopt)


def _typed_ward(request: Request, data: dict[str, str]) -> dict[str, str]:
    # Without JavaScript the officer types a ward's name: one match is the choice.
    resolved = dict(data)
    query = data.get("ward_q", "").strip()
    if not data.get("ward_code", "").strip() and query:
        with get_engine(request).connect() as conn:
            found = admin_ops.find_wards(conn, query)
        if len(found) == 1:
            resolved["ward_code"] = str(found[0].code)
    return resolved


def _submit_form(request: Request, officer: Officer, data: dict[str, str]) -> Response:
    data = _typed_ward(request, data)
    fields = {k: v for k, v in data.items() if k in VenueCreate.model_fields}
    if officer.role is not Role.ADMIN:
        fields.pop("manager_username", None)
    body, problems = validate(VenueCreate, fields)
    if body is not None:
        venue, problems = _register(request, officer, body)
        if venue is not None:
            return RedirectResponse(f"/venues?created={venue.id}", status_code=303)
    adopt = None
    if data.get("checkpoint_id"):
        with get_engine(request).connect() as conn:
            adopt = checkpoint_places(conn, ids=[data["checkpoint_id"]]).get(data["checkpoint_id"])
    return _form_page(
        request, officer, values=data, problems=problems, adopt=adopt, status_code=422
    )


@router.post("/venues/new", include_in_schema=False)
async def register_submit(request: Request, officer: VenueOfficer) -> Response:
    """Register the venue from the form; to the list on success, the form with problems else."""
    data = await form_fields(request)
    return await run_in_threadpool(_submit_form, request, officer, data)


def _venue_for_page(request: Request, officer: Officer, venue_id: str) -> Venue | None:
    with get_engine(request).connect() as conn:
        return scoped_venue(conn, officer, venue_id)


@router.get("/venues/{venue_id}", include_in_schema=False)
def venue_home(venue_id: str, _officer: VenueOfficer) -> Response:
    """A venue's address opens its check-in page."""
    return RedirectResponse(f"/venues/{venue_id}/checkin", status_code=303)


@router.get("/venues/{venue_id}/poster", include_in_schema=False)
def poster_page(request: Request, venue_id: str, officer: VenueOfficer) -> Response:
    """The A4 poster to print and hang at the door."""
    venue = _venue_for_page(request, officer, venue_id)
    if venue is None:
        return _page_refusal(request, officer, "venue.error.forbidden_page")
    base = str(request.base_url).rstrip("/")
    return render(
        request,
        "venues/poster.html",
        {
            "venue": venue,
            "public_url": public_url(request, venue.id),
            "declare_url": f"{base}/khai-bao",
            # The poster is bilingual whatever the screen's language.
            "t_in": t,
        },
        officer=officer,
    )


@router.get("/venues/{venue_id}/qr.svg", include_in_schema=False)
def poster_qr(request: Request, venue_id: str, officer: VenueOfficer) -> Response:
    """The QR of the venue's public page (SVG: sharp at any print size)."""
    venue = _venue_for_page(request, officer, venue_id)
    if venue is None:
        raise _forbidden(venue_id)
    return Response(
        qr_svg(public_url(request, venue.id)),
        media_type="image/svg+xml",
        headers={
            **PAGE_HEADERS,
            "Content-Disposition": f'inline; filename="dia-diem-{venue.id}.svg"',
        },
    )


@router.get("/venues/{venue_id}/checkin", include_in_schema=False)
def checkin_page(request: Request, venue_id: str, officer: VenueOfficer) -> Response:
    """The scanner at the door: camera and typed code; each verdict shown big."""
    venue = _venue_for_page(request, officer, venue_id)
    if venue is None:
        return _page_refusal(request, officer, "venue.error.forbidden_page")
    lang = request_lang(request)
    return render(
        request,
        "venues/checkin.html",
        {"venue": venue, "strings": js_strings(lang)},
        officer=officer,
    )


def _read_day(request: Request, officer: Officer, venue: Venue, day: date) -> VenueDay:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise refuse(422, "bad_day", "venue.error.day", first=FIRST_DAY, last=LAST_DAY)

    def work(conn: Connection) -> VenueDay:
        found = venue_day(conn, checkpoint_id=venue.id, day=day)
        record_read(
            conn,
            officer=officer,
            action="venue.passages",
            subject=f"checkpoint:{venue.id}",
            purpose=PURPOSE_VENUE_DAY,
            detail={"day": day.isoformat(), "rows": len(found.passages)},
            ip=client_ip(request),
        )
        return found

    return in_transaction(get_engine(request), work)


@router.get("/venues/{venue_id}/passages", include_in_schema=False)
def passages_page(
    request: Request, venue_id: str, officer: VenueOfficer, day: date | None = None
) -> Response:
    """The venue's check-ins of a day (today by default), newest first (audited)."""
    venue = _venue_for_page(request, officer, venue_id)
    if venue is None:
        return _page_refusal(request, officer, "venue.error.forbidden_page")
    chosen = day or today()
    if not FIRST_DAY <= chosen <= LAST_DAY:
        return _page_refusal(request, officer, "venue.error.day_page", status_code=422)
    found = _read_day(request, officer, venue, chosen)
    return render(
        request,
        "venues/passages.html",
        {"venue": venue, "found": found, "today": today(), "colors": list(Color)},
        officer=officer,
    )


def _set_active(request: Request, officer: Officer, venue_id: str, active: bool) -> bool:
    def work(conn: Connection) -> bool:
        if scoped_venue(conn, officer, venue_id) is None:
            return False
        return set_venue_active(
            conn, venue_id=venue_id, active=active, officer=officer, ip=client_ip(request)
        )

    return in_transaction(get_engine(request), work)


@router.post("/venues/{venue_id}/active", include_in_schema=False)
async def active_submit(request: Request, venue_id: str, officer: VenueOfficer) -> Response:
    """Close (``active=0``) or reopen (``active=1``) the venue from the list page."""
    data = await form_fields(request)
    done = await run_in_threadpool(
        _set_active, request, officer, venue_id, data.get("active") == "1"
    )
    if not done:
        return _page_refusal(request, officer, "venue.error.forbidden_page")
    return RedirectResponse("/venues", status_code=303)


@router.get(PUBLIC_PATH + "/{venue_id}", include_in_schema=False)
def public_page(request: Request, venue_id: str) -> Response:
    """What a visitor's phone shows after scanning the poster (no login, no personal data)."""
    with get_engine(request).connect() as conn:
        venue = get_venue(conn, venue_id=venue_id)
    if venue is None:
        return _page_refusal(request, None, "venue.error.not_found", status_code=404)
    return render(request, "venues/public.html", {"venue": venue}, officer=None)


# === JSON API ================================================================================


@router.get("/api/venues", response_model=list[VenueOut])
def api_venues(request: Request, officer: VenueOfficer, engine: EngineDep) -> list[VenueOut]:
    """The venues within the officer's scope (every venue for an unscoped administrator)."""
    lang = request_lang(request)
    with engine.connect() as conn:
        found = list_venues(conn, scope=officer.checkpoint_filter())
    return [_venue_out(request, v, lang) for v in found]


@router.post("/api/venues", status_code=201, response_model=VenueOut, responses={422: {}})
def api_register(request: Request, officer: VenueOfficer, body: VenueCreate) -> Any:
    """Register a venue (its checkpoint, its scanning device, its details)."""
    venue, problems = _register(request, officer, body)
    if venue is None:
        return _problems_json(problems)
    return _venue_out(request, venue, request_lang(request))


@router.get("/api/venues/{venue_id}", response_model=VenueOut, responses={403: {}})
def api_venue(request: Request, venue_id: str, officer: VenueOfficer) -> VenueOut:
    """One venue within the officer's scope."""
    return _venue_out(request, _api_venue(request, officer, venue_id), request_lang(request))


@router.patch("/api/venues/{venue_id}", response_model=VenueOut, responses={403: {}})
def api_set_active(
    request: Request, venue_id: str, officer: VenueOfficer, body: VenueActive
) -> VenueOut:
    """Close or reopen a venue for check-ins (its passages stay)."""
    if not _set_active(request, officer, venue_id, body.active):
        raise _forbidden(venue_id)
    return _venue_out(request, _api_venue(request, officer, venue_id), request_lang(request))


@router.post(
    "/api/venues/{venue_id}/checkins",
    response_model=CheckInOut,
    responses={403: {}, 409: {}, 422: {}, 503: {}},
)
def api_check_in(
    request: Request,
    venue_id: str,
    officer: VenueOfficer,
    body: CheckInRequest,
    service: ServiceDep,
) -> CheckInOut:
    """Check a visitor's pass in at the venue: a passage through the ingest pipeline.

    Idempotent: a retried request with the same ``event_id`` answers the
    stored verdict (``duplicate``); the same pass again within seconds answers
    the earlier check-in (``repeat``) instead of counting a second visit.
    """
    venue = _api_venue(request, officer, venue_id)
    pipeline = venue_pipeline(service)
    try:
        result = check_in(
            service.engine,
            pipeline,
            venue=venue,
            token=body.token,
            event_id=body.event_id,
            decoder=body.source,
        )
    except CheckInError as exc:
        status = {"venue_inactive": 409, "event_id_taken": 409}.get(exc.code, 422)
        raise refuse(status, exc.code, f"venue.error.{exc.code}") from exc
    if result.alerts:
        announce_alerts(service, result.alerts)
    return check_in_out(result, request_lang(request))


@router.get("/api/venues/{venue_id}/passages", response_model=VenueDayOut, responses={403: {}})
def api_passages(
    request: Request,
    venue_id: str,
    officer: VenueOfficer,
    day: Annotated[date | None, Query(description="Vietnam day; today when absent")] = None,
) -> VenueDayOut:
    """The venue's check-ins of a day, newest first, with the visitors' initials (audited)."""
    venue = _api_venue(request, officer, venue_id)
    found = _read_day(request, officer, venue, day or today())
    lang = request_lang(request)
    return VenueDayOut(
        venue_id=venue.id,
        day=found.day,
        passages=[
            PassageOut(**p.model_dump(), headline=venue_headline(p.verdict, lang))
            for p in found.passages
        ],
        truncated=found.truncated,
        counts=found.counts,
    )
