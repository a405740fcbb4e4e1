"""``make reliability``: run the fault and hostile-input scenarios, print one table,
and write it to ``docs/reliability.md``.

Each scenario is a test marked ``reliability`` that records its outcome through the
``reliability`` fixture (tests/conftest.py); this script only runs them and renders
what they measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
COLUMNS = ("scenario", "sent", "stored", "duplicates", "lost", "recover_s")
HEADERS = ("kịch bản / scenario", "sent", "stored", "duplicates", "lost", "recovered in (s)")


def render(rows: list[dict[str, object]]) -> str:
    """A Markdown table of the rows."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in rows:
        cells = ["—" if row[c] is None else str(row[c]) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Run ``pytest -m reliability`` (extra args pass through) and report."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        env = {**os.environ, "KIEMDICH_RELIABILITY_JSON": str(out)}
        cmd = [sys.executable, "-m", "pytest", "-m", "reliability", "-q", *argv]
        result = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
        rows = json.loads(out.read_text()) if out.exists() else []
    table = render(rows)
    print("\n" + table)
    lost = sum(int(r["lost"]) for r in rows)  # type: ignore[call-overload]
    if result.returncode == 0 and rows:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        DOC.write_text(
            "# Reliability / độ tin cậy\n\n"
            f"Latest `make reliability` run ({stamp}); every row is a test against real\n"
            "components (mosquitto, SQLite, PostgreSQL) that fails if anything is lost.\n\n"
            f"{table}\n"
        )
        print(f"\nwritten to {DOC.relative_to(ROOT)}; lost in total: {lost}")
    return result.returncode or (1 if lost else 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
