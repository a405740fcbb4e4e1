"""The scan stream from the broker to the store: MQTT 5, QoS 1, acknowledged after commit.

Session
    A persistent session (``clean_start=False`` and a session expiry) on the
    shared subscription ``$share/aggregators/kd/v1/dev/+/scan``: several
    aggregators split the stream, and whatever one of them received but did
    not acknowledge is redelivered to it (same client id) when it comes back,
    after a crash or a SIGKILL. Our Receive Maximum caps how many
    unacknowledged messages the broker sends us.

Acknowledgement
    ``manual_ack``: the link (:mod:`aggregator.ingest.link`: paho, in a child
    process by default) only puts ``(mid, qos, topic, payload, received time,
    connection epoch)`` in the inbox. Four threads then work in a pipeline,
    each on its own batch, so the database's time (SQLite and psycopg release
    the GIL) overlaps with parsing, signature checks (PyNaCl releases the GIL
    too) and answering:

    - *prepare* parses each message as it arrives and checks its token (or
      takes the signature check the link child made), and adds it to the
      forming batch (:mod:`aggregator.ingest.batching` says when a batch
      closes: at once under light traffic, larger under load);
    - *lookup* takes the batch as it closes, checks its devices, reads its
      registry records in one query and decides the verdicts;
    - *store* writes the batch in one transaction; it is the one step that
      cannot run beside itself, so it does nothing else (the lookup of the
      next batch overlaps with it);
    - *answer* acknowledges the committed batch's messages in the order they
      arrived, then publishes verdicts and alert notices.

    Batches pass from one thread to the next in arrival order, so messages
    are acknowledged in the order received, and only after their commit. A
    message is acknowledged only on the connection that delivered it: after a
    reconnect the broker redelivers what was not acknowledged (same packet
    ids), the copy is found already stored and is acknowledged then;
    acknowledging the old copy as well could acknowledge another message that
    reused its packet id before it was committed.

Failures
    A database error (locked, PostgreSQL down, deadlock) backs off and
    retries the same lookup or write of the same batch; nothing is
    acknowledged meanwhile (nor anything received after it), so the broker
    keeps every message. Verdicts and alert notices are published after the
    commit, only for passages new to the store: a verdict is useful only
    live, so none is queued while the broker is unreachable.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from aggregator.ingest.batching import FormingBatch, Inbox
from aggregator.ingest.link import Delivery, InProcessLink, ProcessLink
from aggregator.ingest.metrics import IngestMetrics
from aggregator.ingest.mqtt import MqttOptions, Session
from aggregator.ingest.pipeline import BatchOutcome, IngestPipeline, LookedUp, Parsed, assemble
from aggregator.ingest.tokens import unpack_check
from aggregator.ingest.validate import DeadLetter, Inbound
from aggregator.timeseries import PassagePoint, TimeSeriesWriter
from contract.messages import AlertNotice, Verdict, encode
from contract.topics import alert_topic, verdict_topic

log = logging.getLogger(__name__)
T = TypeVar("T")

_GET_TIMEOUT_S = 0.2
# Messages the prepare thread takes from the inbox at a time: small enough
# that a batch can close (and go to the database) while more are prepared.
_PREPARE_CHUNK = 64
# Committed batches waiting for the answer thread; more would only hold
# memory while the broker is slow to take our verdicts.
_ANSWER_BACKLOG = 4
MAX_WIRE_DOSES = 10  # contract.messages.Verdict.vaccine_doses le=10


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """How the consumer talks to the broker and forms batches."""

    client_id: str
    session_expiry_s: int = 7 * 86_400
    receive_maximum: int = 2000
    batch_size: int = 500
    batch_ms: int = 10
    verdict_qos: int = 0
    retry_min_s: float = 0.5
    retry_max_s: float = 30.0
    stop_drain_s: float = 5.0
    # The MQTT connection in a child process (aggregator.ingest.link).
    mqtt_process: bool = True


_Ready = tuple[Delivery, Parsed | DeadLetter]


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
        # while the old ones are still queued. A full inbox blocks paho's thread
        # (back-pressure), it never drops.
        self._inbox: Inbox[Delivery] = Inbox(2 * config.receive_maximum + 100)
        self._forming: FormingBatch[_Ready] = FormingBatch(
            config.batch_size, config.batch_ms / 1000
        )
        # One batch looked up ahead of the one being written: more would only
        # read the registry earlier than needed.
        self._looked: queue.Queue[tuple[list[Delivery], LookedUp] | None] = queue.Queue(maxsize=1)
        self._answers: queue.Queue[tuple[list[Delivery], BatchOutcome] | None] = queue.Queue(
            maxsize=_ANSWER_BACKLOG
        )
        self._pending: deque[float] = deque()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._verdict_topics: dict[str, str] = {}
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
        session = Session(
            persistent=True,
            expiry_s=config.session_expiry_s,
            receive_maximum=config.receive_maximum,
        )
        self._link: ProcessLink | InProcessLink
        if config.mqtt_process:
            self._link = ProcessLink(
                options,
                session,
                client_id=config.client_id,
                deliver=self._delivered,
                on_state=self._link_state,
                on_counts=self._link_counts,
                verifier=pipeline.verifier,
            )
        else:
            self._link = InProcessLink(
                options,
                session,
                client_id=config.client_id,
                deliver=self._delivered,
                on_state=self._link_state,
                on_counts=self._link_counts,
            )

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Connect (paho reconnects by itself from then on) and start the worker threads."""
        self._threads = [
            threading.Thread(target=run, name=f"ingest-{name}", daemon=True)
            for name, run in (
                ("prepare", self._prepare_loop),
                ("lookup", self._lookup_loop),
                ("store", self._store_loop),
                ("answer", self._answer_loop),
            )
        ]
        for thread in self._threads:
            thread.start()
        self._link.start()

    def stop(self) -> None:
        """Finish the batch in hand (and what is queued, for ``stop_drain_s``), then disconnect.

        Whatever is left unacknowledged stays in our session on the broker.
        """
        self._stop.set()
        deadline = time.monotonic() + self.config.stop_drain_s + self.config.retry_max_s + 5
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        # Whatever still arrives stays unacknowledged; the link must not wait for room.
        self._inbox.close()
        self._link.stop()
        self._connected.clear()
        self.metrics.mqtt_connected.set(0)

    @property
    def connected(self) -> bool:
        """True while connected to the broker and subscribed to the scans."""
        return self._connected.is_set()

    @property
    def worker_alive(self) -> bool:
        """True while all the worker threads (prepare, lookup, store, answer) run."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected and subscribed (True) or ``timeout`` seconds passed (False)."""
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
        out["queue_depth"] = self._queue_depth()
        out["connected"] = self.connected
        return out

    def _queue_depth(self) -> int:
        return len(self._inbox) + len(self._forming)

    def _count(self, **deltas: int) -> None:
        with self._counts_lock:
            for key, delta in deltas.items():
                self._counts[key] += delta

    # --- from the link (paho's thread, or the thread reading the child) ------------

    def _delivered(self, messages: Sequence[Delivery]) -> None:
        for m in messages:
            self._pending.append(m.received)
            self._inbox.put(m)  # blocks while the inbox is full (back-pressure)

    def _link_state(self, connected: bool) -> None:
        if connected:
            self._connected.set()
        else:
            self._connected.clear()
        self.metrics.mqtt_connected.set(1 if connected else 0)

    def _link_counts(self, stale_acks: int, refused: int) -> None:
        # Refusals happen only in the instant the connection drops (publishing
        # stops while disconnected): they are taken off the verdicts sent.
        self._count(stale_acks_skipped=stale_acks, verdicts_sent=-refused)

    # --- worker threads ---------------------------------------------------------

    def _prepare_loop(self) -> None:
        """Parse and verify messages as they arrive; feed the forming batch."""
        drain_until: float | None = None
        limit = min(self.config.batch_size, _PREPARE_CHUNK)
        try:
            while True:
                if self._stop.is_set():
                    # Finish what is queued, for stop_drain_s at most; the rest
                    # stays unacknowledged in our session on the broker.
                    if drain_until is None:
                        drain_until = time.monotonic() + self.config.stop_drain_s
                    if time.monotonic() > drain_until:
                        return
                messages = self._inbox.take(limit, _GET_TIMEOUT_S)
                if not messages:
                    self._forming.caught_up()
                    if self._stop.is_set():
                        return
                    continue
                ready = self._prepare(messages)
                if ready is None:
                    return
                self._forming.add(ready, caught_up=not len(self._inbox))
        finally:
            self._forming.close()

    def _prepare_one(self, m: Delivery, generation: int) -> _Ready:
        signed = None
        checked = m.checked
        # Checked by the link with the keyring we use now (else checked again here).
        if checked is not None and checked[1] == generation:
            signed = (checked[0], unpack_check(checked[2]))
        item = Inbound(m.topic, m.payload, datetime.fromtimestamp(m.received, UTC))
        return m, self.pipeline.prepare_one(item, signed=signed)

    def _prepare(self, messages: Sequence[Delivery]) -> list[_Ready] | None:
        """Each message with its parse and token check; None if stopped while retrying."""
        delay = self.config.retry_min_s
        while True:
            try:
                generation = self.pipeline.verifier.generation
                return [self._prepare_one(m, generation) for m in messages]
            # Never expected (parsing and verification do not raise on hostile
            # input); the messages stay unacknowledged and are tried again.
            except Exception:
                log.exception("unexpected error preparing messages; retrying in %.1f s", delay)
            if self._stop.wait(delay):
                return None
            delay = min(delay * 2, self.config.retry_max_s)

    def _lookup_loop(self) -> None:
        """Take each batch as it forms; check its devices, read the registry, decide verdicts."""
        try:
            while True:
                ready = self._forming.take(_GET_TIMEOUT_S)
                self.metrics.queue_depth.set(self._queue_depth())
                self.metrics.lag.set(self.lag_s())
                if ready is None:
                    return
                if not ready:
                    continue
                batch = [m for m, _ in ready]
                self.metrics.received.inc(len(batch))
                self._count(received=len(batch))
                prepared = assemble([p for _, p in ready])
                looked = self._retrying(partial(self.pipeline.look_up, prepared), "look up")
                if looked is None:
                    return
                self._looked.put((batch, looked))
        finally:
            self._looked.put(None)

    def _store_loop(self) -> None:
        """Commit batches in order; hand each to the answer thread."""
        try:
            while True:
                item = self._looked.get()
                if item is None:
                    return
                batch, looked = item
                started = time.perf_counter()
                outcome = self._retrying(partial(self.pipeline.write, looked), "store")
                if outcome is None:
                    # Stopping mid-retry: this batch, and every later one, stays
                    # unacknowledged (acknowledgements never skip ahead). Let
                    # the lookup thread finish: it waits for room to hand over.
                    while self._looked.get() is not None:
                        pass
                    return
                self.metrics.batch_seconds.observe(time.perf_counter() - started)
                for _ in batch:
                    self._pending.popleft()
                self._answers.put((batch, outcome))
        finally:
            self._answers.put(None)

    def _retrying(self, work: Callable[[], T], what: str) -> T | None:
        """``work()``, retried on database errors with backoff; None if stopped first."""
        delay = self.config.retry_min_s
        while True:
            try:
                return work()
            except SQLAlchemyError as exc:
                log.warning(
                    "CSDL lỗi, thử lại sau %.1f s / database error (%s), retrying in %.1f s: %s",
                    delay,
                    what,
                    delay,
                    exc,
                )
            # The worker must outlive any bug: the batch stays unacknowledged and is retried.
            except Exception:
                log.exception("unexpected error (%s) on a batch; retrying in %.1f s", what, delay)
            self.metrics.db_retries.inc()
            self._count(db_retries=1)
            if self._stop.wait(delay):
                # Shutting down: the batch stays unacknowledged in our session.
                return None
            delay = min(delay * 2, self.config.retry_max_s)

    def _answer_loop(self) -> None:
        """Acknowledge committed batches in order, then answer the gates."""
        while True:
            item = self._answers.get()
            if item is None:
                return
            batch, outcome = item
            self._ack(batch)
            try:
                self._report(batch, outcome)
                self._publish(outcome)
            # Stored and acknowledged already: a failure to report or answer must not stop ingest.
            except Exception:
                log.exception("reporting or publishing a committed batch failed")

    def _ack(self, batch: Sequence[Delivery]) -> None:
        # In arrival order, each on the connection it came on (the link skips
        # and counts those from an earlier connection: they come back).
        self._link.ack(batch)

    def _report(self, batch: Sequence[Delivery], outcome: BatchOutcome) -> None:
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
        if not self.timeseries.enabled:
            return
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

    def _verdict_topic(self, device_id: str) -> str:
        # Checked and formatted once per gate, not once per verdict.
        topic = self._verdict_topics.get(device_id)
        if topic is None:
            topic = self._verdict_topics[device_id] = verdict_topic(device_id)
        return topic

    def _publish(self, outcome: BatchOutcome) -> None:
        if not self.connected:
            return
        qos = self.config.verdict_qos
        now = datetime.now(UTC)
        out: list[tuple[str, bytes, int]] = []
        observe = self.metrics.scan_to_verdict.observe
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
            out.append((self._verdict_topic(a.event.device_id), encode(verdict), qos))
            observe(max(0.0, (now - a.event.seen_at).total_seconds()))
        sent = len(out)
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
            out.append((alert_topic(a.event.checkpoint_id), encode(notice), 1))
        self._link.publish(out)
        self.metrics.verdicts_sent.inc(sent)
        self._count(verdicts_sent=sent)
