"""Wire messages between edge devices and the aggregator (JSON over MQTT).

Every model forbids unknown keys and carries ``v`` (its schema version), so a
device running newer firmware is refused clearly instead of misread. JSON
rather than CBOR on the wire: a scan is a few hundred bytes (plus an optional
crop) and officers can read a captured payload with ``mosquitto_sub``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

from contract.token import MAX_TOKEN_CHARS
from contract.topics import DEVICE_ID_PATTERN

DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
CheckpointId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]

MAX_CROP_BYTES = 32 * 1024
# A scan with the largest crop, base64'd, plus its fields; anything larger is
# refused before JSON parsing.
MAX_SCAN_BYTES = 64 * 1024
MAX_STATUS_BYTES = 8 * 1024
MAX_DENYLIST_BYTES = 64 * 1024 * 1024


def _bytes_or_base64(value: object) -> bytes:
    # Python callers hand over raw JPEG bytes; JSON carries base64 text.
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"not base64: {exc}") from exc
    raise ValueError("expected JPEG bytes or base64 text")


def _cap_crop(value: bytes) -> bytes:
    if len(value) > MAX_CROP_BYTES:
        raise ValueError(f"crop is {len(value)} bytes, the cap is {MAX_CROP_BYTES}")
    return value


JpegCrop = Annotated[
    bytes,
    PlainValidator(_bytes_or_base64),
    AfterValidator(_cap_crop),
    PlainSerializer(
        lambda b: base64.b64encode(b).decode("ascii"), return_type=str, when_used="json"
    ),
    WithJsonSchema(
        {
            "type": "string",
            "contentEncoding": "base64",
            "contentMediaType": "image/jpeg",
            "maxLength": (MAX_CROP_BYTES + 2) // 3 * 4,
        }
    ),
]


MAX_BIGINT = 2**63 - 1


class Direction(StrEnum):
    """Travel direction through a checkpoint."""

    IN = "in"  # entering the city / zone
    OUT = "out"


class Color(StrEnum):
    """What the gate display shows."""

    GREEN = "green"  # pass; two vaccine doses
    YELLOW = "yellow"  # pass; one dose or none recorded
    RED = "red"  # stop: flagged person, revoked pass
    INVALID = "invalid"  # stop: forged, expired or unreadable code


class VerdictCode(StrEnum):
    """Why a verdict was given (stable codes; text is looked up per language)."""

    CLEAR = "clear"
    F0 = "f0"
    F1 = "f1"
    F2 = "f2"
    F3 = "f3"
    RECOVERED = "recovered"
    DECEASED_IDENTITY = "deceased_identity"
    UNKNOWN_CITIZEN = "unknown_citizen"
    UNKNOWN_DECLARATION = "unknown_declaration"
    FORGED = "forged"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REVOKED = "revoked"
    MALFORMED = "malformed"
    OFFLINE_VALID = "offline_valid"  # edge-only: signature good, registry not consulted


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalVerdict(_Wire):
    """The verdict the edge showed at the gate before the aggregator answered."""

    color: Color
    code: VerdictCode


class ScanEvent(_Wire):
    """One passage as decoded at the edge (topic ``kd/v1/dev/<id>/scan``, QoS 1)."""

    v: Literal[1] = 1
    event_id: UUID = Field(description="UUIDv7 made at the edge; the idempotency key")
    device_id: DeviceId
    checkpoint_id: CheckpointId
    lane: int = Field(ge=0, le=63)
    direction: Direction
    # Bounded by the store's BIGINT: a larger number is refused here with a
    # reason instead of failing the whole batch's transaction.
    seq: int = Field(
        ge=0, le=MAX_BIGINT, description="per-device sequence number; gaps show lost events"
    )
    seen_at: AwareDatetime = Field(description="edge clock, first frame the code was read")
    token: str = Field(max_length=MAX_TOKEN_CHARS)
    decoder: str = Field(max_length=16, description="zxing | zbar | manual")
    quality: float = Field(ge=0.0, le=1.0)
    frames_seen: int = Field(ge=1, le=2**31 - 1, default=1)
    local_verdict: LocalVerdict | None = None
    crop_jpeg: JpegCrop | None = None


class DeviceState(StrEnum):
    """Device connection state as published on its retained status topic."""

    ONLINE = "online"
    OFFLINE = "offline"


class CameraState(StrEnum):
    """State of the device's frame source."""

    OK = "ok"
    CONNECTING = "connecting"
    LOST = "lost"


class DeviceStatus(_Wire):
    """Retained device status; the same model, with ``state=offline``, is the last will."""

    v: Literal[1] = 1
    device_id: DeviceId
    checkpoint_id: CheckpointId
    state: DeviceState
    at: AwareDatetime = Field(description="device clock when published (for skew detection)")
    software: str = Field(default="", max_length=32)
    camera: CameraState | None = None
    fps: float | None = Field(default=None, ge=0)
    decode_fps: float | None = Field(default=None, ge=0)
    decode_ms_p50: float | None = Field(default=None, ge=0)
    decode_ms_p99: float | None = Field(default=None, ge=0)
    frames_dropped: int | None = Field(default=None, ge=0)
    passages: int | None = Field(default=None, ge=0)
    ignored_codes: int | None = Field(default=None, ge=0)
    outbox_depth: int | None = Field(default=None, ge=0)
    outbox_oldest_s: float | None = Field(default=None, ge=0)
    outbox_capacity: int | None = Field(default=None, ge=0)
    cpu_temp_c: float | None = None
    denylist_revision: int | None = Field(default=None, ge=0)
    alarms: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=32
    )


class Verdict(_Wire):
    """The aggregator's answer to one scan (topic ``kd/v1/dev/<id>/verdict``)."""

    v: Literal[1] = 1
    event_id: UUID
    device_id: DeviceId
    color: Color
    code: VerdictCode
    vaccine_doses: int | None = Field(default=None, ge=0, le=10)
    decided_at: AwareDatetime


class AlertKind(StrEnum):
    """What an alert is about."""

    F0 = "f0"
    F1 = "f1"
    DECEASED_IDENTITY = "deceased_identity"
    FORGED = "forged"
    EXPIRED = "expired"
    REVOKED = "revoked"
    UNKNOWN_CITIZEN = "unknown_citizen"


class AlertNotice(_Wire):
    """Announces an alert to officers' monitors (``kd/v1/alerts/<checkpoint>``).

    Carries no personal data: monitors fetch the details over the
    authenticated, audited API.
    """

    v: Literal[1] = 1
    alert_id: int
    event_id: UUID
    checkpoint_id: CheckpointId
    device_id: DeviceId
    kind: AlertKind
    created_at: AwareDatetime


class DenyReason(StrEnum):
    """Why a declaration is on the edge deny-list."""

    REVOKED = "revoked"
    F0 = "f0"
    F1 = "f1"
    DECEASED = "deceased"


class DenyEntry(_Wire):
    """One declaration an edge must stop."""

    declaration_id: int = Field(ge=1)
    reason: DenyReason


class DenyList(_Wire):
    """The whole deny-list, retained on ``kd/v1/revocations``.

    A device keeps the highest revision it has seen; a lower one is ignored.
    """

    v: Literal[1] = 1
    revision: int = Field(ge=0)
    issued_at: AwareDatetime
    entries: list[DenyEntry]


class DeviceConfigUpdate(_Wire):
    """Remote configuration (retained on ``kd/v1/dev/<id>/config``).

    ``settings`` is validated by the device against its own config model, so
    the contract does not freeze the edge's configuration keys.
    """

    v: Literal[1] = 1
    revision: int = Field(ge=0)
    settings: dict[str, object]


class RejectReason(StrEnum):
    """Why a payload was refused before it reached any business logic."""

    TOO_LARGE = "too_large"
    BAD_JSON = "bad_json"
    BAD_VERSION = "bad_version"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A refused payload, with a reason for the dead-letter table."""

    reason: RejectReason
    detail: str


M = TypeVar("M", bound=BaseModel)


def parse_message(model: type[M], payload: bytes, *, max_bytes: int) -> M | Rejected:
    """Parse a wire payload into ``model``; never raises on hostile bytes."""
    if len(payload) > max_bytes:
        return Rejected(RejectReason.TOO_LARGE, f"{len(payload)} bytes > {max_bytes}")
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return Rejected(RejectReason.BAD_JSON, str(exc)[:200])
    if not isinstance(raw, dict):
        return Rejected(RejectReason.BAD_JSON, "expected a JSON object")
    if raw.get("v") != 1:
        return Rejected(RejectReason.BAD_VERSION, f"unsupported schema version {raw.get('v')!r}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return Rejected(RejectReason.INVALID, f"{where}: {first['msg']}"[:200])


def encode(message: BaseModel) -> bytes:
    """Serialize a wire message."""
    return message.model_dump_json(exclude_none=True).encode()


WIRE_MODELS: dict[str, type[BaseModel]] = {
    "scan-event": ScanEvent,
    "device-status": DeviceStatus,
    "verdict": Verdict,
    "alert-notice": AlertNotice,
    "deny-list": DenyList,
    "device-config": DeviceConfigUpdate,
}
