"""MQTT topics (versioned) and the broker-side rules they imply.

Every device publishes only below ``kd/v1/dev/<its id>/`` (mosquitto ACL
``pattern write kd/v1/dev/%u/#`` with the device id as username), so a topic
tells the aggregator who sent a message; the payload's claims are checked
against it and against the registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ROOT = "kd/v1"
DEVICE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
CHECKPOINT_ID_PATTERN = DEVICE_ID_PATTERN
_ID = re.compile(DEVICE_ID_PATTERN)

SHARE_GROUP = "aggregators"
REVOCATIONS_TOPIC = f"{ROOT}/revocations"
KEYRING_TOPIC = f"{ROOT}/keyring"


class Kind(StrEnum):
    """The last level of a device topic."""

    SCAN = "scan"  # device -> aggregator, QoS 1, the passages
    STATUS = "status"  # device -> all, retained, last will = offline
    VERDICT = "verdict"  # aggregator -> device, QoS 1
    CONFIG = "config"  # aggregator -> device, retained


def _check(ident: str) -> str:
    if not _ID.match(ident):
        raise ValueError(f"invalid id {ident!r}: must match {DEVICE_ID_PATTERN}")
    return ident


def device_topic(device_id: str, kind: Kind) -> str:
    """``kd/v1/dev/<device_id>/<kind>``."""
    return f"{ROOT}/dev/{_check(device_id)}/{kind.value}"


def scan_topic(device_id: str) -> str:
    """Where a device publishes its scan events."""
    return device_topic(device_id, Kind.SCAN)


def status_topic(device_id: str) -> str:
    """A device's retained status (and last will)."""
    return device_topic(device_id, Kind.STATUS)


def verdict_topic(device_id: str) -> str:
    """Where the aggregator answers a device's scans."""
    return device_topic(device_id, Kind.VERDICT)


def config_topic(device_id: str) -> str:
    """A device's retained remote configuration."""
    return device_topic(device_id, Kind.CONFIG)


def alert_topic(checkpoint_id: str) -> str:
    """Alerts for the officers' monitors of one checkpoint."""
    return f"{ROOT}/alerts/{_check(checkpoint_id)}"


def shared(topic_filter: str, group: str = SHARE_GROUP) -> str:
    """An MQTT 5 shared subscription: the group's members split the messages."""
    return f"$share/{group}/{topic_filter}"


ALL_SCANS = f"{ROOT}/dev/+/{Kind.SCAN.value}"
ALL_STATUS = f"{ROOT}/dev/+/{Kind.STATUS.value}"
ALL_ALERTS = f"{ROOT}/alerts/+"


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed device topic."""

    device_id: str
    kind: Kind


def parse_device_topic(topic: str) -> DeviceTopic | None:
    """Parse ``kd/v1/dev/<id>/<kind>``; None for anything else (never raises)."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != ROOT or parts[2] != "dev":
        return None
    if not _ID.match(parts[3]):
        return None
    try:
        kind = Kind(parts[4])
    except ValueError:
        return None
    return DeviceTopic(parts[3], kind)
