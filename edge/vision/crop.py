"""A small JPEG of a code's surroundings, so the officer sees the car and driver.

The crop rides along with the scan event over MQTT from a Pi on a mobile
link, so it has a hard size cap: JPEG quality is lowered first, then the
image is shrunk, until it fits.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge.vision.decoders import Quad, quad_bbox

DEFAULT_MAX_BYTES = 24 * 1024
_QUALITIES = (85, 75, 65, 55, 45, 35)
_MIN_SIDE = 32


class CropTooLargeError(ValueError):
    """The crop cannot be brought under the size cap (cap far too small)."""


def crop_window(
    quad: Quad, *, context: float, height: int, width: int
) -> tuple[int, int, int, int]:
    """Pixel window ``(x0, y0, x1, y1)``: ``context`` times the code's box, centred, clipped."""
    x0, y0, x1, y1 = quad_bbox(quad)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0, 1.0) * context / 2
    ix0, iy0 = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
    ix1, iy1 = min(width, math.ceil(cx + half)), min(height, math.ceil(cy + half))
    if ix1 <= ix0 or iy1 <= iy0:
        raise ValueError("mã nằm ngoài khung hình / the code's corners lie outside the frame")
    return ix0, iy0, ix1, iy1


def encode_crop(
    frame: np.ndarray,
    corners: Quad,
    *,
    context: float = 3.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_side: int = 480,
) -> bytes:
    """JPEG bytes (≤ ``max_bytes``) of the region around ``corners`` in ``frame`` (gray or BGR).

    The window is ``context`` times the code's bounding box, clipped to the
    frame, first shrunk so its longest side is at most ``max_side``; then JPEG
    quality steps down and, if that is not enough, the image shrinks by a
    quarter at a time. Raises :class:`CropTooLargeError` if even a tiny image does
    not fit (a misconfigured cap), ``ValueError`` for corners off the frame.
    """
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
        raise ValueError("khung hình phải là ảnh uint8 / frame must be a uint8 image")
    x0, y0, x1, y1 = crop_window(
        corners, context=context, height=frame.shape[0], width=frame.shape[1]
    )
    image = frame[y0:y1, x0:x1]
    longest = max(image.shape[:2])
    if longest > max_side:
        image = _shrink(image, max_side / longest)
    while True:
        for quality in _QUALITIES:
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise ValueError("OpenCV không mã hoá được JPEG / OpenCV failed to encode JPEG")
            if buf.size <= max_bytes:
                return buf.tobytes()
        if max(image.shape[:2]) * 0.75 < _MIN_SIDE:
            raise CropTooLargeError(
                f"ảnh cắt không thể nhỏ hơn {max_bytes} byte / crop cannot fit in {max_bytes} bytes"
            )
        image = _shrink(image, 0.75)


def _shrink(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
