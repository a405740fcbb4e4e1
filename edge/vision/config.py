"""Configuration of the edge agent's vision path (one pydantic model per section)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RoiConfig(BaseModel):
    """The lane's region of interest, as fractions of the frame's width and height."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    x0: float = Field(default=0.0, ge=0.0, le=1.0)
    y0: float = Field(default=0.0, ge=0.0, le=1.0)
    x1: float = Field(default=1.0, ge=0.0, le=1.0)
    y1: float = Field(default=1.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> RoiConfig:
        if self.x1 - self.x0 < 0.05 or self.y1 - self.y0 < 0.05:
            raise ValueError(
                "vùng quan tâm phải có x0 < x1 và y0 < y1 (rộng ít nhất 5%) / "
                "roi needs x0 < x1 and y0 < y1, each side at least 5% of the frame"
            )
        return self

    def to_pixels(self, height: int, width: int) -> tuple[int, int, int, int]:
        """The ROI as pixel bounds ``(x0, y0, x1, y1)`` in a ``height`` x ``width`` frame."""
        return (
            round(self.x0 * width),
            round(self.y0 * height),
            round(self.x1 * width),
            round(self.y1 * height),
        )


class MotionConfig(BaseModel):
    """Frame differencing on a small grayscale copy, to skip frames where nothing moves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    width: int = Field(default=160, ge=32, le=640, description="width of the motion image, px")
    pixel_threshold: int = Field(
        default=18, ge=1, le=255, description="grey-level change that counts a pixel as moving"
    )
    min_fraction: float = Field(
        default=0.004, gt=0.0, le=1.0, description="share of ROI pixels that must move"
    )
    learning_rate: float = Field(
        default=0.05, gt=0.0, le=1.0, description="running-background update weight per frame"
    )
    hold_frames: int = Field(
        default=15, ge=0, description="frames to keep decoding after motion stops"
    )
    idle_every: int = Field(
        default=15,
        ge=0,
        description="decode every Nth still frame anyway (a car stopped at the gate); 0 = never",
    )


class DecodeConfig(BaseModel):
    """How a frame that passed the motion gate is decoded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    downscale: int = Field(
        default=2, ge=1, le=4, description="decode first at 1/downscale of the ROI (1 = off)"
    )
    candidate_pad: float = Field(
        default=0.6,
        ge=0.0,
        le=3.0,
        description="margin around a located-but-unread code for the full-resolution retry, "
        "as a fraction of its side",
    )
    max_candidates: int = Field(
        default=3, ge=0, le=16, description="full-resolution retries per frame at most"
    )
    sweep_every: int = Field(
        default=2,
        ge=0,
        description="while motion lasts and nothing is read, decode the whole ROI at full "
        "resolution every Nth frame (codes too small to be located downscaled); 0 = never",
    )


class DedupeConfig(BaseModel):
    """One car = one passage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_s: float = Field(
        default=30.0,
        gt=0.0,
        le=3600.0,
        description="a token seen again within this many seconds of its last sighting is "
        "the same passage",
    )
    max_entries: int = Field(default=4096, ge=16, description="memory bound on tracked tokens")
    prefix: str = Field(default="KD1:", min_length=1, description="prefix of pass tokens")


class CropConfig(BaseModel):
    """The small JPEG of the code's surroundings sent with a passage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    max_bytes: int = Field(default=24 * 1024, ge=2048, le=1024 * 1024)
    context: float = Field(
        default=3.0, ge=1.0, le=10.0, description="crop side as a multiple of the code's side"
    )
    max_side: int = Field(default=480, ge=64, le=4096, description="longest crop side, px")


class VisionConfig(BaseModel):
    """Everything the vision path of one camera needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decoder: Literal["zxing", "zbar"] = "zxing"
    roi: RoiConfig = RoiConfig()
    motion: MotionConfig = MotionConfig()
    decode: DecodeConfig = DecodeConfig()
    dedupe: DedupeConfig = DedupeConfig()
    crop: CropConfig = CropConfig()
