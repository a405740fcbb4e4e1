"""Synthetic gate camera: cars crossing a checkpoint, drivers showing QR passes.

Stands in for the physical camera in tests, benchmarks and the demo:

- :mod:`~simulators.gatecam.scene`: scenarios (camera, lanes, cars, codes),
  random traffic, ground truth (pure, no pixels);
- :mod:`~simulators.gatecam.render`: the frames;
- :mod:`~simulators.gatecam.source`: a live frame iterator and video files;
- :mod:`~simulators.gatecam.grid`: the difficulty grid for benchmarks;
- :mod:`~simulators.gatecam.cli`: ``kiemdich sim camera``.
"""

from simulators.gatecam.grid import GridCell, cell_scenario, grid_cells, grid_scenarios, parse_cell
from simulators.gatecam.render import Renderer
from simulators.gatecam.scene import (
    Camera,
    CarSpec,
    CarTruth,
    CodeTruth,
    HeldCode,
    Lane,
    Scenario,
    Sticker,
    TrafficParams,
    build_scenario,
    ground_truth,
    read_truth,
    throwaway_keyring,
    throwaway_tokens,
    write_truth,
)
from simulators.gatecam.source import Frame, GateCamera, VideoError, read_video, write_video

__all__ = [
    "Camera",
    "CarSpec",
    "CarTruth",
    "CodeTruth",
    "Frame",
    "GateCamera",
    "GridCell",
    "HeldCode",
    "Lane",
    "Renderer",
    "Scenario",
    "Sticker",
    "TrafficParams",
    "VideoError",
    "build_scenario",
    "cell_scenario",
    "grid_cells",
    "grid_scenarios",
    "ground_truth",
    "parse_cell",
    "read_truth",
    "read_video",
    "throwaway_keyring",
    "throwaway_tokens",
    "write_truth",
    "write_video",
]
