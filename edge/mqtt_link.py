"""The edge agent's MQTT link: drains the outbox to the broker, brings commands back.

Delivery
    A publisher thread takes events from the :class:`~edge.outbox.Outbox`
    oldest first and publishes them at QoS 1 with at most ``max_inflight``
    (and never more than the broker's Receive Maximum) unacknowledged. It maps
    paho's message ids to outbox seqs; an event leaves the outbox only when
    its PUBACK comes back with a success code ("No matching subscribers" is
    one). paho's callbacks run on its network thread and only put work on a
    queue; all SQLite work happens on the publisher thread.

    After a dropped connection paho itself sends again, with the DUP flag,
    every message it holds without a PUBACK, keeping their message ids; the
    publisher keeps its id-to-seq map, so those acknowledgements still find
    their events. Publishing them a second time from the outbox as well would
    only double the duplicates. What paho does not hold (a refused PUBACK, a
    publish paho would not take, everything after a process restart) is
    published again from the outbox, where it never stopped being. Duplicates
    are expected (the aggregator is idempotent on ``event_id``); losses are not.

    A PUBACK with a failure code (not authorized, quota exceeded, ...) is
    logged and counted; the event stays in the outbox and publishing pauses
    with exponential back-off (``reject_backoff_min_s`` .. ``reject_backoff_max_s``).

Session
    Clean start on every connect: verdicts are only useful live, and
    everything else the device receives (config, deny-list, keyring) is
    retained, so it comes back with the subscriptions that ``on_connect``
    makes again after each reconnect. The last will is the device's status
    with ``state=offline`` (retained, QoS 1); each connect publishes the
    latest status with ``state=online`` (retained).

Inbound
    Verdicts, deny-lists, config updates and the keyring are parsed with the
    contract's guarded parsers on a dispatcher thread (bad payloads are
    counted and logged, never raised) and handed to the agent's callbacks.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from contract.messages import (
    MAX_DENYLIST_BYTES,
    MAX_SCAN_BYTES,
    MAX_STATUS_BYTES,
    DenyList,
    DeviceConfigUpdate,
    DeviceState,
    DeviceStatus,
    Rejected,
    RejectReason,
    Verdict,
    encode,
    parse_message,
)
from contract.token import KeyringFile
from contract.topics import (
    KEYRING_TOPIC,
    REVOCATIONS_TOPIC,
    config_topic,
    scan_topic,
    status_topic,
    verdict_topic,
)
from edge.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)

MAX_KEYRING_BYTES = 64 * 1024
ALARM_PUBLISH_REFUSED = "mqtt_publish_refused"
ALARM_NOT_CONNECTED = "mqtt_not_connected"
_ALARM_HOLD_S = 3600.0
_POLL_S = 0.5
_INBOUND_QUEUE = 1000


class TlsConfig(BaseModel):
    """TLS towards the broker (server CA, optional client certificate)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: Path | None = Field(default=None, description="CA bundle; None = system CAs")
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = Field(default=False, description="skip the hostname check (test benches only)")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "cert_file và key_file phải đi cùng nhau / cert_file and key_file go together"
            )
        return self


class MqttConfig(BaseModel):
    """How the device reaches its broker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = Field(default=None, description="the device id under the ACL")
    password: SecretStr | None = Field(
        default=None, description="filled from the environment by the config loader"
    )
    tls: TlsConfig | None = None
    keepalive_s: int = Field(default=30, ge=5, le=65535)
    max_inflight: int = Field(default=20, ge=1, le=65534)
    reconnect_min_delay_s: int = Field(default=1, ge=1)
    reconnect_max_delay_s: int = Field(default=60, ge=1)
    reject_backoff_min_s: float = Field(default=1.0, gt=0)
    reject_backoff_max_s: float = Field(default=60.0, gt=0)
    client_id: str | None = Field(default=None, description="default: the device id")
    stop_timeout_s: float = Field(
        default=5.0, ge=0, description="how long stop() keeps flushing the outbox"
    )

    @model_validator(mode="after")
    def _consistent(self) -> MqttConfig:
        if self.reconnect_min_delay_s > self.reconnect_max_delay_s:
            raise ValueError("reconnect_min_delay_s > reconnect_max_delay_s")
        if self.reject_backoff_min_s > self.reject_backoff_max_s:
            raise ValueError("reject_backoff_min_s > reject_backoff_max_s")
        if self.password is not None and self.username is None:
            raise ValueError("có mật khẩu nhưng thiếu username / password set without username")
        return self


@dataclass(frozen=True, slots=True)
class InboundHandlers:
    """The agent's callbacks for what the aggregator sends (run on the dispatcher thread)."""

    verdict: Callable[[Verdict], None] | None = None
    denylist: Callable[[DenyList], None] | None = None
    config: Callable[[DeviceConfigUpdate], None] | None = None
    keyring: Callable[[KeyringFile], None] | None = None


@dataclass(frozen=True, slots=True)
class LinkStats:
    """Counters since start, for the status message and metrics."""

    connected: bool
    connects: int
    connect_failures: int
    last_connect_error: str | None
    published: int
    acked: int
    republished: int
    rejected: int
    last_rejection: str | None
    publish_errors: int
    inflight: int
    inbound: int
    inbound_rejected: int
    inbound_dropped: int
    handler_errors: int


# Work items for the publisher thread (put by paho's callbacks and by stop()).
@dataclass(frozen=True, slots=True)
class _Acked:
    mid: int
    failure: str | None


@dataclass(frozen=True, slots=True)
class _Connected:
    receive_max: int


@dataclass(frozen=True, slots=True)
class _Disconnected:
    pass


@dataclass(frozen=True, slots=True)
class _Wake:
    pass


@dataclass(frozen=True, slots=True)
class _Stop:
    deadline: float


_Work = _Acked | _Connected | _Disconnected | _Wake | _Stop


@dataclass(slots=True)
class _PublisherState:
    """What the publisher thread remembers between rounds."""

    window: int
    backoff: float
    inflight: dict[int, int] = field(default_factory=dict)  # paho mid -> outbox seq
    to_ack: list[int] = field(default_factory=list)  # PUBACKed, not yet removed
    refused: set[int] = field(default_factory=set)  # seqs a PUBACK refused once
    paused_until: float = 0.0
    ack_retry_at: float = 0.0
    stop_deadline: float | None = None


M = TypeVar("M", bound=BaseModel)


def parse_keyring(payload: bytes) -> KeyringFile | Rejected:
    """Parse a keyring document from the broker; never raises on hostile bytes."""
    if len(payload) > MAX_KEYRING_BYTES:
        return Rejected(RejectReason.TOO_LARGE, f"{len(payload)} bytes > {MAX_KEYRING_BYTES}")
    try:
        return KeyringFile.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return Rejected(RejectReason.INVALID, f"{where}: {first['msg']}"[:200])


class MqttLink:
    """One device's connection to the broker (start, publish_status, stop)."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        device_id: str,
        checkpoint_id: str,
        outbox: Outbox,
        handlers: InboundHandlers | None = None,
        software: str = "",
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.device_id = device_id
        # The device's wall clock: the "at" of the statuses this link sends
        # itself (online, offline, last will) must agree with the agent's.
        self._wall = wall
        self._outbox = outbox
        self._handlers = handlers or InboundHandlers()
        self._scan_topic = scan_topic(device_id)
        self._status_topic = status_topic(device_id)
        self._inbound_parsers: dict[str, Callable[[bytes], None]] = {
            verdict_topic(device_id): self._on_verdict,
            config_topic(device_id): self._on_config,
            REVOCATIONS_TOPIC: self._on_denylist,
            KEYRING_TOPIC: self._on_keyring,
        }
        self._status = DeviceStatus(
            device_id=device_id,
            checkpoint_id=checkpoint_id,
            state=DeviceState.ONLINE,
            at=self._now(),
            software=software,
        )
        self._status_lock = threading.Lock()
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._inbound: queue.Queue[tuple[str, bytes] | None] = queue.Queue(_INBOUND_QUEUE)
        self._publisher: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self._started = False
        self._stopped = False
        # Each counter is written by one thread only (paho's, the publisher or
        # the dispatcher); stats() reads them without a lock.
        self._connected = False
        self._connects = 0
        self._connect_failures = 0
        self._last_connect_error: str | None = None
        self._published = 0
        self._acked = 0
        self._republished = 0
        self._rejected = 0
        self._last_rejection: str | None = None
        self._publish_errors = 0
        self._inflight_count = 0
        self._refused_until = 0.0
        self._inbound_count = 0
        self._inbound_rejected = 0
        self._inbound_dropped = 0
        self._handler_errors = 0
        self._client = self._make_client(config.client_id or device_id)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._wall(), UTC)

    def _make_client(self, client_id: str) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        cfg = self.config
        if cfg.username is not None:
            password = cfg.password.get_secret_value() if cfg.password else None
            client.username_pw_set(cfg.username, password)
        if cfg.tls is not None:
            client.tls_set(
                ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
            )
            client.tls_insecure_set(cfg.tls.insecure)
        client.reconnect_delay_set(cfg.reconnect_min_delay_s, cfg.reconnect_max_delay_s)
        # One slot above our window for the retained status message.
        client.max_inflight_messages_set(cfg.max_inflight + 1)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._set_will(client)
        return client

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying with back-off) and start draining."""
        if self._started:
            raise RuntimeError("MqttLink.start() called twice")
        self._started = True
        self._dispatcher = threading.Thread(
            target=self._run_dispatcher, name="mqtt-inbound", daemon=True
        )
        self._dispatcher.start()
        self._publisher = threading.Thread(
            target=self._run_publisher, name="mqtt-publisher", daemon=True
        )
        self._publisher.start()
        self._outbox.set_listener(self.wake)
        cfg = self.config
        self._client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=True)
        self._client.loop_start()

    def wake(self) -> None:
        """Tell the publisher that the outbox has new events (cheap, never blocks)."""
        self._work.put(_Wake())

    def stop(self, timeout_s: float | None = None) -> None:
        """Flush what can be flushed within ``timeout_s``, mark the device offline, disconnect.

        Whatever is not acknowledged by then stays in the outbox for the next start.
        """
        if not self._started or self._stopped:
            return
        self._stopped = True
        budget = self.config.stop_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + budget
        self._outbox.set_listener(None)
        self._work.put(_Stop(deadline))
        if self._publisher is not None:
            self._publisher.join(timeout=budget + 5.0)
        if self._connected:
            with self._status_lock:
                offline = self._status.model_copy(
                    update={"state": DeviceState.OFFLINE, "at": self._now()}
                )
            info = self._client.publish(self._status_topic, encode(offline), qos=1, retain=True)
            info.wait_for_publish(timeout=max(0.5, deadline - time.monotonic()))
        self._client.disconnect()
        self._client.loop_stop()
        self._inbound.put(None)
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=5.0)

    # -- status --------------------------------------------------------------

    def publish_status(self, status: DeviceStatus) -> None:
        """Publish the periodic status (retained); kept and sent again on every connect."""
        if status.device_id != self.device_id:
            raise ValueError(f"status of {status.device_id!r} on the link of {self.device_id!r}")
        with self._status_lock:
            self._status = status
        if self._connected:
            self._client.publish(self._status_topic, encode(status), qos=1, retain=True)

    @property
    def connected(self) -> bool:
        """True while the broker has accepted our connection."""
        return self._connected

    def stats(self) -> LinkStats:
        """Counters since start."""
        return LinkStats(
            connected=self._connected,
            connects=self._connects,
            connect_failures=self._connect_failures,
            last_connect_error=self._last_connect_error,
            published=self._published,
            acked=self._acked,
            republished=self._republished,
            rejected=self._rejected,
            last_rejection=self._last_rejection,
            publish_errors=self._publish_errors,
            inflight=self._inflight_count,
            inbound=self._inbound_count,
            inbound_rejected=self._inbound_rejected,
            inbound_dropped=self._inbound_dropped,
            handler_errors=self._handler_errors,
        )

    def alarms(self) -> list[str]:
        """``mqtt_publish_refused`` (within the last hour), ``mqtt_not_connected``."""
        active = []
        if time.monotonic() < self._refused_until:
            active.append(ALARM_PUBLISH_REFUSED)
        if self._started and not self._connected:
            active.append(ALARM_NOT_CONNECTED)
        return active

    # -- paho callbacks (network thread: hand off, never block) -----------------

    def _set_will(self, client: mqtt.Client) -> None:
        with self._status_lock:
            will = self._status.model_copy(update={"state": DeviceState.OFFLINE, "at": self._now()})
        client.will_set(self._status_topic, encode(will), qos=1, retain=True)

    def _on_pre_connect(self, client: mqtt.Client, _userdata: Any) -> None:
        # The will's "at" says when the session it belongs to began.
        self._set_will(client)

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._connected = False
            self._connect_failures += 1
            self._last_connect_error = str(reason_code)
            log.error(
                "máy chủ MQTT từ chối kết nối của %s: %s / broker refused %s: %s",
                self.device_id,
                reason_code,
                self.device_id,
                reason_code,
            )
            return
        self._connected = True
        self._connects += 1
        # paho ignores the broker's Receive Maximum (mosquitto says 20) and
        # cannot change its own limit while connected: the publisher keeps its
        # window one below it, leaving a slot for the status message.
        receive_max = int(getattr(properties, "ReceiveMaximum", 65535))
        client.subscribe([(topic, 1) for topic in self._inbound_parsers])
        with self._status_lock:
            online = self._status.model_copy(
                update={"state": DeviceState.ONLINE, "at": self._now()}
            )
        client.publish(self._status_topic, encode(online), qos=1, retain=True)
        self._work.put(_Connected(receive_max))
        log.info("MQTT connected to %s:%d", self.config.host, self.config.port)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._connect_failures += 1
        self._last_connect_error = (
            f"không kết nối được / cannot reach {self.config.host}:{self.config.port}"
        )
        log.warning("MQTT: %s", self._last_connect_error)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        was_connected = self._connected
        self._connected = False
        if was_connected:
            self._work.put(_Disconnected())
            if not self._stopped:
                log.warning("MQTT mất kết nối / connection lost: %s", reason_code)

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._work.put(_Acked(mid, str(reason_code) if reason_code.is_failure else None))

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reason_codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("MQTT: subscriptions refused: %s", ", ".join(refused))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._inbound_count += 1
        try:
            self._inbound.put_nowait((msg.topic, bytes(msg.payload)))
        except queue.Full:
            self._inbound_dropped += 1

    # -- publisher thread ------------------------------------------------------------

    def _run_publisher(self) -> None:
        state = _PublisherState(
            window=self.config.max_inflight, backoff=self.config.reject_backoff_min_s
        )
        while True:
            try:
                if self._publisher_step(state):
                    return
            except Exception:
                # An unattended device must keep draining: log, breathe, go on
                # with the same state (nothing acknowledged is forgotten).
                log.exception("MQTT publisher: unexpected error; continuing in 1 s")
                time.sleep(1.0)

    def _publisher_step(self, st: _PublisherState) -> bool:
        """Handle queued work, write acks, publish more; True when stopping is done."""
        now = time.monotonic()
        timeout = _POLL_S if st.paused_until <= now else min(_POLL_S, st.paused_until - now)
        batch: list[_Work] = []
        try:
            batch.append(self._work.get(timeout=max(timeout, 0.001)))
            while True:
                batch.append(self._work.get_nowait())
        except queue.Empty:
            pass
        for item in batch:
            self._handle_work(st, item)
        now = time.monotonic()
        if st.to_ack and now >= st.ack_retry_at:
            try:
                self._outbox.ack_many(st.to_ack)
            except OutboxError:
                # Logged by the outbox; the events stay there and are not
                # republished meanwhile because they are still in to_ack.
                st.ack_retry_at = now + 1.0
            else:
                self._acked += len(st.to_ack)
                st.refused.difference_update(st.to_ack)
                st.to_ack.clear()
        self._inflight_count = len(st.inflight)
        if st.stop_deadline is not None and (
            now >= st.stop_deadline
            or not self._connected
            or (not st.inflight and not st.to_ack and self._outbox.depth() == 0)
        ):
            return True
        if now >= st.paused_until and len(st.inflight) < st.window:
            self._publish_more(st)
            self._inflight_count = len(st.inflight)
        return False

    def _handle_work(self, st: _PublisherState, item: _Work) -> None:
        cfg = self.config
        match item:
            case _Acked(mid=mid, failure=None):
                seq = st.inflight.pop(mid, None)
                if seq is not None:
                    st.to_ack.append(seq)
                    st.backoff = cfg.reject_backoff_min_s
            case _Acked(mid=mid, failure=str() as failure):
                seq = st.inflight.pop(mid, None)
                if seq is None:
                    return
                self._rejected += 1
                self._last_rejection = failure
                st.refused.add(seq)
                now = time.monotonic()
                self._refused_until = now + _ALARM_HOLD_S
                st.paused_until = now + st.backoff
                log.error(
                    "máy chủ MQTT từ chối sự kiện seq %d: %s (giữ lại, thử lại sau %.0f s) / "
                    "broker refused seq %d: %s (kept; retry in %.0f s)",
                    seq,
                    failure,
                    st.backoff,
                    seq,
                    failure,
                    st.backoff,
                )
                st.backoff = min(st.backoff * 2, cfg.reject_backoff_max_s)
            case _Connected(receive_max=receive_max):
                st.window = max(1, min(cfg.max_inflight, receive_max - 1))
            case _Disconnected():
                # paho sends these again on reconnect (DUP), with the same mids.
                self._republished += len(st.inflight)
            case _Stop(deadline=deadline):
                st.stop_deadline = deadline
            case _Wake():
                pass

    def _publish_more(self, st: _PublisherState) -> None:
        busy = set(st.inflight.values()).union(st.to_ack)
        free = st.window - len(st.inflight)
        try:
            items = self._outbox.pending(len(busy) + free)
        except OutboxError as exc:
            log.error("MQTT publisher: cannot read the outbox (%s)", exc)
            return
        for item in items:
            if free <= 0:
                break
            if item.seq in busy:
                continue
            info = self._client.publish(self._scan_topic, item.payload, qos=1)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                # paho did not keep it; it stays in the outbox for the next round.
                self._publish_errors += 1
                log.error("MQTT publish of seq %d failed: %s", item.seq, mqtt.error_string(info.rc))
                return
            st.inflight[info.mid] = item.seq
            self._published += 1
            if item.seq in st.refused:
                self._republished += 1
            free -= 1

    # -- dispatcher thread ---------------------------------------------------------------

    def _run_dispatcher(self) -> None:
        while True:
            item = self._inbound.get()
            if item is None:
                return
            topic, payload = item
            handle = self._inbound_parsers.get(topic)
            if handle is None:
                log.debug("MQTT: ignoring message on %s", topic)
                continue
            if not payload:
                # A cleared retained message, not a command.
                continue
            handle(payload)

    def _reject(self, topic: str, rejected: Rejected) -> None:
        self._inbound_rejected += 1
        log.warning(
            "MQTT: bỏ tin không hợp lệ trên %s: %s / dropped a bad message on %s: %s (%s)",
            topic,
            rejected.reason,
            topic,
            rejected.reason,
            rejected.detail,
        )

    def _deliver(self, handler: Callable[[M], None] | None, message: M) -> None:
        if handler is None:
            return
        try:
            handler(message)
        except Exception:
            self._handler_errors += 1
            log.exception("MQTT: the handler for %s failed", type(message).__name__)

    def _on_verdict(self, payload: bytes) -> None:
        topic = verdict_topic(self.device_id)
        parsed = parse_message(Verdict, payload, max_bytes=MAX_STATUS_BYTES)
        if isinstance(parsed, Rejected):
            self._reject(topic, parsed)
        elif parsed.device_id != self.device_id:
            self._reject(topic, Rejected(RejectReason.INVALID, f"verdict for {parsed.device_id!r}"))
        else:
            self._deliver(self._handlers.verdict, parsed)

    def _on_config(self, payload: bytes) -> None:
        parsed = parse_message(DeviceConfigUpdate, payload, max_bytes=MAX_SCAN_BYTES)
        if isinstance(parsed, Rejected):
            self._reject(config_topic(self.device_id), parsed)
        else:
            self._deliver(self._handlers.config, parsed)

    def _on_denylist(self, payload: bytes) -> None:
        parsed = parse_message(DenyList, payload, max_bytes=MAX_DENYLIST_BYTES)
        if isinstance(parsed, Rejected):
            self._reject(REVOCATIONS_TOPIC, parsed)
        else:
            self._deliver(self._handlers.denylist, parsed)

    def _on_keyring(self, payload: bytes) -> None:
        parsed = parse_keyring(payload)
        if isinstance(parsed, Rejected):
            self._reject(KEYRING_TOPIC, parsed)
        else:
            self._deliver(self._handlers.keyring, parsed)
