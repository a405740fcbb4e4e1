"""Broker access files against the real mosquitto (2.0): who may publish and read what.

Each test starts mosquitto with the ``mosquitto.conf`` that
``aggregator.broker.write_broker_files`` generated, on a free port, and talks
to it with paho MQTT v5 clients.
"""

from __future__ import annotations

import base64
import hashlib
import queue
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from aggregator.broker import (
    DOCKER_LAYOUT,
    PBKDF2_ITERATIONS,
    hash_password,
    render_acl,
    render_config,
    render_password_file,
    write_broker_files,
)
from contract.topics import (
    ALL_SCANS,
    KEYRING_TOPIC,
    REVOCATIONS_TOPIC,
    config_topic,
    scan_topic,
    shared,
    status_topic,
    verdict_topic,
)
from tests.fixtures.mqtt import free_port

REPO = Path(__file__).resolve().parents[1]
DEVICES = {"hn-ql1a-phapvan-in-1": "pw-in-1", "hn-ql1a-phapvan-out-1": "pw-out-1"}
DEV1, DEV2 = DEVICES
SERVICES = {"aggregator": "agg-secret"}
NOT_AUTHORIZED = 135  # MQTT 5 reason code
QUIET_S = 0.5  # how long "nothing arrives" is watched for


@dataclass
class BrokerProc:
    port: int
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProc]:
    """mosquitto started with the generated files (auth on, no anonymous access)."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.skip("mosquitto is not installed (make test installs it with apt-get)")
    port = free_port()
    conf = write_broker_files(
        tmp_path / "broker", port=port, devices=DEVICES.items(), services=SERVICES
    )
    log = tmp_path / "mosquitto.log"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            pytest.fail(f"mosquitto exited: {log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mosquitto did not listen: {log.read_text()}")
        time.sleep(0.05)
    yield BrokerProc(port, proc, log)
    proc.terminate()
    proc.wait(timeout=10)


@dataclass
class Client:
    """A paho v5 client whose callbacks only put events on queues."""

    mqtt: mqtt.Client
    connack: queue.Queue[ReasonCode] = field(default_factory=queue.Queue)
    puback: queue.Queue[tuple[int, ReasonCode]] = field(default_factory=queue.Queue)
    suback: queue.Queue[list[ReasonCode]] = field(default_factory=queue.Queue)
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Publish; for QoS 1 the PUBACK reason code, for QoS 0 once it left the socket."""
        info = self.mqtt.publish(topic, payload, qos=qos, retain=retain)
        # paho reports QoS 0 sends too (with a local "success"): consume that report.
        mid, code = self.puback.get(timeout=5)
        assert mid == info.mid
        return 0 if qos == 0 else int(code.value)

    def subscribe(self, *topics: str) -> list[int]:
        """Subscribe at QoS 1; the SUBACK reason codes."""
        self.mqtt.subscribe([(t, 1) for t in topics])
        return [int(c.value) for c in self.suback.get(timeout=5)]

    def received(self, quiet_s: float = QUIET_S) -> list[tuple[str, bytes]]:
        """Everything delivered until nothing more arrives for ``quiet_s``."""
        out = []
        while True:
            try:
                out.append(self.messages.get(timeout=quiet_s))
            except queue.Empty:
                return out

    def wait_for(self, count: int, timeout: float = 5) -> list[tuple[str, bytes]]:
        """The first ``count`` messages delivered."""
        return [self.messages.get(timeout=timeout) for _ in range(count)]


Connect = Callable[..., tuple[Client, int]]


@pytest.fixture
def connect(broker: BrokerProc) -> Iterator[Connect]:
    """``connect(username, password, will_topic=None) -> (Client, CONNACK reason code)``."""
    clients: list[mqtt.Client] = []

    def make(
        username: str | None,
        password: str | None,
        *,
        will_topic: str | None = None,
        will_payload: bytes = b"offline",
    ) -> tuple[Client, int]:
        raw = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{username or 'anon'}-{len(clients)}",
            protocol=mqtt.MQTTv5,
        )
        client = Client(raw)
        if username is not None:
            raw.username_pw_set(username, password)
        if will_topic is not None:
            raw.will_set(will_topic, will_payload, qos=1, retain=True)
        raw.on_connect = lambda _c, _u, _f, rc, _p: client.connack.put(rc)
        raw.on_publish = lambda _c, _u, mid, rc, _p: client.puback.put((mid, rc))
        raw.on_subscribe = lambda _c, _u, _mid, rcs, _p: client.suback.put(rcs)
        raw.on_message = lambda _c, _u, m: client.messages.put((m.topic, m.payload))
        raw.connect("127.0.0.1", broker.port)
        raw.loop_start()
        clients.append(raw)
        return client, int(client.connack.get(timeout=5).value)

    yield make
    for raw in clients:
        raw.disconnect()
        raw.loop_stop()


def _ok(code: int) -> bool:
    # 0 = success, 16 = accepted but no subscriber matched.
    return code in (0, 16)


def test_device_publishes_its_own_scans_and_the_aggregator_reads_all(connect: Connect) -> None:
    aggregator, rc = connect("aggregator", SERVICES["aggregator"])
    assert rc == 0
    assert aggregator.subscribe(shared(ALL_SCANS)) == [1]
    dev1, rc1 = connect(DEV1, DEVICES[DEV1])
    dev2, rc2 = connect(DEV2, DEVICES[DEV2])
    assert (rc1, rc2) == (0, 0)

    assert _ok(dev1.publish(scan_topic(DEV1), b"scan-1"))
    assert _ok(dev2.publish(scan_topic(DEV2), b"scan-2"))
    assert _ok(dev1.publish(status_topic(DEV1), b"online", retain=True))
    assert sorted(aggregator.wait_for(2)) == [
        (scan_topic(DEV1), b"scan-1"),
        (scan_topic(DEV2), b"scan-2"),
    ]


def test_device_cannot_publish_as_another_device(connect: Connect) -> None:
    aggregator, _ = connect("aggregator", SERVICES["aggregator"])
    assert aggregator.subscribe(ALL_SCANS, status_topic(DEV2)) == [1, 1]
    dev1, _ = connect(DEV1, DEVICES[DEV1])

    # QoS 1: mosquitto 2.0 answers the PUBACK with "Not authorized" and drops it.
    assert dev1.publish(scan_topic(DEV2), b"forged-q1") == NOT_AUTHORIZED
    assert dev1.publish(status_topic(DEV2), b"offline", retain=True) == NOT_AUTHORIZED
    # QoS 0 has no acknowledgement: dropped silently, the connection stays up.
    assert dev1.publish(scan_topic(DEV2), b"forged-q0", qos=0) == 0
    # Outside the device tree entirely.
    assert dev1.publish("kd/v1/alerts/hn-ql1a-phapvan", b"fake alert") == NOT_AUTHORIZED

    # The subscriber with every right saw none of it; the next own scan still flows.
    assert _ok(dev1.publish(scan_topic(DEV1), b"genuine"))
    assert aggregator.received() == [(scan_topic(DEV1), b"genuine")]


def test_device_cannot_read_another_devices_verdicts(connect: Connect) -> None:
    aggregator, _ = connect("aggregator", SERVICES["aggregator"])
    dev1, _ = connect(DEV1, DEVICES[DEV1])
    dev2, _ = connect(DEV2, DEVICES[DEV2])
    # mosquitto 2.0 grants the subscription and filters at delivery time.
    dev1.subscribe(verdict_topic(DEV2), "kd/v1/dev/+/verdict", "kd/v1/#")
    dev2.subscribe(verdict_topic(DEV2))

    assert _ok(aggregator.publish(verdict_topic(DEV2), b"verdict for 2"))
    assert dev2.wait_for(1) == [(verdict_topic(DEV2), b"verdict for 2")]
    assert dev1.received() == []
    # ...while its own verdicts reach it (through the wildcard subscriptions).
    assert _ok(aggregator.publish(verdict_topic(DEV1), b"verdict for 1"))
    assert set(dev1.received()) == {(verdict_topic(DEV1), b"verdict for 1")}


def test_device_reads_its_config_the_denylist_and_the_keyring(connect: Connect) -> None:
    aggregator, _ = connect("aggregator", SERVICES["aggregator"])
    for topic in (config_topic(DEV1), config_topic(DEV2), REVOCATIONS_TOPIC, KEYRING_TOPIC):
        assert _ok(aggregator.publish(topic, topic.encode(), retain=True))
    dev1, _ = connect(DEV1, DEVICES[DEV1])
    dev1.subscribe(config_topic(DEV1), config_topic(DEV2), REVOCATIONS_TOPIC, KEYRING_TOPIC)
    got = {topic for topic, _ in dev1.received()}
    assert got == {config_topic(DEV1), REVOCATIONS_TOPIC, KEYRING_TOPIC}
    # ...and cannot overwrite them.
    assert dev1.publish(REVOCATIONS_TOPIC, b"{}", retain=True) == NOT_AUTHORIZED
    assert dev1.publish(config_topic(DEV1), b"{}", retain=True) == NOT_AUTHORIZED


@pytest.mark.parametrize(
    ("username", "password"),
    [
        (DEV1, "wrong password"),
        (DEV1, DEVICES[DEV2]),  # another device's password
        ("aggregator", DEVICES[DEV1]),
        ("hn-unknown-in-1", "anything"),
        (None, None),  # anonymous
    ],
    ids=["wrong-password", "other-devices-password", "service-wrong", "unknown-user", "anonymous"],
)
def test_bad_credentials_are_refused(
    connect: Connect, username: str | None, password: str | None
) -> None:
    _, rc = connect(username, password)
    # mosquitto 2.0.11 answers MQTT 5 clients "Not authorized" (135) rather than 134.
    assert rc == NOT_AUTHORIZED


def test_last_will_on_own_status_is_delivered(connect: Connect) -> None:
    aggregator, _ = connect("aggregator", SERVICES["aggregator"])
    aggregator.subscribe(status_topic(DEV1))
    dev1, rc = connect(DEV1, DEVICES[DEV1], will_topic=status_topic(DEV1))
    assert rc == 0
    # Drop the TCP connection without DISCONNECT: the broker sends the will.
    dev1.mqtt.socket().close()
    assert aggregator.wait_for(1, timeout=10) == [(status_topic(DEV1), b"offline")]


def test_password_file_matches_mosquitto_passwd(tmp_path: Path) -> None:
    exe = shutil.which("mosquitto_passwd")
    if exe is None:
        pytest.skip("mosquitto_passwd is not installed")
    path = tmp_path / "passwd"
    subprocess.run([exe, "-c", "-b", str(path), DEV1, "s3cret ñ"], check=True)
    username, stored = path.read_text().strip().split(":", 1)
    _, kind, iterations, salt, _digest = stored.split("$")
    assert (username, kind, int(iterations)) == (DEV1, "7", PBKDF2_ITERATIONS)
    assert hash_password("s3cret ñ", salt=base64.b64decode(salt)) == stored
    assert hash_password("s3cret n", salt=base64.b64decode(salt)) != stored
    # A fresh salt each time.
    assert hash_password("x") != hash_password("x")
    raw = hashlib.pbkdf2_hmac("sha512", b"x", b"0" * 12, PBKDF2_ITERATIONS)
    assert hash_password("x", salt=b"0" * 12).endswith(base64.b64encode(raw).decode())


@pytest.mark.parametrize(
    "accounts",
    [
        [("dev:1", "pw")],  # ':' would split the password line
        [("dev 1", "pw")],
        [("dev-1\nuser aggregator", "pw")],  # line injection into the files
        [("dev-1", "pw"), ("dev-1", "other")],
        [("dev-1", "")],
    ],
    ids=["colon", "space", "newline", "duplicate", "empty-password"],
)
def test_bad_accounts_are_refused(tmp_path: Path, accounts: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError):
        write_broker_files(tmp_path / "b", port=1883, devices=accounts, services={})
    assert not (tmp_path / "b" / "passwd").exists()


def test_bad_service_name_is_refused() -> None:
    with pytest.raises(ValueError):
        render_acl(["aggregator\ntopic readwrite #"])
    with pytest.raises(ValueError):
        render_password_file([("Aggregator", "pw")])


def test_committed_docker_files_match_the_generator() -> None:
    folder = REPO / "firmware_config" / "mosquitto"
    assert (folder / "mosquitto.conf").read_text() == render_config(DOCKER_LAYOUT)
    assert (folder / "acl").read_text() == render_acl(["aggregator"])
