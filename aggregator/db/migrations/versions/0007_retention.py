"""Retention: an index on ``ward_notifications.event_id``.

- ``ix_ward_notifications_event_id``: deleting a passage makes both backends
  look for notifications still pointing at it (the foreign key check, and the
  retention job's "kept notification" test). Without an index each deleted
  passage scans the whole notifications table: measured with 40,000 passages
  and notifications, deleting 21,356 of each took 71 s on PostgreSQL and 299 s
  on SQLite (holding SQLite's write lock about 25 s per chunk), against 1.5 s
  and 1.7 s with the index.

Building it on a large table blocks writes to ``ward_notifications`` while it
runs: apply it with the other migrations, before the aggregators start.

Revision ID: 0007
Revises: 0006
Create Date: 2026-01-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the index."""
    op.create_index("ix_ward_notifications_event_id", "ward_notifications", ["event_id"])


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_ward_notifications_event_id", table_name="ward_notifications")
