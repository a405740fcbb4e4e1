"""Load Vietnam's administrative units (2025 reform: 34 provinces, 3,321 wards).

Every database gets the real wards from the ``vietnam-provinces`` package, so
citizens, checkpoints and notifications can always reference a ward by code.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from vietnam_provinces import Province, Ward

from contract.text import fold

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_wards = sa.table(
    "wards",
    sa.column("code", sa.Integer),
    sa.column("name", sa.String),
    sa.column("division_type", sa.String),
    sa.column("province_code", sa.Integer),
    sa.column("province_name", sa.String),
    sa.column("name_folded", sa.String),
)


def upgrade() -> None:
    """Insert one row per ward."""
    provinces = {int(p.code): p.name for p in Province.iter_all()}
    rows = [
        {
            "code": int(w.code),
            "name": w.name,
            "division_type": w.division_type.value,
            "province_code": int(w.province_code),
            "province_name": provinces[int(w.province_code)],
            "name_folded": fold(w.name),
        }
        for w in Ward.iter_all()
    ]
    op.bulk_insert(_wards, rows)


def downgrade() -> None:
    """Remove the wards (only possible while nothing references them)."""
    op.execute(_wards.delete())
