"""The city simulator: Hà Nội's catalogue, the traffic model, and real brokers."""

from __future__ import annotations

import json
import queue
import re
import shutil
import socket
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine

from aggregator.broker import write_broker_files
from aggregator.db.engine import make_engine
from aggregator.db.fleet import check_device_password, list_checkpoints, list_devices
from aggregator.db.wards import get_ward
from contract.messages import (
    MAX_SCAN_BYTES,
    MAX_STATUS_BYTES,
    DeviceState,
    DeviceStatus,
    Rejected,
    ScanEvent,
    parse_message,
)
from contract.token import Keyring, Reason, verify_token
from contract.topics import ALL_SCANS, ALL_STATUS, DEVICE_ID_PATTERN, Kind, parse_device_topic
from simulators.city import (
    CityConfig,
    CityError,
    CityLayout,
    TokenKind,
    TokenPools,
    TrafficModel,
    build_layout,
    ensure_credentials,
    load_token_pools,
    register_city,
    run_city,
)
from simulators.hanoi_gates import HANOI_GATES, HANOI_PROVINCE_CODE
from simulators.population import PopulationConfig, build_population
from tests.fixtures.db import url_string
from tests.fixtures.mqtt import Broker, BrokerFactory, free_port

# 2026-03-02 00:00 in Hà Nội (UTC+7): a simulated day starts at local midnight.
MIDNIGHT_HN = datetime(2026, 3, 1, 17, 0, tzinfo=UTC).timestamp()
TOKEN_NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC).timestamp()
# Runs over a live broker start their simulated clock at 08:00 in Hà Nội: from
# the wall clock, a run at night would see a tenth of the traffic.
MORNING_HN = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Population:
    dir: Path
    db_url: str
    flagged_ids: frozenset[int]
    keyring: Keyring


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Population:
    """A small registry (many flagged people) with its tokens.csv and keys."""
    root = tmp_path_factory.mktemp("population")
    db_url = f"sqlite:///{root / 'registry.db'}"
    build_population(
        PopulationConfig(
            citizens=600,
            db_url=db_url,
            seed=5,
            out=root / "sim",
            f0_share=0.05,
            f1_share=0.05,
            as_of=datetime(2026, 3, 1, tzinfo=UTC),
        ),
        progress=False,
    )
    pools = load_token_pools(root / "sim", sample=10_000, seed=0)
    return Population(
        dir=root / "sim",
        db_url=db_url,
        flagged_ids=frozenset(d for d, _ in pools.flagged),
        keyring=Keyring.load(root / "sim" / "keyring.json"),
    )


def _model(
    population: Population, *, seed: int = 1, speedup: float = 1.0, rate: float = 200.0, **kw: float
) -> TrafficModel:
    config = CityConfig(seed=seed, speedup=speedup, rate=rate, population_dir=population.dir, **kw)
    layout = build_layout(config.gates, seed=seed)
    pools = load_token_pools(population.dir, sample=config.token_sample, seed=seed)
    return TrafficModel(layout, pools, config, sim_start=MIDNIGHT_HN, token_now=TOKEN_NOW)


# --- the catalogue -----------------------------------------------------------------


def test_catalogue_has_45_hanoi_camera_checkpoints_with_real_wards(population: Population) -> None:
    assert len(HANOI_GATES) == 45
    ids = [g.checkpoint_id for g in HANOI_GATES]
    assert len(set(ids)) == 45
    engine = make_engine(population.db_url)
    with engine.connect() as conn:
        for gate in HANOI_GATES:
            ward = get_ward(conn, code=gate.ward_code)
            assert ward is not None, gate.slug
            assert ward.province_code == HANOI_PROVINCE_CODE, gate.slug
            assert ward.name == gate.ward_name, gate.slug
            # Within Hà Nội's bounding box.
            assert 20.5 < gate.lat < 21.45 and 105.25 < gate.lon < 106.05, gate.slug
            assert gate.lanes_in >= 1 and gate.lanes_out >= 1
    engine.dispose()
    roads = {g.road for g in HANOI_GATES}
    assert {"QL1A", "QL5", "QL3", "QL2", "QL32", "QL6", "QL21B", "QL18", "QL23"} <= roads


def test_layout_devices_one_per_lane() -> None:
    layout = build_layout(45)
    assert layout.devices[0].id == "hn-ql1a-phapvan-in-1"
    ids = [d.id for d in layout.devices]
    assert len(set(ids)) == len(ids) == sum(g.lanes_in + g.lanes_out for g in HANOI_GATES)
    pattern = re.compile(DEVICE_ID_PATTERN)
    for device in layout.devices:
        assert pattern.match(device.id) and device.id.startswith(device.checkpoint_id + "-")
        assert f"-{device.direction.value}-" in device.id
    # Lanes are numbered per checkpoint without repeats.
    lanes = defaultdict(list)
    for device in layout.devices:
        lanes[device.checkpoint_id].append(device.lane)
    assert all(sorted(v) == list(range(len(v))) for v in lanes.values())


def test_layout_scales_past_the_catalogue() -> None:
    layout = build_layout(10_000)
    assert len(layout.gates) == 10_000
    assert len({g.checkpoint_id for g in layout.gates}) == 10_000
    assert layout.gates[45].checkpoint_id == "hn-sim-00046"
    assert {g.ward_code for g in layout.gates} <= {g.ward_code for g in HANOI_GATES}


# --- the traffic model --------------------------------------------------------------


def test_rush_hours_carry_more_traffic_and_flow_one_way(population: Population) -> None:
    # One simulated day in 60 wall seconds.
    model = _model(population, speedup=1440, rate=300)
    scans = list(model.scans(60.0))
    hours = ((MIDNIGHT_HN + np.array([s.at_s for s in scans]) * 1440 + 7 * 3600) % 86400) // 3600
    per_hour = np.bincount(hours.astype(int), minlength=24)
    night = per_hour[1:5].mean()
    morning = per_hour[7:9].mean()
    evening = per_hour[17:19].mean()
    assert morning > 3 * night
    assert evening > 3 * night
    # The daily mean is --rate (Poisson noise aside).
    assert abs(len(scans) / 60.0 - 300) < 0.1 * 300
    layout = model.layout
    inbound = defaultdict(list)
    for scan, hour in zip(scans, hours, strict=True):
        inbound[int(hour)].append(layout.devices[scan.device].direction.value == "in")
    assert np.mean(inbound[7] + inbound[8]) > 0.6
    assert np.mean(inbound[17] + inbound[18]) < 0.4


def test_same_seed_same_traffic(population: Population) -> None:
    a = list(_model(population, seed=3).scans(5.0))
    b = list(_model(population, seed=3).scans(5.0))
    c = list(_model(population, seed=4).scans(5.0))
    assert a == b
    assert len(a) > 100
    assert a != c
    kw = {"dropout_per_hour": 5.0}
    outages_a = _model(population, seed=3, speedup=60, **kw).outages(30.0)
    assert outages_a == _model(population, seed=3, speedup=60, **kw).outages(30.0)
    assert outages_a


def test_codes_are_what_they_claim(population: Population) -> None:
    model = _model(
        population,
        rate=2000,
        flagged_share=0.1,
        forged_share=0.05,
        expired_share=0.05,
        garbage_share=0.05,
    )
    scans = list(model.scans(5.0))
    kinds = Counter(s.kind for s in scans)
    assert set(kinds) == set(TokenKind)
    assert abs(kinds[TokenKind.FLAGGED] / len(scans) - 0.1) < 0.03
    expected = {
        TokenKind.CLEAR: {Reason.OK},
        TokenKind.FLAGGED: {Reason.OK},
        TokenKind.FORGED: {Reason.BAD_SIGNATURE},
        TokenKind.EXPIRED: {Reason.EXPIRED},
    }
    for scan in scans:
        verification = verify_token(scan.token, population.keyring, now=int(TOKEN_NOW))
        if scan.kind is TokenKind.GARBAGE:
            assert not verification.ok
            continue
        assert verification.reason in expected[scan.kind], (scan.kind, verification)
        assert verification.claims is not None
        flagged = verification.claims.declaration_id in population.flagged_ids
        if scan.kind is TokenKind.FLAGGED:
            assert flagged
        if scan.kind is TokenKind.CLEAR:
            assert not flagged


def test_missing_population_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CityError, match="sim population"):
        load_token_pools(tmp_path, sample=10, seed=0)


def test_pools_without_flagged_people_fall_back_to_clear(population: Population) -> None:
    pools = load_token_pools(population.dir, sample=100, seed=0)
    bare = TokenPools(pools.clear, (), pools.kid, None)
    config = CityConfig(population_dir=population.dir, flagged_share=0.2, expired_share=0.2)
    model = TrafficModel(build_layout(3), bare, config, sim_start=MIDNIGHT_HN, token_now=TOKEN_NOW)
    assert TokenKind.FLAGGED not in model.kinds and TokenKind.EXPIRED not in model.kinds
    assert {s.kind for s in model.scans(5.0)} <= {
        TokenKind.CLEAR,
        TokenKind.FORGED,
        TokenKind.GARBAGE,
    }


# --- registration -------------------------------------------------------------------


def test_registration_is_idempotent(engine: Engine, tmp_path: Path) -> None:
    layout = build_layout(3)
    passwords = ensure_credentials(layout, tmp_path)
    assert (tmp_path / "credentials.json").stat().st_mode & 0o077 == 0
    url = url_string(engine.url)
    assert register_city(url, layout, passwords) == len(layout.devices)
    assert register_city(url, layout, ensure_credentials(layout, tmp_path)) == 0
    with engine.connect() as conn:
        assert [c.id for c in list_checkpoints(conn)] == sorted(
            g.checkpoint_id for g in layout.gates
        )
        devices = list_devices(conn)
        assert sorted(d.id for d in devices) == sorted(d.id for d in layout.devices)
        first = layout.devices[0].id
        assert check_device_password(conn, device_id=first, password=passwords[first])
        assert not check_device_password(conn, device_id=first, password="guess")


# --- against a real broker ----------------------------------------------------------


class Collector:
    """A subscriber on every scan and status topic; callbacks only enqueue."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None):
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.ready: queue.Queue[int] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, _u, _f, rc, _p: c.subscribe(
            [(ALL_SCANS, 1), (ALL_STATUS, 1)]
        )
        self.client.on_subscribe = lambda _c, _u, _m, rcs, _p: self.ready.put(len(rcs))
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.get(timeout=10) == 2

    def drain(self, quiet_s: float = 1.0) -> list[tuple[str, bytes]]:
        """Everything received until the topic goes quiet."""
        out = []
        while True:
            try:
                out.append(self.messages.get(timeout=quiet_s))
            except queue.Empty:
                return out

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def _check_traffic(
    messages: list[tuple[str, bytes]], layout: CityLayout, planned: int
) -> dict[str, list[DeviceState]]:
    """Every scan is a valid ScanEvent from its own topic; returns statuses per device."""
    devices = {d.id: d for d in layout.devices}
    seqs: dict[str, set[int]] = defaultdict(set)
    event_ids = set()
    states: dict[str, list[DeviceState]] = defaultdict(list)
    for topic, payload in messages:
        parsed = parse_device_topic(topic)
        assert parsed is not None, topic
        if parsed.kind is Kind.STATUS:
            status = parse_message(DeviceStatus, payload, max_bytes=MAX_STATUS_BYTES)
            assert not isinstance(status, Rejected), status
            assert status.device_id == parsed.device_id
            states[status.device_id].append(status.state)
            continue
        event = parse_message(ScanEvent, payload, max_bytes=MAX_SCAN_BYTES)
        assert not isinstance(event, Rejected), event
        assert event.device_id == parsed.device_id
        device = devices[event.device_id]
        assert (event.checkpoint_id, event.lane, event.direction) == (
            device.checkpoint_id,
            device.lane,
            device.direction,
        )
        assert event.event_id.version == 7
        seqs[event.device_id].add(event.seq)
        event_ids.add(event.event_id)
    # At least once: redeliveries may repeat an event, nothing is missing.
    assert len(event_ids) == planned
    for device_id, seen in seqs.items():
        assert seen == set(range(len(seen))), device_id
    return states


def test_city_over_an_anonymous_broker_with_a_connection_pool(
    population: Population, mosquitto: Broker, tmp_path: Path
) -> None:
    collector = Collector(mosquitto.port)
    config = CityConfig(
        port=mosquitto.port,
        gates=45,
        rate=150,
        duration_s=3,
        speedup=600,
        start=MORNING_HN,
        seed=2,
        population_dir=population.dir,
        out=tmp_path / "city",
        auth=False,
        connections=4,
        dropout_per_hour=2.0,
    )
    report = run_city(config)
    messages = collector.drain()
    collector.close()
    assert report.refused == 0
    assert report.planned > 100
    assert report.outages > 0
    layout = build_layout(45, seed=2)
    states = _check_traffic(messages, layout, report.planned)
    # Every device announced itself online and ended offline.
    assert set(states) == {d.id for d in layout.devices}
    assert all(s[0] is DeviceState.ONLINE and s[-1] is DeviceState.OFFLINE for s in states.values())


@pytest.fixture
def auth_broker(tmp_path: Path, population: Population) -> Iterator[tuple[int, CityConfig]]:
    """mosquitto with the broker files made from the simulator's credentials."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.skip("mosquitto is not installed (make test installs it with apt-get)")
    port = free_port()
    config = CityConfig(
        port=port,
        gates=5,
        rate=60,
        duration_s=4,
        speedup=600,
        start=MORNING_HN,
        seed=8,
        population_dir=population.dir,
        out=tmp_path / "city",
        dropout_per_hour=1.0,
        flagged_share=0.1,
    )
    passwords = ensure_credentials(build_layout(5, seed=8), config.out)
    conf = write_broker_files(
        tmp_path / "broker", port=port, devices=passwords.items(), services={"aggregator": "agg"}
    )
    log = tmp_path / "mosquitto.log"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mosquitto did not start: {log.read_text()}")
        time.sleep(0.05)
    yield port, config
    proc.terminate()
    proc.wait(timeout=10)


def _all_ended_offline(messages: list[tuple[str, bytes]], layout: CityLayout) -> bool:
    last: dict[str, str] = {}
    for topic, payload in messages:
        if topic.endswith("/status") and payload:
            last[topic.split("/")[3]] = json.loads(payload).get("state", "")
    return all(last.get(d.id) == DeviceState.OFFLINE.value for d in layout.devices)


def test_city_devices_log_in_as_themselves_and_leave_wills(
    population: Population, auth_broker: tuple[int, CityConfig]
) -> None:
    port, config = auth_broker
    collector = Collector(port, "aggregator", "agg")
    report = run_city(config)
    layout = build_layout(5, seed=8)
    messages = collector.drain()
    # The last wills and offline statuses may trail the run on a loaded machine:
    # wait for the condition, not for a quiet gap.
    deadline = time.monotonic() + 15
    while not _all_ended_offline(messages, layout) and time.monotonic() < deadline:
        messages += collector.drain(quiet_s=0.5)
    collector.close()
    assert report.refused == 0
    assert report.outages > 0
    states = _check_traffic(messages, layout, report.planned)
    assert set(states) == {d.id for d in layout.devices}
    # Each drop-out ended with the broker publishing the device's will, and it came back.
    went_down = [s for s in states.values() if s.count(DeviceState.OFFLINE) > 1]
    assert went_down
    for seq in states.values():
        assert seq[0] is DeviceState.ONLINE and seq[-1] is DeviceState.OFFLINE


def test_wrong_credentials_fail_clearly(
    population: Population, mosquitto_factory: BrokerFactory, tmp_path: Path
) -> None:
    broker = mosquitto_factory(anonymous=False)  # no password file: nobody gets in
    config = CityConfig(
        port=broker.port,
        gates=1,
        duration_s=1,
        population_dir=population.dir,
        out=tmp_path / "city",
        connect_timeout_s=3,
    )
    with pytest.raises(CityError, match=r"Not authorized|no answer"):
        run_city(config)


def test_excluded_devices_get_no_simulated_traffic() -> None:
    from simulators.city import CityError, build_layout, without_devices

    layout = build_layout(3)
    one_in = [d.id for d in layout.devices if d.direction.value == "in"][:1]
    trimmed = without_devices(layout, set(one_in))
    assert one_in[0] not in {d.id for d in trimmed.devices}
    assert len(trimmed.devices) == len(layout.devices) - 1
    for members in trimmed.lanes.values():
        assert all(0 <= i < len(trimmed.devices) for i in members)
    with pytest.raises(CityError, match="unknown devices"):
        without_devices(layout, {"no-such-device"})
