"""The scan stream from the broker to the store: MQTT 5, QoS 1, acknowledged after commit.

Session
    A persistent session (``clean_start=False`` and a session expiry) on the
    shared subscription ``$share/aggregators/kd/v1/dev/+/scan``: several
    aggregators split the stream, and whatever one of them received but did
    not acknowledge is redelivered to it (same client id) when it comes back,
    after a crash or a SIGKILL. Our Receive Maximum caps how many
    unacknowledged messages the broker sends us.

Acknowledgement
    ``manual_ack``: paho's callback only puts ``(mid, qos, topic, payload,
    received time, connection epoch)`` on a bounded queue. The worker thread
    forms batches (``batch_size`` messages or ``batch_ms``), runs the
    pipeline, commits, and only then acknowledges the batch's messages in the
    order they arrived. A message is acknowledged only on the connection that
    delivered it: after a reconnect the broker redelivers what was not
    acknowledged (same packet ids), the copy is found already stored and is
    acknowledged then; acknowledging the old copy as well could acknowledge
    another message that reused its packet id before it was committed.

Failures
    A database error (locked, PostgreSQL down, deadlock) backs off and
    retries the same batch; nothing is acknowledged meanwhile, so the broker
    keeps every message. Verdicts and alert notices are published after the
    commit, only for passages new to the store: a verdict is useful only live,
    so none is queued while the broker is unreachable.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.exc import SQLAlchemyError

from aggregator.ingest.metrics import IngestMetrics
from aggregator.ingest.mqtt import (
    MqttOptions,
    Session,
    connect_async,
    make_client,
    server_receive_maximum,
)
from aggregator.ingest.pipeline import BatchOutcome, IngestPipeline, Prepared
from aggregator.ingest.validate import Inbound
from aggregator.timeseries import PassagePoint, TimeSeriesWriter
from contract.messages import AlertNotice, Verdict, encode
from contract.topics import ALL_SCANS, alert_topic, shared, verdict_topic

log = logging.getLogger(__name__)

# Verdicts in flight at once: paho's default, and mosquitto's default Receive
# Maximum (paho cannot change it once connected, so it is not taken from CONNACK).
_OUTGOING_INFLIGHT = 20
_GET_TIMEOUT_S = 0.2
MAX_WIRE_DOSES = 10  # contract.messages.Verdict.vaccine_doses le=10


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """How the consumer talks to the broker and forms batches."""

    client_id: str
    session_expiry_s: int = 7 * 86_400
    receive_maximum: int = 2000
    batch_size: int = 500
    batch_ms: int = 25
    verdict_qos: int = 1
    retry_min_s: float = 0.5
    retry_max_s: float = 30.0
    stop_drain_s: float = 5.0


@dataclass(frozen=True, slots=True)
class _Message:
    mid: int
    qos: int
    topic: str
    payload: bytes
    received: float  # time.time()
    epoch: int


class IngestConsumer:
    """Consumes scan events, stores them through the pipeline, answers the gates."""

    def __init__(
        self,
        options: MqttOptions,
        config: ConsumerConfig,
        pipeline: IngestPipeline,
        *,
        metrics: IngestMetrics,
        timeseries: TimeSeriesWriter,
    ) -> None:
        if config.batch_size < 1 or config.receive_maximum < 1:
            raise ValueError("batch_size and receive_maximum must be positive")
        self.options = options
        self.config = config
        self.pipeline = pipeline
        self.metrics = metrics
        self.timeseries = timeseries
        # The broker never has more than receive_maximum messages unacknowledged
        # with us; twice that leaves room for copies redelivered after a reconnect
        # while the old ones are still queued. A full queue blocks paho's thread
        # (back-pressure), it never drops.
        self._queue: queue.Queue[_Message] = queue.Queue(maxsize=2 * config.receive_maximum + 100)
        self._pending: deque[float] = deque()
        self._ack_lock = threading.Lock()
        self._epoch = 0
        self._connected = threading.Event()
        self._connects = 0
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._counts = dict.fromkeys(
            (
                "received",
                "stored",
                "duplicates",
                "dead_letters",
                "verdicts_sent",
                "alerts",
                "batches",
                "db_retries",
                "stale_acks_skipped",
            ),
            0,
        )
        self._counts_lock = threading.Lock()
        self._client = make_client(options, client_id=config.client_id, manual_ack=True)
        self._client.max_inflight_messages_set(_OUTGOING_INFLIGHT)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Connect (paho reconnects by itself from then on) and start the worker."""
        self._worker = threading.Thread(target=self._run, name="ingest-worker", daemon=True)
        self._worker.start()
        connect_async(
            self._client,
            self.options,
            Session(
                persistent=True,
                expiry_s=self.config.session_expiry_s,
                receive_maximum=self.config.receive_maximum,
            ),
        )

    def stop(self) -> None:
        """Finish the batch in hand (and what is queued, for ``stop_drain_s``), then disconnect.

        Whatever is left unacknowledged stays in our session on the broker.
        """
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=self.config.stop_drain_s + self.config.retry_max_s + 5)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self.metrics.mqtt_connected.set(0)

    @property
    def connected(self) -> bool:
        """True while connected to the broker."""
        return self._connected.is_set()

    @property
    def worker_alive(self) -> bool:
        """True while the batching worker thread runs."""
        return self._worker is not None and self._worker.is_alive()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected (True) or ``timeout`` seconds passed (False)."""
        return self._connected.wait(timeout)

    def lag_s(self) -> float:
        """Age of the oldest message received and not yet committed (0 when idle)."""
        try:
            oldest = self._pending[0]
        except IndexError:
            return 0.0
        return max(0.0, time.time() - oldest)

    def stats(self) -> dict[str, Any]:
        """Counters since start (received, stored, duplicates, dead_letters, verdicts_sent,
        alerts, batches, db_retries, stale_acks_skipped) and ``lag_s``."""
        with self._counts_lock:
            out: dict[str, Any] = dict(self._counts)
        out["lag_s"] = self.lag_s()
        out["queue_depth"] = self._queue.qsize()
        out["connected"] = self.connected
        return out

    def _count(self, **deltas: int) -> None:
        with self._counts_lock:
            for key, delta in deltas.items():
                self._counts[key] += delta

    # --- paho callbacks (network thread: no blocking work) ----------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("MQTT từ chối kết nối / broker refused the connection: %s", reason)
            return
        self._connects += 1
        if self._connects > 1 and not flags.session_present:
            log.error(
                "broker lost our session: messages it held for us may be gone "
                "(persistence off or session expired)"
            )
        if server_receive_maximum(properties) < _OUTGOING_INFLIGHT:
            log.warning(
                "broker's Receive Maximum %d is below our %d verdicts in flight",
                server_receive_maximum(properties),
                _OUTGOING_INFLIGHT,
            )
        client.subscribe(shared(ALL_SCANS), qos=1)
        self._connected.set()
        self.metrics.mqtt_connected.set(1)
        log.info(
            "ingest connected to %s:%d as %s (session present: %s)",
            self.options.host,
            self.options.port,
            self.config.client_id,
            flags.session_present,
        )

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        # paho calls this before it reconnects: messages received so far can no
        # longer be acknowledged on this connection (see the module docstring).
        with self._ack_lock:
            self._epoch += 1
        self._connected.clear()
        self.metrics.mqtt_connected.set(0)
        if not self._stop.is_set():
            log.warning("ingest disconnected from the broker: %s", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<topic không phải UTF-8 / invalid UTF-8 topic>"
        self._pending.append(now)
        self._queue.put(_Message(msg.mid, msg.qos, topic, msg.payload, now, self._epoch))

    # --- worker -----------------------------------------------------------------

    def _collect(self) -> list[_Message]:
        try:
            first = self._queue.get(timeout=_GET_TIMEOUT_S)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.config.batch_ms / 1000
        while len(batch) < self.config.batch_size:
            remaining = deadline - time.monotonic()
            try:
                batch.append(
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        drain_until: float | None = None
        while True:
            if self._stop.is_set():
                if drain_until is None:
                    drain_until = time.monotonic() + self.config.stop_drain_s
                if time.monotonic() > drain_until or self._queue.empty():
                    return
            batch = self._collect()
            if batch:
                self._handle(batch)
            self.metrics.queue_depth.set(self._queue.qsize())
            self.metrics.lag.set(self.lag_s())

    def _store(self, batch: Sequence[_Message]) -> BatchOutcome | None:
        """Store the batch, retrying on database errors; None if stopped before it committed."""
        items = [
            Inbound(m.topic, m.payload, datetime.fromtimestamp(m.received, UTC)) for m in batch
        ]
        prepared: Prepared | None = None
        delay = self.config.retry_min_s
        while True:
            started = time.perf_counter()
            try:
                if prepared is None:
                    prepared = self.pipeline.prepare(items)
                outcome = self.pipeline.store(prepared)
            except SQLAlchemyError as exc:
                log.warning(
                    "CSDL lỗi, thử lại sau %.1f s / database error, retrying in %.1f s: %s",
                    delay,
                    delay,
                    exc,
                )
            # The worker must outlive any bug: the batch stays unacknowledged and is retried.
            except Exception:
                log.exception("unexpected error storing a batch; retrying in %.1f s", delay)
            else:
                self.metrics.batch_seconds.observe(time.perf_counter() - started)
                return outcome
            self.metrics.db_retries.inc()
            self._count(db_retries=1)
            if self._stop.wait(delay):
                # Shutting down: the batch stays unacknowledged in our session.
                return None
            delay = min(delay * 2, self.config.retry_max_s)

    def _handle(self, batch: list[_Message]) -> None:
        self.metrics.received.inc(len(batch))
        self._count(received=len(batch))
        outcome = self._store(batch)
        if outcome is None:
            return
        self._ack(batch)
        for _ in batch:
            self._pending.popleft()
        try:
            self._report(batch, outcome)
            self._publish(outcome)
        # Stored and acknowledged already: a failure to report or answer must not stop ingest.
        except Exception:
            log.exception("reporting or publishing a committed batch failed")

    def _ack(self, batch: Sequence[_Message]) -> None:
        skipped = 0
        with self._ack_lock:
            for m in batch:
                if m.epoch != self._epoch:
                    skipped += 1
                    continue
                rc = self._client.ack(m.mid, m.qos)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    # Not acknowledged means redelivered later, found stored, acknowledged then.
                    skipped += 1
        if skipped:
            self._count(stale_acks_skipped=skipped)

    def _report(self, batch: Sequence[_Message], outcome: BatchOutcome) -> None:
        result = outcome.result
        m = self.metrics
        m.batches.inc()
        m.batch_size.observe(len(batch))
        m.stored.inc(len(result.stored))
        m.duplicates.inc(len(result.duplicates))
        for letter in outcome.letters:
            m.dead_letters.labels(letter.reason.value).inc()
        for alert in result.alerts:
            kind = alert.accepted.decision.alert
            m.alerts.labels(kind.value if kind else "").inc()
        self._count(
            batches=1,
            stored=len(result.stored),
            duplicates=len(result.duplicates),
            dead_letters=len(outcome.letters),
            alerts=len(result.alerts),
        )
        points = [
            PassagePoint(
                checkpoint_id=a.event.checkpoint_id,
                device_id=a.event.device_id,
                direction=a.event.direction.value,
                color=a.decision.color.value,
                code=a.decision.code.value,
                alert_kind=a.decision.alert.value if a.decision.alert else None,
                seen_at=a.event.seen_at,
                received_at=a.received_at,
            )
            for a in result.stored
        ]
        self.timeseries.passages(points)
        late = [(a.received_at - a.event.seen_at).total_seconds() for a in result.stored]
        self.timeseries.ingest_stats(
            at=datetime.now(UTC),
            batch_size=len(batch),
            lag_s=max(late, default=0.0),
            dead_letters=len(outcome.letters),
        )

    def _publish(self, outcome: BatchOutcome) -> None:
        if not self.connected:
            return
        qos = self.config.verdict_qos
        sent = 0
        now = datetime.now(UTC)
        for a in outcome.result.stored:
            verdict = Verdict(
                event_id=a.event.event_id,
                device_id=a.event.device_id,
                color=a.decision.color,
                code=a.decision.code,
                # The wire caps doses (a registry typo must not cost the gate its answer).
                vaccine_doses=None
                if a.decision.vaccine_doses is None
                else min(a.decision.vaccine_doses, MAX_WIRE_DOSES),
                decided_at=now,
            )
            info = self._client.publish(verdict_topic(a.event.device_id), encode(verdict), qos=qos)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                sent += 1
                self.metrics.scan_to_verdict.observe(
                    max(0.0, (now - a.event.seen_at).total_seconds())
                )
        for alert in outcome.result.alerts:
            a = alert.accepted
            kind = a.decision.alert
            if kind is None:
                continue
            notice = AlertNotice(
                alert_id=alert.alert_id,
                event_id=a.event.event_id,
                checkpoint_id=a.event.checkpoint_id,
                device_id=a.event.device_id,
                kind=kind,
                created_at=alert.created_at,
            )
            self._client.publish(alert_topic(a.event.checkpoint_id), encode(notice), qos=1)
        self.metrics.verdicts_sent.inc(sent)
        self._count(verdicts_sent=sent)
