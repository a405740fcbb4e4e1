"""``kiemdich edge``: run the gate agent, or check its configuration file."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _main(args: argparse.Namespace) -> int:
    from edge.config import ConfigError, validate_main

    if args.validate_config:
        return validate_main(args.validate_config)
    if not args.config:
        print("lỗi / error: cần --config PATH hoặc --validate-config PATH", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s",
    )
    from edge.agent import run_agent

    try:
        return run_agent(Path(args.config))
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``edge`` command."""
    edge = sub.add_parser(
        "edge",
        help="run the gate agent (camera → QR → offline verdict → outbox → MQTT)",
        description=(
            "Tác tử cổng kiểm dịch / gate agent: reads a camera, decodes pass QR codes, "
            "verifies them offline, shows the verdict at the gate, keeps every passage in a "
            "durable outbox and publishes it over MQTT. Config: one YAML file per device "
            "(see firmware_config/README.md); secrets from ${ENV} variables."
        ),
    )
    edge.add_argument("--config", metavar="PATH", help="the device's YAML config")
    edge.add_argument(
        "--validate-config",
        metavar="PATH",
        help="check a config file (prints each error with its YAML line) and exit",
    )
    edge.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    edge.set_defaults(func=_main)
