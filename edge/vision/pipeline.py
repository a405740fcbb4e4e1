"""Frame in, new passages out: the edge agent's whole vision path for one camera.

:class:`FrameProcessor` is pure computation with explicit state (motion
background, sweep cadence, dedupe tracks): the agent's decode thread calls
:meth:`FrameProcessor.process` with each frame and its timestamp and
publishes the passages that come back. It never sleeps, reads clocks or
touches the network. Final per-passage counts (frames seen, best quality)
are in ``processor.deduper.pop_closed()`` once a token's window closes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.vision.config import VisionConfig
from edge.vision.crop import CropTooLargeError, encode_crop
from edge.vision.decoders import Decoder, Quad, ZbarDecoder, ZxingDecoder, estimate_quality
from edge.vision.dedupe import Deduper
from edge.vision.gating import CascadeDecoder, MotionGate, roi_view, to_gray


@dataclass(frozen=True, slots=True)
class Passage:
    """A token seen for the first time in its dedupe window.

    ``first_seen`` is the timestamp of the frame it was read in; ``corners``
    are in that frame's pixel coordinates; ``crop_jpeg`` is None only if the
    crop is disabled or could not be made (the passage is never dropped for it).
    """

    token: str
    first_seen: float
    quality: float | None
    decoder: str
    corners: Quad
    crop_jpeg: bytes | None
    source: str


@dataclass(slots=True)
class FrameStats:
    """Counters since start, for metrics and the benchmark."""

    frames: int = 0
    skipped: int = 0
    decoded: int = 0
    read_small: int = 0
    read_candidate: int = 0
    read_sweep: int = 0
    read_full: int = 0
    full_res_pixels: int = 0
    detections: int = 0
    not_text: int = 0
    passages: int = 0
    crop_failures: int = 0


def _make_decoder(name: str) -> Decoder:
    # Quality is measured once on the full-resolution ROI by the processor,
    # not by the decoder on whatever downscaled view it was given.
    if name == "zbar":
        return ZbarDecoder(with_quality=False)
    return ZxingDecoder(with_quality=False)


class FrameProcessor:
    """Motion gate → ROI → downscaled-first decode → dedupe → crop, for one camera.

    Pass one shared :class:`Deduper` to the processors of cameras that watch
    the same lanes so a car seen by two cameras is one passage (the caller
    then serialises their ``process`` calls; nothing here locks).
    """

    def __init__(
        self,
        config: VisionConfig,
        *,
        source: str = "",
        deduper: Deduper | None = None,
        decoder: Decoder | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.decoder = decoder if decoder is not None else _make_decoder(config.decoder)
        # Explicit None test: an empty Deduper is falsy (it has a length).
        if deduper is None:
            deduper = Deduper(
                window_s=config.dedupe.window_s,
                max_entries=config.dedupe.max_entries,
                prefix=config.dedupe.prefix,
            )
        self.deduper = deduper
        self.motion = MotionGate(config.motion, config.roi)
        self.cascade = CascadeDecoder(self.decoder, config.decode)
        self.stats = FrameStats()

    def process(self, frame: np.ndarray, ts: float) -> list[Passage]:
        """Process one frame (gray ``(H, W)`` or BGR ``(H, W, 3)`` uint8) taken at ``ts`` seconds.

        Returns the passages that start in this frame (usually none).
        """
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3):
            raise ValueError(
                "khung hình phải là mảng uint8 (H, W) hoặc (H, W, 3) / "
                "frame must be a uint8 array (H, W) or (H, W, 3)"
            )
        stats = self.stats
        stats.frames += 1
        verdict = self.motion.update(frame)
        if not verdict.decode:
            stats.skipped += 1
            self.cascade.reset_sweep()
            self.deduper.expire(ts)
            return []
        view, dx, dy = roi_view(frame, self.config.roi)
        gray = to_gray(view)
        stats.decoded += 1
        result = self.cascade.decode(gray)
        stats.full_res_pixels += result.full_res_pixels
        if result.path == "small":
            stats.read_small += 1
        elif result.path == "candidate":
            stats.read_candidate += 1
        elif result.path == "sweep":
            stats.read_sweep += 1
        elif result.path == "full":
            stats.read_full += 1

        passages: list[Passage] = []
        seen_this_frame: set[str] = set()
        for det in result.detections:
            stats.detections += 1
            if not det.is_text:
                stats.not_text += 1
            if det.text in seen_this_frame:
                continue
            seen_this_frame.add(det.text)
            quality = estimate_quality(gray, det.corners)
            first = self.deduper.observe(
                det.text, ts, quality=quality, source=self.source, is_text=det.is_text
            )
            if first is None:
                continue
            corners = det.mapped(dx=dx, dy=dy).corners
            passages.append(
                Passage(
                    token=first.token,
                    first_seen=first.first_seen,
                    quality=quality,
                    decoder=det.decoder,
                    corners=corners,
                    crop_jpeg=self._crop(frame, corners),
                    source=self.source,
                )
            )
        stats.passages += len(passages)
        return passages

    def _crop(self, frame: np.ndarray, corners: Quad) -> bytes | None:
        cfg = self.config.crop
        if not cfg.enabled:
            return None
        try:
            return encode_crop(
                frame, corners, context=cfg.context, max_bytes=cfg.max_bytes, max_side=cfg.max_side
            )
        except CropTooLargeError:
            self.stats.crop_failures += 1
            return None
