"""Frame sources behind one interface, and the capture thread that feeds the decoder.

A gate camera must never show the decoder an old frame: a car moves on. The
capture thread reads as fast as the source delivers and keeps only the newest
frame in a one-slot mailbox (:class:`LatestSlot`); a decoder that falls behind
skips frames (counted as dropped) instead of building a queue of stale ones.

When a source fails (camera unplugged, RTSP stream gone, end of a video file)
the state goes ``lost`` and the thread reopens it with exponential backoff and
jitter (``connecting`` during each attempt), logging every attempt, until
:meth:`Camera.stop`. The thread owns the capture object: OpenCV captures are
not safe to touch from two threads, so live control changes are handed over
and applied between two reads.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Generic, NamedTuple, Protocol, TypeVar

import cv2
import numpy as np

from contract.messages import CameraState
from edge.config import CameraConfig, ReconnectConfig, SourceKind

if TYPE_CHECKING:
    from simulators.gatecam.source import Frame as GateFrame
    from simulators.gatecam.source import GateCamera

log = logging.getLogger(__name__)

T = TypeVar("T")

# V4L2's exposure_absolute counts 100 µs units; the config speaks µs.
_V4L2_EXPOSURE_UNIT_US = 100.0
# V4L2 menu values for V4L2_CID_EXPOSURE_AUTO, which OpenCV's V4L2 backend
# passes through unchanged for CAP_PROP_AUTO_EXPOSURE.
_V4L2_EXPOSURE_MANUAL = 1
_V4L2_EXPOSURE_AUTO = 3
_FPS_WINDOW_S = 5.0
_DEFAULT_FILE_FPS = 25.0


class Frame(NamedTuple):
    """One captured frame, as handed to the decode thread."""

    index: int  # 0, 1, 2, ... over the camera's life, across reconnects
    captured_at: float  # time.monotonic() when the read returned
    wall_time: float  # time.time() at the same moment
    image: np.ndarray


class LatestSlot(Generic[T]):
    """A one-item mailbox that keeps only the newest item.

    ``put`` never blocks: it replaces an item nobody took (counted in
    ``dropped``). ``get`` takes the item, so the same item is never returned
    twice, and an item that was replaced is never returned at all.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.put_count = 0
        self.dropped = 0

    def put(self, item: T) -> None:
        """Offer the newest item, replacing one not yet taken."""
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self.put_count += 1
            self._cond.notify()

    def get(self, timeout: float | None = None) -> T | None:
        """Take the newest item, waiting up to ``timeout`` s; None on timeout or when closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake every waiter; later ``get`` calls return what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class SourceError(Exception):
    """A source could not be opened or read; the message says why (no secrets)."""


Settings = dict[str, float | str]


class FrameSource(Protocol):
    """What the capture thread needs from a source. Only that thread calls these."""

    description: str
    # Seconds between frames when the source must be paced to look live
    # (files, the simulator); None for real cameras, which pace themselves.
    pace_s: float | None
    end_reason: str

    def open(self) -> Settings:
        """Start delivering frames; returns the settings the device accepted."""
        ...

    def read(self) -> np.ndarray | None:
        """The next frame, or None when the stream ended (``end_reason`` says why)."""
        ...

    def apply_controls(self, config: CameraConfig) -> Settings:
        """Change exposure, gain and focus on an open source; returns what was accepted."""
        ...

    def close(self) -> None:
        """Release the device or stream (idempotent)."""
        ...


def _fourcc_text(value: float) -> str:
    code = int(value)
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() else str(code)


class OpenCvSource:
    """V4L2 cameras, RTSP/HTTP streams and video files through ``cv2.VideoCapture``."""

    def __init__(self, config: CameraConfig) -> None:
        self._config = config
        self._spec = config.spec
        self.description = config.redacted_source
        self.pace_s: float | None = None
        self.end_reason = ""
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> Settings:
        """Open the capture and apply the configured settings."""
        self.close()
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"không mở được / could not open {self.description}")
        self._cap = cap
        if self._spec.kind is SourceKind.V4L2:
            return self._configure_v4l2(cap)
        accepted = self._readback(cap, ("width", "height", "fps"))
        if self._spec.kind is SourceKind.FILE and self._config.realtime:
            native = float(accepted.get("fps", 0.0))
            fps = self._config.fps or (native if 0.0 < native <= 240.0 else _DEFAULT_FILE_FPS)
            self.pace_s = 1.0 / fps
        return accepted

    def _capture(self) -> cv2.VideoCapture:
        kind, target = self._spec.kind, self._spec.target
        try:
            if kind is SourceKind.V4L2:
                return cv2.VideoCapture(target, cv2.CAP_V4L2)
            if kind is SourceKind.FILE:
                if not Path(str(target)).is_file():
                    raise SourceError(f"không có tệp / no such file: {target}")
                return cv2.VideoCapture(str(target), cv2.CAP_FFMPEG)
            if kind is SourceKind.RTSP:
                # OpenCV reads its FFmpeg options from the environment at each
                # open; RTSP over UDP smears frames on a lossy link, so TCP is
                # the default unless the operator set options themselves.
                os.environ.setdefault(
                    "OPENCV_FFMPEG_CAPTURE_OPTIONS", f"rtsp_transport;{self._config.rtsp_transport}"
                )
            timeouts = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(self._config.open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int(self._config.read_timeout_s * 1000),
            ]
            return cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, timeouts)
        except cv2.error as exc:
            raise SourceError(f"OpenCV: {exc.err}") from None

    def _configure_v4l2(self, cap: cv2.VideoCapture) -> Settings:
        cfg = self._config
        asked: dict[str, float] = {}
        # The pixel format first: it decides which sizes and rates exist.
        if cfg.fourcc is not None:
            self._set(cap, "fourcc", cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*cfg.fourcc))
        for name, prop, value in (
            ("width", cv2.CAP_PROP_FRAME_WIDTH, cfg.width),
            ("height", cv2.CAP_PROP_FRAME_HEIGHT, cfg.height),
            ("fps", cv2.CAP_PROP_FPS, cfg.fps),
            ("buffer_size", cv2.CAP_PROP_BUFFERSIZE, cfg.buffer_size),
        ):
            if value is not None:
                self._set(cap, name, prop, float(value))
                asked[name] = float(value)
        accepted = self._readback(cap, ("width", "height", "fps", "fourcc", "buffer_size"))
        for name, value in asked.items():
            got = accepted.get(name)
            if isinstance(got, float) and abs(got - value) > 0.01 * max(1.0, value):
                log.warning(
                    "camera %s: driver set %s=%g (asked %g)", self.description, name, got, value
                )
        if cfg.fourcc is not None and accepted.get("fourcc") != cfg.fourcc:
            log.warning(
                "camera %s: driver chose pixel format %s (asked %s)",
                self.description,
                accepted.get("fourcc"),
                cfg.fourcc,
            )
        accepted.update(self._controls(cap, cfg))
        return accepted

    def _set(self, cap: cv2.VideoCapture, name: str, prop: int, value: float) -> bool:
        ok = bool(cap.set(prop, value))
        if not ok:
            log.warning("camera %s: driver refused %s=%g", self.description, name, value)
        return ok

    def _controls(self, cap: cv2.VideoCapture, cfg: CameraConfig) -> Settings:
        accepted: Settings = {}
        if cfg.exposure == "auto":
            self._set(cap, "auto_exposure", cv2.CAP_PROP_AUTO_EXPOSURE, _V4L2_EXPOSURE_AUTO)
            accepted["auto_exposure"] = cap.get(cv2.CAP_PROP_AUTO_EXPOSURE)
        elif cfg.exposure is not None:
            self._set(cap, "auto_exposure", cv2.CAP_PROP_AUTO_EXPOSURE, _V4L2_EXPOSURE_MANUAL)
            self._set(cap, "exposure", cv2.CAP_PROP_EXPOSURE, cfg.exposure / _V4L2_EXPOSURE_UNIT_US)
            accepted["exposure_us"] = cap.get(cv2.CAP_PROP_EXPOSURE) * _V4L2_EXPOSURE_UNIT_US
        if cfg.gain is not None:
            self._set(cap, "gain", cv2.CAP_PROP_GAIN, cfg.gain)
            accepted["gain"] = cap.get(cv2.CAP_PROP_GAIN)
        if cfg.focus == "auto":
            self._set(cap, "autofocus", cv2.CAP_PROP_AUTOFOCUS, 1)
            accepted["autofocus"] = cap.get(cv2.CAP_PROP_AUTOFOCUS)
        elif cfg.focus is not None:
            self._set(cap, "autofocus", cv2.CAP_PROP_AUTOFOCUS, 0)
            self._set(cap, "focus", cv2.CAP_PROP_FOCUS, cfg.focus)
            accepted["focus"] = cap.get(cv2.CAP_PROP_FOCUS)
        return accepted

    @staticmethod
    def _readback(cap: cv2.VideoCapture, names: tuple[str, ...]) -> Settings:
        props = {
            "width": cv2.CAP_PROP_FRAME_WIDTH,
            "height": cv2.CAP_PROP_FRAME_HEIGHT,
            "fps": cv2.CAP_PROP_FPS,
            "fourcc": cv2.CAP_PROP_FOURCC,
            "buffer_size": cv2.CAP_PROP_BUFFERSIZE,
        }
        accepted: Settings = {}
        for name in names:
            value = float(cap.get(props[name]))
            if value <= 0:
                continue  # the backend does not report it
            accepted[name] = _fourcc_text(value) if name == "fourcc" else value
        return accepted

    def apply_controls(self, config: CameraConfig) -> Settings:
        """Apply exposure, gain and focus (V4L2 only) while the camera runs."""
        self._config = config
        if self._cap is None or self._spec.kind is not SourceKind.V4L2:
            return {}
        return self._controls(self._cap, config)

    def read(self) -> np.ndarray | None:
        """The next frame; at the end of a file, starts over when ``loop`` is set."""
        if self._cap is None:
            self.end_reason = "chưa mở / not open"
            return None
        ok, image = self._cap.read()
        if ok:
            return image
        if self._spec.kind is SourceKind.FILE:
            if self._config.loop and self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                ok, image = self._cap.read()
                if ok:
                    return image
            self.end_reason = "hết tệp / end of file"
        else:
            self.end_reason = "mất luồng hoặc quá thời gian đọc / stream lost or read timed out"
        return None

    def close(self) -> None:
        """Release the capture."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class SyntheticSource:
    """The simulated gate camera from :mod:`simulators.gatecam` (imported only when used).

    The simulator paces itself like a sensor (dropping frames a slow reader
    missed), so ``pace_s`` stays None.
    """

    def __init__(self, config: CameraConfig) -> None:
        self._config = config
        self.description = config.redacted_source
        self.pace_s: float | None = None
        self.end_reason = ""
        self._camera: GateCamera | None = None
        self._frames: Iterator[GateFrame] | None = None

    def open(self) -> Settings:
        """Build (or load) the scenario and start rendering from its first frame."""
        from pydantic import ValidationError

        from simulators.gatecam.scene import Camera as SimCamera
        from simulators.gatecam.scene import Scenario, TrafficParams, build_scenario
        from simulators.gatecam.source import GateCamera

        options = self._config.synthetic
        if options.scenario is not None:
            try:
                scenario = Scenario.model_validate_json(options.scenario.read_bytes())
            except OSError as exc:
                raise SourceError(
                    f"không đọc được kịch bản / cannot read scenario: {exc}"
                ) from None
            except ValidationError as exc:
                raise SourceError(
                    f"kịch bản hỏng / invalid scenario {options.scenario}: {exc.error_count()} "
                    "errors"
                ) from None
        else:
            params = TrafficParams(
                seconds=options.seconds,
                seed=options.seed,
                camera=SimCamera(resolution=options.resolution, fps=options.fps),
                cars_per_minute=options.cars_per_minute,
            )
            scenario = build_scenario(params)
        self._camera = GateCamera(
            scenario, realtime=self._config.realtime, drop_late=True, loop=self._config.loop
        )
        self._frames = iter(self._camera)
        width, height = self._camera.size
        return {"width": float(width), "height": float(height), "fps": self._camera.fps}

    def read(self) -> np.ndarray | None:
        """The next rendered frame; None once the clip is over."""
        if self._frames is None:
            self.end_reason = "chưa mở / not open"
            return None
        frame = next(self._frames, None)
        if frame is None:
            self.end_reason = "hết kịch bản / end of scenario"
            return None
        return frame.image

    def apply_controls(self, config: CameraConfig) -> Settings:
        """The simulator has no sensor controls."""
        self._config = config
        return {}

    def close(self) -> None:
        """Stop rendering."""
        if self._camera is not None:
            self._camera.stop()
        self._camera = None
        self._frames = None


def make_source(config: CameraConfig) -> FrameSource:
    """The source for ``config.source``."""
    if config.spec.kind is SourceKind.SYNTHETIC:
        return SyntheticSource(config)
    return OpenCvSource(config)


def backoff_delay(failures: int, policy: ReconnectConfig, rng: random.Random) -> float:
    """Seconds to wait after ``failures`` consecutive failed attempts (0 after a clean end).

    Doubles from ``initial_s`` up to ``max_s``; ``jitter`` takes up to that
    fraction off at random, so gates that lost the same RTSP server do not
    all retry at the same instant.
    """
    base = min(policy.max_s, policy.initial_s * 2.0 ** min(max(failures, 1) - 1, 32))
    return base * (1.0 - policy.jitter * rng.random())


@dataclass(frozen=True, slots=True)
class CameraStats:
    """A snapshot of the capture thread's state and counters."""

    state: CameraState
    state_age_s: float  # since the state last changed
    down_s: float  # since frames stopped flowing (0 while ok)
    captured: int
    dropped: int
    fps: float  # measured over the last few seconds
    attempts: int  # connection attempts since start
    failures: int  # consecutive failed attempts: the backoff grows with it
    retry_in_s: float | None  # backoff chosen after the last loss
    last_error: str
    source: str  # credentials redacted
    accepted: Settings = field(default_factory=dict)


class Camera:
    """The capture thread of one camera.

    ``get(timeout)`` hands the decode thread the newest frame as a
    :class:`Frame` (index, monotonic capture time, wall time, image). ``wall``
    is the device's wall clock (seconds since the epoch): the agent passes its
    own, so one device has one notion of "now" (and a test can skew it).
    """

    def __init__(
        self,
        config: CameraConfig,
        *,
        source: FrameSource | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._source = make_source(config) if source is None else source
        self._rng = random.Random() if rng is None else rng
        self._clock = clock
        self._wall = wall
        self._slot: LatestSlot[Frame] = LatestSlot()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        now = clock()
        self._state = CameraState.CONNECTING
        self._state_since = now
        self._down_since: float | None = now
        self._attempts = 0
        self._failures = 0
        self._retry_in: float | None = None
        self._last_error = ""
        self._accepted: Settings = {}
        self._captured = 0
        self._times: deque[float] = deque(maxlen=1024)
        self._pending: CameraConfig | None = None

    @property
    def description(self) -> str:
        """The source, with credentials redacted."""
        return self._source.description

    @property
    def alive(self) -> bool:
        """True while the capture thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the capture thread."""
        if self._thread is not None:
            raise RuntimeError("camera already started")
        self._thread = threading.Thread(target=self._run, name="camera-capture", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop capturing and release the source (waits up to ``timeout`` s)."""
        self._stop.set()
        self._slot.close()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error(
                    "camera %s: capture thread did not stop in %g s", self.description, timeout
                )

    def get(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet taken, waiting up to ``timeout`` s; None if none came."""
        return self._slot.get(timeout)

    def update_controls(self, config: CameraConfig) -> None:
        """Apply a new exposure/gain/focus (e.g. from a remote update) between two reads."""
        with self._lock:
            self._pending = config

    def stats(self) -> CameraStats:
        """Current state and counters."""
        now = self._clock()
        with self._lock:
            recent = [t for t in self._times if now - t <= _FPS_WINDOW_S]
            span = recent[-1] - recent[0] if len(recent) > 1 else 0.0
            fps = (len(recent) - 1) / span if span > 0 else 0.0
            return CameraStats(
                state=self._state,
                state_age_s=now - self._state_since,
                down_s=0.0 if self._down_since is None else now - self._down_since,
                captured=self._captured,
                dropped=self._slot.dropped,
                fps=fps,
                attempts=self._attempts,
                failures=self._failures,
                retry_in_s=self._retry_in,
                last_error=self._last_error,
                source=self._source.description,
                accepted=dict(self._accepted),
            )

    # -- capture thread --------------------------------------------------------

    def _set_state(self, state: CameraState, error: str = "") -> None:
        with self._lock:
            now = self._clock()
            if state is not self._state:
                self._state = state
                self._state_since = now
            if state is CameraState.OK:
                self._down_since = None
                self._retry_in = None
            elif self._down_since is None:
                self._down_since = now
            if error:
                self._last_error = error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    self._attempts += 1
                    attempt, failures = self._attempts, self._failures
                self._set_state(CameraState.CONNECTING)
                log.info(
                    "camera %s: connecting (attempt %d, %d failed in a row)",
                    self.description,
                    attempt,
                    failures,
                )
                reason = self._session()
                if self._stop.is_set():
                    break
                with self._lock:
                    delay = backoff_delay(self._failures, self._config.reconnect, self._rng)
                    self._retry_in = delay
                self._set_state(CameraState.LOST, reason)
                log.warning("camera %s: %s; retrying in %.3g s", self.description, reason, delay)
                self._stop.wait(delay)
        finally:
            self._source.close()
            self._slot.close()

    def _session(self) -> str:
        """Open the source and capture until it ends; returns why it ended."""
        try:
            accepted = self._source.open()
        except SourceError as exc:
            with self._lock:
                self._failures += 1
            return str(exc)
        with self._lock:
            self._accepted = accepted
        log.info("camera %s: open, driver accepted %s", self.description, accepted)
        got = 0
        try:
            next_due = self._clock()
            while not self._stop.is_set():
                self._apply_pending()
                try:
                    image = self._source.read()
                except (cv2.error, SourceError) as exc:
                    return f"lỗi đọc / read error: {exc}"
                if image is None:
                    return self._source.end_reason or "hết luồng / stream ended"
                if got == 0:
                    with self._lock:
                        self._failures = 0
                    self._set_state(CameraState.OK)
                    log.info("camera %s: receiving frames", self.description)
                got += 1
                self._deliver(image)
                if self._source.pace_s is not None:
                    next_due = self._pace(next_due, self._source.pace_s)
            return "dừng / stopped"
        finally:
            self._source.close()
            if got == 0:
                with self._lock:
                    self._failures += 1

    def _deliver(self, image: np.ndarray) -> None:
        now, wall = self._clock(), self._wall()
        with self._lock:
            index = self._captured
            self._captured += 1
            self._times.append(now)
        self._slot.put(Frame(index, now, wall, image))

    def _pace(self, due: float, interval: float) -> float:
        due += interval
        lag = due - self._clock()
        if lag > 0:
            self._stop.wait(lag)
            return due
        # Fell behind (slow render, loaded machine): restart the schedule
        # rather than bursting frames to catch up.
        return self._clock() if lag < -interval else due

    def _apply_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        self._config = pending
        accepted = self._source.apply_controls(pending)
        with self._lock:
            self._accepted.update(accepted)
        log.info("camera %s: controls updated, driver accepted %s", self.description, accepted)
