"""The JPEG crop of a code's surroundings."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from contract.token import SigningKey
from edge.vision.crop import CropTooLargeError, crop_window, encode_crop
from tests.fixtures.keys import TokenFactory, deterministic_tokens
from tests.test_vision_decoders import add_noise, background, code_image, paste


@pytest.fixture
def make_token(signing_key: SigningKey) -> TokenFactory:
    """Deterministic tokens (see tests.fixtures.keys.deterministic_tokens)."""
    return deterministic_tokens(signing_key)


def _quad(x0: float, y0: float, x1: float, y1: float):
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def _decoded(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None, "not a JPEG"
    return img


def test_crop_window_is_context_times_the_code_clipped() -> None:
    assert crop_window(_quad(100, 100, 200, 200), context=3, height=1080, width=1920) == (
        0,
        0,
        300,
        300,
    )
    assert crop_window(_quad(900, 500, 1000, 600), context=3, height=1080, width=1920) == (
        800,
        400,
        1100,
        700,
    )
    # Near the right edge the window is clipped, not shifted.
    assert crop_window(_quad(1850, 500, 1910, 560), context=2, height=1080, width=1920) == (
        1820,
        470,
        1920,
        590,
    )
    with pytest.raises(ValueError, match="outside the frame"):
        crop_window(_quad(3000, 3000, 3100, 3100), context=3, height=1080, width=1920)


def test_bgr_crop_shows_the_code_and_its_surroundings(make_token) -> None:
    rng = np.random.default_rng(3)
    gray = paste(background((1080, 1920), rng), code_image(make_token(), 200), 860, 440)
    frame = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    frame[:, :, 2] = np.clip(frame[:, :, 2].astype(int) + 40, 0, 255)  # a tinted scene
    jpeg = encode_crop(frame, _quad(860, 440, 1060, 640))
    assert len(jpeg) <= 24 * 1024
    img = _decoded(jpeg)
    assert img.ndim == 3 and img.shape[2] == 3
    # 3x a 200 px code is 600 px, shrunk to the 480 px default longest side.
    assert max(img.shape[:2]) == 480


def test_noisy_frame_is_squeezed_under_the_cap() -> None:
    rng = np.random.default_rng(4)
    frame = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)  # incompressible
    jpeg = encode_crop(frame, _quad(700, 300, 1000, 600), max_bytes=24 * 1024)
    assert len(jpeg) <= 24 * 1024
    assert max(_decoded(jpeg).shape[:2]) < 480  # quality alone was not enough


@pytest.mark.parametrize("cap", [4096, 8192, 16384])
def test_smaller_caps_are_honoured(cap: int) -> None:
    rng = np.random.default_rng(5)
    frame = add_noise(background((720, 1280), rng), 25, rng)
    jpeg = encode_crop(frame, _quad(500, 200, 700, 400), max_bytes=cap, max_side=1024)
    assert len(jpeg) <= cap
    assert _decoded(jpeg).ndim == 2


def test_impossible_cap_is_a_clear_error() -> None:
    frame = np.full((480, 640), 128, np.uint8)
    with pytest.raises(CropTooLargeError, match="cannot fit"):
        encode_crop(frame, _quad(100, 100, 300, 300), max_bytes=100)


def test_rejects_non_images() -> None:
    with pytest.raises(ValueError, match="uint8"):
        encode_crop(np.zeros((10, 10), np.float32), _quad(1, 1, 5, 5))
