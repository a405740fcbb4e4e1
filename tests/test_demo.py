"""``make demo`` end to end: every process starts, an F0 read by a real edge agent raises an
alert, the screens answer, and Ctrl-C stops everything."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.mqtt import free_port

ROOT = Path(__file__).resolve().parent.parent


def _alerts(db: Path) -> list[tuple[str, str]]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute(
                "SELECT a.kind, p.device_id FROM alerts a JOIN passages p USING (event_id)"
            ).fetchall()
    except sqlite3.Error:  # not migrated yet, or busy: look again
        return []


@pytest.mark.slow
def test_demo_shows_an_f0_alert_from_a_real_edge_agent_and_stops_cleanly(
    tmp_path: Path, figures: Callable[[str], None]
) -> None:
    ports = {name: free_port() for name in ("http", "mqtt", "tsdb", "displays", "metrics")}
    state = tmp_path / "demo"
    cmd = [sys.executable, "-m", "kiemdich.cli", "demo", "--dir", str(state)]
    cmd += ["--citizens", "3000", "--agents", "1", "--city-rate", "2"]
    for name, port in ports.items():
        cmd += [f"--{name}-port", str(port)]
    demo = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    started = time.monotonic()
    found: list[tuple[str, str]] = []
    try:
        deadline = started + 240
        while time.monotonic() < deadline and demo.poll() is None:
            found = [a for a in _alerts(state / "kiemdich.db") if a[0] == "f0"]
            agent_f0 = [a for a in found if a[1].endswith("-in-1")]
            if agent_f0:
                break
            time.sleep(2)
        elapsed = time.monotonic() - started
        assert demo.poll() is None, demo.communicate(timeout=30)[0][-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/readyz", timeout=5) as r:
            ready = r.status
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['displays']}/state", timeout=5) as r:
            gate = r.status
    finally:
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=90)
    figures(f"demo: first F0 alert from the real edge agent {elapsed:.0f} s after start")
    assert found, output[-3000:]
    assert ready == 200 and gate == 200
    assert demo.returncode == 0, output[-3000:]
    assert "kiemdich đang chạy / running" in output
    assert "demo.admin" in output  # the demo logins are printed
    leftover = subprocess.run(
        ["pgrep", "-f", str(state)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert not leftover, f"processes left running: {leftover}"
