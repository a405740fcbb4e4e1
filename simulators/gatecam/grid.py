"""The named difficulty grid the edge benchmarks sweep.

A cell fixes what makes a code hard to read from a moving car: speed, code
size in pixels, light, weather and (optionally) the shutter time. Each cell
becomes a short deterministic clip of a few cars in the near lane, one code
in view at a time, so recall per cell is not mixed up with occlusion.

Cell names read like ``v40-c120-night-rain`` (40 km/h, 120 px code) with
``-e2`` appended when the exposure is set (2 ms); :func:`parse_cell` reads
them back.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterator, Sequence

from pydantic import BaseModel, ConfigDict, Field

from simulators.gatecam.scene import (
    BODY_SHAPES,
    DEFAULT_EXPOSURE_MS,
    DEFAULT_LANES,
    KMH,
    Camera,
    CarSpec,
    HeldCode,
    Light,
    ResolutionName,
    Scenario,
    Sticker,
    Weather,
    earliest_entry,
    metres_per_px,
    throwaway_tokens,
)

SPEEDS_KMH: tuple[float, ...] = (10, 20, 40, 60)
CODE_SIZES_PX: tuple[float, ...] = (80, 120, 200, 300)
LIGHTS: tuple[Light, ...] = ("day", "night")
WEATHERS: tuple[Weather, ...] = ("clear", "rain")

_NAME = re.compile(
    r"^v(?P<v>\d+(?:\.\d+)?)-c(?P<c>\d+(?:\.\d+)?)-(?P<light>day|night)-(?P<weather>clear|rain)"
    r"(?:-e(?P<e>\d+(?:\.\d+)?))?$"
)


def _num(value: float) -> str:
    return f"{value:g}"


class GridCell(BaseModel):
    """One cell of the difficulty grid."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    speed_kmh: float = Field(gt=0.0, le=150.0)
    code_px: float = Field(ge=20.0, le=800.0)
    light: Light = "day"
    weather: Weather = "clear"
    exposure_ms: float | None = Field(
        None, gt=0.0, description="shutter time; None = the light's default"
    )

    @property
    def name(self) -> str:
        """Stable name, e.g. ``v40-c120-night-rain`` or ``v60-c300-day-clear-e0.5``."""
        base = f"v{_num(self.speed_kmh)}-c{_num(self.code_px)}-{self.light}-{self.weather}"
        return base if self.exposure_ms is None else f"{base}-e{_num(self.exposure_ms)}"

    @property
    def shutter_ms(self) -> float:
        """The exposure the clip uses."""
        return self.exposure_ms if self.exposure_ms is not None else DEFAULT_EXPOSURE_MS[self.light]


def parse_cell(name: str) -> GridCell:
    """The cell a name stands for; ``ValueError`` says what a valid name looks like."""
    match = _NAME.match(name.strip())
    if match is None:
        raise ValueError(
            f"tên ô lưới không hợp lệ / invalid grid cell name {name!r}: "
            "expected v<km/h>-c<px>-<day|night>-<clear|rain>[-e<ms>], e.g. v40-c120-night-rain"
        )
    exposure = match["e"]
    return GridCell(
        speed_kmh=float(match["v"]),
        code_px=float(match["c"]),
        light=match["light"],  # type: ignore[arg-type]
        weather=match["weather"],  # type: ignore[arg-type]
        exposure_ms=float(exposure) if exposure is not None else None,
    )


def grid_cells(
    *,
    speeds_kmh: Sequence[float] = SPEEDS_KMH,
    code_sizes_px: Sequence[float] = CODE_SIZES_PX,
    lights: Sequence[Light] = LIGHTS,
    weathers: Sequence[Weather] = WEATHERS,
    exposures_ms: Sequence[float | None] = (None,),
) -> list[GridCell]:
    """Every combination of the axes, in a stable order (64 cells by default)."""
    return [
        GridCell(speed_kmh=v, code_px=c, light=light, weather=weather, exposure_ms=e)
        for light in lights
        for weather in weathers
        for e in exposures_ms
        for v in speeds_kmh
        for c in code_sizes_px
    ]


def cell_scenario(
    cell: GridCell,
    *,
    payloads: Sequence[str] | None = None,
    cars: int = 3,
    resolution: ResolutionName = "720p",
    fps: float = 30.0,
    fov_m: float = 4.0,
    seed: int = 0,
    gap_m: float = 3.0,
    max_tilt_deg: float = 15.0,
    max_yaw_deg: float = 20.0,
    glare_share: float = 0.0,
    distractors: bool = False,
) -> Scenario:
    """A short clip for ``cell``: ``cars`` cars at the cell's speed, one after another.

    Every car holds a code of exactly ``cell.code_px`` pixels (phones and
    sheets alternate), mildly tilted. The clip starts as the first car
    enters and ends just after the last one left. ``payloads`` default to
    throwaway tokens (see :func:`~simulators.gatecam.scene.throwaway_tokens`).
    """
    if cars < 1:
        raise ValueError("cars must be at least 1")
    cell_seed = zlib.crc32(f"{cell.name}:{seed}".encode())
    if payloads is None:
        payloads = throwaway_tokens(cars, cell_seed)
    elif len(payloads) < cars:
        raise ValueError(f"{cars} cars need {cars} payloads, got {len(payloads)}")
    camera = Camera(
        resolution=resolution,
        fps=fps,
        exposure_ms=cell.shutter_ms,
        fov_m=fov_m,
        light=cell.light,
        weather=cell.weather,
    )
    lane = DEFAULT_LANES[0]
    view_m = metres_per_px(camera, lane) * camera.width
    speed = cell.speed_kmh * KMH
    rng = random.Random(cell_seed)
    bodies = list(BODY_SHAPES)
    first_carrier = rng.randrange(2)
    specs: list[CarSpec] = []
    enter = 0.1
    exit_s = 0.0
    prev: tuple[float, float] | None = None
    for i in range(cars):
        body = bodies[rng.randrange(3)] if rng.random() < 0.9 else "van"
        length = BODY_SHAPES[body].length
        if prev is not None:
            enter = earliest_entry(
                prev_enter_s=prev[0],
                prev_speed_mps=speed,
                prev_length_m=prev[1],
                speed_mps=speed,
                view_m=view_m,
                gap_m=gap_m,
            )
        prev = (enter, length)
        exit_s = enter + (view_m + length) / speed
        sticker = None
        if distractors:
            url = f"https://vetc.com.vn/tra-cuu?the={rng.randrange(10**8):08d}"
            sticker = Sticker(payload=url, code_px=max(40.0, cell.code_px * 0.5), at=0.2)
        specs.append(
            CarSpec(
                car_id=i,
                lane=lane.number,
                enter_s=enter,
                speed_kmh=cell.speed_kmh,
                body=body,  # type: ignore[arg-type]
                colour=rng.choice(
                    [(232, 232, 230), (190, 192, 194), (40, 40, 42), (40, 40, 170), (140, 80, 30)]
                ),
                code=HeldCode(
                    payload=payloads[i],
                    carrier="phone" if (i + first_carrier) % 2 == 0 else "paper",
                    code_px=cell.code_px,
                    tilt_deg=rng.uniform(-max_tilt_deg, max_tilt_deg),
                    yaw_deg=rng.uniform(-max_yaw_deg, max_yaw_deg),
                    roll_deg=rng.uniform(-8.0, 8.0),
                    glare=rng.uniform(0.6, 1.4) if rng.random() < glare_share else 0.0,
                    glare_at=(rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)),
                    glare_size=rng.uniform(0.15, 0.35),
                ),
                sticker=sticker,
            )
        )
    return Scenario(
        name=cell.name,
        seed=cell_seed,
        seconds=exit_s + 0.3,
        camera=camera,
        lanes=DEFAULT_LANES,
        cars=tuple(specs),
    )


def grid_scenarios(
    cells: Sequence[GridCell] | None = None,
    *,
    resolution: ResolutionName = "720p",
    fps: float = 30.0,
    cars: int = 3,
    seed: int = 0,
) -> Iterator[tuple[GridCell, Scenario]]:
    """``(cell, scenario)`` for each cell (default: all of :func:`grid_cells`), built lazily."""
    for cell in grid_cells() if cells is None else cells:
        yield cell, cell_scenario(cell, resolution=resolution, fps=fps, cars=cars, seed=seed)
