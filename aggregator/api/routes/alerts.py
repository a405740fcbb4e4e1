"""Alerts over JSON for the officers' monitor, and the live stream of alert events.

``GET /api/alerts``                list and filter, within the officer's scope (audited)
``GET /api/alerts/{id}``           one alert: passage, person, declaration, history (audited)
``GET /api/alerts/{id}/crop``      the camera crop of the code (audited)
``POST /api/alerts/{id}/actions``  acknowledge, confirm, resolve (with a note), false read
``GET /api/live/alerts``           Server-Sent Events: new alerts, actions, device changes

Officers at checkpoints (checkpoint officers, venue managers, ward police),
the command centre and administrators use these; an officer sees only the
checkpoints of their scope (another checkpoint's alert
is refused with 403). Every response carrying personal data is recorded with
:func:`~aggregator.auth.audit.record_read` in the same transaction as the read.
Errors are ``{"detail": {"code": ..., "message": "tiếng Việt / English"}}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine

from aggregator.auth.audit import record_read
from aggregator.auth.deps import Officer, client_ip, get_engine, require_roles
from aggregator.db.alerts import (
    MAX_LIST,
    MAX_NOTE_CHARS,
    AlertAction,
    AlertNotFoundError,
    AlertState,
    AlertStateError,
    AlertView,
    act_on_alert,
    alert_checkpoint,
    alert_crop,
    check_note,
    get_alert,
    list_alerts,
)
from aggregator.db.engine import in_transaction
from aggregator.db.places import checkpoint_places
from aggregator.db.schema import AlertStatus, Role
from aggregator.web.forms import ROW_ID_MAX, RowId
from aggregator.web.i18n import Lang, both, request_lang, t
from aggregator.web.live import LiveHub, alert_events, get_hub
from contract.messages import AlertKind
from contract.topics import CHECKPOINT_ID_PATTERN

router = APIRouter(tags=["alerts"])

MONITOR_ROLES = (
    Role.CHECKPOINT_OFFICER,
    Role.VENUE_MANAGER,
    Role.WARD_POLICE,
    Role.COMMAND_CENTRE,
    Role.ADMIN,
)
# The live stream carries no personal data: every screen that shows checkpoints
# listens (the command centre's too), each within its scope.
LIVE_ROLES = (*MONITOR_ROLES, Role.HEALTH_OFFICIAL)
MonitorOfficer = Annotated[Officer, Depends(require_roles(*MONITOR_ROLES))]
LiveOfficer = Annotated[Officer, Depends(require_roles(*LIVE_ROLES))]
EngineDep = Annotated[Engine, Depends(get_engine)]

PURPOSE_MONITOR = "giám sát cảnh báo tại chốt / checkpoint alert monitor"


def refuse(status: int, code: str, key: str, **params: object) -> HTTPException:
    """An HTTP error with a stable ``code`` and a bilingual message."""
    return HTTPException(status, detail={"code": code, "message": both(key, **params)})


class AlertOut(AlertView):
    """An alert with its reason in the officer's language."""

    reason: str


class AlertList(BaseModel):
    """A page of alerts, newest first; ``next_before`` pages on (None: no more)."""

    model_config = ConfigDict(extra="forbid")

    alerts: list[AlertOut]
    next_before: int | None


class ActionIn(BaseModel):
    """An officer's action on an alert."""

    model_config = ConfigDict(extra="forbid")

    action: AlertAction
    note: str | None = Field(default=None, max_length=MAX_NOTE_CHARS)


def _out(view: AlertView, lang: Lang) -> AlertOut:
    return AlertOut(**view.model_dump(), reason=t(f"alert.kind.{view.kind.value}", lang))


def check_checkpoint(conn: Connection, officer: Officer, checkpoint_id: str) -> None:
    """Raise 403 unless the checkpoint exists and is in the officer's scope.

    An unknown checkpoint is refused the same way as another's, so ids
    cannot be probed.
    """
    place = checkpoint_places(conn, ids=[checkpoint_id]).get(checkpoint_id)
    if place is None or not officer.can_see_checkpoint(
        place.id, ward_code=place.ward_code, province_code=place.province_code
    ):
        raise refuse(
            403,
            "checkpoint_forbidden",
            "alert.error.checkpoint_forbidden",
            checkpoint=checkpoint_id,
        )


def _check_alert(conn: Connection, officer: Officer, alert_id: int) -> None:
    checkpoint_id = alert_checkpoint(conn, alert_id=alert_id)
    if checkpoint_id is None:
        raise refuse(404, "not_found", "alert.error.not_found")
    place = checkpoint_places(conn, ids=[checkpoint_id]).get(checkpoint_id)
    if place is None or not officer.can_see_checkpoint(
        place.id, ward_code=place.ward_code, province_code=place.province_code
    ):
        raise refuse(403, "forbidden", "alert.error.forbidden")


CheckpointParam = Annotated[
    str | None, Query(alias="checkpoint", pattern=CHECKPOINT_ID_PATTERN, max_length=64)
]


@router.get("/api/alerts", response_model=AlertList)
def alerts_list(
    *,
    request: Request,
    officer: MonitorOfficer,
    engine: EngineDep,
    checkpoint: CheckpointParam = None,
    status: Annotated[list[AlertStatus] | None, Query()] = None,
    kind: Annotated[list[AlertKind] | None, Query()] = None,
    before: Annotated[RowId | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
) -> AlertList:
    """Alerts newest first, within the officer's scope, by checkpoint, status and kind."""

    def work(conn: Connection) -> list[AlertView]:
        if checkpoint is not None:
            check_checkpoint(conn, officer, checkpoint)
        views = list_alerts(
            conn,
            scope=officer.checkpoint_filter(),
            checkpoint_id=checkpoint,
            statuses=status,
            kinds=kind,
            before_id=before,
            limit=limit,
        )
        citizens = sorted({v.person.citizen_id for v in views if v.person is not None})
        if citizens:
            record_read(
                conn,
                officer=officer,
                action="alert.list",
                subject=f"checkpoint:{checkpoint}" if checkpoint else "alerts",
                purpose=PURPOSE_MONITOR,
                detail={"alert_ids": [v.id for v in views], "citizen_ids": citizens},
                ip=client_ip(request),
            )
        return views

    views = in_transaction(engine, work)
    lang = request_lang(request)
    return AlertList(
        alerts=[_out(v, lang) for v in views],
        next_before=views[-1].id if len(views) == limit else None,
    )


@router.get("/api/alerts/{alert_id}", response_model=AlertOut)
def alert_detail(
    request: Request, alert_id: RowId, officer: MonitorOfficer, engine: EngineDep
) -> AlertOut:
    """One alert with the passage, the person and their declaration, and its history."""

    def work(conn: Connection) -> AlertView:
        _check_alert(conn, officer, alert_id)
        view = get_alert(conn, alert_id=alert_id)
        if view is None:  # deleted between the two reads
            raise refuse(404, "not_found", "alert.error.not_found")
        record_read(
            conn,
            officer=officer,
            action="alert.view",
            subject=f"citizen:{view.person.citizen_id}" if view.person else f"alert:{alert_id}",
            purpose=PURPOSE_MONITOR,
            detail={"alert_id": alert_id},
            ip=client_ip(request),
        )
        return view

    view = in_transaction(engine, work)
    return _out(view, request_lang(request))


@router.get(
    "/api/alerts/{alert_id}/crop",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def alert_crop_jpeg(
    request: Request, alert_id: RowId, officer: MonitorOfficer, engine: EngineDep
) -> Response:
    """The JPEG the gate cropped around the code (it may show a face or a plate: audited)."""

    def work(conn: Connection) -> bytes:
        _check_alert(conn, officer, alert_id)
        jpeg = alert_crop(conn, alert_id=alert_id)
        if jpeg is None:
            raise refuse(404, "no_crop", "alert.error.no_crop")
        record_read(
            conn,
            officer=officer,
            action="alert.crop",
            subject=f"alert:{alert_id}",
            purpose=PURPOSE_MONITOR,
            ip=client_ip(request),
        )
        return jpeg

    jpeg = in_transaction(engine, work)
    # Personal data: never kept by shared caches, nor by the browser once the tab closes.
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.post(
    "/api/alerts/{alert_id}/actions",
    response_model=AlertState,
    responses={404: {}, 403: {}, 409: {}, 422: {}},
)
def alert_act(
    alert_id: RowId, body: ActionIn, officer: MonitorOfficer, engine: EngineDep
) -> AlertState:
    """Acknowledge, confirm, resolve (a note is required) or mark a false read.

    409 when the alert's status does not admit the action (already resolved,
    or acknowledged twice), e.g. another officer was quicker.
    """
    try:
        note = check_note(body.action, body.note)
    except ValueError as exc:
        raise HTTPException(422, detail={"code": "note", "message": str(exc)}) from exc

    def work(conn: Connection) -> AlertState:
        _check_alert(conn, officer, alert_id)
        return act_on_alert(
            conn,
            alert_id=alert_id,
            action=body.action,
            officer_id=officer.id,
            note=note,
            at=datetime.now(UTC),
        )

    try:
        return in_transaction(engine, work)
    except AlertNotFoundError as exc:
        raise refuse(404, "not_found", "alert.error.not_found") from exc
    except AlertStateError as exc:
        raise HTTPException(
            409, detail={"code": "wrong_status", "message": str(exc), "status": exc.status}
        ) from exc


class StreamParams(BaseModel):
    """What a live stream listens for and where it resumes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    checkpoint: str | None
    after_id: int | None


def stream_params(
    *,
    officer: LiveOfficer,
    engine: EngineDep,
    checkpoint: CheckpointParam = None,
    after: Annotated[int | None, Query(ge=0, le=ROW_ID_MAX)] = None,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> StreamParams:
    """Checked before the stream starts (an SSE response cannot change its status later).

    ``Last-Event-ID`` (sent by the browser on reconnection) wins over ``?after=``.
    """
    if checkpoint is not None:
        with engine.connect() as conn:
            check_checkpoint(conn, officer, checkpoint)
    resume = after
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        # ASCII digits only ("²" is a digit to str.isdigit) and within the column's range.
        if not (text.isascii() and text.isdigit()) or int(text) > ROW_ID_MAX:
            raise refuse(422, "last_event_id", "error.invalid", detail="Last-Event-ID")
        resume = int(text)
    return StreamParams(checkpoint=checkpoint, after_id=resume)


@router.get("/api/live/alerts", response_class=EventSourceResponse)
async def live_alerts(
    officer: LiveOfficer,
    params: Annotated[StreamParams, Depends(stream_params)],
    hub: Annotated[LiveHub, Depends(get_hub)],
) -> AsyncIterable[ServerSentEvent]:
    """Server-Sent Events: ``alert`` (id = alert id; data: id, kind, status, checkpoint,
    device, time), ``update`` (an action taken: alert id, action, new status) and
    ``device`` (online/offline) for the officer's checkpoints. No personal data:
    fetch ``/api/alerts/{id}`` for an alert's details. Resumes after ``Last-Event-ID``
    (or ``?after=``), replaying missed alerts from the database."""
    async for event in alert_events(
        hub, officer, after_id=params.after_id, checkpoint_id=params.checkpoint
    ):
        yield event
