"""Ingest pipeline: clock skew on passages and devices, deny-list revisions,
indexes for the deny-list's change detection.

- ``passages.clock_skew_s`` / ``devices.clock_skew_s``: how far ahead of the
  aggregator's clock a device's clock was (seconds), recorded when it is beyond
  the configured threshold (passages) or at every status message (devices).
- ``deny_list_revisions``: every deny-list published gets its revision from
  this sequence, so revisions keep increasing across restarts and across
  aggregator processes (a gate ignores a revision lower than the one it holds).
- ``ix_citizens_updated_at`` and the partial ``ix_citizens_flagged``: the
  deny-list publisher polls ``max(updated_at)`` and the per-status counts of
  flagged citizens every few seconds; without them each poll scans the registry.

Revision ID: 0003
Revises: 0002
Create Date: 2026-01-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
FLAGGED = "health_status IN ('F0', 'F1', 'deceased')"


def upgrade() -> None:
    """Add the columns, the revisions table and the registry indexes."""
    op.add_column("passages", sa.Column("clock_skew_s", sa.Float(), nullable=True))
    op.add_column("devices", sa.Column("clock_skew_s", sa.Float(), nullable=True))
    op.create_table(
        "deny_list_revisions",
        sa.Column("revision", ID, autoincrement=True, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("revision", name=op.f("pk_deny_list_revisions")),
    )
    op.create_index("ix_citizens_updated_at", "citizens", ["updated_at"], unique=False)
    op.create_index(
        "ix_citizens_flagged",
        "citizens",
        ["health_status"],
        unique=False,
        sqlite_where=sa.text(FLAGGED),
        postgresql_where=sa.text(FLAGGED),
    )


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.drop_index("ix_citizens_flagged", table_name="citizens")
    op.drop_index("ix_citizens_updated_at", table_name="citizens")
    op.drop_table("deny_list_revisions")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("clock_skew_s")
    with op.batch_alter_table("passages") as batch:
        batch.drop_column("clock_skew_s")
