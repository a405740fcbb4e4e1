"""The whole edge agent: synthetic camera → vision → offline verdict → outbox → mosquitto."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract.messages import (
    MAX_SCAN_BYTES,
    Color,
    DenyEntry,
    DenyList,
    DenyReason,
    ScanEvent,
    Verdict,
    VerdictCode,
    encode,
    parse_message,
)
from contract.token import Keyring
from contract.topics import REVOCATIONS_TOPIC, scan_topic, verdict_topic
from edge.agent import EdgeAgent
from edge.config import load_config
from edge.display import Phase
from edge.outbox import Outbox, OutboxConfig
from simulators.gatecam.scene import Camera as SimCamera
from simulators.gatecam.scene import Scenario, TrafficParams, build_scenario, ground_truth
from tests.fixtures.mqtt import Broker

DEVICE = "hn-test-cam-1"
CHECKPOINT = "hn-test"
ROOT = Path(__file__).resolve().parent.parent


def scenario_file(tmp_path: Path, tokens: list[str], *, seconds: float = 14.0) -> Path:
    """A clip where every car is easy to read: daylight, slow, large codes, no glare."""
    params = TrafficParams(
        seconds=seconds,
        seed=11,
        camera=SimCamera(resolution="720p", fps=15),
        cars_per_minute=24,
        speed_kmh=(10.0, 20.0),
        code_px=(170.0, 230.0),
        glare_share=0.0,
        distractor_share=0.5,
        max_tilt_deg=10.0,
        max_yaw_deg=10.0,
        max_roll_deg=5.0,
    )
    scenario = build_scenario(params, payloads=tokens)
    path = tmp_path / "scenario.json"
    path.write_text(scenario.model_dump_json())
    return path


def write_config(tmp_path: Path, broker: Broker, scenario: Path, keyring: Keyring) -> Path:
    keyring_path = tmp_path / "keyring.json"
    keyring.save(keyring_path)
    config = tmp_path / "gate.yaml"
    config.write_text(
        f"""
device: {{id: {DEVICE}, checkpoint_id: {CHECKPOINT}, lane: 1, direction: in}}
camera:
  source: "synthetic:"
  realtime: true
  synthetic: {{scenario: {scenario}}}
verify: {{keyring: {keyring_path}, denylist_cache: {tmp_path}/deny.json}}
mqtt:
  {{host: {broker.host}, port: {broker.port}, reconnect_min_delay_s: 1, reconnect_max_delay_s: 2}}
outbox: {{path: {tmp_path}/outbox.sqlite3}}
display: {{web: {{port: 0}}}}
metrics: {{host: 127.0.0.1, port: 0}}
status_interval_s: 1
"""
    )
    return config


class ScanCollector:
    """A subscriber that records every scan payload the broker delivers."""

    def __init__(self, broker: Broker) -> None:
        self.events: list[ScanEvent] = []
        self.rejected: list[bytes] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(scan_topic(DEVICE), qos=1)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        parsed = parse_message(ScanEvent, msg.payload, max_bytes=MAX_SCAN_BYTES)
        with self._lock:
            if isinstance(parsed, ScanEvent):
                self.events.append(parsed)
            else:
                self.rejected.append(msg.payload)

    def wait_for(self, predicate: Callable[[list[ScanEvent]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(list(self.events)):
                    return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publish_retained(broker: Broker, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


@pytest.mark.slow
def test_agent_publishes_each_car_once_with_offline_verdicts(
    tmp_path: Path,
    mosquitto: Broker,
    make_token: Callable[..., str],
    keyring: Keyring,
    figures: Callable[[str], None],
) -> None:
    tokens = [make_token(declaration_id=1000 + i) for i in range(12)]
    scenario = scenario_file(tmp_path, tokens)
    truth = ground_truth(Scenario.model_validate_json(scenario.read_text()))
    # Cars whose code is wholly visible for a few frames; the clip may cut the last ones off.
    shown = [car.token.payload for car in truth if car.token and car.token.visible_frames >= 5]
    assert len(shown) >= 3, "the scenario must put several cars through"
    flagged = shown[-1]
    flagged_id = 1000 + tokens.index(flagged)
    deny = DenyList(
        revision=1,
        issued_at=datetime.now(UTC),
        entries=[DenyEntry(declaration_id=flagged_id, reason=DenyReason.F0)],
    )
    publish_retained(mosquitto, REVOCATIONS_TOPIC, encode(deny))
    collector = ScanCollector(mosquitto)
    agent = EdgeAgent(load_config(write_config(tmp_path, mosquitto, scenario, keyring)))
    agent.start()
    try:
        got_all = collector.wait_for(
            lambda events: {e.token for e in events} >= set(shown), timeout=60
        )
        # Answer the last car as the aggregator would; the gate shows it at once.
        last = collector.events[-1]
        verdict = Verdict(
            event_id=last.event_id,
            device_id=DEVICE,
            color=Color.GREEN,
            code=VerdictCode.CLEAR,
            vaccine_doses=2,
            decided_at=datetime.now(UTC),
        )
        publish_retained_off = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        publish_retained_off.connect(mosquitto.host, mosquitto.port)
        publish_retained_off.loop_start()
        publish_retained_off.publish(
            verdict_topic(DEVICE), encode(verdict), qos=1
        ).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and agent.display.state().phase is not Phase.FINAL:
            time.sleep(0.05)
        final_phase = agent.display.state().phase
        publish_retained_off.loop_stop()
        publish_retained_off.disconnect()
        time.sleep(1.5)  # a late duplicate would arrive now
        status = agent.status()
    finally:
        agent.stop()
        collector.close()

    per_token = Counter(e.token for e in collector.events)
    figures(
        f"{len(shown)} cars shown, {len(per_token)} passages published, "
        f"{sum(per_token.values()) - len(per_token)} duplicates, "
        f"local verdict p99 {max(agent.local_verdict_ms()):.0f} ms"
    )
    assert got_all, f"missing: {set(shown) - set(per_token)}"
    assert all(count == 1 for count in per_token.values()), per_token
    assert set(per_token) == set(shown)  # distractor stickers never become passages
    assert not collector.rejected
    by_token = {e.token: e for e in collector.events}
    assert by_token[flagged].local_verdict is not None
    assert by_token[flagged].local_verdict.color is Color.RED
    assert by_token[flagged].local_verdict.code is VerdictCode.F0
    for token in set(shown) - {flagged}:
        assert by_token[token].local_verdict.code is VerdictCode.OFFLINE_VALID
    seqs = sorted(e.seq for e in collector.events)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gaps
    assert all(e.crop_jpeg and e.crop_jpeg[:2] == b"\xff\xd8" for e in collector.events)
    assert final_phase is Phase.FINAL
    assert status.denylist_revision == 1
    assert status.ignored_codes and status.ignored_codes > 0  # the URL stickers
    assert status.passages == len(shown)
    assert max(agent.local_verdict_ms()) < 300, "local verdict within 300 ms of the frame"


def _outbox_items(path: Path) -> list[ScanEvent]:
    box = Outbox(OutboxConfig(path=path))
    try:
        items = box.pending(10_000)
    finally:
        box.close()
    events = [parse_message(ScanEvent, item.payload, max_bytes=MAX_SCAN_BYTES) for item in items]
    assert all(isinstance(e, ScanEvent) for e in events)
    return events  # type: ignore[return-value]


@pytest.mark.slow
@pytest.mark.reliability
def test_agent_killed_with_broker_down_loses_nothing(
    tmp_path: Path,
    mosquitto: Broker,
    make_token: Callable[..., str],
    keyring: Keyring,
    reliability: Callable[..., None],
) -> None:
    tokens = [make_token(declaration_id=2000 + i) for i in range(12)]
    scenario = scenario_file(tmp_path, tokens, seconds=10.0)
    config = write_config(tmp_path, mosquitto, scenario, keyring)
    mosquitto.stop()  # the gate works offline: every passage must wait in the outbox
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "kiemdich.cli", "edge", "--config", str(config)]
    agent = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    outbox_path = tmp_path / "outbox.sqlite3"
    deadline = time.monotonic() + 60
    stored: list[ScanEvent] = []
    while time.monotonic() < deadline and len(stored) < 3:
        time.sleep(1.0)
        if outbox_path.exists():
            stored = _outbox_items(outbox_path)
    agent.send_signal(signal.SIGKILL)
    agent.wait(10)
    stored = _outbox_items(outbox_path)
    assert len(stored) >= 3, agent.stderr.read().decode()[-2000:] if agent.stderr else ""

    mosquitto.restart()
    collector = ScanCollector(mosquitto)
    # Restart the agent on the same outbox; it drains the backlog first.
    again = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    restarted = time.monotonic()
    try:
        delivered = collector.wait_for(
            lambda events: {e.event_id for e in events} >= {e.event_id for e in stored},
            timeout=30,
        )
        recover_s = time.monotonic() - restarted
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(20)
        collector.close()
    got = {e.event_id for e in collector.events}
    lost = {e.event_id for e in stored} - got
    reliability(
        scenario="edge agent SIGKILLed while the broker was down, both back",
        sent=len(stored),
        stored=len(stored) - len(lost),
        duplicates=len(collector.events) - len(got),
        lost=len(lost),
        recover_s=recover_s,
    )
    assert delivered and not lost


def test_keyring_message_rewrites_the_file_only_when_it_adds_keys(
    tmp_path: Path, mosquitto: Broker, make_token: Callable[..., str], keyring: Keyring
) -> None:
    from contract.token import KeyringFile
    from contract.vectors import vector_key

    scenario = scenario_file(tmp_path, [make_token() for _ in range(12)], seconds=2.0)
    agent = EdgeAgent(load_config(write_config(tmp_path, mosquitto, scenario, keyring)))
    path = tmp_path / "keyring.json"
    before = path.stat().st_mtime_ns
    time.sleep(0.01)
    agent._on_keyring(KeyringFile(keys=keyring.entries()))  # the same keys again
    assert path.stat().st_mtime_ns == before
    agent._on_keyring(KeyringFile(keys=[vector_key(2).public()]))  # a rotation
    assert len(Keyring.load(path)) == 2
