"""Pixels for a :class:`~simulators.gatecam.scene.Scenario`.

Light model. Every layer is drawn as *albedo* (what a surface reflects) and
*emission* (what glows: sky, lamps, a phone screen). Radiance is
``albedo * illumination + emission``; the camera turns radiance into pixel
values with a gain, a black level, rain haze and clipping, then adds sensor
noise. That is why at night a printed code turns dim and noisy while a phone
screen stays bright and may burn out with a bloom around its modules.

Speed. A frame is the cached background, each visible car pasted in with
two saturating uint8 operations, then rain streaks and noise, both sliced
from precomputed banks. Everything about a car that does not change while
it crosses (body, warped code, glare, motion blur, camera response) is
computed once into a premultiplied sprite, so a frame costs a few
milliseconds whatever the scene holds.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from simulators.gatecam.scene import (
    BODY_SHAPES,
    QUIET_ZONE_MODULES,
    RESOLUTIONS,
    BodyShape,
    CarLayout,
    CarSpec,
    HeldCode,
    HeldLayout,
    Point,
    Scenario,
    car_layout,
    carrier_geometry,
    qr_matrix,
)

BGR = tuple[int, int, int]
DARK: BGR = (0, 0, 0)
EMISSION_SCALE = 4.0  # emission canvases hold radiance * 255 / EMISSION_SCALE
_SHIFT = 3  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


@dataclass(frozen=True, slots=True)
class Exposure:
    """How the camera maps radiance to pixel values under a light/weather preset."""

    illum: float  # illumination of the lane where cars pass (day = 1)
    ambient: float  # illumination of the background away from the gate lamps
    gain: float
    black: float  # black level, fraction of full scale
    haze: float  # fraction of each pixel replaced by scattered light (rain)
    fog: float  # brightness of that scattered light, relative to illumination
    noise_dn: float  # sensor noise sigma, in 8-bit pixel values
    rain_dn: float  # brightness of a rain streak

    @property
    def slope(self) -> float:
        """Pixel value (0..1) per unit of radiance."""
        return self.gain * (1.0 - self.haze)

    @property
    def offset(self) -> float:
        """Pixel value (0..1) at zero radiance: black level plus haze."""
        return self.black + self.gain * self.haze * self.fog * self.illum


_EXPOSURES: dict[tuple[str, str], Exposure] = {
    ("day", "clear"): Exposure(1.0, 1.0, 0.9, 0.02, 0.0, 0.0, 1.8, 0.0),
    ("day", "rain"): Exposure(0.6, 0.6, 1.4, 0.03, 0.15, 0.75, 2.6, 45.0),
    ("night", "clear"): Exposure(0.16, 0.035, 2.6, 0.05, 0.0, 0.0, 6.0, 0.0),
    ("night", "rain"): Exposure(0.13, 0.03, 3.0, 0.06, 0.12, 0.5, 7.0, 28.0),
}


def exposure_model(light: str, weather: str) -> Exposure:
    """Preset for ``light`` (day/night) and ``weather`` (clear/rain).

    Night means little light and a high gain: the black level rises, noise
    grows with the gain, reflective things get dim and low-contrast.
    """
    return _EXPOSURES[(light, weather)]


def _fixed(p: Point) -> tuple[int, int]:
    return round(p[0] * _ONE), round(p[1] * _ONE)


def _box(x0: float, y0: float, x1: float, y1: float) -> list[Point]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _rounded_box(x0: float, y0: float, x1: float, y1: float, r: float) -> list[Point]:
    pts: list[Point] = []
    corners = (
        (x1 - r, y0 + r, -90),
        (x1 - r, y1 - r, 0),
        (x0 + r, y1 - r, 90),
        (x0 + r, y0 + r, 180),
    )
    for cx, cy, start in corners:
        for k in range(7):
            a = math.radians(start + 15 * k)
            pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts


class _Canvas:
    """Three uint8 layers drawn together: albedo, emission and alpha (coverage).

    Layers start black, so anti-aliased edges come out premultiplied by
    their coverage, which is what compositing needs.
    """

    def __init__(self, height: int, width: int) -> None:
        self.albedo = np.zeros((height, width, 3), np.uint8)
        self.emission = np.zeros((height, width, 3), np.uint8)
        self.alpha = np.zeros((height, width), np.uint8)

    def poly(
        self, points: list[Point], albedo: BGR, emission: BGR = DARK, alpha: int = 255
    ) -> None:
        """Fill a polygon on all layers."""
        p = [np.array([_fixed(q) for q in points], np.int32).reshape(-1, 1, 2)]
        cv2.fillPoly(self.albedo, p, albedo, cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(self.emission, p, emission, cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(self.alpha, p, alpha, cv2.LINE_AA, _SHIFT)

    def ellipse(
        self,
        centre: Point,
        axes: Point,
        albedo: BGR,
        *,
        emission: BGR = DARK,
        alpha: int = 255,
        angle: float = 0.0,
    ) -> None:
        """Fill an ellipse on all layers."""
        c, a = _fixed(centre), (max(1, round(axes[0] * _ONE)), max(1, round(axes[1] * _ONE)))
        for layer, value in ((self.albedo, albedo), (self.emission, emission), (self.alpha, alpha)):
            cv2.ellipse(layer, c, a, angle, 0, 360, value, -1, cv2.LINE_AA, _SHIFT)

    def line(self, points: list[Point], albedo: BGR, width: float, *, cover: bool = False) -> None:
        """Stroke a polyline on the albedo layer (and on coverage when ``cover``)."""
        p = [np.array([_fixed(q) for q in points], np.int32).reshape(-1, 1, 2)]
        w = max(1, round(width))
        cv2.polylines(self.albedo, p, False, albedo, w, cv2.LINE_AA, _SHIFT)
        if cover:
            cv2.polylines(self.alpha, p, False, 255, w, cv2.LINE_AA, _SHIFT)

    def floats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Premultiplied albedo and emission (radiance units) and alpha, as float32."""
        return (
            self.albedo.astype(np.float32) * (1.0 / 255.0),
            self.emission.astype(np.float32) * (EMISSION_SCALE / 255.0),
            self.alpha.astype(np.float32) * (1.0 / 255.0),
        )


# --- the code carrier (phone, sheet, sticker) --------------------------------


@dataclass(frozen=True, slots=True)
class _Plane:
    """A carrier drawn flat and facing the camera, ready to warp."""

    albedo: np.ndarray
    emission: np.ndarray
    alpha: np.ndarray
    symbol: tuple[float, float, float]  # x0, y0, side in plane pixels
    supersample: int


def _carrier_plane(
    carrier: str, payload: str, code_px: float, held: HeldCode | None, rng: np.random.Generator
) -> _Plane:
    """Draw a phone, sheet or sticker showing ``payload`` at ECC level M.

    Modules are exact blocks of whole plane pixels. The plane is drawn at
    ``supersample`` times the final size (at least ~8 samples per module), so
    the warp that follows can average edges down without aliasing.
    """
    matrix = np.array(qr_matrix(payload), dtype=np.uint8)
    modules = matrix.shape[0]
    module = code_px / modules
    ss = min(4, max(1, math.ceil(8.0 / module)))
    q = max(3, round(module * ss))  # plane pixels per module
    scale = q / module
    (w, h), (_, symbol_dy) = carrier_geometry(carrier, code_px, modules)  # type: ignore[arg-type]
    pw, ph = math.ceil(w * scale), math.ceil(h * scale)
    side = modules * q
    qz = QUIET_ZONE_MODULES * q
    x0 = (pw - side) // 2
    y0 = round(ph / 2 + symbol_dy * scale - side / 2)
    below = y0 + side + qz  # where the quiet zone ends under the symbol
    c = _Canvas(ph, pw)
    glass: BGR = (12, 12, 12)
    if carrier == "phone":
        radius, bezel = 0.09 * pw, 0.045 * pw
        c.poly(_rounded_box(0, 0, pw, ph, radius), (22, 22, 24))
        # A lit white screen is ~0.6 radiance whatever the light: it glows at night.
        c.poly(_rounded_box(bezel, bezel, pw - bezel, ph - bezel, 0.6 * radius), glass, (38,) * 3)
        tint: BGR = [(30, 20, 6), (10, 28, 6), (34, 14, 8)][int(rng.integers(3))]
        c.poly(_box(bezel, bezel + radius, pw - bezel, y0 - qz), glass, tint)  # app header
        for i in range(3):  # caption lines and a button under the code
            top = below + (0.05 + 0.08 * i) * pw
            c.poly(
                _box(0.2 * pw, top, (0.8 - 0.1 * i) * pw, top + 0.035 * pw),
                glass,
                (20,) * 3 if i < 2 else tint,
            )
        zone = (slice(y0 - qz, below), slice(x0 - qz, x0 + side + qz))
        c.albedo[zone], c.emission[zone] = glass, (38, 38, 38)
        ink_albedo, ink_emission = glass, (1, 1, 1)
    else:
        c.poly(_box(0, 0, pw, ph), (228, 232, 234) if carrier == "paper" else (238,) * 3)
        if carrier == "paper":
            for i in range(3):
                top = below + (0.06 + 0.07 * i) * pw
                c.poly(_box(0.15 * pw, top, (0.85 - 0.12 * i) * pw, top + 0.03 * pw), (90,) * 3)
        else:
            c.line([*_box(0.5, 0.5, pw - 0.5, ph - 0.5), (0.5, 0.5)], (170,) * 3, 1)
        ink_albedo, ink_emission = (24, 24, 26), DARK
    dark = cv2.resize(matrix, (side, side), interpolation=cv2.INTER_NEAREST).astype(bool)
    sym = (slice(y0, y0 + side), slice(x0, x0 + side))
    c.albedo[sym][dark] = ink_albedo
    c.emission[sym][dark] = ink_emission
    if carrier != "sticker":  # the hand holding it, below the quiet zone
        hand_y = min(0.97 * ph, below + 0.30 * pw)
        skin: BGR = [(110, 150, 200), (80, 120, 170), (60, 90, 140)][int(rng.integers(3))]
        c.ellipse((0.5 * pw, hand_y + 0.12 * pw), (0.30 * pw, 0.16 * pw), skin)
        c.ellipse((0.12 * pw, hand_y - 0.02 * pw), (0.06 * pw, 0.13 * pw), skin, angle=15)
    albedo, emission, alpha = c.floats()
    if held is not None and held.glare > 0.0:
        # A specular blob (sun or lamp on glossy glass or lamination); on a phone,
        # also a window-shaped reflection sliding across the screen.
        gx, gy = x0 + held.glare_at[0] * side, y0 + held.glare_at[1] * side
        sigma = held.glare_size * side
        yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
        spec = held.glare * np.exp(-((xx - gx) ** 2 + (0.6 * (yy - gy)) ** 2) / (2 * sigma**2))
        if carrier == "phone":
            d = (xx + 0.7 * yy) - (gx + 0.7 * gy + 0.4 * side)
            spec += 0.35 * held.glare * np.exp(-(d**2) / (2 * (0.08 * side) ** 2))
        emission += (spec * alpha)[..., None]
    return _Plane(albedo, emission, alpha, (float(x0), float(y0), float(side)), ss)


def _composite_plane(c: _Canvas, held: HeldLayout, plane: _Plane, offset: tuple[int, int]) -> None:
    """Warp a flat carrier over the car canvas (in place).

    The homography is fixed by the symbol's four corners, so modules land
    exactly where the ground truth says. It is warped at the plane's
    supersampling and averaged down, which anti-aliases module edges.
    """
    sx, sy, side = plane.symbol
    ss = plane.supersample
    ox, oy = offset
    src = np.float32([[sx, sy], [sx + side, sy], [sx + side, sy + side], [sx, sy + side]])
    dst = np.float32([[x + ox, y + oy] for x, y in held.symbol_quad])
    homography = cv2.getPerspectiveTransform(src, dst)
    ph, pw = plane.alpha.shape
    outline = np.float32([[[0, 0], [pw, 0], [pw, ph], [0, ph]]])
    corners = cv2.perspectiveTransform(outline, homography)[0]
    canvas_h, canvas_w = c.alpha.shape
    bx0 = max(0, math.floor(corners[:, 0].min()) - 1)
    by0 = max(0, math.floor(corners[:, 1].min()) - 1)
    bx1 = min(canvas_w, math.ceil(corners[:, 0].max()) + 1)
    by1 = min(canvas_h, math.ceil(corners[:, 1].max()) + 1)
    if bx1 <= bx0 or by1 <= by0:
        return
    bw, bh = bx1 - bx0, by1 - by0
    to_ss = np.array([[ss, 0, -bx0 * ss], [0, ss, -by0 * ss], [0, 0, 1]], np.float64)
    h_ss = to_ss @ homography

    def warp(img: np.ndarray) -> np.ndarray:
        out = cv2.warpPerspective(
            img, h_ss, (bw * ss, bh * ss), flags=cv2.INTER_LINEAR, borderValue=0
        )
        return cv2.resize(out, (bw, bh), interpolation=cv2.INTER_AREA) if ss > 1 else out

    w_alpha = warp(plane.alpha)
    keep = 1.0 - w_alpha
    region = (slice(by0, by1), slice(bx0, bx1))
    for layer, flat, unit in (
        (c.albedo, plane.albedo, 255.0),
        (c.emission, plane.emission, 255.0 / EMISSION_SCALE),
    ):
        mixed = warp(flat) * unit + keep[..., None] * layer[region]
        layer[region] = cv2.convertScaleAbs(mixed)
    c.alpha[region] = cv2.convertScaleAbs(w_alpha * 255.0 + keep * c.alpha[region])


# --- cars ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sprite:
    """A car ready to paste: premultiplied pixels and inverse coverage.

    Canvas pixel (0, 0) sits at image (x_left - ox, baseline_y - oy).
    """

    pre: np.ndarray  # (h, w, 3) uint8: alpha * pixel value
    inv: np.ndarray  # (h, w, 3) uint8: 255 * (1 - alpha)
    ox: int
    oy: int


def _sprite_bounds(layout: CarLayout) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of a car's sprite in the car frame: body, carriers, blur."""
    xs = [0.0, layout.track.length_px]
    ys = [-layout.height_px, 0.1 * layout.px_per_m]  # the shadow reaches below the tyres
    for held in (layout.code, layout.sticker):
        if held is not None:
            xs += [p[0] for p in held.object_quad]
            ys += [p[1] for p in held.object_quad]
    pad = math.ceil(layout.blur_px / 2) + 4
    return min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad


_WHEEL_RINGS: tuple[tuple[float, BGR], ...] = (
    (1.12, (20, 20, 22)),  # arch
    (1.0, (28, 28, 30)),  # tyre
    (0.58, (150, 150, 152)),  # rim
    (0.18, (90, 90, 92)),  # hub
)


def _draw_car(
    c: _Canvas,
    shape: BodyShape,
    at: Callable[[float, float], Point],
    *,
    paint: BGR,
    ppm: float,
    night: bool,
    rng: np.random.Generator,
) -> BGR:
    """Side view of body, glass, driver, trim, lights and wheels; returns the driver's skin.

    ``at`` maps car metres (rear at 0, y up) to canvas pixels.
    """

    def poly(points: list[Point], albedo: BGR, emission: BGR = DARK, alpha: int = 255) -> None:
        c.poly([at(x, y) for x, y in points], albedo, emission, alpha)

    belt, top, b = shape.belt, shape.height - 0.07, shape.b_pillar_x
    c.ellipse(at(shape.length / 2, 0.0), (0.52 * shape.length * ppm, 0.07 * ppm), DARK, alpha=110)
    poly(shape.outline(), paint)
    poly(
        _box(0.02, shape.clearance + 0.05, shape.length - 0.02, shape.clearance + 0.17),
        (38, 38, 40),
    )
    glass: BGR = (58, 48, 42)
    for pane in [shape.front_window(), *shape.rear_windows()]:
        poly(pane, glass)
    # The driver behind tinted glass: shoulders, face, hair.
    skin: BGR = [(90, 120, 160), (70, 95, 130), (50, 70, 100)][int(rng.integers(3))]
    shirt: BGR = tuple(int(v) for v in rng.integers(20, 140, 3))  # type: ignore[assignment]
    dx = b + 0.32
    poly(
        [(dx - 0.22, belt), (dx - 0.16, belt + 0.2), (dx + 0.16, belt + 0.2), (dx + 0.22, belt)],
        shirt,
    )
    c.ellipse(at(dx, belt + 0.33), (0.095 * ppm, 0.12 * ppm), skin)
    c.ellipse(at(dx - 0.02, belt + 0.40), (0.10 * ppm, 0.06 * ppm), (25, 25, 28))
    # B pillar, door seams and handles, mirror.
    poly(_box(b - 0.05, belt, b + 0.05, top), (30, 30, 32))
    seam: BGR = (max(10, paint[0] - 60), max(10, paint[1] - 60), max(10, paint[2] - 60))
    front_seam = shape.a_pillar_x(belt) - 0.05
    for x in (b, front_seam):
        c.line([at(x, belt), at(x, shape.clearance + 0.18)], seam, 0.012 * ppm)
    for x in (b - 0.35, front_seam - 0.4):
        poly(_box(x, belt - 0.13, x + 0.14, belt - 0.1), seam)
    mx = shape.a_pillar_x(belt) - 0.12
    poly(
        [(mx - 0.12, belt), (mx + 0.05, belt), (mx + 0.06, belt + 0.12), (mx - 0.1, belt + 0.13)],
        paint,
    )
    # Lights glow at night (and burn out, with a bloom).
    y = shape.hood_top - 0.2
    poly(
        [
            (shape.length - 0.25, y),
            (shape.length - 0.01, y - 0.03),
            (shape.length - 0.01, y + 0.08),
            (shape.length - 0.22, y + 0.1),
        ],
        (200, 205, 210),
        (240, 250, 255) if night else DARK,
    )
    y = shape.tail_top - 0.2
    poly(
        [(0.0, y - 0.08), (0.14, y - 0.08), (0.14, y + 0.08), (0.0, y + 0.1)],
        (20, 20, 150),
        (10, 10, 200) if night else DARK,
    )
    for wx in shape.wheel_x:  # arch, tyre, rim, hub
        centre, r = at(wx, shape.wheel_r), shape.wheel_r * ppm
        for k, colour in _WHEEL_RINGS:
            c.ellipse(centre, (k * r, k * r), colour)
    return skin


def build_sprite(scenario: Scenario, car: CarSpec, layout: CarLayout) -> Sprite:
    """Render one car with its driver, code and sticker, motion-blurred and exposed."""
    camera = scenario.camera
    ex = exposure_model(camera.light, camera.weather)
    rng = np.random.default_rng([scenario.seed, 0xCA2, car.car_id])
    shape = BODY_SHAPES[car.body]
    ppm = layout.px_per_m
    length = layout.track.length_px
    rtl = layout.track.motion == "rtl"
    x0, y0, x1, y1 = _sprite_bounds(layout)
    ox, oy = math.ceil(-x0), math.ceil(-y0)
    width, height = ox + math.ceil(x1), oy + math.ceil(y1)

    def at(x_m: float, y_m: float) -> Point:
        """Car metres (front to the right, y up) to canvas pixels, mirrored for right-to-left."""
        x = length - x_m * ppm if rtl else x_m * ppm
        return x + ox, oy - y_m * ppm

    c = _Canvas(height, width)
    night = camera.light == "night"
    skin = _draw_car(c, shape, at, paint=car.colour, ppm=ppm, night=night, rng=rng)
    if layout.code is not None:  # the driver's forearm out to the carrier
        q = layout.code.object_quad
        hand = ((q[2][0] + q[3][0]) / 2 + ox, (q[2][1] + q[3][1]) / 2 + oy)
        elbow = at(shape.b_pillar_x + 0.25, shape.belt + 0.05)
        c.line([elbow, hand], skin, 0.075 * ppm, cover=True)
    # Lit from above: body panels darken towards the sills.
    rel = (np.arange(height, dtype=np.float32) - (oy - layout.height_px)) / layout.height_px
    shade = np.rint(200.0 * (1.12 - 0.4 * np.clip(rel, 0.0, 1.0))).astype(np.uint8)
    shade3 = np.ascontiguousarray(np.broadcast_to(shade[:, None, None], c.albedo.shape))
    cv2.multiply(c.albedo, shade3, dst=c.albedo, scale=1.0 / 200.0)
    if layout.sticker is not None and car.sticker is not None:
        sticker = car.sticker
        plane = _carrier_plane("sticker", sticker.payload, sticker.code_px, None, rng)
        _composite_plane(c, layout.sticker, plane, (ox, oy))
    if layout.code is not None and car.code is not None:
        code = car.code
        plane = _carrier_plane(code.carrier, code.payload, code.code_px, code, rng)
        _composite_plane(c, layout.code, plane, (ox, oy))
    bloom_px = max(1.0, 0.0015 * camera.width) if night else 0.0
    pre, inv = _expose(c, ex, blur_px=layout.blur_px, bloom_px=bloom_px)
    return Sprite(pre=pre, inv=inv, ox=ox, oy=oy)


def _expose(
    c: _Canvas, ex: Exposure, *, blur_px: float, bloom_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Motion-blur, light and expose a canvas: (premultiplied BGR, 255 * (1 - coverage)).

    Works on premultiplied integer layers: the shutter's box blur is linear
    and the camera response affine, so neither needs un-premultiplying.
    ``bloom_px`` > 0 spreads light above saturation around it (a burnt-out
    phone screen or headlamp at night).
    """
    albedo, emission, alpha = c.albedo, c.emission, c.alpha
    if blur_px >= 1.0:  # the shutter integrates the moving car: a box along the motion
        k = (round(blur_px), 1)
        albedo, emission, alpha = (
            cv2.blur(layer, k, borderType=cv2.BORDER_CONSTANT)
            for layer in (albedo, emission, alpha)
        )
    alpha3 = cv2.merge([alpha, alpha, alpha])
    # value = slope * (albedo * illum + emission) + offset * alpha, kept unsaturated in int16.
    value = cv2.addWeighted(
        albedo, ex.slope * ex.illum, emission, ex.slope * EMISSION_SCALE, 0.0, dtype=cv2.CV_16S
    )
    cover = alpha3.astype(np.int16)
    value = cv2.addWeighted(value, 1.0, cover, ex.offset, 0.0, dtype=cv2.CV_16S)
    exposed = cv2.min(value, cover)  # the sensor saturates
    if bloom_px > 0:
        glow = cv2.GaussianBlur(cv2.max(cv2.subtract(value, cover), 0), (0, 0), bloom_px)
        exposed = cv2.addWeighted(exposed, 1.0, glow, 0.5, 0.0, dtype=cv2.CV_16S)
    return cv2.convertScaleAbs(exposed), cv2.bitwise_not(alpha3)


# --- background ------------------------------------------------------------------


def render_background(scenario: Scenario) -> np.ndarray:
    """The static gate scene (BGR uint8), exposed like the cars but without noise."""
    camera = scenario.camera
    baselines = tuple(sorted(lane.baseline for lane in scenario.lanes))
    return _background(camera.resolution, camera.light, camera.weather, baselines, scenario.seed)


@lru_cache(maxsize=4)
def _background(
    resolution: str, light: str, weather: str, baselines: tuple[float, ...], seed: int
) -> np.ndarray:
    width, height = RESOLUTIONS[resolution]
    ex = exposure_model(light, weather)
    night, wet = light == "night", weather == "rain"
    rng = np.random.default_rng([seed, 0xB6])
    s = height / 1080.0  # drawing scale
    kerb = baselines[0] * height - 0.07 * height
    pave_top = kerb - 0.05 * height
    fw, fh = float(width), float(height)
    c = _Canvas(height, width)

    # Power lines sag across the sky (the sky itself is added last, behind everything).
    xs = np.linspace(0.0, fw, 40)
    for i in range(3):
        ys = (0.04 + 0.03 * i) * fh + 0.05 * fh * (1 - 4 * (xs / fw - 0.5) ** 2)
        c.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), (20, 20, 20), 2 * s, cover=True)
    _draw_street(c, rng, fw=fw, fh=fh, pave_top=pave_top, night=night)
    # Pavement tiles and kerb.
    c.poly(_box(0, pave_top, fw, kerb), (160, 168, 175))
    for i in range(0, width, max(8, round(60 * s))):
        c.line([(i, pave_top), (i - 20 * s, kerb)], (130, 138, 145), s)
    c.poly(_box(0, kerb - 0.008 * fh, fw, kerb), (200, 200, 200))
    # Asphalt: grain plus blotches; a wet road is darker and mirrors the sky.
    road = slice(math.ceil(kerb), height)
    rows = height - math.ceil(kerb)
    asphalt = 88.0 + rng.normal(0.0, 7.0, (rows, width)).astype(np.float32)
    coarse = rng.normal(0.0, 5.0, (max(2, rows // 24), max(2, width // 24))).astype(np.float32)
    asphalt += cv2.resize(coarse, (width, rows), interpolation=cv2.INTER_CUBIC)
    c.albedo[road] = np.clip(asphalt * (0.6 if wet else 1.0), 0, 255).astype(np.uint8)[..., None]
    # Lane markings: solid edges, dashed lines between lanes.
    white: BGR = (225, 225, 225)
    c.poly(_box(0, kerb + 0.012 * fh, fw, kerb + 0.018 * fh), white)
    for a, b in itertools.pairwise(baselines):
        y = (a + 0.35 * (b - a)) * fh
        x = -float(rng.uniform(0, 0.28)) * fw
        while x < fw:
            c.poly(_box(x, y, x + 0.16 * fw, y + 0.01 * fh), white)
            x += 0.28 * fw
    near_edge = (baselines[-1] + 0.025) * fh
    if near_edge < fh - 2:
        c.poly(_box(0, near_edge, fw, near_edge + 0.012 * fh), white)
    lamps = _draw_checkpoint(c, fw=fw, fh=fh, kerb=kerb, pave_top=pave_top, night=night)

    albedo, emission, coverage = c.floats()
    # Sky: an emissive gradient behind whatever was drawn over it.
    if night:
        top, low = np.float32((0.020, 0.010, 0.006)), np.float32((0.06, 0.05, 0.045))
    else:
        top, low = np.float32((0.92, 0.74, 0.52)), np.float32((0.95, 0.90, 0.86))
    if wet:  # overcast: grey, and by day as dim as the light on the road
        top, low = 0.3 * top + 0.7 * top.mean(), 0.3 * low + 0.7 * low.mean()
        if not night:
            top, low = top * ex.illum, low * ex.illum
    sky_rows = math.ceil(pave_top)
    t = (np.arange(sky_rows, dtype=np.float32) / max(pave_top, 1.0))[:, None, None]
    emission[:sky_rows] += (1.0 - coverage[:sky_rows, :, None]) * (top + (low - top) * t)
    if wet:
        emission[road] += 0.04 * ex.illum
    illum = np.full((height, width), ex.ambient, np.float32)
    if night:  # light pools on the road under the gate lamps
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        for lx in lamps:
            illum += 0.22 * np.exp(
                -(((xx - lx) / (0.3 * fw)) ** 2 + ((yy - 0.8 * fh) / (0.35 * fh)) ** 2)
            )
    radiance = albedo * illum[..., None] + emission
    return cv2.convertScaleAbs(radiance * ex.slope + ex.offset, alpha=255.0)


def _draw_street(
    c: _Canvas, rng: np.random.Generator, *, fw: float, fh: float, pave_top: float, night: bool
) -> None:
    """Shophouses and trees along the far pavement: narrow, tall, pastel, with signboards."""
    palette: list[BGR] = [
        (150, 200, 230),
        (170, 210, 200),
        (200, 200, 205),
        (120, 180, 225),
        (190, 170, 150),
        (160, 160, 200),
        (140, 200, 180),
    ]
    signs: list[BGR] = [(40, 40, 190), (150, 90, 20), (30, 150, 200), (40, 120, 40)]
    x = -float(rng.uniform(0, 0.05)) * fw
    while x < fw:
        bw = float(rng.uniform(0.06, 0.13)) * fw
        bh = float(rng.uniform(0.16, 0.40)) * fh
        top = pave_top - bh
        if rng.random() < 0.25:  # a tree instead of a house
            c.poly(_box(x + 0.45 * bw, pave_top - 0.4 * bh, x + 0.55 * bw, pave_top), (40, 55, 70))
            for _ in range(6):
                cx = x + bw * float(rng.uniform(0.15, 0.85))
                cy = pave_top - bh * float(rng.uniform(0.45, 0.95))
                r = bw * float(rng.uniform(0.2, 0.35))
                c.ellipse((cx, cy), (r, 0.8 * r), (40, int(rng.integers(60, 110)), 45))
            x += bw
            continue
        c.poly(_box(x, top, x + bw, pave_top), palette[int(rng.integers(len(palette)))])
        c.poly(_box(x, top - 0.012 * fh, x + bw, top), (90, 90, 95))
        floors = max(1, int(bh / (0.09 * fh)))
        for f in range(floors):
            wy = top + (f + 0.25) * bh / (floors + 0.6)
            lit = night and rng.random() < 0.5
            c.poly(
                _box(x + 0.2 * bw, wy, x + 0.8 * bw, wy + 0.045 * fh),
                (60, 55, 50),
                (3, 7, 10) if lit else DARK,
            )
        sign_y = pave_top - 0.09 * fh
        c.poly(
            _box(x + 0.05 * bw, sign_y, x + 0.95 * bw, sign_y + 0.035 * fh),
            signs[int(rng.integers(len(signs)))],
            (3, 3, 10) if night else DARK,
        )
        x += bw


def _draw_checkpoint(
    c: _Canvas, *, fw: float, fh: float, kerb: float, pave_top: float, night: bool
) -> tuple[float, float]:
    """The checkpoint: steel gate frame, banner, lamps, a tent and cones. Returns lamp x."""
    s = fh / 1080.0
    post, beam_top, beam_bottom = 0.018 * fw, 0.03 * fh, 0.11 * fh
    for px in (0.05 * fw, 0.95 * fw - post):
        c.poly(_box(px, beam_top, px + post, kerb), (120, 122, 125))
        for k in range(0, int((kerb - beam_bottom) / (0.06 * fh)), 2):
            yb = beam_bottom + k * 0.06 * fh
            c.poly(_box(px, yb, px + post, yb + 0.03 * fh), (40, 40, 200))
    c.poly(
        _box(0.05 * fw, beam_top, 0.95 * fw, beam_bottom),
        (30, 30, 180),
        (1, 1, 6) if night else DARK,
    )
    font, thick = cv2.FONT_HERSHEY_DUPLEX, max(1, round(2 * s))
    for text, y, size in (
        ("CHOT KIEM DICH PHONG CHONG COVID-19", 0.062, 1.25),
        ("KHAI BAO Y TE - XUAT TRINH MA QR", 0.097, 0.9),
    ):
        (tw, _), _ = cv2.getTextSize(text, font, size * s, thick)
        org = (round((fw - tw) / 2), round(y * fh))
        cv2.putText(c.albedo, text, org, font, size * s, (60, 220, 240), thick, cv2.LINE_AA)
        if night:
            cv2.putText(c.emission, text, org, font, size * s, (6, 18, 22), thick, cv2.LINE_AA)
    lamps = (0.2 * fw, 0.8 * fw)
    for lx in lamps:
        c.ellipse(
            (lx, beam_bottom + 0.012 * fh),
            (0.025 * fw, 0.01 * fh),
            (200, 200, 200),
            emission=(150, 190, 220) if night else DARK,
        )
    tx = 0.62 * fw  # a blue tent with a table, as at every 2021 checkpoint
    c.poly(
        [
            (tx, pave_top - 0.16 * fh),
            (tx + 0.22 * fw, pave_top - 0.16 * fh),
            (tx + 0.24 * fw, pave_top - 0.12 * fh),
            (tx - 0.02 * fw, pave_top - 0.12 * fh),
        ],
        (160, 90, 20),
    )
    for px in (tx, tx + 0.22 * fw):
        c.poly(_box(px, pave_top - 0.12 * fh, px + 4 * s, kerb - 0.01 * fh), (150, 150, 150))
    c.poly(
        _box(tx + 0.04 * fw, pave_top + 0.005 * fh, tx + 0.18 * fw, pave_top + 0.03 * fh),
        (230, 230, 230),
    )
    for k in range(6):
        cx = (0.12 + 0.075 * k) * fw
        c.poly(
            [
                (cx - 0.012 * fw, kerb - 0.01 * fh),
                (cx + 0.012 * fw, kerb - 0.01 * fh),
                (cx + 0.003 * fw, kerb - 0.065 * fh),
                (cx - 0.003 * fw, kerb - 0.065 * fh),
            ],
            (20, 110, 240),
        )
        c.poly(
            [
                (cx - 0.007 * fw, kerb - 0.04 * fh),
                (cx + 0.007 * fw, kerb - 0.04 * fh),
                (cx + 0.005 * fw, kerb - 0.05 * fh),
                (cx - 0.005 * fw, kerb - 0.05 * fh),
            ],
            (235, 235, 235),
        )
    return lamps


# --- per-frame effects -----------------------------------------------------------

_NOISE_PAD = 48
_RAIN_LAYERS = 4


@lru_cache(maxsize=4)
def _noise_bank(width: int, height: int, sigma: float) -> tuple[np.ndarray, ...]:
    """Two banks of sensor noise, split into positive and negative uint8 parts.

    A frame takes a random window of a bank, which costs two saturating adds
    instead of drawing millions of normal samples per frame.
    """
    rng = np.random.default_rng(0x5E45)
    banks: list[np.ndarray] = []
    for _ in range(2):
        n = rng.standard_normal((height + _NOISE_PAD, width + _NOISE_PAD, 3), dtype=np.float32)
        n *= sigma
        banks.append(np.clip(np.rint(n), 0, 255).astype(np.uint8))
        banks.append(np.clip(np.rint(-n), 0, 255).astype(np.uint8))
    return tuple(banks)


@lru_cache(maxsize=4)
def _rain_bank(width: int, height: int, brightness: float) -> tuple[np.ndarray, ...]:
    """Layers of falling-rain streaks (additive), taller than a frame to slide through."""
    rng = np.random.default_rng(0x2A1)
    s = height / 1080.0
    layers = []
    for _ in range(_RAIN_LAYERS):
        layer = np.zeros((height * 2, width), np.uint8)
        for _ in range(int(900 * s * s * 2)):
            x = float(rng.uniform(0, width))
            y = float(rng.uniform(0, 2 * height))
            length = float(rng.uniform(18, 70)) * s
            angle = math.radians(float(rng.uniform(96, 104)))
            value = int(brightness * float(rng.uniform(0.4, 1.0)))
            a = (round(x * _ONE), round(y * _ONE))
            b = (
                round((x + length * math.cos(angle)) * _ONE),
                round((y + length * math.sin(angle)) * _ONE),
            )
            cv2.line(layer, a, b, value, 1, cv2.LINE_AA, _SHIFT)
        layers.append(np.ascontiguousarray(np.repeat(layer[..., None], 3, axis=2)))
    return tuple(layers)


# --- the renderer ----------------------------------------------------------------


class Renderer:
    """Renders any frame of a scenario; cheapest when frames are asked in order.

    Frames are a pure function of (scenario, index): the same scenario always
    gives byte-identical frames, whether rendered in order or at random.
    """

    def __init__(self, scenario: Scenario, *, max_sprites: int = 16) -> None:
        self.scenario = scenario
        self.width, self.height = scenario.camera.size
        self._ex = exposure_model(scenario.camera.light, scenario.camera.weather)
        self._background = render_background(scenario)
        self._layouts = {car.car_id: car_layout(scenario, car) for car in scenario.cars}
        depth = {lane.number: lane.depth_scale for lane in scenario.lanes}
        # Far lanes first so nearer cars are pasted over them.
        self._order = sorted(scenario.cars, key=lambda car: (depth[car.lane], car.car_id))
        self._spans = {car.car_id: self._span(self._layouts[car.car_id]) for car in scenario.cars}
        self._sprites: OrderedDict[int, Sprite] = OrderedDict()
        self._pending: dict[int, Future[Sprite]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._max_sprites = max_sprites
        self._noise = _noise_bank(self.width, self.height, self._ex.noise_dn)
        self._rain = (
            _rain_bank(self.width, self.height, self._ex.rain_dn) if self._ex.rain_dn > 0 else ()
        )

    def _span(self, layout: CarLayout) -> tuple[int, int]:
        """Frames in which any pixel of the car's sprite can be in the image."""
        x_min, _, x_max, _ = _sprite_bounds(layout)
        track = layout.track
        v = track.speed_px_per_frame
        # x_left(f) = a + slope * f; solve for the sprite touching either image edge.
        if track.motion == "ltr":
            a, slope = -v * track.enter_frame - track.length_px, v
        else:
            a, slope = self.width + v * track.enter_frame, -v
        ends = ((-x_max - a) / slope, (self.width - x_min - a) / slope)
        return math.floor(min(ends)) - 1, math.ceil(max(ends)) + 1

    def sprite(self, car: CarSpec) -> Sprite:
        """The car's sprite, built on first use (or by :meth:`prefetch`) and kept while in view."""
        found = self._sprites.get(car.car_id)
        if found is not None:
            self._sprites.move_to_end(car.car_id)
            return found
        pending = self._pending.pop(car.car_id, None)
        if pending is not None:
            sprite = pending.result()
        else:
            sprite = build_sprite(self.scenario, car, self._layouts[car.car_id])
        self._sprites[car.car_id] = sprite
        while len(self._sprites) > self._max_sprites:
            self._sprites.popitem(last=False)
        return sprite

    def prefetch(self, start: int, until: int) -> int:
        """Start building, on a worker thread, the sprites of cars seen in frames ``start..until``.

        A live source calls this ahead of time so that the ~0.1 s a big car
        takes to build never lands on one frame (OpenCV and numpy release
        the GIL while they work). Sprites are pure functions of the
        scenario, so frames stay byte-identical. Returns how many builds
        were started.
        """
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gatecam-sprite")
        started = 0
        for car in self._order:
            first, last = self._spans[car.car_id]
            wanted = first <= until and last >= start
            if wanted and car.car_id not in self._sprites and car.car_id not in self._pending:
                layout = self._layouts[car.car_id]
                self._pending[car.car_id] = self._pool.submit(
                    build_sprite, self.scenario, car, layout
                )
                started += 1
        return started

    def close(self) -> None:
        """Stop the prefetch worker, if one was started."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()

    def render(self, index: int) -> np.ndarray:
        """Frame ``index`` as a (height, width, 3) BGR uint8 array."""
        frame = self._background.copy()
        for car in self._order:
            first, last = self._spans[car.car_id]
            if first <= index <= last:
                self._paste(frame, car, index)
            elif index > last:
                self._sprites.pop(car.car_id, None)
                self._pending.pop(car.car_id, None)
        rng = np.random.default_rng([self.scenario.seed, 0xF4, index])
        if self._rain:
            layer = self._rain[int(rng.integers(len(self._rain)))]
            dy = int(rng.integers(self.height))
            cv2.add(frame, layer[dy : dy + self.height], dst=frame)
        bank = 2 * int(rng.integers(2))
        y, x = (int(v) for v in rng.integers(0, _NOISE_PAD, 2))
        window = (slice(y, y + self.height), slice(x, x + self.width))
        cv2.add(frame, self._noise[bank][window], dst=frame)
        cv2.subtract(frame, self._noise[bank + 1][window], dst=frame)
        return frame

    def _paste(self, frame: np.ndarray, car: CarSpec, index: int) -> None:
        layout = self._layouts[car.car_id]
        sprite = self.sprite(car)
        x0 = layout.track.x_left(index) - sprite.ox
        y0 = layout.track.baseline_y - sprite.oy
        h, w = sprite.inv.shape[:2]
        fx0, fy0 = max(0, x0), max(0, y0)
        fx1, fy1 = min(self.width, x0 + w), min(self.height, y0 + h)
        if fx1 <= fx0 or fy1 <= fy0:
            return
        roi = frame[fy0:fy1, fx0:fx1]
        sx, sy = fx0 - x0, fy0 - y0
        part = (slice(sy, sy + fy1 - fy0), slice(sx, sx + fx1 - fx0))
        cv2.multiply(roi, sprite.inv[part], dst=roi, scale=1.0 / 255.0)
        cv2.add(roi, sprite.pre[part], dst=roi)
