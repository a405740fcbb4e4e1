"""The deny-list publisher against a store that is being written to, on SQLite and PostgreSQL.

A rebuild must succeed while the ingest commits (on SQLite it failed with
"database is locked" at every poll while scans flowed, so gates never got
the list), revisions follow the content, and on SQLite the registry polls
use the partial index instead of scanning every citizen.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, update

import aggregator.ingest.denylist as denylist_module
from aggregator.db.schema import deny_list_revisions, devices
from aggregator.ingest.denylist import (
    DenyListPublisher,
    assign_revision,
    build_entries,
    registry_fingerprint,
)
from contract.messages import DenyList
from contract.token import SigningKey
from tests.ingest_world import GATES, World, build_world


@pytest.fixture
def world(engine: Engine, signing_key: SigningKey) -> World:
    return build_world(engine, signing_key)


def test_rebuild_succeeds_when_the_ingest_commits_meanwhile(
    engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = denylist_module.build_entries

    def read_then_someone_writes(conn: Any, *, now: datetime) -> Any:
        entries = real(conn, now=now)
        # Another connection (the ingest worker) commits between the list's
        # read and the revision's write.
        with engine.begin() as other:
            other.execute(update(devices).where(devices.c.id == GATES[0]).values(last_seq=99))
        return entries

    monkeypatch.setattr(denylist_module, "build_entries", read_then_someone_writes)
    sent: list[bytes] = []
    publisher = DenyListPublisher(engine, lambda _topic, body: sent.append(body) or True)
    published = publisher.tick()
    assert published is not None
    assert publisher.last is not None and publisher.last.revision == published.revision
    assert DenyList.model_validate_json(sent[-1]).revision == published.revision
    flagged = {world.people[n].declaration_id for n in ("f0", "f0_tam_tru", "f1", "deceased")}
    assert flagged | {world.people["revoked"].declaration_id} == {
        e.declaration_id for e in published.entries
    }


def test_revisions_follow_the_content(engine: Engine) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        first = assign_revision(conn, digest="a" * 64, entries=3, now=now)
    with engine.begin() as conn:
        same = assign_revision(conn, digest="a" * 64, entries=3, now=now)
    with engine.begin() as conn:
        changed = assign_revision(conn, digest="b" * 64, entries=4, now=now)
    with engine.begin() as conn:
        back = assign_revision(conn, digest="a" * 64, entries=3, now=now)
    assert same == first
    assert first < changed < back
    with engine.connect() as conn:
        rows = conn.execute(
            select(deny_list_revisions.c.digest, deny_list_revisions.c.entries).order_by(
                deny_list_revisions.c.revision
            )
        ).all()
    assert [(r.digest[0], r.entries) for r in rows] == [("a", 3), ("b", 4), ("a", 3)]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_registry_polls_use_the_flagged_index_on_sqlite(engine: Engine, world: World) -> None:
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with engine.connect() as conn:
            registry_fingerprint(conn)
            build_entries(conn, now=datetime.now(UTC))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    flagged = [(s, p) for s, p in seen if "health_status IN" in s]
    assert len(flagged) == 3  # per status, flagged declarations, the list itself
    with engine.connect() as conn:
        for statement, parameters in flagged:
            plan = " | ".join(
                row[-1]
                for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            )
            assert "ix_citizens_flagged" in plan, plan
            assert "SCAN citizens" not in plan, plan
