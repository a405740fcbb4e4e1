"""The aggregator service: its parts, started as a plain ordered list of steps, stopped in reverse.

Steps (``AggregatorService.steps``):

1. database: wait until it answers, apply the migrations;
   then, on a SQLite file, move WAL checkpoints to a thread of their own
   (:mod:`aggregator.db.checkpoint`);
2. keyring: load the public keyring the tokens are verified with;
3. timeseries: the process's one batching TSDB writer;
4. fleet: the in-memory fleet view and its store flusher;
5. control: the MQTT link for device status (in) and the retained keyring
   and deny-list (out);
6. housekeeping: a thread that polls the registry for deny-list changes and
   the keyring file for rotation, and publishes both when they change or the
   broker reconnects;
7. retention (unless ``retention_days`` is 0): deletes rows past the retention
   policy, first after ``retention_start_delay_s``, then every
   ``retention_interval_s`` (one process at a time, see :mod:`aggregator.retention`);
8. ingest: the scan consumer (persistent session, shared subscription; its
   MQTT connection in a child process unless ``mqtt_process`` is off).

If a step fails, the steps already started are stopped in reverse order and
the error is raised. Construction does no I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from aggregator.db.checkpoint import WalCheckpointer
from aggregator.db.engine import make_engine, normalize_url
from aggregator.db.migrate import upgrade
from aggregator.ingest.consumer import ConsumerConfig, IngestConsumer
from aggregator.ingest.control import ControlLink
from aggregator.ingest.denylist import DenyListPublisher, Published
from aggregator.ingest.fleet_state import FleetState
from aggregator.ingest.keyring import KeyringWatcher, load_keyring
from aggregator.ingest.metrics import IngestMetrics
from aggregator.ingest.mqtt import MqttOptions
from aggregator.ingest.pipeline import IngestPipeline
from aggregator.ingest.tokens import TokenVerifier
from aggregator.retention import RetentionJob, policy_from_settings
from aggregator.settings import AggregatorSettings
from aggregator.timeseries import TimeSeriesWriter
from contract.token import Keyring
from contract.topics import ALL_STATUS

log = logging.getLogger(__name__)

_PG_CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True, slots=True)
class Step:
    """One start-up step and how to undo it."""

    name: str
    start: Callable[[], None]
    stop: Callable[[], None] | None = None


def _engine(settings: AggregatorSettings) -> Engine:
    url = normalize_url(settings.db_url)
    if url.get_backend_name() == "postgresql":
        # A readiness probe or a retry must fail in seconds, not hang on a dead server.
        return make_engine(url, connect_args={"connect_timeout": _PG_CONNECT_TIMEOUT_S})
    return make_engine(url, sqlite_cache_mib=settings.sqlite_cache_mib)


class AggregatorService:
    """Every part of one aggregator process, wired together."""

    def __init__(self, settings: AggregatorSettings) -> None:
        self.settings = s = settings
        self.metrics = IngestMetrics()
        self.engine = _engine(s)
        self.checkpointer = WalCheckpointer(self.engine)
        self.verifier = TokenVerifier(
            Keyring(), cache_size=s.token_cache_size, leeway_s=s.token_leeway_s
        )
        self.timeseries = TimeSeriesWriter(
            s.tsdb_url,
            org=s.tsdb_org,
            bucket=s.tsdb_bucket,
            token=s.tsdb_token.get_secret_value(),
            instance=s.client_id,
        )
        options = MqttOptions(
            host=s.mqtt_host,
            port=s.mqtt_port,
            username=s.mqtt_username,
            password=s.mqtt_password.get_secret_value() if s.mqtt_password else None,
            ca_file=s.mqtt_ca_file,
            keepalive_s=s.mqtt_keepalive_s,
        )
        self.fleet = FleetState(self.engine, self.timeseries, flush_interval_s=s.fleet_flush_s)
        self.control = ControlLink(options, client_id=f"{s.client_id[:60]}-ctl")
        self.keyring = KeyringWatcher(s.keyring_path, self.verifier, self._publish_retained)
        self.denylist = DenyListPublisher(
            self.engine,
            self._publish_retained,
            max_age_s=s.denylist_max_age_s,
            on_published=self._denylist_published,
        )
        self.pipeline = IngestPipeline(
            self.engine,
            self.verifier,
            clock_skew_threshold_s=s.clock_skew_threshold_s,
            device_skew=self._device_skew,
        )
        self.consumer = IngestConsumer(
            options,
            ConsumerConfig(
                client_id=s.client_id,
                session_expiry_s=s.session_expiry_s,
                receive_maximum=s.receive_maximum,
                batch_size=s.batch_size,
                batch_ms=s.batch_ms,
                verdict_qos=s.verdict_qos,
                retry_min_s=s.retry_min_s,
                retry_max_s=s.retry_max_s,
                mqtt_process=s.mqtt_process,
            ),
            self.pipeline,
            metrics=self.metrics,
            timeseries=self.timeseries,
        )
        self.retention = RetentionJob(
            self.engine,
            policy_from_settings(s),
            interval_s=s.retention_interval_s,
            start_delay_s=s.retention_start_delay_s,
        )
        self.metrics.watch(self.metrics.devices_online, self.fleet.online_count)
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._housekeeper: threading.Thread | None = None
        self._started: list[Step] = []
        self._ran = False
        self._lock = threading.Lock()
        self.steps = [
            Step("database", self._start_database, self.engine.dispose),
            Step("wal-checkpoint", self.checkpointer.start, self.checkpointer.stop),
            Step("keyring", self._load_keyring),
            Step("timeseries", lambda: None, self.timeseries.close),
            Step("fleet", self.fleet.start, self.fleet.stop),
            Step("control", self._start_control, self.control.stop),
            Step("housekeeping", self._start_housekeeping, self._stop_housekeeping),
            *(
                [Step("retention", self.retention.start, self.retention.stop)]
                if s.retention_days
                else []
            ),
            Step("ingest", self.consumer.start, self.consumer.stop),
        ]

    # --- lifecycle ----------------------------------------------------------------

    @property
    def started(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return len(self._started) == len(self.steps)

    def start(self) -> None:
        """Run the start-up steps in order; on failure undo those done and raise."""
        with self._lock:
            if self._started or self._ran:
                raise RuntimeError("a service starts once; make a new one to start again")
            self._ran = True
            for step in self.steps:
                log.info("khởi động / starting: %s", step.name)
                try:
                    step.start()
                except BaseException:
                    log.exception("start-up step %r failed; stopping what was started", step.name)
                    self._stop_started()
                    raise
                self._started.append(step)
            log.info("aggregator %s ready", self.settings.client_id)

    def stop(self) -> None:
        """Stop the started steps in reverse order (each one's failure is logged, not raised)."""
        with self._lock:
            self._stop_started()

    def _stop_started(self) -> None:
        while self._started:
            step = self._started.pop()
            if step.stop is None:
                continue
            log.info("dừng / stopping: %s", step.name)
            try:
                step.stop()
            # Shutdown goes on whatever one step raises, or later steps would leak.
            except Exception:
                log.exception("stopping %r failed", step.name)

    # --- steps --------------------------------------------------------------------

    def _start_database(self) -> None:
        deadline = time.monotonic() + self.settings.db_wait_s
        shown = normalize_url(self.settings.db_url).render_as_string(hide_password=True)
        while True:
            try:
                with self.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                break
            except SQLAlchemyError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"CSDL không phản hồi / database {shown} unreachable: {exc}"
                    ) from exc
                log.warning("waiting for the database %s: %s", shown, exc)
                time.sleep(1.0)
        if self.settings.migrate_on_start:
            upgrade(self.engine)

    def _load_keyring(self) -> None:
        self.verifier.replace_keyring(load_keyring(self.settings.keyring_path))

    def _device_skew(self, device_id: str) -> float | None:
        view = self.fleet.get(device_id)
        return None if view is None else view.clock_skew_s

    def _publish_retained(self, topic: str, payload: bytes) -> bool:
        return self.control.publish(topic, payload, qos=1, retain=True)

    def _denylist_published(self, published: Published) -> None:
        self.metrics.denylist_revision.set(published.revision)
        self.metrics.denylist_entries.set(published.entries)

    def _on_control_connected(self) -> None:
        # Runs on paho's thread: only flag the work for the housekeeping thread.
        self.keyring.request_publish()
        self.denylist.request_publish()
        self._wake.set()

    def _start_control(self) -> None:
        self.control.subscribe(ALL_STATUS, self.fleet.on_status)
        self.control.on_connected(self._on_control_connected)
        self.control.start()

    def _housekeeping(self) -> None:
        while not self._halt.is_set():
            try:
                self.keyring.tick()
                self.denylist.tick()
            except SQLAlchemyError as exc:
                log.warning("deny-list poll failed, retrying: %s", exc)
            # The thread must outlive any bug: the next tick tries again.
            except Exception:
                log.exception("housekeeping tick failed")
            self._wake.wait(self.settings.poll_interval_s)
            self._wake.clear()

    def _start_housekeeping(self) -> None:
        self._halt.clear()
        self._housekeeper = threading.Thread(
            target=self._housekeeping, name="housekeeping", daemon=True
        )
        self._housekeeper.start()

    def _stop_housekeeping(self) -> None:
        self._halt.set()
        self._wake.set()
        if self._housekeeper is not None:
            self._housekeeper.join(timeout=60)

    # --- state for the API and benchmarks --------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Ingest counters (received, stored, duplicates, dead_letters, verdicts_sent, alerts,
        batches, lag_s, ...), devices online and the deny-list revision published."""
        out = self.consumer.stats()
        out["devices_online"] = self.fleet.online_count()
        last = self.denylist.last
        out["denylist_revision"] = last.revision if last else None
        return out

    def readiness(self) -> list[str]:
        """Why the service is not ready to take traffic (empty when it is)."""
        reasons = []
        if not self.started:
            reasons.append("chưa khởi động xong / not started")
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            reasons.append(f"CSDL không phản hồi / database unreachable: {type(exc).__name__}")
        if not self.consumer.connected:
            reasons.append("chưa kết nối MQTT / MQTT not connected")
        if self.started and not self.consumer.worker_alive:
            reasons.append("luồng xử lý đã dừng / ingest worker stopped")
        lag = self.consumer.lag_s()
        if lag > self.settings.ready_max_lag_s:
            reasons.append(
                f"xử lý chậm / ingest lag {lag:.1f} s > {self.settings.ready_max_lag_s:.1f} s"
            )
        return reasons
