"""Hostile MQTT input against one running deployment: the broker's ACL, then the aggregator.

One world for the whole module: mosquitto started with the files
``kiemdich broker files`` writes (passwords, pattern ACL, no anonymous
access), the aggregator service on SQLite logged in as its service account,
and the gates of ``tests/ingest_world.py`` logged in as themselves, plus
``gate-ghost-1``, which holds broker credentials but is in no registry.

Each row of :data:`CASES` publishes something hostile, then a valid
"sentinel" scan from the same gate: the sentinel stored proves everything
published before it was handled (one subscriber, QoS 1, in order), so the
test waits on that instead of sleeping, and then checks the exact outcome
(dead letter and reason, broker refusal, passage verdict, alert). Every row
is recorded for ``make reliability``: sent = hostile messages published,
stored = passages plus dead letters they left, lost = published messages
accounted for nowhere (a broker refusal accounts for a message).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import base45
import cbor2
import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, func, select

from aggregator.broker import write_broker_files
from aggregator.db.engine import make_engine
from aggregator.db.schema import alerts, dead_letters, passages
from aggregator.ingest.validate import DeadLetter, DeadLetterReason, Inbound, parse_scan
from aggregator.service import AggregatorService
from aggregator.settings import AggregatorSettings
from contract.messages import MAX_SCAN_BYTES, AlertKind, AlertNotice, ScanEvent, encode
from contract.token import HOUR, PREFIX, Keyring, SigningKey, issue_token
from contract.topics import ALL_ALERTS, REVOCATIONS_TOPIC, scan_topic, status_topic
from contract.vectors import vector_key
from tests.conftest import Reliability
from tests.fixtures.db import url_string
from tests.fixtures.mqtt import Broker, _spawn, _wait_listening, free_port
from tests.ingest_world import (
    CHECKPOINT,
    DEVICE_PASSWORD,
    GATES,
    OTHER_CHECKPOINT,
    OTHER_GATE,
    World,
    build_world,
    forge,
    wait_for,
)

pytestmark = pytest.mark.reliability

GHOST = "gate-ghost-1"  # broker credentials, but no registry entry
AGGREGATOR_PASSWORD = "hostile-test-aggregator-pw"
NOT_AUTHORIZED = 135  # MQTT 5 PUBACK reason code
CLIENT_ID = "agg-hostile"


# --- the world ---------------------------------------------------------------------------


class Device:
    """A client logged in to the broker as a device (or service); publishes at QoS 1."""

    def __init__(self, broker: Broker, username: str, password: str) -> None:
        self.username = username
        self.acks: queue.Queue[tuple[int, int]] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        connected: queue.Queue[int] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{username}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(username, password)
        self.client.on_connect = lambda _c, _u, _f, rc, _p: connected.put(int(rc.value))
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.acks.put((mid, int(rc.value)))
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        code = connected.get(timeout=10)
        assert code == 0, f"{username} refused by the broker: {code}"

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """Publish at QoS 1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        mid, code = self.acks.get(timeout=10)
        assert mid == info.mid
        return code

    def subscribe(self, *topics: str) -> None:
        """Subscribe at QoS 1 and wait until the broker granted it."""
        granted = threading.Event()
        self.client.on_subscribe = lambda *_: granted.set()
        self.client.subscribe([(t, 1) for t in topics])
        assert granted.wait(10)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Hostile:
    """The running deployment the hostile publications go to."""

    engine: Engine
    broker: Broker
    world: World
    settings: AggregatorSettings
    service: AggregatorService
    devices: dict[str, Device] = field(default_factory=dict)
    # Every hostile message published, for the closing "nothing lost" check.
    published: int = 0

    def device(self, name: str) -> Device:
        """The broker client of gate ``name`` (one connection per gate, reused)."""
        if name not in self.devices:
            self.devices[name] = Device(self.broker, name, DEVICE_PASSWORD)
        return self.devices[name]

    def restart_aggregator(self) -> float:
        """Stop the service and start a new one with the same client id; seconds to ready."""
        self.service.stop()
        started = time.monotonic()
        self.service = AggregatorService(self.settings)
        self.service.start()
        assert self.service.consumer.wait_connected(20)
        return time.monotonic() - started

    def sentinel(self, gate: str) -> ScanEvent:
        """A valid scan from ``gate``, published and waited for until stored."""
        checkpoint = OTHER_CHECKPOINT if gate == OTHER_GATE else CHECKPOINT
        event = self.world.scan(
            self.world.people["an"].token, device_id=gate, checkpoint_id=checkpoint
        )
        assert self.device(gate).publish(scan_topic(gate), encode(event)) == 0
        assert wait_for(lambda: stored_ids(self.engine, [event.event_id]) == 1, timeout=30), (
            "the stream stopped: a valid scan published after the hostile ones was not stored"
        )
        return event

    def counts(self) -> dict[str, int]:
        """Rows of each dead-letter reason, passages and alerts, now."""
        with self.engine.connect() as conn:
            letters = dict(
                conn.execute(
                    select(dead_letters.c.reason, func.count()).group_by(dead_letters.c.reason)
                ).all()
            )
            total_passages = conn.execute(select(func.count()).select_from(passages)).scalar_one()
            total_alerts = conn.execute(select(func.count()).select_from(alerts)).scalar_one()
        out = {f"dead:{reason}": int(n) for reason, n in letters.items()}
        out["passages"] = int(total_passages)
        out["alerts"] = int(total_alerts)
        return out


def stored_ids(engine: Engine, ids: list[UUID]) -> int:
    """How many passages carry these event ids."""
    with engine.connect() as conn:
        query = select(func.count()).select_from(passages).where(passages.c.event_id.in_(ids))
        return int(conn.execute(query).scalar_one())


def _start_broker(folder: Path) -> Broker:
    port = free_port()
    credentials = [(gate, DEVICE_PASSWORD) for gate in (*GATES, OTHER_GATE, GHOST)]
    conf = write_broker_files(
        folder, port=port, devices=credentials, services={"aggregator": AGGREGATOR_PASSWORD}
    )
    log = folder / "mosquitto.log"
    broker = Broker("127.0.0.1", port, _spawn(conf, log), conf, log)
    _wait_listening(broker.host, port, broker.process, log)
    return broker


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path) -> Iterator[Hostile]:
    """mosquitto with auth and ACL, the aggregator on SQLite, the ingest world registered."""
    folder = tmp_path_factory.mktemp("hostile")
    db = folder / "kiemdich.db"
    db.write_bytes(_sqlite_template.read_bytes())
    engine = make_engine(f"sqlite:///{db}")
    key = vector_key(1)
    world = build_world(engine, key)
    keyring_file = folder / "keyring.json"
    Keyring([key.public()]).save(keyring_file)
    broker = _start_broker(folder / "broker")
    config = AggregatorSettings(
        environment="development",
        db_url=url_string(engine.url),
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_username="aggregator",
        mqtt_password=AGGREGATOR_PASSWORD,
        client_id=CLIENT_ID,
        keyring_path=keyring_file,
        poll_interval_s=0.3,
        batch_ms=10,
        fleet_flush_s=0.2,
    )
    service = AggregatorService(config)
    service.start()
    state = Hostile(engine, broker, world, config, service)
    try:
        assert service.consumer.wait_connected(20) and service.control.wait_connected(20)
        # The shared subscription is granted once a first scan goes through.
        state.sentinel(GATES[0])
        yield state
    finally:
        for device in state.devices.values():
            device.close()
        state.service.stop()
        broker.stop()
        engine.dispose()


# --- hostile publications -----------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What a hostile publication must lead to."""

    refused_by_broker: int = 0  # PUBACKs "not authorized"
    dead: tuple[tuple[DeadLetterReason, int], ...] = ()  # dead letters by reason
    passages: int = 0  # passages stored (beyond the sentinel)
    verdict: tuple[str, str] | None = None  # (verdict, reason) of the passages stored
    alert: AlertKind | None = None  # the alert each passage raised (None: no alert)
    duplicates: int = 0  # copies found already stored


@dataclass
class Sent:
    """What a scenario published: how many messages, and the scan events among them."""

    messages: int
    events: list[ScanEvent] = field(default_factory=list)
    refused: int = 0
    recover_s: float | None = None


Scenario = Callable[[Hostile], Sent]


def _json(body: dict[str, object]) -> bytes:
    return json.dumps(body).encode()


def _event_json(h: Hostile, **changes: object) -> dict[str, object]:
    event = h.world.scan(h.world.people["an"].token, device_id=GATES[0])
    body: dict[str, object] = event.model_dump(mode="json")
    body.update(changes)
    return body


def _raw(h: Hostile, payloads: list[bytes], gate: str = GATES[0]) -> Sent:
    codes = [h.device(gate).publish(scan_topic(gate), p) for p in payloads]
    assert codes == [0] * len(payloads)
    return Sent(len(payloads))


def malformed_json(h: Hostile) -> Sent:
    """Not JSON, truncated JSON, binary, a JSON array."""
    return _raw(h, [b'{"v": 1, "event_id": ', b"\xff\xfe\x00\x01 garbage", b"[1, 2, 3]", b""])


def oversized(h: Hostile) -> Sent:
    """A payload over the 64 KiB scan cap (the broker sets no packet limit: the aggregator
    refuses it), and a well-formed event whose crop is over its 32 KiB cap."""
    pad = b"x" * (MAX_SCAN_BYTES + 1)
    big_crop = _event_json(h, crop_jpeg="A" * (48 * 1024))
    return _raw(h, [b'{"v": 1, "pad": "' + pad + b'"}', _json(big_crop)])


def wrong_schema_version(h: Hostile) -> Sent:
    """A future version, a version as text, and no version at all."""
    without = _event_json(h)
    del without["v"]
    return _raw(h, [_json(_event_json(h, v=2)), _json(_event_json(h, v="1")), _json(without)])


def invalid_fields(h: Hostile) -> Sent:
    """An event id that is no UUID, a naive time, an unknown key, a token that is a number."""
    return _raw(
        h,
        [
            _json(_event_json(h, event_id="nope")),
            _json(_event_json(h, seen_at="2025-06-01T08:00:00")),
            _json(_event_json(h, admin=True)),
            _json(_event_json(h, token=12345)),
        ],
    )


def unknown_device(h: Hostile) -> Sent:
    """A device the broker knows but the registry does not, on its own topic."""
    event = h.world.scan(h.world.people["an"].token, device_id=GHOST)
    assert h.device(GHOST).publish(scan_topic(GHOST), encode(event)) == 0
    return Sent(1, [event])


def publish_as_another_device(h: Hostile) -> Sent:
    """Gate 1 writes on gate 2's scan and status topics, on the deny-list and alert topics."""
    event = h.world.scan(h.world.people["an"].token, device_id=GATES[1])
    gate = h.device(GATES[0])
    codes = [
        gate.publish(scan_topic(GATES[1]), encode(event)),
        gate.publish(status_topic(GATES[1]), b'{"v": 1}', retain=True),
        gate.publish(
            REVOCATIONS_TOPIC, b'{"v": 1, "revision": 999999, "entries": []}', retain=True
        ),
        gate.publish(f"kd/v1/alerts/{CHECKPOINT}", b'{"v": 1}'),
    ]
    assert codes == [NOT_AUTHORIZED] * 4
    return Sent(4, [event], refused=4)


def claim_another_device(h: Hostile) -> Sent:
    """On its own topic, gate 1 sends an event that names gate 2 as its device."""
    event = h.world.scan(h.world.people["an"].token, device_id=GATES[1])
    assert h.device(GATES[0]).publish(scan_topic(GATES[0]), encode(event)) == 0
    return Sent(1, [event])


def claim_another_checkpoint(h: Hostile) -> Sent:
    """Gate 1 (registered at Pháp Vân) claims a passage at the Thăng Long bridge."""
    event = h.world.scan(
        h.world.people["an"].token, device_id=GATES[0], checkpoint_id=OTHER_CHECKPOINT
    )
    assert h.device(GATES[0]).publish(scan_topic(GATES[0]), encode(event)) == 0
    return Sent(1, [event])


def replayed_event(h: Hostile) -> Sent:
    """The same event three times (a republish after a reconnect, then a replay attack)."""
    event = h.world.scan(h.world.people["binh"].token, device_id=GATES[1])
    for _ in range(3):
        assert h.device(GATES[1]).publish(scan_topic(GATES[1]), encode(event)) == 0
    return Sent(3, [event])


def replayed_after_restart(h: Hostile) -> Sent:
    """An event stored, the aggregator restarted (same client id), the event sent again."""
    event = h.world.scan(h.world.people["f2"].token, device_id=GATES[1])
    gate = h.device(GATES[1])
    assert gate.publish(scan_topic(GATES[1]), encode(event)) == 0
    assert wait_for(lambda: stored_ids(h.engine, [event.event_id]) == 1, timeout=30)
    recover_s = h.restart_aggregator()
    assert gate.publish(scan_topic(GATES[1]), encode(event)) == 0
    return Sent(2, [event], recover_s=recover_s)


def _attacker_token(h: Hostile, *, kid: int, declaration_id: int) -> str:
    now = int(time.time())
    return issue_token(
        SigningKey.generate(kid=kid),
        declaration_id=declaration_id,
        issued_at=now - HOUR,
        expires_at=now + 24 * HOUR,
    )


def _scans(h: Hostile, tokens: list[str], gate: str = GATES[0]) -> Sent:
    events = [h.world.scan(token, device_id=gate) for token in tokens]
    for event in events:
        assert h.device(gate).publish(scan_topic(gate), encode(event)) == 0
    return Sent(len(events), events)


def forged_code(h: Hostile) -> Sent:
    """Passes signed by an attacker: with our key id (bad signature) and with an unknown one."""
    declaration = h.world.people["an"].declaration_id
    return _scans(
        h,
        [
            _attacker_token(h, kid=h.world.key.kid, declaration_id=declaration),
            _attacker_token(h, kid=200, declaration_id=declaration),
        ],
    )


def tampered_code(h: Hostile) -> Sent:
    """A genuine F0's pass with its declaration id changed to a cleared person's, and one with
    a flipped signature bit."""
    raw = base45.b45decode(h.world.people["f0"].token.removeprefix(PREFIX))
    claims, signature = cbor2.loads(raw[:-64]), raw[-64:]
    claims[1] = h.world.people["an"].declaration_id
    swapped = PREFIX + base45.b45encode(cbor2.dumps(claims) + signature).decode()
    return _scans(h, [swapped, forge(h.world.people["an"].token)])


def expired_code(h: Hostile) -> Sent:
    """A genuine pass of a known person whose validity ended yesterday."""
    now = datetime.now(UTC)
    ended = int((now - timedelta(days=1)).timestamp())
    token = issue_token(
        h.world.key,
        declaration_id=h.world.people["an"].declaration_id,
        issued_at=ended - 48 * HOUR,
        expires_at=ended,
    )
    return _scans(h, [token])


def revoked_code(h: Hostile) -> Sent:
    """A genuine, unexpired pass whose declaration the registry revoked."""
    return _scans(h, [h.world.people["revoked"].token])


def injection_in_qr(h: Hostile) -> Sent:
    """What a camera reads off a sticker: script, SQL, a fake prefix, over-long text."""
    return _scans(
        h,
        [
            "<script>window.__pwned=1</script>",
            "KD1:'; DROP TABLE passages;--",
            "KD1:<img src=x onerror=alert(1)>",
            "KD1:" + "A" * 396,
        ],
    )


DEAD = DeadLetterReason
CASES: list[tuple[str, Scenario, Expect]] = [
    ("malformed JSON", malformed_json, Expect(dead=((DEAD.BAD_JSON, 4),))),
    ("oversized payload", oversized, Expect(dead=((DEAD.TOO_LARGE, 1), (DEAD.INVALID, 1)))),
    ("wrong schema version", wrong_schema_version, Expect(dead=((DEAD.BAD_VERSION, 3),))),
    ("invalid fields", invalid_fields, Expect(dead=((DEAD.INVALID, 4),))),
    ("unknown device", unknown_device, Expect(dead=((DEAD.UNKNOWN_DEVICE, 1),))),
    ("device writes another's topics", publish_as_another_device, Expect(refused_by_broker=4)),
    (
        "payload claims another device",
        claim_another_device,
        Expect(dead=((DEAD.TOPIC_MISMATCH, 1),)),
    ),
    (
        "payload claims another checkpoint",
        claim_another_checkpoint,
        Expect(dead=((DEAD.WRONG_CHECKPOINT, 1),)),
    ),
    (
        "replayed event ×3",
        replayed_event,
        Expect(passages=1, duplicates=2, verdict=("yellow", "clear")),
    ),
    (
        "replayed after aggregator restart",
        replayed_after_restart,
        Expect(passages=1, duplicates=1, verdict=("yellow", "f2")),
    ),
    (
        "forged QR (attacker key)",
        forged_code,
        Expect(passages=2, verdict=("invalid", "forged"), alert=AlertKind.FORGED),
    ),
    (
        "tampered QR (claims / signature)",
        tampered_code,
        Expect(passages=2, verdict=("invalid", "forged"), alert=AlertKind.FORGED),
    ),
    (
        "expired QR",
        expired_code,
        Expect(passages=1, verdict=("invalid", "expired"), alert=AlertKind.EXPIRED),
    ),
    (
        "revoked QR",
        revoked_code,
        Expect(passages=1, verdict=("red", "revoked"), alert=AlertKind.REVOKED),
    ),
    ("injection text in QR", injection_in_qr, Expect(passages=4, verdict=("invalid", "malformed"))),
]


@pytest.mark.parametrize(("name", "scenario", "expect"), CASES, ids=[c[0] for c in CASES])
def test_hostile_publication(
    hostile: Hostile, name: str, scenario: Scenario, expect: Expect, reliability: Reliability
) -> None:
    before = hostile.counts()
    duplicates_before = hostile.service.stats()["duplicates"]
    sent = scenario(hostile)
    hostile.published += sent.messages
    # Everything published before it, on the same connections, has been handled by now.
    for gate in {GATES[0], GATES[1]} & set(hostile.devices):
        hostile.sentinel(gate)
    after = hostile.counts()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after.keys() | before.keys()}
    sentinels = len({GATES[0], GATES[1]} & set(hostile.devices))
    new_passages = delta.pop("passages") - sentinels
    new_alerts = delta.pop("alerts")
    letters = {k.removeprefix("dead:"): v for k, v in delta.items() if v}
    duplicates = hostile.service.stats()["duplicates"] - (
        0 if sent.recover_s is not None else duplicates_before
    )

    assert sent.refused == expect.refused_by_broker
    assert letters == {reason.value: n for reason, n in expect.dead}
    assert new_passages == expect.passages
    assert duplicates == expect.duplicates
    ids = [e.event_id for e in sent.events]
    with hostile.engine.connect() as conn:
        stored = conn.execute(
            select(passages.c.event_id, passages.c.verdict, passages.c.reason).where(
                passages.c.event_id.in_(ids)
            )
        ).all()
        raised = conn.execute(select(alerts.c.kind).where(alerts.c.event_id.in_(ids))).scalars()
        raised_kinds = sorted(raised)
    assert len(stored) == expect.passages
    if expect.verdict is not None:
        assert {(r.verdict, r.reason) for r in stored} == {expect.verdict}
    expected_alerts = [expect.alert.value] * expect.passages if expect.alert else []
    assert raised_kinds == expected_alerts
    assert new_alerts == len(expected_alerts)
    accounted = new_passages + sum(letters.values()) + sent.refused + duplicates
    reliability(
        scenario=f"MQTT hostile: {name}",
        sent=sent.messages,
        stored=new_passages + sum(letters.values()),
        duplicates=duplicates,
        lost=sent.messages - accounted,
        recover_s=sent.recover_s,
    )
    assert accounted == sent.messages


def test_a_forged_code_alerts_the_monitors(hostile: Hostile) -> None:
    """The forged-code alert reaches the officers' monitors over MQTT, without personal data."""
    monitor = Device(hostile.broker, "aggregator", AGGREGATOR_PASSWORD)
    try:
        monitor.subscribe(ALL_ALERTS)
        sent = _scans(hostile, [_attacker_token(hostile, kid=1, declaration_id=42)])
        topic, body = monitor.messages.get(timeout=30)
        notice = AlertNotice.model_validate_json(body)
        assert topic == f"kd/v1/alerts/{CHECKPOINT}"
        assert (notice.kind, notice.event_id) == (AlertKind.FORGED, sent.events[0].event_id)
    finally:
        monitor.close()


def test_the_stream_never_stopped(hostile: Hostile, reliability: Reliability) -> None:
    """After every hostile row, each gate's next valid scan is stored with its verdict."""
    events = [hostile.sentinel(gate) for gate in (*GATES, OTHER_GATE)]
    with hostile.engine.connect() as conn:
        verdicts = set(
            conn.execute(
                select(passages.c.verdict).where(
                    passages.c.event_id.in_([e.event_id for e in events])
                )
            ).scalars()
        )
    assert verdicts == {"green"}
    assert hostile.service.consumer.worker_alive
    with hostile.engine.connect() as conn:
        letters = conn.execute(select(dead_letters.c.reason, dead_letters.c.detail)).all()
    # Every refusal was kept with a known reason and says why.
    assert letters
    assert all(r.reason in set(DeadLetterReason) and (r.detail or "").strip() for r in letters)
    reliability(
        scenario=f"MQTT hostile: valid scans after {hostile.published} hostile messages",
        sent=len(events),
        stored=len(events),
        duplicates=0,
        lost=0,
    )


# Last of the world's tests: were it to fail, it would wedge the scan stream.
def test_an_out_of_range_sequence_number_is_refused_not_retried_forever(
    hostile: Hostile,
) -> None:
    retries_before = hostile.service.stats()["db_retries"]
    letters_before = hostile.counts()
    body = _event_json(hostile, seq=2**63)
    assert hostile.device(GATES[0]).publish(scan_topic(GATES[0]), _json(body)) == 0

    def settled() -> bool:
        stuck = hostile.service.stats()["db_retries"] > retries_before
        return stuck or hostile.counts() != letters_before

    assert wait_for(settled, timeout=30)
    assert hostile.service.stats()["db_retries"] == retries_before, "the batch is retried"
    hostile.sentinel(GATES[0])  # and the stream goes on


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512) | st.text(max_size=200).map(str.encode))
def test_every_refused_scan_says_why(payload: bytes) -> None:
    """Hostile bytes never raise, and every refusal carries a known reason and a detail."""
    item = Inbound(scan_topic(GATES[0]), payload, datetime.now(UTC))
    result = parse_scan(item)
    if isinstance(result, DeadLetter):
        assert result.reason in set(DeadLetterReason)
        assert result.detail.strip()
        assert result.payload == payload  # kept whole for the dead-letter table
    else:
        assert isinstance(result, ScanEvent)
