"""The aggregator end to end through a real mosquitto, on real SQLite and PostgreSQL.

In-process service: an F0 passage (alert, verdict to the gate, ward
notifications), a forged code, a bad payload among good ones, a registry
change (next passage red, deny-list revision up), the keyring and fleet
status, the HTTP probes. As subprocesses (``kiemdich aggregator run``):
SIGKILL mid-stream and restart (every event stored exactly once), and two
aggregators sharing the stream on PostgreSQL.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, func, select, text

from aggregator.api.app import create_app
from aggregator.db.registry import set_health_status
from aggregator.db.schema import (
    HealthStatus,
    alerts,
    checkpoint_minute_rollups,
    dead_letters,
    devices,
    passages,
    ward_notifications,
)
from aggregator.service import AggregatorService
from aggregator.settings import AggregatorSettings
from contract.messages import (
    AlertKind,
    AlertNotice,
    CameraState,
    Color,
    DenyList,
    DenyReason,
    DeviceState,
    DeviceStatus,
    ScanEvent,
    Verdict,
    VerdictCode,
    encode,
)
from contract.token import Keyring, KeyringFile, SigningKey
from contract.topics import (
    ALL_ALERTS,
    KEYRING_TOPIC,
    REVOCATIONS_TOPIC,
    scan_topic,
    status_topic,
    verdict_topic,
)
from tests.conftest import Reliability
from tests.fixtures.db import url_string
from tests.fixtures.mqtt import Broker, free_port
from tests.ingest_world import GATES, OTHER_GATE, World, build_world, forge, wait_for

Figures = Callable[[str], None]


# --- helpers -----------------------------------------------------------------------


class Listener:
    """A plain MQTT client collecting what arrives on some topics."""

    def __init__(self, broker: Broker, *topics: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.held: list[tuple[str, bytes, bool]] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"listener-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        subscribed = threading.Event()

        def on_connect(c: mqtt.Client, *_: object) -> None:
            for topic in topics:
                c.subscribe(topic, qos=1)
            subscribed.set()

        self.client.on_connect = on_connect
        self.client.on_message = lambda _c, _u, m: self.messages.put(
            (m.topic, m.payload, bool(m.retain))
        )
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(10)
        time.sleep(0.2)  # SUBACK

    def next(self, topic_prefix: str, timeout: float = 20.0) -> bytes:
        """The next payload on a topic starting with ``topic_prefix`` (others are kept)."""
        for i, (topic, body, _) in enumerate(self.held):
            if topic.startswith(topic_prefix):
                del self.held[i]
                return body
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"nothing on {topic_prefix} within {timeout} s"
            try:
                topic, body, retained = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            if topic.startswith(topic_prefix):
                return body
            self.held.append((topic, body, retained))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Gate:
    """Publishes scans and statuses as a gate's edge agent would (QoS 1)."""

    def __init__(self, broker: Broker, device_id: str) -> None:
        self.device_id = device_id
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{device_id}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(100)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, event: ScanEvent | bytes, *, topic: str | None = None) -> None:
        body = event if isinstance(event, bytes) else encode(event)
        info = self.client.publish(topic or scan_topic(self.device_id), body, qos=1)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def table_count(engine: Engine, table: object, *where: object) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(table)  # type: ignore[arg-type]
        return int(conn.execute(query.where(*where)).scalar_one())  # type: ignore[arg-type]


@pytest.fixture
def world(engine: Engine, signing_key: SigningKey) -> World:
    return build_world(engine, signing_key)


@pytest.fixture
def keyring_file(tmp_path: Path, keyring: Keyring) -> Path:
    path = tmp_path / "keyring.json"
    keyring.save(path)
    return path


def make_settings(
    engine: Engine, broker: Broker, keyring_file: Path, **extra: object
) -> AggregatorSettings:
    return AggregatorSettings(
        environment="development",
        db_url=url_string(engine.url),
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        client_id=f"agg-test-{uuid.uuid4().hex[:8]}",
        keyring_path=keyring_file,
        poll_interval_s=0.3,
        batch_ms=10,
        fleet_flush_s=0.2,
        **extra,
    )


@pytest.fixture
def service(
    engine: Engine, world: World, mosquitto: Broker, keyring_file: Path
) -> Iterator[AggregatorService]:
    svc = AggregatorService(make_settings(engine, mosquitto, keyring_file))
    svc.start()
    assert svc.consumer.wait_connected(10) and svc.control.wait_connected(10)
    time.sleep(0.3)  # SUBACK for the shared subscription
    yield svc
    svc.stop()


# --- in-process service ------------------------------------------------------------


def test_f0_passage_alerts_answers_the_gate_and_tells_two_wards(
    engine: Engine, world: World, mosquitto: Broker, service: AggregatorService
) -> None:
    gate = GATES[0]
    listener = Listener(mosquitto, verdict_topic(gate), ALL_ALERTS)
    sender = Gate(mosquitto, gate)
    person = world.people["f0"]
    event = world.scan(person.token, device_id=gate)
    sender.send(event)

    verdict = Verdict.model_validate_json(listener.next(verdict_topic(gate)))
    assert (verdict.event_id, verdict.color, verdict.code) == (
        event.event_id,
        Color.RED,
        VerdictCode.F0,
    )
    assert verdict.vaccine_doses == person.doses
    notice = AlertNotice.model_validate_json(listener.next("kd/v1/alerts/"))
    assert (notice.event_id, notice.kind, notice.checkpoint_id, notice.device_id) == (
        event.event_id,
        AlertKind.F0,
        event.checkpoint_id,
        gate,
    )
    with engine.connect() as conn:
        alert = conn.execute(select(alerts.c.id, alerts.c.kind, alerts.c.citizen_id)).one()
        notes = conn.execute(
            select(ward_notifications.c.ward_code, ward_notifications.c.kind).where(
                ward_notifications.c.event_id == event.event_id
            )
        ).all()
    assert (alert.id, alert.kind, alert.citizen_id) == (notice.alert_id, "f0", person.citizen_id)
    assert sorted(n.kind for n in notes) == ["arrival", "departure"]
    assert service.stats()["alerts"] == 1
    listener.close()
    sender.close()


def test_forged_code_gets_its_verdict_and_a_forged_alert(
    world: World, mosquitto: Broker, service: AggregatorService
) -> None:
    gate = GATES[1]
    listener = Listener(mosquitto, verdict_topic(gate), ALL_ALERTS)
    sender = Gate(mosquitto, gate)
    event = world.scan(forge(world.people["an"].token), device_id=gate)
    sender.send(event)
    verdict = Verdict.model_validate_json(listener.next(verdict_topic(gate)))
    assert (verdict.color, verdict.code, verdict.vaccine_doses) == (
        Color.INVALID,
        VerdictCode.FORGED,
        None,
    )
    notice = AlertNotice.model_validate_json(listener.next("kd/v1/alerts/"))
    assert notice.kind is AlertKind.FORGED
    listener.close()
    sender.close()


def test_bad_payload_is_dead_lettered_and_the_stream_goes_on(
    engine: Engine, world: World, mosquitto: Broker, service: AggregatorService
) -> None:
    gate = GATES[0]
    listener = Listener(mosquitto, verdict_topic(gate))
    sender = Gate(mosquitto, gate)
    sender.send(b'{"v": 1, "event_id": "nope"}')
    sender.send(encode(world.scan(world.people["an"].token, device_id=OTHER_GATE)))  # wrong topic
    good = world.scan(world.people["an"].token, device_id=gate)
    sender.send(good)
    verdict = Verdict.model_validate_json(listener.next(verdict_topic(gate)))
    assert (verdict.event_id, verdict.color) == (good.event_id, Color.GREEN)
    assert wait_for(lambda: table_count(engine, dead_letters) == 2)
    with engine.connect() as conn:
        rows = conn.execute(select(dead_letters.c.reason, dead_letters.c.topic)).all()
    assert sorted(r.reason for r in rows) == ["invalid", "topic_mismatch"]
    assert {r.topic for r in rows} == {scan_topic(gate)}
    assert table_count(engine, passages) == 1
    listener.close()
    sender.close()


def test_registry_change_turns_the_next_passage_red_and_raises_the_denylist(
    engine: Engine, world: World, mosquitto: Broker, service: AggregatorService
) -> None:
    gate = GATES[0]
    person = world.people["an"]
    listener = Listener(mosquitto, verdict_topic(gate), REVOCATIONS_TOPIC, KEYRING_TOPIC)
    first = DenyList.model_validate_json(listener.next(REVOCATIONS_TOPIC))
    listed = {e.declaration_id: e.reason for e in first.entries}
    assert listed == {
        world.people["f0"].declaration_id: DenyReason.F0,
        world.people["f0_tam_tru"].declaration_id: DenyReason.F0,
        world.people["f1"].declaration_id: DenyReason.F1,
        world.people["deceased"].declaration_id: DenyReason.DECEASED,
        world.people["revoked"].declaration_id: DenyReason.REVOKED,
    }
    keyring = KeyringFile.model_validate_json(listener.next(KEYRING_TOPIC))
    assert [k.kid for k in keyring.keys] == [world.key.kid]

    sender = Gate(mosquitto, gate)
    sender.send(world.scan(person.token, device_id=gate))
    assert Verdict.model_validate_json(listener.next(verdict_topic(gate))).color is Color.GREEN
    with engine.begin() as conn:
        set_health_status(
            conn, citizen_id=person.citizen_id, status=HealthStatus.F0, at=datetime.now(UTC)
        )
    sender.send(world.scan(person.token, device_id=gate))  # the very next passage
    verdict = Verdict.model_validate_json(listener.next(verdict_topic(gate)))
    assert (verdict.color, verdict.code) == (Color.RED, VerdictCode.F0)
    raised = DenyList.model_validate_json(listener.next(REVOCATIONS_TOPIC))
    assert raised.revision > first.revision
    assert {e.declaration_id: e.reason for e in raised.entries}[person.declaration_id] is (
        DenyReason.F0
    )
    # publish_now (for in-process registry updates) keeps the revision when nothing changed.
    assert service.denylist.publish_now().revision == raised.revision
    listener.close()
    sender.close()


def test_fleet_status_in_memory_and_in_the_store(
    engine: Engine, mosquitto: Broker, service: AggregatorService
) -> None:
    gate = GATES[1]
    sender = Gate(mosquitto, gate)
    ahead = datetime.now(UTC) + timedelta(seconds=45)
    status = DeviceStatus(
        device_id=gate,
        checkpoint_id="cp-phap-van",
        state=DeviceState.ONLINE,
        at=ahead,
        camera=CameraState.OK,
        fps=15,
    )
    sender.send(encode(status), topic=status_topic(gate))
    assert wait_for(lambda: service.fleet.online_count() == 1)
    view = service.fleet.get(gate)
    assert view is not None and view.clock_skew_s is not None
    assert 40 < view.clock_skew_s < 50

    def stored() -> object:
        with engine.connect() as conn:
            return conn.execute(
                select(devices.c.state, devices.c.clock_skew_s, devices.c.last_seen_at).where(
                    devices.c.id == gate
                )
            ).one()

    assert wait_for(lambda: stored().state == "online")  # type: ignore[attr-defined]
    # A status that names another device than its topic is refused.
    sender.send(encode(status), topic=status_topic(GATES[0]))
    assert wait_for(lambda: service.fleet.rejected["topic_mismatch"] == 1)
    sender.send(
        encode(status.model_copy(update={"state": DeviceState.OFFLINE, "at": datetime.now(UTC)})),
        topic=status_topic(gate),
    )
    assert wait_for(lambda: service.fleet.online_count() == 0)
    sender.close()


@pytest.mark.reliability
def test_committed_but_unacknowledged_is_redelivered_and_found_stored(
    *,
    engine: Engine,
    world: World,
    mosquitto: Broker,
    service: AggregatorService,
    monkeypatch: pytest.MonkeyPatch,
    reliability: Reliability,
) -> None:
    # The worst moment to die: after the commit, before the PUBACKs left.
    monkeypatch.setattr(service.consumer, "_ack", lambda batch: None)
    sender = Gate(mosquitto, GATES[0])
    events = [world.scan(p.token) for p in world.people.values()]
    for event in events:
        sender.send(event)
    sender.close()
    assert wait_for(lambda: service.stats()["stored"] == len(events))
    before = side_effect_totals(engine)
    monkeypatch.undo()
    # The broker restarts (persistence on): our session and its unacknowledged
    # messages come back, and are redelivered when the consumer reconnects.
    mosquitto.restart()
    assert wait_for(lambda: service.stats()["duplicates"] == len(events), timeout=60)
    assert side_effect_totals(engine) == before
    assert before["passages"] == len(events)
    reliability(
        scenario=f"{engine.dialect.name}: broker restarted after commit, before the acks",
        sent=len(events),
        stored=before["passages"],
        duplicates=before["passages"] - len(events),
        lost=len(events) - before["passages"],
    )


def test_database_errors_are_retried_without_acknowledging(
    engine: Engine, world: World, mosquitto: Broker, service: AggregatorService
) -> None:
    gate = GATES[0]
    listener = Listener(mosquitto, verdict_topic(gate))
    with engine.begin() as conn:  # a real failure: a table the batch needs is missing
        conn.execute(text("ALTER TABLE ward_notifications RENAME TO ward_notifications_away"))
    sender = Gate(mosquitto, gate)
    events = [world.scan(world.people[n].token, device_id=gate) for n in ("an", "f0", "binh")]
    for event in events:
        sender.send(event)
    assert wait_for(lambda: service.stats()["db_retries"] >= 2)
    assert table_count(engine, passages) == 0  # each attempt rolled back whole
    assert service.stats()["stored"] == 0
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE ward_notifications_away RENAME TO ward_notifications"))
    got = {Verdict.model_validate_json(listener.next(verdict_topic(gate))).event_id for _ in events}
    assert got == {e.event_id for e in events}
    assert table_count(engine, passages) == 3
    assert table_count(engine, ward_notifications) == 6
    listener.close()
    sender.close()


def test_health_readiness_and_metrics(
    world: World, mosquitto: Broker, service: AggregatorService
) -> None:
    sender = Gate(mosquitto, GATES[0])
    sender.send(world.scan(world.people["an"].token))
    assert wait_for(lambda: service.stats()["stored"] == 1)
    with TestClient(create_app(service)) as http:
        assert http.get("/healthz").json() == {"status": "ok", "reasons": []}
        ready = http.get("/readyz")
        assert ready.status_code == 200, ready.json()
        text = http.get("/metrics").text
    assert "kiemdich_ingest_stored_total 1.0" in text
    assert "kiemdich_ingest_batch_size_bucket" in text
    assert "kiemdich_scan_to_verdict_seconds_count 1.0" in text
    assert service.started  # the app did not stop a service it did not start
    sender.close()


def test_readiness_says_why_when_the_broker_is_gone(
    mosquitto: Broker, service: AggregatorService
) -> None:
    mosquitto.stop()
    assert wait_for(lambda: not service.consumer.connected)
    with TestClient(create_app(service)) as http:
        answer = http.get("/readyz")
    assert answer.status_code == 503
    assert any("MQTT" in reason for reason in answer.json()["reasons"])


def test_settings_refuse_demo_secrets_outside_development(tmp_path: Path) -> None:
    common = {"keyring_path": tmp_path / "k.json", "db_url": f"sqlite:///{tmp_path}/x.db"}
    with pytest.raises(ValueError, match="anonymous"):
        AggregatorSettings(**common)
    with pytest.raises(ValueError, match="demo password"):
        AggregatorSettings(mqtt_username="aggregator", mqtt_password="changethis", **common)
    with pytest.raises(ValueError, match="tsdb_token"):
        AggregatorSettings(
            mqtt_username="aggregator",
            mqtt_password="x7-long-random",
            tsdb_url="http://127.0.0.1:8428",
            **common,
        )
    with pytest.raises(ValueError, match="extra"):
        AggregatorSettings(environment="development", bogus=1, **common)
    ok = AggregatorSettings(mqtt_username="aggregator", mqtt_password="x7-long-random", **common)
    assert "x7-long-random" not in repr(ok)
    assert AggregatorSettings(environment="development", **common).mqtt_username is None


# --- subprocesses -------------------------------------------------------------------


class AggregatorProcess:
    """``kiemdich aggregator run`` in a subprocess, with its HTTP port."""

    def __init__(
        self, engine: Engine, broker: Broker, keyring_file: Path, client_id: str, log: Path
    ) -> None:
        self.http_port = free_port()
        self.log = log
        command = [
            sys.executable,
            "-m",
            "aggregator.cli",
            "run",
            "--environment",
            "development",
            "--db",
            url_string(engine.url),
            "--mqtt-host",
            broker.host,
            "--mqtt-port",
            str(broker.port),
            "--client-id",
            client_id,
            "--keyring",
            str(keyring_file),
            "--http-port",
            str(self.http_port),
            "--batch-ms",
            "10",
            "--poll-interval-s",
            "0.5",
            "--log-level",
            "warning",
        ]
        self.process = subprocess.Popen(
            command, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=dict(os.environ)
        )

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def wait_ready(self, timeout: float = 60) -> None:
        ok = wait_for(lambda: self.get("/readyz")[0] == 200, timeout=timeout, interval=0.2)
        assert ok, f"aggregator not ready: {self.log.read_text()[-3000:]}"

    def metric(self, name: str) -> float:
        status, text = self.get("/metrics")
        assert status == 200
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not exported")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def side_effect_totals(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rollup = conn.execute(
            select(func.coalesce(func.sum(checkpoint_minute_rollups.c.passages), 0))
        ).scalar_one()
        distinct_ids = conn.execute(
            select(func.count(func.distinct(passages.c.event_id)))
        ).scalar_one()
        with_notes = conn.execute(
            select(func.count(func.distinct(ward_notifications.c.event_id)))
        ).scalar_one()
    return {
        "passages": table_count(engine, passages),
        "distinct": int(distinct_ids),
        "rollup": int(rollup),
        "notifications": table_count(engine, ward_notifications),
        "passages_notified": int(with_notes),
        "alerts": table_count(engine, alerts),
        "flagged_passages": table_count(
            engine, passages, passages.c.verdict.in_(["red", "invalid"])
        ),
    }


def publish_stream(
    broker: Broker, world: World, n: int, *, pace_s: float, republish_share: float = 0.1
) -> tuple[set[uuid.UUID], int]:
    """Publish ``n`` events from two gates (some published twice, as an edge does after a
    reconnect); returns the distinct event ids and how many messages were sent."""
    rng = random.Random(4)
    gates = [Gate(broker, g) for g in GATES]
    tokens = [p.token for p in world.people.values()]
    sent = 0
    ids: set[uuid.UUID] = set()
    for i in range(n):
        gate = gates[i % 2]
        event = world.scan(rng.choice(tokens), device_id=gate.device_id)
        gate.send(event)
        ids.add(event.event_id)
        sent += 1
        if rng.random() < republish_share:
            gate.send(event)
            sent += 1
        if pace_s:
            time.sleep(pace_s)
    for gate in gates:
        gate.close()
    return ids, sent


def check_exactly_once(engine: Engine, ids: set[uuid.UUID]) -> dict[str, int]:
    totals = side_effect_totals(engine)
    with engine.connect() as conn:
        stored_ids = set(conn.execute(select(passages.c.event_id)).scalars())
    assert stored_ids == ids  # nothing lost, nothing invented
    assert totals["passages"] == totals["distinct"] == len(ids)
    assert totals["rollup"] == len(ids)
    # Every notified passage has exactly its two wards (+1 for the flagged with a residence).
    assert totals["notifications"] >= 2 * totals["passages_notified"]
    assert totals["alerts"] == totals["flagged_passages"]
    return totals


@pytest.mark.slow
@pytest.mark.reliability
def test_sigkill_mid_stream_then_restart_stores_every_event_once(
    *,
    engine: Engine,
    world: World,
    mosquitto: Broker,
    keyring_file: Path,
    tmp_path: Path,
    reliability: Reliability,
) -> None:
    client_id = f"agg-kill-{uuid.uuid4().hex[:6]}"
    first = AggregatorProcess(engine, mosquitto, keyring_file, client_id, tmp_path / "agg1.log")
    first.wait_ready()
    n = 1500
    result: dict[str, object] = {}
    publisher = threading.Thread(
        target=lambda: result.update(
            zip(("ids", "sent"), publish_stream(mosquitto, world, n, pace_s=0.002), strict=True)
        )
    )
    publisher.start()
    assert wait_for(lambda: table_count(engine, passages) >= n // 5, timeout=60)
    first.kill()
    at_kill = table_count(engine, passages)
    publisher.join(120)
    ids: set[uuid.UUID] = result["ids"]  # type: ignore[assignment]
    assert at_kill < len(ids), "the stream ended before the kill; nothing tested"

    restarted = time.monotonic()
    second = AggregatorProcess(engine, mosquitto, keyring_file, client_id, tmp_path / "agg2.log")
    try:
        second.wait_ready()
        assert wait_for(lambda: table_count(engine, passages) >= len(ids), timeout=120)
        recover_s = time.monotonic() - restarted
        assert wait_for(lambda: second.metric("kiemdich_ingest_lag_seconds") == 0, timeout=30)
        totals = check_exactly_once(engine, ids)
        duplicates = second.metric("kiemdich_ingest_duplicates_total")
    finally:
        second.stop()
    # "duplicates" is what the store holds twice (nothing); the redeliveries the
    # restarted process found already stored are the point of the test, not a fault.
    reliability(
        scenario=f"{engine.dialect.name}: aggregator SIGKILLed mid-stream "
        f"(at {at_kill} stored; {duplicates:.0f} redelivered found stored)",
        sent=len(ids),
        stored=totals["passages"],
        duplicates=totals["passages"] - totals["distinct"],
        lost=len(ids) - totals["passages"],
        recover_s=recover_s,
    )


@pytest.mark.slow
@pytest.mark.reliability
@pytest.mark.parametrize("backend", ["postgresql"])
def test_two_aggregators_share_the_stream_without_duplicates(
    *,
    engine: Engine,
    world: World,
    mosquitto: Broker,
    keyring_file: Path,
    tmp_path: Path,
    reliability: Reliability,
) -> None:
    procs = [
        AggregatorProcess(
            engine,
            mosquitto,
            keyring_file,
            f"agg-{i}-{uuid.uuid4().hex[:6]}",
            tmp_path / f"a{i}.log",
        )
        for i in (1, 2)
    ]
    try:
        for proc in procs:
            proc.wait_ready()
        ids, sent = publish_stream(mosquitto, world, 1200, pace_s=0.001)
        assert wait_for(lambda: table_count(engine, passages) >= len(ids), timeout=120)
        assert wait_for(
            lambda: all(p.metric("kiemdich_ingest_lag_seconds") == 0 for p in procs), timeout=30
        )
        totals = check_exactly_once(engine, ids)
        stored = [p.metric("kiemdich_ingest_stored_total") for p in procs]
        duplicates = sum(p.metric("kiemdich_ingest_duplicates_total") for p in procs)
        received = [p.metric("kiemdich_ingest_received_total") for p in procs]
    finally:
        for proc in procs:
            proc.stop()
    assert all(s > 0 for s in stored), f"one aggregator got no work: {stored}"
    assert sum(stored) == len(ids)
    assert sum(received) == sent
    reliability(
        scenario=f"postgresql: two aggregators share the stream "
        f"({stored[0]:.0f} + {stored[1]:.0f} stored; {duplicates:.0f} redelivered found stored)",
        sent=len(ids),
        stored=totals["passages"],
        duplicates=totals["passages"] - totals["distinct"],
        lost=len(ids) - totals["passages"],
    )


def test_cli_validates_the_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aggregator.cli import main

    db = f"sqlite:///{tmp_path}/kd.db"
    assert main(["run", "--validate-config", "--db", db]) == 2  # production, anonymous broker
    assert "anonymous" in capsys.readouterr().err
    monkeypatch.setenv("GATEWAY_SECRET", "s3cret-from-vault")
    argv = ["run", "--validate-config", "--db", db, "--mqtt-username", "aggregator"]
    assert main([*argv, "--mqtt-password-env", "GATEWAY_SECRET"]) == 0
    out = capsys.readouterr().out
    assert "mqtt_username = aggregator" in out
    assert "s3cret-from-vault" not in out
    assert main([*argv, "--mqtt-password-env", "UNSET_VARIABLE_X"]) == 2
    monkeypatch.setenv("KIEMDICH_BATCH_SIZE", "123")
    assert main(["run", "--validate-config", "--environment", "development", "--db", db]) == 0
    assert "batch_size = 123" in capsys.readouterr().out
