"""Programmatic Alembic: the only way the aggregator's tables are created or changed.

``upgrade(url)`` works from any working directory (the script location is this
package's ``migrations`` folder) and is what the service's pre-start step, the
tests and ``kiemdich db upgrade`` call.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from aggregator.db.engine import default_url, make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

Target = str | URL | Engine | None


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@contextmanager
def _engine(target: Target) -> Iterator[Engine]:
    if isinstance(target, Engine):
        yield target
        return
    engine = make_engine(target)
    try:
        yield engine
    finally:
        engine.dispose()


def _run(target: Target, action: str, revision: str) -> None:
    config = alembic_config()
    with _engine(target) as engine, engine.connect() as connection:
        config.attributes["connection"] = connection
        if action == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)


def upgrade(target: Target = None, revision: str = "head") -> None:
    """Migrate the database at ``target`` (URL or engine; default URL) up to ``revision``."""
    _run(target, "upgrade", revision)


def downgrade(target: Target, revision: str) -> None:
    """Migrate the database at ``target`` down to ``revision`` (``"base"`` drops everything)."""
    _run(target, "downgrade", revision)


def current_revision(target: Target = None) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with _engine(target) as engine, engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def _cmd_upgrade(args: argparse.Namespace) -> int:
    upgrade(args.url, args.revision)
    print(f"Đã nâng cấp CSDL / database upgraded: {current_revision(args.url)}")
    return 0


def _cmd_downgrade(args: argparse.Namespace) -> int:
    downgrade(args.url, args.revision)
    print(f"Đã hạ cấp CSDL / database downgraded: {current_revision(args.url) or 'base'}")
    return 0


def _cmd_current(args: argparse.Namespace) -> int:
    current = current_revision(args.url)
    head = head_revision()
    state = "mới nhất / up to date" if current == head else f"cần nâng cấp / behind head {head}"
    print(f"{current or 'base (chưa khởi tạo / empty)'} — {state}")
    return 0 if current == head else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``db`` command group (upgrade, downgrade, current) to a CLI.

    Each leaf parser sets ``func(args) -> int`` as its default.
    """
    db = subparsers.add_parser("db", help="Cơ sở dữ liệu / database migrations")
    actions = db.add_subparsers(dest="db_command", required=True)

    def url_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--url",
            default=default_url(),
            help="URL CSDL / database URL (env KIEMDICH_DB_URL; default %(default)s)",
        )

    up = actions.add_parser("upgrade", help="Nâng cấp lên phiên bản mới nhất / migrate up")
    url_option(up)
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=_cmd_upgrade)

    down = actions.add_parser("downgrade", help="Hạ cấp / migrate down (e.g. base)")
    url_option(down)
    down.add_argument("revision")
    down.set_defaults(func=_cmd_downgrade)

    cur = actions.add_parser("current", help="Phiên bản hiện tại / current revision")
    url_option(cur)
    cur.set_defaults(func=_cmd_current)


def main(argv: list[str] | None = None) -> int:
    """Run ``db`` subcommands standalone: ``python -m aggregator.db.migrate upgrade``."""
    parser = argparse.ArgumentParser(prog="kiemdich")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["db", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
