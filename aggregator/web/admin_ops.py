"""What the admin screens do, shared by the pages and the JSON API.

Each change checks what only the database can tell (a ward that exists, an id
not taken), writes, and records itself in the audit log on the same
connection; a broken rule raises :class:`~aggregator.auth.problems.ProblemError`
with every problem found and writes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, Engine, exists, func, or_, select

from aggregator.auth import accounts
from aggregator.auth.accounts import OfficerRow
from aggregator.auth.audit import record_action
from aggregator.auth.device_credentials import (
    IssuedDevice,
    issue_device,
    reload_broker,
    sync_password_file,
)
from aggregator.auth.model import Officer
from aggregator.auth.problems import Problem, ProblemError
from aggregator.db.fleet import upsert_checkpoint
from aggregator.db.schema import Role, checkpoints, devices, wards
from aggregator.db.wards import get_ward, search_wards
from aggregator.web.admin_models import (
    BrokerNotice,
    CheckpointCreate,
    CheckpointOut,
    DeviceCreate,
    OfficerCreate,
    OfficerUpdate,
    WardOut,
)
from aggregator.web.forms import WARD_CODE_MAX
from aggregator.web.settings import WebSettings

log = logging.getLogger(__name__)


def _raise_if(problems: list[Problem]) -> None:
    if problems:
        raise ProblemError(problems)


# --- checkpoints -------------------------------------------------------------------


def list_checkpoint_rows(conn: Connection) -> list[CheckpointOut]:
    """Every checkpoint with its ward's name and how many devices it has, by id."""
    device_count = (
        select(func.count())
        .select_from(devices)
        .where(devices.c.checkpoint_id == checkpoints.c.id)
        .scalar_subquery()
    )
    query = (
        select(
            checkpoints.c.id,
            checkpoints.c.name,
            checkpoints.c.kind,
            checkpoints.c.ward_code,
            wards.c.name.label("ward_name"),
            wards.c.province_name,
            checkpoints.c.lat,
            checkpoints.c.lon,
            checkpoints.c.owner,
            checkpoints.c.active,
            device_count.label("devices"),
            checkpoints.c.created_at,
        )
        .join(wards, wards.c.code == checkpoints.c.ward_code)
        .order_by(checkpoints.c.id)
    )
    return [CheckpointOut.model_validate(dict(r)) for r in conn.execute(query).mappings()]


def create_checkpoint(
    conn: Connection, *, body: CheckpointCreate, officer: Officer, ip: str
) -> CheckpointOut:
    """Create a checkpoint (the ward must exist, the id must be new)."""
    problems = []
    if get_ward(conn, code=body.ward_code) is None:
        problems.append(Problem("ward_code", "error.unknown_ward", {"code": body.ward_code}))
    if conn.execute(select(exists().where(checkpoints.c.id == body.id))).scalar_one():
        problems.append(Problem("id", "error.checkpoint_taken", {"id": body.id}))
    _raise_if(problems)
    upsert_checkpoint(
        conn,
        id=body.id,
        name=body.name,
        kind=body.kind,
        ward_code=body.ward_code,
        lat=body.lat,
        lon=body.lon,
        owner=body.owner or None,
    )
    record_action(
        conn,
        officer=officer,
        action="admin.checkpoint.create",
        subject=f"checkpoint:{body.id}",
        detail=body.model_dump(mode="json"),
        ip=ip,
    )
    return next(c for c in list_checkpoint_rows(conn) if c.id == body.id)


def find_wards(conn: Connection, query: str, *, limit: int = 20) -> list[WardOut]:
    """Wards matching ``query`` ignoring diacritics (a number: the ward with that code)."""
    query = query.strip()
    # ASCII digits only ("²" is a digit to str.isdigit) and short enough for the column.
    if query.isascii() and query.isdigit():
        code = int(query)
        ward = get_ward(conn, code=code) if code <= WARD_CODE_MAX else None
        found = [ward] if ward is not None else []
    else:
        found = search_wards(conn, name_query=query, limit=limit)
    return [
        WardOut(
            code=w.code,
            name=w.name,
            province_code=w.province_code,
            province_name=w.province_name,
            label=w.label,
        )
        for w in found
    ]


# --- devices -----------------------------------------------------------------------


def create_device(
    conn: Connection, *, body: DeviceCreate, officer: Officer, ip: str
) -> IssuedDevice:
    """Register a device with fresh MQTT credentials (returned once; never stored in clear)."""
    problems = []
    if not conn.execute(
        select(exists().where(checkpoints.c.id == body.checkpoint_id))
    ).scalar_one():
        problems.append(
            Problem("checkpoint_id", "error.unknown_checkpoint", {"id": body.checkpoint_id})
        )
    taken = exists().where(or_(devices.c.id == body.id, devices.c.mqtt_username == body.id))
    if conn.execute(select(taken)).scalar_one():
        problems.append(Problem("id", "error.device_taken", {"id": body.id}))
    _raise_if(problems)
    issued = issue_device(
        conn,
        device_id=body.id,
        checkpoint_id=body.checkpoint_id,
        lane=body.lane,
        direction=body.direction,
    )
    record_action(
        conn,
        officer=officer,
        action="admin.device.create",
        subject=f"device:{body.id}",
        detail=body.model_dump(mode="json"),
        ip=ip,
    )
    return issued


def update_broker(engine: Engine, settings: WebSettings) -> list[BrokerNotice]:
    """Rewrite the broker's password file from the registry and ask the broker to reload.

    Never raises: what happened (or why not) comes back as notices for the page,
    since the device is already saved and the file can be rewritten later.
    """
    path = settings.broker_passwd_file
    if path is None:
        return [BrokerNotice(level="warn", key="admin.devices.broker_unset", params={})]
    try:
        with engine.connect() as conn:
            written = sync_password_file(conn, path=path)
    except (OSError, ValueError) as exc:
        log.warning("broker password file %s not written: %s", path, exc)
        return [
            BrokerNotice(
                level="error", key="admin.devices.broker_failed", params={"error": str(exc)}
            )
        ]
    notices = [
        BrokerNotice(
            level="ok",
            key="admin.devices.broker_written",
            params={"path": str(written.path), "accounts": written.accounts},
        )
    ]
    if settings.broker_pid_file is None:
        notices.append(BrokerNotice(level="warn", key="admin.devices.broker_no_reload", params={}))
        return notices
    try:
        pid = reload_broker(settings.broker_pid_file)
    except (OSError, ValueError) as exc:
        log.warning("broker reload via %s failed: %s", settings.broker_pid_file, exc)
        notices.append(
            BrokerNotice(
                level="error", key="admin.devices.broker_failed", params={"error": str(exc)}
            )
        )
    else:
        notices.append(
            BrokerNotice(level="ok", key="admin.devices.broker_reloaded", params={"pid": pid})
        )
    return notices


# --- officers ----------------------------------------------------------------------


def create_officer(
    conn: Connection, *, body: OfficerCreate, officer: Officer, ip: str
) -> OfficerRow:
    """Create an account (every rule of :func:`aggregator.auth.accounts.create_officer`)."""
    officer_id = accounts.create_officer(
        conn,
        username=body.username,
        full_name=body.full_name,
        role=body.role,
        scopes=body.scopes,
        password=body.password,
    )
    record_action(
        conn,
        officer=officer,
        action="admin.officer.create",
        subject=f"officer:{body.username}",
        detail={"role": body.role.value, "scopes": [str(s) for s in body.scopes]},
        ip=ip,
    )
    created = accounts.get_officer(conn, officer_id=officer_id)
    if created is None:  # deleted by another transaction meanwhile
        raise LookupError(f"officer {officer_id}")
    return created


def update_officer(
    conn: Connection, *, officer_id: int, body: OfficerUpdate, officer: Officer, ip: str
) -> OfficerRow:
    """Change an account; an admin cannot deactivate themself or drop their own admin role."""
    if officer_id == officer.id and (
        body.active is False or (body.role is not None and body.role is not Role.ADMIN)
    ):
        raise ProblemError([Problem("", "error.self_lockout")])
    before = accounts.get_officer(conn, officer_id=officer_id)
    if before is None:
        raise LookupError(f"officer {officer_id}")
    after = accounts.update_officer(
        conn,
        officer_id=officer_id,
        full_name=body.full_name,
        role=body.role,
        scopes=body.scopes,
        active=body.active,
    )
    changes: dict[str, Any] = {}
    for name in ("full_name", "role", "active"):
        if getattr(before, name) != getattr(after, name):
            changes[name] = [str(getattr(before, name)), str(getattr(after, name))]
    if set(before.scopes) != set(after.scopes):
        changes["scopes"] = [[str(s) for s in before.scopes], [str(s) for s in after.scopes]]
    if changes:
        record_action(
            conn,
            officer=officer,
            action="admin.officer.update",
            subject=f"officer:{after.username}",
            detail=changes,
            ip=ip,
        )
    return after


def reset_password(
    conn: Connection, *, officer_id: int, password: str, officer: Officer, ip: str
) -> OfficerRow:
    """Set an account's password (its sessions end)."""
    accounts.set_password(conn, officer_id=officer_id, password=password)
    target = accounts.get_officer(conn, officer_id=officer_id)
    if target is None:
        raise LookupError(f"officer {officer_id}")
    record_action(
        conn,
        officer=officer,
        action="admin.officer.password",
        subject=f"officer:{target.username}",
        ip=ip,
    )
    return target
