"""The command centre: live throughput, the day's totals, open alerts, the fleet, ingest health.

``GET /api/command/summary``              every checkpoint in scope, for the wall screen
``GET /api/command/checkpoints/{id}``     one checkpoint: its devices, traffic, open alerts
``GET /command``, ``GET /command/checkpoints/{id}``   the pages (HTML)

How the screens stay current: they poll the JSON every
:data:`POLL_S` seconds, and also listen to the alert stream
(``/api/live/alerts``) to refresh at once when an alert is raised or a
device goes on- or offline. Polling, because the figures are aggregates
(per-minute rollups, day totals, counts) that change every second under
traffic: pushing each change would mean one message per passage per
screen, while a poll costs a few indexed queries and a wall screen needs
nothing finer than a few seconds. The push covers what an officer must
not wait for.

No personal data is returned here (counts, ids, device health), so nothing
is written to the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection

from aggregator.api.deps import ServiceDep
from aggregator.api.routes.alerts import MONITOR_ROLES, EngineDep, refuse
from aggregator.auth.deps import Officer, require_roles
from aggregator.db.alerts import AlertHead, OpenCount, unresolved_counts, unresolved_heads
from aggregator.db.fleet import DeviceRecord
from aggregator.db.places import CheckpointPlace, checkpoint_places
from aggregator.db.schema import AlertStatus, CheckpointKind, DeviceDirection, Role
from aggregator.db.traffic import (
    MinuteCount,
    Totals,
    devices_at,
    local_day_start,
    minute_counts,
    minute_floor,
    per_minute_series,
    sum_totals,
    totals,
)
from aggregator.ingest.fleet_state import DeviceView
from aggregator.service import AggregatorService
from aggregator.web.i18n import request_lang
from aggregator.web.i18n_live import js_strings
from aggregator.web.templating import register_nav, render
from contract.messages import AlertKind, CameraState, Direction

router = APIRouter(tags=["command"])

COMMAND_ROLES = (Role.COMMAND_CENTRE, Role.HEALTH_OFFICIAL, Role.ADMIN)
# A checkpoint's page holds no personal data: the officers posted there see it too.
CHECKPOINT_ROLES = (*COMMAND_ROLES, Role.CHECKPOINT_OFFICER, Role.WARD_POLICE, Role.VENUE_MANAGER)
CommandOfficer = Annotated[Officer, Depends(require_roles(*COMMAND_ROLES))]
CheckpointViewer = Annotated[Officer, Depends(require_roles(*CHECKPOINT_ROLES))]

POLL_S = 5
register_nav("/command", "nav.command", set(COMMAND_ROLES), order=30)
WINDOW_MINUTES = 60
# Three missed statuses (every 30 s by default): a device that says "online" but
# has been silent this long is shown as such.
STALE_AFTER_S = 95.0


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TotalsOut(_Out):
    """Passages in and out, and how many raised an alert."""

    passages_in: int
    passages_out: int
    flagged: int

    @classmethod
    def of(cls, value: Totals) -> TotalsOut:
        """From the store's totals."""
        return cls(
            passages_in=value.passages_in, passages_out=value.passages_out, flagged=value.flagged
        )


class DeviceOut(_Out):
    """A gate device's health as the fleet last reported it."""

    id: str
    checkpoint_id: str
    lane: int
    direction: DeviceDirection
    state: str  # online | offline | unknown (never reported)
    stale: bool
    last_seen_at: datetime | None
    seconds_since_seen: float | None
    fps: float | None
    decode_fps: float | None
    outbox_depth: int | None
    outbox_oldest_s: float | None
    camera: CameraState | None
    software: str | None
    clock_skew_s: float | None
    alarms: list[str]


class CheckpointOut(_Out):
    """One checkpoint on the wall screen."""

    id: str
    name: str
    kind: CheckpointKind
    ward_name: str
    province_name: str
    lat: float | None
    lon: float | None
    per_minute: list[int]
    last_5_min: int
    today: TotalsOut
    unresolved_alerts: int
    devices_online: int
    devices_total: int


class AlertCount(_Out):
    """Unresolved alerts of one kind."""

    kind: AlertKind
    open: int
    acknowledged: int


class IngestOut(_Out):
    """This aggregator process's ingest health."""

    lag_s: float
    queue_depth: int
    connected: bool
    received: int
    stored: int
    alerts: int
    devices_online: int


class Summary(_Out):
    """Everything the command centre's wall screen shows."""

    generated_at: datetime
    window_start: datetime
    minutes: int
    day_start: datetime
    per_minute_in: list[int]
    per_minute_out: list[int]
    today: TotalsOut
    alerts_by_kind: list[AlertCount]
    checkpoints: list[CheckpointOut]
    devices: list[DeviceOut]
    ingest: IngestOut
    poll_s: int


class CheckpointDetail(_Out):
    """One checkpoint's page."""

    generated_at: datetime
    window_start: datetime
    minutes: int
    checkpoint: CheckpointOut
    per_minute_in: list[int]
    per_minute_out: list[int]
    last_hour: TotalsOut
    devices: list[DeviceOut]
    alerts_by_kind: list[AlertCount]
    unresolved: list[AlertHead]
    poll_s: int


def device_out(record: DeviceRecord, view: DeviceView | None, now: datetime) -> DeviceOut:
    """A device's health: the live fleet view when it reported, else the stored state."""
    status = view.status if view is not None else None
    last_seen = view.last_seen_at if view is not None else record.last_seen_at
    if view is not None:
        state = view.state.value
    elif record.state in ("online", "offline"):
        state = record.state
    else:
        state = "unknown"
    age = (now - last_seen).total_seconds() if last_seen is not None else None
    return DeviceOut(
        id=record.id,
        checkpoint_id=record.checkpoint_id,
        lane=record.lane,
        direction=record.direction,
        state=state,
        stale=state == "online" and (age is None or age > STALE_AFTER_S),
        last_seen_at=last_seen,
        seconds_since_seen=round(age, 1) if age is not None else None,
        fps=status.fps if status else None,
        decode_fps=status.decode_fps if status else None,
        outbox_depth=status.outbox_depth if status else None,
        outbox_oldest_s=status.outbox_oldest_s if status else None,
        camera=status.camera if status else None,
        software=status.software if status else None,
        clock_skew_s=view.clock_skew_s if view is not None else record.clock_skew_s,
        alarms=list(status.alarms) if status else [],
    )


def alert_counts(counts: list[tuple[AlertKind, AlertStatus, int]]) -> list[AlertCount]:
    """Unresolved alerts per kind (every kind listed, zeros included), most serious first."""
    table = {kind: {AlertStatus.OPEN: 0, AlertStatus.ACKNOWLEDGED: 0} for kind in AlertKind}
    for kind, status, n in counts:
        table[kind][status] += n
    return [
        AlertCount(
            kind=kind,
            open=table[kind][AlertStatus.OPEN],
            acknowledged=table[kind][AlertStatus.ACKNOWLEDGED],
        )
        for kind in AlertKind
    ]


def _ingest(service: AggregatorService) -> IngestOut:
    stats = service.stats()
    return IngestOut(
        lag_s=round(float(stats["lag_s"]), 3),
        queue_depth=int(stats["queue_depth"]),
        connected=bool(stats["connected"]),
        received=int(stats["received"]),
        stored=int(stats["stored"]),
        alerts=int(stats["alerts"]),
        devices_online=int(stats["devices_online"]),
    )


def _sum_series(series: Iterable[list[int]], minutes: int) -> list[int]:
    out = [0] * minutes
    for values in series:
        out = [a + b for a, b in zip(out, values, strict=True)]
    return out


@dataclass(frozen=True, slots=True)
class _Traffic:
    """What the store says about a set of checkpoints right now."""

    now: datetime
    start: datetime
    places: dict[str, CheckpointPlace]
    counts: list[MinuteCount]
    today: dict[str, Totals]
    open_counts: list[OpenCount]
    devices: list[DeviceOut]

    def series(self, direction: Direction | None = None) -> dict[str, list[int]]:
        """Passages per minute per checkpoint over the window (one direction, or both)."""
        chosen = [c for c in self.counts if direction is None or c.direction is direction]
        return per_minute_series(chosen, start=self.start, minutes=WINDOW_MINUTES)

    def checkpoint_outs(self) -> list[CheckpointOut]:
        """Each checkpoint with its chart, totals, alerts and devices."""
        series = self.series()
        unresolved: dict[str, int] = {}
        for c in self.open_counts:
            unresolved[c.checkpoint_id] = unresolved.get(c.checkpoint_id, 0) + c.count
        online: dict[str, int] = {}
        total: dict[str, int] = {}
        for d in self.devices:
            total[d.checkpoint_id] = total.get(d.checkpoint_id, 0) + 1
            online[d.checkpoint_id] = online.get(d.checkpoint_id, 0) + (d.state == "online")
        out = []
        for place in self.places.values():
            values = series.get(place.id, [0] * WINDOW_MINUTES)
            out.append(
                CheckpointOut(
                    id=place.id,
                    name=place.name,
                    kind=place.kind,
                    ward_name=place.ward_name,
                    province_name=place.province_name,
                    lat=place.lat,
                    lon=place.lon,
                    per_minute=values,
                    # Five minutes including the one still filling: steadier than one
                    # minute on a wall screen, and never stale.
                    last_5_min=sum(values[-5:]),
                    today=TotalsOut.of(self.today.get(place.id, Totals())),
                    unresolved_alerts=unresolved.get(place.id, 0),
                    devices_online=online.get(place.id, 0),
                    devices_total=total.get(place.id, 0),
                )
            )
        return out

    def alerts_by_kind(self) -> list[AlertCount]:
        """Unresolved alerts per kind over these checkpoints."""
        return alert_counts([(c.kind, c.status, c.count) for c in self.open_counts])


def _traffic(
    conn: Connection,
    service: AggregatorService,
    places: dict[str, CheckpointPlace],
    *,
    now: datetime,
    since: datetime,
    open_counts: list[OpenCount],
) -> _Traffic:
    ids = list(places)
    start = minute_floor(now) - timedelta(minutes=WINDOW_MINUTES - 1)
    fleet = {v.device_id: v for v in service.fleet.snapshot()}
    return _Traffic(
        now=now,
        start=start,
        places=places,
        counts=minute_counts(conn, checkpoint_ids=ids, since=start),
        today=totals(conn, checkpoint_ids=ids, since=since),
        open_counts=open_counts,
        devices=[device_out(r, fleet.get(r.id), now) for r in devices_at(conn, checkpoint_ids=ids)],
    )


@router.get("/api/command/summary", response_model=Summary)
def command_summary(officer: CommandOfficer, engine: EngineDep, service: ServiceDep) -> Summary:
    """Every checkpoint in the officer's scope: traffic, totals, alerts, devices, ingest."""
    now = datetime.now(UTC)
    day_start = local_day_start(now)
    scope = officer.checkpoint_filter()
    with engine.connect() as conn:
        places = checkpoint_places(conn, scope=scope)
        traffic = _traffic(
            conn,
            service,
            places,
            now=now,
            since=day_start,
            open_counts=unresolved_counts(conn, scope=scope),
        )
    return Summary(
        generated_at=now,
        window_start=traffic.start,
        minutes=WINDOW_MINUTES,
        day_start=day_start,
        per_minute_in=_sum_series(traffic.series(Direction.IN).values(), WINDOW_MINUTES),
        per_minute_out=_sum_series(traffic.series(Direction.OUT).values(), WINDOW_MINUTES),
        today=TotalsOut.of(sum_totals(list(traffic.today.values()))),
        alerts_by_kind=traffic.alerts_by_kind(),
        checkpoints=traffic.checkpoint_outs(),
        devices=traffic.devices,
        ingest=_ingest(service),
        poll_s=POLL_S,
    )


def visible_place(conn: Connection, officer: Officer, checkpoint_id: str) -> CheckpointPlace:
    """The checkpoint if the officer may see it; 404 when unknown, 403 when out of scope."""
    place = checkpoint_places(conn, ids=[checkpoint_id]).get(checkpoint_id)
    if place is None:
        raise refuse(404, "not_found", "cmd.error.checkpoint_unknown")
    if not officer.can_see_checkpoint(
        place.id, ward_code=place.ward_code, province_code=place.province_code
    ):
        raise refuse(403, "checkpoint_forbidden", "cmd.error.checkpoint_forbidden")
    return place


def checkpoint_detail(
    conn: Connection, service: AggregatorService, place: CheckpointPlace
) -> CheckpointDetail:
    """One checkpoint's figures (the caller checked the officer's scope)."""
    now = datetime.now(UTC)
    traffic = _traffic(
        conn,
        service,
        {place.id: place},
        now=now,
        since=local_day_start(now),
        open_counts=unresolved_counts(conn, scope=None, checkpoint_id=place.id),
    )
    last_hour = totals(conn, checkpoint_ids=[place.id], since=now - timedelta(hours=1))
    return CheckpointDetail(
        generated_at=now,
        window_start=traffic.start,
        minutes=WINDOW_MINUTES,
        checkpoint=traffic.checkpoint_outs()[0],
        per_minute_in=_sum_series(traffic.series(Direction.IN).values(), WINDOW_MINUTES),
        per_minute_out=_sum_series(traffic.series(Direction.OUT).values(), WINDOW_MINUTES),
        last_hour=TotalsOut.of(last_hour.get(place.id, Totals())),
        devices=traffic.devices,
        alerts_by_kind=traffic.alerts_by_kind(),
        unresolved=unresolved_heads(conn, checkpoint_id=place.id),
        poll_s=POLL_S,
    )


@router.get(
    "/api/command/checkpoints/{checkpoint_id}",
    response_model=CheckpointDetail,
    responses={403: {}, 404: {}},
)
def command_checkpoint(
    checkpoint_id: str, officer: CheckpointViewer, engine: EngineDep, service: ServiceDep
) -> CheckpointDetail:
    """One checkpoint: its devices, its last hour minute by minute, its unresolved alerts."""
    with engine.connect() as conn:
        place = visible_place(conn, officer, checkpoint_id)
        return checkpoint_detail(conn, service, place)


# --- pages -------------------------------------------------------------------------


@router.get("/command", include_in_schema=False)
def command_page(request: Request, officer: CommandOfficer) -> HTMLResponse:
    """The command centre's wall screen."""
    return render(
        request,
        "command.html",
        {
            "strings": js_strings(request_lang(request)),
            "poll_s": POLL_S,
            "page": {"mode": "summary", "poll_s": POLL_S},
        },
        officer=officer,
    )


@router.get("/command/checkpoints/{checkpoint_id}", include_in_schema=False)
def checkpoint_page(
    request: Request, checkpoint_id: str, officer: CheckpointViewer, engine: EngineDep
) -> HTMLResponse:
    """One checkpoint's page (403 outside the officer's scope, 404 for an unknown one)."""
    try:
        with engine.connect() as conn:
            place = visible_place(conn, officer, checkpoint_id)
    except HTTPException as exc:
        unknown = exc.status_code == 404
        key = "cmd.error.checkpoint_unknown" if unknown else "cmd.error.checkpoint_forbidden"
        context = {"message_key": key}
        return render(request, "error.html", context, officer=officer, status_code=exc.status_code)
    return render(
        request,
        "checkpoint.html",
        {
            "place": place,
            "strings": js_strings(request_lang(request)),
            "poll_s": POLL_S,
            "can_command": officer.role in COMMAND_ROLES,
            "can_monitor": officer.role in MONITOR_ROLES,
            "page": {"mode": "checkpoint", "checkpoint": place.id, "poll_s": POLL_S},
        },
        officer=officer,
    )
