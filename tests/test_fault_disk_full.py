"""Fault: the disk under the edge outbox fills up.

The outbox lives on a tiny tmpfs the test mounts (it really fills: ``write``
fails with ENOSPC, SQLite with SQLITE_FULL). Real mosquitto, a real
:class:`~edge.agent.EdgeAgent` with the synthetic gate camera, and the
aggregator service.

What must hold (edge/outbox.py, "Disk full and I/O errors"): a clear error in
the log; the alarm ``disk_full`` on the device's status topic, in the
aggregator's fleet view and on the command centre's device list; events that
cannot be written wait in a bounded in-memory overflow, are still published
from there, are written back to disk in order once space returns, and nothing
is lost. When the disk and the in-memory overflow are both full, the oldest
events *in memory* are dropped: everything on disk and the newest events are
kept (tested below on the outbox itself).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from aggregator.db.schema import Role
from aggregator.service import AggregatorService
from contract.ids import new_event_id
from contract.messages import Direction, ScanEvent
from contract.token import Keyring, SigningKey
from edge.agent import EdgeAgent
from edge.outbox import ALARM_DISK_FULL, ALARM_DROPPED, Outbox, OutboxConfig, OutboxError
from tests.fault_rig import (
    StatusWatcher,
    delivery,
    edge_config,
    gate_scenario,
    pass_tokens,
    start_aggregator,
    stored_seqs,
)
from tests.fixtures.mqtt import Broker
from tests.fixtures.netcut import NetCutFactory
from tests.fixtures.web import LoggedIn, LoginFactory
from tests.ingest_world import CHECKPOINT, GATES, World, build_world, wait_for

DISK_SIZE = "1m"
CARS_PER_MINUTE = 45.0
ALARM_HOLD_S = 2.0


@contextlib.contextmanager
def tiny_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (skips the test if mounting is not permitted)."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a {size} tmpfs for the outbox ({done.stderr.strip() or done.returncode})"
            ": the disk-full test needs root or CAP_SYS_ADMIN"
        )
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with a file; returns it (delete it to give space back)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (65536, 4096, 512, 1):
            block = b"\0" * chunk
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0
    return filler


def outbox_errors(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    """Messages the outbox logged at ERROR containing ``text``."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "edge.outbox" and r.levelno >= logging.ERROR and text in r.getMessage()
    ]


# --- the whole gate -------------------------------------------------------------------


@pytest.fixture
def world(web_engine: Engine, signing_key: SigningKey) -> World:
    return build_world(web_engine, signing_key)


@pytest.fixture
def keyring_file(tmp_path: Path, keyring: Keyring) -> Path:
    path = tmp_path / "keyring.json"
    keyring.save(path)
    return path


@pytest.fixture
def web_service(
    web_db_url: str, world: World, mosquitto: Broker, keyring_file: Path
) -> Iterator[AggregatorService]:
    """The command centre's app serves this aggregator: started, consuming the test's broker."""
    service = start_aggregator(web_db_url, mosquitto.port, keyring_file)
    yield service
    service.stop()


def command_device(commander: LoggedIn, device_id: str) -> dict[str, object]:
    """The device as ``GET /api/command/summary`` shows it to the command centre."""
    answer = commander.client.get("/api/command/summary")
    assert answer.status_code == 200, answer.text
    return next(d for d in answer.json()["devices"] if d["id"] == device_id)


@pytest.mark.slow
@pytest.mark.reliability
def test_disk_full_under_the_edge_outbox(
    *,
    web_engine: Engine,
    web_service: AggregatorService,
    world: World,
    keyring_file: Path,
    mosquitto: Broker,
    netcut: NetCutFactory,
    login_as: LoginFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    reliability: Callable[..., None],
    figures: Callable[[str], None],
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.outbox")
    gate, service, engine = GATES[0], web_service, web_engine
    commander = login_as(Role.COMMAND_CENTRE)  # before the traffic: the account is a write
    tokens = pass_tokens(world, 120)
    scenario = gate_scenario(
        tmp_path / "scenario.json", tokens, seconds=90, cars_per_minute=CARS_PER_MINUTE
    )
    link = netcut(mosquitto.port)
    watcher = StatusWatcher(mosquitto.port, gate)
    with tiny_disk(tmp_path / "card", DISK_SIZE) as card:
        config = edge_config(
            tmp_path / "edge",
            device_id=gate,
            mqtt_port=link.port,
            scenario=scenario,
            keyring=keyring_file,
            outbox={
                "path": str(card / "outbox.sqlite3"),
                "alarm_hold_s": ALARM_HOLD_S,
                "overflow_retry_s": 0.5,
            },
        )
        agent = EdgeAgent(config)
        agent.start()
        try:
            assert agent.outbox is not None
            box = agent.outbox
            assert wait_for(lambda: len(stored_seqs(engine, gate)) >= 2, timeout=60)

            # 1. Something else fills the card while the gate is online.
            mark = watcher.mark()
            filler = fill(card)
            full_from_seq = box.next_seq()
            alarmed = watcher.wait_for(
                lambda s: ALARM_DISK_FULL in s.alarms, after=mark, timeout=60
            )
            assert alarmed is not None, "no disk_full alarm on the status topic"
            assert wait_for(
                lambda: (
                    (v := service.fleet.get(gate)) is not None
                    and ALARM_DISK_FULL in v.status.alarms
                ),
                timeout=10,
            ), "the aggregator's fleet view does not show disk_full"
            on_screen = command_device(commander, gate)
            # Online and full: events the disk refused still go out, from memory.
            assert wait_for(
                lambda: any(s >= full_from_seq for s in stored_seqs(engine, gate)), timeout=30
            ), "no event made after the disk filled reached the aggregator"

            # 2. The broker becomes unreachable too: refused events pile up in memory.
            link.cut()
            assert wait_for(lambda: box.stats().overflow_depth >= 2, timeout=30)
            in_memory = box.stats().overflow_depth

            # 3. Space returns (logs rotated): the overflow is written back to disk, in order.
            filler.unlink()
            space_back = time.monotonic()
            assert wait_for(lambda: box.stats().overflow_depth == 0, timeout=20)
            on_disk = box.stats().depth
            link.heal()
            heal_seq = box.next_seq()
            delivered = wait_for(
                lambda: set(range(heal_seq)) <= set(stored_seqs(engine, gate)), timeout=60
            )
            recover_s = time.monotonic() - space_back
            mark = watcher.mark()
            cleared = watcher.wait_for(
                lambda s: ALARM_DISK_FULL not in s.alarms, after=mark, timeout=ALARM_HOLD_S + 20
            )
        finally:
            agent.stop()
        stats = box.stats()
    wait_for(lambda: len(stored_seqs(engine, gate)) >= stats.enqueued, timeout=30)
    watcher.close()
    result = delivery(engine, agent, duplicates=int(service.stats()["duplicates"]))
    reliability(
        scenario="edge outbox disk full (then broker cut), space returns",
        sent=result.sent,
        stored=result.stored,
        duplicates=result.duplicates,
        lost=result.lost,
        recover_s=recover_s,
    )
    full_errors = outbox_errors(caplog, "disk full")
    figures(
        f"disk full: {stats.write_errors} failed writes, {in_memory} events held in memory "
        f"during the cut, {on_disk} on disk after space returned, alarm on the status topic"
    )
    assert full_errors, "no error in the log saying the disk is full"
    assert "đĩa đầy" in full_errors[0] and "kept in memory" in full_errors[0]
    assert any(
        "to disk again" in r.getMessage() for r in caplog.records if r.name == "edge.outbox"
    ), "no log line saying the events held in memory were written back"
    assert ALARM_DISK_FULL in on_screen["alarms"]  # type: ignore[operator]
    assert on_disk >= in_memory, "events held in memory were not written back to disk"
    assert delivered, "the backlog did not drain after the link healed"
    assert cleared is not None, "disk_full stayed raised after space returned"
    assert stats.dropped == 0 and stats.overflow_depth == 0
    assert result.lost == 0, f"seqs never stored: {result.missing[:20]}"
    assert result.stored == result.sent


# --- the outbox alone: which events go when disk and memory are both full --------------


def scan(seq: int, crop: bytes | None = None) -> ScanEvent:
    """A scan event as the agent builds it, with a crop of the given size."""
    return ScanEvent(
        event_id=new_event_id(),
        device_id=GATES[0],
        checkpoint_id=CHECKPOINT,
        lane=0,
        direction=Direction.IN,
        seq=seq,
        seen_at=datetime.now(UTC),
        token="KD1:" + "A" * 110,
        decoder="zxing",
        quality=0.9,
        crop_jpeg=crop,
    )


def test_disk_and_memory_full_drop_the_oldest_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.outbox")
    with tiny_disk(tmp_path / "card", "256k") as card:
        box = Outbox(
            OutboxConfig(path=card / "outbox.sqlite3", overflow_max_events=3, overflow_retry_s=0.0)
        )
        try:
            on_disk = [box.enqueue(scan) for _ in range(3)]
            fill(card)
            after_fill = []  # the first few may still fit in the WAL's space
            while ALARM_DISK_FULL not in box.alarms():
                after_fill.append(box.enqueue(lambda seq: scan(seq, b"\xff\xd8" + b"\0" * 8000)))
                assert len(after_fill) < 100, "the disk never reported full"
            after_fill += [box.enqueue(scan) for _ in range(4)]
            kept = [item.seq for item in box.pending(1000)]
            stats = box.stats()
            alarms = box.alarms()
        finally:
            box.close()
    # The oldest events (on disk) and the newest (in memory) are kept; the oldest
    # of those held in memory are the ones dropped.
    assert kept[: len(on_disk)] == on_disk
    assert kept[-3:] == after_fill[-3:]
    dropped = [s for s in after_fill if s not in kept]
    assert dropped and max(dropped) < min(after_fill[-3:])
    assert stats.dropped == len(dropped) and stats.overflow_depth == 3
    assert {ALARM_DISK_FULL, ALARM_DROPPED} <= set(alarms)
    assert outbox_errors(caplog, "disk full")


def fill_with_events(box: Outbox) -> list[int]:
    """Enqueue events with crops until a write fails for want of space; their seqs."""
    seqs = []
    while ALARM_DISK_FULL not in box.alarms():
        seqs.append(box.enqueue(lambda seq: scan(seq, b"\xff\xd8" + os.urandom(12000))))
        assert len(seqs) < 1000, "the outbox never reported the disk full"
    return seqs


def acknowledge_all(box: Outbox, rounds: int = 5) -> int:
    """Acknowledge everything pending, as the MQTT link does on PUBACKs; how many went."""
    removed = 0
    for _ in range(rounds):
        items = box.pending(1000)
        if not items:
            break
        with contextlib.suppress(OutboxError):
            removed += box.ack_many([item.seq for item in items])
    return removed


def test_outbox_capped_below_the_card_recovers_once_acknowledged(tmp_path: Path) -> None:
    # The documented guard: max_file_bytes below the card's free space, so the
    # outbox meets its own ceiling first and SQLite keeps room to delete.
    with tiny_disk(tmp_path / "card", "512k") as card:
        box = Outbox(
            OutboxConfig(
                path=card / "outbox.sqlite3", max_file_bytes=128 * 1024, overflow_retry_s=0.0
            )
        )
        try:
            seqs = fill_with_events(box)
            acknowledge_all(box)
            depth = box.depth()
            box.enqueue(scan)
            stats = box.stats()
        finally:
            box.close()
    assert len(seqs) >= 3
    assert depth == 0, "acknowledged events could not be removed"
    assert stats.overflow_depth == 0 and stats.depth == 1  # the next event is on disk again


def test_outbox_that_filled_the_card_itself_recovers_once_acknowledged(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "card", "256k") as card:
        box = Outbox(OutboxConfig(path=card / "outbox.sqlite3", overflow_retry_s=0.0))
        try:
            fill_with_events(box)
            acknowledge_all(box)
            depth = box.depth()
        finally:
            box.close()
    assert depth == 0, f"{depth} acknowledged events stuck in the outbox: the card stays full"
