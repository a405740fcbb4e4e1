"""Synthetic gate camera: determinism, ground truth, what a real decoder reads, video, pacing."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import zxingcpp

from contract.token import Reason, verify_token
from simulators.gatecam import (
    Camera,
    CarSpec,
    GateCamera,
    GridCell,
    HeldCode,
    Renderer,
    Scenario,
    TrafficParams,
    VideoError,
    build_scenario,
    cell_scenario,
    grid_cells,
    ground_truth,
    parse_cell,
    read_truth,
    read_video,
    throwaway_keyring,
    throwaway_tokens,
    write_truth,
    write_video,
)
from simulators.gatecam.cli import main as cli_main
from simulators.gatecam.scene import KMH, car_layout, metres_per_px


def _decode(image: np.ndarray) -> dict[str, zxingcpp.Result]:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return {r.text: r for r in zxingcpp.read_barcodes(gray)}


def _frames(ranges: list[tuple[int, int]]) -> list[int]:
    return [f for a, b in ranges for f in range(a, b + 1)]


@pytest.fixture(scope="module")
def traffic() -> Scenario:
    camera = Camera(resolution="720p", weather="rain")
    params = TrafficParams(
        seconds=20, seed=3, camera=camera, cars_per_minute=40, distractor_share=0.5
    )
    return build_scenario(params)


def test_same_scenario_and_seed_give_identical_frames(traffic: Scenario) -> None:
    assert (
        build_scenario(
            TrafficParams(
                seconds=20,
                seed=3,
                camera=traffic.camera,
                cars_per_minute=40,
                distractor_share=0.5,
            )
        )
        == traffic
    )
    truth = ground_truth(traffic)
    busy = [t.in_view[0] + 5 for t in truth if t.in_view][:4]
    forward = Renderer(traffic)
    frames = [forward.render(i) for i in busy]
    backward = Renderer(traffic)  # random access, reversed: same bytes
    for i, frame in reversed(list(zip(busy, frames, strict=True))):
        assert backward.render(i).tobytes() == frame.tobytes()
    assert frames[0].tobytes() != frames[1].tobytes()
    other = traffic.model_copy(update={"seed": 4})
    assert Renderer(other).render(busy[0]).tobytes() != frames[0].tobytes()


def test_ground_truth_is_consistent(traffic: Scenario, tmp_path: Path) -> None:
    truth = ground_truth(traffic)
    n = traffic.n_frames
    width, height = traffic.camera.size
    assert len(truth) >= 8
    assert sum(1 for t in truth if t.token and t.token.visible) >= 5
    assert any(t.distractor is not None for t in truth)
    for t in truth:
        assert 10.0 <= t.speed_kmh <= 60.0
        lane = traffic.lane(t.lane)
        assert t.direction == lane.direction and t.motion == lane.motion
        expected_blur = t.speed_kmh * KMH * traffic.camera.exposure_ms / 1000 / t.metres_per_px
        assert t.blur_px == pytest.approx(expected_blur)
        assert t.metres_per_px == pytest.approx(metres_per_px(traffic.camera, lane))
        if t.in_view is None:
            continue
        first, last = t.in_view
        assert 0 <= first <= last < n
        for code, role in ((t.token, "pass"), (t.distractor, "distractor")):
            if code is None:
                continue
            assert code.role == role
            if role == "pass":
                assert 80.0 <= code.code_px <= 300.0
            assert code.module_px <= code.code_px / code.modules + 1e-9
            in_frame = set(_frames(code.in_frame))
            assert set(_frames(code.visible)) <= in_frame
            assert all(first <= f <= last for f in in_frame)
            for f in in_frame:
                quad = t.quad_at(f, "token" if role == "pass" else "distractor")
                assert all(0 <= x <= width and 0 <= y <= height for x, y in quad)
    path = tmp_path / "truth.jsonl"
    write_truth(truth, path)
    assert read_truth(path) == truth


def test_cars_in_one_lane_never_overlap(traffic: Scenario) -> None:
    layouts = {car.car_id: car_layout(traffic, car) for car in traffic.cars}
    for lane in traffic.lanes:
        cars = [c for c in traffic.cars if c.lane == lane.number]
        for a, b in itertools.pairwise(cars):
            for f in range(traffic.n_frames):
                ax0, _, ax1, _ = layouts[a.car_id].body_box(f)
                bx0, _, bx1, _ = layouts[b.car_id].body_box(f)
                both_seen = ax1 > 0 and bx1 > 0 and ax0 < 1280 and bx0 < 1280
                assert not (both_seen and ax0 < bx1 and bx0 < ax1), (a.car_id, b.car_id, f)


def _one_car(payload: str, *, speed: float, code_px: float, exposure_ms: float) -> Scenario:
    cell = GridCell(speed_kmh=speed, code_px=code_px, exposure_ms=exposure_ms)
    return cell_scenario(cell, payloads=[payload], cars=1, max_tilt_deg=0.0, max_yaw_deg=0.0)


def test_clean_slow_code_is_decoded_where_the_truth_says() -> None:
    token = throwaway_tokens(1, seed=21)[0]
    scenario = _one_car(token, speed=10.0, code_px=160.0, exposure_ms=1.0)
    (truth,) = ground_truth(scenario)
    assert truth.token is not None and truth.token.visible_frames >= 10
    renderer = Renderer(scenario)
    decoded = []
    for f in _frames(truth.token.visible)[::4]:
        result = _decode(renderer.render(f)).get(token)
        if result is not None:
            decoded.append(f)
            p = result.position
            found = [p.top_left, p.top_right, p.bottom_right, p.bottom_left]
            for corner, (x, y) in zip(found, truth.quad_at(f), strict=True):
                assert math.hypot(corner.x - x, corner.y - y) < 3.0
    assert decoded, "a clean 10 km/h code must be readable"
    assert verify_token(token, throwaway_keyring(21), now=1_800_000_000).ok


def test_motion_blur_is_real() -> None:
    """60 km/h with a 20 ms shutter smears the code; a 0.25 ms shutter freezes it."""
    token = throwaway_tokens(1, seed=22)[0]
    blurred = _one_car(token, speed=60.0, code_px=240.0, exposure_ms=20.0)
    (truth,) = ground_truth(blurred)
    assert truth.token is not None and truth.token.visible_frames >= 2
    assert truth.token.blur_modules > 10
    renderer = Renderer(blurred)
    for f in _frames(truth.token.in_frame):
        assert token not in _decode(renderer.render(f))
    sharp = _one_car(token, speed=60.0, code_px=240.0, exposure_ms=0.25)
    (sharp_truth,) = ground_truth(sharp)
    assert sharp_truth.token is not None
    renderer = Renderer(sharp)
    assert any(token in _decode(renderer.render(f)) for f in _frames(sharp_truth.token.visible))


def test_a_nearer_car_hides_a_far_code() -> None:
    token_far, token_near = throwaway_tokens(2, seed=23)
    camera = Camera(resolution="720p")
    far = CarSpec(
        car_id=0,
        lane=2,
        enter_s=0.0,
        speed_kmh=12.0,
        body="sedan",
        code=HeldCode(payload=token_far, code_px=150.0),
    )
    near = CarSpec(
        car_id=1,
        lane=1,
        enter_s=1.2,
        speed_kmh=25.0,
        body="suv",
        code=HeldCode(payload=token_near, code_px=150.0),
    )
    scenario = Scenario(seed=1, seconds=6.0, camera=camera, cars=(far, near))
    truth = {t.car_id: t for t in ground_truth(scenario)}
    far_code = truth[0].token
    assert far_code is not None
    hidden = sorted(set(_frames(far_code.in_frame)) - set(_frames(far_code.visible)))
    assert hidden and far_code.visible
    renderer = Renderer(scenario)
    for f in hidden[len(hidden) // 3 : len(hidden) // 3 + 3]:
        assert token_far not in _decode(renderer.render(f))


def test_distractor_sticker_is_readable_but_not_a_pass() -> None:
    cell = GridCell(speed_kmh=10.0, code_px=240.0)
    scenario = cell_scenario(cell, cars=1, distractors=True, max_tilt_deg=0.0, max_yaw_deg=0.0)
    (truth,) = ground_truth(scenario)
    sticker = truth.distractor
    assert sticker is not None and sticker.role == "distractor" and sticker.visible
    renderer = Renderer(scenario)
    seen = [
        f for f in _frames(sticker.visible)[::3] if sticker.payload in _decode(renderer.render(f))
    ]
    assert seen
    verdict = verify_token(sticker.payload, throwaway_keyring(0))
    assert verdict.reason is Reason.BAD_PREFIX


def test_night_and_rain_change_the_picture_like_a_camera() -> None:
    def empty(light: str, weather: str) -> tuple[np.ndarray, np.ndarray]:
        camera = Camera(resolution="720p", light=light, weather=weather)  # type: ignore[arg-type]
        renderer = Renderer(Scenario(seed=5, seconds=1.0, camera=camera))
        return renderer.render(0).astype(np.float32), renderer.render(1).astype(np.float32)

    day0, day1 = empty("day", "clear")
    night0, night1 = empty("night", "clear")
    rain0, rain1 = empty("day", "rain")
    assert night0.mean() < 0.6 * day0.mean()
    # Gain at night amplifies sensor noise: frame-to-frame differences grow.
    assert (night1 - night0).std() > 2 * (day1 - day0).std()
    # Rain adds bright streaks that move from frame to frame.
    assert (rain1 - rain0).std() > 1.5 * (day1 - day0).std()


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_video_file_round_trip(tmp_path: Path, suffix: str) -> None:
    scenario = build_scenario(
        TrafficParams(seconds=1.0, seed=8, camera=Camera(resolution="720p"), cars_per_minute=120)
    )
    info = write_video(scenario, tmp_path / f"clip{suffix}")
    assert info.frames == scenario.n_frames == 30
    frames = list(read_video(info.path))
    assert len(frames) == info.frames
    renderer = Renderer(scenario)
    for i in (0, 15, 29):
        assert frames[i].shape == (720, 1280, 3)
        error = np.abs(frames[i].astype(np.int16) - renderer.render(i).astype(np.int16)).mean()
        assert error < 8.0  # lossy codec, same picture
    with pytest.raises(VideoError):
        write_video(scenario, tmp_path / "clip.mov")
    assert not (tmp_path / "clip.mov").exists()


def test_realtime_source_sleeps_between_frames() -> None:
    scenario = Scenario(seed=1, seconds=0.4, camera=Camera(resolution="720p", fps=25.0))
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        import time

        time.sleep(seconds)

    camera = GateCamera(scenario, realtime=True, drop_late=False, sleep=sleep)
    frames = list(camera)
    assert [f.index for f in frames] == list(range(10))
    assert slept and sum(slept) > 0.0
    assert frames[-1].timestamp - frames[0].timestamp == pytest.approx(9 / 25.0)
    fast: list[float] = []
    assert len(list(GateCamera(scenario, sleep=fast.append))) == 10
    assert fast == []


def test_realtime_source_drops_frames_for_a_slow_reader() -> None:
    scenario = Scenario(seed=1, seconds=1.0, camera=Camera(resolution="720p", fps=10.0))
    now = [0.0]
    camera = GateCamera(scenario, realtime=True, clock=lambda: now[0], sleep=lambda s: None)
    indices = []
    for frame in camera:
        indices.append(frame.index)
        now[0] += 0.25  # the reader takes 2.5 frame periods per frame
    assert indices == [0, 2, 5, 7]
    assert camera.frames_dropped == 6


def test_difficulty_grid() -> None:
    cells = grid_cells()
    assert len(cells) == 64 and len({c.name for c in cells}) == 64
    assert all(parse_cell(c.name) == c for c in cells)
    assert parse_cell("v60-c300-day-clear-e0.5").shutter_ms == 0.5
    with pytest.raises(ValueError, match="v40-c120"):
        parse_cell("fast-and-small")
    cell = parse_cell("v40-c120-night-rain")
    scenario = cell_scenario(cell, cars=3)
    assert scenario == cell_scenario(cell, cars=3)
    assert scenario.camera.light == "night" and scenario.camera.exposure_ms == 4.0
    truth = ground_truth(scenario)
    assert [t.speed_kmh for t in truth] == [40.0] * 3
    windows = []
    for t in truth:
        assert t.token is not None and t.token.code_px == 120.0 and t.token.visible
        windows.append((t.token.visible[0][0], t.token.visible[-1][1]))
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert end < start  # one code in view at a time
    assert truth[-1].in_view is not None and truth[-1].in_view[1] < scenario.n_frames - 1


def test_throwaway_tokens_are_real_and_reproducible() -> None:
    tokens = throwaway_tokens(3, seed=9)
    assert tokens == throwaway_tokens(3, seed=9) and len(set(tokens)) == 3
    ring = throwaway_keyring(9)
    assert all(verify_token(t, ring, now=1_800_000_000).ok for t in tokens)
    # Another seed, another key under the same key id: a forgery as far as a gate can tell.
    assert verify_token(tokens[0], throwaway_keyring(10)).reason is Reason.BAD_SIGNATURE


def test_cli_writes_clip_and_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, truth_path = tmp_path / "clip.avi", tmp_path / "truth.jsonl"
    argv = [
        "camera",
        "--out",
        str(out),
        "--truth",
        str(truth_path),
        "--seconds",
        "2",
        "--resolution",
        "720p",
        "--cars-per-minute",
        "60",
        "--seed",
        "2",
        "--night",
    ]
    assert cli_main(argv) == 0
    assert "ms/frame" in capsys.readouterr().out
    assert len(list(read_video(out))) == 60
    truth = read_truth(truth_path)
    assert truth and all(t.exposure_ms == 4.0 for t in truth)


def test_cli_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["camera", "--truth", str(tmp_path / "t.jsonl"), "--speed", "60-10"])
    assert exc.value.code == 2
    assert cli_main(["camera", "--out", str(tmp_path / "c.mov")]) == 2
    assert "mov" in capsys.readouterr().err
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(throwaway_tokens(1, seed=1)[0] + "\n", encoding="utf-8")
    argv = [
        "camera",
        "--truth",
        str(tmp_path / "t.jsonl"),
        "--tokens",
        str(tokens),
        "--cars-per-minute",
        "60",
        "--seconds",
        "20",
    ]
    assert cli_main(argv) == 2
    assert "payloads" in capsys.readouterr().err
    assert not (tmp_path / "t.jsonl").exists()
    assert cli_main(["camera", "--truth", str(tmp_path / "t.jsonl"), "--exposure-ms", "50"]) == 2
    assert "exposure" in capsys.readouterr().err
