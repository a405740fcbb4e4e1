"""TimeSeriesWriter against a real VictoriaMetrics: write, flush on close, read back with PromQL."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from aggregator.timeseries import PassagePoint, TimeSeriesWriter
from contract.messages import AlertKind, CameraState, Color, DeviceState, DeviceStatus, VerdictCode
from tests.fixtures.mqtt import free_port
from tests.fixtures.tsdb import by_label, export, query, scalar

T0 = datetime(2025, 6, 2, 7, 30, tzinfo=UTC)
AFTER = (T0 + timedelta(minutes=30)).timestamp()

_OUTCOMES = [
    (Color.GREEN, VerdictCode.CLEAR, None),
    (Color.YELLOW, VerdictCode.CLEAR, None),
    (Color.RED, VerdictCode.F0, AlertKind.F0),
    (Color.RED, VerdictCode.F1, AlertKind.F1),
    (Color.INVALID, VerdictCode.FORGED, AlertKind.FORGED),
    (Color.INVALID, VerdictCode.MALFORMED, None),
]


def _passages(rng: random.Random, n: int, at: datetime) -> list[PassagePoint]:
    out = []
    for _ in range(n):
        checkpoint = rng.choice(["hn-ql1a-phapvan", "hn-ql5-gialam", "hn-cau-nhattan"])
        direction = rng.choice(["in", "out"])
        color, code, alert = rng.choices(_OUTCOMES, weights=[60, 25, 3, 5, 4, 3])[0]
        out.append(
            PassagePoint(
                checkpoint_id=checkpoint,
                device_id=f"{checkpoint}-{direction}-1",
                direction=direction,
                color=color.value,
                code=code.value,
                alert_kind=None if alert is None else alert.value,
                seen_at=at - timedelta(seconds=rng.uniform(0.1, 3)),
                received_at=at,
            )
        )
    return out


def test_passage_counts_sum_exactly(victoria_metrics: str) -> None:
    rng = random.Random(4)
    writer = TimeSeriesWriter(victoria_metrics, batch_size=50, flush_interval_ms=100)
    written: list[PassagePoint] = []
    for i in range(40):
        # Several batches share a millisecond: their points must not overwrite each other.
        at = T0 + timedelta(seconds=i // 4)
        batch = _passages(rng, rng.randint(1, 60), at)
        writer.passages(batch)
        written.extend(batch)
    writer.close()

    per_checkpoint = Counter(p.checkpoint_id for p in written)
    got = by_label(
        victoria_metrics,
        "sum by (checkpoint) (sum_over_time(kd_passages_count[1h]))",
        "checkpoint",
        at=AFTER,
    )
    assert got == {k: float(v) for k, v in per_checkpoint.items()}

    per_color = Counter(p.color for p in written)
    got_color = by_label(
        victoria_metrics, "sum by (color) (sum_over_time(kd_passages_count[1h]))", "color", at=AFTER
    )
    assert got_color == {k: float(v) for k, v in per_color.items()}

    inbound = sum(1 for p in written if p.direction == "in")
    assert scalar(
        victoria_metrics,
        'sum(sum_over_time(kd_passages_count{direction="in"}[1h]))',
        at=AFTER,
    ) == float(inbound)

    per_kind = Counter(p.alert_kind for p in written if p.alert_kind is not None)
    got_alerts = by_label(
        victoria_metrics, "sum by (kind) (sum_over_time(kd_alerts_count[1h]))", "kind", at=AFTER
    )
    assert got_alerts == {k: float(v) for k, v in per_kind.items()}

    # InfluxDB keeps one value per series and timestamp: no stamp may repeat.
    for series in export(victoria_metrics, '{__name__=~"kd_passages_count|kd_alerts_count"}'):
        assert len(set(series["timestamps"])) == len(series["timestamps"]), series["metric"]

    stats = writer.stats()
    assert stats.write_errors == 0
    assert stats.points_dropped == 0
    assert stats.points_written == stats.points_queued > 0


def test_two_instances_never_overwrite_each_other(victoria_metrics: str) -> None:
    same = _passages(random.Random(9), 30, T0)
    writers = [
        TimeSeriesWriter(victoria_metrics, instance=name, flush_interval_ms=100)
        for name in ("agg-1", "agg-2")
    ]
    for writer in writers:
        writer.passages(same)
        writer.close()
    per_instance = by_label(
        victoria_metrics,
        "sum by (instance) (sum_over_time(kd_passages_count[1h]))",
        "instance",
        at=AFTER,
    )
    assert per_instance == {"agg-1": 30.0, "agg-2": 30.0}


def test_device_status_fields(victoria_metrics: str) -> None:
    writer = TimeSeriesWriter(victoria_metrics, flush_interval_ms=100)
    received = T0 + timedelta(minutes=1)
    online = DeviceStatus(
        device_id="hn-ql1a-phapvan-in-1",
        checkpoint_id="hn-ql1a-phapvan",
        state=DeviceState.ONLINE,
        at=received + timedelta(seconds=2.5),  # the device clock runs ahead
        camera=CameraState.OK,
        fps=14.5,
        decode_ms_p50=12.0,
        decode_ms_p99=48.0,
        outbox_depth=7,
        alarms=["outbox_high"],
    )
    writer.device_status(online, received)
    offline_at = received + timedelta(minutes=5)
    offline = DeviceStatus(
        device_id="hn-ql1a-phapvan-in-1",
        checkpoint_id="hn-ql1a-phapvan",
        state=DeviceState.OFFLINE,
        at=offline_at,
    )
    writer.device_status(offline, offline_at)
    writer.close()

    sel = '{device="hn-ql1a-phapvan-in-1",checkpoint="hn-ql1a-phapvan"}'
    at_online = (received + timedelta(seconds=30)).timestamp()
    assert scalar(victoria_metrics, f"kd_device_online{sel}", at=at_online) == 1.0
    assert scalar(victoria_metrics, f"kd_device_fps{sel}", at=at_online) == 14.5
    assert scalar(victoria_metrics, f"kd_device_decode_ms_p99{sel}", at=at_online) == 48.0
    assert scalar(victoria_metrics, f"kd_device_outbox_depth{sel}", at=at_online) == 7.0
    assert scalar(victoria_metrics, f"kd_device_camera_ok{sel}", at=at_online) == 1.0
    assert scalar(victoria_metrics, f"kd_device_alarms{sel}", at=at_online) == 1.0
    assert scalar(victoria_metrics, f"kd_device_clock_skew_s{sel}", at=at_online) == 2.5

    later = (offline_at + timedelta(seconds=90)).timestamp()
    assert scalar(victoria_metrics, f"last_over_time(kd_device_online{sel}[1h])", at=later) == 0.0
    age = scalar(
        victoria_metrics, f"time() - last_over_time(kd_device_last_seen_unix{sel}[1h])", at=later
    )
    assert age == 90.0
    # The last will reported no fps: the field is absent, not zero.
    fps = query(victoria_metrics, f"count_over_time(kd_device_fps{sel}[1h])", at=later)
    assert float(fps[0]["value"][1]) == 1.0


def test_ingest_stats(victoria_metrics: str) -> None:
    writer = TimeSeriesWriter(victoria_metrics, flush_interval_ms=100)
    batches = [(120, 0.35, 0), (500, 1.25, 2), (64, 0.08, 1)]
    for i, (size, lag, dead) in enumerate(batches):
        writer.ingest_stats(
            at=T0 + timedelta(milliseconds=i), batch_size=size, lag_s=lag, dead_letters=dead
        )
    writer.close()
    assert scalar(victoria_metrics, "sum_over_time(kd_ingest_batch_size[1h])", at=AFTER) == 684.0
    assert scalar(victoria_metrics, "max_over_time(kd_ingest_lag_s[1h])", at=AFTER) == 1.25
    assert scalar(victoria_metrics, "sum_over_time(kd_ingest_dead_letters[1h])", at=AFTER) == 3.0


def test_tsdb_down_counts_errors_and_never_raises() -> None:
    # Nothing listens on this port: every post is refused.
    writer = TimeSeriesWriter(
        f"http://127.0.0.1:{free_port()}",
        flush_interval_ms=50,
        max_retries=0,
        timeout_ms=500,
    )
    writer.passages(_passages(random.Random(1), 20, T0))
    writer.ingest_stats(at=T0, batch_size=20, lag_s=0.1, dead_letters=0)
    writer.close()
    stats = writer.stats()
    assert stats.write_errors >= 1
    assert stats.points_written == 0
    assert stats.points_dropped == stats.points_queued > 0
    assert stats.last_error is not None
    # Closed: further calls are silent no-ops.
    writer.passages(_passages(random.Random(2), 5, T0))
    assert writer.stats().points_queued == stats.points_queued


def test_failing_tsdb_sheds_new_points_for_a_while() -> None:
    writer = TimeSeriesWriter(
        f"http://127.0.0.1:{free_port()}", flush_interval_ms=20, max_retries=0
    )
    writer.ingest_stats(at=T0, batch_size=1, lag_s=0.0, dead_letters=0)
    deadline = time.monotonic() + 20
    while writer.stats().write_errors == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    failed = writer.stats()
    assert failed.write_errors >= 1
    # During the back-off nothing more is buffered: points are dropped and counted.
    writer.passages(_passages(random.Random(3), 10, T0))
    after = writer.stats()
    assert after.points_queued == failed.points_queued
    assert after.points_dropped >= failed.points_dropped + 1
    writer.close()


def test_disabled_writer_is_a_no_op() -> None:
    writer = TimeSeriesWriter(None)
    assert not writer.enabled
    writer.passages(_passages(random.Random(5), 10, T0))
    writer.device_status(
        DeviceStatus(device_id="d1", checkpoint_id="c1", state=DeviceState.ONLINE, at=T0), T0
    )
    writer.ingest_stats(at=T0, batch_size=10, lag_s=0.0, dead_letters=0)
    writer.close()
    writer.close()
    stats = writer.stats()
    assert not stats.enabled
    assert (stats.points_queued, stats.points_written, stats.write_errors) == (0, 0, 0)
