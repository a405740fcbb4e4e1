"""The edge stays light enough for a Pi; edge and aggregator never import each other."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY_FOR_EDGE = {
    "fastapi",
    "sqlalchemy",
    "alembic",
    "starlette",
    "uvicorn",
    "psycopg",
    "aggregator",
}

_PROBE = """
import importlib, pkgutil, sys, json
pkg = importlib.import_module({package!r})
for info in pkgutil.walk_packages(pkg.__path__, prefix={package!r} + "."):
    importlib.import_module(info.name)
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
"""


def imported_by(package: str) -> set[str]:
    """Top-level modules loaded after importing every module of ``package``."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(package=package)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(json.loads(out))


def test_edge_imports_nothing_heavy() -> None:
    loaded = imported_by("edge")
    assert not loaded & HEAVY_FOR_EDGE, sorted(loaded & HEAVY_FOR_EDGE)


def test_contract_imports_neither_side() -> None:
    loaded = imported_by("contract")
    assert not loaded & {"edge", "aggregator", "sqlalchemy", "fastapi", "cv2", "paho"}


def test_aggregator_never_imports_the_edge() -> None:
    assert "edge" not in imported_by("aggregator")
