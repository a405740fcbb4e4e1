"""The reads one batch needs: one query for its declarations, one for its devices.

Both run inside the batch's transaction. The registry is read fresh for every
batch (never cached), so a status change or a revocation applies to the very
next passage.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select

from aggregator.db.schema import HealthStatus, citizens, declarations, devices
from aggregator.ingest.verdicts import RegistryRecord

_DECLARATIONS = (
    select(
        declarations.c.id,
        declarations.c.citizen_id,
        citizens.c.health_status,
        citizens.c.vaccine_doses,
        declarations.c.origin_ward_code,
        declarations.c.destination_ward_code,
        citizens.c.temporary_ward_code,
        declarations.c.expires_at,
        declarations.c.revoked_at,
    )
    .join_from(declarations, citizens, declarations.c.citizen_id == citizens.c.id)
    .where(declarations.c.id.in_(bindparam("ids", expanding=True)))
)


def registry_records(
    conn: Connection, *, declaration_ids: Collection[int]
) -> dict[int, RegistryRecord]:
    """The registry's records for these declaration ids (unknown ids are absent)."""
    if not declaration_ids:
        return {}
    rows = conn.execute(_DECLARATIONS, {"ids": sorted(declaration_ids)})
    return {
        row[0]: RegistryRecord(
            declaration_id=row[0],
            citizen_id=row[1],
            health_status=HealthStatus(row[2]),
            vaccine_doses=row[3],
            origin_ward_code=row[4],
            destination_ward_code=row[5],
            temporary_ward_code=row[6],
            expires_at=row[7],
            revoked_at=row[8],
        )
        for row in rows
    }


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What a batch needs to know about one of its devices."""

    checkpoint_id: str
    last_seq: int | None


_DEVICES = select(devices.c.id, devices.c.checkpoint_id, devices.c.last_seq).where(
    devices.c.id.in_(bindparam("ids", expanding=True))
)
# Rows locked in id order: two aggregators locking overlapping sets of devices
# always queue behind each other instead of deadlocking. FOR NO KEY UPDATE,
# not FOR UPDATE: the batch's passages were inserted first, and their foreign
# keys hold KEY SHARE locks on these rows, which FOR UPDATE conflicts with.
# Two transactions that had both inserted passages of the same gates then
# each waited for the other's KEY SHARE lock: PostgreSQL's DeadlockDetected.
_DEVICES_FOR_UPDATE = _DEVICES.order_by(devices.c.id).with_for_update(key_share=True)


def device_states(
    conn: Connection, *, device_ids: Collection[str], lock: bool = False
) -> dict[str, DeviceState]:
    """Registered devices among ``device_ids``; with ``lock``, their rows stay locked
    (PostgreSQL ``FOR NO KEY UPDATE``) until the transaction ends."""
    if not device_ids:
        return {}
    statement = _DEVICES_FOR_UPDATE if lock else _DEVICES
    rows = conn.execute(statement, {"ids": sorted(device_ids)})
    return {row[0]: DeviceState(row[1], row[2]) for row in rows}
