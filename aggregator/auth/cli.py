"""``kiemdich officers``: officer accounts from the command line.

    kiemdich officers add --username an.nv --full-name "Nguyễn Văn An" \\
        --role checkpoint_officer --scope ward:337 --password-env AN_PASSWORD
    kiemdich officers list [--role ROLE]
    kiemdich officers set-password --username an.nv --password-env AN_PASSWORD
    kiemdich officers deactivate --username an.nv      (activate: the reverse)
    kiemdich officers demo                              (development only)

Passwords never appear on the command line (shell history, ``ps``): they are
read from the environment variable ``--password-env`` names. Every command
takes ``--url`` (default ``KIEMDICH_DB_URL``, else the embedded SQLite file);
the database must be migrated (``kiemdich db upgrade``).

``officers demo`` creates (or resets) one account per role with the demo
passwords below, and the venue checkpoint the venue manager's scope needs.
It refuses to run unless ``--environment development`` (or
``KIEMDICH_ENVIRONMENT=development``): these passwords are public.

=================== ================== =================== ===============================
username            password           role                scope
=================== ================== =================== ===============================
demo.checkpoint     demo-checkpoint-21 checkpoint_officer  ward:337 (Phường Hoàng Liệt)
demo.ward           demo-ward-2021     ward_police         ward:70 (Phường Hoàn Kiếm)
demo.investigator   demo-investigator  investigator        everywhere
demo.command        demo-command-2021  command_centre      province:1 (Hà Nội)
demo.venue          demo-venue-2021    venue_manager       checkpoint:hn-cho-dong-xuan
demo.health         demo-health-2021   health_official     everywhere
demo.admin          demo-admin-2021    admin               everywhere
=================== ================== =================== ===============================
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import Connection, select
from sqlalchemy.exc import SQLAlchemyError

from aggregator.auth import accounts
from aggregator.auth.audit import record_action
from aggregator.auth.model import Scope
from aggregator.auth.problems import ProblemError, from_validation_error
from aggregator.db.engine import default_url, make_engine, write_transaction
from aggregator.db.fleet import upsert_checkpoint
from aggregator.db.schema import CheckpointKind, Role, checkpoints
from aggregator.settings import ENV_PREFIX, Environment


@dataclass(frozen=True, slots=True)
class DemoAccount:
    """One documented demo account."""

    username: str
    password: str
    full_name: str
    role: Role
    scopes: tuple[str, ...] = ()


DEMO_VENUE = {
    "id": "hn-cho-dong-xuan",
    "name": "Chợ Đồng Xuân",
    "kind": CheckpointKind.VENUE,
    "ward_code": 70,
    "lat": 21.0381,
    "lon": 105.8497,
    "owner": "Ban quản lý chợ Đồng Xuân",
}

DEMO_ACCOUNTS: tuple[DemoAccount, ...] = (
    DemoAccount(
        "demo.checkpoint",
        "demo-checkpoint-21",
        "Nguyễn Văn An",
        Role.CHECKPOINT_OFFICER,
        ("ward:337",),
    ),
    DemoAccount("demo.ward", "demo-ward-2021", "Trần Thị Bình", Role.WARD_POLICE, ("ward:70",)),
    DemoAccount("demo.investigator", "demo-investigator", "Lê Hoàng Cường", Role.INVESTIGATOR),
    DemoAccount(
        "demo.command", "demo-command-2021", "Phạm Minh Dũng", Role.COMMAND_CENTRE, ("province:1",)
    ),
    DemoAccount(
        "demo.venue",
        "demo-venue-2021",
        "Hoàng Thị Én",
        Role.VENUE_MANAGER,
        (f"checkpoint:{DEMO_VENUE['id']}",),
    ),
    DemoAccount("demo.health", "demo-health-2021", "Vũ Đức Giang", Role.HEALTH_OFFICIAL),
    DemoAccount("demo.admin", "demo-admin-2021", "Đặng Thu Hà", Role.ADMIN),
)


class CliError(Exception):
    """A problem to print (bilingual) with exit status 2."""


def _password(env: str) -> str:
    value = os.environ.get(env)
    if not value:
        raise CliError(f"biến môi trường {env} chưa đặt / environment variable {env} is not set")
    return value


def _scopes(specs: list[str]) -> list[Scope]:
    out = []
    for spec in specs:
        try:
            out.append(Scope.parse(spec))
        except ValidationError as exc:
            raise CliError(
                "; ".join(p.bilingual() for p in from_validation_error(exc)) + f" ({spec!r})"
            ) from exc
    return out


def _find(conn: Connection, username: str) -> accounts.OfficerRow:
    row = accounts.find_officer(conn, username=username)
    if row is None:
        raise CliError(f"không có tài khoản / no account {username!r}")
    return row


def _cmd_add(args: argparse.Namespace, conn: Connection) -> str:
    officer_id = accounts.create_officer(
        conn,
        username=args.username,
        full_name=args.full_name,
        role=Role(args.role),
        scopes=_scopes(args.scope),
        password=_password(args.password_env),
    )
    record_action(
        conn,
        officer=None,
        action="admin.officer.create",
        subject=f"officer:{accounts.normalize_username(args.username)}",
        detail={"role": args.role, "scopes": args.scope, "via": "cli"},
    )
    return f"Đã tạo / created officer {args.username} (id {officer_id})"


def _cmd_list(args: argparse.Namespace, conn: Connection) -> str:
    rows = accounts.list_officers(conn, role=Role(args.role) if args.role else None)
    lines = [f"{'username':<24} {'role':<20} {'active':<6} scopes / full name"]
    for r in rows:
        scopes = " ".join(str(s) for s in r.scopes) or ("*" if r.officer().unrestricted else "-")
        lines.append(f"{r.username:<24} {r.role.value:<20} {r.active!s:<6} {scopes}  {r.full_name}")
    return "\n".join(lines)


def _cmd_set_password(args: argparse.Namespace, conn: Connection) -> str:
    row = _find(conn, args.username)
    accounts.set_password(conn, officer_id=row.id, password=_password(args.password_env))
    record_action(
        conn,
        officer=None,
        action="admin.officer.password",
        subject=f"officer:{row.username}",
        detail={"via": "cli"},
    )
    return f"Đã đặt mật khẩu / password set for {row.username}; sessions ended"


def _set_active(args: argparse.Namespace, conn: Connection, active: bool) -> str:
    row = _find(conn, args.username)
    accounts.update_officer(conn, officer_id=row.id, active=active)
    record_action(
        conn,
        officer=None,
        action="admin.officer.update",
        subject=f"officer:{row.username}",
        detail={"active": [str(row.active), str(active)], "via": "cli"},
    )
    state = "mở khoá / activated" if active else "đã khoá / deactivated"
    return f"{row.username}: {state}"


def ensure_demo(conn: Connection) -> list[DemoAccount]:
    """Create or reset every demo account (and the demo venue); returns them."""
    exists = conn.execute(select(checkpoints.c.id).where(checkpoints.c.id == DEMO_VENUE["id"]))
    if exists.first() is None:
        upsert_checkpoint(conn, **DEMO_VENUE)  # type: ignore[arg-type]
    for demo in DEMO_ACCOUNTS:
        scopes = [Scope.parse(s) for s in demo.scopes]
        row = accounts.find_officer(conn, username=demo.username)
        if row is None:
            accounts.create_officer(
                conn,
                username=demo.username,
                full_name=demo.full_name,
                role=demo.role,
                scopes=scopes,
                password=demo.password,
            )
            continue
        accounts.update_officer(
            conn,
            officer_id=row.id,
            full_name=demo.full_name,
            role=demo.role,
            scopes=scopes,
            active=True,
        )
        accounts.set_password(conn, officer_id=row.id, password=demo.password)
    return list(DEMO_ACCOUNTS)


def _cmd_demo(args: argparse.Namespace, conn: Connection) -> str:
    if args.environment != Environment.DEVELOPMENT.value:
        raise CliError(
            "tài khoản demo chỉ dùng trong môi trường development / demo accounts are refused "
            f"outside environment=development (here: {args.environment}; "
            f"--environment development or {ENV_PREFIX}ENVIRONMENT=development)"
        )
    made = ensure_demo(conn)
    lines = ["Tài khoản demo / demo accounts (development only):"]
    for demo in made:
        scope = " ".join(demo.scopes) or "*"
        lines.append(f"  {demo.username:<18} {demo.password:<20} {demo.role.value:<19} {scope}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    engine = make_engine(args.url)
    try:
        with write_transaction(engine) as conn:
            message = args.handler(args, conn)
    except ProblemError as exc:
        for problem in exc.problems:
            print(f"Lỗi / error: {problem.field}: {problem.bilingual()}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"Lỗi / error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(
            f"Lỗi CSDL / database error (đã chạy / did you run `kiemdich db upgrade`?): {exc}",
            file=sys.stderr,
        )
        return 2
    finally:
        engine.dispose()
    print(message)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``officers`` group (add, list, set-password, deactivate, activate, demo)."""
    group = subparsers.add_parser("officers", help="Tài khoản cán bộ / officer accounts")
    actions = group.add_subparsers(dest="officers_command", required=True)

    def leaf(name: str, help_text: str, handler: object) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument(
            "--url",
            default=default_url(),
            help="URL CSDL / database URL (env KIEMDICH_DB_URL; default %(default)s)",
        )
        parser.set_defaults(func=_run, handler=handler)
        return parser

    roles = [r.value for r in Role]
    add = leaf("add", "Tạo tài khoản / create an account", _cmd_add)
    add.add_argument("--username", required=True)
    add.add_argument("--full-name", required=True, help='e.g. "Nguyễn Văn An"')
    add.add_argument("--role", required=True, choices=roles)
    add.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="KIND:VALUE",
        help="checkpoint:ID, ward:CODE or province:CODE (repeatable)",
    )
    add.add_argument(
        "--password-env",
        required=True,
        metavar="VAR",
        help="biến môi trường chứa mật khẩu / env variable holding the password",
    )

    listing = leaf("list", "Liệt kê tài khoản / list accounts", _cmd_list)
    listing.add_argument("--role", choices=roles)

    setpw = leaf("set-password", "Đặt mật khẩu / set a password", _cmd_set_password)
    setpw.add_argument("--username", required=True)
    setpw.add_argument("--password-env", required=True, metavar="VAR")

    off = leaf("deactivate", "Khoá tài khoản / deactivate", lambda a, c: _set_active(a, c, False))
    off.add_argument("--username", required=True)
    on = leaf("activate", "Mở khoá tài khoản / reactivate", lambda a, c: _set_active(a, c, True))
    on.add_argument("--username", required=True)

    demo = leaf(
        "demo",
        "Tạo tài khoản demo mỗi vai trò (chỉ development) / demo account per role (dev only)",
        _cmd_demo,
    )
    demo.add_argument(
        "--environment",
        choices=[e.value for e in Environment],
        default=os.environ.get(f"{ENV_PREFIX}ENVIRONMENT", Environment.PRODUCTION.value),
        help="môi trường / environment (env KIEMDICH_ENVIRONMENT; default %(default)s)",
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m aggregator.auth.cli add ...`` (same as ``kiemdich officers add ...``)."""
    parser = argparse.ArgumentParser(prog="kiemdich")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["officers", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
