"""The investigator's routes: page, JSON, exports, marking F1; refusals; the audit trail.

The world of tests/test_tracing.py (:func:`seed`) is written into the web tests'
migrated SQLite database; the app is the real one with the tracing router.
"""

from __future__ import annotations

import io
from typing import Any

import openpyxl
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from aggregator.api.app import ROUTERS
from aggregator.api.routes import tracing as tracing_routes
from aggregator.db.registry import get_citizen
from aggregator.db.schema import HealthStatus, Role, audit_log, ward_notifications
from tests.fixtures.web import LoggedIn, LoginFactory
from tests.test_tracing import BA_DINH, GATE, seed

WINDOW = {"since": "2021-08-20T14:45", "until": "2021-08-20T15:15"}  # T0 ± 15 min, Vietnam time
LONG = {"since": "2021-08-19T00:00", "until": "2021-08-22T00:00"}
PURPOSE = "truy vết ca F0 số 17"


@pytest.fixture
def ids(web_app: FastAPI, web_engine: Engine) -> dict[str, int]:
    if tracing_routes.router not in ROUTERS:
        web_app.include_router(tracing_routes.router)
    return seed(web_engine)


def audits(engine: Engine, action: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(audit_log.c.officer_id, audit_log.c.subject, audit_log.c.purpose,
                       audit_log.c.detail)
                .where(audit_log.c.action == action).order_by(audit_log.c.id)
            )
        )  # fmt: skip


def test_place_json_lists_everyone_and_audits_the_read(
    ids: dict[str, int], login_as: LoginFactory, web_engine: Engine
) -> None:
    me = login_as(Role.INVESTIGATOR)
    answer = me.client.get(
        "/api/trace/place", params={"checkpoint_id": GATE, **WINDOW, "purpose": PURPOSE}
    )
    assert answer.status_code == 200, answer.text
    hits = answer.json()["hits"]
    assert [h["full_name"] for h in hits] == [
        "Nguyễn Văn Anh", "Trần Thị Bệnh", "Đặng Minh Đức", None, "Nguyễn Văn An"
    ]  # fmt: skip
    assert hits[-1]["phone"] == "0912000002" and hits[-1]["temporary_ward"] == "Phường Ba Đình"
    [row] = audits(web_engine, "trace.place")
    assert row.officer_id == me.account.id
    assert row.subject == f"checkpoint:{GATE}" and row.purpose == PURPOSE
    assert row.detail["rows"] == 5


def test_place_pages_on_with_the_cursor(ids: dict[str, int], login_as: LoginFactory) -> None:
    me = login_as(Role.HEALTH_OFFICIAL)
    params: dict[str, Any] = {"checkpoint_id": GATE, **LONG, "purpose": PURPOSE, "limit": 4}
    first = me.client.get("/api/trace/place", params=params).json()
    cursor = first["next_after"]
    second = me.client.get(
        "/api/trace/place",
        params={**params, "after_seen_at": cursor["seen_at"], "after_event_id": cursor["event_id"]},
    ).json()
    assert len(first["hits"]) == 4 and len(second["hits"]) == 3
    assert second["next_after"] is None
    assert first["hits"][-1]["seen_at"] < second["hits"][0]["seen_at"]


@pytest.mark.parametrize("purpose", [None, "", "   ", "abc"])
def test_purpose_is_required_and_nothing_is_read_without_it(
    ids: dict[str, int], login_as: LoginFactory, web_engine: Engine, purpose: str | None
) -> None:
    me = login_as(Role.INVESTIGATOR)
    params = {"checkpoint_id": GATE, **WINDOW}
    if purpose is not None:
        params["purpose"] = purpose
    answer = me.client.get("/api/trace/place", params=params)
    assert answer.status_code in {400, 422}
    if answer.status_code == 400:
        assert answer.json()["detail"]["code"] == "purpose_required"
        assert "mục đích" in answer.json()["detail"]["message"]
    assert audits(web_engine, "trace.place") == []


def test_refusals_anonymous_wrong_role_and_outside_scope(
    ids: dict[str, int], client: TestClient, login_as: LoginFactory, web_engine: Engine
) -> None:
    params = {"checkpoint_id": GATE, **WINDOW, "purpose": PURPOSE}
    assert client.get("/api/trace/place", params=params).status_code == 401
    page = client.get("/trace")
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=%2Ftrace")
    for role in (Role.WARD_POLICE, Role.COMMAND_CENTRE, Role.CHECKPOINT_OFFICER):
        other = login_as(role)
        assert other.client.get("/api/trace/place", params=params).status_code == 403
        assert other.client.get("/trace").status_code == 403
    elsewhere = login_as(Role.INVESTIGATOR, scopes=[f"ward:{BA_DINH}"])
    refused = elsewhere.client.get("/api/trace/place", params=params)
    assert refused.status_code == 403
    assert refused.json()["detail"]["code"] == "checkpoint_forbidden"
    unknown = elsewhere.client.get("/api/trace/place", params={**params, "checkpoint_id": "nope"})
    assert unknown.status_code == 403
    # A scoped investigator's route holds only the checkpoints of the scope (none here).
    route = elsewhere.client.get(
        "/api/trace/route", params={"citizen_id": ids["an"], **LONG, "purpose": PURPOSE}
    )
    assert route.status_code == 200 and route.json()["stops"] == []
    assert audits(web_engine, "trace.place") == []


def test_bad_window_is_a_clear_400(ids: dict[str, int], login_as: LoginFactory) -> None:
    me = login_as(Role.INVESTIGATOR)
    answer = me.client.get(
        "/api/trace/place",
        params={"checkpoint_id": GATE, "since": WINDOW["until"], "until": WINDOW["since"],
                "purpose": PURPOSE},
    )  # fmt: skip
    assert answer.status_code == 400
    assert answer.json()["detail"]["code"] == "bad_window"


def test_citizen_search_ignores_diacritics_and_route_is_audited(
    ids: dict[str, int], login_as: LoginFactory, web_engine: Engine
) -> None:
    me = login_as(Role.INVESTIGATOR)
    found = me.client.get("/api/trace/citizens", params={"q": "nguyen van an", "purpose": PURPOSE})
    assert [c["full_name"] for c in found.json()] == ["Nguyễn Văn An", "Nguyễn Văn Anh"]
    route = me.client.get(
        "/api/trace/route", params={"citizen_id": ids["an"], **LONG, "purpose": PURPOSE}
    )
    assert route.status_code == 200
    assert [s["checkpoint_name"] for s in route.json()["stops"]] == [
        "Chốt Pháp Vân", "Chốt Pháp Vân", "Chợ Đồng Xuân"
    ]  # fmt: skip
    missing = me.client.get(
        "/api/trace/route", params={"citizen_id": 999, **LONG, "purpose": PURPOSE}
    )
    assert missing.status_code == 404
    assert [r.subject for r in audits(web_engine, "trace.search")] == ["citizens:search"]
    assert [r.subject for r in audits(web_engine, "trace.route")] == [f"citizen:{ids['an']}"]


def test_place_csv_has_bom_and_vietnamese(
    ids: dict[str, int], login_as: LoginFactory, web_engine: Engine
) -> None:
    me = login_as(Role.INVESTIGATOR)
    answer = me.client.get(
        "/api/trace/place.csv", params={"checkpoint_id": GATE, **WINDOW, "purpose": PURPOSE}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    assert answer.content.startswith(b"\xef\xbb\xbf")
    text = answer.content.decode("utf-8-sig")
    lines = text.splitlines()
    assert lines[0].startswith("Thời điểm,Chiều,Kết quả,Số CCCD,Họ và tên")
    assert len(lines) == 6
    assert "Đặng Minh Đức" in text and "Phường Ba Đình" in text
    assert "2021-08-20 15:03:00" in text  # T0 + 3 min in Vietnam time
    assert [r.subject for r in audits(web_engine, "trace.place.export")] == [f"checkpoint:{GATE}"]


def test_contacts_xlsx_opens_with_openpyxl(ids: dict[str, int], login_as: LoginFactory) -> None:
    me = login_as(Role.INVESTIGATOR)
    answer = me.client.get(
        "/api/trace/contacts.xlsx",
        params={"citizen_id": ids["f0"], **LONG, "purpose": PURPOSE, "lang": "en"},
    )
    assert answer.status_code == 200, answer.text
    book = openpyxl.load_workbook(io.BytesIO(answer.content))
    rows = list(book.active.iter_rows(values_only=True))
    assert rows[0][:2] == ("Identity number", "Full name")
    assert [r[1] for r in rows[1:]] == ["Nguyễn Văn An", "Đặng Minh Đức", "Nguyễn Văn Anh"]
    assert rows[1][7] == 2  # shared passages


def test_route_and_contacts_exports_csv(ids: dict[str, int], login_as: LoginFactory) -> None:
    me = login_as(Role.ADMIN)
    route = me.client.get(
        "/api/trace/route.xlsx", params={"citizen_id": ids["an"], **LONG, "purpose": PURPOSE}
    )
    sheet = openpyxl.load_workbook(io.BytesIO(route.content)).active
    assert [r[2] for r in sheet.iter_rows(min_row=2, values_only=True)] == [
        "Chốt Pháp Vân", "Chốt Pháp Vân", "Chợ Đồng Xuân"
    ]  # fmt: skip
    contacts = me.client.get(
        "/api/trace/contacts.csv", params={"citizen_id": ids["f0"], **LONG, "purpose": PURPOSE}
    )
    assert contacts.content.startswith(b"\xef\xbb\xbf")
    assert contacts.content.decode("utf-8-sig").count("\n") == 4


def test_mark_f1_changes_status_notifies_and_audits(
    ids: dict[str, int], login_as: LoginFactory, web_engine: Engine
) -> None:
    me: LoggedIn = login_as(Role.HEALTH_OFFICIAL)
    body = {"source_citizen_id": ids["f0"], "citizen_ids": [ids["an"], ids["other_f0"]]}
    no_csrf = me.client.post("/api/trace/contacts/mark-f1", json=body)
    assert no_csrf.status_code == 403
    answer = me.send_json("POST", "/api/trace/contacts/mark-f1", body)
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert (out["changed"], out["kept"], out["denylist_published"]) == (1, 1, False)
    with web_engine.connect() as conn:
        an = get_citizen(conn, citizen_id=ids["an"])
        notes = list(
            conn.execute(select(ward_notifications.c.ward_code, ward_notifications.c.kind))
        )
    assert an is not None and an.health_status is HealthStatus.F1
    assert [tuple(n) for n in notes] == [(BA_DINH, "status_change")]
    assert [r.subject for r in audits(web_engine, "citizen.status.f1")] == [f"citizen:{ids['an']}"]


def test_mark_f1_refusals(ids: dict[str, int], login_as: LoginFactory, web_engine: Engine) -> None:
    body = {"source_citizen_id": ids["f0"], "citizen_ids": [ids["an"]]}
    police = login_as(Role.WARD_POLICE)
    assert police.send_json("POST", "/api/trace/contacts/mark-f1", body).status_code == 403
    me = login_as(Role.INVESTIGATOR)
    unknown = me.send_json(
        "POST", "/api/trace/contacts/mark-f1", {**body, "citizen_ids": [ids["an"], 999]}
    )
    assert unknown.status_code == 404
    itself = me.send_json(
        "POST", "/api/trace/contacts/mark-f1", {**body, "citizen_ids": [ids["f0"]]}
    )
    assert itself.status_code == 400
    extra = me.send_json("POST", "/api/trace/contacts/mark-f1", {**body, "extra": 1})
    assert extra.status_code == 422
    with web_engine.connect() as conn:
        an = get_citizen(conn, citizen_id=ids["an"])
    assert an is not None and an.health_status is HealthStatus.NONE


def test_trace_page_renders_in_both_languages(ids: dict[str, int], login_as: LoginFactory) -> None:
    me = login_as(Role.INVESTIGATOR)
    vi = me.client.get("/trace")
    assert vi.status_code == 200
    assert "Truy vết dịch tễ" in vi.text and "Chốt Pháp Vân" in vi.text
    assert "Đánh dấu F1 và báo phường" in vi.text
    assert vi.headers["cache-control"] == "no-store"
    en = me.client.get("/trace?lang=en")
    assert "Contact tracing" in en.text and "Mark as F1 and notify wards" in en.text
    assert 'href="/trace"' in en.text  # the navigation lists the page
