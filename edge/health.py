"""The device's local metrics (Prometheus) and health probe.

``/metrics`` serves a private :class:`~prometheus_client.CollectorRegistry`
(nothing process-global, so two agents in one test process do not collide).
Counters that other components already keep (camera, outbox, MQTT link) are
read at scrape time through small collectors instead of being mirrored.

``/healthz`` answers 200 or 503 with a JSON body listing every check and the
reason of each failure: a watchdog or load balancer needs the status code, a
person needs the reasons. Healthy means: the camera delivered frames within
``camera_down_s``, the decode thread is alive, and the outbox writes to disk.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contract.messages import CameraState

if TYPE_CHECKING:
    from edge.camera import CameraStats
    from edge.outbox import OutboxStats

log = logging.getLogger(__name__)

THERMAL_ROOT = Path("/sys/class/thermal")
# Zone types that are the SoC/CPU on a Raspberry Pi, other ARM boards and x86.
_CPU_ZONE_TYPES = ("cpu-thermal", "cpu_thermal", "soc_thermal", "x86_pkg_temp", "cpu")


def read_cpu_temp_c(root: Path = THERMAL_ROOT) -> float | None:
    """CPU temperature in °C from the kernel's thermal zones, or None where there is none.

    Prefers a zone whose type names the CPU/SoC; otherwise the first readable zone.
    """
    try:
        zones = sorted(root.glob("thermal_zone*"))
    except OSError:
        return None
    readings: list[tuple[bool, float]] = []
    for zone in zones:
        try:
            kind = (zone / "type").read_text().strip().lower()
            millidegrees = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        readings.append((kind.startswith(_CPU_ZONE_TYPES), millidegrees / 1000.0))
    if not readings:
        return None
    preferred = [celsius for is_cpu, celsius in readings if is_cpu]
    return preferred[0] if preferred else readings[0][1]


# --- health checks ---------------------------------------------------------------

Check = Callable[[], str | None]  # None when fine, otherwise why it is not


def camera_check(stats: Callable[[], CameraStats], down_s: float) -> Check:
    """Unhealthy when the camera delivered no frame for more than ``down_s`` seconds."""

    def check() -> str | None:
        current = stats()
        if current.state is CameraState.OK or current.down_s <= down_s:
            return None
        error = f": {current.last_error}" if current.last_error else ""
        return (
            f"camera {current.state.value} for {current.down_s:.0f} s (limit {down_s:g} s){error}"
        )

    return check


def thread_check(name: str, alive: Callable[[], bool]) -> Check:
    """Unhealthy when the named thread is not running."""

    def check() -> str | None:
        return None if alive() else f"{name} thread is not running"

    return check


def outbox_check(stats: Callable[[], OutboxStats]) -> Check:
    """Unhealthy while the outbox cannot write to disk (events wait in its memory overflow)."""

    def check() -> str | None:
        current = stats()
        if current.overflow_depth == 0:
            return None
        return (
            f"outbox cannot write to disk: {current.overflow_depth} events held in memory "
            f"({current.write_errors} write errors)"
        )

    return check


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The result of running every check."""

    healthy: bool
    checks: dict[str, str | None]

    @property
    def reasons(self) -> list[str]:
        """Why the device is unhealthy, one line per failed check."""
        return [f"{name}: {reason}" for name, reason in self.checks.items() if reason is not None]

    def to_json(self) -> str:
        """The ``/healthz`` body."""
        return json.dumps(
            {
                "healthy": self.healthy,
                "checks": {
                    name: {"ok": reason is None, "reason": reason}
                    for name, reason in self.checks.items()
                },
                "reasons": self.reasons,
            },
            ensure_ascii=False,
        )


class Health:
    """A named set of checks."""

    def __init__(self, checks: Mapping[str, Check] | None = None) -> None:
        self._checks: dict[str, Check] = dict(checks or {})
        self._lock = threading.Lock()

    def add(self, name: str, check: Check) -> None:
        """Register (or replace) a check."""
        with self._lock:
            self._checks[name] = check

    def report(self) -> HealthReport:
        """Run every check now."""
        with self._lock:
            checks = dict(self._checks)
        results: dict[str, str | None] = {}
        for name, check in checks.items():
            try:
                results[name] = check()
            # A probe that breaks must turn into an unhealthy answer, not a 500
            # that a watchdog cannot tell from a dead process.
            except Exception as exc:  # noqa: BLE001
                results[name] = f"check failed: {type(exc).__name__}: {exc}"
        return HealthReport(all(r is None for r in results.values()), results)


# --- metrics -----------------------------------------------------------------------


class _CameraCollector(Collector):
    def __init__(self, stats: Callable[[], CameraStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        s = self._stats()
        yield CounterMetricFamily(
            "kiemdich_edge_camera_frames_captured", "Frames read from the camera", value=s.captured
        )
        yield CounterMetricFamily(
            "kiemdich_edge_camera_frames_dropped",
            "Frames replaced before the decoder took them (decoder slower than the camera)",
            value=s.dropped,
        )
        yield CounterMetricFamily(
            "kiemdich_edge_camera_connect_attempts",
            "Attempts to open the camera",
            value=s.attempts,
        )
        yield GaugeMetricFamily(
            "kiemdich_edge_camera_fps", "Frames per second measured at capture", value=s.fps
        )
        yield GaugeMetricFamily(
            "kiemdich_edge_camera_down_seconds",
            "Seconds since the camera last delivered frames (0 while it does)",
            value=s.down_s,
        )
        state = GaugeMetricFamily(
            "kiemdich_edge_camera_state", "1 for the camera's current state", labels=["state"]
        )
        for candidate in CameraState:
            state.add_metric([candidate.value], 1.0 if candidate is s.state else 0.0)
        yield state


class _OutboxCollector(Collector):
    def __init__(self, stats: Callable[[], OutboxStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        s = self._stats()
        yield GaugeMetricFamily(
            "kiemdich_edge_outbox_depth", "Events waiting for the broker's PUBACK", value=s.depth
        )
        yield GaugeMetricFamily(
            "kiemdich_edge_outbox_oldest_seconds",
            "Age of the oldest unacknowledged event (0 when empty)",
            value=s.oldest_age_s or 0.0,
        )
        yield GaugeMetricFamily(
            "kiemdich_edge_outbox_payload_bytes", "Payload bytes held", value=s.payload_bytes
        )
        yield GaugeMetricFamily(
            "kiemdich_edge_outbox_overflow_depth",
            "Events held in memory because the disk refused writes",
            value=s.overflow_depth,
        )
        for name, doc, value in (
            ("enqueued", "Events stored", s.enqueued),
            ("acked", "Events acknowledged by the broker and removed", s.acked),
            ("dropped", "Events dropped by the capacity policy", s.dropped),
            ("crops_stripped", "JPEG crops removed by the capacity policy", s.crops_stripped),
            ("write_errors", "Failed disk writes", s.write_errors),
        ):
            yield CounterMetricFamily(f"kiemdich_edge_outbox_{name}", doc, value=value)


class EdgeMetrics:
    """Every metric of one edge device, in a private registry.

    Instruments the agent updates directly are attributes; components that
    keep their own counters are attached with :meth:`watch_camera`,
    :meth:`watch_outbox` and :meth:`gauge`.
    """

    def __init__(self, *, device_id: str, checkpoint_id: str, software: str = "") -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        Info("kiemdich_edge", "Device identity", registry=r).info(
            {"device_id": device_id, "checkpoint_id": checkpoint_id, "software": software}
        )
        self.decode_seconds = Histogram(
            "kiemdich_edge_decode_seconds",
            "Vision time per decoded frame",
            buckets=(0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.frames_processed = Counter(
            "kiemdich_edge_frames_processed", "Frames given to the vision pipeline", registry=r
        )
        self.passages = Counter(
            "kiemdich_edge_passages",
            "Passages decoded, by the colour shown locally",
            ["color"],
            registry=r,
        )
        self.ignored_codes = Counter(
            "kiemdich_edge_ignored_codes", "QR codes that are not pass tokens", registry=r
        )
        self.verdicts = Counter(
            "kiemdich_edge_verdicts",
            "Aggregator verdicts received, by colour",
            ["color"],
            registry=r,
        )
        self.verdict_latency_seconds = Histogram(
            "kiemdich_edge_verdict_latency_seconds",
            "From the first frame showing a code to the aggregator's verdict",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "kiemdich_edge_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.denylist_revision = Gauge(
            "kiemdich_edge_denylist_revision", "Deny-list revision held (-1: none)", registry=r
        )
        self.denylist_revision.set(-1)
        self.config_revision = Gauge(
            "kiemdich_edge_config_revision",
            "Remote config revision applied (-1: none)",
            registry=r,
        )
        self.config_revision.set(-1)
        cpu = Gauge(
            "kiemdich_edge_cpu_temperature_celsius",
            "CPU temperature (NaN where the board has no sensor)",
            registry=r,
        )
        cpu.set_function(lambda: _or_nan(read_cpu_temp_c()))

    def watch_camera(self, stats: Callable[[], CameraStats]) -> None:
        """Expose the camera's counters and state, read at each scrape."""
        self.registry.register(_CameraCollector(stats))

    def watch_outbox(self, stats: Callable[[], OutboxStats]) -> None:
        """Expose the outbox's depth, age and counters, read at each scrape."""
        self.registry.register(_OutboxCollector(stats))

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> Gauge:
        """A gauge whose value is read from ``read`` at each scrape."""
        gauge = Gauge(name, documentation, registry=self.registry)
        gauge.set_function(read)
        return gauge

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


# --- HTTP server -----------------------------------------------------------------------


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], metrics: EdgeMetrics, health: Health) -> None:
        super().__init__(address, _Handler)
        self.metrics = metrics
        self.health = health


class _Handler(BaseHTTPRequestHandler):
    server: _MetricsServer
    server_version = "kiemdich-edge"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, self.server.metrics.exposition())
        elif path == "/healthz":
            report = self.server.health.report()
            status = HTTPStatus.OK if report.healthy else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, "application/json", report.to_json().encode())
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("metrics http: " + format, *args)


class HealthServer:
    """``/metrics`` and ``/healthz`` on one port, served from a background thread."""

    def __init__(self, host: str, port: int, metrics: EdgeMetrics, health: Health) -> None:
        self._server = _MetricsServer((host, port), metrics, health)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base address, with the real port when port 0 was asked for."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )
        self._thread.start()
        log.info("metrics at %s/metrics, health at %s/healthz", self.url, self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout)
            self._thread = None
        self._server.server_close()
