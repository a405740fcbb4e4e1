"""The synthetic gate camera as a frame source: live iterator or video file.

``GateCamera(scenario)`` yields :class:`Frame` tuples ``(index, timestamp,
image)`` like a capture loop on a real camera. With ``realtime=True`` it
paces to the camera's fps and, like a sensor, does not wait for a slow
reader: frames whose time has passed are dropped (``drop_late``) and the
gap shows in ``index``. Without it, frames come as fast as they render,
which is what tests and benchmarks want.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from simulators.gatecam.render import Renderer
from simulators.gatecam.scene import CarTruth, Scenario, ground_truth

# What OpenCV's bundled FFmpeg (opencv-python-headless) can write here:
# H.264 ("avc1") needs an encoder the wheel lacks, MPEG-4 part 2 and MJPEG work.
FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".avi": "MJPG"}
PREPARE_AHEAD_S = 1.5  # in real time, build cars this far ahead on a worker thread


class Frame(NamedTuple):
    """One captured frame."""

    index: int  # frame number in the clip; gaps mean dropped frames
    timestamp: float  # Unix seconds at which the frame was (nominally) exposed
    image: np.ndarray  # (height, width, 3) BGR uint8


class VideoError(RuntimeError):
    """A video file could not be written or read."""


class GateCamera:
    """A live synthetic camera over ``scenario``.

    ``realtime``: pace frames to ``scenario.camera.fps`` on ``clock``
    (monotonic seconds) using ``sleep``; otherwise render as fast as possible.
    ``drop_late``: in real time, skip frames whose time passed while the
    reader was busy (a live camera does not queue). ``loop``: start the clip
    again at its end, forever, with indices and timestamps still increasing.
    ``start_time``: Unix time of frame 0 (default: when iteration starts).
    Iterating again restarts at frame 0; :meth:`stop` ends iteration from
    another thread.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        realtime: bool = False,
        drop_late: bool = True,
        loop: bool = False,
        start_time: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.scenario = scenario
        self.realtime = realtime
        self.drop_late = drop_late
        self.loop = loop
        self.start_time = start_time
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._renderer: Renderer | None = None
        self._truth: list[CarTruth] | None = None
        self._stop = threading.Event()
        self.frames_rendered = 0
        self.frames_dropped = 0
        self.render_seconds = 0.0

    @property
    def fps(self) -> float:
        """Frames per second of the camera."""
        return self.scenario.camera.fps

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of each frame."""
        return self.scenario.camera.size

    @property
    def truth(self) -> list[CarTruth]:
        """Ground truth of one pass through the clip (see :func:`ground_truth`)."""
        if self._truth is None:
            self._truth = ground_truth(self.scenario)
        return self._truth

    @property
    def renderer(self) -> Renderer:
        """The renderer behind this camera (built on first use)."""
        if self._renderer is None:
            self._renderer = Renderer(self.scenario)
        return self._renderer

    def stop(self) -> None:
        """Make a running iteration end before its next frame."""
        self._stop.set()

    def __iter__(self) -> Iterator[Frame]:
        self._stop.clear()
        renderer = self.renderer
        n = self.scenario.n_frames
        period = 1.0 / self.fps
        ahead = round(PREPARE_AHEAD_S * self.fps)
        wall0 = self._wall_clock() if self.start_time is None else self.start_time
        t0 = self._clock()
        i = 0
        try:
            while not self._stop.is_set() and (self.loop or i < n):
                if self.realtime:
                    renderer.prefetch(i % n, i % n + ahead)
                    i = self._wait_for(i, t0, period)
                    if not self.loop and i >= n:
                        break
                started = time.perf_counter()
                image = renderer.render(i % n)
                self.render_seconds += time.perf_counter() - started
                self.frames_rendered += 1
                yield Frame(i, wall0 + i * period, image)
                i += 1
        finally:
            renderer.close()

    def _wait_for(self, i: int, t0: float, period: float) -> int:
        """Sleep until frame ``i`` is due, or skip to the frame being exposed now if late."""
        now = self._clock()
        due = t0 + i * period
        if now < due:
            self._sleep(due - now)
            return i
        current = math.floor((now - t0) / period + 1e-9)
        if self.drop_late and current > i:
            self.frames_dropped += current - i
            return current
        return i


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What :func:`write_video` wrote and how long rendering took."""

    path: Path
    frames: int
    fps: float
    width: int
    height: int
    fourcc: str
    render_ms_per_frame: float
    total_seconds: float


def fourcc_for(path: str | Path) -> str:
    """The codec used for a file name: mp4v for .mp4, MJPG for .avi."""
    suffix = Path(path).suffix.lower()
    try:
        return FOURCC_BY_SUFFIX[suffix]
    except KeyError:
        known = ", ".join(sorted(FOURCC_BY_SUFFIX))
        raise VideoError(
            f"không hỗ trợ đuôi tệp {suffix or '(trống)'}; dùng {known} / "
            f"unsupported video extension {suffix or '(none)'}; use {known}"
        ) from None


def write_video(
    scenario: Scenario,
    path: str | Path,
    *,
    fourcc: str | None = None,
    on_frame: Callable[[Frame], None] | None = None,
) -> VideoInfo:
    """Render the whole clip into a video file with OpenCV's VideoWriter.

    Raises :class:`VideoError` if the writer cannot open the file; a partly
    written file is removed so nothing half-made is left behind.
    """
    path = Path(path)
    codec = fourcc or fourcc_for(path)
    width, height = scenario.camera.size
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter.fourcc(*codec), scenario.camera.fps, (width, height)
    )
    if not writer.isOpened():
        raise VideoError(
            f"không mở được bộ ghi video {codec} cho {path} / "
            f"cannot open a {codec} video writer for {path}"
        )
    camera = GateCamera(scenario)
    started = time.perf_counter()
    try:
        for frame in camera:
            writer.write(frame.image)
            if on_frame is not None:
                on_frame(frame)
    except BaseException:
        writer.release()
        path.unlink(missing_ok=True)
        raise
    writer.release()
    frames = camera.frames_rendered
    return VideoInfo(
        path=path,
        frames=frames,
        fps=scenario.camera.fps,
        width=width,
        height=height,
        fourcc=codec,
        render_ms_per_frame=1000.0 * camera.render_seconds / max(1, frames),
        total_seconds=time.perf_counter() - started,
    )


def read_video(path: str | Path) -> Iterator[np.ndarray]:
    """BGR frames of a video file, in order (what a decoder test would read back)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoError(f"không đọc được video {path} / cannot read video {path}")
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return
            yield image
    finally:
        capture.release()
