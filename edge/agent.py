"""The edge agent: one gate camera, from frames to a verdict on the gate and a scan on the broker.

Threads (each owns its state; they meet only through thread-safe objects):

* ``camera-capture`` (edge.camera): keeps only the newest frame.
* ``decode`` (here): vision → offline verification → gate display → outbox.
  The local verdict is shown *before* the event is written, so a slow SD card
  never delays the gate; the outbox write follows immediately, before any
  publishing, so nothing decoded is lost.
* ``mqtt-publisher`` / ``mqtt-inbound`` (edge.mqtt_link): drain the outbox on
  PUBACK; hand verdicts, deny-lists, config and keyrings to the handlers
  below, which only swap state.
* ``status`` (here): the retained status every ``status_interval_s``.
* ``watchdog`` (here, only under a systemd ``WatchdogSec=``): ``WATCHDOG=1``
  at half the interval while :meth:`EdgeAgent.liveness` is healthy, so
  systemd restarts an agent whose decode thread died or whose camera stays down.
* display and metrics servers.

Start-up is a plain ordered list of steps; shutdown runs them in reverse.
"""

from __future__ import annotations

import logging
import signal
import statistics
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from contract.ids import new_event_id
from contract.messages import (
    CameraState,
    DenyList,
    DeviceConfigUpdate,
    DeviceState,
    DeviceStatus,
    LocalVerdict,
    ScanEvent,
    Verdict,
)
from contract.token import Keyring, KeyringFile, verify_token
from edge import __version__, systemd
from edge.camera import Camera, Frame
from edge.config import EdgeConfig, UpdateRefusedError, apply_update
from edge.denylist import DenyListStore
from edge.display import GateDisplay
from edge.health import (
    EdgeMetrics,
    Health,
    HealthReport,
    HealthServer,
    camera_check,
    outbox_check,
    read_cpu_temp_c,
    thread_check,
)
from edge.mqtt_link import InboundHandlers, MqttLink
from edge.outbox import Outbox
from edge.verdict import local_verdict
from edge.vision.pipeline import FrameProcessor, Passage

log = logging.getLogger(__name__)

ALARM_CAMERA_LOST = "camera_lost"
_RECENT_DECODES = 512
_AWAITING_VERDICT = 256


@dataclass(frozen=True, slots=True)
class Step:
    """One start-up step and its undo."""

    name: str
    start: Callable[[], None]
    stop: Callable[[], None]


class EdgeAgent:
    """Everything one gate device runs; ``run()`` until SIGINT/SIGTERM.

    ``wall_clock`` is the device's clock (seconds since the epoch, default
    ``time.time``). Every wall time the device reports (a scan's ``seen_at``,
    the offline check's "now", the status ``at``) comes from it, so a device
    whose clock is wrong is wrong consistently, as a real one is, and the
    clock-skew fault test can give two agents in one process different clocks.
    """

    def __init__(
        self,
        config: EdgeConfig,
        *,
        file_config: EdgeConfig | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._wall = wall_clock
        # Remote updates are applied on top of the file's config, never on top
        # of a previous update, so a key dropped from a later revision reverts.
        self._file_config = file_config or config
        self._config_revision = -1
        self._stop = threading.Event()
        self._keyring = Keyring.load(config.verify.keyring)
        self._denylist = DenyListStore(config.verify.denylist_cache)
        self.metrics = EdgeMetrics(
            device_id=config.device.id,
            checkpoint_id=config.device.checkpoint_id,
            software=__version__,
        )
        self.outbox: Outbox | None = None
        self.link: MqttLink | None = None
        self.camera = Camera(config.camera, wall=wall_clock)
        self.display = GateDisplay(
            config.display,
            label=f"{config.device.checkpoint_id} · làn {config.device.lane}",
            wall=wall_clock,
        )
        self._processor = FrameProcessor(config.vision, source=config.device.id)
        self._processor_lock = threading.Lock()
        self._decode_thread: threading.Thread | None = None
        self._status_thread: threading.Thread | None = None
        self._watchdog_thread: threading.Thread | None = None
        self._watchdog_s = systemd.watchdog_interval()
        self._watchdog_unhealthy = False
        # What a restart can cure, checked the same way as /healthz. A failing
        # outbox is not here: a restart would lose the events it holds in memory.
        self._liveness = Health(
            {
                "camera": camera_check(self.camera.stats, config.metrics.camera_down_s),
                "decode": thread_check("decode", self._decode_alive),
            }
        )
        self._health_server: HealthServer | None = None
        self._decode_ms: deque[float] = deque(maxlen=_RECENT_DECODES)
        self._local_latency_ms: deque[float] = deque(maxlen=_RECENT_DECODES)
        # event id -> monotonic time its code was first seen (for verdict latency)
        self._awaiting: OrderedDict[UUID, float] = OrderedDict()
        self._awaiting_lock = threading.Lock()
        self._ignored_reported = 0
        self._steps: list[Step] = []
        self._started: list[Step] = []

    # -- life cycle ---------------------------------------------------------------------

    def _plan(self) -> list[Step]:
        cfg = self.config
        steps = [
            Step("outbox", self._open_outbox, self._close_outbox),
            Step("display", self.display.start, self.display.stop),
        ]
        if cfg.metrics.enabled:
            steps.append(Step("metrics", self._start_health, self._stop_health))
        steps += [
            Step("mqtt", self._start_link, self._stop_link),
            Step("camera", self.camera.start, self.camera.stop),
            Step("decode", self._start_decode, self._join_decode),
            Step("status", self._start_status, self._join_status),
        ]
        if self._watchdog_s is not None:
            steps.append(Step("watchdog", self._start_watchdog, self._join_watchdog))
        return steps

    def start(self) -> None:
        """Run the start-up steps in order; on failure undo those already done."""
        for step in self._plan():
            log.info("start: %s", step.name)
            try:
                step.start()
            except Exception:
                log.exception("start-up step %s failed; stopping", step.name)
                self.stop()
                raise
            self._started.append(step)

    def stop(self) -> None:
        """Undo the started steps in reverse order (idempotent)."""
        self._stop.set()
        while self._started:
            step = self._started.pop()
            log.info("stop: %s", step.name)
            try:
                step.stop()
            # One failing stop must not keep the others (the outbox's close) from running.
            except Exception:
                log.exception("stop step %s failed", step.name)

    def run(self) -> int:
        """Start, wait for SIGINT/SIGTERM, stop. Returns the process exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stop.set())
        self.start()
        log.info("edge agent %s running at %s", self.config.device.id, self.display.url)
        systemd.notify("READY=1")
        systemd.status(self.status_line())
        self._stop.wait()
        systemd.notify("STOPPING=1")
        self.stop()
        return 0

    # -- steps ---------------------------------------------------------------------------

    def _open_outbox(self) -> None:
        self.outbox = Outbox(self.config.outbox)
        self.metrics.watch_outbox(self.outbox.stats)

    def _close_outbox(self) -> None:
        if self.outbox is not None:
            self.outbox.close()

    def _start_health(self) -> None:
        assert self.outbox is not None
        cfg = self.config
        self.metrics.watch_camera(self.camera.stats)
        self.metrics.gauge(
            "kiemdich_edge_local_verdict_ms_p99",
            "Frame capture to local verdict shown, p99 of recent passages (ms)",
            lambda: _percentile(self._local_latency_ms, 99) or 0.0,
        )
        health = Health(
            {
                "camera": camera_check(self.camera.stats, cfg.metrics.camera_down_s),
                "decode": thread_check("decode", self._decode_alive),
                "outbox": outbox_check(self.outbox.stats),
            }
        )
        self._health_server = HealthServer(cfg.metrics.host, cfg.metrics.port, self.metrics, health)
        self._health_server.start()

    def _stop_health(self) -> None:
        if self._health_server is not None:
            self._health_server.stop()

    def _decode_alive(self) -> bool:
        return self._decode_thread is not None and self._decode_thread.is_alive()

    def _start_link(self) -> None:
        assert self.outbox is not None
        cfg = self.config
        self.link = MqttLink(
            cfg.mqtt,
            device_id=cfg.device.id,
            checkpoint_id=cfg.device.checkpoint_id,
            outbox=self.outbox,
            handlers=InboundHandlers(
                verdict=self._on_verdict,
                denylist=self._on_denylist,
                config=self._on_config,
                keyring=self._on_keyring,
            ),
            software=__version__,
            wall=self._wall,
        )
        self.link.start()

    def _stop_link(self) -> None:
        if self.link is not None:
            self.link.stop()

    def _start_decode(self) -> None:
        self._decode_thread = threading.Thread(target=self._decode_loop, name="decode", daemon=True)
        self._decode_thread.start()

    def _join_decode(self) -> None:
        if self._decode_thread is not None:
            self._decode_thread.join(timeout=10)

    def _start_status(self) -> None:
        self._status_thread = threading.Thread(target=self._status_loop, name="status", daemon=True)
        self._status_thread.start()

    def _join_status(self) -> None:
        if self._status_thread is not None:
            self._status_thread.join(timeout=10)

    def _start_watchdog(self) -> None:
        self._watchdog_thread = threading.Thread(
            target=self._watchdog_loop, name="watchdog", daemon=True
        )
        self._watchdog_thread.start()

    def _join_watchdog(self) -> None:
        if self._watchdog_thread is not None:
            self._watchdog_thread.join(timeout=10)

    # -- systemd watchdog ----------------------------------------------------------------

    def liveness(self) -> HealthReport:
        """What gates the systemd watchdog: decode thread running, camera not down too long."""
        return self._liveness.report()

    def watchdog_tick(self) -> bool:
        """Send ``WATCHDOG=1`` if the agent is live; True when it was sent.

        While unhealthy nothing is sent, so systemd kills and restarts the agent
        once ``WatchdogSec`` passes; the reasons go to the log and ``STATUS=``.
        """
        report = self.liveness()
        if not report.healthy:
            reasons = "; ".join(report.reasons)
            if not self._watchdog_unhealthy:
                log.error("unhealthy, withholding the systemd watchdog: %s", reasons)
            self._watchdog_unhealthy = True
            systemd.status(f"unhealthy / không khỏe: {reasons}")
            return False
        if self._watchdog_unhealthy:
            log.info("healthy again, resuming the systemd watchdog")
            self._watchdog_unhealthy = False
            systemd.status(self.status_line())
        return systemd.notify("WATCHDOG=1")

    def _watchdog_loop(self) -> None:
        assert self._watchdog_s is not None
        # Half the interval, as sd_watchdog_enabled(3) advises: one late tick is not a restart.
        period = self._watchdog_s / 2
        self.watchdog_tick()
        while not self._stop.wait(period):
            self.watchdog_tick()

    # -- decode path ---------------------------------------------------------------------

    def _decode_loop(self) -> None:
        while not self._stop.is_set():
            frame = self.camera.get(timeout=0.5)
            if frame is None:
                continue
            started = time.monotonic()
            with self._processor_lock:
                processor = self._processor
            passages = processor.process(frame.image, frame.captured_at)
            elapsed = time.monotonic() - started
            self._decode_ms.append(elapsed * 1000)
            self.metrics.decode_seconds.observe(elapsed)
            self.metrics.frames_processed.inc()
            ignored = processor.deduper.stats.ignored
            if ignored > self._ignored_reported:
                self.metrics.ignored_codes.inc(ignored - self._ignored_reported)
                self._ignored_reported = ignored
            for passage in passages:
                self.handle_passage(passage, frame)

    def handle_passage(self, passage: Passage, frame: Frame) -> ScanEvent | None:
        """Verify a new passage offline, show it at the gate, store it for publishing."""
        cfg = self.config
        # The frame that first read the code may be earlier than this one.
        seen_wall = frame.wall_time - (frame.captured_at - passage.first_seen)
        verification = verify_token(
            passage.token, self._keyring, now=int(seen_wall), leeway_s=cfg.verify.leeway_s
        )
        denied = None
        if verification.ok and verification.claims is not None:
            denied = self._denylist.reason_for(verification.claims.declaration_id)
        verdict = local_verdict(verification, denied)
        event_id = new_event_id()
        self.display.show_local(event_id, verdict)
        shown = time.monotonic()
        self._local_latency_ms.append((shown - passage.first_seen) * 1000)
        self.metrics.passages.labels(color=verdict.color.value).inc()
        with self._awaiting_lock:
            self._awaiting[event_id] = passage.first_seen
            while len(self._awaiting) > _AWAITING_VERDICT:
                self._awaiting.popitem(last=False)
        return self._store(event_id, passage, verdict, seen_wall)

    def _store(
        self, event_id: UUID, passage: Passage, verdict: LocalVerdict, seen_wall: float
    ) -> ScanEvent | None:
        assert self.outbox is not None
        device = self.config.device
        built: list[ScanEvent] = []

        def build(seq: int) -> ScanEvent:
            event = ScanEvent(
                event_id=event_id,
                device_id=device.id,
                checkpoint_id=device.checkpoint_id,
                lane=device.lane,
                direction=device.direction,
                seq=seq,
                seen_at=datetime.fromtimestamp(seen_wall, UTC),
                token=passage.token,
                decoder=passage.decoder,
                quality=passage.quality if passage.quality is not None else 0.0,
                local_verdict=verdict,
                crop_jpeg=passage.crop_jpeg,
            )
            built.append(event)
            return event

        self.outbox.enqueue(build)
        return built[0] if built else None

    # -- inbound (mqtt-inbound thread) ----------------------------------------------------

    def _on_verdict(self, verdict: Verdict) -> None:
        self.metrics.verdicts.labels(color=verdict.color.value).inc()
        with self._awaiting_lock:
            first_seen = self._awaiting.pop(verdict.event_id, None)
        if first_seen is not None:
            self.metrics.verdict_latency_seconds.observe(time.monotonic() - first_seen)
        self.display.show_verdict(verdict)

    def _on_denylist(self, deny: DenyList) -> None:
        if self._denylist.apply(deny):
            self.metrics.denylist_revision.set(deny.revision)

    def _on_keyring(self, document: KeyringFile) -> None:
        # Merge rather than replace: a published keyring adds and retires keys
        # (not_after); it never silently removes the one this gate was given.
        merged = Keyring(self._keyring.entries())
        for entry in document.keys:
            merged.add(entry)
        if merged.entries() == self._keyring.entries():
            return  # the retained keyring comes again on every reconnect
        self._keyring = merged
        try:
            merged.save(self.config.verify.keyring)
        except OSError as exc:
            log.error("cannot save keyring %s: %s", self.config.verify.keyring, exc)
        log.info("keyring now holds %d keys", len(merged))

    def _on_config(self, update: DeviceConfigUpdate) -> None:
        if update.revision <= self._config_revision:
            return
        try:
            new = apply_update(self._file_config, update)
        except UpdateRefusedError as exc:
            log.error("remote config revision %d refused: %s", update.revision, exc.reason)
            return
        if new.vision != self.config.vision:
            processor = FrameProcessor(new.vision, source=new.device.id)
            with self._processor_lock:
                self._processor = processor
        if new.camera != self.config.camera:
            self.camera.update_controls(new.camera)
        self.config = new
        self._config_revision = update.revision
        self.metrics.config_revision.set(update.revision)
        log.info("remote config revision %d applied", update.revision)

    # -- status --------------------------------------------------------------------------

    def status_passages(self) -> int:
        """Passages the vision path has produced since start."""
        return self._processor.stats.passages

    def local_verdict_ms(self) -> list[float]:
        """Frame-capture-to-local-verdict times of recent passages, in ms (oldest first)."""
        return list(self._local_latency_ms)

    def status(self) -> DeviceStatus:
        """The device status as it would be published now."""
        assert self.outbox is not None
        cam = self.camera.stats()
        box = self.outbox.stats()
        vision = self._processor.stats
        alarms = list(self.outbox.alarms())
        if self.link is not None:
            alarms += self.link.alarms()
        if cam.state is CameraState.LOST:
            alarms.append(ALARM_CAMERA_LOST)
        decode = list(self._decode_ms)
        return DeviceStatus(
            device_id=self.config.device.id,
            checkpoint_id=self.config.device.checkpoint_id,
            state=DeviceState.ONLINE,
            at=datetime.fromtimestamp(self._wall(), UTC),
            software=__version__,
            camera=cam.state,
            fps=round(cam.fps, 2),
            decode_fps=round(1000 / statistics.fmean(decode), 2) if decode else None,
            decode_ms_p50=_percentile(decode, 50),
            decode_ms_p99=_percentile(decode, 99),
            frames_dropped=cam.dropped,
            passages=vision.passages,
            ignored_codes=self._processor.deduper.stats.ignored,
            outbox_depth=box.depth,
            outbox_oldest_s=round(box.oldest_age_s, 1) if box.oldest_age_s is not None else None,
            outbox_capacity=box.capacity,
            cpu_temp_c=read_cpu_temp_c(),
            denylist_revision=self._denylist.revision,
            alarms=sorted(set(alarms)),
        )

    def status_line(self) -> str:
        """One line for ``systemctl status``: camera, decode rate, outbox depth, broker link."""
        cam = self.camera.stats()
        depth = self.outbox.stats().depth if self.outbox is not None else 0
        linked = self.link is not None and self.link.connected
        return (
            f"camera {cam.state.value} {cam.fps:.1f} fps, "
            f"{self._processor.stats.passages} passages, outbox {depth}, "
            f"mqtt {'connected' if linked else 'disconnected'}"
        )

    def _status_loop(self) -> None:
        while not self._stop.wait(self.config.status_interval_s):
            if self.link is None:
                continue
            self.metrics.mqtt_connected.set(1 if self.link.connected else 0)
            self.link.publish_status(self.status())
            if not self._watchdog_unhealthy:
                systemd.status(self.status_line())


def _percentile(values: deque[float] | list[float], pct: int) -> float | None:
    data = sorted(values)
    if not data:
        return None
    index = min(len(data) - 1, max(0, round(pct / 100 * (len(data) - 1))))
    return round(data[index], 2)


def run_agent(config_path: Path) -> int:
    """Load the config file and run the agent until a signal stops it."""
    from edge.config import load_config

    config = load_config(config_path)
    return EdgeAgent(config).run()
