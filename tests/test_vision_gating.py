"""Motion gate, ROI, downscaled-first cascade, and the whole per-camera pipeline."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from contract.token import SigningKey
from edge.vision.config import DecodeConfig, MotionConfig, RoiConfig, VisionConfig
from edge.vision.decoders import ZbarDecoder, ZxingDecoder
from edge.vision.dedupe import Deduper
from edge.vision.gating import (
    CascadeDecoder,
    MotionGate,
    candidate_window,
    locate_codes,
    merge_windows,
    roi_view,
    to_gray,
)
from edge.vision.pipeline import FrameProcessor
from tests.fixtures.keys import TokenFactory, deterministic_tokens
from tests.test_vision_decoders import (
    add_noise,
    background,
    code_image,
    motion_blur,
    paste,
    scrambled,
    symbol_box,
)

# --- config & ROI ------------------------------------------------------------------


@pytest.fixture
def make_token(signing_key: SigningKey) -> TokenFactory:
    """Deterministic tokens (see tests.fixtures.keys.deterministic_tokens)."""
    return deterministic_tokens(signing_key)


def test_roi_to_pixels_and_view() -> None:
    roi = RoiConfig(x0=0.25, y0=0.5, x1=0.75, y1=1.0)
    assert roi.to_pixels(1080, 1920) == (480, 540, 1440, 1080)
    frame = np.arange(1080 * 1920, dtype=np.uint32).reshape(1080, 1920)
    view, dx, dy = roi_view(frame, roi)
    assert (dx, dy) == (480, 540) and view.shape == (540, 960)
    assert view[0, 0] == frame[540, 480]


@pytest.mark.parametrize(
    "bad",
    [
        {"roi": {"x0": 0.6, "x1": 0.5}},
        {"roi": {"y0": 1.2}},
        {"decoder": "opencv"},
        {"motion": {"treshold": 3}},
        {"decode": {"downscale": 0}},
        {"crop": {"max_bytes": 10}},
        {"dedupe": {"window_s": 0}},
        {"unknown": 1},
    ],
)
def test_config_refuses_bad_values(bad: dict) -> None:
    with pytest.raises(ValidationError):
        VisionConfig.model_validate(bad)


def test_config_round_trips() -> None:
    cfg = VisionConfig.model_validate(
        {"decoder": "zbar", "roi": {"x0": 0.1, "y0": 0.2, "x1": 0.9, "y1": 0.95}}
    )
    assert VisionConfig.model_validate(cfg.model_dump()) == cfg


def test_to_gray() -> None:
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 1] = 200
    assert to_gray(bgr).shape == (4, 6) and to_gray(bgr)[0, 0] > 100
    gray = np.zeros((4, 6), np.uint8)
    assert to_gray(gray) is gray
    with pytest.raises(ValueError, match="uint8"):
        to_gray(np.zeros((4, 6), np.float32))
    with pytest.raises(ValueError, match="BGR"):
        to_gray(np.zeros((4, 6, 4), np.uint8))


# --- motion ---------------------------------------------------------------------


def _lane(rng: np.random.Generator) -> np.ndarray:
    return background((360, 640), rng)


def test_still_frames_are_skipped_but_looked_at_periodically() -> None:
    rng = np.random.default_rng(1)
    lane = _lane(rng)
    gate = MotionGate(MotionConfig(hold_frames=3, idle_every=5))
    verdicts = [gate.update(add_noise(lane, 3, rng)) for _ in range(15)]
    reasons = [v.reason for v in verdicts]
    assert reasons[0] == "first" and verdicts[0].decode
    # Sensor noise is not motion; every 5th still frame is decoded anyway.
    assert [i for i, r in enumerate(reasons) if r == "idle"] == [5, 10]
    assert reasons.count("still") == 12
    assert [v.decode for v in verdicts] == [r in ("first", "idle") for r in reasons]


def test_a_car_entering_the_lane_is_motion_and_triggers_decoding() -> None:
    rng = np.random.default_rng(2)
    lane = _lane(rng)
    gate = MotionGate(MotionConfig(hold_frames=2, idle_every=0))
    for _ in range(10):
        gate.update(lane)
    car = np.full((120, 200), 40, np.uint8)
    verdicts = [gate.update(paste(lane, car, 50 + 30 * i, 150)) for i in range(8)]
    assert all(v.decode and v.moving and v.reason == "motion" for v in verdicts)
    assert all(v.changed_fraction > 0.004 for v in verdicts)
    # The car leaves: decoding goes on for hold_frames, then the lane is still.
    after = [gate.update(lane).reason for _ in range(30)]
    first_still = after.index("still")
    assert after[first_still - 2 : first_still] == ["hold", "hold"]
    assert set(after[first_still:]) == {"still"}


def test_motion_outside_the_roi_is_ignored() -> None:
    rng = np.random.default_rng(3)
    lane = _lane(rng)
    gate = MotionGate(
        MotionConfig(hold_frames=0, idle_every=0), RoiConfig(x0=0.5, y0=0.0, x1=1.0, y1=1.0)
    )
    gate.update(lane)
    gate.update(lane)
    car = np.full((120, 200), 40, np.uint8)
    assert not gate.update(paste(lane, car, 20, 100)).decode  # left half: outside
    assert gate.update(paste(lane, car, 400, 100)).moving  # right half: inside


def test_motion_gate_accepts_bgr_and_can_be_disabled_or_reset() -> None:
    rng = np.random.default_rng(4)
    lane = cv2.cvtColor(_lane(rng), cv2.COLOR_GRAY2BGR)
    gate = MotionGate(MotionConfig(hold_frames=0, idle_every=0))
    assert gate.update(lane).reason == "first"
    assert gate.update(lane).reason == "still"
    gate.reset()
    assert gate.update(lane).reason == "first"
    off = MotionGate(MotionConfig(enabled=False))
    assert all(off.update(lane).decode for _ in range(3))


# --- cascade -----------------------------------------------------------------------


def _token_frame(token: str, side: int, x: int, y: int, seed: int = 5) -> np.ndarray:
    return paste(
        background((720, 1280), np.random.default_rng(seed)), code_image(token, side), x, y
    )


@pytest.mark.parametrize("decoder", [ZxingDecoder(), ZbarDecoder()], ids=["zxing", "zbar"])
def test_large_code_is_read_downscaled_with_full_res_corners(decoder, make_token) -> None:
    token = make_token()
    frame = _token_frame(token, 300, 601, 203)
    result = CascadeDecoder(decoder, DecodeConfig(downscale=2)).decode(frame)
    assert result.path == "small" and result.full_res_pixels == 0
    assert [d.text for d in result.detections] == [token]
    x0, y0, x1, y1 = symbol_box(601, 203, 300, token)
    bx0, by0, bx1, by1 = result.detections[0].bbox()
    assert max(abs(bx0 - x0), abs(by0 - y0), abs(bx1 - x1), abs(by1 - y1)) < 8


def test_located_but_unread_downscaled_code_is_retried_at_full_res_nearby(make_token) -> None:
    token = make_token()
    # 138 px: located at half resolution (1.5 px per module) but not readable there.
    frame = _token_frame(token, 138, 401, 203)
    result = CascadeDecoder(ZxingDecoder(), DecodeConfig(sweep_every=0)).decode(frame)
    assert result.path == "candidate"
    assert [d.text for d in result.detections] == [token]
    assert 0 < result.full_res_pixels < frame.size // 10  # only a window, not the frame
    x0, _, _, _ = symbol_box(401, 203, 138, token)
    assert abs(result.detections[0].bbox()[0] - x0) < 6


def test_code_too_small_to_locate_is_found_by_the_periodic_sweep(make_token) -> None:
    token = make_token()
    frame = _token_frame(token, 110, 800, 400)
    never = CascadeDecoder(ZxingDecoder(), DecodeConfig(sweep_every=0))
    assert never.decode(frame).path == "none"
    every2 = CascadeDecoder(ZxingDecoder(), DecodeConfig(sweep_every=2))
    first, second = every2.decode(frame), every2.decode(frame)
    assert first.path == "none" and first.full_res_pixels == 0
    assert second.path == "sweep" and [d.text for d in second.detections] == [token]
    assert second.full_res_pixels == frame.size
    full = CascadeDecoder(ZxingDecoder(), DecodeConfig(downscale=1)).decode(frame)
    assert full.path == "full" and [d.text for d in full.detections] == [token]


def test_zbar_cascade_uses_zxing_to_locate(make_token) -> None:
    token = make_token()
    frame = _token_frame(token, 138, 401, 203)
    result = CascadeDecoder(ZbarDecoder(), DecodeConfig(sweep_every=0)).decode(frame)
    assert result.path == "candidate" and [d.text for d in result.detections] == [token]


def test_locate_codes_finds_damaged_and_readable_codes(make_token) -> None:
    token = make_token()
    code = scrambled(code_image(token, 300), np.random.default_rng(0))
    frame = paste(np.full((600, 800), 180, np.uint8), code, 250, 150)
    quads = locate_codes(frame)
    assert quads and all(230 <= p[0] <= 570 and 130 <= p[1] <= 470 for q in quads for p in q)
    readable = paste(np.full((600, 800), 180, np.uint8), code_image(token, 300), 250, 150)
    assert len(locate_codes(readable)) == 1
    assert locate_codes(np.full((100, 100), 128, np.uint8)) == []


def test_candidate_windows() -> None:
    quad = ((10.0, 10.0), (30.0, 10.0), (30.0, 30.0), (10.0, 30.0))
    assert candidate_window(quad, scale=2, pad=0.5, height=1000, width=1000) == (0, 0, 84, 84)
    assert candidate_window(quad, scale=2, pad=0.0, height=1000, width=1000) == (16, 16, 64, 64)
    assert candidate_window(quad, scale=2, pad=0.0, height=10, width=10) is None
    assert merge_windows([(0, 0, 10, 10), (5, 5, 20, 20), (50, 50, 60, 60), (15, 0, 55, 52)]) == [
        (0, 0, 60, 60)
    ]
    assert merge_windows([(0, 0, 10, 10), (20, 20, 25, 25)]) == [(0, 0, 10, 10), (20, 20, 25, 25)]


# --- pipeline --------------------------------------------------------------------------


def _drive_by(token: str, *, n_frames: int = 40, blur: int = 0, seed: int = 9) -> list[np.ndarray]:
    """An empty lane, then a 'car' carrying the code crossing it, then empty again."""
    rng = np.random.default_rng(seed)
    lane = background((720, 1280), rng)
    car = np.full((300, 420), 70, np.uint8)
    car = paste(car, code_image(token, 200), 110, 50)
    frames = [add_noise(lane, 2, rng) for _ in range(10)]
    for i in range(n_frames):
        x = -420 + i * (1280 + 420) // n_frames
        frame = lane.copy()
        x0, x1 = max(0, x), min(1280, x + 420)
        if x1 > x0:
            frame[300:600, x0:x1] = car[:, x0 - x : x1 - x]
        if blur:
            frame = motion_blur(frame, blur)
        frames.append(add_noise(frame, 2, rng))
    frames += [add_noise(lane, 2, rng) for _ in range(40)]
    return frames


@pytest.mark.parametrize("decoder", ["zxing", "zbar"])
def test_pipeline_emits_one_passage_per_car_with_a_crop(decoder, make_token) -> None:
    token = make_token()
    cfg = VisionConfig.model_validate({"decoder": decoder, "motion": {"idle_every": 0}})
    proc = FrameProcessor(cfg, source="lane1")
    out = []
    for i, frame in enumerate(_drive_by(token, blur=3)):
        for p in proc.process(frame, 1000.0 + i / 30):
            out.append((i, p))
    assert len(out) == 1
    i, passage = out[0]
    assert passage.token == token and passage.decoder == decoder and passage.source == "lane1"
    assert passage.first_seen == pytest.approx(1000.0 + i / 30)
    assert passage.quality is not None and 0 < passage.quality <= 1
    assert passage.crop_jpeg is not None and len(passage.crop_jpeg) <= 24 * 1024
    crop = cv2.imdecode(np.frombuffer(passage.crop_jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    assert crop is not None and crop.shape[0] > 100
    track = proc.deduper.track(token)
    assert track is not None and track.frames_seen > 3
    stats = proc.stats
    assert stats.passages == 1 and stats.skipped > 20 and stats.decoded < stats.frames


def test_pipeline_ignores_foreign_codes(make_token) -> None:
    proc = FrameProcessor(VisionConfig())
    frames = _drive_by("https://quangcao.example/khuyen-mai", seed=11)
    assert [p for i, f in enumerate(frames) for p in proc.process(f, i / 30)] == []
    assert proc.deduper.stats.ignored > 0 and proc.stats.detections > 0


def test_two_cameras_sharing_a_deduper_report_one_passage(make_token) -> None:
    token = make_token()
    shared = Deduper(window_s=30)
    cams = [
        FrameProcessor(VisionConfig(), source=name, deduper=shared) for name in ("east", "west")
    ]
    frames = _drive_by(token)
    passages = []
    for i, frame in enumerate(frames):
        for cam in cams:
            passages += cam.process(frame, i / 30)
    assert [p.token for p in passages] == [token]
    track = shared.track(token)
    assert track is not None and track.sources == {"east", "west"}


def test_pipeline_roi_and_bad_frames(make_token) -> None:
    token = make_token()
    # The code is in the right half; a left-half ROI never reads it.
    cfg = VisionConfig.model_validate({"roi": {"x1": 0.5}, "motion": {"enabled": False}})
    proc = FrameProcessor(cfg)
    frame = _token_frame(token, 240, 900, 300)
    assert proc.process(frame, 0.0) == []
    right = FrameProcessor(VisionConfig.model_validate({"roi": {"x0": 0.5}}))
    (p,) = right.process(frame, 0.0)
    x0, _, _, _ = symbol_box(900, 300, 240, token)
    assert abs(p.corners[0][0] - x0) < 8  # corners are in full-frame coordinates
    with pytest.raises(ValueError, match="uint8"):
        proc.process(np.zeros((10, 10), np.float64), 1.0)
    with pytest.raises(ValueError, match="uint8"):
        proc.process(np.zeros((10, 10, 3, 2), np.uint8), 1.0)


def test_crop_can_be_disabled(make_token) -> None:
    token = make_token()
    proc = FrameProcessor(VisionConfig.model_validate({"crop": {"enabled": False}}))
    (p,) = proc.process(_token_frame(token, 240, 300, 300), 0.0)
    assert p.crop_jpeg is None and p.token == token
