"""Metrics to the time-series store (Influx line protocol, v2 write API).

One :class:`TimeSeriesWriter` per process owns one batching ``influxdb-client``
write API: points are buffered and posted by its own background thread every
``flush_interval_ms`` (with jitter, so many aggregators do not post in step) or
every ``batch_size`` points, and :meth:`TimeSeriesWriter.close` flushes what is
buffered. VictoriaMetrics (tests, docker-compose) and InfluxDB 2.x accept the
same writes at ``/api/v2/write``.

The TSDB is for dashboards; the SQL store is the record. A write error is
logged and counted, never raised into ingestion; while the TSDB is failing,
new points are dropped and counted for a back-off period instead of piling up
in memory behind a retrying thread.

Measurements (tags carry ids and vocabularies only, never citizen data).
VictoriaMetrics names each field's series ``<measurement>_<field>``; those
PromQL names are listed here.

``kd_passages`` tags ``checkpoint, device, direction, color, code`` (+ ``instance``)
    ``kd_passages_count``: passages committed in one batch, one point per tag
    combination per batch, stamped with the batch's latest ``received_at``.
    A point is a *delta*, not a running counter, so totals are
    ``sum by (checkpoint) (sum_over_time(kd_passages_count[1h]))`` and a rate
    is ``sum_over_time(...[1m]) / 60`` (not ``rate()``). Why deltas per batch
    rather than one point per passage with ``count=1``: InfluxDB keeps one
    value per series and timestamp (a later write overwrites), so per-passage
    points in the same millisecond would be lost there, and a batch of 500
    passages becomes a few dozen points instead of 500. Each series' stamps
    are kept strictly increasing within a process (bumped by 1 ms on a tie)
    and ``instance`` separates processes, so no two points ever collide and
    the sums are exact on both stores. Counted by arrival time: a backlog a
    gate drains after an outage shows when it arrives (``kd_ingest_lag_s``
    shows how late); the SQL rollups count by the time seen at the gate.
``kd_alerts`` tags ``checkpoint, device, kind`` (+ ``instance``)
    ``kd_alerts_count``: alerts raised per batch, a delta like passages.
``kd_device`` tags ``checkpoint, device`` (+ ``instance``), one point per status message
    ``kd_device_online`` (1/0), ``kd_device_fps``, ``kd_device_decode_fps``,
    ``kd_device_decode_ms_p50``, ``kd_device_decode_ms_p99``,
    ``kd_device_frames_dropped``, ``kd_device_passages``,
    ``kd_device_ignored_codes``, ``kd_device_outbox_depth``,
    ``kd_device_outbox_oldest_s``, ``kd_device_cpu_temp_c``,
    ``kd_device_camera_ok`` (1/0), ``kd_device_alarms`` (how many raised),
    ``kd_device_clock_skew_s`` (device clock minus ours, at receipt; positive =
    device ahead) and ``kd_device_last_seen_unix`` (when we received it). The
    last-seen *age* is computed at query time:
    ``time() - last_over_time(kd_device_last_seen_unix[1d])``. Fields the
    device did not report are left out rather than written as zero.
``kd_ingest`` tags ``instance`` when set, one point per committed batch
    ``kd_ingest_batch_size``, ``kd_ingest_lag_s`` (receipt minus edge time,
    worst in the batch) and ``kd_ingest_dead_letters`` (new dead letters since
    the previous call: a delta, summed with ``sum_over_time``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import WriteApi, WriteOptions
from reactivex.scheduler import ThreadPoolScheduler

from contract.messages import CameraState, DeviceState, DeviceStatus

log = logging.getLogger(__name__)

PASSAGES = "kd_passages"
ALERTS = "kd_alerts"
DEVICE = "kd_device"
INGEST = "kd_ingest"

_BACKOFF_MIN_S = 5.0
_BACKOFF_MAX_S = 60.0


@dataclass(frozen=True, slots=True)
class PassagePoint:
    """One committed passage, as the time series sees it (no citizen data)."""

    checkpoint_id: str
    device_id: str
    direction: str  # "in" | "out"
    color: str  # contract.messages.Color value
    code: str  # contract.messages.VerdictCode value
    alert_kind: str | None  # contract.messages.AlertKind value or None
    seen_at: datetime  # aware UTC
    received_at: datetime  # aware UTC


@dataclass(frozen=True, slots=True)
class TimeSeriesStats:
    """What the writer did since it started."""

    enabled: bool
    points_queued: int
    points_written: int
    points_dropped: int
    write_errors: int
    last_error: str | None


def _ms(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError(f"naive datetime refused: {at!r}")
    return int(at.timestamp() * 1000)


class TimeSeriesWriter:
    """The process's one batching writer to an Influx-protocol TSDB.

    ``url`` None disables it: every method is then a cheap no-op, for tests and
    embedded use without a TSDB. ``instance`` (e.g. the aggregator's MQTT
    client id; keep it stable across restarts) becomes a tag on every point so
    processes sharing the load never write the same series.
    """

    def __init__(
        self,
        url: str | None,
        *,
        org: str = "kiemdich",
        bucket: str = "kiemdich",
        token: str = "",
        batch_size: int = 5000,
        flush_interval_ms: int = 1000,
        jitter_interval_ms: int = 200,
        max_retries: int = 2,
        retry_interval_ms: int = 1000,
        timeout_ms: int = 5000,
        close_wait_ms: int = 30_000,
        instance: str | None = None,
    ) -> None:
        self._bucket = bucket
        self._org = org
        self._instance = instance
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._last_ms: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self._queued = 0
        self._written = 0
        self._dropped = 0
        self._errors = 0
        self._last_error: str | None = None
        self._down_until = 0.0
        self._backoff_s = _BACKOFF_MIN_S
        self._client: InfluxDBClient | None = None
        self._write_api: WriteApi | None = None
        self._scheduler: ThreadPoolScheduler | None = None
        if url is None:
            return
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=timeout_ms)
        # Its own thread: influxdb-client's default scheduler is one module-level
        # pool shared by every writer in the process.
        self._scheduler = ThreadPoolScheduler(max_workers=1)
        self._write_api = self._client.write_api(
            write_options=WriteOptions(
                batch_size=batch_size,
                flush_interval=flush_interval_ms,
                jitter_interval=jitter_interval_ms,
                retry_interval=retry_interval_ms,
                max_retries=max_retries,
                max_retry_delay=4 * retry_interval_ms,
                max_retry_time=(max_retries + 1) * (4 * retry_interval_ms + timeout_ms),
                exponential_base=2,
                max_close_wait=close_wait_ms,
                write_scheduler=self._scheduler,
            ),
            success_callback=self._on_success,
            error_callback=self._on_error,
        )

    @property
    def enabled(self) -> bool:
        """True when points go somewhere."""
        return self._write_api is not None

    def stats(self) -> TimeSeriesStats:
        """Counters since start (written/errors are updated by the writer thread)."""
        with self._lock:
            return TimeSeriesStats(
                enabled=self.enabled,
                points_queued=self._queued,
                points_written=self._written,
                points_dropped=self._dropped,
                write_errors=self._errors,
                last_error=self._last_error,
            )

    # --- public writes -----------------------------------------------------

    def passages(self, points: Sequence[PassagePoint]) -> None:
        """Count one committed batch of passages (and the alerts they raised)."""
        if self._write_api is None or not points:
            return
        passages: dict[tuple[str, str, str, str, str], tuple[int, int]] = {}
        alerts: dict[tuple[str, str, str], tuple[int, int]] = {}
        for p in points:
            at = _ms(p.received_at)
            key = (p.checkpoint_id, p.device_id, p.direction, p.color, p.code)
            count, latest = passages.get(key, (0, at))
            passages[key] = (count + 1, max(latest, at))
            if p.alert_kind is not None:
                akey = (p.checkpoint_id, p.device_id, p.alert_kind)
                count, latest = alerts.get(akey, (0, at))
                alerts[akey] = (count + 1, max(latest, at))
        out: list[Point] = []
        for (checkpoint, device, direction, color, code), (count, at) in passages.items():
            tags = {
                "checkpoint": checkpoint,
                "device": device,
                "direction": direction,
                "color": color,
                "code": code,
            }
            out.append(self._point(PASSAGES, tags, {"count": count}, at))
        for (checkpoint, device, kind), (count, at) in alerts.items():
            tags = {"checkpoint": checkpoint, "device": device, "kind": kind}
            out.append(self._point(ALERTS, tags, {"count": count}, at))
        self._send(out)

    def device_status(self, status: DeviceStatus, received_at: datetime) -> None:
        """Record one device status message (also the offline last will)."""
        if self._write_api is None:
            return
        fields: dict[str, int | float] = {
            "online": 1 if status.state is DeviceState.ONLINE else 0,
            "clock_skew_s": (status.at - received_at).total_seconds(),
            "last_seen_unix": received_at.timestamp(),
            "alarms": len(status.alarms),
        }
        floats = {
            "fps": status.fps,
            "decode_fps": status.decode_fps,
            "decode_ms_p50": status.decode_ms_p50,
            "decode_ms_p99": status.decode_ms_p99,
            "outbox_oldest_s": status.outbox_oldest_s,
            "cpu_temp_c": status.cpu_temp_c,
        }
        ints = {
            "frames_dropped": status.frames_dropped,
            "passages": status.passages,
            "ignored_codes": status.ignored_codes,
            "outbox_depth": status.outbox_depth,
        }
        # Fixed types per field: InfluxDB refuses a field that changes type.
        fields.update({k: float(v) for k, v in floats.items() if v is not None})
        fields.update({k: int(v) for k, v in ints.items() if v is not None})
        if status.camera is not None:
            fields["camera_ok"] = 1 if status.camera is CameraState.OK else 0
        tags = {"checkpoint": status.checkpoint_id, "device": status.device_id}
        self._send([self._point(DEVICE, tags, fields, _ms(received_at))])

    def ingest_stats(
        self, *, at: datetime, batch_size: int, lag_s: float, dead_letters: int
    ) -> None:
        """Record one committed ingest batch (``dead_letters``: new since the last call)."""
        if self._write_api is None:
            return
        fields: dict[str, int | float] = {
            "batch_size": int(batch_size),
            "lag_s": float(lag_s),
            "dead_letters": int(dead_letters),
        }
        self._send([self._point(INGEST, {}, fields, _ms(at))])

    def close(self) -> None:
        """Flush buffered points (waits up to ``close_wait_ms``) and release the client."""
        with self._write_lock:
            write_api, client, scheduler = self._write_api, self._client, self._scheduler
            self._write_api = self._client = self._scheduler = None
        if write_api is not None:
            write_api.close()
        if scheduler is not None:
            scheduler.executor.shutdown(wait=False)
        if client is not None:
            client.close()

    # --- internals ---------------------------------------------------------

    def _point(
        self, measurement: str, tags: dict[str, str], fields: dict[str, int | float], at_ms: int
    ) -> Point:
        if self._instance is not None:
            tags = {**tags, "instance": self._instance}
        series_key = (measurement, tuple(sorted(tags.items())))
        with self._lock:
            # A later point in the same millisecond would overwrite on InfluxDB.
            previous = self._last_ms.get(series_key)
            if previous is not None and at_ms <= previous:
                at_ms = previous + 1
            self._last_ms[series_key] = at_ms
        point = Point(measurement)
        for name, value in tags.items():
            point.tag(name, value)
        for name, field_value in fields.items():
            point.field(name, field_value)
        return point.time(at_ms, WritePrecision.MS)

    def _send(self, points: list[Point]) -> None:
        if not points:
            return
        now = time.monotonic()
        with self._lock:
            if now < self._down_until:
                self._dropped += len(points)
                return
        # Only hands the points to the buffer (no I/O); the lock keeps close()
        # from tearing the buffer down mid-call.
        with self._write_lock:
            if self._write_api is None:
                return
            self._write_api.write(bucket=self._bucket, org=self._org, record=points)
        with self._lock:
            self._queued += len(points)

    def _on_success(self, _conf: tuple[str, str, str], data: str | bytes) -> None:
        lines = data.count(b"\n" if isinstance(data, bytes) else "\n") + 1
        with self._lock:
            self._written += lines
            self._backoff_s = _BACKOFF_MIN_S

    def _on_error(
        self, _conf: tuple[str, str, str], data: str | bytes, exception: Exception
    ) -> None:
        lines = data.count(b"\n" if isinstance(data, bytes) else "\n") + 1
        with self._lock:
            self._errors += 1
            self._dropped += lines
            self._last_error = f"{type(exception).__name__}: {exception}"[:300]
            self._down_until = time.monotonic() + self._backoff_s
            hold = self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, _BACKOFF_MAX_S)
        log.warning(
            "TSDB write failed (%d points dropped; new points dropped for %.0f s): %s",
            lines,
            hold,
            exception,
        )
