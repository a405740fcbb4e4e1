"""The aggregator's SQL schema (SQLAlchemy Core), the single description of every table.

Tables are only ever created by the Alembic migrations in ``migrations/``; a test
checks that the migrated database and this metadata agree on both SQLite and
PostgreSQL. Vocabularies are ``StrEnum``s whose values the CHECK constraints
enforce, so a typo in a status is refused by the database, not stored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from contract.messages import Color, Direction
from contract.token import MAX_DECLARATION_ID

# Deterministic constraint names: Alembic can then drop or alter them by name on
# both backends (SQLite batch mode needs names to recreate tables).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp that round-trips identically on SQLite and PostgreSQL.

    SQLite has no time zones: values are stored as naive UTC text and come back
    with ``tzinfo=UTC``. PostgreSQL stores ``timestamptz``; results are converted
    to UTC so callers never see the session's zone. Naive datetimes are refused
    rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Check the value is aware and normalise it to UTC (naive UTC for SQLite)."""
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime refused (give it a time zone, e.g. UTC): {value!r}")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime whatever the backend handed back."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Surrogate keys: BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the
# auto-incrementing rowid alias, so the variant keeps autoincrement working there.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")
# JSONB on PostgreSQL (indexable, compact); JSON text on SQLite.
JSONDoc = JSON().with_variant(JSONB(), "postgresql")
# Folded (diacritics-free) search keys are compared byte-wise: a prefix search is
# then a plain index range on both backends, whatever the database's locale.
FoldedText = String(200).with_variant(String(200, collation="C"), "postgresql")


class HealthStatus(StrEnum):
    """Epidemiological status kept in the registry (F0 = confirmed case, F1 = close contact...)."""

    NONE = "none"
    F0 = "F0"
    F1 = "F1"
    F2 = "F2"
    F3 = "F3"
    RECOVERED = "recovered"
    DECEASED = "deceased"


class Sex(StrEnum):
    """Sex as recorded on the identity card."""

    MALE = "male"
    FEMALE = "female"


class DeclarationSource(StrEnum):
    """Where a health declaration was filed."""

    APP = "app"
    WEB = "web"
    PAPER = "paper"


class CheckpointKind(StrEnum):
    """What kind of place a checkpoint is."""

    CITY_GATE = "city_gate"
    HIGHWAY = "highway"
    SIDE_ROAD = "side_road"
    VENUE = "venue"


class VenueCategory(StrEnum):
    """What kind of premises a venue (a check-in point registered by its manager) is."""

    SUPERMARKET = "supermarket"
    HOSPITAL = "hospital"
    BUS_STATION = "bus_station"
    PUBLIC_SERVICE_CENTRE = "public_service_centre"
    MARKET = "market"
    SCHOOL = "school"
    OTHER = "other"


class DeviceDirection(StrEnum):
    """Which way a device's lane counts traffic."""

    IN = "in"
    OUT = "out"
    BOTH = "both"


class AlertStatus(StrEnum):
    """Life cycle of an alert on the officers' monitor."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class NotificationKind(StrEnum):
    """Why a ward is told about a citizen."""

    ARRIVAL = "arrival"
    DEPARTURE = "departure"
    STATUS_CHANGE = "status_change"
    ALERT = "alert"


class Role(StrEnum):
    """An officer account's role (what screens and data it may use)."""

    CHECKPOINT_OFFICER = "checkpoint_officer"
    WARD_POLICE = "ward_police"
    INVESTIGATOR = "investigator"
    COMMAND_CENTRE = "command_centre"
    VENUE_MANAGER = "venue_manager"
    HEALTH_OFFICIAL = "health_official"
    ADMIN = "admin"


class ScopeKind(StrEnum):
    """What an officer's scope restricts: one checkpoint, one ward or one province."""

    CHECKPOINT = "checkpoint"
    WARD = "ward"
    PROVINCE = "province"


# Statuses that put a citizen's current declarations on the gates' deny-list.
DENIED_STATUSES = (HealthStatus.F0, HealthStatus.F1, HealthStatus.DECEASED)
FLAGGED_STATUS_SQL = "health_status IN ({})".format(
    ", ".join(f"'{s.value}'" for s in DENIED_STATUSES)
)


def _one_of(column: str, values: type[StrEnum], name: str) -> CheckConstraint:
    listed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=name)


def _now() -> datetime:
    return datetime.now(UTC)


def _created_at(**kw: Any) -> Column[datetime]:
    return Column("created_at", UTCDateTime(), nullable=False, default=_now, **kw)


wards = Table(
    "wards",
    metadata,
    Column("code", Integer, primary_key=True, autoincrement=False),
    Column("name", String(100), nullable=False),
    Column("division_type", String(32), nullable=False),
    Column("province_code", Integer, nullable=False),
    Column("province_name", String(100), nullable=False),
    Column("name_folded", FoldedText, nullable=False),
    Index("ix_wards_province_code", "province_code"),
    Index("ix_wards_name_folded", "name_folded"),
)

officers = Table(
    "officers",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False),
    Column("full_name", String(120), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(24), nullable=False),
    Column("active", Boolean, nullable=False, default=True, server_default=text("true")),
    _created_at(),
    Column("last_login_at", UTCDateTime()),
    UniqueConstraint("username"),
    _one_of("role", Role, "role"),
)

officer_scopes = Table(
    "officer_scopes",
    metadata,
    Column("officer_id", BigInteger, ForeignKey("officers.id", ondelete="CASCADE"), nullable=False),
    Column("scope_kind", String(16), nullable=False),
    Column("scope_value", String(64), nullable=False),
    PrimaryKeyConstraint("officer_id", "scope_kind", "scope_value"),
    _one_of("scope_kind", ScopeKind, "scope_kind"),
)

citizens = Table(
    "citizens",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("identity_no", String(12), nullable=False),
    Column("full_name", String(120), nullable=False),
    Column("full_name_folded", FoldedText, nullable=False),
    Column("date_of_birth", Date, nullable=False),
    Column("sex", String(6), nullable=False),
    Column("phone", String(15)),
    Column("permanent_ward_code", Integer, ForeignKey("wards.code"), nullable=False),
    Column("temporary_ward_code", Integer, ForeignKey("wards.code")),
    Column("vaccine_doses", SmallInteger, nullable=False, default=0, server_default=text("0")),
    Column(
        "health_status",
        String(10),
        nullable=False,
        default=HealthStatus.NONE.value,
        server_default=text("'none'"),
    ),
    Column("status_since", UTCDateTime(), nullable=False, default=_now),
    Column("updated_at", UTCDateTime(), nullable=False, default=_now, onupdate=_now),
    UniqueConstraint("identity_no"),
    CheckConstraint("length(identity_no) = 12", name="identity_no_length"),
    CheckConstraint("vaccine_doses >= 0", name="vaccine_doses_non_negative"),
    _one_of("sex", Sex, "sex"),
    _one_of("health_status", HealthStatus, "health_status"),
    Index("ix_citizens_full_name_folded", "full_name_folded"),
    Index("ix_citizens_permanent_ward_code", "permanent_ward_code"),
    Index("ix_citizens_temporary_ward_code", "temporary_ward_code"),
    # The deny-list publisher's change detection polls these every few seconds.
    Index("ix_citizens_updated_at", "updated_at"),
    Index(
        "ix_citizens_flagged",
        "health_status",
        sqlite_where=text(FLAGGED_STATUS_SQL),
        postgresql_where=text(FLAGGED_STATUS_SQL),
    ),
)

declarations = Table(
    "declarations",
    metadata,
    # The random id signed into the pass token (contract.token.MAX_DECLARATION_ID).
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("citizen_id", BigInteger, ForeignKey("citizens.id"), nullable=False),
    Column("origin_ward_code", Integer, ForeignKey("wards.code")),
    Column("destination_ward_code", Integer, ForeignKey("wards.code")),
    Column("origin_detail", Text),
    Column("destination_detail", Text),
    Column("symptoms", JSONDoc, nullable=False, default=list),
    Column("contact_risk", Boolean, nullable=False, default=False, server_default=text("false")),
    Column("source", String(8), nullable=False),
    Column("entered_by", BigInteger, ForeignKey("officers.id")),
    Column("key_id", SmallInteger, nullable=False),
    _created_at(),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
    CheckConstraint(f"id BETWEEN 1 AND {MAX_DECLARATION_ID}", name="id_range"),
    CheckConstraint("expires_at > created_at", name="expires_after_created"),
    _one_of("source", DeclarationSource, "source"),
    Index("ix_declarations_citizen_id_created_at", "citizen_id", "created_at"),
    # The revocation list pushed to gates: tiny, so a partial index keeps it instant.
    Index(
        "ix_declarations_revoked_at",
        "revoked_at",
        sqlite_where=text("revoked_at IS NOT NULL"),
        postgresql_where=text("revoked_at IS NOT NULL"),
    ),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("ward_code", Integer, ForeignKey("wards.code"), nullable=False),
    Column("lat", Float),
    Column("lon", Float),
    Column("owner", String(200)),
    Column("active", Boolean, nullable=False, default=True, server_default=text("true")),
    _created_at(),
    _one_of("kind", CheckpointKind, "kind"),
    CheckConstraint("lat BETWEEN -90 AND 90", name="lat_range"),
    CheckConstraint("lon BETWEEN -180 AND 180", name="lon_range"),
    Index("ix_checkpoints_ward_code", "ward_code"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("checkpoint_id", String(64), ForeignKey("checkpoints.id"), nullable=False),
    Column("lane", SmallInteger, nullable=False),
    Column("direction", String(4), nullable=False),
    Column("mqtt_username", String(64), nullable=False),
    Column("mqtt_password_hash", String(255), nullable=False),
    # The same password in mosquitto's own ``$7$`` format, kept for devices whose
    # credentials the admin screens issued, so the broker's password file can be
    # rewritten from the registry (the plain password is shown once, never stored).
    Column("mqtt_broker_hash", String(255)),
    _created_at(),
    Column("last_seen_at", UTCDateTime()),
    Column("last_seq", BigInteger),
    Column("state", String(16), nullable=False, default="unknown", server_default="unknown"),
    # Device clock minus the aggregator's at the last status message (positive: ahead).
    Column("clock_skew_s", Float),
    UniqueConstraint("mqtt_username"),
    _one_of("direction", DeviceDirection, "direction"),
    CheckConstraint("lane >= 0", name="lane_non_negative"),
    Index("ix_devices_checkpoint_id", "checkpoint_id"),
)

# A venue is a checkpoint (kind ``venue``) plus what its manager registered; its
# scans come from one virtual device (``device_id``) that never logs in to the
# broker, so its passages, sequence numbers and rollups are a checkpoint's.
venues = Table(
    "venues",
    metadata,
    Column("checkpoint_id", String(64), ForeignKey("checkpoints.id"), primary_key=True),
    Column("category", String(24), nullable=False),
    Column("address", String(300), nullable=False),
    Column("contact_name", String(120), nullable=False),
    Column("contact_phone", String(20), nullable=False),
    Column("device_id", String(64), ForeignKey("devices.id"), nullable=False),
    Column("registered_by", BigInteger, ForeignKey("officers.id")),
    _created_at(),
    UniqueConstraint("device_id"),
    _one_of("category", VenueCategory, "category"),
)

passages = Table(
    "passages",
    metadata,
    # UUIDv7 made at the edge: the idempotency key, and time-ordered so inserts append.
    Column("event_id", Uuid, primary_key=True),
    Column("device_id", String(64), ForeignKey("devices.id"), nullable=False),
    Column("checkpoint_id", String(64), ForeignKey("checkpoints.id"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("lane", SmallInteger, nullable=False),
    Column("direction", String(4), nullable=False),
    Column("seen_at", UTCDateTime(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    # The id the token claimed, kept even when the registry does not know it
    # (forged or foreign codes), hence no foreign key.
    Column("declaration_id", BigInteger),
    Column("citizen_id", BigInteger, ForeignKey("citizens.id")),
    # contract.messages.Color shown at the gate, and the VerdictCode explaining it.
    Column("verdict", String(8), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("quality", Float),
    # Set only when the device's clock was ahead of ours beyond the threshold:
    # seen_at is then suspect (and token validity was judged at received_at).
    Column("clock_skew_s", Float),
    _one_of("direction", Direction, "direction"),
    _one_of("verdict", Color, "verdict"),
    CheckConstraint("lane >= 0", name="lane_non_negative"),
    # "Who passed checkpoint X between t1 and t2" and "route of citizen Y".
    Index("ix_passages_checkpoint_id_seen_at", "checkpoint_id", "seen_at"),
    Index("ix_passages_citizen_id_seen_at", "citizen_id", "seen_at"),
)

# JPEG crops live apart so the passages table (scanned by every investigation) stays narrow.
passage_crops = Table(
    "passage_crops",
    metadata,
    Column(
        "event_id",
        Uuid,
        ForeignKey("passages.event_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("jpeg", LargeBinary, nullable=False),
)

device_seq_gaps = Table(
    "device_seq_gaps",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("device_id", String(64), ForeignKey("devices.id"), nullable=False),
    Column("first_missing", BigInteger, nullable=False),
    Column("last_missing", BigInteger, nullable=False),
    Column("detected_at", UTCDateTime(), nullable=False, default=_now),
    Column("filled_at", UTCDateTime()),
    CheckConstraint("last_missing >= first_missing", name="range_order"),
    Index("ix_device_seq_gaps_device_id_detected_at", "device_id", "detected_at"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False, default="open", server_default="open"),
    Column("event_id", Uuid, ForeignKey("passages.event_id")),
    Column("checkpoint_id", String(64), ForeignKey("checkpoints.id")),
    Column("citizen_id", BigInteger, ForeignKey("citizens.id")),
    # The citizen's status when the alert was raised (the registry may change later).
    Column("health_status", String(10)),
    Column("detail", JSONDoc, nullable=False, default=dict),
    _created_at(),
    Column("acknowledged_at", UTCDateTime()),
    Column("acknowledged_by", BigInteger, ForeignKey("officers.id")),
    Column("resolved_at", UTCDateTime()),
    Column("resolved_by", BigInteger, ForeignKey("officers.id")),
    _one_of("status", AlertStatus, "status"),
    # A redelivered event can never raise the same alert twice.
    UniqueConstraint("event_id", "kind"),
    Index("ix_alerts_status_created_at", "status", "created_at"),
    Index("ix_alerts_checkpoint_id_created_at", "checkpoint_id", "created_at"),
    Index("ix_alerts_citizen_id", "citizen_id"),
)

alert_actions = Table(
    "alert_actions",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("officer_id", BigInteger, ForeignKey("officers.id")),
    Column("action", String(24), nullable=False),
    Column("note", Text),
    Column("at", UTCDateTime(), nullable=False, default=_now),
    Index("ix_alert_actions_alert_id_at", "alert_id", "at"),
)

ward_notifications = Table(
    "ward_notifications",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("ward_code", Integer, ForeignKey("wards.code"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("citizen_id", BigInteger, ForeignKey("citizens.id")),
    Column("event_id", Uuid, ForeignKey("passages.event_id")),
    Column("payload", JSONDoc, nullable=False, default=dict),
    _created_at(),
    Column("handled_at", UTCDateTime()),
    Column("handled_by", BigInteger, ForeignKey("officers.id")),
    _one_of("kind", NotificationKind, "kind"),
    # Deleting a passage looks up notifications pointing at it (foreign key check, retention).
    Index("ix_ward_notifications_event_id", "event_id"),
    # A ward's notifications, newest first, in two halves: the unhandled inbox,
    # which every passage writes into, and the handled history, written only
    # when an officer marks them. One index over both would take a second
    # insert at a random ward's leaf for every notification ingest writes: at
    # millions of rows those two ward-keyed inserts were most of the WAL a
    # batch wrote (benchmarks/bench_store_growth.py). The "all" view merges both.
    Index(
        "ix_ward_notifications_inbox",
        "ward_code",
        "created_at",
        sqlite_where=text("handled_at IS NULL"),
        postgresql_where=text("handled_at IS NULL"),
    ),
    Index(
        "ix_ward_notifications_handled",
        "ward_code",
        "created_at",
        sqlite_where=text("handled_at IS NOT NULL"),
        postgresql_where=text("handled_at IS NOT NULL"),
    ),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False, default=_now),
    Column("officer_id", BigInteger, ForeignKey("officers.id")),
    Column("action", String(64), nullable=False),
    Column("subject", String(200)),
    Column("purpose", String(200)),
    Column("detail", JSONDoc),
    Column("ip", String(45)),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_officer_id_at", "officer_id", "at"),
    # "Who looked at citizen X" and "every export this month" (the audit viewer's filters).
    Index("ix_audit_log_subject_at", "subject", "at"),
    Index("ix_audit_log_action_at", "action", "at"),
)

# Server-side login sessions: the browser holds a random token (cookie or Bearer);
# only its SHA-256 is stored, so a copy of this table opens no session.
officer_sessions = Table(
    "officer_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("officer_id", BigInteger, ForeignKey("officers.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    _created_at(),
    Column("last_seen_at", UTCDateTime(), nullable=False, default=_now),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("ip", String(45)),
    Column("user_agent", String(200)),
    Index("ix_officer_sessions_officer_id", "officer_id"),
    Index("ix_officer_sessions_expires_at", "expires_at"),
)

# Failed logins, counted per username and per client address by the rate limiter;
# kept in the database so every aggregator process sees the same counts.
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False, default=_now),
    Column("username", String(64), nullable=False),
    Column("ip", String(45), nullable=False),
    Index("ix_login_failures_username_at", "username", "at"),
    Index("ix_login_failures_ip_at", "ip", "at"),
    Index("ix_login_failures_at", "at"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime(), nullable=False, default=_now),
    Column("topic", String(255), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("reason", String(64), nullable=False),
    Column("detail", Text),
    Index("ix_dead_letters_received_at", "received_at"),
)

checkpoint_minute_rollups = Table(
    "checkpoint_minute_rollups",
    metadata,
    Column("checkpoint_id", String(64), ForeignKey("checkpoints.id"), nullable=False),
    Column("minute", UTCDateTime(), nullable=False),
    Column("direction", String(4), nullable=False),
    Column("passages", Integer, nullable=False, default=0, server_default=text("0")),
    Column("flagged", Integer, nullable=False, default=0, server_default=text("0")),
    PrimaryKeyConstraint("checkpoint_id", "minute", "direction"),
    _one_of("direction", Direction, "direction"),
)

# One row per deny-list published: the revision sequence shared by every
# aggregator process, so revisions only ever increase.
deny_list_revisions = Table(
    "deny_list_revisions",
    metadata,
    Column("revision", BigIntId, primary_key=True, autoincrement=True),
    Column("digest", String(64), nullable=False),
    Column("entries", Integer, nullable=False),
    _created_at(),
)

# Requests to the public (no login) forms, counted per client address by the
# rate limiter of aggregator.db.declarations; shared by every aggregator process.
public_requests = Table(
    "public_requests",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False, default=_now),
    Column("bucket", String(32), nullable=False),
    Column("ip", String(45), nullable=False),
    Index("ix_public_requests_bucket_ip_at", "bucket", "ip", "at"),
    Index("ix_public_requests_at", "at"),
)
