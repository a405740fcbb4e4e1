"""The live event hub: alerts, actions on them and device changes, pushed to officers' screens.

Sources
    *Alert notices* (:class:`~contract.messages.AlertNotice`) arrive over MQTT
    on ``kd/v1/alerts/+``: a plain (not shared) subscription on the service's
    control link, so every web process hears every alert, whichever
    aggregator process raised it, within milliseconds of its commit.
    Every ``poll_s`` while someone listens, the hub also reads the alerts
    table past the highest id it has seen: a notice lost on the way (broker
    restart, an aggregator killed between commit and publish) still reaches
    the screens, a poll later. *Actions* on alerts (acknowledge, resolve...)
    are read from ``alert_actions`` on the same tick, since any web process
    may record them and the table is the record. *Device* online/offline
    changes come from the service's in-memory fleet view.

Fan-out
    Each SSE client owns a bounded queue on the event loop. The MQTT callback
    runs on paho's network thread and only hands the notice to the loop
    (``call_soon_threadsafe``); scope filtering happens in each client's own
    stream. A client too slow to drain its queue is disconnected instead of
    growing memory: its browser reconnects and the replay fills the gap.

Replay
    An alert event's SSE id is the alert id, so a reconnecting
    ``EventSource`` sends ``Last-Event-ID``; :func:`alert_events` first sends
    the alerts after it from the database, then live ones, skipping ids
    already sent. Events carry no personal data (ids, kinds, statuses,
    times): the screen fetches an alert's details over the audited API.

A stream ends after ``max_s`` (five minutes by default) and the browser
reconnects at once with ``Last-Event-ID``: the officer's session is checked
again on each reconnect, so a logged-out or expired session stops receiving.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from fastapi import Request
from fastapi.sse import ServerSentEvent
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from aggregator.auth.model import Officer
from aggregator.db.alerts import (
    AlertHead,
    AlertUpdate,
    action_updates,
    alert_heads,
    last_action_id,
    max_alert_id,
)
from aggregator.db.places import CheckpointPlace, checkpoint_places
from aggregator.db.schema import AlertStatus
from aggregator.ingest.control import ControlLink, Received
from aggregator.ingest.fleet_state import FleetState
from contract.messages import AlertNotice, DeviceState, Rejected, parse_message
from contract.topics import ALL_ALERTS

log = logging.getLogger(__name__)

MAX_NOTICE_BYTES = 4096
# Alert ids are drawn when a batch inserts and become visible when it commits:
# with several aggregators on PostgreSQL a lower id can appear after a higher
# one. Re-reading this many ids below the last seen covers those in flight
# (a few batches' worth); clients skip ids they already have.
REPLAY_SLACK_IDS = 64
PLACE_TTL_S = 60.0
RETRY_MS = 2000


class DeviceChange(BaseModel):
    """A device went online or offline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: str
    checkpoint_id: str
    state: DeviceState
    last_seen_at: datetime


EventKind = Literal["alert", "update", "device"]


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One thing to tell the screens."""

    kind: EventKind
    checkpoint_id: str
    body: AlertHead | AlertUpdate | DeviceChange

    def sse(self) -> ServerSentEvent:
        """The event on the wire (alerts carry their id, so a reconnect resumes after it)."""
        ident = str(self.body.id) if isinstance(self.body, AlertHead) else None
        return ServerSentEvent(
            event=self.kind, id=ident, raw_data=self.body.model_dump_json(), retry=None
        )


@dataclass(eq=False)
class Listener:
    """One SSE client's queue on its event loop."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[LiveEvent]
    overflowed: bool = False

    def offer(self, event: LiveEvent) -> None:
        """Queue ``event`` (on the listener's loop); mark the listener overflowed when full."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True


@dataclass
class HubStats:
    """What the hub did since it started."""

    notices: int = 0
    rejected: int = 0
    polled_alerts: int = 0
    updates: int = 0
    device_changes: int = 0
    overflows: int = 0
    poll_errors: int = 0
    listeners: int = 0


@dataclass
class _Places:
    found: dict[str, CheckpointPlace] = field(default_factory=dict)
    loaded_at: dict[str, float] = field(default_factory=dict)


class LiveHub:
    """Hears alerts over MQTT and polls the store; fans events out to the listening streams."""

    def __init__(
        self,
        engine: Engine,
        fleet: FleetState | None = None,
        *,
        poll_s: float = 2.0,
        queue_size: int = 1000,
        recent_ids: int = 10_000,
    ) -> None:
        self.engine = engine
        self.fleet = fleet
        self.poll_s = poll_s
        self.queue_size = queue_size
        self.stats = HubStats()
        self._recent_max = recent_ids
        self._recent: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.Lock()
        self._listeners: set[Listener] = set()
        self._poller: asyncio.Task[None] | None = None
        self._max_alert_id: int | None = None
        self._max_action_id: int | None = None
        self._device_states: dict[str, DeviceState] | None = None
        self._places = _Places()

    # --- sources ------------------------------------------------------------------

    def attach(self, control: ControlLink) -> None:
        """Subscribe to every checkpoint's alert notices on ``control`` (kept across reconnects)."""
        control.subscribe(ALL_ALERTS, self.on_notice)

    def on_notice(self, message: Received) -> None:
        """An alert notice from MQTT (paho's network thread: parse and hand over, never block)."""
        notice = parse_message(AlertNotice, message.payload, max_bytes=MAX_NOTICE_BYTES)
        if isinstance(notice, Rejected):
            self.stats.rejected += 1
            log.warning("alert notice on %s refused: %s", message.topic, notice.detail)
            return
        self.stats.notices += 1
        head = AlertHead(
            id=notice.alert_id,
            kind=notice.kind,
            status=AlertStatus.OPEN,
            checkpoint_id=notice.checkpoint_id,
            device_id=notice.device_id,
            created_at=notice.created_at,
        )
        self._publish_alert(head)

    def _first_sighting(self, alert_id: int) -> bool:
        with self._lock:
            if alert_id in self._recent:
                return False
            self._recent[alert_id] = None
            if len(self._recent) > self._recent_max:
                self._recent.popitem(last=False)
            if self._max_alert_id is None or alert_id > self._max_alert_id:
                self._max_alert_id = alert_id
            return True

    def _publish_alert(self, head: AlertHead) -> None:
        if self._first_sighting(head.id):
            self.publish(LiveEvent("alert", head.checkpoint_id, head))

    def publish(self, event: LiveEvent) -> None:
        """Give ``event`` to every listener (safe from any thread)."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener.loop.call_soon_threadsafe(listener.offer, event)
            except RuntimeError:  # its loop closed: the stream is gone
                self._drop(listener)

    # --- listeners ----------------------------------------------------------------

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[Listener]:
        """Register a listener on the running loop for the duration of the block."""
        listener = Listener(asyncio.get_running_loop(), asyncio.Queue(self.queue_size))
        with self._lock:
            self._listeners.add(listener)
            self.stats.listeners = len(self._listeners)
        self._ensure_poller()
        try:
            yield listener
        finally:
            self._drop(listener)
            if listener.overflowed:
                self.stats.overflows += 1

    def _drop(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.discard(listener)
            self.stats.listeners = len(self._listeners)

    @property
    def listening(self) -> int:
        """How many streams are open."""
        with self._lock:
            return len(self._listeners)

    # --- polling ------------------------------------------------------------------

    def _ensure_poller(self) -> None:
        loop = asyncio.get_running_loop()
        task = self._poller
        if task is None or task.done() or task.get_loop() is not loop:
            self._poller = loop.create_task(self._poll_while_listened(), name="live-hub-poll")

    async def _poll_while_listened(self) -> None:
        while self.listening:
            try:
                await run_in_threadpool(self.poll_once)
            except SQLAlchemyError as exc:
                self.stats.poll_errors += 1
                log.warning("live hub poll failed, retrying: %s", exc)
            # The poller must outlive any bug: the screens would silently stop
            # hearing of actions and lost notices. The next tick tries again.
            except Exception:
                self.stats.poll_errors += 1
                log.exception("live hub poll failed")
            await asyncio.sleep(self.poll_s)

    def prime(self) -> None:
        """Take the store's current positions (blocking): only what comes after is live news.

        What happened before anyone listened is the replay's business; without
        this, the first poll would announce old alerts as new ones.
        """
        with self.engine.connect() as conn:
            newest, last_action = max_alert_id(conn), last_action_id(conn)
            # The polls re-read a window below the newest id: what is in it now is old.
            known = alert_heads(conn, after_id=max(0, newest - REPLAY_SLACK_IDS), scope=None)
        with self._lock:
            for head in known:
                self._recent[head.id] = None
            if self._max_alert_id is None or newest > self._max_alert_id:
                self._max_alert_id = newest
            if self._max_action_id is None:
                self._max_action_id = last_action
        if self.fleet is not None and self._device_states is None:
            self._device_states = {v.device_id: v.state for v in self.fleet.snapshot()}

    def poll_once(self) -> None:
        """Read new alerts and actions from the store and device changes from the fleet view."""
        if self._max_action_id is None or self._max_alert_id is None:
            self.prime()
        with self._lock:
            start_alert = self._max_alert_id or 0
            start_action = self._max_action_id or 0
        with self.engine.connect() as conn:
            heads = alert_heads(conn, after_id=max(0, start_alert - REPLAY_SLACK_IDS), scope=None)
            updates = action_updates(conn, after_id=start_action)
        for head in heads:
            if self._first_sighting(head.id):
                self.stats.polled_alerts += 1
                self.publish(LiveEvent("alert", head.checkpoint_id, head))
        for update in updates:
            with self._lock:
                self._max_action_id = max(self._max_action_id or 0, update.action_id)
            self.stats.updates += 1
            self.publish(LiveEvent("update", update.checkpoint_id, update))
        self._poll_fleet()

    def _poll_fleet(self) -> None:
        if self.fleet is None:
            return
        views = self.fleet.snapshot()
        states = {v.device_id: v.state for v in views}
        previous, self._device_states = self._device_states, states
        if previous is None:
            return
        for view in views:
            if previous.get(view.device_id) is not view.state:
                self.stats.device_changes += 1
                change = DeviceChange(
                    device_id=view.device_id,
                    checkpoint_id=view.checkpoint_id,
                    state=view.state,
                    last_seen_at=view.last_seen_at,
                )
                self.publish(LiveEvent("device", view.checkpoint_id, change))

    # --- checkpoints, for scope checks ------------------------------------------------

    def place(self, checkpoint_id: str) -> CheckpointPlace | None:
        """A checkpoint's ward and province (cached for a minute; blocking: call off the loop)."""
        now = time.monotonic()
        with self._lock:
            loaded = self._places.loaded_at.get(checkpoint_id)
            if loaded is not None and now - loaded < PLACE_TTL_S:
                return self._places.found.get(checkpoint_id)
        with self.engine.connect() as conn:
            found = checkpoint_places(conn, ids=[checkpoint_id]).get(checkpoint_id)
        with self._lock:
            self._places.loaded_at[checkpoint_id] = now
            if found is None:
                self._places.found.pop(checkpoint_id, None)
            else:
                self._places.found[checkpoint_id] = found
        return found


def _visible(officer: Officer, place: CheckpointPlace | None) -> bool:
    return place is not None and officer.can_see_checkpoint(
        place.id, ward_code=place.ward_code, province_code=place.province_code
    )


async def alert_events(
    hub: LiveHub,
    officer: Officer,
    *,
    after_id: int | None,
    checkpoint_id: str | None = None,
    kinds: frozenset[EventKind] = frozenset({"alert", "update", "device"}),
    max_s: float = 300.0,
) -> AsyncIterator[ServerSentEvent]:
    """The SSE stream of one officer's screen: replay after ``after_id``, then live events.

    Only checkpoints within the officer's scope (and ``checkpoint_id`` when
    given) pass. With ``after_id`` None nothing is replayed (the screen has
    just loaded the current list). Ends after ``max_s`` seconds, or when the
    listener fell behind; the browser reconnects with ``Last-Event-ID``.
    """
    deadline = time.monotonic() + max_s
    async with hub.listen() as listener:
        yield ServerSentEvent(comment="kiemdich live", retry=RETRY_MS)
        sent: set[int] = set()
        if after_id is not None and "alert" in kinds:
            heads = await run_in_threadpool(
                _replay, hub, officer, after_id=after_id, checkpoint_id=checkpoint_id
            )
            for head in heads:
                sent.add(head.id)
                yield LiveEvent("alert", head.checkpoint_id, head).sse()
        while not listener.overflowed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # FastAPI's SSE response sends keep-alive comments while we wait, and
            # cancels this generator when the client goes away.
            try:
                event = await asyncio.wait_for(listener.queue.get(), timeout=remaining)
            except TimeoutError:
                return
            if event.kind not in kinds:
                continue
            if checkpoint_id is not None and event.checkpoint_id != checkpoint_id:
                continue
            if isinstance(event.body, AlertHead):
                if event.body.id in sent:
                    continue
                sent.add(event.body.id)
            place = await run_in_threadpool(hub.place, event.checkpoint_id)
            if _visible(officer, place):
                yield event.sse()


def _replay(
    hub: LiveHub, officer: Officer, *, after_id: int, checkpoint_id: str | None
) -> list[AlertHead]:
    with hub.engine.connect() as conn:
        return alert_heads(
            conn,
            after_id=max(0, after_id - REPLAY_SLACK_IDS),
            scope=officer.checkpoint_filter(),
            checkpoint_id=checkpoint_id,
        )


_HUB_LOCK = threading.Lock()


def get_hub(request: Request) -> LiveHub:
    """The app's hub, made and attached to the service's control link on first use."""
    state = request.app.state
    hub: LiveHub | None = getattr(state, "live_hub", None)
    if hub is not None:
        return hub
    with _HUB_LOCK:
        hub = getattr(state, "live_hub", None)
        if hub is None:
            service = state.service
            hub = LiveHub(service.engine, service.fleet)
            hub.prime()
            hub.attach(service.control)
            state.live_hub = hub
    return hub
