"""Ward notification queue: ingest appends, the ward notifier moves in bulk.

- ``ward_notification_queue``: the departure and arrival notifications of
  the passages, written in the same transaction as the passages (so none is
  lost or made twice) but without the two ward-keyed indexes of
  ``ward_notifications``. With notifications spread over thousands of wards,
  each scan's two rows touched two leaves of each of those indexes: at
  3 million passages that was 2,740 of the 3,639 pages a 500-scan batch
  wrote (``benchmarks/bench_store_growth.py``). The notifier moves the queue
  in one statement every second, where a ward's leaf is written once per move.
  Its index on ``event_id`` appends (UUIDv7): retention looks there before it
  deletes a passage.

Rows still queued when this is downgraded are moved first, so none is lost.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONDOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
COLUMNS = "ward_code, kind, citizen_id, event_id, payload, created_at"


def upgrade() -> None:
    """Add the queue."""
    op.create_table(
        "ward_notification_queue",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("ward_code", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("citizen_id", sa.BigInteger(), nullable=True),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("payload", JSONDOC, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "kind IN ('arrival', 'departure', 'status_change', 'alert')",
            name=op.f("ck_ward_notification_queue_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["citizen_id"],
            ["citizens.id"],
            name=op.f("fk_ward_notification_queue_citizen_id_citizens"),
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["passages.event_id"],
            name=op.f("fk_ward_notification_queue_event_id_passages"),
        ),
        sa.ForeignKeyConstraint(
            ["ward_code"], ["wards.code"], name=op.f("fk_ward_notification_queue_ward_code_wards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ward_notification_queue")),
    )
    op.create_index("ix_ward_notification_queue_event_id", "ward_notification_queue", ["event_id"])


def downgrade() -> None:
    """Move what is still queued, then drop the queue."""
    op.execute(
        f"INSERT INTO ward_notifications ({COLUMNS}) "
        f"SELECT {COLUMNS} FROM ward_notification_queue ORDER BY id"
    )
    op.drop_table("ward_notification_queue")
