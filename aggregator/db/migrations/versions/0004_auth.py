"""Officers' web screens: login sessions, failed-login counts, audit viewer indexes.

- ``officer_sessions``: server-side sessions (SHA-256 of the random token, the
  form CSRF token, idle and absolute expiry, where the login came from).
- ``login_failures``: the rate limiter's memory, shared by every aggregator
  process (per username and per client address, pruned as it goes).
- ``officers.last_login_at``: shown on the accounts page.
- ``devices.mqtt_broker_hash``: mosquitto's ``$7$`` hash of a device password
  issued on the admin screens, so the broker's password file can be rewritten
  from the registry without ever storing the plain password.
- ``ix_audit_log_subject_at`` / ``ix_audit_log_action_at``: the audit viewer
  filters by subject and by action over a date range.

Revision ID: 0004
Revises: 0003
Create Date: 2026-01-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Add the sessions and failures tables, the new columns and the indexes."""
    op.create_table(
        "officer_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("officer_id", sa.BigInteger(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["officer_id"],
            ["officers.id"],
            name=op.f("fk_officer_sessions_officer_id_officers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_officer_sessions")),
    )
    op.create_index("ix_officer_sessions_officer_id", "officer_sessions", ["officer_id"])
    op.create_index("ix_officer_sessions_expires_at", "officer_sessions", ["expires_at"])
    op.create_table(
        "login_failures",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index("ix_login_failures_username_at", "login_failures", ["username", "at"])
    op.create_index("ix_login_failures_ip_at", "login_failures", ["ip", "at"])
    op.create_index("ix_login_failures_at", "login_failures", ["at"])
    op.add_column("officers", sa.Column("last_login_at", TS, nullable=True))
    op.add_column("devices", sa.Column("mqtt_broker_hash", sa.String(length=255), nullable=True))
    op.create_index("ix_audit_log_subject_at", "audit_log", ["subject", "at"])
    op.create_index("ix_audit_log_action_at", "audit_log", ["action", "at"])


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.drop_index("ix_audit_log_action_at", table_name="audit_log")
    op.drop_index("ix_audit_log_subject_at", table_name="audit_log")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("mqtt_broker_hash")
    with op.batch_alter_table("officers") as batch:
        batch.drop_column("last_login_at")
    op.drop_table("login_failures")
    op.drop_table("officer_sessions")
