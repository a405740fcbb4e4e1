"""QR decoders behind one small interface.

Two libraries read QR codes well enough for a gate: zxing-cpp (fast, robust to
noise) and zbar via pyzbar (the long-standing baseline). Both are wrapped so the
rest of the edge agent sees the same :class:`Detection` whichever is configured,
and so no payload — however hostile — makes a decoder raise.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Literal, Protocol

import cv2
import numpy as np
import zxingcpp

Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]
DecoderName = Literal["zxing", "zbar"]

# A code side (in pixels) at which we call the size part of quality perfect:
# a version-6 pass token then has ~5 px per module, plenty for any decoder.
_FULL_QUALITY_SIDE_PX = 240.0


@dataclass(frozen=True, slots=True)
class Detection:
    """One decoded QR symbol.

    ``corners`` are in the pixel coordinates of the image given to the decoder
    (top-left, top-right, bottom-right, bottom-left of the symbol where the
    library tells orientation). ``is_text`` is False when the payload is not
    valid text; ``text`` is then a printable, lossless ``\\xNN``-escaped
    rendering of ``raw`` for logs, never something to act on.
    """

    text: str
    raw: bytes
    is_text: bool
    corners: Quad
    decoder: str
    quality: float | None = None

    def bbox(self) -> tuple[float, float, float, float]:
        """Axis-aligned box ``(x0, y0, x1, y1)`` around the corners."""
        return quad_bbox(self.corners)

    def mapped(self, *, scale: float = 1.0, dx: float = 0.0, dy: float = 0.0) -> Detection:
        """The same detection with corners mapped by ``p * scale + (dx, dy)``.

        Used to bring corners found on a downscaled or cropped view back to the
        frame's own coordinates.
        """
        corners = map_quad(self.corners, scale=scale, dx=dx, dy=dy)
        return Detection(self.text, self.raw, self.is_text, corners, self.decoder, self.quality)

    def with_quality(self, quality: float | None) -> Detection:
        """The same detection with another quality score."""
        return Detection(self.text, self.raw, self.is_text, self.corners, self.decoder, quality)


class Decoder(Protocol):
    """Anything that finds and decodes QR codes in a grayscale image."""

    name: str

    def decode(self, gray: np.ndarray) -> list[Detection]:
        """Decode every QR symbol in ``gray`` (2-D uint8)."""
        ...


def quad_bbox(quad: Quad) -> tuple[float, float, float, float]:
    """Axis-aligned bounding box ``(x0, y0, x1, y1)`` of a quadrilateral."""
    xs = [p[0] for p in quad]
    ys = [p[1] for p in quad]
    return min(xs), min(ys), max(xs), max(ys)


def map_quad(quad: Quad, *, scale: float = 1.0, dx: float = 0.0, dy: float = 0.0) -> Quad:
    """Map every corner by ``p * scale + (dx, dy)``."""
    a, b, c, d = ((x * scale + dx, y * scale + dy) for x, y in quad)
    return (a, b, c, d)


def _check_gray(gray: np.ndarray) -> np.ndarray:
    if not isinstance(gray, np.ndarray) or gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(
            "decoder input must be a 2-D uint8 grayscale array / "
            "ảnh vào phải là mảng xám 2 chiều kiểu uint8"
        )
    return gray


def _is_clean_text(text: str) -> bool:
    # Control characters (NUL, C1 controls…) are what binary payloads turn into
    # once a library forces them through Latin-1; real text has none beyond
    # ordinary whitespace.
    return all(ch in "\t\n\r" or unicodedata.category(ch) != "Cc" for ch in text)


def escape_bytes(raw: bytes) -> str:
    """Printable, lossless rendering of bytes: ASCII kept, everything else as ``\\xNN``."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in raw)


def text_from_zbar(data: bytes) -> tuple[str, bool]:
    """Turn zbar's output bytes into ``(text, is_text)``.

    zbar always converts QR byte segments to UTF-8 after guessing their charset
    (UTF-8, Shift-JIS or Latin-1), so binary payloads come out as Latin-1
    mojibake full of control characters, and some zbar builds encode UTF-8
    input twice (``"Ä\\x91"`` for ``"đ"``). A pass token is base45 — plain ASCII
    in alphanumeric mode — and passes through untouched; the repairs only
    matter for foreign codes, which must be reported, not crash the gate.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return escape_bytes(data), False
    if not text.isascii():
        try:
            repaired = text.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            repaired = text
        text = repaired
    if not _is_clean_text(text):
        try:
            # Undo zbar's Latin-1 -> UTF-8 conversion to show the symbol's own bytes.
            return escape_bytes(text.encode("latin-1")), False
        except UnicodeEncodeError:
            return escape_bytes(data), False
    return text, True


def text_from_zxing(raw: bytes, text: str, binary: bool) -> tuple[str, bool]:
    """Turn a zxing result into ``(text, is_text)``.

    zxing honours ECI and the QR default charset itself, so its text is used
    as-is unless it flagged the content as binary or it holds control
    characters.
    """
    if binary or not _is_clean_text(text):
        return escape_bytes(raw), False
    return text, True


def estimate_quality(gray: np.ndarray, corners: Quad) -> float:
    """A 0..1 score of how well a code was seen: sharpness x sqrt(size) x contrast.

    Sharpness is the share of the code's pixels that sit near black or white:
    a crisp code is bimodal, while blur (and noise) fills the middle grey
    levels. Size saturates at a 240 px side, contrast at a 96-level spread
    between the 5th and 95th percentiles. Cheap: it reads only the code's
    bounding box. Used to keep the best sighting of a passage, not to gate.
    """
    x0, y0, x1, y1 = quad_bbox(corners)
    h, w = gray.shape[:2]
    ix0, iy0 = max(0, int(x0)), max(0, int(y0))
    ix1, iy1 = min(w, math.ceil(x1)), min(h, math.ceil(y1))
    if ix1 - ix0 < 4 or iy1 - iy0 < 4:
        return 0.0
    patch = gray[iy0:iy1, ix0:ix1]
    lo, hi = np.percentile(patch, (5, 95))
    span = float(hi - lo)
    if span < 1.0:
        return 0.0
    norm = (patch.astype(np.float32) - float(lo)) / span
    middle = float(np.count_nonzero((norm > 0.25) & (norm < 0.75))) / norm.size
    sharp = max(0.0, 1.0 - 2.0 * middle)
    side = math.sqrt(max(0.0, (x1 - x0) * (y1 - y0)))
    size = min(1.0, side / _FULL_QUALITY_SIDE_PX)
    contrast = min(1.0, span / 96.0)
    return round(sharp * math.sqrt(size) * contrast, 3)


def _zxing_quad(position: zxingcpp.Position) -> Quad:
    p = position
    return (
        (float(p.top_left.x), float(p.top_left.y)),
        (float(p.top_right.x), float(p.top_right.y)),
        (float(p.bottom_right.x), float(p.bottom_right.y)),
        (float(p.bottom_left.x), float(p.bottom_left.y)),
    )


@dataclass(frozen=True, slots=True)
class Scan:
    """What one pass of a decoder saw: decoded symbols and located-but-unread ones."""

    detections: list[Detection]
    unread: list[Quad]


class ZxingDecoder:
    """zxing-cpp restricted to QR codes.

    Defaults were measured on 1080p gate frames (``benchmarks/bench_decode.py``):
    rotation and inversion searches cost time and find nothing a gate needs
    (QR finder patterns are rotation invariant; pass codes are dark on light),
    and the internal downscale pyramid is replaced by our own
    downscale-first gating.
    """

    name = "zxing"

    def __init__(
        self,
        *,
        try_downscale: bool = False,
        try_invert: bool = False,
        binarizer: zxingcpp.Binarizer = zxingcpp.Binarizer.LocalAverage,
        with_quality: bool = True,
    ) -> None:
        self._opts = {
            "formats": zxingcpp.BarcodeFormat.QRCode,
            "try_rotate": False,
            "try_downscale": try_downscale,
            "try_invert": try_invert,
            "binarizer": binarizer,
            "text_mode": zxingcpp.TextMode.Plain,
        }
        self._with_quality = with_quality

    def decode(self, gray: np.ndarray) -> list[Detection]:
        """Decode every QR symbol in ``gray``."""
        return self.scan(gray).detections

    def scan(self, gray: np.ndarray) -> Scan:
        """Decode, and also report symbols zxing located but could not read.

        An unread symbol (found finder patterns, failed error correction) is
        the cheap "a code is probably here" signal the gating uses to retry
        at full resolution.
        """
        gray = _check_gray(gray)
        found = zxingcpp.read_barcodes(gray, return_errors=True, **self._opts)
        detections: list[Detection] = []
        unread: list[Quad] = []
        for b in found:
            quad = _zxing_quad(b.position)
            if not b.valid:
                unread.append(quad)
                continue
            raw = bytes(b.bytes)
            text, is_text = text_from_zxing(
                raw, b.text, b.content_type == zxingcpp.ContentType.Binary
            )
            quality = estimate_quality(gray, quad) if self._with_quality else None
            detections.append(Detection(text, raw, is_text, quad, self.name, quality))
        return Scan(detections, unread)


class ZbarDecoder:
    """zbar (through pyzbar) restricted to QR codes: the long-standing baseline."""

    name = "zbar"

    def __init__(self, *, with_quality: bool = True) -> None:
        # Imported here: pyzbar loads libzbar at import, and a device running
        # the default zxing decoder need not have it.
        from pyzbar import pyzbar

        self._pyzbar = pyzbar
        self._with_quality = with_quality

    def decode(self, gray: np.ndarray) -> list[Detection]:
        """Decode every QR symbol in ``gray``."""
        pyzbar = self._pyzbar
        gray = _check_gray(gray)
        # pyzbar copies the pixels with tobytes(); a contiguous view avoids a
        # second strided copy for ROI crops.
        found = pyzbar.decode(np.ascontiguousarray(gray), symbols=[pyzbar.ZBarSymbol.QRCODE])
        detections: list[Detection] = []
        for d in found:
            quad = _zbar_quad(d.polygon)
            if quad is None:
                continue
            text, is_text = text_from_zbar(bytes(d.data))
            quality = estimate_quality(gray, quad) if self._with_quality else None
            detections.append(Detection(text, bytes(d.data), is_text, quad, self.name, quality))
        return detections


def _zbar_quad(polygon: list[tuple[int, int]]) -> Quad | None:
    if not polygon:
        return None
    pts = [(float(x), float(y)) for x, y in polygon]
    if len(pts) != 4:
        box = cv2.boxPoints(cv2.minAreaRect(np.asarray(pts, dtype=np.float32)))
        pts = [(float(x), float(y)) for x, y in box]
    a, b, c, d = pts
    return (a, b, c, d)


def make_decoder(name: DecoderName) -> ZxingDecoder | ZbarDecoder:
    """Build the decoder called ``name`` (``"zxing"`` or ``"zbar"``) with its measured defaults."""
    if name == "zxing":
        return ZxingDecoder()
    if name == "zbar":
        return ZbarDecoder()
    raise ValueError(f"không có bộ giải mã {name!r} / unknown decoder {name!r} (zxing, zbar)")
