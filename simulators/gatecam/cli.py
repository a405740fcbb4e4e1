"""``kiemdich sim camera``: render a synthetic gate-camera clip and its ground truth.

Examples::

    kiemdich sim camera --out clip.mp4 --truth truth.jsonl --seconds 30 --fps 30 \\
        --resolution 1080p --seed 7 --cars-per-minute 20 --speed 10-60 --code-size 80-300
    kiemdich sim camera --grid-cell v40-c120-night-rain --out cell.avi --truth cell.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import cv2
from pydantic import ValidationError

from simulators.gatecam.grid import cell_scenario, parse_cell
from simulators.gatecam.render import Renderer
from simulators.gatecam.scene import (
    DEFAULT_LANES,
    RESOLUTIONS,
    Camera,
    Scenario,
    TrafficParams,
    build_scenario,
    ground_truth,
    write_truth,
)
from simulators.gatecam.source import VideoError, fourcc_for, write_video


def _range(text: str) -> tuple[float, float]:
    """``"10-60"`` -> (10.0, 60.0); ``"30"`` -> (30.0, 30.0)."""
    parts = text.split("-")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"khoảng không hợp lệ / invalid range {text!r} (ví dụ / e.g. 10-60)"
        )
    low, high = values[0], values[-1]
    if low > high:
        raise argparse.ArgumentTypeError(
            f"cận dưới lớn hơn cận trên / low end above high end: {text!r}"
        )
    return low, high


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"cần tỉ lệ 0..1 / need a fraction 0..1: {text!r}")
    return value


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``camera`` command to a ``kiemdich sim`` subparsers object."""
    parser = subparsers.add_parser(
        "camera",
        help="camera cổng giả lập: video + dữ liệu chuẩn / synthetic gate camera clip + truth",
        description=(
            "Kết xuất một đoạn video camera cổng kiểm dịch giả lập (xe qua cổng, tài xế giơ mã "
            "QR) và dữ liệu chuẩn từng xe. / Render a synthetic checkpoint-camera clip (cars "
            "passing, drivers showing QR codes) and per-car ground truth."
        ),
    )
    out = parser.add_argument_group("đầu ra / outputs")
    out.add_argument("--out", type=Path, help="video (.mp4 = mp4v, .avi = MJPG)")
    out.add_argument("--truth", type=Path, help="dữ liệu chuẩn JSON lines / ground truth .jsonl")
    out.add_argument("--snapshot", type=Path, help="một khung hình PNG / one frame as PNG")
    out.add_argument(
        "--snapshot-frame",
        type=int,
        help="khung hình cho --snapshot (mặc định: mã đầu tiên thấy rõ) / frame for --snapshot",
    )
    out.add_argument("--save-scenario", type=Path, help="lưu kịch bản JSON / save scenario JSON")
    src = parser.add_argument_group("kịch bản / scenario")
    src.add_argument("--scenario", type=Path, help="đọc kịch bản JSON / load a scenario JSON")
    src.add_argument(
        "--grid-cell", help="ô lưới độ khó / difficulty grid cell, e.g. v40-c120-day-rain"
    )
    src.add_argument("--seconds", type=float, default=30.0, help="độ dài / length (s)")
    src.add_argument("--fps", type=float, default=30.0)
    src.add_argument("--resolution", choices=sorted(RESOLUTIONS), default="1080p")
    src.add_argument("--seed", type=int, default=0)
    src.add_argument("--cars-per-minute", type=float, default=20.0)
    src.add_argument("--speed", type=_range, default=(10.0, 60.0), help="km/h, e.g. 10-60")
    src.add_argument("--code-size", type=_range, default=(80.0, 300.0), help="px, e.g. 80-300")
    src.add_argument(
        "--exposure-ms",
        type=float,
        help="thời gian phơi sáng / shutter (ms); default 1 by day, 4 at night",
    )
    src.add_argument("--fov-m", type=float, default=4.0, help="khung ngang ở làn gần / view (m)")
    src.add_argument("--night", action="store_true", help="ban đêm / night")
    src.add_argument("--rain", action="store_true", help="mưa / rain")
    src.add_argument("--lanes", type=int, choices=(1, 2), default=2, help="số làn / lanes")
    src.add_argument("--phones", type=_share, default=0.7, help="tỉ lệ điện thoại / phone share")
    src.add_argument("--glare", type=_share, default=0.25, help="tỉ lệ lóa / glare share")
    src.add_argument(
        "--distractors", type=_share, default=0.15, help="tỉ lệ xe dán mã URL / URL sticker share"
    )
    src.add_argument(
        "--tokens",
        type=Path,
        help="tệp mã thông hành, mỗi dòng một mã / pass tokens, one per line",
    )
    parser.set_defaults(func=run)
    return parser


def _scenario(args: argparse.Namespace) -> Scenario:
    if args.scenario is not None:
        return Scenario.model_validate_json(args.scenario.read_text(encoding="utf-8"))
    payloads = None
    if args.tokens is not None:
        lines = args.tokens.read_text(encoding="utf-8").splitlines()
        payloads = [line.strip() for line in lines if line.strip()]
    if args.grid_cell:
        cell = parse_cell(args.grid_cell)
        if args.exposure_ms is not None:
            cell = cell.model_copy(update={"exposure_ms": args.exposure_ms})
        return cell_scenario(
            cell,
            payloads=payloads,
            resolution=args.resolution,
            fps=args.fps,
            fov_m=args.fov_m,
            seed=args.seed,
        )
    camera = Camera(
        resolution=args.resolution,
        fps=args.fps,
        exposure_ms=args.exposure_ms,
        fov_m=args.fov_m,
        light="night" if args.night else "day",
        weather="rain" if args.rain else "clear",
    )
    params = TrafficParams(
        seconds=args.seconds,
        seed=args.seed,
        camera=camera,
        lanes=DEFAULT_LANES[: args.lanes],
        cars_per_minute=args.cars_per_minute,
        speed_kmh=args.speed,
        code_px=args.code_size,
        phone_share=args.phones,
        glare_share=args.glare,
        distractor_share=args.distractors,
    )
    return build_scenario(params, payloads)


def run(args: argparse.Namespace) -> int:
    """Carry out ``kiemdich sim camera``; returns the exit status."""
    if not any((args.out, args.truth, args.snapshot, args.save_scenario)):
        print(
            "lỗi: cần ít nhất một đầu ra --out/--truth/--snapshot/--save-scenario / "
            "error: give at least one output",
            file=sys.stderr,
        )
        return 2
    try:
        if args.out is not None:
            fourcc_for(args.out)  # refuse an unknown extension before rendering anything
        scenario = _scenario(args)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(part) for part in err["loc"]) or exc.title
            print(f"lỗi / error: {where}: {err['msg']}", file=sys.stderr)
        return 2
    except (ValueError, VideoError, OSError) as exc:
        print(f"lỗi / error: {exc}", file=sys.stderr)
        return 2
    truth = ground_truth(scenario)
    if args.save_scenario is not None:
        args.save_scenario.write_text(scenario.model_dump_json(indent=2) + "\n", encoding="utf-8")
    if args.truth is not None:
        write_truth(truth, args.truth)
        print(f"dữ liệu chuẩn / truth: {args.truth} ({len(truth)} xe / cars)")
    if args.snapshot is not None:
        index = args.snapshot_frame
        if index is None:
            visible = [t.token.visible[0] for t in truth if t.token and t.token.visible]
            index = (visible[0][0] + visible[0][1]) // 2 if visible else 0
        index = max(0, min(index, scenario.n_frames - 1))
        cv2.imwrite(str(args.snapshot), Renderer(scenario).render(index))
        print(f"ảnh / snapshot: {args.snapshot} (khung / frame {index})")
    if args.out is not None:
        try:
            info = write_video(scenario, args.out)
        except VideoError as exc:
            print(f"lỗi / error: {exc}", file=sys.stderr)
            return 1
        seen = sum(1 for t in truth if t.token and t.token.visible)
        print(
            f"video: {info.path} — {info.frames} khung hình / frames, {info.width}x{info.height} "
            f"@ {info.fps:g} fps, {info.fourcc}; {len(truth)} xe / cars, {seen} mã thấy rõ / "
            f"codes fully visible; kết xuất / render {info.render_ms_per_frame:.1f} ms/frame, "
            f"tổng / total {info.total_seconds:.1f} s"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m simulators.gatecam.cli camera ...``."""
    parser = argparse.ArgumentParser(prog="kiemdich sim")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
