"""The edge outbox on real SQLite: numbering, acks, capacity, corruption, disk full, kill -9."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract.ids import new_event_id
from contract.messages import MAX_SCAN_BYTES, Direction, ScanEvent, encode, parse_message
from edge.outbox import (
    ALARM_CORRUPT,
    ALARM_DISK_FULL,
    ALARM_DROPPED,
    ALARM_FULL,
    CapacityPolicy,
    Outbox,
    OutboxConfig,
    strip_crop,
)

TOKEN = "KD1:" + "A" * 120


def scan(seq: int, crop: bytes | None = None, device_id: str = "gate-01") -> ScanEvent:
    """A valid scan event with the given seq (and optional crop)."""
    return ScanEvent(
        event_id=new_event_id(),
        device_id=device_id,
        checkpoint_id="cp-01",
        lane=1,
        direction=Direction.IN,
        seq=seq,
        seen_at=datetime.now(UTC),
        token=TOKEN,
        decoder="zxing",
        quality=0.8,
        crop_jpeg=crop,
    )


OutboxFactory = Callable[..., Outbox]


@pytest.fixture
def open_outbox(tmp_path: Path) -> Iterator[OutboxFactory]:
    """Open outboxes on ``tmp_path/outbox.sqlite3`` (closed at the end)."""
    opened: list[Outbox] = []

    def factory(**overrides: object) -> Outbox:
        settings: dict[str, object] = {"path": tmp_path / "outbox.sqlite3"}
        settings.update(overrides)
        box = Outbox(OutboxConfig.model_validate(settings))
        opened.append(box)
        return box

    yield factory
    for box in opened:
        box.close()


def seqs_of(box: Outbox) -> list[int]:
    return [item.seq for item in box.pending(1_000_000)]


def test_seq_is_monotonic_and_never_reused(open_outbox: OutboxFactory, tmp_path: Path) -> None:
    box = open_outbox()
    first = [box.enqueue(scan) for _ in range(5)]
    assert first == [0, 1, 2, 3, 4]
    assert box.ack_many(first) == 5 and box.depth() == 0
    # Deleting every row must not rewind the counter.
    assert [box.enqueue(scan) for _ in range(3)] == [5, 6, 7]
    box.ack_many([5, 6, 7])
    box.close()

    box = open_outbox()
    assert box.depth() == 0
    assert box.enqueue(scan) == 8
    box.close()

    # Even a database deleted by hand restarts above every seq handed out.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'outbox.sqlite3'}{suffix}").unlink(missing_ok=True)
    box = open_outbox()
    assert box.enqueue(scan) > 8


def test_build_must_use_the_given_seq(open_outbox: OutboxFactory) -> None:
    box = open_outbox()
    with pytest.raises(ValueError, match="expected 0"):
        box.enqueue(lambda seq: scan(seq + 1))
    assert box.depth() == 0


def test_pending_oldest_first_and_ack_removes(open_outbox: OutboxFactory) -> None:
    box = open_outbox()
    events = {}

    def build(seq: int) -> ScanEvent:
        events[seq] = scan(seq)
        return events[seq]

    for _ in range(4):
        box.enqueue(build)
    assert box.oldest_age_s() is not None
    items = box.pending(3)
    assert [i.seq for i in items] == [0, 1, 2]
    parsed = parse_message(ScanEvent, items[1].payload, max_bytes=MAX_SCAN_BYTES)
    assert parsed == events[1]

    before = box.size_bytes()
    assert box.ack(1) is True
    assert box.ack(1) is False
    assert box.size_bytes() == before - len(items[1].payload)
    assert seqs_of(box) == [0, 2, 3]
    assert box.ack_many([0, 2, 3, 99]) == 3
    assert box.depth() == 0 and box.size_bytes() == 0 and box.oldest_age_s() is None
    assert box.stats().acked == 4


def test_strip_crop_keeps_the_passage() -> None:
    event = scan(7, crop=b"\xff\xd8" + b"j" * 500)
    stripped = strip_crop(encode(event))
    parsed = parse_message(ScanEvent, stripped, max_bytes=MAX_SCAN_BYTES)
    assert isinstance(parsed, ScanEvent)
    assert parsed == event.model_copy(update={"crop_jpeg": None})


def test_full_outbox_strips_oldest_crops_before_dropping(open_outbox: OutboxFactory) -> None:
    crop = b"\xff\xd8" + os.urandom(10_000)
    box = open_outbox(max_bytes=MAX_SCAN_BYTES, synchronous="NORMAL")
    seqs = [box.enqueue(lambda s: scan(s, crop)) for _ in range(6)]
    stats = box.stats()
    # Six 13 kB events do not fit in 64 kB: the oldest lose their crops, none is lost.
    assert seqs_of(box) == seqs
    assert stats.crops_stripped >= 1 and stats.dropped == 0
    assert stats.payload_bytes <= MAX_SCAN_BYTES
    kept = [json.loads(i.payload) for i in box.pending(10)]
    with_crop = ["crop_jpeg" in doc for doc in kept]
    assert with_crop == sorted(with_crop), "crops are stripped oldest first"
    assert with_crop[-1] is True
    assert box.alarms() == [ALARM_FULL]

    # Once every crop is gone, only dropping the oldest makes room.
    while box.stats().dropped == 0:
        box.enqueue(lambda s: scan(s, crop))
    stats = box.stats()
    assert stats.payload_bytes <= MAX_SCAN_BYTES
    remaining = seqs_of(box)
    assert remaining == list(range(remaining[0], stats.next_seq)), "the oldest were dropped"
    assert remaining[0] == stats.dropped
    assert box.alarms() == sorted([ALARM_FULL, ALARM_DROPPED])


def test_max_events_drops_the_oldest(open_outbox: OutboxFactory) -> None:
    box = open_outbox(max_events=10, synchronous="NORMAL")
    for _ in range(15):
        box.enqueue(scan)
    assert seqs_of(box) == list(range(5, 15))
    stats = box.stats()
    assert (stats.dropped, stats.crops_stripped, stats.depth) == (5, 0, 10)
    assert ALARM_DROPPED in box.alarms()


def test_drop_oldest_policy_keeps_crops(open_outbox: OutboxFactory) -> None:
    crop = b"\xff\xd8" + os.urandom(10_000)
    box = open_outbox(
        max_bytes=MAX_SCAN_BYTES, policy=CapacityPolicy.DROP_OLDEST, synchronous="NORMAL"
    )
    for _ in range(8):
        box.enqueue(lambda s: scan(s, crop))
    stats = box.stats()
    assert stats.crops_stripped == 0 and stats.dropped >= 1
    assert all("crop_jpeg" in json.loads(i.payload) for i in box.pending(10))
    assert seqs_of(box)[-1] == 7


def test_garbage_file_is_moved_aside(open_outbox: OutboxFactory, tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    garbage = os.urandom(8192)
    path.write_bytes(garbage)
    box = open_outbox()
    moved = list(tmp_path.glob("outbox.sqlite3.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_bytes() == garbage
    assert box.alarms() == [ALARM_CORRUPT]
    assert box.stats().corrupt_files_moved == 1
    seq = box.enqueue(scan)
    assert seqs_of(box) == [seq]


def test_damaged_pages_are_moved_aside_and_numbering_continues(
    open_outbox: OutboxFactory, tmp_path: Path
) -> None:
    box = open_outbox()
    for _ in range(200):
        box.enqueue(lambda s: scan(s, b"\xff\xd8" + os.urandom(3000)))
    last = box.next_seq() - 1
    box.close()
    path = tmp_path / "outbox.sqlite3"
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    data = bytearray(path.read_bytes())
    # Scribble over the b-tree pages (keep the 100-byte header, so it still
    # looks like a database and only the integrity check finds it).
    for page in range(1, len(data) // 4096):
        data[page * 4096 : page * 4096 + 64] = os.urandom(64)
    path.write_bytes(bytes(data))

    box = open_outbox()
    assert ALARM_CORRUPT in box.alarms()
    assert len(list(tmp_path.glob("outbox.sqlite3.corrupt-*"))) == 1
    assert box.depth() == 0
    assert box.enqueue(scan) > last


def test_disk_full_keeps_events_in_memory_until_space_returns(
    open_outbox: OutboxFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No tiny filesystem here: SQLite's max_page_count gives the same
    # SQLITE_FULL ("database or disk is full") an exhausted SD card gives.
    box = open_outbox(max_file_bytes=16 * 4096, overflow_retry_s=0.0)
    crop = b"\xff\xd8" + os.urandom(4000)
    enqueued: list[int] = []
    with caplog.at_level(logging.ERROR, logger="edge.outbox"):
        while box.stats().overflow_depth < 5:
            enqueued.append(box.enqueue(lambda s: scan(s, crop)))
    stats = box.stats()
    assert stats.write_errors >= 1
    assert ALARM_DISK_FULL in box.alarms()
    assert any("disk full" in r.getMessage() for r in caplog.records)
    # Nothing is lost while full: the overflow is published like the rest.
    assert seqs_of(box) == enqueued
    in_memory = enqueued[-stats.overflow_depth :]
    assert box.ack(in_memory[0]) is True
    enqueued.remove(in_memory[0])

    box.set_max_file_bytes(None)
    assert box.retry_overflow() is True
    assert box.stats().overflow_depth == 0
    assert ALARM_DISK_FULL in box.alarms(), "the alarm is held for alarm_hold_s"
    box.close()
    reopened = open_outbox()
    assert seqs_of(reopened) == enqueued
    assert reopened.enqueue(scan) == enqueued[-1] + 1


def test_overflow_is_bounded(open_outbox: OutboxFactory) -> None:
    box = open_outbox(
        max_file_bytes=16 * 4096,
        overflow_max_events=3,
        overflow_retry_s=0.0,
        synchronous="NORMAL",
    )
    crop = b"\xff\xd8" + os.urandom(4000)
    while box.stats().write_errors == 0:
        box.enqueue(lambda s: scan(s, crop))
    for _ in range(5):
        box.enqueue(lambda s: scan(s, crop))
    stats = box.stats()
    assert stats.overflow_depth == 3
    assert stats.dropped == 3
    assert {ALARM_DISK_FULL, ALARM_DROPPED} <= set(box.alarms())
    # The newest three are the ones kept, in order.
    assert seqs_of(box)[-3:] == list(range(stats.next_seq - 3, stats.next_seq))


CHILD = textwrap.dedent(
    """
    import os, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from contract.ids import new_event_id
    from contract.messages import Direction, ScanEvent
    from edge.outbox import Outbox, OutboxConfig

    box = Outbox(OutboxConfig(path=Path(sys.argv[1])))
    crop = b"\\xff\\xd8" + os.urandom(2000)

    def build(seq):
        return ScanEvent(
            event_id=new_event_id(), device_id="gate-01", checkpoint_id="cp-01", lane=0,
            direction=Direction.OUT, seq=seq, seen_at=datetime.now(UTC), token="KD1:X",
            decoder="zbar", quality=0.5, crop_jpeg=crop if seq % 3 == 0 else None,
        )

    print("ready", flush=True)
    while True:
        seq = box.enqueue(build)
        print(seq, flush=True)
        if seq % 7 == 0 and seq >= 7:
            box.ack(seq - 7)
    """
)


@pytest.mark.slow
def test_kill_9_loses_nothing_reported_enqueued(
    tmp_path: Path, figures: Callable[[str], None]
) -> None:
    path = tmp_path / "outbox.sqlite3"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random(int.from_bytes(os.urandom(4)))
    reported: set[int] = set()
    for _round in range(3):
        child = subprocess.Popen(
            [sys.executable, str(script), str(path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        stop_after = rng.randint(20, 400)
        for _ in range(stop_after):
            reported.add(int(child.stdout.readline()))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        # Lines the child printed before the signal are reported too.
        reported.update(int(line) for line in child.stdout.read().splitlines() if line.strip())
        child.stdout.close()
    acked = {s - 7 for s in reported if s % 7 == 0 and s >= 7}

    box = Outbox(OutboxConfig(path=path))
    try:
        stored = {item.seq for item in box.pending(1_000_000)}
        missing = reported - acked - stored
        assert not missing, f"reported enqueued but lost: {sorted(missing)[:20]}"
        assert box.next_seq() > max(reported)
        for item in box.pending(1_000_000):
            assert isinstance(
                parse_message(ScanEvent, item.payload, max_bytes=MAX_SCAN_BYTES), ScanEvent
            )
    finally:
        box.close()
    figures(
        f"3 kill -9 rounds: {len(reported)} enqueued, {len(reported - acked)} expected, "
        f"{len(stored)} stored, {len(missing)} lost"
    )
