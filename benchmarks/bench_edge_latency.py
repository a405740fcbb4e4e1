"""Frame-to-local-verdict latency of the live edge agent (issue: edge agent).

Runs the real ``EdgeAgent`` (capture thread, newest-frame slot, vision,
offline verification, gate display, outbox) on a real-time synthetic gate
camera, and reports, per passage, the time from the capture of the frame that
first read the code to the verdict being on the display: p50 / p99.

Baseline, same run, same clip, measured the same way: the naive agent —
pyzbar on every full-resolution frame, no motion gate, no downscaling.
No broker is needed (the verdict is local; events wait in the outbox). CPU
seconds are the whole process's, so they include rendering the synthetic
camera, which is the same for both variants.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from contract.token import HOUR, Keyring, issue_token
from contract.vectors import vector_key
from edge.agent import EdgeAgent
from edge.config import load_config
from simulators.gatecam.scene import Camera, Scenario, TrafficParams, build_scenario, ground_truth

NAIVE_VISION = """
vision:
  decoder: zbar
  roi: {x0: 0.0, y0: 0.0, x1: 1.0, y1: 1.0}
  motion: {enabled: false}
  decode: {downscale: 1, sweep_every: 0, max_candidates: 0}
"""


def make_tokens(n: int) -> tuple[list[str], Keyring]:
    """Real pass tokens valid now, signed by the vector key."""
    key = vector_key(1)
    now = int(time.time())
    tokens = [
        issue_token(key, declaration_id=5000 + i, issued_at=now - HOUR, expires_at=now + 24 * HOUR)
        for i in range(n)
    ]
    return tokens, Keyring([key.public()])


def run_variant(
    work: Path, scenario: Path, keyring: Path, *, vision: str, seconds: float
) -> tuple[list[float], int, float]:
    """Run one agent over the clip; returns (latencies ms, passages, CPU s)."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "gate.yaml"
    config.write_text(
        f"""
device: {{id: bench-cam, checkpoint_id: bench, lane: 1, direction: in}}
camera: {{source: "synthetic:", realtime: true, synthetic: {{scenario: {scenario}}}}}
verify: {{keyring: {keyring}, denylist_cache: {work}/deny.json}}
mqtt: {{host: 127.0.0.1, port: 9, reconnect_min_delay_s: 30, reconnect_max_delay_s: 60}}
outbox: {{path: {work}/outbox.sqlite3}}
display: {{web: {{enabled: false}}}}
metrics: {{enabled: false}}
{vision}
"""
    )
    agent = EdgeAgent(load_config(config))
    cpu0 = time.process_time()
    agent.start()
    time.sleep(seconds + 1.0)
    agent.stop()
    cpu = time.process_time() - cpu0
    return agent.local_verdict_ms(), agent.status_passages(), cpu


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    data = sorted(values)
    return data[min(len(data) - 1, max(0, round(p / 100 * (len(data) - 1))))]


def main(argv: list[str] | None = None) -> int:
    """Print the latency table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 15 s clip instead of 40 s")
    parser.add_argument("--resolution", default="1080p", choices=["720p", "1080p"])
    args = parser.parse_args(argv)
    # The agent retries a broker that is deliberately absent; that noise is not the subject.
    logging.basicConfig(level=logging.CRITICAL)
    seconds = 15.0 if args.quick else 40.0
    tokens, keyring = make_tokens(200)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        params = TrafficParams(
            seconds=seconds,
            seed=21,
            camera=Camera(resolution=args.resolution, fps=30),
            cars_per_minute=30,
            speed_kmh=(10.0, 40.0),
            code_px=(120.0, 300.0),
            glare_share=0.0,
        )
        scenario = build_scenario(params, payloads=tokens)
        scenario_path = work / "scenario.json"
        scenario_path.write_text(scenario.model_dump_json())
        keyring_path = work / "keyring.json"
        keyring.save(keyring_path)
        truth = ground_truth(Scenario.model_validate_json(scenario_path.read_text()))
        cars = sum(1 for car in truth if car.token and car.token.visible_frames >= 3)
        rows = []
        for name, vision in (("naive: zbar, every full frame", NAIVE_VISION), ("ours", "")):
            lat, passages, cpu = run_variant(
                work / name.split(":")[0],
                scenario_path,
                keyring_path,
                vision=vision,
                seconds=seconds,
            )
            rows.append((name, lat, passages, cpu))
    print(
        f"\nframe → local verdict, live agent, {args.resolution} 30 fps, {seconds:.0f} s clip, "
        f"{cars} cars with a visible code"
    )
    print(f"{'variant':32} {'passages':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU s':>7}")
    for name, lat, passages, cpu in rows:
        if lat:
            print(
                f"{name:32} {passages:>9} {statistics.median(lat):>8.1f} {pct(lat, 99):>8.1f} "
                f"{max(lat):>8.1f} {cpu:>7.1f}"
            )
        else:
            print(f"{name:32} {passages:>9} {'-':>8} {'-':>8} {'-':>8} {cpu:>7.1f}")
    (_, base, _, base_cpu), (_, ours, _, our_cpu) = rows
    if base and ours:
        print(
            f"ratio naive/ours: p99 {pct(base, 99) / pct(ours, 99):.1f}x, "
            f"CPU {base_cpu / max(our_cpu, 1e-9):.1f}x; target: p99 < 300 ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
