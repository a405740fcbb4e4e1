"""``kiemdich``: one command for every part of the system.

Each group lives with the code it drives and is registered here only if its
package is installed, so a Raspberry Pi with ``pip install .[edge]`` gets a
working CLI without the aggregator's dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# (module with a ``register(subparsers)``, extra that provides it)
GROUPS: list[tuple[str, str]] = [
    ("contract.cli", "core"),
    ("edge.cli", "edge"),
    ("firmware_config.generate", "edge"),
    ("aggregator.cli", "aggregator"),
    ("aggregator.db.migrate", "aggregator"),
    ("aggregator.broker", "aggregator"),
    ("aggregator.auth.cli", "aggregator"),
    ("aggregator.retention_cli", "aggregator"),
    ("simulators.cli", "sim"),
    ("kiemdich.demo", "sim"),
]
_OURS = {"contract", "edge", "aggregator", "simulators", "kiemdich", "firmware_config"}

DESCRIPTION = """\
kiemdich (kiểm dịch) — hệ thống chốt kiểm dịch mở / open epidemic-checkpoint system.

Edge agents decode pass QR codes at gates and publish scans over MQTT; the
aggregator verifies them against the registry, raises alerts, notifies wards
and serves the officers' screens; simulators stand in for cameras and a city.
"""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every installed group."""
    parser = argparse.ArgumentParser(
        prog="kiemdich",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    missing = []
    for module_name, extra in GROUPS:
        # A group's register() may import its own dependencies (the sim group
        # needs SQLAlchemy), so both steps are guarded. argparse cannot take a
        # subparser back, so registration works on a scratch parser first.
        scratch = argparse.ArgumentParser().add_subparsers()
        try:
            importlib.import_module(module_name).register(scratch)
        except ModuleNotFoundError as exc:
            # Only a missing third-party package means "extra not installed";
            # a missing module of our own is a bug and must surface.
            if (exc.name or "").split(".")[0] in _OURS:
                raise
            missing.append(f"{module_name.split('.')[0]}: pip install '.[{extra}]' ({exc.name})")
            continue
        importlib.import_module(module_name).register(sub)
    if missing:
        parser.epilog = "not installed here: " + "; ".join(missing)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kiemdich`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
