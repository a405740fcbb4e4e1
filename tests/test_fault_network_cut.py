"""Fault: the network between a gate and the broker is cut for a stretch of traffic.

Real components: mosquitto, an :class:`~edge.agent.EdgeAgent` whose synthetic
gate camera keeps cars coming, and the aggregator service consuming from the
broker. The gate reaches the broker through a TCP link the test cuts
(tests/fixtures/netcut.py: open connections dropped, new ones refused), then
heals. During the cut the gate must keep decoding, judging passes offline and
showing those verdicts, and keep every event in its outbox; after the heal the
outbox drains and the aggregator stores every event exactly once.

``KIEMDICH_NETCUT_S`` sets how long the cut lasts: 20 s by default (CI),
300 s for ``make reliability``'s full run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import Engine

from contract.messages import MAX_SCAN_BYTES, DeviceState, ScanEvent, VerdictCode, parse_message
from contract.token import Keyring, SigningKey
from edge.agent import EdgeAgent
from edge.display import Phase
from edge.mqtt_link import ALARM_NOT_CONNECTED
from tests.fault_rig import (
    delivery,
    edge_config,
    engine_url,
    gate_scenario,
    pass_tokens,
    start_aggregator,
    stored_seqs,
)
from tests.fixtures.mqtt import Broker
from tests.fixtures.netcut import NetCutFactory
from tests.ingest_world import GATES, build_world, wait_for

NETCUT_ENV = "KIEMDICH_NETCUT_S"
CARS_PER_MINUTE = 40.0


def cut_seconds() -> float:
    """How long the link stays cut (``KIEMDICH_NETCUT_S``, default 20 s)."""
    raw = os.environ.get(NETCUT_ENV, "20")
    try:
        value = float(raw)
    except ValueError:
        raise pytest.UsageError(f"{NETCUT_ENV}={raw!r}: a number of seconds") from None
    if not 3 <= value <= 3600:
        raise pytest.UsageError(f"{NETCUT_ENV}={raw!r}: between 3 and 3600 seconds")
    return value


def held_events(agent: EdgeAgent) -> dict[UUID, ScanEvent]:
    """The events waiting in the gate's outbox, by event id."""
    assert agent.outbox is not None
    events = {}
    for item in agent.outbox.pending(100_000):
        event = parse_message(ScanEvent, item.payload, max_bytes=MAX_SCAN_BYTES)
        assert isinstance(event, ScanEvent), event
        events[event.event_id] = event
    return events


def _timeout_s() -> float:
    # The suite's 300 s per test is shorter than make reliability's 300 s cut plus
    # the drain; a bad value is reported by cut_seconds() inside the test.
    try:
        return 300.0 + float(os.environ.get(NETCUT_ENV, "20"))
    except ValueError:
        return 300.0


@pytest.mark.slow
@pytest.mark.reliability
@pytest.mark.timeout(_timeout_s())
@pytest.mark.parametrize("backend", ["sqlite"])
def test_network_cut_between_edge_and_broker_loses_nothing(
    *,
    engine: Engine,
    signing_key: SigningKey,
    keyring: Keyring,
    mosquitto: Broker,
    netcut: NetCutFactory,
    tmp_path: Path,
    reliability: Callable[..., None],
    figures: Callable[[str], None],
) -> None:
    cut_s = cut_seconds()
    gate = GATES[0]
    world = build_world(engine, signing_key)
    keyring_file = tmp_path / "keyring.json"
    keyring.save(keyring_file)
    clip_s = cut_s + 40  # start-up and traffic before the cut, the drain after it
    tokens = pass_tokens(world, int(clip_s * CARS_PER_MINUTE / 60 * 2) + 20)
    scenario = gate_scenario(
        tmp_path / "scenario.json", tokens, seconds=clip_s, cars_per_minute=CARS_PER_MINUTE
    )
    link = netcut(mosquitto.port)
    service = start_aggregator(engine_url(engine), mosquitto.port, keyring_file)
    agent = EdgeAgent(
        edge_config(
            tmp_path / "edge",
            device_id=gate,
            mqtt_port=link.port,
            scenario=scenario,
            keyring=keyring_file,
        )
    )
    agent.start()
    try:
        assert agent.outbox is not None and agent.link is not None
        box = agent.outbox
        # Traffic flows before the cut: the gate is online and its passages are stored.
        assert wait_for(lambda: len(stored_seqs(engine, gate)) >= 2, timeout=60), (
            "no passage reached the aggregator before the cut"
        )

        before_cut = box.stats().enqueued
        screen_at_cut = agent.display.state().seq
        link.cut()
        cut_at = time.monotonic()
        assert wait_for(lambda: not agent.link.connected, timeout=10)  # type: ignore[union-attr]
        shown_offline: set[UUID] = set()
        alarms_seen: set[str] = set()
        status_lines: set[str] = set()
        while time.monotonic() - cut_at < cut_s:
            shown = agent.display.state()
            # Only passages shown after the cut began (an earlier one may still be on screen).
            if shown.seq > screen_at_cut and shown.phase is Phase.LOCAL and shown.offline:
                assert shown.event_id is not None
                shown_offline.add(shown.event_id)
            alarms_seen.update(agent.status().alarms)
            status_lines.add(agent.status_line().rsplit(", ", 1)[-1])
            time.sleep(0.2)
        # The broker published the gate's last will: the aggregator sees it offline.
        view = service.fleet.get(gate)
        offline_seen = view is not None and view.state is DeviceState.OFFLINE
        made_in_cut = box.stats().enqueued - before_cut
        held = held_events(agent)
        stored_in_cut = [s for s in stored_seqs(engine, gate) if s >= before_cut]
        heal_seq = box.next_seq()
        depth_at_heal = box.stats().depth
        dropped = box.stats().dropped

        link.heal()
        healed_at = time.monotonic()
        drained = wait_for(
            lambda: set(range(heal_seq)) <= set(stored_seqs(engine, gate)),
            timeout=60 + cut_s / 2,
        )
        drain_s = time.monotonic() - healed_at
        back_online = wait_for(
            lambda: (v := service.fleet.get(gate)) is not None and v.state is DeviceState.ONLINE,
            timeout=20,
        )
    finally:
        agent.stop()
    try:
        sent = agent.outbox.stats().enqueued
        wait_for(lambda: len(stored_seqs(engine, gate)) >= sent, timeout=30)
        duplicates = int(service.stats()["duplicates"])
    finally:
        service.stop()
    result = delivery(engine, agent, duplicates=duplicates)

    reliability(
        scenario=f"network cut edge ↔ broker for {cut_s:.0f} s of traffic",
        sent=result.sent,
        stored=result.stored,
        duplicates=result.duplicates,
        lost=result.lost,
        recover_s=drain_s,
    )
    figures(
        f"cut {cut_s:.0f} s: {made_in_cut} passages decoded and judged offline during the cut, "
        f"{len(shown_offline)} seen on the gate display, outbox depth at heal {depth_at_heal}, "
        f"drained in {drain_s:.1f} s"
    )
    assert made_in_cut >= 2, "the camera put too few cars through during the cut: nothing tested"
    # During the cut: still decoding, judging offline, showing it, keeping every event.
    assert shown_offline, "no offline verdict was shown at the gate during the cut"
    assert shown_offline <= set(held), "a verdict was shown for an event the outbox does not hold"
    cut_events = [e for e in held.values() if e.seq >= before_cut]
    assert len(cut_events) == made_in_cut, "an event made during the cut is not in the outbox"
    assert {e.local_verdict.code for e in cut_events if e.local_verdict} == {
        VerdictCode.OFFLINE_VALID
    }
    assert depth_at_heal >= made_in_cut and dropped == 0
    assert not stored_in_cut, "an event made during the cut reached the store through a cut link"
    assert ALARM_NOT_CONNECTED in alarms_seen
    assert status_lines == {"mqtt disconnected"}
    assert offline_seen, "the aggregator did not see the gate go offline (last will)"
    # After the heal: drained, online again, every event stored once.
    assert drained, f"not drained {60 + cut_s / 2:.0f} s after the heal"
    assert back_online
    assert result.lost == 0, f"seqs never stored: {result.missing[:20]}"
    assert result.stored == result.sent
