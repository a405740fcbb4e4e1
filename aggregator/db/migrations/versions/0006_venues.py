"""Venues: premises registered by their managers as check-in points.

- ``venues``: what a venue manager registers about a checkpoint of kind
  ``venue`` (category, street address, the manager's contact), the virtual
  device its check-in page scans as (one per venue, so its passages carry
  per-device sequence numbers like a gate's) and who registered it. The
  venue's name, ward, coordinates and active flag stay on ``checkpoints``:
  tracing, reports and scopes treat a venue as any checkpoint.

Revision ID: 0006
Revises: 0005
Create Date: 2026-01-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
CATEGORIES = (
    "supermarket",
    "hospital",
    "bus_station",
    "public_service_centre",
    "market",
    "school",
    "other",
)


def upgrade() -> None:
    """Add the ``venues`` table."""
    listed = ", ".join(f"'{c}'" for c in CATEGORIES)
    op.create_table(
        "venues",
        sa.Column("checkpoint_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=24), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("contact_name", sa.String(length=120), nullable=False),
        sa.Column("contact_phone", sa.String(length=20), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("registered_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(f"category IN ({listed})", name=op.f("ck_venues_category")),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"], ["checkpoints.id"], name=op.f("fk_venues_checkpoint_id_checkpoints")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_venues_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["registered_by"], ["officers.id"], name=op.f("fk_venues_registered_by_officers")
        ),
        sa.PrimaryKeyConstraint("checkpoint_id", name=op.f("pk_venues")),
        sa.UniqueConstraint("device_id", name=op.f("uq_venues_device_id")),
    )


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.drop_table("venues")
