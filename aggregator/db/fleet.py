"""Checkpoints and the gate devices registered at them.

Keyword-only data functions on SQLAlchemy Core, used by the aggregator (device
checks, fleet state) and by the simulators that register their gates. A
device's MQTT username is its id (the broker ACL ``pattern write
kd/v1/dev/%u/#`` ties every topic to it); its password is stored only as an
argon2 hash.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from aggregator.auth.passwords import hash_password, verify_password
from aggregator.db.schema import CheckpointKind, DeviceDirection, checkpoints, devices
from contract.topics import DEVICE_ID_PATTERN

_ID = re.compile(DEVICE_ID_PATTERN)


class CheckpointRecord(BaseModel):
    """A checkpoint (city gate, highway post, venue...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    kind: CheckpointKind
    ward_code: int
    lat: float | None
    lon: float | None
    owner: str | None
    active: bool
    created_at: datetime


class DeviceRecord(BaseModel):
    """A gate device and what the aggregator last knew of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    checkpoint_id: str
    lane: int
    direction: DeviceDirection
    mqtt_username: str
    created_at: datetime
    last_seen_at: datetime | None
    last_seq: int | None
    state: str
    clock_skew_s: float | None


@dataclass(frozen=True, slots=True)
class DeviceStatusRow:
    """One device's latest status for :func:`record_device_status`."""

    device_id: str
    state: str
    last_seen_at: datetime
    clock_skew_s: float | None


def _insert(conn: Connection, table: Table) -> Insert:
    # ON CONFLICT is dialect-specific in SQLAlchemy; both dialects spell it alike.
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _check_id(kind: str, ident: str) -> str:
    # Ids appear in MQTT topics: the contract's rule refuses, at registration,
    # a checkpoint or a device that could never publish.
    if not _ID.match(ident):
        raise ValueError(
            f"Mã {kind} không hợp lệ / invalid {kind} id {ident!r} (must match {DEVICE_ID_PATTERN})"
        )
    return ident


def upsert_checkpoint(
    conn: Connection,
    *,
    id: str,
    name: str,
    kind: CheckpointKind | str,
    ward_code: int,
    lat: float | None,
    lon: float | None,
    owner: str | None = None,
) -> None:
    """Create the checkpoint, or update every field of an existing one."""
    values = {
        "id": _check_id("chốt / checkpoint", id),
        "name": name,
        "kind": CheckpointKind(kind).value,
        "ward_code": ward_code,
        "lat": lat,
        "lon": lon,
        "owner": owner,
    }
    statement = _insert(conn, checkpoints).values(**values)
    statement = statement.on_conflict_do_update(  # type: ignore[attr-defined]
        index_elements=[checkpoints.c.id],
        set_={k: statement.excluded[k] for k in values if k != "id"},  # type: ignore[attr-defined]
    )
    conn.execute(statement)


def add_device(
    conn: Connection,
    *,
    id: str,
    checkpoint_id: str,
    lane: int,
    direction: DeviceDirection | str,
    mqtt_password: str,
) -> None:
    """Register a gate device at a checkpoint; its MQTT username is its id.

    Raises ``ValueError`` for an id that cannot appear in a topic or an empty
    password, ``sqlalchemy.exc.IntegrityError`` for an unknown checkpoint or a
    device id already registered.
    """
    if not mqtt_password:
        raise ValueError("Mật khẩu MQTT trống / empty MQTT password")
    conn.execute(
        devices.insert().values(
            id=_check_id("thiết bị / device", id),
            checkpoint_id=checkpoint_id,
            lane=lane,
            direction=DeviceDirection(direction).value,
            mqtt_username=id,
            mqtt_password_hash=hash_password(mqtt_password),
        )
    )


def check_device_password(conn: Connection, *, device_id: str, password: str) -> bool:
    """True when ``password`` is the device's MQTT password."""
    stored = conn.execute(
        select(devices.c.mqtt_password_hash).where(devices.c.id == device_id)
    ).scalar_one_or_none()
    return stored is not None and verify_password(stored, password)


_DEVICE_FIELDS = tuple(DeviceRecord.model_fields)
_CHECKPOINT_FIELDS = tuple(CheckpointRecord.model_fields)


def get_device(conn: Connection, *, device_id: str) -> DeviceRecord | None:
    """The device with this id, or None."""
    row = (
        conn.execute(
            select(*(devices.c[f] for f in _DEVICE_FIELDS)).where(devices.c.id == device_id)
        )
        .mappings()
        .first()
    )
    return None if row is None else DeviceRecord.model_validate(dict(row))


def list_devices(conn: Connection, *, checkpoint_id: str | None = None) -> list[DeviceRecord]:
    """All devices (of one checkpoint when given), by id."""
    query = select(*(devices.c[f] for f in _DEVICE_FIELDS)).order_by(devices.c.id)
    if checkpoint_id is not None:
        query = query.where(devices.c.checkpoint_id == checkpoint_id)
    return [DeviceRecord.model_validate(dict(row)) for row in conn.execute(query).mappings()]


def list_checkpoints(conn: Connection) -> list[CheckpointRecord]:
    """All checkpoints, by id."""
    query = select(*(checkpoints.c[f] for f in _CHECKPOINT_FIELDS)).order_by(checkpoints.c.id)
    return [CheckpointRecord.model_validate(dict(row)) for row in conn.execute(query).mappings()]


_RECORD_STATUS = (
    devices.update()
    .where(devices.c.id == bindparam("b_id"))
    .values(
        state=bindparam("b_state"),
        last_seen_at=bindparam("b_seen"),
        clock_skew_s=bindparam("b_skew"),
    )
)


def record_device_status(conn: Connection, *, rows: Iterable[DeviceStatusRow]) -> int:
    """Store devices' latest state, last-seen time and clock skew in one statement.

    Rows for devices not registered are ignored (the broker's ACL lets only
    registered devices publish, so these are leftovers of deleted ones).
    Returns how many devices were updated.

    Rows are updated in device id order, the order in which the ingest locks
    device rows, so this and a concurrent ingest transaction queue behind each
    other instead of deadlocking on PostgreSQL.
    """
    params = [
        {
            "b_id": r.device_id,
            "b_state": r.state,
            "b_seen": r.last_seen_at,
            "b_skew": r.clock_skew_s,
        }
        for r in sorted(rows, key=lambda r: r.device_id)
    ]
    if not params:
        return 0
    result = conn.execute(_RECORD_STATUS, params)
    return int(result.rowcount)
