"""Initial schema: wards, registry, checkpoints and devices, passages, alerts,
ward notifications, officers, audit log, dead letters, per-minute rollups.

Types are spelled out here rather than imported from ``aggregator.db.schema``
so this revision stays what it was when later revisions change the schema.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONDOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
FOLDED = sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql")


def upgrade() -> None:
    """Create every table, constraint and index."""
    op.create_table(
        "dead_letters",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index("ix_dead_letters_received_at", "dead_letters", ["received_at"], unique=False)

    op.create_table(
        "officers",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("full_name", sa.String(length=120), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=24), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "role IN ('checkpoint_officer', 'ward_police', 'investigator', 'command_centre',"
            " 'venue_manager', 'health_official', 'admin')",
            name=op.f("ck_officers_role"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_officers")),
        sa.UniqueConstraint("username", name=op.f("uq_officers_username")),
    )
    op.create_table(
        "wards",
        sa.Column("code", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("division_type", sa.String(length=32), nullable=False),
        sa.Column("province_code", sa.Integer(), nullable=False),
        sa.Column("province_name", sa.String(length=100), nullable=False),
        sa.Column("name_folded", FOLDED, nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_wards")),
    )
    op.create_index("ix_wards_name_folded", "wards", ["name_folded"], unique=False)
    op.create_index("ix_wards_province_code", "wards", ["province_code"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("officer_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("purpose", sa.String(length=200), nullable=True),
        sa.Column("detail", JSONDOC, nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.ForeignKeyConstraint(
            ["officer_id"], ["officers.id"], name=op.f("fk_audit_log_officer_id_officers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"], unique=False)
    op.create_index("ix_audit_log_officer_id_at", "audit_log", ["officer_id", "at"], unique=False)

    op.create_table(
        "checkpoints",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ward_code", sa.Integer(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(
            "kind IN ('city_gate', 'highway', 'side_road', 'venue')",
            name=op.f("ck_checkpoints_kind"),
        ),
        sa.CheckConstraint("lat BETWEEN -90 AND 90", name=op.f("ck_checkpoints_lat_range")),
        sa.CheckConstraint("lon BETWEEN -180 AND 180", name=op.f("ck_checkpoints_lon_range")),
        sa.ForeignKeyConstraint(
            ["ward_code"], ["wards.code"], name=op.f("fk_checkpoints_ward_code_wards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
    )
    op.create_index("ix_checkpoints_ward_code", "checkpoints", ["ward_code"], unique=False)

    op.create_table(
        "citizens",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("identity_no", sa.String(length=12), nullable=False),
        sa.Column("full_name", sa.String(length=120), nullable=False),
        sa.Column("full_name_folded", FOLDED, nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.Column("sex", sa.String(length=6), nullable=False),
        sa.Column("phone", sa.String(length=15), nullable=True),
        sa.Column("permanent_ward_code", sa.Integer(), nullable=False),
        sa.Column("temporary_ward_code", sa.Integer(), nullable=True),
        sa.Column("vaccine_doses", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "health_status", sa.String(length=10), server_default=sa.text("'none'"), nullable=False
        ),
        sa.Column("status_since", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "health_status IN ('none', 'F0', 'F1', 'F2', 'F3', 'recovered', 'deceased')",
            name=op.f("ck_citizens_health_status"),
        ),
        sa.CheckConstraint("sex IN ('male', 'female')", name=op.f("ck_citizens_sex")),
        sa.CheckConstraint("length(identity_no) = 12", name=op.f("ck_citizens_identity_no_length")),
        sa.CheckConstraint(
            "vaccine_doses >= 0", name=op.f("ck_citizens_vaccine_doses_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["permanent_ward_code"],
            ["wards.code"],
            name=op.f("fk_citizens_permanent_ward_code_wards"),
        ),
        sa.ForeignKeyConstraint(
            ["temporary_ward_code"],
            ["wards.code"],
            name=op.f("fk_citizens_temporary_ward_code_wards"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_citizens")),
        sa.UniqueConstraint("identity_no", name=op.f("uq_citizens_identity_no")),
    )
    op.create_index("ix_citizens_full_name_folded", "citizens", ["full_name_folded"], unique=False)
    op.create_index(
        "ix_citizens_permanent_ward_code", "citizens", ["permanent_ward_code"], unique=False
    )
    op.create_index(
        "ix_citizens_temporary_ward_code", "citizens", ["temporary_ward_code"], unique=False
    )

    op.create_table(
        "officer_scopes",
        sa.Column("officer_id", sa.BigInteger(), nullable=False),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_value", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "scope_kind IN ('checkpoint', 'ward', 'province')",
            name=op.f("ck_officer_scopes_scope_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["officer_id"],
            ["officers.id"],
            name=op.f("fk_officer_scopes_officer_id_officers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "officer_id", "scope_kind", "scope_value", name=op.f("pk_officer_scopes")
        ),
    )
    op.create_table(
        "checkpoint_minute_rollups",
        sa.Column("checkpoint_id", sa.String(length=64), nullable=False),
        sa.Column("minute", TS, nullable=False),
        sa.Column("direction", sa.String(length=4), nullable=False),
        sa.Column("passages", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("flagged", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint(
            "direction IN ('in', 'out')", name=op.f("ck_checkpoint_minute_rollups_direction")
        ),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name=op.f("fk_checkpoint_minute_rollups_checkpoint_id_checkpoints"),
        ),
        sa.PrimaryKeyConstraint(
            "checkpoint_id", "minute", "direction", name=op.f("pk_checkpoint_minute_rollups")
        ),
    )
    op.create_table(
        "declarations",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("citizen_id", sa.BigInteger(), nullable=False),
        sa.Column("origin_ward_code", sa.Integer(), nullable=True),
        sa.Column("destination_ward_code", sa.Integer(), nullable=True),
        sa.Column("origin_detail", sa.Text(), nullable=True),
        sa.Column("destination_detail", sa.Text(), nullable=True),
        sa.Column("symptoms", JSONDOC, nullable=False),
        sa.Column("contact_risk", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("entered_by", sa.BigInteger(), nullable=True),
        sa.Column("key_id", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.CheckConstraint(
            "source IN ('app', 'web', 'paper')", name=op.f("ck_declarations_source")
        ),
        sa.CheckConstraint(
            "expires_at > created_at", name=op.f("ck_declarations_expires_after_created")
        ),
        sa.CheckConstraint("id BETWEEN 1 AND 4294967295", name=op.f("ck_declarations_id_range")),
        sa.ForeignKeyConstraint(
            ["citizen_id"], ["citizens.id"], name=op.f("fk_declarations_citizen_id_citizens")
        ),
        sa.ForeignKeyConstraint(
            ["destination_ward_code"],
            ["wards.code"],
            name=op.f("fk_declarations_destination_ward_code_wards"),
        ),
        sa.ForeignKeyConstraint(
            ["entered_by"], ["officers.id"], name=op.f("fk_declarations_entered_by_officers")
        ),
        sa.ForeignKeyConstraint(
            ["origin_ward_code"],
            ["wards.code"],
            name=op.f("fk_declarations_origin_ward_code_wards"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_declarations")),
    )
    op.create_index(
        "ix_declarations_citizen_id_created_at",
        "declarations",
        ["citizen_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_declarations_revoked_at",
        "declarations",
        ["revoked_at"],
        unique=False,
        sqlite_where=sa.text("revoked_at IS NOT NULL"),
        postgresql_where=sa.text("revoked_at IS NOT NULL"),
    )

    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_id", sa.String(length=64), nullable=False),
        sa.Column("lane", sa.SmallInteger(), nullable=False),
        sa.Column("direction", sa.String(length=4), nullable=False),
        sa.Column("mqtt_username", sa.String(length=64), nullable=False),
        sa.Column("mqtt_password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=16), server_default="unknown", nullable=False),
        sa.CheckConstraint("direction IN ('in', 'out', 'both')", name=op.f("ck_devices_direction")),
        sa.CheckConstraint("lane >= 0", name=op.f("ck_devices_lane_non_negative")),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"], ["checkpoints.id"], name=op.f("fk_devices_checkpoint_id_checkpoints")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("mqtt_username", name=op.f("uq_devices_mqtt_username")),
    )
    op.create_index("ix_devices_checkpoint_id", "devices", ["checkpoint_id"], unique=False)

    op.create_table(
        "device_seq_gaps",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("first_missing", sa.BigInteger(), nullable=False),
        sa.Column("last_missing", sa.BigInteger(), nullable=False),
        sa.Column("detected_at", TS, nullable=False),
        sa.Column("filled_at", TS, nullable=True),
        sa.CheckConstraint(
            "last_missing >= first_missing", name=op.f("ck_device_seq_gaps_range_order")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_device_seq_gaps_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_seq_gaps")),
    )
    op.create_index(
        "ix_device_seq_gaps_device_id_detected_at",
        "device_seq_gaps",
        ["device_id", "detected_at"],
        unique=False,
    )

    op.create_table(
        "passages",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("lane", sa.SmallInteger(), nullable=False),
        sa.Column("direction", sa.String(length=4), nullable=False),
        sa.Column("seen_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("declaration_id", sa.BigInteger(), nullable=True),
        sa.Column("citizen_id", sa.BigInteger(), nullable=True),
        sa.Column("verdict", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("quality", sa.Float(), nullable=True),
        sa.CheckConstraint("direction IN ('in', 'out')", name=op.f("ck_passages_direction")),
        sa.CheckConstraint(
            "verdict IN ('green', 'yellow', 'red', 'invalid')", name=op.f("ck_passages_verdict")
        ),
        sa.CheckConstraint("lane >= 0", name=op.f("ck_passages_lane_non_negative")),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name=op.f("fk_passages_checkpoint_id_checkpoints"),
        ),
        sa.ForeignKeyConstraint(
            ["citizen_id"], ["citizens.id"], name=op.f("fk_passages_citizen_id_citizens")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_passages_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_passages")),
    )
    op.create_index(
        "ix_passages_checkpoint_id_seen_at", "passages", ["checkpoint_id", "seen_at"], unique=False
    )
    op.create_index(
        "ix_passages_citizen_id_seen_at", "passages", ["citizen_id", "seen_at"], unique=False
    )

    op.create_table(
        "alerts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("checkpoint_id", sa.String(length=64), nullable=True),
        sa.Column("citizen_id", sa.BigInteger(), nullable=True),
        sa.Column("health_status", sa.String(length=10), nullable=True),
        sa.Column("detail", JSONDOC, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("acknowledged_by", sa.BigInteger(), nullable=True),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolved_by", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'resolved')", name=op.f("ck_alerts_status")
        ),
        sa.ForeignKeyConstraint(
            ["acknowledged_by"], ["officers.id"], name=op.f("fk_alerts_acknowledged_by_officers")
        ),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"], ["checkpoints.id"], name=op.f("fk_alerts_checkpoint_id_checkpoints")
        ),
        sa.ForeignKeyConstraint(
            ["citizen_id"], ["citizens.id"], name=op.f("fk_alerts_citizen_id_citizens")
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["passages.event_id"], name=op.f("fk_alerts_event_id_passages")
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by"], ["officers.id"], name=op.f("fk_alerts_resolved_by_officers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("event_id", "kind", name=op.f("uq_alerts_event_id_kind")),
    )
    op.create_index(
        "ix_alerts_checkpoint_id_created_at",
        "alerts",
        ["checkpoint_id", "created_at"],
        unique=False,
    )
    op.create_index("ix_alerts_citizen_id", "alerts", ["citizen_id"], unique=False)
    op.create_index("ix_alerts_status_created_at", "alerts", ["status", "created_at"], unique=False)

    op.create_table(
        "passage_crops",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["passages.event_id"],
            name=op.f("fk_passage_crops_event_id_passages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_passage_crops")),
    )
    op.create_table(
        "ward_notifications",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("ward_code", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("citizen_id", sa.BigInteger(), nullable=True),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("payload", JSONDOC, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("handled_at", TS, nullable=True),
        sa.Column("handled_by", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('arrival', 'departure', 'status_change', 'alert')",
            name=op.f("ck_ward_notifications_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["citizen_id"], ["citizens.id"], name=op.f("fk_ward_notifications_citizen_id_citizens")
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["passages.event_id"],
            name=op.f("fk_ward_notifications_event_id_passages"),
        ),
        sa.ForeignKeyConstraint(
            ["handled_by"], ["officers.id"], name=op.f("fk_ward_notifications_handled_by_officers")
        ),
        sa.ForeignKeyConstraint(
            ["ward_code"], ["wards.code"], name=op.f("fk_ward_notifications_ward_code_wards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ward_notifications")),
    )
    op.create_index(
        "ix_ward_notifications_inbox",
        "ward_notifications",
        ["ward_code", "created_at"],
        unique=False,
        sqlite_where=sa.text("handled_at IS NULL"),
        postgresql_where=sa.text("handled_at IS NULL"),
    )
    op.create_index(
        "ix_ward_notifications_ward_code_created_at",
        "ward_notifications",
        ["ward_code", "created_at"],
        unique=False,
    )

    op.create_table(
        "alert_actions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("officer_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name=op.f("fk_alert_actions_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["officer_id"], ["officers.id"], name=op.f("fk_alert_actions_officer_id_officers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_actions")),
    )
    op.create_index(
        "ix_alert_actions_alert_id_at", "alert_actions", ["alert_id", "at"], unique=False
    )


def downgrade() -> None:
    """Drop every table (indexes go with them), dependents first."""
    op.drop_table("alert_actions")
    op.drop_table("ward_notifications")
    op.drop_table("passage_crops")
    op.drop_table("alerts")
    op.drop_table("passages")
    op.drop_table("device_seq_gaps")
    op.drop_table("devices")
    op.drop_table("declarations")
    op.drop_table("checkpoint_minute_rollups")
    op.drop_table("officer_scopes")
    op.drop_table("citizens")
    op.drop_table("checkpoints")
    op.drop_table("audit_log")
    op.drop_table("wards")
    op.drop_table("officers")
    op.drop_table("dead_letters")
