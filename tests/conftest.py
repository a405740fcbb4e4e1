"""Shared pytest wiring: each fixture family lives in its own module.

Tests report measured facts (token size, QR version, ...) through the
``figures`` fixture; they are printed in the run's closing summary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

# Before anything imports aggregator.auth.passwords, and inherited by every process
# a test starts: argon2-cffi's test profile instead of 0.1-0.2 s per hash and per
# check (the suite makes hundreds). test_web_auth checks that production keeps the
# real parameters and upgrades a cheap hash at login.
os.environ.setdefault("KIEMDICH_INSECURE_CHEAP_HASHES", "1")

pytest_plugins = [
    "tests.fixtures.keys",
    "tests.fixtures.db",
    "tests.fixtures.mqtt",
    "tests.fixtures.tsdb",
    "tests.fixtures.web",
    "tests.fixtures.netcut",
]

_FIGURES: list[str] = []
_RELIABILITY: list[dict[str, object]] = []
RELIABILITY_JSON_ENV = "KIEMDICH_RELIABILITY_JSON"


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record a line for the run's "figures" summary."""

    def record(line: str) -> None:
        _FIGURES.append(f"{request.node.nodeid.split('::')[-1]}: {line}")

    return record


Reliability = Callable[..., None]


@pytest.fixture
def reliability(figures: Callable[[str], None]) -> Reliability:
    """Record one fault scenario's outcome for ``make reliability`` (and the figures)."""

    def record(
        *,
        scenario: str,
        sent: int,
        stored: int,
        duplicates: int,
        lost: int,
        recover_s: float | None = None,
    ) -> None:
        _RELIABILITY.append(
            {
                "scenario": scenario,
                "sent": sent,
                "stored": stored,
                "duplicates": duplicates,
                "lost": lost,
                "recover_s": None if recover_s is None else round(recover_s, 2),
            }
        )
        recovered = "" if recover_s is None else f", recovered in {recover_s:.1f} s"
        figures(
            f"{scenario}: sent {sent} / stored {stored} / duplicates {duplicates} / "
            f"lost {lost}{recovered}"
        )

    return record


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Leave the reliability rows where ``make reliability`` asked for them."""
    target = os.environ.get(RELIABILITY_JSON_ENV)
    if target:
        Path(target).write_text(json.dumps(_RELIABILITY, indent=2, ensure_ascii=False))


SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


@pytest.fixture
def screenshot_path(tmp_path: Path) -> Callable[[str], Path]:
    """Where a browser test saves a screenshot.

    ``docs/screenshots/`` only when ``KIEMDICH_SCREENSHOTS=1`` (``make screenshots``),
    so an ordinary test run never rewrites tracked files.
    """

    def path(name: str) -> Path:
        folder = SCREENSHOTS if os.environ.get("KIEMDICH_SCREENSHOTS") == "1" else tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures tests measured."""
    if _FIGURES:
        terminalreporter.section("figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
