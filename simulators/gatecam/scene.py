"""The gate scene as data: camera, lanes, cars and the codes their drivers hold.

Everything here is pure (no pixels, no I/O) so a scenario can be built,
saved, compared and turned into ground truth without rendering a frame.

Scale. The camera frames ``Camera.fov_m`` metres horizontally at the near
lane (default 4 m, one 4.5 m car fills the width), so a pixel covers
``fov_m / width`` metres there: 2.08 mm at 1080p, 3.13 mm at 720p. A lane
further away has ``depth_scale < 1`` and its pixels cover ``1 / depth_scale``
times more. Speeds, blur lengths and car sizes follow from that scale; the
code size is given in pixels (what a decoder sees), so the truth also reports
the physical side it implies (``code_m``).

Motion blur. A car moving at ``v`` m/s during an exposure of ``t`` seconds
smears every point of it over ``v * t / metres_per_px`` pixels along the
motion: that is the box kernel the renderer applies (``blur_px``).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import segno
from pydantic import BaseModel, ConfigDict, Field, model_validator

Light = Literal["day", "night"]
Weather = Literal["clear", "rain"]
ResolutionName = Literal["720p", "1080p"]
Carrier = Literal["phone", "paper"]
Direction = Literal["in", "out"]
Motion = Literal["ltr", "rtl"]
BodyStyle = Literal["sedan", "hatchback", "suv", "van"]
CodeRole = Literal["pass", "distractor"]

RESOLUTIONS: dict[str, tuple[int, int]] = {"720p": (1280, 720), "1080p": (1920, 1080)}
QUIET_ZONE_MODULES = 4  # ISO/IEC 18004 quiet zone
KMH = 1000.0 / 3600.0  # m/s per km/h
# What an auto-exposing gate camera settles on: short by day, longer at night.
DEFAULT_EXPOSURE_MS: dict[str, float] = {"day": 1.0, "night": 4.0}

Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]
FrameRange = tuple[int, int]  # inclusive
Range = Annotated[tuple[float, float], Field(description="(low, high), inclusive")]

_FROZEN = ConfigDict(extra="forbid", frozen=True)


# --- camera and lanes --------------------------------------------------------


class Camera(BaseModel):
    """What the camera is set to and what it looks at."""

    model_config = _FROZEN

    resolution: ResolutionName = "1080p"
    fps: float = Field(30.0, ge=1.0, le=120.0)
    exposure_ms: float = Field(
        1.0,
        gt=0.0,
        le=1000.0,
        description="shutter time, sets the motion-blur length; default by light (1 ms / 4 ms)",
    )
    fov_m: float = Field(4.0, ge=1.0, le=40.0, description="horizontal view at the near lane")
    light: Light = "day"
    weather: Weather = "clear"

    @model_validator(mode="before")
    @classmethod
    def _auto_exposure(cls, data: object) -> object:
        # Unset, the shutter is what an auto-exposing camera settles on for the light.
        if isinstance(data, dict) and data.get("exposure_ms") is None:
            light = data.get("light", "day")
            data = {**data, "exposure_ms": DEFAULT_EXPOSURE_MS.get(light, 1.0)}
        return data

    @model_validator(mode="after")
    def _exposure_fits_frame(self) -> Camera:
        if self.exposure_ms > 1000.0 / self.fps:
            raise ValueError(
                f"exposure {self.exposure_ms} ms is longer than a frame at {self.fps} fps"
            )
        return self

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return RESOLUTIONS[self.resolution]

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return self.size[0]

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return self.size[1]


class Lane(BaseModel):
    """A traffic lane as the camera sees it (side view: cars cross horizontally)."""

    model_config = _FROZEN

    number: int = Field(ge=1, le=9)
    direction: Direction
    motion: Motion = Field(description="ltr: cars move left to right in the image")
    depth_scale: float = Field(gt=0.2, le=1.0, description="apparent size relative to lane 1")
    baseline: float = Field(gt=0.3, le=1.0, description="tyre line, as a fraction of height")


DEFAULT_LANES: tuple[Lane, ...] = (
    Lane(number=1, direction="in", motion="ltr", depth_scale=1.0, baseline=0.96),
    Lane(number=2, direction="out", motion="rtl", depth_scale=0.7, baseline=0.56),
)


def metres_per_px(camera: Camera, lane: Lane) -> float:
    """Metres one pixel covers at ``lane``'s distance (the scale of the scene)."""
    return camera.fov_m / camera.width / lane.depth_scale


# --- cars and codes ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BodyShape:
    """Side profile of a body style, in metres, front to the right, y up from the road."""

    length: float
    height: float
    clearance: float
    wheel_r: float
    wheel_x: tuple[float, float]
    tail_top: float
    rear_glass_x: float
    roof_rear_x: float
    roof_front_x: float
    windscreen_x: float
    hood_top: float
    belt: float
    b_pillar_x: float
    rear_panes: int = 1

    def a_pillar_x(self, y: float) -> float:
        """x of the windscreen pillar at height ``y``."""
        t = (y - self.hood_top) / (self.height - self.hood_top)
        return self.windscreen_x + t * (self.roof_front_x - self.windscreen_x)

    def c_pillar_x(self, y: float) -> float:
        """x of the rear pillar at height ``y``."""
        t = (y - self.tail_top) / (self.height - self.tail_top)
        return self.rear_glass_x + t * (self.roof_rear_x - self.rear_glass_x)

    def outline(self) -> list[Point]:
        """Body silhouette polygon (without wheels and mirror)."""
        c = self.clearance
        return [
            (0.04, c + 0.06),
            (0.0, c + 0.28),
            (0.0, self.tail_top - 0.04),
            (0.05, self.tail_top),
            (self.rear_glass_x, self.tail_top),
            (self.roof_rear_x, self.height),
            (self.roof_front_x, self.height),
            (self.windscreen_x, self.hood_top),
            (self.length - 0.12, self.hood_top - 0.05),
            (self.length, self.hood_top - 0.16),
            (self.length, c + 0.24),
            (self.length - 0.05, c + 0.06),
        ]

    def front_window(self) -> list[Point]:
        """The driver's side window (the one a code is held up to)."""
        top = self.height - 0.07
        bottom = self.belt
        x0 = self.b_pillar_x + 0.05
        return [
            (x0, bottom),
            (x0, top),
            (self.a_pillar_x(top) - 0.05, top),
            (self.a_pillar_x(bottom) - 0.05, bottom),
        ]

    def rear_windows(self) -> list[list[Point]]:
        """Side windows behind the B pillar."""
        top = self.height - 0.07
        bottom = self.belt
        x_start = max(self.c_pillar_x(bottom), 0.05) + 0.1
        x_end = self.b_pillar_x - 0.05
        pane = (x_end - x_start) / self.rear_panes
        panes: list[list[Point]] = []
        for i in range(self.rear_panes):
            a = x_start + i * pane + (0.04 if i else 0.0)
            b = x_start + (i + 1) * pane - (0.04 if i < self.rear_panes - 1 else 0.0)
            a_top = max(a, self.c_pillar_x(top) + 0.08) if i == 0 else a
            panes.append([(a, bottom), (a_top, top), (b, top), (b, bottom)])
        return panes

    def driver_window_centre(self) -> Point:
        """Centre of the driver's window: where a held code is shown."""
        pts = self.front_window()
        return sum(p[0] for p in pts) / 4.0, sum(p[1] for p in pts) / 4.0


BODY_SHAPES: dict[str, BodyShape] = {
    "sedan": BodyShape(
        4.55, 1.46, 0.16, 0.32, (0.95, 3.65), 0.98, 0.55, 1.35, 2.75, 3.45, 0.88, 0.98, 2.15
    ),
    "hatchback": BodyShape(
        3.95, 1.50, 0.16, 0.30, (0.70, 3.15), 1.05, 0.05, 0.22, 2.35, 3.00, 0.88, 1.00, 1.65
    ),
    "suv": BodyShape(
        4.70, 1.78, 0.22, 0.37, (0.95, 3.75), 1.20, 0.05, 0.18, 3.00, 3.65, 1.05, 1.15, 2.30
    ),
    "van": BodyShape(
        5.20,
        2.10,
        0.20,
        0.36,
        (1.05, 4.35),
        2.00,
        0.0,
        0.05,
        4.10,
        4.75,
        1.15,
        1.20,
        3.75,
        rear_panes=3,
    ),
}

CAR_COLOURS: tuple[tuple[int, int, int], ...] = (  # BGR albedo, 0..255
    (232, 232, 230),  # white
    (190, 192, 194),  # silver
    (40, 40, 42),  # black
    (110, 112, 114),  # grey
    (40, 40, 170),  # red
    (140, 80, 30),  # blue
    (60, 120, 60),  # green (taxi)
    (120, 170, 205),  # beige
)


class HeldCode(BaseModel):
    """A QR code shown at the driver's window: a phone screen or a printed sheet."""

    model_config = _FROZEN

    payload: str = Field(min_length=1, max_length=2000)
    carrier: Carrier = "phone"
    code_px: float = Field(ge=20.0, le=800.0, description="symbol side, frontal, in pixels")
    tilt_deg: float = Field(0.0, ge=-60.0, le=60.0, description="about the horizontal axis")
    yaw_deg: float = Field(0.0, ge=-60.0, le=60.0, description="about the vertical axis")
    roll_deg: float = Field(0.0, ge=-45.0, le=45.0, description="in the image plane")
    glare: float = Field(0.0, ge=0.0, le=3.0, description="specular highlight strength, 0 none")
    glare_at: tuple[float, float] = Field(
        (0.5, 0.5), description="highlight centre on the symbol, fractions of its side"
    )
    glare_size: float = Field(0.3, gt=0.0, le=2.0, description="highlight radius / symbol side")


class Sticker(BaseModel):
    """A code stuck on the car body (e.g. a toll or shop URL): not a pass token."""

    model_config = _FROZEN

    payload: str = Field(min_length=1, max_length=2000)
    code_px: float = Field(ge=20.0, le=800.0)
    at: float = Field(0.3, ge=0.0, le=1.0, description="position along the body, rear = 0")


class CarSpec(BaseModel):
    """One car crossing the view at constant speed."""

    model_config = _FROZEN

    car_id: int = Field(ge=0)
    lane: int = Field(ge=1, le=9)
    enter_s: float = Field(description="when its leading edge crosses into the view")
    speed_kmh: float = Field(gt=0.0, le=150.0)
    body: BodyStyle = "sedan"
    colour: tuple[int, int, int] = (190, 192, 194)
    code: HeldCode | None = None
    sticker: Sticker | None = None


class Scenario(BaseModel):
    """A clip: camera, lanes and cars. Same scenario ⇒ byte-identical frames."""

    model_config = _FROZEN

    name: str = ""
    seed: int = 0
    seconds: float = Field(gt=0.0, le=24 * 3600.0)
    camera: Camera = Camera()
    lanes: tuple[Lane, ...] = DEFAULT_LANES
    cars: tuple[CarSpec, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        numbers = [lane.number for lane in self.lanes]
        if not numbers or len(set(numbers)) != len(numbers):
            raise ValueError("lanes must be a non-empty list with distinct numbers")
        ids = [car.car_id for car in self.cars]
        if len(set(ids)) != len(ids):
            raise ValueError("car ids must be distinct")
        for car in self.cars:
            if car.lane not in numbers:
                raise ValueError(f"car {car.car_id} is on lane {car.lane}, which does not exist")
        return self

    @property
    def n_frames(self) -> int:
        """Number of frames in the clip."""
        return max(1, round(self.seconds * self.camera.fps))

    def lane(self, number: int) -> Lane:
        """The lane with this number."""
        for lane in self.lanes:
            if lane.number == number:
                return lane
        raise KeyError(number)


# --- geometry shared by the renderer and the ground truth ---------------------


@lru_cache(maxsize=256)
def qr_matrix(payload: str) -> tuple[tuple[bool, ...], ...]:
    """Module matrix of ``payload`` at ECC level M (True = dark), without quiet zone."""
    qr = segno.make_qr(payload, error="m", boost_error=False)
    return tuple(tuple(bool(v) for v in row) for row in qr.matrix)


def qr_version(payload: str) -> int:
    """QR version segno picks for ``payload`` at ECC level M."""
    return (len(qr_matrix(payload)) - 17) // 4


@dataclass(frozen=True, slots=True)
class HeldLayout:
    """Where a held (or stuck) code sits, in the car's pixel frame.

    The car's pixel frame has x from the car's left end in the image and y
    from the tyre line, negative upwards. ``object_quad`` outlines the whole
    carrier (phone body, sheet, label) and ``symbol_quad`` the QR symbol
    without its quiet zone (top-left, top-right, bottom-right, bottom-left),
    both after perspective.
    """

    modules: int
    object_quad: Quad
    symbol_quad: Quad


@dataclass(frozen=True, slots=True)
class Track:
    """Where a car is in the image, frame by frame (constant speed, one lane)."""

    enter_frame: float
    speed_px_per_frame: float
    length_px: float
    motion: Motion
    frame_width: int
    baseline_y: int

    def x_left(self, frame: int) -> int:
        """Image x of the car's left end at ``frame``, rounded as it is drawn."""
        travelled = self.speed_px_per_frame * (frame - self.enter_frame)
        x = travelled - self.length_px if self.motion == "ltr" else self.frame_width - travelled
        return math.floor(x + 0.5)

    def place(self, quad: Quad, frame: int) -> Quad:
        """``quad`` given in the car frame, in image pixels at ``frame``."""
        dx = self.x_left(frame)
        dy = self.baseline_y
        a, b, c, d = ((x + dx, y + dy) for x, y in quad)
        return a, b, c, d


@dataclass(frozen=True, slots=True)
class CarLayout:
    """A car's pixel geometry at its lane's scale."""

    px_per_m: float
    height_px: float
    blur_px: float
    track: Track
    code: HeldLayout | None
    sticker: HeldLayout | None

    def body_box(self, frame: int) -> tuple[float, float, float, float]:
        """Axis-aligned box of the body (x0, y0, x1, y1) in image pixels at ``frame``."""
        x = self.track.x_left(frame)
        y = self.track.baseline_y
        return x, y - self.height_px, x + self.track.length_px, float(y)


_Matrix = tuple[tuple[float, ...], ...]


def _rotation(tilt: float, yaw: float, roll: float) -> _Matrix:
    """R = Rz(roll) · Ry(yaw) · Rx(tilt), angles in degrees."""
    cx, sx = math.cos(math.radians(tilt)), math.sin(math.radians(tilt))
    cy, sy = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    cz, sz = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    rx = ((1.0, 0.0, 0.0), (0.0, cx, -sx), (0.0, sx, cx))
    ry = ((cy, 0.0, sy), (0.0, 1.0, 0.0), (-sy, 0.0, cy))
    rz = ((cz, -sz, 0.0), (sz, cz, 0.0), (0.0, 0.0, 1.0))

    def mul(a: _Matrix, b: _Matrix) -> _Matrix:
        return tuple(
            tuple(sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)) for i in range(3)
        )

    return mul(rz, mul(ry, rx))


def project_plane(
    points: Sequence[Point], *, tilt: float, yaw: float, roll: float, focal_px: float
) -> list[Point]:
    """Project points of a plane facing the camera after rotating it.

    ``points`` are frontal offsets (pixels) from the plane's centre, which
    stays at distance ``focal_px`` so that an unrotated plane keeps its size.
    Returns the image offsets from the centre's projection.
    """
    r = _rotation(tilt, yaw, roll)
    out: list[Point] = []
    for u, v in points:
        x = r[0][0] * u + r[0][1] * v
        y = r[1][0] * u + r[1][1] * v
        z = r[2][0] * u + r[2][1] * v + focal_px
        out.append((focal_px * x / z, focal_px * y / z))
    return out


def carrier_geometry(
    carrier: Carrier | Literal["sticker"], symbol_px: float, modules: int
) -> tuple[tuple[float, float], Point]:
    """Frontal size of a carrier and where the symbol sits on it.

    Returns ``((width, height), (symbol_dx, symbol_dy))`` in pixels: a phone
    shows the code below an app header with a thumb's room underneath, a
    sheet has a printed caption under it, a sticker is the code and its
    quiet zone on a white label.
    """
    module = symbol_px / modules
    with_qz = symbol_px + 2 * QUIET_ZONE_MODULES * module
    if carrier == "phone":
        width = with_qz * 1.16
        top = with_qz * 0.30  # app header above the code
        bottom = with_qz * 0.55  # text, button and thumb below
    elif carrier == "paper":
        width = with_qz * 1.22
        top = with_qz * 0.10
        bottom = with_qz * 0.45
    else:
        width = with_qz * 1.04
        top = bottom = with_qz * 0.02
    height = top + with_qz + bottom
    symbol_dy = -height / 2 + top + with_qz / 2
    return (width, height), (0.0, symbol_dy)


def _held_layout(
    *,
    payload: str,
    carrier: Carrier | Literal["sticker"],
    code_px: float,
    centre: Point,
    tilt: float,
    yaw: float,
    roll: float,
    focal_px: float,
) -> HeldLayout:
    modules = len(qr_matrix(payload))
    (w, h), (sx, sy) = carrier_geometry(carrier, code_px, modules)
    half = code_px / 2
    obj = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    sym = [
        (sx - half, sy - half),
        (sx + half, sy - half),
        (sx + half, sy + half),
        (sx - half, sy + half),
    ]
    projected = project_plane(obj + sym, tilt=tilt, yaw=yaw, roll=roll, focal_px=focal_px)
    cx, cy = centre
    moved = [(x + cx, y + cy) for x, y in projected]
    return HeldLayout(
        modules=modules,
        object_quad=(moved[0], moved[1], moved[2], moved[3]),
        symbol_quad=(moved[4], moved[5], moved[6], moved[7]),
    )


def car_layout(scenario: Scenario, car: CarSpec) -> CarLayout:
    """Pixel geometry of ``car``: size, motion, blur and where its codes are."""
    camera = scenario.camera
    lane = scenario.lane(car.lane)
    mpp = metres_per_px(camera, lane)
    ppm = 1.0 / mpp
    shape = BODY_SHAPES[car.body]
    length_px = shape.length * ppm
    speed_mps = car.speed_kmh * KMH
    focal = 1.2 * camera.width  # a ~45° lens: mild keystone on tilted codes

    def to_car_px(x_m: float, y_m: float) -> Point:
        x = x_m * ppm if lane.motion == "ltr" else length_px - x_m * ppm
        return x, -y_m * ppm

    baseline_y = round(lane.baseline * camera.height)
    code_layout = None
    if car.code is not None:
        code = car.code
        cx, cy = to_car_px(*shape.driver_window_centre())
        modules = len(qr_matrix(code.payload))
        _, (_, symbol_dy) = carrier_geometry(code.carrier, code.code_px, modules)
        # Keep the symbol inside the picture: a large sheet is held lower.
        top_margin = 0.03 * camera.height
        cy = max(cy, top_margin - baseline_y - symbol_dy + code.code_px / 2)
        code_layout = _held_layout(
            payload=code.payload,
            carrier=code.carrier,
            code_px=code.code_px,
            centre=(cx, cy),
            tilt=code.tilt_deg,
            yaw=code.yaw_deg,
            roll=code.roll_deg,
            focal_px=focal,
        )
    sticker_layout = None
    if car.sticker is not None:
        sticker = car.sticker
        x_m = 0.15 + sticker.at * (shape.length - 0.3)
        y_m = (shape.clearance + shape.belt) / 2 + 0.08
        sticker_layout = _held_layout(
            payload=sticker.payload,
            carrier="sticker",
            code_px=sticker.code_px,
            centre=to_car_px(x_m, y_m),
            tilt=0.0,
            yaw=0.0,
            roll=0.0,
            focal_px=focal,
        )
    track = Track(
        enter_frame=car.enter_s * camera.fps,
        speed_px_per_frame=speed_mps / camera.fps * ppm,
        length_px=length_px,
        motion=lane.motion,
        frame_width=camera.width,
        baseline_y=baseline_y,
    )
    return CarLayout(
        px_per_m=ppm,
        height_px=shape.height * ppm,
        blur_px=speed_mps * camera.exposure_ms / 1000.0 * ppm,
        track=track,
        code=code_layout,
        sticker=sticker_layout,
    )


def quad_box(quad: Quad) -> tuple[float, float, float, float]:
    """Axis-aligned box (x0, y0, x1, y1) of a quad."""
    xs = [p[0] for p in quad]
    ys = [p[1] for p in quad]
    return min(xs), min(ys), max(xs), max(ys)


def _quad_area(quad: Quad) -> float:
    s = 0.0
    for i in range(4):
        x0, y0 = quad[i]
        x1, y1 = quad[(i + 1) % 4]
        s += x0 * y1 - x1 * y0
    return abs(s) / 2.0


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# --- ground truth --------------------------------------------------------------


class CodeTruth(BaseModel):
    """What a decoder could have read from one code, and when."""

    model_config = _FROZEN

    payload: str
    role: CodeRole
    carrier: Literal["phone", "paper", "sticker"]
    version: int
    modules: int
    code_px: float = Field(description="symbol side, frontal, pixels")
    code_m: float = Field(description="physical symbol side the scale implies, metres")
    apparent_px: float = Field(description="sqrt of the symbol's projected area")
    module_px: float = Field(description="shortest projected symbol side / modules")
    blur_modules: float = Field(description="motion blur length in modules")
    tilt_deg: float = 0.0
    yaw_deg: float = 0.0
    glare: float = 0.0
    quad: Quad = Field(description="symbol corners in the car frame; see CarTruth.quad_at")
    in_frame: list[FrameRange] = Field(description="frames with the whole symbol inside the image")
    visible: list[FrameRange] = Field(description="in_frame and not hidden by a nearer car")

    @property
    def visible_frames(self) -> int:
        """Number of frames in which the whole symbol is visible."""
        return sum(b - a + 1 for a, b in self.visible)


class CarTruth(BaseModel):
    """Ground truth for one car of a clip (one JSON line of a truth file)."""

    model_config = _FROZEN

    car_id: int
    lane: int
    direction: Direction
    motion: Motion
    body: BodyStyle
    speed_kmh: float
    speed_px_per_frame: float
    metres_per_px: float
    exposure_ms: float
    blur_px: float
    enter_frame: float
    length_px: float
    baseline_y: int
    frame_width: int
    in_view: FrameRange | None = Field(description="frames showing any part of the car")
    token: CodeTruth | None
    distractor: CodeTruth | None

    def quad_at(self, frame: int, code: Literal["token", "distractor"] = "token") -> Quad:
        """Symbol corners in image pixels at ``frame`` (as drawn; blur aside)."""
        truth = self.token if code == "token" else self.distractor
        if truth is None:
            raise ValueError(f"car {self.car_id} has no {code} code")
        track = Track(
            enter_frame=self.enter_frame,
            speed_px_per_frame=self.speed_px_per_frame,
            length_px=self.length_px,
            motion=self.motion,
            frame_width=self.frame_width,
            baseline_y=self.baseline_y,
        )
        return track.place(truth.quad, frame)


def _ranges(frames: Sequence[int]) -> list[FrameRange]:
    out: list[FrameRange] = []
    for f in frames:
        if out and out[-1][1] == f - 1:
            out[-1] = (out[-1][0], f)
        else:
            out.append((f, f))
    return out


def _frames_in_view(layout: CarLayout, n_frames: int) -> range:
    """Frames that may show part of the body (a superset: callers filter)."""
    track = layout.track
    first = math.floor(track.enter_frame) - 1
    last = math.ceil(
        track.enter_frame + (track.frame_width + track.length_px) / track.speed_px_per_frame
    )
    return range(max(0, first), min(n_frames - 1, last + 1) + 1)


@dataclass(frozen=True, slots=True)
class _Shown:
    """One code as the truth describes it, whatever carries it."""

    role: CodeRole
    carrier: Literal["phone", "paper", "sticker"]
    payload: str
    code_px: float
    tilt_deg: float
    yaw_deg: float
    glare: float
    held: HeldLayout


def _shown_codes(car: CarSpec, layout: CarLayout) -> dict[CodeRole, _Shown]:
    shown: dict[CodeRole, _Shown] = {}
    if car.code is not None and layout.code is not None:
        c = car.code
        shown["pass"] = _Shown(
            "pass", c.carrier, c.payload, c.code_px, c.tilt_deg, c.yaw_deg, c.glare, layout.code
        )
    if car.sticker is not None and layout.sticker is not None:
        s = car.sticker
        shown["distractor"] = _Shown(
            "distractor", "sticker", s.payload, s.code_px, 0.0, 0.0, 0.0, layout.sticker
        )
    return shown


def ground_truth(scenario: Scenario) -> list[CarTruth]:
    """Per-car ground truth of a clip: when each car and each of its codes can be seen.

    A code is *visible* in a frame when its whole symbol is inside the image
    and no car of a nearer lane (body or held carrier) overlaps its box.
    """
    camera = scenario.camera
    width, height = camera.size
    n = scenario.n_frames
    layouts = {car.car_id: car_layout(scenario, car) for car in scenario.cars}
    depth = {lane.number: lane.depth_scale for lane in scenario.lanes}

    def occluders(frame: int, behind: CarSpec) -> list[tuple[float, float, float, float]]:
        boxes = []
        for other in scenario.cars:
            if depth[other.lane] <= depth[behind.lane]:
                continue
            lay = layouts[other.car_id]
            boxes.append(lay.body_box(frame))
            if lay.code is not None:
                boxes.append(quad_box(lay.track.place(lay.code.object_quad, frame)))
        return boxes

    def code_truth(car: CarSpec, layout: CarLayout, shown: _Shown, frames: range) -> CodeTruth:
        in_frame: list[int] = []
        visible: list[int] = []
        for f in frames:
            box = quad_box(layout.track.place(shown.held.symbol_quad, f))
            if box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height:
                in_frame.append(f)
                if not any(_overlaps(box, o) for o in occluders(f, car)):
                    visible.append(f)
        q = shown.held.symbol_quad
        module = min(math.dist(q[i], q[(i + 1) % 4]) for i in range(4)) / shown.held.modules
        return CodeTruth(
            payload=shown.payload,
            role=shown.role,
            carrier=shown.carrier,
            version=(shown.held.modules - 17) // 4,
            modules=shown.held.modules,
            code_px=shown.code_px,
            code_m=shown.code_px / layout.px_per_m,
            apparent_px=math.sqrt(_quad_area(q)),
            module_px=module,
            blur_modules=layout.blur_px / module,
            tilt_deg=shown.tilt_deg,
            yaw_deg=shown.yaw_deg,
            glare=shown.glare,
            quad=q,
            in_frame=_ranges(in_frame),
            visible=_ranges(visible),
        )

    out: list[CarTruth] = []
    for car in scenario.cars:
        layout = layouts[car.car_id]
        lane = scenario.lane(car.lane)
        frames = _frames_in_view(layout, n)
        seen = [f for f in frames if (b := layout.body_box(f))[2] > 0 and b[0] < width]
        codes = {
            role: code_truth(car, layout, shown, frames)
            for role, shown in _shown_codes(car, layout).items()
        }
        out.append(
            CarTruth(
                car_id=car.car_id,
                lane=car.lane,
                direction=lane.direction,
                motion=lane.motion,
                body=car.body,
                speed_kmh=car.speed_kmh,
                speed_px_per_frame=layout.track.speed_px_per_frame,
                metres_per_px=1.0 / layout.px_per_m,
                exposure_ms=camera.exposure_ms,
                blur_px=layout.blur_px,
                enter_frame=layout.track.enter_frame,
                length_px=layout.track.length_px,
                baseline_y=layout.track.baseline_y,
                frame_width=width,
                in_view=(seen[0], seen[-1]) if seen else None,
                token=codes.get("pass"),
                distractor=codes.get("distractor"),
            )
        )
    return out


def write_truth(truths: Sequence[CarTruth], path: str | Path) -> None:
    """Write ground truth as JSON lines, one car per line."""
    with Path(path).open("w", encoding="utf-8") as fh:
        for truth in truths:
            fh.write(truth.model_dump_json() + "\n")


def read_truth(path: str | Path) -> list[CarTruth]:
    """Read a truth file written by :func:`write_truth`."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [CarTruth.model_validate_json(line) for line in lines if line.strip()]


# --- random traffic ----------------------------------------------------------------


class TrafficParams(BaseModel):
    """Knobs of the random traffic generator (the CLI's options)."""

    model_config = _FROZEN

    seconds: float = Field(30.0, gt=0.0, le=24 * 3600.0)
    seed: int = 0
    camera: Camera = Camera()
    lanes: tuple[Lane, ...] = DEFAULT_LANES
    cars_per_minute: float = Field(20.0, gt=0.0, le=600.0, description="all lanes together")
    speed_kmh: Range = (10.0, 60.0)
    code_px: Range = (80.0, 300.0)
    phone_share: float = Field(0.7, ge=0.0, le=1.0, description="phones vs printed sheets")
    glare_share: float = Field(0.25, ge=0.0, le=1.0)
    distractor_share: float = Field(0.15, ge=0.0, le=1.0, description="cars with a URL sticker")
    max_tilt_deg: float = Field(25.0, ge=0.0, le=60.0)
    max_yaw_deg: float = Field(30.0, ge=0.0, le=60.0)
    max_roll_deg: float = Field(12.0, ge=0.0, le=45.0)
    min_gap_m: float = Field(2.0, ge=0.0, le=100.0, description="bumper gap in one lane")

    @model_validator(mode="after")
    def _ranges_ordered(self) -> TrafficParams:
        for name in ("speed_kmh", "code_px"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name}: need 0 < low <= high, got {low}-{high}")
        if self.speed_kmh[0] < 1.0 or self.speed_kmh[1] > 150.0:
            raise ValueError("speed_kmh must lie within 1-150 km/h")
        if self.code_px[0] < 20.0 or self.code_px[1] > 800.0:
            raise ValueError("code_px must lie within 20-800 px")
        return self


def earliest_entry(
    *,
    prev_enter_s: float,
    prev_speed_mps: float,
    prev_length_m: float,
    speed_mps: float,
    view_m: float,
    gap_m: float,
) -> float:
    """Earliest entry time behind a car in the same lane keeping ``gap_m`` while both are seen.

    The gap between two cars at constant speeds is linear in time, so it is
    enough to hold it when the follower enters and when the leader's tail
    leaves the view.
    """
    tail_clear = prev_enter_s + (prev_length_m + gap_m) / prev_speed_mps
    leader_gone = prev_enter_s + (view_m + prev_length_m) / prev_speed_mps
    return max(tail_clear, leader_gone - (view_m - gap_m) / speed_mps)


def throwaway_tokens(n: int, seed: int = 0) -> list[str]:
    """``n`` real pass tokens signed with a key derived from ``seed`` (for standalone use).

    The same seed gives the same key and tokens; :func:`throwaway_keyring`
    verifies them. Validity runs from 2025-01-01 to 2100.
    """
    from contract.token import issue_token

    key = _throwaway_key(seed)
    rng = random.Random(f"gatecam-tokens:{seed}")
    ids = rng.sample(range(1, 2**32 - 1), n)
    return [
        issue_token(key, declaration_id=i, issued_at=1735689600, expires_at=4102444800) for i in ids
    ]


def throwaway_keyring(seed: int = 0):
    """Keyring that verifies :func:`throwaway_tokens` made with the same seed."""
    from contract.token import Keyring

    return Keyring.from_keys([_throwaway_key(seed).public()])


def _throwaway_key(seed: int):
    from contract.token import SigningKey

    return SigningKey.from_seed(200, hashlib.sha256(f"gatecam-key:{seed}".encode()).digest())


DISTRACTOR_URLS = (
    "https://vetc.com.vn/tra-cuu?the=",
    "https://epass.vdtc.com.vn/xe/",
    "https://zalo.me/g/",
    "https://garaoto.vn/bao-duong/",
)


def build_scenario(params: TrafficParams, payloads: Sequence[str] | None = None) -> Scenario:
    """Random but seeded traffic: Poisson arrivals per lane, with gaps kept between cars.

    ``payloads`` are the pass tokens the drivers show, in arrival order; when
    ``None``, throwaway tokens are made from the seed. Too few payloads for
    the cars the seed produces is an error that says how many are needed.
    """
    rng = random.Random(f"gatecam-traffic:{params.seed}")
    camera = params.camera
    rate_per_lane = params.cars_per_minute / 60.0 / len(params.lanes)
    arrivals: list[tuple[float, Lane, float, str]] = []
    for lane in sorted(params.lanes, key=lambda ln: ln.number):
        view_m = metres_per_px(camera, lane) * camera.width
        t = rng.expovariate(rate_per_lane) * 0.5
        prev: tuple[float, float, float] | None = None
        while t < params.seconds:
            speed = rng.uniform(*params.speed_kmh) * KMH
            body = rng.choices(list(BODY_SHAPES), weights=[5, 3, 3, 1])[0]
            if prev is not None:
                t = max(
                    t,
                    earliest_entry(
                        prev_enter_s=prev[0],
                        prev_speed_mps=prev[1],
                        prev_length_m=prev[2],
                        speed_mps=speed,
                        view_m=view_m,
                        gap_m=params.min_gap_m,
                    ),
                )
                if t >= params.seconds:
                    break
            arrivals.append((t, lane, speed, body))
            prev = (t, speed, BODY_SHAPES[body].length)
            t += rng.expovariate(rate_per_lane)
    arrivals.sort(key=lambda a: (a[0], a[1].number))
    if payloads is None:
        payloads = throwaway_tokens(len(arrivals), params.seed)
    elif len(payloads) < len(arrivals):
        raise ValueError(
            f"seed {params.seed} puts {len(arrivals)} cars in the clip "
            f"but only {len(payloads)} payloads were given"
        )
    cars: list[CarSpec] = []
    for car_id, ((t, lane, speed, body), payload) in enumerate(
        zip(arrivals, payloads, strict=False)
    ):
        glare = rng.uniform(0.6, 1.6) if rng.random() < params.glare_share else 0.0
        code = HeldCode(
            payload=payload,
            carrier="phone" if rng.random() < params.phone_share else "paper",
            code_px=rng.uniform(*params.code_px),
            tilt_deg=rng.uniform(-params.max_tilt_deg, params.max_tilt_deg),
            yaw_deg=rng.uniform(-params.max_yaw_deg, params.max_yaw_deg),
            roll_deg=rng.uniform(-params.max_roll_deg, params.max_roll_deg),
            glare=glare,
            glare_at=(rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85)),
            glare_size=rng.uniform(0.15, 0.4),
        )
        sticker = None
        if rng.random() < params.distractor_share:
            url = rng.choice(DISTRACTOR_URLS) + f"{rng.randrange(10**8):08d}"
            sticker = Sticker(
                payload=url,
                code_px=max(40.0, min(code.code_px * rng.uniform(0.4, 0.7), 160.0)),
                at=rng.uniform(0.12, 0.3),
            )
        cars.append(
            CarSpec(
                car_id=car_id,
                lane=lane.number,
                enter_s=t,
                speed_kmh=speed / KMH,
                body=body,
                colour=rng.choice(CAR_COLOURS),
                code=code,
                sticker=sticker,
            )
        )
    return Scenario(
        name=f"traffic-{params.seed}",
        seed=params.seed,
        seconds=params.seconds,
        camera=camera,
        lanes=params.lanes,
        cars=tuple(cars),
    )
