"""From an MQTT message to a scan event, or to a dead letter saying why not (pure).

Checks, in order: size, JSON, schema version, fields (the contract's
:class:`~contract.messages.ScanEvent`), the topic (a device topic whose device
id equals the payload's: the broker's ACL makes the topic the authenticated
sender), then against the fleet: the device must be registered, at the
checkpoint it claims. A device clock running ahead is not a refusal (the
passage happened); it is measured here and recorded with the passage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import ValidationError

from contract.messages import MAX_SCAN_BYTES, Rejected, ScanEvent, parse_message
from contract.topics import Kind, parse_device_topic

MAX_DETAIL_CHARS = 500


class DeadLetterReason(StrEnum):
    """Why a message was set aside instead of stored as a passage (``dead_letters.reason``)."""

    TOO_LARGE = "too_large"
    BAD_JSON = "bad_json"
    BAD_VERSION = "bad_version"
    INVALID = "invalid"
    BAD_TOPIC = "bad_topic"
    TOPIC_MISMATCH = "topic_mismatch"
    UNKNOWN_DEVICE = "unknown_device"
    WRONG_CHECKPOINT = "wrong_checkpoint"
    STORE_REJECTED = "store_rejected"


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message as received from the broker."""

    topic: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message refused, kept whole with the reason (never silently dropped)."""

    topic: str
    payload: bytes
    reason: DeadLetterReason
    detail: str
    received_at: datetime


def dead_letter(item: Inbound, reason: DeadLetterReason, detail: str) -> DeadLetter:
    """A dead letter for ``item``."""
    # PostgreSQL text cannot hold NUL; the payload (bytes) keeps the original.
    clean = detail[: MAX_DETAIL_CHARS * 4].replace("\x00", "\\x00")[:MAX_DETAIL_CHARS]
    return DeadLetter(item.topic, item.payload, reason, clean, item.received_at)


def _refusal(payload: bytes, error: ValidationError) -> tuple[DeadLetterReason, str]:
    # Only refused payloads take this path: the contract's parser says why in
    # its own vocabulary (size, JSON, version, field).
    parsed = parse_message(ScanEvent, payload, max_bytes=MAX_SCAN_BYTES)
    if isinstance(parsed, Rejected):
        return DeadLetterReason(parsed.reason.value), parsed.detail
    # JSON-mode and Python-mode validation disagree on this payload: the
    # stricter (JSON) answer stands.
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return DeadLetterReason.INVALID, f"{where}: {first['msg']}"


def parse_scan(item: Inbound) -> ScanEvent | DeadLetter:
    """Parse a scan message; refuse it with a reason if it is not one from its topic's device.

    Never raises on hostile bytes.
    """
    if len(item.payload) > MAX_SCAN_BYTES:
        return dead_letter(
            item, DeadLetterReason.TOO_LARGE, f"{len(item.payload)} bytes > {MAX_SCAN_BYTES}"
        )
    try:
        event = ScanEvent.model_validate_json(item.payload)
    except ValidationError as exc:
        return dead_letter(item, *_refusal(item.payload, exc))
    if "v" not in event.model_fields_set:
        # The contract requires every message to state its schema version.
        return dead_letter(item, DeadLetterReason.BAD_VERSION, "unsupported schema version None")
    topic = parse_device_topic(item.topic)
    if topic is None or topic.kind is not Kind.SCAN:
        return dead_letter(item, DeadLetterReason.BAD_TOPIC, f"not a scan topic: {item.topic!r}")
    if topic.device_id != event.device_id:
        return dead_letter(
            item,
            DeadLetterReason.TOPIC_MISMATCH,
            f"topic device {topic.device_id!r} != payload device {event.device_id!r}",
        )
    return event


def check_device(
    item: Inbound, event: ScanEvent, registered_checkpoint: str | None
) -> DeadLetter | None:
    """Refuse an event from an unregistered device or claiming another checkpoint.

    ``registered_checkpoint`` is the device's checkpoint in the fleet
    registry, None when the device is not registered.
    """
    if registered_checkpoint is None:
        return dead_letter(
            item, DeadLetterReason.UNKNOWN_DEVICE, f"device {event.device_id!r} is not registered"
        )
    if registered_checkpoint != event.checkpoint_id:
        return dead_letter(
            item,
            DeadLetterReason.WRONG_CHECKPOINT,
            f"device {event.device_id!r} is registered at {registered_checkpoint!r}, "
            f"not {event.checkpoint_id!r}",
        )
    return None


def clock_skew_s(seen_at: datetime, received_at: datetime) -> float:
    """How far the device's clock is ahead of ours, as far as one scan shows (seconds).

    Only a positive value proves skew: a scan can arrive late (outbox backlog
    after an outage) but never before it was seen.
    """
    return (seen_at - received_at).total_seconds()


def skew_to_record(seen_at: datetime, received_at: datetime, threshold_s: float) -> float | None:
    """The skew when the device's clock is ahead by more than ``threshold_s``, else None."""
    skew = clock_skew_s(seen_at, received_at)
    return skew if skew > threshold_s else None
