"""Run every benchmark (``make bench``); each prints our figure beside its baseline.

``python -m benchmarks [--quick] [name ...]`` runs ``benchmarks/bench_<name>.py``
in turn, each in its own interpreter so one's memory does not colour the next.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    """Run the selected (default: all) benchmarks sequentially."""
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("-")]
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names]
    failed = []
    for script in scripts:
        print(f"\n===== {script.stem} =====", flush=True)
        started = time.monotonic()
        cmd = [sys.executable, str(script), *(["--quick"] if quick else [])]
        result = subprocess.run(cmd, check=False)
        print(f"----- {script.stem}: exit {result.returncode}, {time.monotonic() - started:.0f} s")
        if result.returncode:
            failed.append(script.stem)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
