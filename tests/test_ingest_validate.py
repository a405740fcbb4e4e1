"""From MQTT message to scan event or dead letter: every refusal reason, and hostile bytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.ingest.validate import (
    MAX_DETAIL_CHARS,
    DeadLetter,
    DeadLetterReason,
    Inbound,
    check_device,
    clock_skew_s,
    dead_letter,
    parse_scan,
    skew_to_record,
)
from contract.ids import new_event_id
from contract.messages import MAX_CROP_BYTES, MAX_SCAN_BYTES, Direction, ScanEvent, encode
from contract.topics import scan_topic, status_topic

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
GATE = "gate-pv-1"


def event(**changes: object) -> ScanEvent:
    fields: dict[str, object] = {
        "event_id": new_event_id(),
        "device_id": GATE,
        "checkpoint_id": "cp-phap-van",
        "lane": 1,
        "direction": Direction.IN,
        "seq": 7,
        "seen_at": NOW,
        "token": "KD1:ABC",
        "decoder": "zxing",
        "quality": 0.8,
    }
    fields.update(changes)
    return ScanEvent.model_validate(fields)


def message(body: bytes | dict[str, object], topic: str = scan_topic(GATE)) -> Inbound:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Inbound(topic, raw, NOW)


def refused(item: Inbound) -> DeadLetter:
    result = parse_scan(item)
    assert isinstance(result, DeadLetter), result
    assert result.topic == item.topic
    assert result.payload == item.payload  # kept whole
    assert result.received_at == NOW
    return result


def as_dict(e: ScanEvent) -> dict[str, object]:
    return json.loads(encode(e))  # type: ignore[no-any-return]


def test_a_valid_scan_round_trips() -> None:
    original = event(crop_jpeg=b"\xff\xd8jpeg")
    parsed = parse_scan(message(encode(original)))
    assert parsed == original


def test_too_large_is_refused_before_parsing() -> None:
    letter = refused(message(b" " * (MAX_SCAN_BYTES + 1)))
    assert letter.reason is DeadLetterReason.TOO_LARGE


def test_not_json_or_not_an_object() -> None:
    assert refused(message(b"\xff\xfe{")).reason is DeadLetterReason.BAD_JSON
    assert refused(message(b"[1, 2]")).reason is DeadLetterReason.BAD_JSON
    assert refused(message(b"")).reason is DeadLetterReason.BAD_JSON


def test_schema_version_must_be_stated_and_known() -> None:
    body = as_dict(event())
    body["v"] = 2
    assert refused(message(body)).reason is DeadLetterReason.BAD_VERSION
    del body["v"]
    letter = refused(message(body))
    assert letter.reason is DeadLetterReason.BAD_VERSION


def test_invalid_fields_name_the_field() -> None:
    cases = {
        "lane": -1,
        "device_id": "Gate PV 1",
        "seen_at": "2026-03-01T09:30:00",  # no time zone
        "quality": 1.5,
        "event_id": "not-a-uuid",
    }
    for field, value in cases.items():
        body = as_dict(event())
        body[field] = value
        letter = refused(message(body))
        assert letter.reason is DeadLetterReason.INVALID, field
        assert field in letter.detail
    body = as_dict(event())
    body["extra"] = 1
    assert refused(message(body)).reason is DeadLetterReason.INVALID
    body = as_dict(event())
    body["crop_jpeg"] = "A" * ((MAX_CROP_BYTES + 3) // 3 * 4 + 4)
    assert refused(message(body)).reason is DeadLetterReason.INVALID


def test_topic_must_be_the_devices_scan_topic() -> None:
    good = encode(event())
    assert refused(message(good, status_topic(GATE))).reason is DeadLetterReason.BAD_TOPIC
    assert refused(message(good, "kd/v1/other")).reason is DeadLetterReason.BAD_TOPIC
    letter = refused(message(good, scan_topic("gate-pv-2")))
    assert letter.reason is DeadLetterReason.TOPIC_MISMATCH
    assert "gate-pv-2" in letter.detail and GATE in letter.detail


def test_device_must_be_registered_at_the_claimed_checkpoint() -> None:
    item = message(encode(event()))
    scan = event()
    assert check_device(item, scan, "cp-phap-van") is None
    unknown = check_device(item, scan, None)
    assert unknown is not None and unknown.reason is DeadLetterReason.UNKNOWN_DEVICE
    wrong = check_device(item, scan, "cp-bac-thang-long")
    assert wrong is not None and wrong.reason is DeadLetterReason.WRONG_CHECKPOINT
    assert "cp-bac-thang-long" in wrong.detail


def test_clock_skew_only_counts_a_device_ahead() -> None:
    assert clock_skew_s(NOW + timedelta(seconds=90), NOW) == 90
    assert skew_to_record(NOW + timedelta(seconds=90), NOW, 30) == 90
    assert skew_to_record(NOW + timedelta(seconds=10), NOW, 30) is None
    # Late is not skew: an outbox drains hours after an outage.
    assert skew_to_record(NOW - timedelta(hours=3), NOW, 30) is None


def test_dead_letter_detail_is_bounded_and_storable() -> None:
    letter = dead_letter(message(b"x"), DeadLetterReason.INVALID, "a\x00b" * 1000)
    assert len(letter.detail) == MAX_DETAIL_CHARS
    assert "\x00" not in letter.detail


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_hostile_bytes_never_raise(raw: bytes) -> None:
    result = parse_scan(message(raw))
    assert isinstance(result, DeadLetter | ScanEvent)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*ScanEvent.model_fields, "x"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=20), st.floats(), st.booleans()),
    )
)
def test_hostile_objects_never_raise(body: dict[str, object]) -> None:
    result = parse_scan(message(json.dumps(body).encode()))
    assert isinstance(result, DeadLetter | ScanEvent)
