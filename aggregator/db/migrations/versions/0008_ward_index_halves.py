"""Ward notifications: the full ward index replaced by a handled-only one.

``ix_ward_notifications_ward_code_created_at`` covered every notification,
and ``ix_ward_notifications_inbox`` the unhandled ones under the same key, so
ingest inserted each new notification into both, each at the leaf of a ward
drawn from thousands: two random page writes per notification, most of what
an ingest batch wrote to the WAL once the table held millions of rows. The
history is now ``ix_ward_notifications_handled`` (handled rows only, written
when an officer marks them); the inbox's "all" view reads both halves.

Building the new index on a large table blocks writes to
``ward_notifications`` while it runs (only handled rows go in, usually few):
apply it with the other migrations, before the aggregators start.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the handled half, then drop the full index."""
    op.create_index(
        "ix_ward_notifications_handled",
        "ward_notifications",
        ["ward_code", "created_at"],
        unique=False,
        sqlite_where=sa.text("handled_at IS NOT NULL"),
        postgresql_where=sa.text("handled_at IS NOT NULL"),
    )
    op.drop_index("ix_ward_notifications_ward_code_created_at", table_name="ward_notifications")


def downgrade() -> None:
    """Bring the full index back, drop the handled half."""
    op.create_index(
        "ix_ward_notifications_ward_code_created_at",
        "ward_notifications",
        ["ward_code", "created_at"],
        unique=False,
    )
    op.drop_index("ix_ward_notifications_handled", table_name="ward_notifications")
