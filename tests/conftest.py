"""Shared pytest wiring: each fixture family lives in its own module.

Tests report measured facts (token size, QR version, ...) through the
``figures`` fixture; they are printed in the run's closing summary.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytest_plugins = [
    "tests.fixtures.keys",
    "tests.fixtures.db",
    "tests.fixtures.mqtt",
]

_FIGURES: list[str] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record a line for the run's "figures" summary."""

    def record(line: str) -> None:
        _FIGURES.append(f"{request.node.nodeid.split('::')[-1]}: {line}")

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures tests measured."""
    if _FIGURES:
        terminalreporter.section("figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
