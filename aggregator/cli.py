"""``kiemdich aggregator run``: the central service (ingest, deny-list, fleet, HTTP API).

Every option also reads ``KIEMDICH_<NAME>`` from the environment (see
:mod:`aggregator.settings`); options given here win. Secrets are never taken
on the command line: ``--mqtt-password-env VAR`` names the variable holding
the broker password (default ``KIEMDICH_MQTT_PASSWORD``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from aggregator.db.engine import normalize_url
from aggregator.settings import AggregatorSettings, Environment, load_settings

_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--environment", {"choices": [e.value for e in Environment]}),
    ("--db", {"dest": "db_url", "help": "URL CSDL / database URL (SQLite or PostgreSQL)"}),
    ("--mqtt-host", {}),
    ("--mqtt-port", {"type": int}),
    ("--mqtt-username", {}),
    ("--mqtt-ca-file", {"type": Path, "help": "CA bundle; enables TLS"}),
    ("--client-id", {"help": "MQTT client id (stable: the broker keeps our session under it)"}),
    ("--keyring", {"dest": "keyring_path", "type": Path, "help": "public keyring file"}),
    ("--http-host", {}),
    ("--http-port", {"type": int}),
    ("--tsdb-url", {"help": "Influx v2 write endpoint base URL (VictoriaMetrics, InfluxDB)"}),
    ("--batch-size", {"type": int}),
    ("--batch-ms", {"type": int}),
    ("--receive-maximum", {"type": int}),
    ("--poll-interval-s", {"type": float}),
]


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, extra in _OPTIONS:
        parser.add_argument(flag, default=None, **extra)
    parser.add_argument(
        "--mqtt-password-env",
        metavar="VAR",
        help="biến môi trường chứa mật khẩu MQTT / env variable holding the MQTT password",
    )
    parser.add_argument(
        "--no-migrate",
        dest="migrate_on_start",
        action="store_const",
        const=False,
        default=None,
        help="không tự nâng cấp CSDL / do not apply migrations at start",
    )
    parser.add_argument(
        "--validate-config",
        action="store_true",
        help="kiểm tra cấu hình rồi thoát / check the configuration and exit",
    )
    parser.add_argument("--log-level", default="INFO")


def settings_from_args(args: argparse.Namespace) -> AggregatorSettings:
    """Settings from parsed options, the environment and defaults (raises ValidationError)."""
    overrides: dict[str, Any] = {
        name: getattr(args, name)
        for name in AggregatorSettings.model_fields
        if getattr(args, name, None) is not None
    }
    if args.mqtt_password_env:
        value = os.environ.get(args.mqtt_password_env)
        if value is None:
            raise ValueError(
                f"Biến môi trường {args.mqtt_password_env} chưa đặt / "
                f"environment variable {args.mqtt_password_env} is not set"
            )
        overrides["mqtt_password"] = SecretStr(value)
    return load_settings(**overrides)


def _describe(settings: AggregatorSettings) -> str:
    shown = settings.model_dump(mode="json")
    shown["db_url"] = normalize_url(settings.db_url).render_as_string(hide_password=True)
    return "\n".join(f"  {k} = {v}" for k, v in shown.items())


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = settings_from_args(args)
    except (ValidationError, ValueError) as exc:
        print(f"Cấu hình sai / invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    if args.validate_config:
        print(f"Cấu hình hợp lệ / configuration is valid:\n{_describe(settings)}")
        return 0

    import uvicorn

    from aggregator.api.app import create_app
    from aggregator.service import AggregatorService

    app = create_app(AggregatorService(settings))
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level=args.log_level.lower(),
        lifespan="on",
    )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``aggregator`` command group (``run``); each leaf sets ``func(args) -> int``."""
    group = subparsers.add_parser("aggregator", help="Máy chủ tổng hợp / central aggregator")
    actions = group.add_subparsers(dest="aggregator_command", required=True)
    run = actions.add_parser(
        "run", help="Chạy dịch vụ / run the service (ingest, deny-list, fleet, HTTP API)"
    )
    _add_arguments(run)
    run.set_defaults(func=_run)


def main(argv: list[str] | None = None) -> int:
    """``python -m aggregator.cli run ...`` (same as ``kiemdich aggregator run ...``)."""
    parser = argparse.ArgumentParser(prog="kiemdich aggregator")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["aggregator", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
