"""Bodies of the admin API and forms (one model each, ``extra="forbid"``) and what it returns.

Validators raise errors whose type is an :mod:`aggregator.web.i18n` key, so a
form shows them in the officer's language and the JSON API in both.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aggregator.auth.accounts import USERNAME_PATTERN, normalize_username
from aggregator.auth.device_credentials import IssuedDevice
from aggregator.auth.model import Scope
from aggregator.auth.problems import custom_error
from aggregator.db.schema import CheckpointKind, DeviceDirection, Role
from aggregator.db.venues import Latitude, Longitude, check_coordinate_pair
from aggregator.web.forms import Day, RowId, WardCode
from contract.topics import CHECKPOINT_ID_PATTERN, DEVICE_ID_PATTERN

_CHECKPOINT_ID = re.compile(CHECKPOINT_ID_PATTERN)
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_USERNAME = re.compile(USERNAME_PATTERN)
MAX_LANE = 99


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CheckpointCreate(_Body):
    """A new checkpoint."""

    id: str
    name: str = Field(min_length=1, max_length=200)
    kind: CheckpointKind
    ward_code: WardCode
    lat: Latitude | None = None
    lon: Longitude | None = None
    owner: str | None = Field(default=None, max_length=200)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _CHECKPOINT_ID.match(value):
            raise custom_error("error.checkpoint_id")
        return value

    @model_validator(mode="after")
    def _pair(self) -> Self:
        check_coordinate_pair(self.lat, self.lon)
        return self


class DeviceCreate(_Body):
    """A new gate device at a checkpoint (its MQTT password is generated)."""

    id: str
    checkpoint_id: str = Field(min_length=1, max_length=64)
    lane: int
    direction: DeviceDirection = DeviceDirection.IN

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _DEVICE_ID.match(value):
            raise custom_error("error.device_id")
        return value

    @field_validator("lane")
    @classmethod
    def _lane(cls, value: int) -> int:
        if not 0 <= value <= MAX_LANE:
            raise custom_error("error.lane")
        return value


class OfficerCreate(_Body):
    """A new officer account (the password rules are checked against the username too)."""

    username: str
    full_name: str
    role: Role
    scopes: list[Scope] = []
    password: str = Field(max_length=1024)

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        value = normalize_username(value)
        if not _USERNAME.match(value):
            raise custom_error("error.username")
        return value

    @field_validator("full_name")
    @classmethod
    def _full_name(cls, value: str) -> str:
        if not 2 <= len(value) <= 120:
            raise custom_error("error.full_name")
        return value


class OfficerUpdate(_Body):
    """Changes to an account (a field left out stays as it is)."""

    full_name: str | None = None
    role: Role | None = None
    scopes: list[Scope] | None = None
    active: bool | None = None

    @field_validator("full_name")
    @classmethod
    def _full_name(cls, value: str | None) -> str | None:
        if value is not None and not 2 <= len(value) <= 120:
            raise custom_error("error.full_name")
        return value


class PasswordSet(_Body):
    """A new password for an account."""

    password: str = Field(max_length=1024)


class CheckpointOut(BaseModel):
    """A checkpoint as the admin screens list it (with its ward and device count)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    kind: CheckpointKind
    ward_code: int
    ward_name: str
    province_name: str
    lat: float | None
    lon: float | None
    owner: str | None
    active: bool
    devices: int
    created_at: datetime


class BrokerNotice(BaseModel):
    """What happened to the broker's password file (``level``: ok, warn, error)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    level: str
    key: str
    params: dict[str, str | int]


class DeviceIssued(BaseModel):
    """The answer to a device creation: its credentials (shown once) and the broker's state."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: IssuedDevice
    broker: list[BrokerNotice]


class WardOut(BaseModel):
    """A ward for the picker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: int
    name: str
    province_code: int
    province_name: str
    label: str


class AuditQuery(_Body):
    """The audit viewer's filters and page position (all optional)."""

    officer: str | None = Field(default=None, max_length=64, description="username")
    action: str | None = Field(default=None, max_length=64)
    subject: str | None = Field(default=None, max_length=200)
    since: Day | None = None
    until: Day | None = None
    before: RowId | None = Field(default=None, description="older than this entry id")
    after: RowId | None = Field(default=None, description="newer than this entry id")

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise custom_error("error.date_range")
        return self
