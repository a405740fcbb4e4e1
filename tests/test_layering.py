"""The edge stays light enough for a Pi; edge and aggregator never import each other."""

from __future__ import annotations

import json
import subprocess
import sys

from contract.token import Keyring
from contract.vectors import vector_key

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


_WITHOUT_SERVER_PACKAGES = """
import importlib.abc, sys
BLOCKED = {"sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn", "psycopg",
           "influxdb_client", "faker", "argon2", "openpyxl", "vietnam_provinces", "segno"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
from kiemdich.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_cli_works_on_an_edge_only_install(tmp_path) -> None:
    # What `pip install '.[edge]'` on a Pi has: no SQLAlchemy, FastAPI, Faker ...
    help_text = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SERVER_PACKAGES, "--help"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "edge" in help_text
    assert "pip install '.[aggregator]'" in help_text
    config = tmp_path / "gate.yaml"
    Keyring([vector_key(1).public()]).save(tmp_path / "keyring.json")
    config.write_text(
        "device: {id: gate-1, checkpoint_id: cp-1, lane: 0, direction: in}\n"
        "camera: {source: 'v4l2:/dev/video0'}\n"
        f"verify: {{keyring: {tmp_path / 'keyring.json'}}}\n"
        "mqtt: {host: 127.0.0.1}\n"
    )
    checked = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SERVER_PACKAGES, "edge", "--validate-config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
