"""Wire messages, topics and the exported JSON Schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import topics
from contract.ids import new_declaration_id, new_event_id
from contract.messages import (
    MAX_CROP_BYTES,
    MAX_SCAN_BYTES,
    DeviceState,
    DeviceStatus,
    Direction,
    Rejected,
    RejectReason,
    ScanEvent,
    encode,
    parse_message,
)
from contract.schema import render

ROOT = Path(__file__).resolve().parent.parent


def scan(**overrides: object) -> ScanEvent:
    fields: dict[str, object] = {
        "event_id": new_event_id(),
        "device_id": "hn-ql1a-cam-1",
        "checkpoint_id": "hn-ql1a",
        "lane": 1,
        "direction": Direction.IN,
        "seq": 17,
        "seen_at": datetime(2026, 11, 21, 7, 30, tzinfo=UTC),
        "token": "KD1:ABC",
        "decoder": "zxing",
        "quality": 0.8,
    }
    fields.update(overrides)
    return ScanEvent.model_validate(fields)


def test_scan_round_trip_with_crop() -> None:
    event = scan(crop_jpeg=b"\xff\xd8" + bytes(range(256)) * 10)
    payload = encode(event)
    assert b'"crop_jpeg":"/9g' in payload  # base64 text on the wire
    assert parse_message(ScanEvent, payload, max_bytes=MAX_SCAN_BYTES) == event


def test_largest_crop_fits_the_payload_cap() -> None:
    payload = encode(scan(crop_jpeg=b"\x00" * MAX_CROP_BYTES, token="KD1:" + "A" * 396))
    assert len(payload) < MAX_SCAN_BYTES


def test_oversized_crop_is_refused() -> None:
    with pytest.raises(ValueError, match="cap is"):
        scan(crop_jpeg=b"\x00" * (MAX_CROP_BYTES + 1))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"x" * (MAX_SCAN_BYTES + 1), RejectReason.TOO_LARGE),
        (b"{not json", RejectReason.BAD_JSON),
        (b"\xff\xfe\x00", RejectReason.BAD_JSON),
        (b"[1, 2]", RejectReason.BAD_JSON),
        (b'{"v": 2}', RejectReason.BAD_VERSION),
        (b'{"event_id": 1}', RejectReason.BAD_VERSION),
        (b'{"v": 1}', RejectReason.INVALID),
        (b"[" * 60_000, RejectReason.BAD_JSON),  # deep nesting under the size cap
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(payload: bytes, reason: RejectReason) -> None:
    result = parse_message(ScanEvent, payload, max_bytes=MAX_SCAN_BYTES)
    assert isinstance(result, Rejected)
    assert result.reason is reason
    assert result.detail


def test_unknown_keys_and_naive_times_are_invalid() -> None:
    good = json.loads(encode(scan()))
    for bad in ({**good, "extra": 1}, {**good, "seen_at": "2026-11-21T07:30:00"}):
        result = parse_message(ScanEvent, json.dumps(bad).encode(), max_bytes=MAX_SCAN_BYTES)
        assert isinstance(result, Rejected)
        assert result.reason is RejectReason.INVALID


def test_device_id_with_topic_wildcards_is_invalid() -> None:
    for bad in ("a/b", "cam+", "#", "", "UPPER"):
        with pytest.raises(ValueError):
            scan(device_id=bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_scan_parser_never_raises(payload: bytes) -> None:
    result = parse_message(ScanEvent, payload, max_bytes=MAX_SCAN_BYTES)
    assert isinstance(result, Rejected)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(list(ScanEvent.model_fields)), st.from_type(object)))
def test_fuzz_scan_fields_never_raise(fields: dict[str, object]) -> None:
    payload = json.dumps({"v": 1, **fields}, default=str).encode()
    result = parse_message(ScanEvent, payload, max_bytes=MAX_SCAN_BYTES)
    assert isinstance(result, (Rejected, ScanEvent))


def test_last_will_is_a_minimal_status() -> None:
    will = DeviceStatus(
        device_id="hn-ql1a-cam-1",
        checkpoint_id="hn-ql1a",
        state=DeviceState.OFFLINE,
        at=datetime.now(UTC),
    )
    parsed = parse_message(DeviceStatus, encode(will), max_bytes=1024)
    assert parsed == will


def test_topics_build_and_parse() -> None:
    assert topics.scan_topic("cam-1") == "kd/v1/dev/cam-1/scan"
    assert topics.shared(topics.ALL_SCANS) == "$share/aggregators/kd/v1/dev/+/scan"
    parsed = topics.parse_device_topic("kd/v1/dev/cam-1/status")
    assert parsed == topics.DeviceTopic("cam-1", topics.Kind.STATUS)
    for bad in ("kd/v2/dev/cam-1/scan", "kd/v1/dev/cam-1/other", "kd/v1/dev/Cam/scan", "x"):
        assert topics.parse_device_topic(bad) is None
    with pytest.raises(ValueError):
        topics.scan_topic("cam/1")


def test_event_ids_are_time_ordered_uuid7() -> None:
    ids = [new_event_id() for _ in range(1000)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000


def test_declaration_ids_fit_the_token() -> None:
    assert all(1 <= new_declaration_id() < 2**32 for _ in range(1000))


def test_committed_json_schemas_are_current() -> None:
    # docs/schemas/ is what other implementers read; it must match the models.
    for name, text in render().items():
        path = ROOT / "docs" / "schemas" / name
        assert path.exists(), f"run `kiemdich contract schemas` to write {path}"
        assert path.read_text() == text, f"{path} is stale: run `kiemdich contract schemas`"
