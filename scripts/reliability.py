"""``make reliability``: run the fault and hostile-input scenarios, print one table,
and write it to ``docs/reliability.md``.

Each scenario is a test marked ``reliability`` that records its outcome through the
``reliability`` fixture (tests/conftest.py); this script only runs them and renders
what they measured. The suite: the edge's faults (broker and agent killed, disk
full, ...), the aggregator's (SIGKILL mid-stream, shared stream), and the hostile
input of ``tests/test_hostile_mqtt.py`` (malformed, oversized, spoofed, replayed,
forged), ``tests/test_api_schemathesis.py`` (no 5xx), ``tests/test_api_scope.py``
(personal data within role and scope) and ``tests/test_injection.py`` (SQL and
HTML/JS inert).

Extra arguments go to pytest. A run narrowed to some tests (a path, ``-k``, a node
id) prints its table but leaves ``docs/reliability.md`` as the last full run wrote it.
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


START, END = "<!-- reliability-table:start -->", "<!-- reliability-table:end -->"


def replace_table(doc: str, section: str) -> str:
    """``doc`` with the text between the table markers replaced (the prose around it kept)."""
    block = f"{START}\n{section}{END}"
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        return head + block + rest.split(END, 1)[1]
    return f"# Reliability / độ tin cậy\n\n{block}\n{doc}"


def narrowed(argv: list[str]) -> bool:
    """True when the pytest arguments select only part of the suite."""
    return any(not a.startswith("-") or a.startswith(("-k", "--deselect")) for a in argv)


def main(argv: list[str]) -> int:
    """Run ``pytest -m reliability`` (extra args pass through) and report."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        env = {**os.environ, "KIEMDICH_RELIABILITY_JSON": str(out)}
        # The full run cuts the gate's network for 5 minutes of traffic; CI's
        # make test runs the same test with a 20 s cut.
        env.setdefault("KIEMDICH_NETCUT_S", "300")
        cmd = [sys.executable, "-m", "pytest", "-m", "reliability", "-q", *argv]
        result = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
        rows = json.loads(out.read_text()) if out.exists() else []
    table = render(rows)
    print("\n" + table)
    lost = sum(int(r["lost"]) for r in rows)  # type: ignore[call-overload]
    if narrowed(argv):
        print(f"\n(narrowed run: {DOC.relative_to(ROOT)} left as it was); lost in total: {lost}")
    elif result.returncode == 0 and rows:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        section = (
            f"Latest `make reliability` run ({stamp}); every row is a test against real\n"
            "components (mosquitto, SQLite, PostgreSQL, Chromium) that fails if anything\n"
            "is lost (for hostile input: leaked, executed or answered with a server error).\n\n"
            f"{table}\n"
        )
        DOC.write_text(replace_table(DOC.read_text() if DOC.exists() else "", section))
        print(f"\nwritten to {DOC.relative_to(ROOT)}; lost in total: {lost}")
    return result.returncode or (1 if lost else 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
