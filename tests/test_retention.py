"""Data retention on SQLite and PostgreSQL: what goes, what stays, in bounded chunks.

Rows are written straight into the tables at chosen ages (relative to a fixed
``NOW``), except in the report test, where passages go through the real ingest
pipeline (which writes the rollups the daily report reads).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, update

from aggregator.db.places import checkpoint_places
from aggregator.db.reports import daily_report
from aggregator.db.retention import (
    TABLES,
    RetentionPolicy,
    cutoffs,
    day_cutoff,
    retention_lock,
    run_retention,
)
from aggregator.db.schema import (
    alert_actions,
    alerts,
    audit_log,
    checkpoint_minute_rollups,
    checkpoints,
    citizens,
    dead_letters,
    device_seq_gaps,
    devices,
    login_failures,
    officer_sessions,
    officers,
    passage_crops,
    passages,
    public_requests,
    ward_notifications,
)
from aggregator.db.traffic import LOCAL_TZ
from aggregator.retention import RetentionJob, run_locked
from aggregator.service import AggregatorService
from aggregator.settings import AggregatorSettings
from contract.token import SigningKey
from kiemdich.cli import main as kiemdich_main
from tests.fixtures.db import url_string
from tests.ingest_world import CHECKPOINT, GATES, HOAN_KIEM
from tests.test_web_reports import DAY1, DAY2, counted_directly, from_report, ingest

NOW = datetime(2026, 3, 20, 5, 0, tzinfo=UTC)  # 12:00 in Vietnam
DAY = timedelta(days=1)
# Few rows per transaction, no pause: the tests see several chunks per table quickly.
POLICY = RetentionPolicy(chunk_rows=1000, pause_s=0.0)


def event_id_at(at: datetime) -> uuid.UUID:
    """A UUIDv7 whose time is ``at`` (what a gate makes when it sees the car)."""
    ms = int(at.timestamp() * 1000)
    rand = secrets.randbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & (2**62 - 1))
    return uuid.UUID(int=value)


@dataclass
class Seeder:
    """Writes rows of every retained kind at chosen ages."""

    engine: Engine
    now: datetime
    officer_id: int = 0
    names: dict[str, Any] = field(default_factory=dict)
    _seq: int = 0

    def passage(self, name: str, age: timedelta, *, crop: bool = False) -> uuid.UUID:
        """A passage seen ``age`` before now (received a second later)."""
        seen = self.now - age
        event_id = event_id_at(seen)
        self._seq += 1
        with self.engine.begin() as conn:
            conn.execute(
                insert(passages).values(
                    event_id=event_id,
                    device_id=GATES[0],
                    checkpoint_id=CHECKPOINT,
                    seq=self._seq,
                    lane=0,
                    direction="in",
                    seen_at=seen,
                    received_at=seen + timedelta(seconds=1),
                    declaration_id=1_000_001,
                    citizen_id=1,
                    verdict="green",
                    reason="clear",
                )
            )
            if crop:
                conn.execute(insert(passage_crops).values(event_id=event_id, jpeg=b"\xff\xd8jpeg"))
        self.names[name] = event_id
        return event_id

    def alert(
        self,
        name: str,
        event_id: uuid.UUID | None,
        age: timedelta,
        *,
        status: str,
        resolved_age: timedelta | None = None,
        actions: int = 0,
    ) -> int:
        created = self.now - age
        with self.engine.begin() as conn:
            alert_id = conn.execute(
                insert(alerts)
                .values(
                    kind="f0",
                    status=status,
                    event_id=event_id,
                    checkpoint_id=CHECKPOINT,
                    citizen_id=1,
                    detail={},
                    created_at=created,
                    resolved_at=None if resolved_age is None else self.now - resolved_age,
                    resolved_by=self.officer_id if resolved_age is not None else None,
                )
                .returning(alerts.c.id)
            ).scalar_one()
            for i in range(actions):
                conn.execute(
                    insert(alert_actions).values(
                        alert_id=alert_id,
                        officer_id=self.officer_id,
                        action="acknowledge" if i == 0 else "resolve",
                        at=created + timedelta(minutes=i),
                    )
                )
        self.names[name] = alert_id
        return int(alert_id)

    def notification(
        self, name: str, event_id: uuid.UUID | None, age: timedelta, *, handled: bool
    ) -> int:
        created = self.now - age
        with self.engine.begin() as conn:
            notification_id = conn.execute(
                insert(ward_notifications)
                .values(
                    ward_code=HOAN_KIEM,
                    kind="arrival" if event_id else "status_change",
                    citizen_id=1,
                    event_id=event_id,
                    payload={"checkpoint_id": CHECKPOINT},
                    created_at=created,
                    handled_at=created + timedelta(hours=1) if handled else None,
                    handled_by=self.officer_id if handled else None,
                )
                .returning(ward_notifications.c.id)
            ).scalar_one()
        self.names[name] = notification_id
        return int(notification_id)

    def rollup(self, age: timedelta) -> None:
        minute = (self.now - age).replace(second=0, microsecond=0)
        with self.engine.begin() as conn:
            conn.execute(
                insert(checkpoint_minute_rollups).values(
                    checkpoint_id=CHECKPOINT, minute=minute, direction="in", passages=3, flagged=1
                )
            )

    def many(self, table: Any, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(table), rows)


def make_seeder(engine: Engine, now: datetime = NOW) -> Seeder:
    """A checkpoint, its gate, one citizen and an officer (no password hashing: fast)."""
    with engine.begin() as conn:
        conn.execute(
            insert(checkpoints).values(
                id=CHECKPOINT, name="Chốt Pháp Vân", kind="city_gate", ward_code=HOAN_KIEM
            )
        )
        conn.execute(
            insert(devices).values(
                id=GATES[0],
                checkpoint_id=CHECKPOINT,
                lane=0,
                direction="in",
                mqtt_username=GATES[0],
                mqtt_password_hash="$argon2id$unused",
            )
        )
        conn.execute(
            insert(citizens).values(
                id=1,
                identity_no="001090000001",
                full_name="Nguyễn Văn An",
                full_name_folded="nguyen van an",
                date_of_birth=date(1990, 1, 1),
                sex="male",
                permanent_ward_code=HOAN_KIEM,
            )
        )
        officer_id = conn.execute(
            insert(officers)
            .values(
                username="retention-test",
                full_name="Lê Thị Lưu",
                password_hash="$argon2id$unused",
                role="admin",
            )
            .returning(officers.c.id)
        ).scalar_one()
    return Seeder(engine, now, officer_id=int(officer_id))


def row_counts(engine: Engine) -> dict[str, int]:
    tables = {
        t.name: t
        for t in (
            alert_actions, alerts, ward_notifications, passage_crops, passages,
            checkpoint_minute_rollups, dead_letters, device_seq_gaps, public_requests,
            login_failures, officer_sessions, audit_log,
        )
    }  # fmt: skip
    with engine.connect() as conn:
        return {
            name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for name, t in tables.items()
        }


def exists_row(engine: Engine, table: Any, column: Any, value: Any) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).where(column == value)).scalar_one() == 1


def seed_everything(s: Seeder) -> None:
    """One row of each case the policy distinguishes (names say what must happen)."""
    s.passage("p_old_gone", 40 * DAY, crop=True)
    s.passage("p_recent_kept", 5 * DAY, crop=True)
    # Just inside / outside the cutoff (Vietnam midnight 28 days before today).
    cut = day_cutoff(s.now, 28)
    s.passage("p_edge_kept", s.now - cut)
    s.passage("p_edge_gone", s.now - cut + timedelta(seconds=2))
    # Alerts keep their passages; open and acknowledged ones are never deleted.
    s.alert("a_open_kept", s.passage("p_open_alert_kept", 500 * DAY), 500 * DAY, status="open")
    s.alert(
        "a_ack_kept",
        s.passage("p_ack_alert_kept", 450 * DAY),
        450 * DAY,
        status="acknowledged",
        actions=1,
    )
    s.alert(
        "a_resolved_recent_kept",
        s.passage("p_resolved_recent_kept", 60 * DAY),
        60 * DAY,
        status="resolved",
        resolved_age=59 * DAY,
        actions=2,
    )
    s.alert(
        "a_resolved_old_gone",
        s.passage("p_resolved_old_gone", 400 * DAY, crop=True),
        400 * DAY,
        status="resolved",
        resolved_age=399 * DAY,
        actions=2,
    )
    # Notifications: handled ones go with the passages; unhandled ones wait (90 days at most).
    s.notification(
        "n_handled_old_gone", s.passage("p_n_handled_gone", 40 * DAY), 40 * DAY, handled=True
    )
    s.notification(
        "n_unhandled_kept", s.passage("p_n_unhandled_kept", 40 * DAY), 40 * DAY, handled=False
    )
    s.notification(
        "n_unhandled_old_gone", s.passage("p_n_unhandled_gone", 100 * DAY), 100 * DAY, handled=False
    )
    s.notification(
        "n_handled_recent_kept", s.passage("p_n_recent_kept", 3 * DAY), 3 * DAY, handled=True
    )
    s.notification("n_status_old_gone", None, 30 * DAY, handled=True)
    # Rollups are kept 400 days by default.
    s.rollup(500 * DAY)
    s.rollup(40 * DAY)
    s.rollup(2 * DAY)
    s.many(dead_letters, [
        {"received_at": s.now - age, "topic": "kd/v1/dev/x/scan", "payload": b"{}",
         "reason": "bad_json"}
        for age in (40 * DAY, 30 * DAY, 2 * DAY)
    ])  # fmt: skip
    s.many(device_seq_gaps, [
        {"device_id": GATES[0], "first_missing": 5, "last_missing": 9, "detected_at": s.now - age}
        for age in (50 * DAY, DAY)
    ])  # fmt: skip
    s.many(public_requests, [
        {"at": s.now - age, "bucket": "declare", "ip": "203.0.113.7"}
        for age in (3 * DAY, timedelta(hours=1))
    ])  # fmt: skip
    s.many(login_failures, [
        {"at": s.now - age, "username": "ai.do", "ip": "203.0.113.7"}
        for age in (10 * DAY, timedelta(minutes=5))
    ])  # fmt: skip
    s.many(officer_sessions, [
        {"token_hash": f"{i:064x}", "officer_id": s.officer_id, "csrf_token": "c" * 64,
         "created_at": s.now - 13 * timedelta(hours=1), "last_seen_at": s.now - timedelta(hours=1),
         "expires_at": s.now + offset}
        for i, offset in enumerate((-timedelta(minutes=1), timedelta(hours=1)))
    ])  # fmt: skip
    s.many(audit_log, [
        {"at": s.now - 800 * DAY, "officer_id": s.officer_id, "action": "trace.place"}
    ])  # fmt: skip


EXPECTED = {
    "alert_actions": 2,
    "alerts": 1,
    "ward_notifications": 3,
    "passage_crops": 2,
    "passages": 5,
    "checkpoint_minute_rollups": 1,
    "dead_letters": 2,
    "device_seq_gaps": 1,
    "public_requests": 1,
    "login_failures": 1,
    "officer_sessions": 1,
    "audit_log": 0,
}


def test_policy_deletes_old_rows_and_keeps_the_rest(engine: Engine) -> None:
    s = make_seeder(engine)
    seed_everything(s)
    before = row_counts(engine)

    dry = run_retention(engine, POLICY, now=NOW, dry_run=True)
    assert dry.dry_run and dry.counts == EXPECTED
    assert row_counts(engine) == before, "a dry run deleted something"

    report = run_retention(engine, POLICY, now=NOW)
    assert list(report.counts) == list(TABLES)
    assert report.counts == EXPECTED
    after = row_counts(engine)
    assert {t: before[t] - after[t] for t in before} == EXPECTED
    for name, value in s.names.items():
        table = {"p": passages.c.event_id, "a": alerts.c.id, "n": ward_notifications.c.id}[name[0]]
        assert exists_row(engine, table.table, table, value) == name.endswith("_kept"), name
    # Their crops went with the deleted passages; the kept ones keep theirs.
    with engine.connect() as conn:
        crops = set(conn.execute(select(passage_crops.c.event_id)).scalars())
    assert crops == {s.names["p_recent_kept"]}
    assert "passages=5" in report.summary()

    again = run_retention(engine, POLICY, now=NOW)
    assert again.total == 0


def test_resolving_an_alert_later_releases_its_passage(engine: Engine) -> None:
    s = make_seeder(engine)
    event_id = s.passage("p", 500 * DAY)
    alert_id = s.alert("a", event_id, 500 * DAY, status="open")
    assert run_retention(engine, POLICY, now=NOW).total == 0
    with engine.begin() as conn:
        conn.execute(
            update(alerts)
            .where(alerts.c.id == alert_id)
            .values(status="resolved", resolved_at=NOW - 370 * DAY)
        )
    report = run_retention(engine, POLICY, now=NOW)
    assert (report.counts["alerts"], report.counts["passages"]) == (1, 1)


def test_deletes_in_bounded_chunks(engine: Engine) -> None:
    s = make_seeder(engine)
    for i in range(35):
        s.passage(f"p_old_{i}", 40 * DAY + i * timedelta(minutes=1), crop=True)
    for i in range(5):
        s.passage(f"p_new_{i}", DAY)
    s.many(dead_letters, [
        {"received_at": NOW - 40 * DAY, "topic": "t", "payload": b"x", "reason": "bad_json"}
        for _ in range(35)
    ])  # fmt: skip
    for i in range(35):
        s.rollup(500 * DAY + i * timedelta(minutes=1))
    policy = RetentionPolicy(chunk_rows=10, pause_s=0.0)

    dry = run_retention(engine, policy, now=NOW, dry_run=True)
    report = run_retention(engine, policy, now=NOW)
    for table in ("passages", "passage_crops", "dead_letters", "checkpoint_minute_rollups"):
        assert dry.counts[table] == report.counts[table] == 35, table
    # 35 rows at 10 per transaction: 4 transactions, none larger than 10 rows.
    assert report.chunks["dead_letters"] == 4
    assert report.chunks["checkpoint_minute_rollups"] == 4
    # The passages walk reads 10 keys a step: 40 rows (35 old, 5 recent) in 4 steps.
    assert report.chunks["passages"] == 4
    assert report.largest_chunk == 10
    assert row_counts(engine)["passages"] == 5


def test_a_stopped_run_ends_between_chunks(engine: Engine) -> None:
    s = make_seeder(engine)
    s.many(dead_letters, [
        {"received_at": NOW - 40 * DAY, "topic": "t", "payload": b"x", "reason": "bad_json"}
        for _ in range(30)
    ])  # fmt: skip
    asked: list[int] = []

    def stop_after_two() -> bool:
        asked.append(1)
        return len(asked) > 2

    report = run_retention(
        engine, RetentionPolicy(chunk_rows=10, pause_s=0.0), now=NOW, should_stop=stop_after_two
    )
    assert report.interrupted
    # Two chunks of the first walked tables ran, the dead letters never started.
    assert report.counts["dead_letters"] == 0
    assert row_counts(engine)["dead_letters"] == 30


def test_report_of_kept_days_unchanged(engine: Engine, signing_key: SigningKey) -> None:
    ingest(engine, signing_key)  # 12 passages late on 10 March and early on 11 March (local)
    with engine.begin() as conn:
        # Notified as the cars passed (the pipeline stamped them with today's clock),
        # and handled by the wards the next day.
        seen = select(passages.c.seen_at).where(
            passages.c.event_id == ward_notifications.c.event_id
        )
        conn.execute(
            update(ward_notifications).values(
                created_at=seen.scalar_subquery(), handled_at=datetime(2026, 3, 12, tzinfo=UTC)
            )
        )
    direct_before = counted_directly(engine)
    report_before = from_report(engine, DAY1, DAY2)
    assert report_before == direct_before
    # 28 days after the 11th (local): the 10th's passages are past the cutoff, the 11th's not.
    now = datetime(2026, 4, 8, 5, 0, tzinfo=UTC)
    assert cutoffs(POLICY, now).passages == datetime(2026, 3, 11, tzinfo=LOCAL_TZ)

    first = run_retention(engine, POLICY, now=now)
    flagged_day1 = sum(f for (_, d, _, _), (_, f) in direct_before.items() if d == DAY1)
    day1_total = sum(n for (_, d, _, _), (n, _) in direct_before.items() if d == DAY1)
    # The 10th's passages went, except those whose (open) alerts keep them.
    assert first.counts["passages"] == day1_total - flagged_day1 > 0
    assert first.counts["checkpoint_minute_rollups"] == 0
    direct_after = counted_directly(engine)
    day2 = {k: v for k, v in direct_before.items() if k[1] == DAY2}
    assert {k: v for k, v in direct_after.items() if k[1] == DAY2} == day2
    # The report reads the rollups: both days still read as before.
    assert from_report(engine, DAY1, DAY2) == report_before

    # Rollups kept as long as passages: the 10th leaves the report, the 11th is whole.
    short = RetentionPolicy(rollup_retention_days=28, chunk_rows=1000, pause_s=0.0)
    second = run_retention(engine, short, now=now)
    assert second.counts["checkpoint_minute_rollups"] > 0
    assert from_report(engine, DAY2, DAY2) == day2
    with engine.connect() as conn:
        places = checkpoint_places(conn)
        assert daily_report(conn, first_day=DAY1, last_day=DAY1, places=places).total.passages == 0


def test_only_one_run_at_a_time(engine: Engine) -> None:
    s = make_seeder(engine)
    s.passage("old", 40 * DAY)
    job = RetentionJob(engine, POLICY, interval_s=3600)
    with retention_lock(engine) as held:
        assert held
        with retention_lock(engine) as second:
            assert not second
        assert run_locked(engine, POLICY, now=NOW) is None
        assert job.run_once(now=NOW) is None
    assert job.skipped == 1
    report = job.run_once(now=NOW)
    assert report is not None and report.counts["passages"] == 1
    assert job.runs == 1 and job.last is report


def test_job_runs_at_start_then_waits(engine: Engine) -> None:
    s = make_seeder(engine, now=datetime.now(UTC))
    s.passage("old", 40 * DAY)
    s.passage("new", DAY)
    job = RetentionJob(engine, POLICY, interval_s=3600, start_delay_s=0)
    job.start()
    try:
        assert job.wait_for_runs(1, timeout=30)
    finally:
        job.stop()
    assert job.failures == 0 and job.runs == 1
    assert job.last is not None and job.last.counts["passages"] == 1
    assert row_counts(engine)["passages"] == 1


def test_disabled_retention_deletes_nothing_and_adds_no_step(
    engine: Engine, tmp_path: Path
) -> None:
    s = make_seeder(engine)
    s.passage("old", 400 * DAY)
    report = run_retention(engine, RetentionPolicy(retention_days=0), now=NOW)
    assert report.total == 0 and report.cutoffs is None
    assert row_counts(engine)["passages"] == 1

    def steps(**overrides: Any) -> list[str]:
        service = AggregatorService(
            AggregatorSettings(
                environment="development",
                db_url=f"sqlite:///{tmp_path / 'svc.db'}",
                keyring_path=tmp_path / "keyring.json",
                **overrides,
            )
        )
        try:
            return [step.name for step in service.steps]
        finally:
            service.engine.dispose()

    assert "retention" in steps()
    assert "retention" not in steps(retention_days=0)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("ALERT_RETENTION_DAYS", "ROLLUP_RETENTION_DAYS", "RETENTION_CHUNK_ROWS"):
        monkeypatch.delenv(f"KIEMDICH_{name}", raising=False)
    monkeypatch.setenv("KIEMDICH_RETENTION_DAYS", "28")
    yield


def test_cli_prints_counts_per_table(
    engine: Engine, capsys: pytest.CaptureFixture[str], cli_env: None
) -> None:
    s = make_seeder(engine, now=datetime.now(UTC))
    for i in range(3):
        s.passage(f"old{i}", 40 * DAY, crop=i == 0)
    s.passage("new", DAY)
    url = url_string(engine.url)

    assert kiemdich_main(["retention", "run", "--url", url, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "would delete" in out
    lines = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.strip()}
    assert lines["passages"] == "3" and lines["passage_crops"] == "1"
    assert row_counts(engine)["passages"] == 4

    assert kiemdich_main(["retention", "run", "--url", url, "--chunk-rows", "2"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.strip()}
    assert "deleted" in out
    assert lines["passages"] == "3" and lines["alerts"] == "0"
    assert row_counts(engine)["passages"] == 1

    with retention_lock(engine):
        assert kiemdich_main(["retention", "run", "--url", url]) == 3
    assert "another process" in capsys.readouterr().err
    assert kiemdich_main(["retention", "run", "--url", url, "--days", "-1"]) == 2
