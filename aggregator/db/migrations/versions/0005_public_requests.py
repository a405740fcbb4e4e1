"""Public (no login) forms: requests counted per client address for rate limiting.

- ``public_requests``: one row per accepted request to a public form (the
  citizen's health declaration), by bucket and client address, so every
  aggregator process behind the load balancer counts the same requests.
  Rows older than the longest window are pruned as requests arrive and by the
  retention job.

Revision ID: 0005
Revises: 0004
Create Date: 2026-01-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Add the ``public_requests`` table and its indexes."""
    op.create_table(
        "public_requests",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("bucket", sa.String(length=32), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_public_requests")),
    )
    op.create_index("ix_public_requests_bucket_ip_at", "public_requests", ["bucket", "ip", "at"])
    op.create_index("ix_public_requests_at", "public_requests", ["at"])


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.drop_index("ix_public_requests_at", table_name="public_requests")
    op.drop_index("ix_public_requests_bucket_ip_at", table_name="public_requests")
    op.drop_table("public_requests")
