"""The edge agent's vision path: decode QR pass tokens from gate-camera frames.

Pure computation, no threads or I/O: :class:`~edge.vision.pipeline.FrameProcessor`
takes a frame and its timestamp and returns new passages.
"""

from edge.vision.config import VisionConfig
from edge.vision.decoders import Decoder, Detection, make_decoder
from edge.vision.dedupe import Deduper
from edge.vision.pipeline import FrameProcessor, Passage

__all__ = [
    "Decoder",
    "Deduper",
    "Detection",
    "FrameProcessor",
    "Passage",
    "VisionConfig",
    "make_decoder",
]
