"""Where checkpoints are: ward, province and coordinates, for scope checks and the map.

An officer's scope is a checkpoint, a ward or a province, so deciding whether
one may see a checkpoint's alert needs the checkpoint's ward and that ward's
province; the command centre's schematic map needs the coordinates.
"""

from __future__ import annotations

from collections.abc import Collection

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, Connection, select

from aggregator.db.schema import CheckpointKind, checkpoints, wards


class CheckpointPlace(BaseModel):
    """A checkpoint, its ward and province, and its coordinates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    kind: CheckpointKind
    ward_code: int
    ward_name: str
    province_code: int
    province_name: str
    lat: float | None
    lon: float | None
    active: bool


def checkpoint_places(
    conn: Connection,
    *,
    ids: Collection[str] | None = None,
    scope: ColumnElement[bool] | None = None,
) -> dict[str, CheckpointPlace]:
    """Checkpoints by id (only ``ids`` when given; only those ``scope`` admits when given).

    ``scope`` is a condition on the ``checkpoints`` table, such as an officer's
    ``checkpoint_filter()``.
    """
    # Checkpoints first, their wards second: a scope may hold its own subquery
    # on wards, which a join with wards here would wrongly correlate.
    query = select(
        checkpoints.c.id,
        checkpoints.c.name,
        checkpoints.c.kind,
        checkpoints.c.ward_code,
        checkpoints.c.lat,
        checkpoints.c.lon,
        checkpoints.c.active,
    ).order_by(checkpoints.c.id)
    if ids is not None:
        if not ids:
            return {}
        query = query.where(checkpoints.c.id.in_(sorted(set(ids))))
    if scope is not None:
        query = query.where(scope)
    rows = list(conn.execute(query).mappings())
    codes = sorted({row["ward_code"] for row in rows})
    named = {
        w.code: w
        for w in conn.execute(
            select(wards.c.code, wards.c.name, wards.c.province_code, wards.c.province_name).where(
                wards.c.code.in_(codes)
            )
        )
    }
    found = {}
    for row in rows:
        ward = named[row["ward_code"]]
        found[row["id"]] = CheckpointPlace(
            **row,
            ward_name=ward.name,
            province_code=ward.province_code,
            province_name=ward.province_name,
        )
    return found
