"""Camera frame sources and the capture thread, against real video files and sockets."""

from __future__ import annotations

import itertools
import logging
import random
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from contract.messages import CameraState
from edge.camera import Camera, CameraStats, Frame, LatestSlot, backoff_delay
from edge.config import CameraConfig, ReconnectConfig

FRAMES = 12
SIZE = (160, 120)  # width, height


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll until ``predicate`` holds; fail the test if it never does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout} s")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short MJPEG clip whose frame i is uniformly grey level 20 * i."""
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, SIZE)
    assert writer.isOpened()
    for i in range(FRAMES):
        writer.write(np.full((SIZE[1], SIZE[0], 3), 20 * i, np.uint8))
    writer.release()
    return path


@pytest.fixture
def cameras() -> Iterator[Callable[..., Camera]]:
    """Start cameras and always stop them, even when a test fails."""
    started: list[Camera] = []

    def start(**config: object) -> Camera:
        camera = Camera(CameraConfig.model_validate(config), rng=random.Random(7))
        camera.start()
        started.append(camera)
        return camera

    yield start
    for camera in started:
        camera.stop()


def grey(frame: Frame) -> int:
    return round(float(frame.image.mean()) / 20)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Long enough that a 20 ms poll sees every backoff even on a loaded machine.
BACKOFF = {"initial_s": 0.2, "max_s": 0.8, "jitter": 0.0}


def test_file_source_reads_frames_in_order(video: Path, cameras) -> None:
    camera = cameras(source=f"file:{video}", realtime=True, fps=60)
    taken: list[Frame] = []
    while len(taken) < 5:
        frame = camera.get(timeout=10)
        assert frame is not None
        taken.append(frame)
    assert all(f.image.shape == (SIZE[1], SIZE[0], 3) for f in taken)
    assert [f.index for f in taken] == sorted({f.index for f in taken})
    assert [f.captured_at for f in taken] == sorted(f.captured_at for f in taken)
    assert all(abs(f.wall_time - time.time()) < 60 for f in taken)
    # Frame content follows the clip: index i shows grey 20 * i.
    assert all(grey(f) == f.index % FRAMES for f in taken)
    stats = camera.stats()
    assert stats.accepted["width"] == SIZE[0] and stats.accepted["height"] == SIZE[1]
    assert stats.source == f"file:{video}"


def test_file_loop_keeps_going_without_reconnecting(video: Path, cameras) -> None:
    camera = cameras(source=f"file:{video}", loop=True, realtime=False)
    wait_until(lambda: camera.stats().captured > 3 * FRAMES)
    stats = camera.stats()
    assert stats.attempts == 1
    assert stats.state is CameraState.OK
    frame = camera.get(timeout=5)
    assert frame is not None and grey(frame) == frame.index % FRAMES


def test_end_of_file_reconnects_with_backoff_in_state(
    video: Path, cameras, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.camera")
    camera = cameras(source=f"file:{video}", realtime=False, reconnect=BACKOFF)
    seen: list[CameraStats] = []

    def sample() -> bool:
        seen.append(camera.stats())
        return seen[-1].attempts >= 4

    wait_until(sample)
    assert "end of file" in seen[-1].last_error
    # Each session played the file to its end, so the backoff never grew.
    assert {s.failures for s in seen} == {0}
    assert {s.retry_in_s for s in seen if s.retry_in_s is not None} == {BACKOFF["initial_s"]}
    assert seen[-1].captured >= 3 * FRAMES
    messages = [r.getMessage() for r in caplog.records]
    assert sum("connecting (attempt" in m for m in messages) >= 4
    assert sum("end of file; retrying in 0.2 s" in m for m in messages) >= 3


def test_broken_rtsp_goes_lost_and_retries_with_growing_backoff(
    cameras, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.camera")
    url = f"rtsp://viewer:pw-secret@127.0.0.1:{free_port()}/live"
    camera = cameras(source=url, open_timeout_s=2, read_timeout_s=2, reconnect=BACKOFF)
    seen: list[CameraStats] = []

    def sample() -> bool:
        seen.append(camera.stats())
        return seen[-1].failures >= 4

    wait_until(sample, timeout=60)
    final = seen[-1]
    assert final.state in (CameraState.LOST, CameraState.CONNECTING)
    assert final.captured == 0
    assert final.down_s > 0
    assert camera.alive
    assert camera.get(timeout=0.05) is None
    assert CameraState.LOST in {s.state for s in seen}
    # Doubling from initial_s, capped at max_s (jitter 0).
    delays = sorted({s.retry_in_s for s in seen if s.retry_in_s is not None})
    assert delays == pytest.approx([0.2, 0.4, 0.8])
    assert final.source == "rtsp://viewer:***@127.0.0.1:" + url.split(":")[3]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "pw-secret" not in logged
    assert "could not open" in logged


def test_slow_consumer_drops_frames_and_never_gets_stale_ones(video: Path, cameras) -> None:
    camera = cameras(source=f"file:{video}", loop=True, realtime=False)
    taken: list[Frame] = []
    while len(taken) < 8:
        frame = camera.get(timeout=10)
        assert frame is not None
        taken.append(frame)
        time.sleep(0.03)  # a slow decoder
    indices = [f.index for f in taken]
    assert indices == sorted(set(indices)), "a frame came twice or out of order"
    assert any(b - a > 1 for a, b in itertools.pairwise(indices))
    stats = camera.stats()
    assert stats.dropped > 0
    assert stats.dropped + len(taken) <= stats.captured


def test_stop_releases_everything(video: Path) -> None:
    camera = Camera(CameraConfig(source=f"file:{video}", loop=True, realtime=False))
    camera.start()
    assert camera.get(timeout=10) is not None
    camera.stop()
    assert not camera.alive
    camera.get(timeout=0)  # at most one frame was left in the slot
    assert camera.get(timeout=None) is None, "a stopped camera must not block its reader"


def test_missing_file_is_a_lost_source_not_a_crash(tmp_path: Path, cameras) -> None:
    camera = cameras(source=f"file:{tmp_path / 'gone.mp4'}", reconnect=BACKOFF)
    wait_until(lambda: camera.stats().failures >= 2)
    stats = camera.stats()
    assert "no such file" in stats.last_error
    assert camera.alive


def test_synthetic_source_renders_the_gate(cameras) -> None:
    camera = cameras(source="synthetic:", realtime=False, synthetic={"seconds": 2, "fps": 5})
    frame = camera.get(timeout=60)
    assert frame is not None
    assert frame.image.shape == (720, 1280, 3)
    assert camera.stats().accepted == {"width": 1280.0, "height": 720.0, "fps": 5.0}


# --- pure parts ---------------------------------------------------------------------


def test_latest_slot_keeps_only_the_newest() -> None:
    slot: LatestSlot[int] = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.get(timeout=0) == 4
    assert slot.dropped == 4
    assert slot.get(timeout=0.01) is None, "a taken item must not come back"
    slot.put(5)
    assert slot.get(timeout=0) == 5
    slot.close()
    assert slot.get(timeout=None) is None


def test_latest_slot_wakes_a_waiting_consumer() -> None:
    import threading

    slot: LatestSlot[str] = LatestSlot()
    got: list[str | None] = []
    consumer = threading.Thread(target=lambda: got.append(slot.get(timeout=30)))
    consumer.start()
    slot.put("frame")
    consumer.join(30)
    assert got == ["frame"]


def test_backoff_doubles_to_the_cap() -> None:
    policy = ReconnectConfig(initial_s=1, max_s=10, jitter=0)
    rng = random.Random(1)
    assert [backoff_delay(n, policy, rng) for n in range(7)] == [1, 1, 2, 4, 8, 10, 10]
    assert backoff_delay(10_000, policy, rng) == 10


def test_backoff_jitter_stays_within_its_fraction() -> None:
    policy = ReconnectConfig(initial_s=2, max_s=60, jitter=0.5)
    rng = random.Random(3)
    delays = [backoff_delay(3, policy, rng) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 100
