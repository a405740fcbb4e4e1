"""The consumer's threads through a real mosquitto, on real SQLite and PostgreSQL.

With small batches several are in flight at once (one being prepared, one in
the database, one being answered); whatever the interleaving, every message
is acknowledged after its passage is committed, and in the order received.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Sequence

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, func, select

from aggregator.db.schema import passages
from aggregator.ingest.consumer import ConsumerConfig, IngestConsumer
from aggregator.ingest.link import Delivery, ProcessLink
from aggregator.ingest.metrics import IngestMetrics
from aggregator.ingest.mqtt import MqttOptions
from aggregator.ingest.pipeline import IngestPipeline
from aggregator.ingest.tokens import TokenVerifier
from aggregator.timeseries import TimeSeriesWriter
from contract.messages import Verdict, encode
from contract.token import Keyring, SigningKey
from contract.topics import scan_topic, verdict_topic
from tests.conftest import Reliability
from tests.fixtures.mqtt import Broker
from tests.ingest_world import GATES, World, build_world, wait_for


@pytest.fixture
def world(engine: Engine, signing_key: SigningKey) -> World:
    return build_world(engine, signing_key)


@pytest.mark.parametrize("mqtt_process", [True, False], ids=["child-process", "in-process"])
def test_acknowledged_after_commit_in_the_order_received(
    engine: Engine, world: World, keyring: Keyring, mosquitto: Broker, mqtt_process: bool
) -> None:
    consumer = IngestConsumer(
        MqttOptions(mosquitto.host, mosquitto.port),
        ConsumerConfig(
            client_id=f"agg-{uuid.uuid4().hex[:8]}",
            batch_size=4,
            batch_ms=2,
            mqtt_process=mqtt_process,
        ),
        IngestPipeline(engine, TokenVerifier(keyring)),
        metrics=IngestMetrics(),
        timeseries=TimeSeriesWriter(None),
    )
    lock = threading.Lock()
    received: list[uuid.UUID] = []
    acked: list[uuid.UUID] = []
    uncommitted_at_ack: list[uuid.UUID] = []
    real_put = consumer._inbox.put
    real_ack = consumer._ack

    def put(message: Delivery) -> None:
        with lock:
            received.append(uuid.UUID(json.loads(message.payload)["event_id"]))
        real_put(message)

    def ack(batch: Sequence[Delivery]) -> None:
        ids = [uuid.UUID(json.loads(m.payload)["event_id"]) for m in batch]
        with engine.connect() as conn:
            stored = set(
                conn.execute(select(passages.c.event_id).where(passages.c.event_id.in_(ids)))
                .scalars()
                .all()
            )
        with lock:
            acked.extend(ids)
            uncommitted_at_ack.extend(i for i in ids if i not in stored)
        real_ack(batch)

    consumer._inbox.put = put  # type: ignore[method-assign]
    consumer._ack = ack  # type: ignore[method-assign]
    verdicts: list[Verdict] = []
    gate = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gate", protocol=mqtt.MQTTv5)
    subscribed = threading.Event()
    gate.on_connect = lambda c, *_: c.subscribe(verdict_topic(GATES[0]), qos=1)
    gate.on_subscribe = lambda *_: subscribed.set()
    gate.on_message = lambda _c, _u, m: verdicts.append(Verdict.model_validate_json(m.payload))
    gate.max_inflight_messages_set(100)
    gate.connect(mosquitto.host, mosquitto.port)
    gate.loop_start()
    consumer.start()
    try:
        assert consumer.wait_connected(20)
        assert subscribed.wait(10)
        tokens = [p.token for p in world.people.values()]
        events = [world.scan(tokens[i % len(tokens)], device_id=GATES[0]) for i in range(60)]
        infos = [gate.publish(scan_topic(GATES[0]), encode(e), qos=1) for e in events]
        for info in infos:
            info.wait_for_publish(10)
        assert wait_for(lambda: consumer.stats()["stored"] == len(events), timeout=60)
        assert wait_for(lambda: len(acked) == len(events), timeout=30)
        assert wait_for(lambda: len(verdicts) == len(events), timeout=30)
    finally:
        consumer.stop()
        gate.loop_stop()
        gate.disconnect()
    stats = consumer.stats()
    assert stats["batches"] > 1  # several batches were in flight
    assert received == [e.event_id for e in events]
    assert acked == received
    assert uncommitted_at_ack == []
    assert {v.event_id for v in verdicts} == {e.event_id for e in events}
    assert stats["verdicts_sent"] == len(events)


@pytest.mark.reliability
def test_a_killed_mqtt_child_is_replaced_and_nothing_is_lost(
    engine: Engine,
    world: World,
    keyring: Keyring,
    mosquitto: Broker,
    reliability: Reliability,
) -> None:
    consumer = IngestConsumer(
        MqttOptions(mosquitto.host, mosquitto.port),
        ConsumerConfig(client_id=f"agg-{uuid.uuid4().hex[:8]}", batch_size=8, batch_ms=2),
        IngestPipeline(engine, TokenVerifier(keyring)),
        metrics=IngestMetrics(),
        timeseries=TimeSeriesWriter(None),
    )
    link = consumer._link
    assert isinstance(link, ProcessLink)
    gate = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gate-k", protocol=mqtt.MQTTv5)
    gate.max_inflight_messages_set(100)
    gate.connect(mosquitto.host, mosquitto.port)
    gate.loop_start()
    consumer.start()
    tokens = [p.token for p in world.people.values()]
    events = [world.scan(tokens[i % len(tokens)], device_id=GATES[i % 2]) for i in range(400)]

    def publish() -> None:
        for e in events:
            gate.publish(scan_topic(e.device_id), encode(e), qos=1).wait_for_publish(10)
            time.sleep(0.002)

    publisher = threading.Thread(target=publish)
    try:
        assert consumer.wait_connected(20)
        first = link.child_pid
        assert first is not None
        publisher.start()
        assert wait_for(lambda: consumer.stats()["stored"] >= 60, timeout=60)
        os.kill(first, signal.SIGKILL)
        killed = time.monotonic()
        at_kill = consumer.stats()["stored"]
        publisher.join(120)
        assert wait_for(lambda: link.child_pid not in (None, first), timeout=30)
        assert consumer.wait_connected(30)
        recover_s = time.monotonic() - killed

        def stored_count() -> int:
            with engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(passages)).scalar_one())

        assert wait_for(lambda: stored_count() == len(events), timeout=120)
        assert wait_for(lambda: consumer.lag_s() == 0, timeout=60)
        with engine.connect() as conn:
            stored = conn.execute(select(passages.c.event_id)).scalars().all()
    finally:
        consumer.stop()
        gate.loop_stop()
        gate.disconnect()
    stats = consumer.stats()
    distinct = set(stored)
    reliability(
        scenario=f"{engine.dialect.name}: aggregator's MQTT child SIGKILLed "
        f"(at {at_kill} stored; {stats['duplicates']} redelivered found stored)",
        sent=len(events),
        stored=len(stored),
        duplicates=len(stored) - len(distinct),
        lost=len({e.event_id for e in events} - distinct),
        recover_s=recover_s,
    )
    assert sorted(stored) == sorted(e.event_id for e in events)  # each once, none lost
