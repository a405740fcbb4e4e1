"""Decoders: both libraries behind one interface, real QR codes made with segno.

The small frame helpers here are shared by the other ``test_vision_*`` files.
"""

from __future__ import annotations

import numpy as np
import pytest
import segno

from contract.token import SigningKey
from edge.vision.decoders import (
    Detection,
    ZbarDecoder,
    ZxingDecoder,
    estimate_quality,
    make_decoder,
    text_from_zbar,
    text_from_zxing,
)
from tests.fixtures.keys import TokenFactory, deterministic_tokens

QUIET = 4  # modules of quiet zone segno's matrix lacks


@pytest.fixture
def make_token(signing_key: SigningKey) -> TokenFactory:
    """Deterministic tokens (see tests.fixtures.keys.deterministic_tokens)."""
    return deterministic_tokens(signing_key)


def code_image(payload: str | bytes, side: int, **segno_kw: object) -> np.ndarray:
    """A QR code (ECC M, quiet zone included) rendered to ``side`` x ``side`` px, uint8."""
    qr = segno.make(payload, error="m", micro=False, **segno_kw)
    modules = np.pad(np.array([list(row) for row in qr.matrix], dtype=np.uint8), QUIET)
    img = np.where(modules > 0, 0, 255).astype(np.uint8)
    idx = (np.arange(side) * img.shape[0] // side).astype(np.intp)
    return img[np.ix_(idx, idx)]


def symbol_box(
    x: int, y: int, side: int, payload: str | bytes
) -> tuple[float, float, float, float]:
    """Where the symbol itself (without quiet zone) lies when pasted at ``(x, y)``."""
    n = segno.make(payload, error="m", micro=False).symbol_size(border=QUIET)[0]
    q = side * QUIET / n
    return x + q, y + q, x + side - q, y + side - q


def background(shape: tuple[int, int], rng: np.random.Generator, level: int = 140) -> np.ndarray:
    """A mid-grey textured background (blocky, like a blurred street scene)."""
    h, w = shape
    coarse = rng.integers(level - 50, level + 50, (h // 16 + 1, w // 16 + 1)).astype(np.uint8)
    return np.kron(coarse, np.ones((16, 16), np.uint8))[:h, :w].copy()


def paste(frame: np.ndarray, code: np.ndarray, x: int, y: int) -> np.ndarray:
    """``frame`` with ``code`` pasted at ``(x, y)`` (a copy)."""
    out = frame.copy()
    out[y : y + code.shape[0], x : x + code.shape[1]] = code
    return out


def motion_blur(img: np.ndarray, length: int) -> np.ndarray:
    """Horizontal linear motion blur of ``length`` px, as a car crossing the view makes."""
    import cv2

    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    return cv2.filter2D(img, -1, kernel)


def scrambled(code: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``code`` (300 px) with a band of data modules randomised beyond what ECC M repairs.

    The finder patterns are spared, so the symbol is located but unreadable.
    """
    out = code.copy()
    out[120:190, 40:260] = rng.integers(0, 2, (70, 220)).astype(np.uint8) * 255
    return out


def add_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian sensor noise."""
    return np.clip(img.astype(np.float32) + rng.normal(0, sigma, img.shape), 0, 255).astype(
        np.uint8
    )


DECODERS = [ZxingDecoder(), ZbarDecoder()]
IDS = ["zxing", "zbar"]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.mark.parametrize("decoder", DECODERS, ids=IDS)
def test_reads_a_pass_token_with_corners_in_input_coordinates(decoder, make_token, rng) -> None:
    token = make_token()
    frame = paste(background((720, 1280), rng), code_image(token, 240), 700, 300)
    found = decoder.decode(frame)
    assert [d.text for d in found] == [token]
    det = found[0]
    assert det.is_text and det.raw == token.encode() and det.decoder == decoder.name
    x0, y0, x1, y1 = symbol_box(700, 300, 240, token)
    bx0, by0, bx1, by1 = det.bbox()
    assert abs(bx0 - x0) < 6 and abs(by0 - y0) < 6 and abs(bx1 - x1) < 6 and abs(by1 - y1) < 6
    assert det.quality is not None and 0.0 < det.quality <= 1.0


@pytest.mark.parametrize("decoder", DECODERS, ids=IDS)
def test_corners_are_relative_to_a_cropped_view(decoder, make_token, rng) -> None:
    token = make_token()
    frame = paste(background((720, 1280), rng), code_image(token, 200), 500, 200)
    view = frame[150:500, 400:800]  # a strided view, not a copy
    (det,) = decoder.decode(view)
    x0, y0, _, _ = symbol_box(500 - 400, 200 - 150, 200, token)
    assert abs(det.bbox()[0] - x0) < 6 and abs(det.bbox()[1] - y0) < 6


@pytest.mark.parametrize("decoder", DECODERS, ids=IDS)
def test_two_codes_in_one_frame(decoder, make_token, rng) -> None:
    a, b = make_token(), make_token()
    frame = background((720, 1280), rng)
    frame = paste(paste(frame, code_image(a, 200), 100, 200), code_image(b, 200), 800, 300)
    assert sorted(d.text for d in decoder.decode(frame)) == sorted([a, b])


@pytest.mark.parametrize("decoder", DECODERS, ids=IDS)
def test_nothing_to_read(decoder, rng) -> None:
    assert decoder.decode(background((480, 640), rng)) == []
    assert decoder.decode(np.zeros((10, 10), np.uint8)) == []


@pytest.mark.parametrize("decoder", DECODERS, ids=IDS)
def test_vietnamese_utf8_text(decoder) -> None:
    text = "Nguyễn Văn Đức — Hà Nội"
    for kw in ({"eci": True, "encoding": "utf-8"}, {}):
        payload = text if kw else text.encode("utf-8")
        frame = np.full((400, 400), 255, np.uint8)
        frame = paste(frame, code_image(payload, 300, **kw), 50, 50)
        (det,) = decoder.decode(frame)
        assert det.is_text and det.text == text


@pytest.mark.parametrize("decoder", DECODERS, ids=IDS)
def test_latin1_byte_mode_is_text(decoder) -> None:
    frame = paste(
        np.full((300, 300), 255, np.uint8), code_image("café".encode("latin-1"), 250), 25, 25
    )
    (det,) = decoder.decode(frame)
    assert det.is_text and det.text == "café"


@pytest.mark.parametrize("decoder", DECODERS, ids=IDS)
def test_binary_payload_is_reported_not_raised(decoder) -> None:
    payload = bytes([0xFF, 0xFE, 0x00, 0x01, 0x80, 0x81, 0x9F, 0x4B, 0x44])
    frame = paste(np.full((300, 300), 255, np.uint8), code_image(payload, 250), 25, 25)
    (det,) = decoder.decode(frame)
    assert not det.is_text
    assert det.text.isprintable() and "\\x" in det.text


@pytest.mark.parametrize("decoder", DECODERS, ids=IDS)
def test_noisy_blurred_code_still_read(decoder, make_token, rng) -> None:
    token = make_token()
    frame = paste(background((720, 1280), rng), code_image(token, 260), 400, 200)
    frame = add_noise(motion_blur(frame, 3), 6, rng)
    assert token in [d.text for d in decoder.decode(frame)]


@pytest.mark.parametrize("decoder", DECODERS, ids=IDS)
@pytest.mark.parametrize(
    "bad",
    [np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.float32), np.zeros(10, np.uint8)],
    ids=["bgr", "float", "1d"],
)
def test_rejects_non_gray_input(decoder, bad) -> None:
    with pytest.raises(ValueError, match="grayscale"):
        decoder.decode(bad)


def test_zxing_scan_reports_a_located_but_unreadable_code(make_token, rng) -> None:
    token = make_token()
    frame = paste(background((600, 800), rng), scrambled(code_image(token, 300), rng), 250, 150)
    scan = ZxingDecoder().scan(frame)
    assert scan.detections == []
    assert scan.unread
    x0, y0, x1, y1 = symbol_box(250, 150, 300, token)
    xs = [p[0] for q in scan.unread for p in q]
    ys = [p[1] for q in scan.unread for p in q]
    assert x0 - 10 <= min(xs) and max(xs) <= x1 + 10
    assert y0 - 10 <= min(ys) and max(ys) <= y1 + 10


def test_quality_falls_with_blur_and_size(make_token, rng) -> None:
    token = make_token()
    base = background((600, 800), rng)
    sharp = paste(base, code_image(token, 260), 200, 150)
    box = symbol_box(200, 150, 260, token)
    quad = ((box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3]))
    q_sharp = estimate_quality(sharp, quad)
    q_blur = estimate_quality(motion_blur(sharp, 7), quad)
    assert 0.7 < q_sharp <= 1.0
    assert q_blur < q_sharp - 0.2
    small = paste(base, code_image(token, 120), 200, 150)
    sbox = symbol_box(200, 150, 120, token)
    squad = ((sbox[0], sbox[1]), (sbox[2], sbox[1]), (sbox[2], sbox[3]), (sbox[0], sbox[3]))
    assert estimate_quality(small, squad) < q_sharp
    assert estimate_quality(sharp, ((0, 0), (1, 0), (1, 1), (0, 1))) == 0.0


def test_zbar_text_repairs() -> None:
    assert text_from_zbar(b"KD1:ABC $%*+-./:") == ("KD1:ABC $%*+-./:", True)
    # UTF-8 encoded twice (read as Latin-1, re-encoded): "đ" arrives as "Ä\x91".
    double = "Đức".encode().decode("latin-1").encode()
    assert text_from_zbar(double) == ("Đức", True)
    # Genuine Latin-1 text converted once by zbar stays as it is.
    assert text_from_zbar("café".encode()) == ("café", True)
    assert text_from_zbar(b"\xff\xfeKD") == ("\\xff\\xfeKD", False)
    # Binary forced through Latin-1 by zbar: control characters give it away.
    assert text_from_zbar("ÿ\x00\x01".encode()) == ("\\xff\\x00\\x01", False)


def test_zxing_text_rules() -> None:
    assert text_from_zxing(b"KD1:A", "KD1:A", False) == ("KD1:A", True)
    assert text_from_zxing(b"\xff\x00", "ÿ\x00", True) == ("\\xff\\x00", False)
    assert text_from_zxing(b"a\\b", "a\\b", False) == ("a\\b", True)
    assert text_from_zxing(b"a\x07b", "a\x07b", False)[1] is False


def test_detection_mapping() -> None:
    det = Detection("KD1:A", b"KD1:A", True, ((1, 2), (3, 2), (3, 4), (1, 4)), "zxing", 0.5)
    moved = det.mapped(scale=2, dx=10, dy=20)
    assert moved.corners == ((12, 24), (16, 24), (16, 28), (12, 28))
    assert moved.bbox() == (12, 24, 16, 28)
    assert det.with_quality(0.9).quality == 0.9


def test_make_decoder_by_name() -> None:
    assert make_decoder("zxing").name == "zxing"
    assert make_decoder("zbar").name == "zbar"
    with pytest.raises(ValueError, match="unknown decoder"):
        make_decoder("opencv")  # type: ignore[arg-type]
