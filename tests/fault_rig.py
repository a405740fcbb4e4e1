"""The pieces the fault tests (tests/test_fault_*.py) share: a real gate, a real aggregator.

Not a fixture plugin: each fault test calls these with its own fixtures, as the
ingest tests call :mod:`tests.ingest_world`.

* :func:`pass_tokens`: many distinct, valid passes of the people
  :func:`~tests.ingest_world.build_world` registered (one car, one token: the
  edge merges sightings of the same token within its dedupe window).
* :func:`gate_scenario` / :func:`edge_config`: an :class:`~edge.agent.EdgeAgent`
  for one of the world's gates, fed by the synthetic gate camera.
* :func:`start_aggregator`: the aggregator service, started and subscribed.
* :class:`StatusWatcher`: every :class:`~contract.messages.DeviceStatus` a
  device publishes, as a subscriber on the broker sees it; :class:`Collector`:
  every message on a topic filter.
* :func:`delivery`: sent / stored / duplicates / lost of one gate, from the
  edge's own numbering (the outbox hands out seqs 0, 1, 2, ... and never
  reuses one) against the aggregator's store.
* :class:`ScanStream` / :func:`exactly_once`: plain scan traffic from the
  world's gates where the gate is not what is under test, and the check that
  each event is stored once with its side effects once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, func, select

from aggregator.db.schema import alerts, checkpoint_minute_rollups, passages
from aggregator.service import AggregatorService
from aggregator.settings import AggregatorSettings
from contract.messages import MAX_STATUS_BYTES, DeviceStatus, encode, parse_message
from contract.token import HOUR, issue_token
from contract.topics import scan_topic, status_topic
from edge.agent import EdgeAgent
from edge.config import EdgeConfig
from simulators.gatecam.scene import Camera as SimCamera
from simulators.gatecam.scene import TrafficParams, build_scenario
from tests.fixtures.db import url_string
from tests.ingest_world import CHECKPOINT, GATES, World, wait_for

# Passes of people the registry knows and nothing flags (every verdict is a pass).
CLEAR_PEOPLE = ("an", "binh", "f2", "recovered")


def pass_tokens(world: World, n: int, *, people: tuple[str, ...] = CLEAR_PEOPLE) -> list[str]:
    """``n`` distinct valid passes of ``people``: the same declarations, different end hours."""
    issued = int(time.time()) - HOUR
    tokens = []
    for i in range(n):
        person = world.people[people[i % len(people)]]
        tokens.append(
            issue_token(
                world.key,
                declaration_id=person.declaration_id,
                issued_at=issued,
                expires_at=issued + (24 + i) * HOUR,
            )
        )
    return tokens


def gate_scenario(
    path: Path, tokens: list[str], *, seconds: float, cars_per_minute: float, seed: int = 7
) -> Path:
    """A synthetic gate clip where codes are easy to read (daylight, slow cars, large codes)."""
    params = TrafficParams(
        seconds=seconds,
        seed=seed,
        camera=SimCamera(resolution="720p", fps=15),
        cars_per_minute=cars_per_minute,
        speed_kmh=(12.0, 20.0),
        code_px=(170.0, 230.0),
        glare_share=0.0,
        distractor_share=0.0,
        max_tilt_deg=8.0,
        max_yaw_deg=8.0,
        max_roll_deg=5.0,
        min_gap_m=1.0,
    )
    scenario = build_scenario(params, payloads=tokens)
    path.write_text(scenario.model_dump_json())
    return path


def edge_config(
    workdir: Path,
    *,
    device_id: str,
    mqtt_port: int,
    scenario: Path,
    keyring: Path,
    outbox: dict[str, Any] | None = None,
    status_interval_s: float = 1.0,
    checkpoint_id: str = CHECKPOINT,
    direction: str = "in",
) -> EdgeConfig:
    """The configuration of one gate of the world (camera: the synthetic clip ``scenario``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return EdgeConfig.model_validate(
        {
            "device": {
                "id": device_id,
                "checkpoint_id": checkpoint_id,
                "lane": 0,
                "direction": direction,
            },
            "camera": {
                "source": "synthetic:",
                "realtime": True,
                "synthetic": {"scenario": str(scenario)},
            },
            "verify": {"keyring": str(keyring), "denylist_cache": str(workdir / "deny.json")},
            "mqtt": {
                "host": "127.0.0.1",
                "port": mqtt_port,
                "reconnect_min_delay_s": 1,
                "reconnect_max_delay_s": 2,
            },
            "outbox": {"path": str(workdir / "outbox.sqlite3"), **(outbox or {})},
            "display": {"web": {"enabled": False}},
            "metrics": {"enabled": False},
            "status_interval_s": status_interval_s,
        }
    )


def start_aggregator(
    db_url: str, mqtt_port: int, keyring_file: Path, **extra: Any
) -> AggregatorService:
    """The aggregator on ``db_url`` and the broker at ``mqtt_port``, started and subscribed."""
    settings: dict[str, Any] = {
        "environment": "development",
        "db_url": db_url,
        "mqtt_host": "127.0.0.1",
        "mqtt_port": mqtt_port,
        "client_id": f"agg-fault-{uuid.uuid4().hex[:8]}",
        "keyring_path": keyring_file,
        "poll_interval_s": 0.5,
        "batch_ms": 10,
        "fleet_flush_s": 0.2,
        **extra,
    }
    service = AggregatorService(AggregatorSettings(**settings))
    service.start()
    if not (service.consumer.wait_connected(20) and service.control.wait_connected(20)):
        service.stop()
        raise AssertionError("the aggregator did not connect to the broker")
    time.sleep(0.3)  # SUBACK of the shared subscription
    return service


def engine_url(engine: Engine) -> str:
    """The URL of ``engine`` as text, password included (for the service's settings)."""
    return url_string(engine.url)


def stored_seqs(engine: Engine, device_id: str) -> list[int]:
    """The seqs of ``device_id``'s passages in the store (one per row, duplicates kept)."""
    with engine.connect() as conn:
        rows = conn.execute(select(passages.c.seq).where(passages.c.device_id == device_id))
        return [int(r[0]) for r in rows]


def passage_count(engine: Engine) -> int:
    """Passages in the store."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(passages)).scalar_one())


@dataclass(frozen=True, slots=True)
class Delivery:
    """One gate's events: what the edge numbered against what the aggregator stored."""

    sent: int
    stored: int
    duplicates: int
    lost: int
    missing: list[int]


def delivery(engine: Engine, agent: EdgeAgent, *, duplicates: int) -> Delivery:
    """Sent (seqs the outbox handed out) against stored; ``duplicates``: copies the
    aggregator received and found already stored (its ``duplicates`` counter)."""
    assert agent.outbox is not None
    sent = agent.outbox.stats().enqueued
    seqs = stored_seqs(engine, agent.config.device.id)
    assert len(seqs) == len(set(seqs)), "a seq stored twice: the same event under two ids"
    missing = sorted(set(range(sent)) - set(seqs))
    return Delivery(sent, len(seqs), duplicates, len(missing), missing)


class StatusWatcher:
    """Every status message of one device, as a plain subscriber receives it."""

    def __init__(self, port: int, device_id: str) -> None:
        self.statuses: list[tuple[DeviceStatus, bool]] = []  # (status, retained)
        self.rejected: list[bytes] = []  # payloads that are not a valid DeviceStatus
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"watch-{device_id}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        subscribed = threading.Event()
        topic = status_topic(device_id)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK for the status topic"

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        parsed = parse_message(DeviceStatus, msg.payload, max_bytes=MAX_STATUS_BYTES)
        with self._lock:
            if isinstance(parsed, DeviceStatus):
                self.statuses.append((parsed, bool(msg.retain)))
            else:
                self.rejected.append(msg.payload)

    def mark(self) -> int:
        """A position in the stream: ``wait_for(..., after=mark)`` looks only at what follows."""
        with self._lock:
            return len(self.statuses)

    def wait_for(
        self, predicate: Callable[[DeviceStatus], bool], *, after: int = 0, timeout: float = 20.0
    ) -> DeviceStatus | None:
        """The first live (not a retained replay) status after ``after`` for which
        ``predicate`` holds, waiting up to ``timeout`` s; None if none came."""
        found: list[DeviceStatus] = []
        start = after

        def seen() -> bool:
            nonlocal start
            with self._lock:
                new = self.statuses[start:]
                start = len(self.statuses)
            found.extend(s for s, retained in new if not retained and predicate(s))
            return bool(found)

        wait_for(seen, timeout=timeout)
        return found[0] if found else None

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()


class ScanStream:
    """Scans published at a steady pace from the world's two gates (QoS 1), in a thread.

    Stands for the gates' traffic where the gate itself is not under test.
    ``ids`` are the event ids published (each once).
    """

    def __init__(self, port: int, world: World, n: int, *, pace_s: float) -> None:
        self.world = world
        self.n = n
        self.pace_s = pace_s
        self.ids: list[uuid.UUID] = []
        self.error: Exception | None = None
        self._clients: list[tuple[str, mqtt.Client]] = []
        for gate in GATES:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=f"{gate}-{uuid.uuid4().hex[:6]}",
                protocol=mqtt.MQTTv5,
            )
            client.max_inflight_messages_set(100)
            client.connect("127.0.0.1", port)
            client.loop_start()
            self._clients.append((gate, client))
        self._thread = threading.Thread(target=self._run, name="scan-stream", daemon=True)

    def start(self) -> ScanStream:
        """Start publishing."""
        self._thread.start()
        return self

    def _run(self) -> None:
        tokens = [p.token for p in self.world.people.values()]
        try:
            for i in range(self.n):
                gate, client = self._clients[i % len(self._clients)]
                event = self.world.scan(tokens[i % len(tokens)], device_id=gate)
                client.publish(scan_topic(gate), encode(event), qos=1).wait_for_publish(30)
                self.ids.append(event.event_id)
                time.sleep(self.pace_s)
        except Exception as exc:  # noqa: BLE001 - the test sees it in join()
            self.error = exc

    def join(self, timeout: float = 120.0) -> list[uuid.UUID]:
        """Wait for the last PUBACK; the ids published."""
        self._thread.join(timeout)
        for _, client in self._clients:
            client.loop_stop()
            client.disconnect()
        assert not self._thread.is_alive(), "the scan stream did not finish"
        if self.error is not None:
            raise self.error
        return list(self.ids)


def exactly_once(engine: Engine, ids: list[uuid.UUID]) -> dict[str, int]:
    """Check every id is stored once with its side effects once; returns the totals."""
    with engine.connect() as conn:
        stored = list(conn.execute(select(passages.c.event_id)).scalars())
        rollup = conn.execute(
            select(func.coalesce(func.sum(checkpoint_minute_rollups.c.passages), 0))
        ).scalar_one()
        alert_rows = conn.execute(select(func.count()).select_from(alerts)).scalar_one()
        flagged = conn.execute(
            select(func.count())
            .select_from(passages)
            .where(passages.c.verdict.in_(["red", "invalid"]))
        ).scalar_one()
    assert len(stored) == len(set(stored)), "an event stored twice"
    missing = set(ids) - set(stored)
    assert not missing, f"{len(missing)} events never stored"
    assert set(stored) == set(ids), "a passage nobody sent"
    assert int(rollup) == len(ids), "minute rollups count a passage twice or not at all"
    assert int(alert_rows) == int(flagged), "an alert raised twice or not at all"
    return {"passages": len(stored), "rollup": int(rollup), "alerts": int(alert_rows)}


class Collector:
    """Every message a plain subscriber receives on ``topic`` (a filter), as (topic, payload)."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"collect-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), f"no SUBACK for {topic}"

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def snapshot(self) -> list[tuple[str, bytes]]:
        """What arrived so far."""
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()
