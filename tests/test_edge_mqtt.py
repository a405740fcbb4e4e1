"""The edge MQTT link against a real mosquitto: delivery through faults, will, auth, ACL.

Each fault test prints sent / delivered / duplicates / lost through ``figures``.
The broker fixture runs mosquitto with ``user root`` when the suite runs as
root, so it keeps the right to write its persistence file in the test's
directory (it otherwise drops to the ``mosquitto`` user and silently fails).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr

from contract.ids import new_event_id
from contract.messages import (
    MAX_SCAN_BYTES,
    MAX_STATUS_BYTES,
    Color,
    DenyEntry,
    DenyList,
    DenyReason,
    DeviceConfigUpdate,
    DeviceState,
    DeviceStatus,
    Direction,
    ScanEvent,
    Verdict,
    VerdictCode,
    encode,
    parse_message,
)
from contract.token import KeyringFile, SigningKey
from contract.topics import (
    ALL_SCANS,
    KEYRING_TOPIC,
    REVOCATIONS_TOPIC,
    config_topic,
    status_topic,
    verdict_topic,
)
from edge.mqtt_link import ALARM_NOT_CONNECTED, InboundHandlers, MqttConfig, MqttLink
from edge.outbox import Outbox, OutboxConfig
from tests.fixtures.mqtt import Broker, BrokerFactory

DEVICE = "gate-01"
CHECKPOINT = "cp-01"
WAIT_S = 60.0


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll ``predicate`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.02)


def scan(seq: int, *, device_id: str = DEVICE, crop: bytes | None = None) -> ScanEvent:
    """A valid scan event with the given seq."""
    return ScanEvent(
        event_id=new_event_id(),
        device_id=device_id,
        checkpoint_id=CHECKPOINT,
        lane=0,
        direction=Direction.IN,
        seq=seq,
        seen_at=datetime.now(UTC),
        token="KD1:" + "B" * 100,
        decoder="zxing",
        quality=0.9,
        crop_jpeg=crop,
    )


class Listener:
    """A test-side MQTT client (the aggregator's view) that records what arrives.

    Its session outlives the connection (clean start off, one hour expiry) so
    a restarted broker keeps queueing scans for it.
    """

    def __init__(
        self,
        broker: Broker,
        topics: list[str],
        *,
        client_id: str = "test-listener",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.scans: Counter[tuple[str, int]] = Counter()
        self.event_ids: Counter[str] = Counter()
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(1, 1)
        self._topics = topics
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(broker.host, broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.subscribed.wait(10), "listener did not subscribe"

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            event = parse_message(ScanEvent, msg.payload, max_bytes=MAX_SCAN_BYTES)
            if isinstance(event, ScanEvent):
                self.scans[(event.device_id, event.seq)] += 1
                self.event_ids[str(event.event_id)] += 1

    def distinct(self) -> int:
        with self.lock:
            return len(self.event_ids)

    def statuses(self, device_id: str = DEVICE) -> list[DeviceStatus]:
        with self.lock:
            found = []
            for topic, payload, _retained in self.messages:
                if topic == status_topic(device_id) and payload:
                    parsed = parse_message(DeviceStatus, payload, max_bytes=MAX_STATUS_BYTES)
                    assert isinstance(parsed, DeviceStatus), parsed
                    found.append(parsed)
            return found

    def report(self, sent: set[int], device_id: str = DEVICE) -> tuple[int, int, int, int]:
        """(sent, delivered distinct, duplicates, lost) for the seqs in ``sent``."""
        with self.lock:
            delivered = {seq for (dev, seq) in self.scans if dev == device_id}
            duplicates = sum(n - 1 for (dev, _), n in self.scans.items() if dev == device_id)
        return len(sent), len(delivered & sent), duplicates, len(sent - delivered)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def cleanup() -> Iterator[ExitStack]:
    """Stops, in reverse order, the links, listeners and children a test starts."""
    with ExitStack() as stack:
        yield stack


def save_broker_state(broker: Broker) -> None:
    """Make mosquitto write its persistence file now (SIGUSR1) and wait for it."""
    db = broker.config.parent / "mosquitto.db"
    before = db.stat().st_mtime_ns if db.exists() else 0
    broker.process.send_signal(signal.SIGUSR1)
    wait_until(lambda: db.exists() and db.stat().st_mtime_ns != before, "mosquitto.db saved")


def link_config(broker: Broker, **overrides: object) -> MqttConfig:
    settings: dict[str, object] = {
        "host": broker.host,
        "port": broker.port,
        "reconnect_min_delay_s": 1,
        "reconnect_max_delay_s": 2,
        "reject_backoff_min_s": 0.2,
        "reject_backoff_max_s": 1.0,
    }
    settings.update(overrides)
    return MqttConfig.model_validate(settings)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(OutboxConfig(path=tmp_path / "outbox.sqlite3"))
    yield box
    box.close()


def start_link(
    cleanup: ExitStack,
    broker: Broker,
    outbox: Outbox,
    *,
    device_id: str = DEVICE,
    handlers: InboundHandlers | None = None,
    **overrides: object,
) -> MqttLink:
    link = MqttLink(
        link_config(broker, **overrides),
        device_id=device_id,
        checkpoint_id=CHECKPOINT,
        outbox=outbox,
        handlers=handlers,
        software="test",
    )
    cleanup.callback(link.stop, timeout_s=1.0)
    link.start()
    return link


@pytest.mark.reliability
def test_every_event_arrives_exactly_once(
    mosquitto_factory: BrokerFactory,
    outbox: Outbox,
    cleanup: ExitStack,
    reliability: Callable[..., None],
) -> None:
    broker = mosquitto_factory()
    listener = Listener(broker, [ALL_SCANS])
    cleanup.callback(listener.close)
    link = start_link(cleanup, broker, outbox)
    crop = b"\xff\xd8" + os.urandom(3000)
    sent = {
        outbox.enqueue(lambda s: scan(s, crop=crop if s % 4 == 0 else None)) for _ in range(300)
    }
    wait_until(lambda: listener.distinct() == len(sent), "all scans delivered")
    wait_until(lambda: outbox.depth() == 0, "outbox drained")
    total, delivered, duplicates, lost = listener.report(sent)
    reliability(
        scenario="edge → broker, no fault",
        sent=total,
        stored=delivered,
        duplicates=duplicates,
        lost=lost,
    )
    assert (delivered, duplicates, lost) == (total, 0, 0)
    assert set(listener.event_ids.values()) == {1}
    wait_until(lambda: link.stats().acked == total, "every PUBACK processed")
    stats = link.stats()
    assert (stats.published, stats.republished, stats.rejected) == (total, 0, 0)
    assert stats.connected and stats.connects == 1
    assert outbox.stats().acked == total


@dataclass
class Outage:
    """What a broker outage in the middle of a stream did."""

    sent: set[int]
    unacked_at_outage: set[int]  # in the outbox once the link saw the broker go
    depth_at_outage: int
    depth_before_restart: int
    link: MqttLink
    listener: Listener
    recover_s: float  # broker restarted -> outbox drained


def broker_outage(
    mosquitto_factory: BrokerFactory, outbox: Outbox, cleanup: ExitStack, *, sigkill: bool
) -> Outage:
    """Stream 1,200 scans; stop or kill the broker mid-stream; restart it; drain."""
    broker = mosquitto_factory()
    listener = Listener(broker, [ALL_SCANS])
    cleanup.callback(listener.close)
    # The listener's session (its subscription) must survive a SIGKILL too,
    # or what the edge publishes before the listener is back goes to no one.
    save_broker_state(broker)
    # A backlog, so the link has a full window in flight when the broker goes.
    sent = {outbox.enqueue(scan) for _ in range(600)}
    link = start_link(cleanup, broker, outbox)
    total = 1200
    stop = threading.Event()

    def produce() -> None:
        for _ in range(total - len(sent)):
            if stop.is_set():
                return
            sent.add(outbox.enqueue(scan))
            time.sleep(0.002)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        wait_until(lambda: listener.distinct() >= 150, "first scans delivered")
        if sigkill:
            broker.kill()
        else:
            broker.stop()
        wait_until(lambda: not link.connected, "link notices the broker is gone")
        depth_at_outage = outbox.depth()
        wait_until(lambda: outbox.depth() >= depth_at_outage + 100, "outbox grows while offline")
        # By now the publisher has long processed the PUBACKs that arrived
        # before the broker went: what is left was never acknowledged.
        unacked = {item.seq for item in outbox.pending(10_000)}
        depth_before_restart = outbox.depth()
        broker.restart()
        restarted = time.monotonic()
        producer.join(timeout=WAIT_S)
    finally:
        stop.set()
        producer.join()
    assert len(sent) == total
    wait_until(lambda: outbox.depth() == 0, "backlog drained after the restart")
    recover_s = time.monotonic() - restarted
    assert link.stats().connects >= 2
    return Outage(sent, unacked, depth_at_outage, depth_before_restart, link, listener, recover_s)


@pytest.mark.reliability
def test_broker_restarted_mid_stream_loses_nothing(
    mosquitto_factory: BrokerFactory,
    outbox: Outbox,
    cleanup: ExitStack,
    figures: Callable[[str], None],
    reliability: Callable[..., None],
) -> None:
    out = broker_outage(mosquitto_factory, outbox, cleanup, sigkill=False)
    wait_until(lambda: out.listener.report(out.sent)[3] == 0, "every scan delivered")
    total, delivered, duplicates, lost = out.listener.report(out.sent)
    reliability(
        scenario="broker stopped and restarted mid-stream (edge link)",
        sent=total,
        stored=delivered,
        duplicates=duplicates,
        lost=lost,
        recover_s=out.recover_s,
    )
    figures(
        f"broker SIGTERM+restart: sent {total} / delivered {delivered} / duplicates "
        f"{duplicates} / lost {lost} (outbox {out.depth_at_outage} -> "
        f"{out.depth_before_restart} while down; link republished {out.link.stats().republished})"
    )
    assert lost == 0 and delivered == total


@pytest.mark.slow
@pytest.mark.reliability
def test_broker_killed_mid_stream_edge_loses_nothing(
    mosquitto_factory: BrokerFactory,
    outbox: Outbox,
    cleanup: ExitStack,
    figures: Callable[[str], None],
    reliability: Callable[..., None],
) -> None:
    out = broker_outage(mosquitto_factory, outbox, cleanup, sigkill=True)
    # mosquitto keeps queued messages in memory and snapshots them only now
    # and then: a SIGKILL loses the ones it had acknowledged to the edge but
    # not yet passed to the subscriber. The edge cannot know; the aggregator
    # sees them as gaps in the device's seq. Everything else must arrive.
    last_unacked = max(out.unacked_at_outage)
    must_arrive = out.unacked_at_outage | {s for s in out.sent if s > last_unacked}
    wait_until(lambda: out.listener.report(must_arrive)[3] == 0, "every unacknowledged scan")
    total, delivered, duplicates, lost = out.listener.report(out.sent)
    lost_by_edge = out.listener.report(must_arrive)[3]
    reliability(
        scenario="broker SIGKILLed mid-stream: lost by the edge",
        sent=total,
        stored=total - lost_by_edge,
        duplicates=duplicates,
        lost=lost_by_edge,
        recover_s=out.recover_s,
    )
    figures(
        f"broker SIGKILL: sent {total} / delivered {delivered} / duplicates {duplicates} / "
        f"lost {lost}: {lost - lost_by_edge} acknowledged by the killed broker before it died, "
        f"{lost_by_edge} by the edge (outbox {out.depth_at_outage} -> "
        f"{out.depth_before_restart} while down; link republished {out.link.stats().republished})"
    )
    assert lost_by_edge == 0


EDGE_CHILD = textwrap.dedent(
    """
    import signal, sys, threading, time
    from datetime import UTC, datetime
    from pathlib import Path
    from contract.ids import new_event_id
    from contract.messages import Direction, ScanEvent
    from edge.mqtt_link import MqttConfig, MqttLink
    from edge.outbox import Outbox, OutboxConfig

    path, host, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    box = Outbox(OutboxConfig(path=Path(path)))
    link = MqttLink(
        MqttConfig(host=host, port=port, reconnect_min_delay_s=1, reconnect_max_delay_s=2),
        device_id="gate-01", checkpoint_id="cp-01", outbox=box, software="child",
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def build(seq):
        return ScanEvent(
            event_id=new_event_id(), device_id="gate-01", checkpoint_id="cp-01", lane=0,
            direction=Direction.OUT, seq=seq, seen_at=datetime.now(UTC), token="KD1:C",
            decoder="zbar", quality=0.5,
        )

    # A backlog first (as after an outage), then the link drains it.
    for _ in range(count):
        print(box.enqueue(build), flush=True)
    link.start()
    print("started", flush=True)
    while not done.is_set():
        if box.depth() == 0:
            print("drained", flush=True)
            break
        time.sleep(0.05)
    done.wait()
    link.stop()
    box.close()
    """
)


class EdgeChild:
    """The edge link in a child process, so it can be SIGKILLed."""

    def __init__(self, tmp_path: Path, broker: Broker, count: int) -> None:
        script = tmp_path / "edge_child.py"
        script.write_text(EDGE_CHILD)
        self.enqueued: list[int] = []
        self.drained = threading.Event()
        self.started = threading.Event()
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(tmp_path / "outbox.sqlite3"),
                broker.host,
                str(broker.port),
                str(count),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            text = line.strip()
            if text == "started":
                self.started.set()
            elif text == "drained":
                self.drained.set()
            elif text:
                self.enqueued.append(int(text))

    def kill(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self._reader.join(timeout=30)


@pytest.mark.slow
@pytest.mark.reliability
def test_edge_killed_mid_stream_then_restarted_delivers_all(
    mosquitto_factory: BrokerFactory,
    tmp_path: Path,
    cleanup: ExitStack,
    reliability: Callable[..., None],
) -> None:
    broker = mosquitto_factory()
    listener = Listener(broker, [ALL_SCANS])
    cleanup.callback(listener.close)
    first = EdgeChild(tmp_path, broker, count=2000)
    cleanup.callback(first.kill)
    wait_until(lambda: listener.distinct() >= 100, "first scans delivered")
    first.kill()
    sent = set(first.enqueued)
    delivered_before = listener.distinct()
    assert delivered_before > 0, "the kill must come mid-stream, after some deliveries"
    assert len(sent) == 2000
    assert not first.drained.is_set(), "killed while draining"

    second = EdgeChild(tmp_path, broker, count=0)
    cleanup.callback(second.kill)
    assert second.drained.wait(WAIT_S), "restarted edge drains its outbox"
    wait_until(lambda: listener.report(sent)[3] == 0, "every reported scan delivered")
    second.terminate()
    total, delivered, duplicates, lost = listener.report(sent)
    reliability(
        scenario="edge agent SIGKILLed mid-stream, restarted",
        sent=total,
        stored=delivered,
        duplicates=duplicates,
        lost=lost,
    )
    assert lost == 0


def test_last_will_marks_a_killed_edge_offline(
    mosquitto_factory: BrokerFactory,
    tmp_path: Path,
    cleanup: ExitStack,
) -> None:
    broker = mosquitto_factory()
    listener = Listener(broker, [status_topic(DEVICE)])
    cleanup.callback(listener.close)
    child = EdgeChild(tmp_path, broker, count=0)
    cleanup.callback(child.kill)
    wait_until(
        lambda: any(s.state is DeviceState.ONLINE for s in listener.statuses()), "online status"
    )
    child.kill()
    wait_until(
        lambda: listener.statuses()[-1].state is DeviceState.OFFLINE, "the will says offline"
    )
    # And it is retained: a newcomer sees the device as offline.
    late = Listener(broker, [status_topic(DEVICE)], client_id="late-listener")
    cleanup.callback(late.close)
    wait_until(lambda: bool(late.statuses()), "retained status")
    assert late.statuses()[-1].state is DeviceState.OFFLINE
    assert late.messages[-1][2] is True


def test_retained_online_status_on_connect_and_offline_on_stop(
    mosquitto_factory: BrokerFactory,
    outbox: Outbox,
    cleanup: ExitStack,
) -> None:
    broker = mosquitto_factory()
    link = MqttLink(link_config(broker), device_id=DEVICE, checkpoint_id=CHECKPOINT, outbox=outbox)
    link.start()
    try:
        wait_until(lambda: link.connected, "connected")
        late = Listener(broker, [status_topic(DEVICE)], client_id="status-1")
        cleanup.callback(late.close)
        wait_until(lambda: bool(late.statuses()), "retained online status")
        status = late.statuses()[-1]
        assert (status.state, status.device_id, status.checkpoint_id) == (
            DeviceState.ONLINE,
            DEVICE,
            CHECKPOINT,
        )
        assert late.messages[-1][2] is True, "delivered as the retained message"

        periodic = DeviceStatus(
            device_id=DEVICE,
            checkpoint_id=CHECKPOINT,
            state=DeviceState.ONLINE,
            at=datetime.now(UTC),
            outbox_depth=outbox.depth(),
            alarms=outbox.alarms() + link.alarms(),
        )
        link.publish_status(periodic)
        wait_until(lambda: late.statuses()[-1] == periodic, "periodic status published")
    finally:
        link.stop(timeout_s=2.0)
    wait_until(lambda: late.statuses()[-1].state is DeviceState.OFFLINE, "offline on clean stop")


def test_subscriptions_restored_after_broker_restart(
    mosquitto_factory: BrokerFactory,
    outbox: Outbox,
    cleanup: ExitStack,
) -> None:
    broker = mosquitto_factory()
    got: dict[str, list[object]] = {"verdict": [], "denylist": [], "config": [], "keyring": []}
    handlers = InboundHandlers(
        verdict=got["verdict"].append,
        denylist=got["denylist"].append,
        config=got["config"].append,
        keyring=got["keyring"].append,
    )
    link = start_link(cleanup, broker, outbox, handlers=handlers)
    wait_until(lambda: link.stats().connects == 1, "first connect")
    wait_until(lambda: link.stats().connected, "connected")
    broker.restart()
    wait_until(lambda: link.stats().connects == 2, "reconnected after the restart")

    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="aggregator", protocol=mqtt.MQTTv5)
    sender.connect(broker.host, broker.port)
    sender.loop_start()
    try:
        verdict = Verdict(
            event_id=new_event_id(),
            device_id=DEVICE,
            color=Color.RED,
            code=VerdictCode.F0,
            decided_at=datetime.now(UTC),
        )
        # The subscription was made again in on_connect; wait for the SUBACK
        # by retrying until the verdict gets through.
        deadline = time.monotonic() + WAIT_S
        while not got["verdict"] and time.monotonic() < deadline:
            sender.publish(verdict_topic(DEVICE), encode(verdict), qos=1).wait_for_publish(5)
            time.sleep(0.2)
        assert got["verdict"] and got["verdict"][0] == verdict

        deny = DenyList(
            revision=3,
            issued_at=datetime.now(UTC),
            entries=[DenyEntry(declaration_id=42, reason=DenyReason.F0)],
        )
        config = DeviceConfigUpdate(revision=2, settings={"vision": {"downscale": 1}})
        keyring = KeyringFile(keys=[SigningKey.generate(kid=7).public()])
        for topic, payload in (
            (REVOCATIONS_TOPIC, encode(deny)),
            (config_topic(DEVICE), encode(config)),
            (KEYRING_TOPIC, keyring.model_dump_json().encode()),
            (verdict_topic(DEVICE), b"{not json"),
            (verdict_topic(DEVICE), encode(verdict.model_copy(update={"device_id": "gate-02"}))),
            (config_topic(DEVICE), b'{"v": 9, "revision": 1, "settings": {}}'),
        ):
            sender.publish(topic, payload, qos=1, retain=topic != verdict_topic(DEVICE))
        wait_until(lambda: link.stats().inbound_rejected == 3, "three bad payloads counted")
        wait_until(lambda: bool(got["denylist"] and got["config"] and got["keyring"]), "handlers")
        assert got["denylist"] == [deny] and got["config"] == [config]
        assert got["keyring"] == [keyring]
        assert len(got["verdict"]) >= 1 and link.stats().handler_errors == 0
    finally:
        for topic in (REVOCATIONS_TOPIC, config_topic(DEVICE), KEYRING_TOPIC):
            sender.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        sender.disconnect()
        sender.loop_stop()


def _password_broker(mosquitto_factory: BrokerFactory, tmp_path: Path) -> Broker:
    pw = tmp_path / "passwd"
    for i, (user, password) in enumerate(
        (("gate-01", "pw-gate-01"), ("gate-02", "pw-gate-02"), ("aggregator", "pw-agg"))
    ):
        args = ["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(pw), user, password]
        subprocess.run(args, check=True, capture_output=True)
    acl = tmp_path / "acl"
    acl.write_text(
        "user aggregator\n"
        "topic readwrite kd/v1/#\n"
        "\n"
        "pattern write kd/v1/dev/%u/#\n"
        "pattern read kd/v1/dev/%u/verdict\n"
        "pattern read kd/v1/dev/%u/config\n"
        "pattern read kd/v1/revocations\n"
        "pattern read kd/v1/keyring\n"
    )
    return mosquitto_factory(extra=f"password_file {pw}\nacl_file {acl}", anonymous=False)


def test_wrong_password_keeps_events_and_reports_the_error(
    mosquitto_factory: BrokerFactory,
    outbox: Outbox,
    cleanup: ExitStack,
    tmp_path: Path,
    figures: Callable[[str], None],
) -> None:
    broker = _password_broker(mosquitto_factory, tmp_path)
    listener = Listener(broker, [ALL_SCANS], username="aggregator", password="pw-agg")
    cleanup.callback(listener.close)
    sent = {outbox.enqueue(scan) for _ in range(5)}
    bad = start_link(cleanup, broker, outbox, username=DEVICE, password=SecretStr("wrong"))
    wait_until(lambda: bad.stats().connect_failures >= 2, "two refused connects (it retries)")
    stats = bad.stats()
    assert not stats.connected and stats.acked == 0
    assert stats.last_connect_error == "Not authorized"  # what mosquitto 2.0.11 answers
    assert ALARM_NOT_CONNECTED in bad.alarms()
    assert outbox.depth() == 5
    bad.stop(timeout_s=1.0)
    assert outbox.depth() == 5

    good = start_link(cleanup, broker, outbox, username=DEVICE, password=SecretStr("pw-gate-01"))
    wait_until(lambda: outbox.depth() == 0, "delivered once the password is right")
    wait_until(lambda: listener.report(sent)[3] == 0, "listener has them")
    total, delivered, duplicates, lost = listener.report(sent)
    figures(
        f"wrong password then fixed: sent {total} / delivered {delivered} / "
        f"duplicates {duplicates} / lost {lost}; error shown: {stats.last_connect_error!r}"
    )
    assert good.stats().connects == 1 and lost == 0


def test_acl_refuses_another_devices_topic(
    mosquitto_factory: BrokerFactory,
    outbox: Outbox,
    cleanup: ExitStack,
    tmp_path: Path,
    figures: Callable[[str], None],
) -> None:
    broker = _password_broker(mosquitto_factory, tmp_path)
    listener = Listener(broker, [ALL_SCANS], username="aggregator", password="pw-agg")
    cleanup.callback(listener.close)
    # gate-01's credentials on a device configured as gate-02: it publishes
    # to kd/v1/dev/gate-02/scan, which the ACL does not let gate-01 write.
    sent = {outbox.enqueue(lambda s: scan(s, device_id="gate-02")) for _ in range(3)}
    link = start_link(
        cleanup,
        broker,
        outbox,
        device_id="gate-02",
        username="gate-01",
        password=SecretStr("pw-gate-01"),
        client_id="gate-01",
    )
    wait_until(lambda: link.stats().rejected >= 3, "three refused PUBACKs")
    # mosquitto 2.0.11 answers an MQTT 5 publish the ACL denies with PUBACK
    # reason 0x87 "Not authorized" (it does not silently drop it): the link
    # sees the failure and keeps the events.
    assert link.stats().last_rejection == "Not authorized"
    assert "mqtt_publish_refused" in link.alarms()
    assert outbox.depth() == 3 and link.stats().acked == 0

    # A message the listener may receive, sent after the refused ones: once it
    # is there, anything the broker had let through would be there too.
    marker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gate-01b", protocol=mqtt.MQTTv5)
    marker.username_pw_set("aggregator", "pw-agg")
    marker.connect(broker.host, broker.port)
    marker.loop_start()
    marker.publish("kd/v1/dev/marker/scan", encode(scan(0, device_id="marker")), qos=1)
    wait_until(lambda: listener.report({0}, device_id="marker")[1] == 1, "marker delivered")
    marker.disconnect()
    marker.loop_stop()
    total, delivered, duplicates, _ = listener.report(sent, device_id="gate-02")
    rejected = link.stats().rejected
    figures(
        f"ACL refusal: sent {total} / delivered {delivered} / duplicates {duplicates} / "
        f"kept in outbox {outbox.depth()}; PUBACK 0x87 Not authorized x{rejected}"
    )
    assert delivered == 0
    assert outbox.depth() == 3
