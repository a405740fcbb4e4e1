"""The aggregator's configuration: one pydantic model, from the command line and ``KIEMDICH_*``.

Precedence: command-line options, then environment variables (``KIEMDICH_``
plus the field name in capitals, e.g. ``KIEMDICH_DB_URL``,
``KIEMDICH_MQTT_PASSWORD``), then the defaults here. Unknown keys are refused.

Outside ``environment=development`` the service refuses to start with a
missing or well-known secret (an anonymous broker login, a demo password, an
empty TSDB token when a TSDB is configured): a deployment must say what it
uses. Secrets are ``SecretStr`` so they never appear in logs or reprs.
"""

from __future__ import annotations

import socket
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aggregator.db.engine import DEFAULT_SQLITE_CACHE_MIB, default_url, normalize_url

ENV_PREFIX = "KIEMDICH_"

# Passwords that ship in examples, compose files and docs; never acceptable in production.
DEMO_SECRETS = frozenset(
    {
        "",
        "changethis",
        "changeme",
        "secret",
        "password",
        "admin",
        "kiemdich",
        "kiemdich-dev",
        "aggregator",
        "demo",
        "test",
    }
)


class Environment(StrEnum):
    """Where the service runs: only development accepts demo secrets."""

    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


def _default_client_id() -> str:
    # Stable across restarts of the same host: the broker keeps our session
    # (and the messages we had not acknowledged) under this id.
    host = "".join(c if c.isalnum() else "-" for c in socket.gethostname().lower())
    return f"aggregator-{host}"[:64].rstrip("-")


class AggregatorSettings(BaseSettings):
    """Everything ``kiemdich aggregator run`` can be told."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    environment: Environment = Environment.PRODUCTION

    # --- store ------------------------------------------------------------------
    db_url: str = Field(default_factory=default_url, description="SQLite or PostgreSQL URL")
    migrate_on_start: bool = Field(
        default=True, description="wait for the database, then apply migrations, at start"
    )
    db_wait_s: float = Field(default=60.0, ge=0, description="how long start waits for the DB")
    sqlite_cache_mib: int = Field(
        default=DEFAULT_SQLITE_CACHE_MIB,
        ge=1,
        le=4096,
        description="SQLite page cache per connection (MiB); each busy thread's connection "
        "fills it over the first minutes on a large store",
    )

    # --- broker -----------------------------------------------------------------
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_ca_file: Path | None = Field(default=None, description="CA bundle: enables TLS")
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=65535)
    client_id: str = Field(
        default_factory=_default_client_id,
        description="MQTT client id; keep it stable, the broker holds our session under it",
    )
    session_expiry_s: int = Field(default=7 * 86_400, ge=60)
    receive_maximum: int = Field(default=2000, ge=1, le=65535)
    verdict_qos: int = Field(
        default=0,
        ge=0,
        le=1,
        description="QoS of the verdicts sent back to the gates. 0 (default): a verdict is "
        "useful only live (the gate already shows its offline check), and at QoS 1 paho "
        "keeps 20 in flight and queues the rest without bound, so under load verdicts "
        "arrived late and the queue grew; alert notices stay at QoS 1",
    )
    mqtt_process: bool = Field(
        default=True,
        description="run the scan stream's MQTT connection in a child process, so paho's "
        "per-message work runs beside (not under the GIL of) verification and the database",
    )

    # --- batching ---------------------------------------------------------------
    batch_size: int = Field(default=500, ge=1, le=10_000, description="most scans per transaction")
    batch_ms: int = Field(
        default=10,
        ge=1,
        le=10_000,
        description="longest a scan waits for others to share its transaction (light traffic "
        "does not wait: a batch closes as soon as everything received is verified)",
    )
    retry_min_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)

    # --- verification -----------------------------------------------------------
    keyring_path: Path = Field(
        default=Path("var/sim/keyring.json"), description="public keyring (kiemdich-keyring/1)"
    )
    token_cache_size: int = Field(default=50_000, ge=0)
    token_leeway_s: int = Field(default=0, ge=0, le=86_400)
    clock_skew_threshold_s: float = Field(
        default=30.0, gt=0, description="device clock ahead by more is recorded, not refused"
    )

    # --- deny-list, keyring, fleet --------------------------------------------------
    poll_interval_s: float = Field(
        default=3.0, gt=0, description="registry change detection and keyring file check"
    )
    denylist_max_age_s: float = Field(default=3600.0, gt=0)
    fleet_flush_s: float = Field(default=1.0, gt=0)

    # --- HTTP -------------------------------------------------------------------
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    ready_max_lag_s: float = Field(
        default=10.0, gt=0, description="/readyz fails while the oldest uncommitted scan is older"
    )

    # --- time series ------------------------------------------------------------
    tsdb_url: str | None = None
    tsdb_org: str = "kiemdich"
    tsdb_bucket: str = "kiemdich"
    tsdb_token: SecretStr = SecretStr("")

    # --- retention (aggregator.retention; docs/architecture.md "Data retention") ------
    retention_days: int = Field(
        default=28,
        ge=0,
        description="passages, handled ward notifications, dead letters and sequence gaps "
        "older than this many whole days (Vietnam time) are deleted; 0 turns retention off",
    )
    unhandled_notification_days: int = Field(
        default=90,
        ge=0,
        description="unhandled ward notifications are kept until handled, but at most this "
        "many days (never less than retention_days)",
    )
    alert_retention_days: int = Field(
        default=365,
        ge=0,
        description="resolved alerts (and their passages) are deleted this many days after "
        "being resolved; open and acknowledged alerts never; 0 keeps them forever",
    )
    rollup_retention_days: int = Field(
        default=400,
        ge=0,
        description="per-minute counts the daily reports read (no personal data); "
        "0 keeps them forever",
    )
    audit_retention_days: int = Field(
        default=0,
        ge=0,
        description="audit log rows older than this are deleted; 0 (default) keeps the "
        "legal record forever",
    )
    retention_interval_s: float = Field(
        default=3600.0, gt=0, description="how often the retention job runs"
    )
    retention_start_delay_s: float = Field(
        default=300.0, ge=0, description="first retention run this long after start-up"
    )
    retention_chunk_rows: int = Field(
        default=5000, ge=1, le=100_000, description="most rows one retention transaction deletes"
    )
    retention_pause_s: float = Field(
        default=0.05, ge=0, le=60, description="pause between two retention transactions"
    )

    @field_validator("db_url")
    @classmethod
    def _supported_db(cls, value: str) -> str:
        normalize_url(value)  # raises ValueError for other backends
        return value

    @field_validator("client_id")
    @classmethod
    def _client_id_shape(cls, value: str) -> str:
        if not value or len(value) > 64 or not value.isascii():
            raise ValueError("client_id: 1-64 ASCII characters")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.retry_min_s > self.retry_max_s:
            raise ValueError("retry_min_s > retry_max_s")
        if self.mqtt_password is not None and self.mqtt_username is None:
            raise ValueError("mqtt_password set without mqtt_username")
        if self.environment is Environment.DEVELOPMENT:
            return self
        problems = []
        if self.mqtt_username is None or self.mqtt_password is None:
            problems.append("mqtt_username/mqtt_password are required (no anonymous broker)")
        elif self.mqtt_password.get_secret_value().strip().lower() in DEMO_SECRETS:
            problems.append("mqtt_password is a demo password")
        if self.tsdb_url and self.tsdb_token.get_secret_value().strip().lower() in DEMO_SECRETS:
            problems.append("tsdb_token is empty or a demo token")
        if problems:
            raise ValueError(
                f"Bí mật mặc định bị từ chối ngoài môi trường development / refused outside "
                f"environment=development ({self.environment.value}): " + "; ".join(problems)
            )
        return self


def load_settings(**overrides: Any) -> AggregatorSettings:
    """Settings from ``overrides`` (command line; None means "not given"), env and defaults."""
    return AggregatorSettings(**{k: v for k, v in overrides.items() if v is not None})
