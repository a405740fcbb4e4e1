"""Administrative units (wards and the provinces they belong to), loaded by migration 0002."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, select

from aggregator.db.schema import wards
from contract.text import fold


class WardRecord(BaseModel):
    """One ward / commune / special zone (phường, xã, đặc khu) and its province."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: int
    name: str
    division_type: str
    province_code: int
    province_name: str

    @property
    def label(self) -> str:
        """``"Phường Hoàn Kiếm, Thành phố Hà Nội"``: what an officer reads."""
        return f"{self.name}, {self.province_name}"


_COLUMNS = (
    wards.c.code,
    wards.c.name,
    wards.c.division_type,
    wards.c.province_code,
    wards.c.province_name,
)


def get_ward(conn: Connection, *, code: int) -> WardRecord | None:
    """The ward with this code, or None."""
    row = conn.execute(select(*_COLUMNS).where(wards.c.code == code)).mappings().first()
    return None if row is None else WardRecord.model_validate(dict(row))


def list_wards(conn: Connection, *, province_code: int | None = None) -> list[WardRecord]:
    """All wards (of one province when ``province_code`` is given), by code."""
    query = select(*_COLUMNS).order_by(wards.c.code)
    if province_code is not None:
        query = query.where(wards.c.province_code == province_code)
    return [WardRecord.model_validate(dict(row)) for row in conn.execute(query).mappings()]


def search_wards(conn: Connection, *, name_query: str, limit: int = 20) -> list[WardRecord]:
    """Wards whose name contains ``name_query``, ignoring diacritics and case.

    3,321 rows: a scan is instant, and a substring match lets an officer type
    "hoan kiem" without "phường".
    """
    folded = fold(name_query)
    if not folded:
        return []
    pattern = "%" + folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    query = (
        select(*_COLUMNS)
        .where(wards.c.name_folded.like(pattern, escape="\\"))
        .order_by(wards.c.province_code, wards.c.code)
        .limit(limit)
    )
    return [WardRecord.model_validate(dict(row)) for row in conn.execute(query).mappings()]
