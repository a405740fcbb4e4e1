"""The ward inbox: scope, filters, counts, marking handled (one and many), audited reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, insert, select

from aggregator.api.routes.inbox import _half, list_inbox, mark_handled, unhandled_counts
from aggregator.auth import accounts
from aggregator.auth.model import Officer, Scope
from aggregator.db.schema import Role, audit_log, ward_notifications
from tests.fixtures.web import LoginFactory
from tests.registry_world import BA_DINH, HOAN_KIEM, load_citizens, wire_app

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
POLICE = Officer(
    id=1,
    username="p",
    full_name="P",
    role=Role.WARD_POLICE,
    scopes=[Scope.parse(f"ward:{HOAN_KIEM}")],
)


def seed(engine: Engine) -> None:
    """Notifications: 3 in Hoàn Kiếm (arrival, departure, status change), 1 in Ba Đình."""
    load_citizens(engine)
    rows = [
        (HOAN_KIEM, "arrival", 1, {"checkpoint_id": "cp-a", "verdict": "green"}),
        (HOAN_KIEM, "departure", 2, {"checkpoint_id": "cp-a", "verdict": "yellow"}),
        (HOAN_KIEM, "status_change", 2, {"previous": "none", "status": "F0"}),
        (BA_DINH, "arrival", 3, {"checkpoint_id": "cp-b", "verdict": "green"}),
    ]
    with engine.begin() as conn:
        for i, (ward, kind, citizen, payload) in enumerate(rows):
            conn.execute(
                insert(ward_notifications).values(
                    ward_code=ward,
                    kind=kind,
                    citizen_id=citizen,
                    payload=payload,
                    created_at=T0 + timedelta(minutes=i),
                )
            )


def test_scope_filters_counts_and_marking(engine: Engine) -> None:
    seed(engine)
    with engine.begin() as conn:
        officer_id = accounts.create_officer(
            conn,
            username="cong-an-hk",
            full_name="Công an Hoàn Kiếm",
            role=Role.WARD_POLICE,
            scopes=POLICE.scopes,
            password="mat-khau-rat-dai-123",
        )
    police = POLICE.model_copy(update={"id": officer_id})
    with engine.begin() as conn:
        items = list_inbox(conn, officer=police)
        assert [i.kind.value for i in items] == ["status_change", "departure", "arrival"]
        assert items[0].full_name == "Trần Thị Bình"
        assert [i.kind.value for i in list_inbox(conn, officer=police, kind="arrival")] == [
            "arrival"
        ]
        assert unhandled_counts(conn, officer=police) == {
            "arrival": 1,
            "departure": 1,
            "status_change": 1,
        }
        other = [i.id for i in list_inbox(conn, officer=police.model_copy(update={"scopes": []}))]
        assert other == []  # ward police without a scope see nothing
        ba_dinh = [
            r
            for r in conn.execute(
                select(ward_notifications.c.id).where(ward_notifications.c.ward_code == BA_DINH)
            ).scalars()
        ]
        marked = mark_handled(conn, officer=police, ids=[items[0].id, items[1].id, *ba_dinh])
        assert marked == sorted([items[0].id, items[1].id])  # Ba Đình's is out of scope
        assert mark_handled(conn, officer=police, ids=[items[0].id]) == []  # already handled
        assert unhandled_counts(conn, officer=police)["status_change"] == 0
        handled = list_inbox(conn, officer=police, handled=True)
        assert {i.id for i in handled} == set(marked)
        assert all(i.handled_by == police.id for i in handled)
        assert len(list_inbox(conn, officer=police, handled=None)) == 3


def test_all_view_merges_the_handled_and_unhandled_halves(engine: Engine) -> None:
    """Both halves, newest first, cut at the limit; each half is read on its own index."""
    seed(engine)
    police = POLICE.model_copy(update={"id": None})
    with engine.begin() as conn:
        newest_first = list_inbox(conn, officer=police, handled=None)
        # Mark the middle one: the two halves now interleave in time.
        mark_handled(conn, officer=police, ids=[newest_first[1].id])
        both = list_inbox(conn, officer=police, handled=None)
        assert [i.id for i in both] == [i.id for i in newest_first]
        assert [i.handled_at is not None for i in both] == [False, True, False]
        assert [i.id for i in list_inbox(conn, officer=police, handled=None, limit=2)] == [
            i.id for i in newest_first[:2]
        ]
        if conn.dialect.name == "sqlite":
            for handled, index in ((False, "ix_ward_notifications_inbox"), (True, "_handled")):
                statement = _half(police, None, handled, 100).compile(
                    conn, compile_kwargs={"literal_binds": True}
                )
                plan = " ".join(
                    str(r[-1])
                    for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}").all()
                )
                assert index in plan, plan


@pytest.fixture
def world(web_app: FastAPI, web_engine: Engine, tmp_path: Any) -> Engine:
    wire_app(web_app, tmp_path)
    seed(web_engine)
    return web_engine


def test_inbox_api_and_page(world: Engine, login_as: LoginFactory, client: Any) -> None:
    police = login_as(Role.WARD_POLICE)
    items = police.client.get("/api/inbox").json()
    assert [i["kind"] for i in items] == ["status_change", "departure", "arrival"]
    assert police.client.get("/api/inbox/counts").json() == {
        "arrival": 1,
        "departure": 1,
        "status_change": 1,
    }
    with world.connect() as conn:
        reads = (
            conn.execute(
                select(audit_log.c.action).where(audit_log.c.officer_id == police.account.id)
            )
            .scalars()
            .all()
        )
    assert "inbox.view" in reads
    one = police.send_json("POST", "/api/inbox/handled", {"ids": [items[0]["id"], 999_999]})
    assert one.json() == {"handled": [items[0]["id"]], "not_found": [999_999]}
    page = police.client.get("/inbox")
    assert page.status_code == 200 and 'id="inbox-table"' in page.text
    assert "Nguyễn Văn An" in page.text and "Lê Thị Chi" not in page.text
    bulk = police.post_form("/inbox/handled", {"id": [str(items[1]["id"]), str(items[2]["id"])]})
    assert bulk.status_code == 303
    assert police.client.get("/api/inbox/counts").json() == {
        "arrival": 0,
        "departure": 0,
        "status_change": 0,
    }
    assert len(police.client.get("/api/inbox?handled=all").json()) == 3
    assert police.client.get("/api/inbox?handled=maybe").status_code == 422


def test_inbox_refusals(world: Engine, login_as: LoginFactory, client: Any) -> None:
    assert client.get("/api/inbox").status_code == 401
    assert client.get("/inbox").status_code in (303, 307)
    investigator = login_as(Role.INVESTIGATOR)
    assert investigator.client.get("/api/inbox").status_code == 403
    police = login_as(Role.WARD_POLICE)
    no_csrf = police.client.post("/api/inbox/handled", json={"ids": [1]})
    assert no_csrf.status_code == 403
    assert police.send_json("POST", "/api/inbox/handled", {"ids": []}).status_code == 422
    admin = login_as(Role.ADMIN)
    assert len(admin.client.get("/api/inbox").json()) == 4
