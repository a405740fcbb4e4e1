"""Fault: gate clocks disagree with the aggregator's (a Pi without an RTC, NTP unreachable).

End to end: two real edge agents, one whose clock runs 10 minutes ahead and one
10 minutes behind (``EdgeAgent(wall_clock=...)``: every wall time a device
reports comes from its clock), real mosquitto, the aggregator service, and the
command centre's JSON. What must hold:

* the skew is detected and reported: each device's status carries its clock,
  the aggregator records ``clock_skew_s`` per device (in memory and in
  ``devices``) and the command centre lists it;
* valid passes are judged valid at both gates (the edge's offline check and
  the aggregator's verdict): a wrong clock must not make them "expired" or
  "not yet valid";
* a scan from a gate whose clock is ahead is recorded with its skew and judged,
  counted in the minute rollups and stored at its arrival; a gate behind is
  known by its live status messages (a scan alone looks like a late delivery)
  and its passages are placed on our clock too, so both sort among the other
  gates' passages on the tracing screens (they order by ``seen_at``).

Then the ingest pipeline alone, with arrival times chosen so the outcome is
certain: a pass that expired by the device's (ahead) clock but not by ours is
valid; a passage from a gate ahead is stored at its arrival; and a pass issued a
few minutes before it was shown at a gate behind (whose status has not been
seen) is not called "not yet valid": a pass is never shown before it was
issued, so the scan is judged at its arrival.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from aggregator.db.schema import Role, checkpoint_minute_rollups, devices, passages
from aggregator.db.traffic import minute_floor
from aggregator.ingest.pipeline import IngestPipeline, assemble
from aggregator.ingest.tokens import TokenVerifier
from aggregator.ingest.validate import Inbound
from aggregator.service import AggregatorService
from contract.messages import MAX_SCAN_BYTES, ScanEvent, VerdictCode, encode, parse_message
from contract.token import HOUR, Keyring, SigningKey, issue_token
from contract.topics import ALL_SCANS, scan_topic
from edge.agent import EdgeAgent
from tests.fault_rig import (
    Collector,
    delivery,
    edge_config,
    gate_scenario,
    pass_tokens,
    start_aggregator,
)
from tests.fixtures.mqtt import Broker
from tests.fixtures.web import LoginFactory
from tests.ingest_world import (
    CHECKPOINT,
    GATES,
    OTHER_CHECKPOINT,
    OTHER_GATE,
    World,
    build_world,
    wait_for,
)

SKEW_S = 600.0
AHEAD, BEHIND = GATES[0], OTHER_GATE  # at two checkpoints, so their rollups are apart
VALID = {VerdictCode.CLEAR.value, VerdictCode.F2.value, VerdictCode.RECOVERED.value}
CARS_PER_MINUTE = 40.0


def device_clock(offset_s: float) -> Callable[[], float]:
    """A wall clock ``offset_s`` seconds off the machine's."""
    return lambda: time.time() + offset_s


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


@pytest.mark.slow
@pytest.mark.reliability
def test_gate_clocks_ten_minutes_off_are_reported_and_judged_sensibly(
    *,
    web_engine: Engine,
    web_service: AggregatorService,
    world: World,
    keyring_file: Path,
    mosquitto: Broker,
    login_as: LoginFactory,
    tmp_path: Path,
    reliability: Callable[..., None],
    figures: Callable[[str], None],
) -> None:
    engine, service = web_engine, web_service
    commander = login_as(Role.COMMAND_CENTRE)  # before the traffic: the account is a write
    tokens = pass_tokens(world, 80)
    scans = Collector(mosquitto.port, ALL_SCANS)
    setups = {
        AHEAD: (+SKEW_S, CHECKPOINT, "in", tokens[:40]),
        BEHIND: (-SKEW_S, OTHER_CHECKPOINT, "out", tokens[40:]),
    }
    agents = []
    for i, (gate, (offset, checkpoint, direction, own)) in enumerate(setups.items()):
        scenario = gate_scenario(
            tmp_path / f"{gate}.json", own, seconds=45, cars_per_minute=CARS_PER_MINUTE, seed=3 + i
        )
        config = edge_config(
            tmp_path / gate,
            device_id=gate,
            mqtt_port=mosquitto.port,
            scenario=scenario,
            keyring=keyring_file,
            checkpoint_id=checkpoint,
            direction=direction,
        )
        agents.append(EdgeAgent(config, wall_clock=device_clock(offset)))

    def stored(gate: str) -> int:
        with engine.connect() as conn:
            rows = conn.execute(select(passages.c.event_id).where(passages.c.device_id == gate))
            return len(rows.all())

    def skew_of(gate: str) -> float | None:
        view = service.fleet.get(gate)
        return None if view is None else view.clock_skew_s

    def stored_skews() -> dict[str, float | None]:
        with engine.connect() as conn:
            rows = conn.execute(select(devices.c.id, devices.c.clock_skew_s))
            return {r.id: r.clock_skew_s for r in rows}

    for agent in agents:
        agent.start()
    try:
        assert wait_for(lambda: stored(AHEAD) >= 3 and stored(BEHIND) >= 3, timeout=90), (
            f"too few passages: ahead {stored(AHEAD)}, behind {stored(BEHIND)}"
        )
        assert wait_for(
            lambda: all(
                (s := skew_of(g)) is not None and abs(s - setups[g][0]) < 5 for g in setups
            ),
            timeout=20,
        ), {g: skew_of(g) for g in setups}
        assert wait_for(
            lambda: all(
                (s := stored_skews().get(g)) is not None and abs(s - setups[g][0]) < 5
                for g in setups
            ),
            timeout=20,
        ), stored_skews()
        answer = commander.client.get("/api/command/summary")
    finally:
        for agent in agents:
            agent.stop()
    made = sum(a.outbox.stats().enqueued for a in agents if a.outbox is not None)
    assert wait_for(lambda: stored(AHEAD) + stored(BEHIND) >= made, timeout=30)
    results = [delivery(engine, a, duplicates=0) for a in agents]
    scans.close()
    sent = [
        parse_message(ScanEvent, body, max_bytes=MAX_SCAN_BYTES) for _, body in scans.snapshot()
    ]
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                passages.c.device_id,
                passages.c.seen_at,
                passages.c.received_at,
                passages.c.clock_skew_s,
                passages.c.verdict,
                passages.c.reason,
            )
        ).all()
        rollups = conn.execute(
            select(
                checkpoint_minute_rollups.c.minute,
                checkpoint_minute_rollups.c.passages,
            ).where(checkpoint_minute_rollups.c.checkpoint_id == CHECKPOINT)
        ).all()
    ahead = [r for r in rows if r.device_id == AHEAD]
    behind = [r for r in rows if r.device_id == BEHIND]
    assert answer.status_code == 200, answer.text
    on_screen = {d["id"]: d["clock_skew_s"] for d in answer.json()["devices"]}
    reliability(
        scenario="gate clocks 10 min ahead / 10 min behind the aggregator",
        sent=sum(r.sent for r in results),
        stored=sum(r.stored for r in results),
        duplicates=int(service.stats()["duplicates"]),
        lost=sum(r.lost for r in results),
        recover_s=None,
    )
    figures(
        f"clock skew reported: ahead {on_screen[AHEAD]:+.1f} s, behind {on_screen[BEHIND]:+.1f} s; "
        f"{len(ahead)} + {len(behind)} passages, verdicts {Counter(r.reason for r in rows)}"
    )

    assert all(r.lost == 0 for r in results), [r.missing for r in results]
    # Detected and reported: status, store, command centre.
    for gate, (offset, *_) in setups.items():
        assert on_screen[gate] is not None and abs(on_screen[gate] - offset) < 5, on_screen
    # The edge judged every pass valid offline despite its clock (leeway 300 s < 600 s,
    # but these passes are valid for a day: the clock must not matter).
    assert all(isinstance(e, ScanEvent) for e in sent)
    local = Counter(
        e.local_verdict.code for e in sent if isinstance(e, ScanEvent) and e.local_verdict
    )
    assert set(local) == {VerdictCode.OFFLINE_VALID}, local
    # The aggregator judged every pass valid too.
    assert {r.reason for r in rows} <= VALID, Counter(r.reason for r in rows)
    assert {r.verdict for r in rows} <= {"green", "yellow"}
    # Ahead: recorded with its skew, judged and counted at arrival.
    assert all(r.clock_skew_s is not None and 550 < r.clock_skew_s <= SKEW_S for r in ahead)
    # ... and stored at its arrival, so it sorts among the other gates' passages.
    assert all(r.seen_at == r.received_at for r in ahead)
    by_arrival = Counter(minute_floor(r.received_at) for r in ahead)
    assert {r.minute: r.passages for r in rollups} == dict(by_arrival)
    # Behind: a scan alone looks like a late delivery, but the gate's live status
    # messages show its clock; its passages are placed on our clock.
    assert all(r.clock_skew_s is not None and r.clock_skew_s < -550 for r in behind)
    assert all(abs((r.received_at - r.seen_at).total_seconds()) < 60 for r in behind)


# --- the pipeline alone, at chosen arrival times -------------------------------------------


def judge(
    engine: Engine, keyring: Keyring, token: str, world: World, *, seen: datetime, arrived: datetime
) -> dict[str, object]:
    """Ingest one scan seen at ``seen`` (device clock) that arrived at ``arrived``; its row."""
    event = world.scan(token, seen_at=seen)
    pipeline = IngestPipeline(engine, TokenVerifier(keyring))
    item = Inbound(scan_topic(event.device_id), encode(event), arrived)
    outcome = pipeline.store(assemble([pipeline.prepare_one(item)]))
    assert not outcome.letters, outcome.letters
    with engine.connect() as conn:
        row = conn.execute(select(passages).where(passages.c.event_id == event.event_id)).one()
    return dict(row._mapping)


def hour_now() -> datetime:
    """The start of the current hour (pass validity is in whole hours)."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def ingest_world(engine: Engine, signing_key: SigningKey) -> World:
    return build_world(engine, signing_key)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_ahead_gate_pass_expired_by_its_clock_but_not_ours_is_valid(
    engine: Engine, ingest_world: World, keyring: Keyring
) -> None:
    end = hour_now() + timedelta(hours=1)
    token = issue_token(
        ingest_world.key,
        declaration_id=ingest_world.people["an"].declaration_id,
        issued_at=int(end.timestamp()) - 3 * HOUR,
        expires_at=int(end.timestamp()),
    )
    arrived = end - timedelta(minutes=5)
    row = judge(
        engine,
        keyring,
        token,
        ingest_world,
        seen=arrived + timedelta(seconds=SKEW_S),
        arrived=arrived,
    )
    assert row["reason"] == VerdictCode.CLEAR.value
    assert row["clock_skew_s"] == SKEW_S


@pytest.mark.parametrize("backend", ["sqlite"])
def test_ahead_gate_passage_is_placed_at_its_arrival(
    engine: Engine, ingest_world: World, keyring: Keyring
) -> None:
    arrived = datetime.now(UTC)
    token = ingest_world.people["an"].token
    row = judge(
        engine,
        keyring,
        token,
        ingest_world,
        seen=arrived + timedelta(seconds=SKEW_S),
        arrived=arrived,
    )
    assert row["clock_skew_s"] == SKEW_S
    assert row["seen_at"] == row["received_at"], "stored at the device's time, not at arrival"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_behind_gate_pass_issued_minutes_earlier_is_not_called_not_yet_valid(
    engine: Engine, ingest_world: World, keyring: Keyring
) -> None:
    start = hour_now()
    token = issue_token(
        ingest_world.key,
        declaration_id=ingest_world.people["an"].declaration_id,
        issued_at=int(start.timestamp()),
        expires_at=int(start.timestamp()) + 24 * HOUR,
    )
    arrived = start + timedelta(minutes=5)
    row = judge(
        engine,
        keyring,
        token,
        ingest_world,
        seen=arrived - timedelta(seconds=SKEW_S),
        arrived=arrived,
    )
    assert row["reason"] == VerdictCode.CLEAR.value, row["reason"]
