"""Cheap per-frame work that decides whether, where and at what size to decode.

A gate camera mostly films an empty lane, and a full-resolution decode is the
one expensive step, so each frame goes through:

1. :class:`MotionGate` — differencing a tiny grayscale copy of the ROI against
   a running background; still frames are skipped (with a periodic look, so
   a car parked at the barrier is still read).
2. :class:`CascadeDecoder` — decode the ROI downscaled; if the decoder located
   a code it could not read, retry just that spot at full resolution; if
   nothing was located, sweep the whole ROI at full resolution every few
   frames (codes too small to be located downscaled).

While motion lasts every frame is tried: with motion blur one sharp frame is
all it takes. Everything here is plain state machines, no threads, no clocks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import zxingcpp

from edge.vision.config import DecodeConfig, MotionConfig, RoiConfig
from edge.vision.decoders import Decoder, Detection, Quad, Scan, ZxingDecoder, quad_bbox

CascadePath = Literal["small", "candidate", "sweep", "full", "none"]
Window = tuple[int, int, int, int]


def to_gray(frame: np.ndarray) -> np.ndarray:
    """A 2-D uint8 grayscale view/copy of a gray or BGR frame."""
    if frame.dtype != np.uint8:
        raise ValueError("khung hình phải là uint8 / frame must be uint8")
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    raise ValueError(
        f"khung hình phải là ảnh xám hoặc BGR, nhận {frame.shape} / "
        f"frame must be gray (H, W) or BGR (H, W, 3), got {frame.shape}"
    )


def roi_view(frame: np.ndarray, roi: RoiConfig) -> tuple[np.ndarray, int, int]:
    """The ROI of ``frame`` as a view (no copy) and its top-left offset ``(dx, dy)``."""
    x0, y0, x1, y1 = roi.to_pixels(frame.shape[0], frame.shape[1])
    return frame[y0:y1, x0:x1], x0, y0


# --- motion --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MotionVerdict:
    """Whether to decode this frame, and why."""

    decode: bool
    moving: bool
    changed_fraction: float
    reason: Literal["motion", "hold", "idle", "first", "still", "disabled"]


class MotionGate:
    """Frame differencing against a running background on a tiny grayscale copy.

    Costs a few hundredths of a millisecond per 1080p frame: the motion image
    is a strided subsample (one channel of a BGR frame serves as luma), lightly
    blurred so sensor noise does not count as motion.
    """

    def __init__(self, config: MotionConfig, roi: RoiConfig | None = None) -> None:
        self._cfg = config
        self._roi = roi or RoiConfig()
        self._background: np.ndarray | None = None
        self._since_motion = math.inf
        self._still_count = 0

    def reset(self) -> None:
        """Forget the background (e.g. after the camera reconnects)."""
        self._background = None
        self._since_motion = math.inf
        self._still_count = 0

    def _small(self, frame: np.ndarray) -> np.ndarray:
        view, _, _ = roi_view(frame, self._roi)
        step = max(1, view.shape[1] // self._cfg.width)
        sub = view[::step, ::step, 1] if view.ndim == 3 else view[::step, ::step]
        return cv2.blur(np.ascontiguousarray(sub), (3, 3))

    def update(self, frame: np.ndarray) -> MotionVerdict:
        """Feed one frame (gray or BGR, full size) and say whether to decode it."""
        cfg = self._cfg
        if not cfg.enabled:
            return MotionVerdict(True, True, 1.0, "disabled")
        small = self._small(frame)
        bg = self._background
        if bg is None or bg.shape != small.shape:
            self._background = small.astype(np.float32)
            self._since_motion = math.inf
            self._still_count = 0
            return MotionVerdict(True, False, 0.0, "first")
        diff = cv2.absdiff(small, cv2.convertScaleAbs(bg))
        changed = cv2.countNonZero(cv2.compare(diff, cfg.pixel_threshold, cv2.CMP_GT))
        fraction = changed / diff.size
        cv2.accumulateWeighted(small, bg, cfg.learning_rate)
        if fraction >= cfg.min_fraction:
            self._since_motion = 0
            self._still_count = 0
            return MotionVerdict(True, True, fraction, "motion")
        self._since_motion += 1
        if self._since_motion <= cfg.hold_frames:
            return MotionVerdict(True, False, fraction, "hold")
        self._still_count += 1
        if cfg.idle_every and self._still_count % cfg.idle_every == 0:
            return MotionVerdict(True, False, fraction, "idle")
        return MotionVerdict(False, False, fraction, "still")


# --- locating unread codes ----------------------------------------------------------


_LOCATE_OPTS = {
    "formats": zxingcpp.BarcodeFormat.QRCode,
    "try_rotate": False,
    "try_downscale": False,
    "try_invert": False,
    "return_errors": True,
}


def locate_codes(gray: np.ndarray) -> list[Quad]:
    """Where zxing's detector finds a QR symbol, read or not (errors kept).

    The decoder-independent "a code is probably here" signal for decoders
    that cannot tell (zbar); :meth:`ZxingDecoder.scan` gives it for free.
    Measured alternative: a contour-hierarchy finder-pattern check cost
    ~40 ms on a textured 1080p frame, over ten times a zxing pass.
    """
    quads: list[Quad] = []
    for b in zxingcpp.read_barcodes(gray, **_LOCATE_OPTS):
        p = b.position
        quads.append(
            (
                (float(p.top_left.x), float(p.top_left.y)),
                (float(p.top_right.x), float(p.top_right.y)),
                (float(p.bottom_right.x), float(p.bottom_right.y)),
                (float(p.bottom_left.x), float(p.bottom_left.y)),
            )
        )
    return quads


def _scan(decoder: Decoder, gray: np.ndarray) -> Scan:
    if isinstance(decoder, ZxingDecoder):
        return decoder.scan(gray)
    found = decoder.decode(gray)
    return Scan(found, [] if found else locate_codes(gray))


def candidate_window(
    quad: Quad, *, scale: float, pad: float, height: int, width: int
) -> Window | None:
    """Full-resolution pixel window ``(x0, y0, x1, y1)`` around a quad found at 1/scale.

    ``pad`` widens the window by that fraction of the code's side on every
    side (the downscaled corners are approximate). None if the window is empty.
    """
    x0, y0, x1, y1 = (v * scale for v in quad_bbox(quad))
    margin = pad * max(x1 - x0, y1 - y0) + 2 * scale
    ix0, iy0 = max(0, math.floor(x0 - margin)), max(0, math.floor(y0 - margin))
    ix1, iy1 = min(width, math.ceil(x1 + margin)), min(height, math.ceil(y1 + margin))
    if ix1 - ix0 < 8 or iy1 - iy0 < 8:
        return None
    return ix0, iy0, ix1, iy1


def merge_windows(windows: Iterable[Window]) -> list[Window]:
    """Merge overlapping pixel windows into their unions, largest first.

    zxing reports one unread candidate per plausible finder-pattern triple,
    so one damaged or blurred code yields several overlapping windows; one
    decode of their union is cheaper than one per window.
    """
    merged: list[Window] = []
    for win in windows:
        x0, y0, x1, y1 = win
        changed = True
        while changed:
            changed = False
            for other in merged:
                ox0, oy0, ox1, oy1 = other
                if x0 < ox1 and ox0 < x1 and y0 < oy1 and oy0 < y1:
                    merged.remove(other)
                    x0, y0, x1, y1 = min(x0, ox0), min(y0, oy0), max(x1, ox1), max(y1, oy1)
                    changed = True
                    break
        merged.append((x0, y0, x1, y1))
    merged.sort(key=lambda w: (w[2] - w[0]) * (w[3] - w[1]), reverse=True)
    return merged


# --- cascade ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CascadeResult:
    """Detections (in the coordinates of the image given) and which step found them."""

    detections: list[Detection]
    path: CascadePath
    full_res_pixels: int


class CascadeDecoder:
    """Downscaled-first decoding with full-resolution fallbacks.

    State: how many decoded-but-empty frames in a row, to space out the full
    sweeps; :meth:`reset_sweep` restarts the count (the lane went still).
    """

    def __init__(self, decoder: Decoder, config: DecodeConfig) -> None:
        self.decoder = decoder
        self._cfg = config
        self._misses = 0

    def reset_sweep(self) -> None:
        """Restart the sweep cadence (a new car)."""
        self._misses = 0

    def decode(self, gray: np.ndarray) -> CascadeResult:
        """Decode ``gray`` (usually the ROI at full resolution) by the cheapest path that reads."""
        factor = self._cfg.downscale
        height, width = gray.shape
        if factor == 1 or min(height, width) < 64 * factor:
            found = self.decoder.decode(gray)
            return CascadeResult(found, "full" if found else "none", gray.size)
        # Cropping to a multiple of the factor keeps the scale exact and lets
        # OpenCV take its fast integer-ratio INTER_AREA path.
        even = gray[: height - height % factor, : width - width % factor]
        small = cv2.resize(even, (width // factor, height // factor), interpolation=cv2.INTER_AREA)
        scan = _scan(self.decoder, small)
        if scan.detections:
            self._misses = 0
            return CascadeResult([d.mapped(scale=factor) for d in scan.detections], "small", 0)
        candidates: list[Window] = []
        for quad in scan.unread:
            window = candidate_window(
                quad, scale=factor, pad=self._cfg.candidate_pad, height=height, width=width
            )
            if window is not None:
                candidates.append(window)
        windows = merge_windows(candidates)
        found: list[Detection] = []
        pixels = 0
        for x0, y0, x1, y1 in windows[: self._cfg.max_candidates]:
            pixels += (x1 - x0) * (y1 - y0)
            crop = gray[y0:y1, x0:x1]
            found.extend(d.mapped(dx=x0, dy=y0) for d in self.decoder.decode(crop))
        if found:
            self._misses = 0
            return CascadeResult(found, "candidate", pixels)
        self._misses += 1
        every = self._cfg.sweep_every
        if every and self._misses % every == 0:
            found = self.decoder.decode(gray)
            pixels += gray.size
            if found:
                self._misses = 0
                return CascadeResult(found, "sweep", pixels)
        return CascadeResult([], "none", pixels)
