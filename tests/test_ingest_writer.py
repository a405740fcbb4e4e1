"""Storing batches (pipeline + writer) on real SQLite and PostgreSQL.

Exactly-once under redelivery (same batch, across batches, within a batch),
side effects only for new passages, sequence gaps recorded and filled,
rollups, ward notifications, crops, dead letters, clock skew, registry
changes applying to the very next batch, and a batch the database refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

import aggregator.ingest.pipeline as pipeline_module
from aggregator.db.registry import set_health_status
from aggregator.db.schema import (
    HealthStatus,
    alerts,
    checkpoint_minute_rollups,
    dead_letters,
    device_seq_gaps,
    devices,
    passage_crops,
    passages,
    ward_notifications,
)
from aggregator.ingest.lookup import DeviceState
from aggregator.ingest.pipeline import BatchOutcome, IngestPipeline
from aggregator.ingest.tokens import TokenVerifier
from aggregator.ingest.validate import Inbound
from aggregator.ingest.writer import new_gaps, split_gap
from contract.messages import Color, Direction, ScanEvent, VerdictCode
from contract.token import Keyring, SigningKey, issue_token
from contract.topics import scan_topic
from tests.ingest_world import (
    BA_DINH,
    BEN_THANH,
    CHECKPOINT,
    GATES,
    HOAN_KIEM,
    World,
    build_world,
    forge,
    payload,
)


@pytest.fixture
def world(engine: Engine, signing_key: SigningKey) -> World:
    return build_world(engine, signing_key)


@pytest.fixture
def pipeline(engine: Engine, keyring: Keyring) -> IngestPipeline:
    return IngestPipeline(engine, TokenVerifier(keyring), clock_skew_threshold_s=30)


def inbound(event: ScanEvent, *, received_at: datetime | None = None) -> Inbound:
    return Inbound(scan_topic(event.device_id), payload(event), received_at or datetime.now(UTC))


def store(pipeline: IngestPipeline, events: Sequence[ScanEvent | Inbound]) -> BatchOutcome:
    items = [e if isinstance(e, Inbound) else inbound(e) for e in events]
    return pipeline.store(pipeline.prepare(items))


def count(engine: Engine, table: object, *where: object) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(table)  # type: ignore[arg-type]
        return int(conn.execute(query.where(*where)).scalar_one())  # type: ignore[arg-type]


def side_effects(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rollup = conn.execute(
            select(
                func.coalesce(func.sum(checkpoint_minute_rollups.c.passages), 0),
                func.coalesce(func.sum(checkpoint_minute_rollups.c.flagged), 0),
            )
        ).one()
    return {
        "passages": count(engine, passages),
        "alerts": count(engine, alerts),
        "notifications": count(engine, ward_notifications),
        "rollup_passages": int(rollup[0]),
        "rollup_flagged": int(rollup[1]),
    }


def test_same_batch_twice_is_stored_once(
    engine: Engine, world: World, pipeline: IngestPipeline, figures: Callable[[str], None]
) -> None:
    events = [world.scan(p.token) for p in world.people.values()]
    first = store(pipeline, events)
    assert len(first.result.stored) == len(events)
    assert first.result.duplicates == []
    after_first = side_effects(engine)
    assert after_first["passages"] == len(events)
    assert after_first["rollup_passages"] == len(events)

    again = store(pipeline, events)  # the broker redelivers the whole batch
    assert again.result.stored == []
    assert len(again.result.duplicates) == len(events)
    assert again.result.alerts == []
    assert side_effects(engine) == after_first
    figures(
        f"{engine.dialect.name}: sent {2 * len(events)}, stored {after_first['passages']}, "
        f"duplicates {len(again.result.duplicates)}, lost 0"
    )


def test_large_batches_split_into_statements_exactly_once(
    engine: Engine, world: World, pipeline: IngestPipeline
) -> None:
    # 777 rows: several statement sizes on SQLite, one unnest on PostgreSQL.
    tokens = [p.token for p in world.people.values()]
    events = [world.scan(tokens[i % len(tokens)], device_id=GATES[i % 2]) for i in range(777)]
    first = store(pipeline, events)
    assert len(first.result.stored) == 777
    again = store(pipeline, [*events[::2], *events[1::2]])
    assert (len(again.result.stored), len(again.result.duplicates)) == (0, 777)
    totals = side_effects(engine)
    assert totals["passages"] == totals["rollup_passages"] == 777
    with engine.connect() as conn:
        stored = set(conn.execute(select(passages.c.event_id)).scalars())
        payloads = conn.execute(select(ward_notifications.c.payload)).scalars().all()
    assert stored == {e.event_id for e in events}
    assert {p["checkpoint_id"] for p in payloads} == {CHECKPOINT}


def test_overlapping_batches_and_duplicates_within_a_batch(
    engine: Engine, world: World, pipeline: IngestPipeline
) -> None:
    token = world.people["an"].token
    events = [world.scan(token) for _ in range(30)]
    store(pipeline, events[:20])
    outcome = store(pipeline, [*events[10:], events[25]])  # 10 old, 10 new, one twice
    assert len(outcome.result.stored) == 10
    assert len(outcome.result.duplicates) == 11
    assert count(engine, passages) == 30
    assert side_effects(engine)["notifications"] == 60


def test_verdicts_alerts_and_notifications(
    engine: Engine, world: World, pipeline: IngestPipeline
) -> None:
    people = world.people
    events = {name: world.scan(people[name].token) for name in people}
    outcome = store(pipeline, list(events.values()))
    by_event = {a.event.event_id: a.decision for a in outcome.result.stored}
    expected = {
        "an": (Color.GREEN, VerdictCode.CLEAR),
        "binh": (Color.YELLOW, VerdictCode.CLEAR),
        "f0": (Color.RED, VerdictCode.F0),
        "f0_tam_tru": (Color.RED, VerdictCode.F0),
        "f1": (Color.RED, VerdictCode.F1),
        "f2": (Color.YELLOW, VerdictCode.F2),
        "recovered": (Color.GREEN, VerdictCode.RECOVERED),
        "deceased": (Color.RED, VerdictCode.DECEASED_IDENTITY),
        "revoked": (Color.RED, VerdictCode.REVOKED),
    }
    for name, (color, code) in expected.items():
        decision = by_event[events[name].event_id]
        assert (decision.color, decision.code) == (color, code), name

    with engine.connect() as conn:
        stored = {
            r.event_id: r
            for r in conn.execute(
                select(
                    passages.c.event_id,
                    passages.c.verdict,
                    passages.c.reason,
                    passages.c.citizen_id,
                )
            )
        }
        assert stored[events["f0"].event_id].verdict == "red"
        assert stored[events["f0"].event_id].citizen_id == people["f0"].citizen_id
        raised = {
            r.event_id: r
            for r in conn.execute(
                select(alerts.c.event_id, alerts.c.kind, alerts.c.health_status, alerts.c.status)
            )
        }
        f0_notes = conn.execute(
            select(ward_notifications.c.ward_code, ward_notifications.c.kind)
            .where(ward_notifications.c.event_id == events["f0_tam_tru"].event_id)
            .order_by(ward_notifications.c.kind)
        ).all()
        clear_notes = conn.execute(
            select(
                ward_notifications.c.ward_code,
                ward_notifications.c.kind,
                ward_notifications.c.payload,
            )
            .where(ward_notifications.c.event_id == events["binh"].event_id)
            .order_by(ward_notifications.c.kind)
        ).all()
    assert {raised[events[n].event_id].kind for n in ("f0", "f0_tam_tru")} == {"f0"}
    assert raised[events["f1"].event_id].kind == "f1"
    assert raised[events["deceased"].event_id].kind == "deceased_identity"
    assert raised[events["revoked"].event_id].kind == "revoked"
    assert raised[events["f0"].event_id].health_status == "F0"
    assert raised[events["f0"].event_id].status == "open"
    assert len(raised) == 5 == len(outcome.result.alerts)
    # A flagged person with a temporary residence: origin, destination and residence wards.
    assert sorted(map(tuple, f0_notes)) == sorted(
        [(BA_DINH, "alert"), (BEN_THANH, "arrival"), (HOAN_KIEM, "departure")]
    )
    # Anyone else: origin and destination only, even with a temporary residence.
    assert [(r.ward_code, r.kind) for r in clear_notes] == [
        (BEN_THANH, "arrival"),
        (HOAN_KIEM, "departure"),
    ]
    assert clear_notes[0].payload["checkpoint_id"] == CHECKPOINT
    assert clear_notes[0].payload["verdict"] == "yellow"


def test_forged_and_unreadable_codes(
    engine: Engine, world: World, pipeline: IngestPipeline
) -> None:
    forged = forge(world.people["an"].token)
    foreign = issue_token(  # a well-formed pass signed by a key we do not hold
        SigningKey.generate(kid=9),
        declaration_id=world.people["an"].declaration_id,
        issued_at=int(datetime.now(UTC).timestamp()) - 3600,
        expires_at=int(datetime.now(UTC).timestamp()) + 3600,
    )
    events = [world.scan(forged), world.scan(foreign), world.scan("https://example.com/menu")]
    outcome = store(pipeline, events)
    codes = {a.event.event_id: a.decision.code for a in outcome.result.stored}
    assert [codes[e.event_id] for e in events] == [
        VerdictCode.FORGED,
        VerdictCode.FORGED,
        VerdictCode.MALFORMED,
    ]
    assert [a.accepted.decision.code for a in outcome.result.alerts] == [VerdictCode.FORGED] * 2
    with engine.connect() as conn:
        rows = conn.execute(select(passages.c.citizen_id, passages.c.declaration_id)).all()
    # A forged code is never tied to the citizen it names.
    assert all(r.citizen_id is None for r in rows)
    assert count(engine, ward_notifications) == 0


def test_sequence_gaps_recorded_and_filled(
    engine: Engine, world: World, pipeline: IngestPipeline
) -> None:
    token = world.people["an"].token
    gate = GATES[0]

    def send(*seqs: int) -> BatchOutcome:
        return store(pipeline, [world.scan(token, device_id=gate, seq=s) for s in seqs])

    def open_gaps() -> list[tuple[int, int]]:
        with engine.connect() as conn:
            return [
                (r.first_missing, r.last_missing)
                for r in conn.execute(
                    select(device_seq_gaps.c.first_missing, device_seq_gaps.c.last_missing)
                    .where(device_seq_gaps.c.filled_at.is_(None))
                    .order_by(device_seq_gaps.c.first_missing)
                )
            ]

    assert send(1, 2, 5).result.gaps_opened == 1
    assert open_gaps() == [(3, 4)]
    assert send(20).result.gaps_opened == 1
    assert open_gaps() == [(3, 4), (6, 19)]
    filled = send(4, 12)
    assert filled.result.seqs_filled == 2
    assert open_gaps() == [(3, 3), (6, 11), (13, 19)]
    send(3)
    assert open_gaps() == [(6, 11), (13, 19)]
    with engine.connect() as conn:
        done = conn.execute(
            select(device_seq_gaps.c.first_missing, device_seq_gaps.c.filled_at).where(
                device_seq_gaps.c.filled_at.is_not(None)
            )
        ).all()
        last_seq = conn.execute(select(devices.c.last_seq).where(devices.c.id == gate)).scalar()
    assert [r.first_missing for r in done] == [3]
    assert last_seq == 20
    # A redelivered late event fills nothing twice and opens nothing.
    again = send(3)
    assert again.result.seqs_filled == 0
    assert again.result.gaps_opened == 0


def test_gap_arithmetic() -> None:
    assert new_gaps(None, [7, 9]) == [(8, 8)]
    assert new_gaps(5, [6, 7]) == []
    assert new_gaps(5, [9, 3, 7]) == [(6, 6), (8, 8)]
    assert split_gap(10, 20, [15]) == [(10, 14), (16, 20)]
    assert split_gap(10, 20, [10, 20]) == [(11, 19)]
    assert split_gap(10, 10, [10]) == []
    assert split_gap(10, 12, [9, 13]) == [(10, 12)]


def test_rollups_by_minute_direction_and_flagged(
    engine: Engine, world: World, pipeline: IngestPipeline
) -> None:
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    people = world.people
    events = [
        world.scan(people["an"].token, seen_at=minute + timedelta(seconds=1)),
        world.scan(people["f0"].token, seen_at=minute + timedelta(seconds=59)),
        world.scan(people["binh"].token, seen_at=minute + timedelta(seconds=61)),
        world.scan(
            people["an"].token, seen_at=minute + timedelta(seconds=5), direction=Direction.OUT
        ),
    ]
    store(pipeline, events[:2])
    store(pipeline, events[2:])
    store(pipeline, events)  # redelivery adds nothing
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                checkpoint_minute_rollups.c.minute,
                checkpoint_minute_rollups.c.direction,
                checkpoint_minute_rollups.c.passages,
                checkpoint_minute_rollups.c.flagged,
            )
            .where(checkpoint_minute_rollups.c.checkpoint_id == CHECKPOINT)
            .order_by(checkpoint_minute_rollups.c.minute, checkpoint_minute_rollups.c.direction)
        ).all()
    assert [tuple(r) for r in rows] == [
        (minute, "in", 2, 1),
        (minute, "out", 1, 0),
        (minute + timedelta(minutes=1), "in", 1, 0),
    ]


def test_crops_kept_apart(engine: Engine, world: World, pipeline: IngestPipeline) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
    event = world.scan(world.people["an"].token, crop=jpeg)
    store(pipeline, [event, world.scan(world.people["binh"].token)])
    store(pipeline, [event])
    with engine.connect() as conn:
        rows = conn.execute(select(passage_crops.c.event_id, passage_crops.c.jpeg)).all()
    assert [(r.event_id, r.jpeg) for r in rows] == [(event.event_id, jpeg)]


def test_dead_letters_do_not_stop_the_batch(
    engine: Engine, world: World, pipeline: IngestPipeline
) -> None:
    good = world.scan(world.people["an"].token)
    wrong_checkpoint = world.scan(world.people["an"].token, checkpoint_id="cp-bac-thang-long")
    unknown_device = world.scan(world.people["an"].token, device_id="gate-nobody")
    now = datetime.now(UTC)
    items = [
        inbound(good),
        Inbound(scan_topic(GATES[0]), b"{not json", now),
        Inbound(scan_topic(GATES[1]), payload(good), now),  # another gate's event
        inbound(wrong_checkpoint),
        inbound(unknown_device),
    ]
    outcome = store(pipeline, items)
    assert [a.event.event_id for a in outcome.result.stored] == [good.event_id]
    reasons = sorted(d.reason.value for d in outcome.letters)
    assert reasons == ["bad_json", "topic_mismatch", "unknown_device", "wrong_checkpoint"]
    with engine.connect() as conn:
        rows = conn.execute(
            select(dead_letters.c.reason, dead_letters.c.payload, dead_letters.c.topic)
        ).all()
    assert sorted(r.reason for r in rows) == reasons
    assert any(r.payload == b"{not json" for r in rows)


def test_clock_ahead_is_recorded_and_judged_at_arrival(
    engine: Engine, world: World, pipeline: IngestPipeline
) -> None:
    received = datetime.now(UTC)
    ahead = world.scan(world.people["an"].token, seen_at=received + timedelta(minutes=10))
    slightly = world.scan(world.people["an"].token, seen_at=received + timedelta(seconds=5))
    outcome = store(
        pipeline, [inbound(ahead, received_at=received), inbound(slightly, received_at=received)]
    )
    assert len(outcome.result.stored) == 2
    with engine.connect() as conn:
        skews = dict(conn.execute(select(passages.c.event_id, passages.c.clock_skew_s)).all())
    assert skews[ahead.event_id] == pytest.approx(600, abs=1)
    assert skews[slightly.event_id] is None


def test_registry_change_applies_to_the_next_batch(
    engine: Engine, world: World, pipeline: IngestPipeline
) -> None:
    person = world.people["an"]
    first = store(pipeline, [world.scan(person.token)])
    assert first.result.stored[0].decision.color is Color.GREEN
    with engine.begin() as conn:
        set_health_status(
            conn, citizen_id=person.citizen_id, status=HealthStatus.F0, at=datetime.now(UTC)
        )
    second = store(pipeline, [world.scan(person.token)])
    assert (second.result.stored[0].decision.color, second.result.stored[0].decision.code) == (
        Color.RED,
        VerdictCode.F0,
    )


def test_event_refused_by_the_database_becomes_a_dead_letter(
    engine: Engine, world: World, pipeline: IngestPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pipeline_module.device_states

    def believes_in_ghosts(conn: object, **kw: object) -> dict[str, DeviceState]:
        found = real(conn, **kw)  # type: ignore[arg-type]
        # As if the gate were deleted between the check and the insert.
        return {**found, "gate-ghost": DeviceState(CHECKPOINT, None)}

    monkeypatch.setattr(pipeline_module, "device_states", believes_in_ghosts)
    good = [world.scan(world.people[n].token) for n in ("an", "binh")]
    ghost = world.scan(world.people["an"].token, device_id="gate-ghost")
    outcome = store(pipeline, [good[0], ghost, good[1]])
    assert sorted(a.event.event_id for a in outcome.result.stored) == sorted(
        e.event_id for e in good
    )
    assert [d.reason.value for d in outcome.letters] == ["store_rejected"]
    with engine.connect() as conn:
        letter = conn.execute(select(dead_letters.c.reason, dead_letters.c.detail)).one()
    assert letter.reason == "store_rejected"
    assert "IntegrityError" in (letter.detail or "") or "ForeignKey" in (letter.detail or "")
