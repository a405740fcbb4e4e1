"""Local metrics and the health probe, served over real HTTP from real components."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contract.ids import new_event_id
from contract.messages import Direction, ScanEvent
from edge.camera import Camera
from edge.config import CameraConfig
from edge.health import (
    EdgeMetrics,
    Health,
    HealthServer,
    camera_check,
    outbox_check,
    read_cpu_temp_c,
    thread_check,
)
from edge.outbox import Outbox, OutboxConfig


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout} s")
        time.sleep(0.02)


def samples(exposition: str) -> dict[str, float]:
    """``name{labels}`` -> value, parsed with prometheus_client's own parser."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


# --- CPU temperature ---------------------------------------------------------------------


def zone(root: Path, n: int, kind: str, temp: str) -> None:
    path = root / f"thermal_zone{n}"
    path.mkdir(parents=True)
    (path / "type").write_text(kind + "\n")
    (path / "temp").write_text(temp + "\n")


def test_cpu_temperature_prefers_the_cpu_zone(tmp_path: Path) -> None:
    zone(tmp_path, 0, "acpitz", "40000")
    zone(tmp_path, 1, "cpu-thermal", "52345")
    assert read_cpu_temp_c(tmp_path) == pytest.approx(52.345)


def test_cpu_temperature_falls_back_and_skips_garbage(tmp_path: Path) -> None:
    zone(tmp_path, 0, "cpu-thermal", "not a number")
    zone(tmp_path, 1, "acpitz", "41500")
    assert read_cpu_temp_c(tmp_path) == pytest.approx(41.5)
    assert read_cpu_temp_c(tmp_path / "absent") is None


def test_cpu_temperature_on_this_machine_is_plausible() -> None:
    value = read_cpu_temp_c()
    assert value is None or -40.0 < value < 150.0


# --- checks on real components --------------------------------------------------------------


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), 25 * i, np.uint8))
    writer.release()
    return path


@pytest.fixture
def cameras() -> Iterator[Callable[[str], Camera]]:
    started: list[Camera] = []

    def start(source: str) -> Camera:
        camera = Camera(
            CameraConfig(
                source=source,
                loop=True,
                realtime=False,
                reconnect={"initial_s": 0.05, "max_s": 0.1},
            )
        )
        camera.start()
        started.append(camera)
        return camera

    yield start
    for camera in started:
        camera.stop()


def test_camera_check_follows_the_camera(video: Path, tmp_path: Path, cameras) -> None:
    working = cameras(f"file:{video}")
    wait_until(lambda: working.stats().captured > 0)
    assert camera_check(working.stats, down_s=0.05)() is None

    broken = cameras(f"file:{tmp_path / 'missing.avi'}")
    check = camera_check(broken.stats, down_s=0.2)
    wait_until(lambda: broken.stats().down_s > 0.2)
    reason = check()
    assert reason is not None
    assert reason.startswith(("camera lost for", "camera connecting for"))
    assert "no such file" in reason


def test_thread_check() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    check = thread_check("decode", thread.is_alive)
    assert check() is None
    stop.set()
    thread.join()
    assert check() == "decode thread is not running"


def scan(seq: int, crop: bytes | None) -> ScanEvent:
    return ScanEvent(
        event_id=new_event_id(),
        device_id="gate-01",
        checkpoint_id="cp-01",
        lane=1,
        direction=Direction.IN,
        seq=seq,
        seen_at=datetime.now(UTC),
        token="KD1:" + "A" * 120,
        decoder="zxing",
        quality=0.8,
        crop_jpeg=crop,
    )


def test_outbox_check_turns_unhealthy_when_the_disk_is_full(tmp_path: Path) -> None:
    # SQLite's page ceiling gives the same "database or disk is full" a full SD card gives.
    box = Outbox(
        OutboxConfig(
            path=tmp_path / "outbox.sqlite3", max_file_bytes=16 * 4096, overflow_retry_s=60
        )
    )
    try:
        check = outbox_check(box.stats)
        assert check() is None
        crop = b"\xff\xd8" + os.urandom(4000)
        while box.stats().overflow_depth == 0:
            box.enqueue(lambda s: scan(s, crop))
        reason = check()
        assert reason is not None and reason.startswith("outbox cannot write to disk: 1 events")
        metrics = EdgeMetrics(device_id="gate-01", checkpoint_id="cp-01")
        metrics.watch_outbox(box.stats)
        found = samples(metrics.exposition().decode())
        assert found["kiemdich_edge_outbox_overflow_depth"] == 1
        assert found["kiemdich_edge_outbox_write_errors_total"] >= 1
        assert found["kiemdich_edge_outbox_depth"] == box.stats().depth
    finally:
        box.close()


# --- the HTTP endpoints --------------------------------------------------------------------------


@pytest.fixture
def served(
    video: Path, cameras
) -> Iterator[tuple[HealthServer, EdgeMetrics, dict[str, str | None]]]:
    camera = cameras(f"file:{video}")
    wait_until(lambda: camera.stats().captured > 0)
    metrics = EdgeMetrics(device_id="gate-01", checkpoint_id="cp-01", software="0.1.0")
    metrics.watch_camera(camera.stats)
    verdicts: dict[str, str | None] = {"decode": None}
    health = Health(
        {
            "camera": camera_check(camera.stats, down_s=60),
            "decode": lambda: verdicts["decode"],
        }
    )
    server = HealthServer("127.0.0.1", 0, metrics, health)
    server.start()
    yield server, metrics, verdicts
    server.stop()


def test_metrics_endpoint(served) -> None:
    server, metrics, _ = served
    metrics.passages.labels(color="green").inc(3)
    metrics.decode_seconds.observe(0.012)
    metrics.mqtt_connected.set(1)
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert found['kiemdich_edge_passages_total{color="green"}'] == 3
    assert found["kiemdich_edge_decode_seconds_count"] == 1
    assert found["kiemdich_edge_camera_frames_captured_total"] > 0
    assert found['kiemdich_edge_camera_state{state="ok"}'] == 1
    assert found['kiemdich_edge_camera_state{state="lost"}'] == 0
    assert found["kiemdich_edge_mqtt_connected"] == 1
    assert found['kiemdich_edge_info{checkpoint_id="cp-01",device_id="gate-01",software="0.1.0"}']
    cpu = found["kiemdich_edge_cpu_temperature_celsius"]
    assert math.isnan(cpu) == (read_cpu_temp_c() is None)


def test_healthz_reports_reasons_and_503(served) -> None:
    server, _, verdicts = served
    ok = httpx.get(f"{server.url}/healthz", timeout=10)
    assert ok.status_code == 200
    body = ok.json()
    assert body == {
        "healthy": True,
        "checks": {"camera": {"ok": True, "reason": None}, "decode": {"ok": True, "reason": None}},
        "reasons": [],
    }
    verdicts["decode"] = "decode thread is not running"
    sick = httpx.get(f"{server.url}/healthz", timeout=10)
    assert sick.status_code == 503
    assert sick.json()["reasons"] == ["decode: decode thread is not running"]
    assert httpx.get(f"{server.url}/nope", timeout=10).status_code == 404


def test_a_broken_check_is_unhealthy_not_a_500() -> None:
    def broken() -> str | None:
        raise OSError("sensor gone")

    report = Health({"broken": broken, "fine": lambda: None}).report()
    assert not report.healthy
    assert report.checks == {"broken": "check failed: OSError: sensor gone", "fine": None}
    assert json.loads(report.to_json())["reasons"] == ["broken: check failed: OSError: sensor gone"]


def test_two_devices_in_one_process_have_separate_registries() -> None:
    first = EdgeMetrics(device_id="gate-01", checkpoint_id="cp-01")
    second = EdgeMetrics(device_id="gate-02", checkpoint_id="cp-01")
    first.passages.labels(color="red").inc()
    second.gauge("kiemdich_edge_test_gauge", "A test gauge", lambda: 4.5)
    assert samples(first.exposition().decode())['kiemdich_edge_passages_total{color="red"}'] == 1
    assert 'kiemdich_edge_passages_total{color="red"}' not in samples(second.exposition().decode())
    assert samples(second.exposition().decode())["kiemdich_edge_test_gauge"] == 4.5
