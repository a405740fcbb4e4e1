"""Daily reports: figures from the rollups equal counting the passages, on both backends;
the page, JSON and exports; roles and scopes.

Passages go through the real ingest pipeline (which writes the rollups) at chosen
times around local midnight (17:00 UTC), so day and hour bucketing are both exercised.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import openpyxl
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, exists, select

from aggregator.api.app import ROUTERS
from aggregator.api.routes import reports as report_routes
from aggregator.db.places import checkpoint_places
from aggregator.db.reports import ReportInputError, daily_report
from aggregator.db.schema import Role, alerts, passages
from aggregator.db.traffic import LOCAL_TZ
from aggregator.ingest.pipeline import IngestPipeline
from aggregator.ingest.tokens import TokenVerifier
from aggregator.ingest.validate import Inbound
from contract.messages import Direction, encode
from contract.token import Keyring, SigningKey
from contract.topics import scan_topic
from tests.fixtures.web import LoginFactory
from tests.ingest_world import BA_DINH, CHECKPOINT, GATES, OTHER_CHECKPOINT, OTHER_GATE, build_world

NOW = datetime(2026, 3, 10, 16, 0, tzinfo=UTC)  # 23:00 in Vietnam
DAY1, DAY2 = date(2026, 3, 10), date(2026, 3, 11)


def ingest(engine: Engine, key: SigningKey) -> None:
    """Twelve passages from 23:10 on the 20th to 01:40 on the 21st (Vietnam time)."""
    world = build_world(engine, key, now=NOW)
    p = world.people
    plan = [
        (p["an"], GATES[0], CHECKPOINT, 10, Direction.IN),
        (p["binh"], GATES[1], CHECKPOINT, 12, Direction.IN),
        (p["f0"], GATES[0], CHECKPOINT, 30, Direction.IN),  # alert
        (p["f1"], GATES[1], CHECKPOINT, 59, Direction.IN),  # alert
        (p["an"], OTHER_GATE, OTHER_CHECKPOINT, 45, Direction.OUT),
        (p["f2"], GATES[0], CHECKPOINT, 61, Direction.IN),  # 00:01 on the 21st
        (p["recovered"], GATES[0], CHECKPOINT, 75, Direction.IN),
        (p["deceased"], GATES[1], CHECKPOINT, 90, Direction.IN),  # alert
        (p["binh"], OTHER_GATE, OTHER_CHECKPOINT, 100, Direction.OUT),
        (p["f0_tam_tru"], OTHER_GATE, OTHER_CHECKPOINT, 130, Direction.OUT),  # alert
        (p["an"], GATES[0], CHECKPOINT, 160, Direction.IN),
        (p["revoked"], GATES[1], CHECKPOINT, 161, Direction.IN),  # alert (revoked)
    ]
    events = [
        world.scan(person.token, device_id=gate, checkpoint_id=cp, direction=direction,
                   seen_at=NOW + timedelta(minutes=minutes))
        for person, gate, cp, minutes, direction in plan
    ]  # fmt: skip
    pipeline = IngestPipeline(engine, TokenVerifier(Keyring.from_keys([key.public()])))
    received = NOW + timedelta(hours=3)
    items = [Inbound(scan_topic(e.device_id), encode(e), received) for e in events]
    outcome = pipeline.store(pipeline.prepare(items))
    assert not outcome.letters


def counted_directly(engine: Engine) -> dict[tuple[str, date, int, str], tuple[int, int]]:
    """(checkpoint, local day, local hour, direction) -> (passages, flagged) from the passages."""
    flagged = exists().where(alerts.c.event_id == passages.c.event_id)
    with engine.connect() as conn:
        rows = conn.execute(
            select(passages.c.checkpoint_id, passages.c.seen_at, passages.c.received_at,
                   passages.c.clock_skew_s, passages.c.direction, flagged.label("flagged"))
        ).all()  # fmt: skip
    n: Counter[tuple[str, date, int, str]] = Counter()
    f: Counter[tuple[str, date, int, str]] = Counter()
    for cp, seen, received, skew, direction, is_flagged in rows:
        local = (seen if skew is None else received).astimezone(LOCAL_TZ)
        key = (cp, local.date(), local.hour, direction)
        n[key] += 1
        f[key] += int(bool(is_flagged))
    return {key: (n[key], f[key]) for key in n}


def from_report(
    engine: Engine, first: date, last: date
) -> dict[tuple[str, date, int, str], tuple[int, int]]:
    with engine.connect() as conn:
        report = daily_report(conn, first_day=first, last_day=last, places=checkpoint_places(conn))
    out: dict[tuple[str, date, int, str], tuple[int, int]] = {}
    for row in report.by_checkpoint_hour:
        c = row.counts
        # Flagged is per checkpoint-hour; the test's checkpoints count one direction each.
        assert row.checkpoint_id is not None
        if c.passages_in:
            out[row.checkpoint_id, row.day, row.hour, "in"] = (c.passages_in, c.flagged)
        if c.passages_out:
            out[row.checkpoint_id, row.day, row.hour, "out"] = (c.passages_out, c.flagged)
    return out


def test_report_equals_counting_passages(engine: Engine, signing_key: SigningKey) -> None:
    ingest(engine, signing_key)
    direct = counted_directly(engine)
    assert sum(n for n, _ in direct.values()) == 12
    assert from_report(engine, DAY1, DAY2) == direct
    with engine.connect() as conn:
        places = checkpoint_places(conn)
        one = daily_report(conn, first_day=DAY1, last_day=DAY1, places=places)
        two = daily_report(conn, first_day=DAY2, last_day=DAY2, places=places)
        both = daily_report(conn, first_day=DAY1, last_day=DAY2, places=places)
    day1 = sum((n for (_, d, _, _), (n, _) in direct.items() if d == DAY1))
    assert one.total.passages == day1 == 5
    assert two.total.passages == 7
    assert both.total == one.total + two.total
    assert both.total.flagged == sum(fl for _, fl in direct.values()) == 5
    assert sum(r.counts.passages for r in both.by_hour) == 12
    assert [(r.name, r.counts.passages) for r in both.by_ward] == [
        ("Phường Hoàn Kiếm", 9), ("Phường Ba Đình", 3)
    ]  # fmt: skip
    assert [(r.name, r.checkpoints, r.counts.passages) for r in both.by_province] == [
        ("Thành phố Hà Nội", 2, 12)
    ]


def test_report_refuses_bad_days(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(ReportInputError):
        daily_report(conn, first_day=DAY2, last_day=DAY1, places={})
    with engine.connect() as conn, pytest.raises(ReportInputError):
        daily_report(conn, first_day=DAY1, last_day=DAY1 + timedelta(days=40), places={})


@pytest.fixture
def world_app(web_app: FastAPI, web_engine: Engine, signing_key: SigningKey) -> FastAPI:
    if report_routes.router not in ROUTERS:
        web_app.include_router(report_routes.router)
    ingest(web_engine, signing_key)
    return web_app


DAYS = {"first_day": "2026-03-10", "last_day": "2026-03-11"}


def test_json_and_page_for_the_command_centre(world_app: FastAPI, login_as: LoginFactory) -> None:
    me = login_as(Role.COMMAND_CENTRE)
    answer = me.client.get("/api/reports/daily", params=DAYS)
    assert answer.status_code == 200
    assert answer.json()["total"] == {"passages_in": 9, "passages_out": 3, "flagged": 5}
    page = me.client.get("/reports/daily", params=DAYS)
    assert page.status_code == 200
    assert "Báo cáo lượt qua lại theo ngày" in page.text and "Chốt Pháp Vân" in page.text
    assert "reports.css" in page.text and "@media print" not in page.text
    en = me.client.get("/reports/daily", params={**DAYS, "lang": "en"})
    assert "Daily passages report" in en.text


def test_ward_police_see_only_their_wards(world_app: FastAPI, login_as: LoginFactory) -> None:
    police = login_as(Role.WARD_POLICE, scopes=[f"ward:{BA_DINH}"])
    report = police.client.get("/api/reports/daily", params=DAYS).json()
    assert {r["checkpoint_id"] for r in report["by_checkpoint_day"]} == {OTHER_CHECKPOINT}
    assert report["total"] == {"passages_in": 0, "passages_out": 3, "flagged": 1}
    page = police.client.get("/reports/daily", params=DAYS)
    assert "Chốt Pháp Vân" not in page.text and "Chốt cầu Thăng Long" in page.text


def test_refusals(world_app: FastAPI, client: TestClient, login_as: LoginFactory) -> None:
    assert client.get("/api/reports/daily", params=DAYS).status_code == 401
    assert client.get("/reports/daily").status_code == 303
    for role in (Role.INVESTIGATOR, Role.CHECKPOINT_OFFICER, Role.VENUE_MANAGER):
        other = login_as(role)
        assert other.client.get("/api/reports/daily", params=DAYS).status_code == 403
        assert other.client.get("/reports/daily").status_code == 403
    admin = login_as(Role.ADMIN)
    bad = admin.client.get(
        "/api/reports/daily", params={"first_day": "2026-03-11", "last_day": "2026-03-10"}
    )
    assert bad.status_code == 400 and bad.json()["detail"]["code"] == "bad_days"
    assert (
        admin.client.get("/api/reports/daily", params={"first_day": "hôm qua"}).status_code == 422
    )


def test_csv_has_bom_and_vietnamese(world_app: FastAPI, login_as: LoginFactory) -> None:
    me = login_as(Role.ADMIN)
    answer = me.client.get("/api/reports/daily.csv", params={**DAYS, "table": "wards"})
    assert answer.status_code == 200
    assert answer.content.startswith(b"\xef\xbb\xbf")
    lines = answer.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "Phường/xã,Tỉnh/thành phố,Số chốt,Vào,Ra,Cảnh báo"
    assert lines[1:] == [
        "Phường Hoàn Kiếm,Thành phố Hà Nội,1,9,0,4",
        "Phường Ba Đình,Thành phố Hà Nội,1,0,3,1",
    ]
    assert 'filename="bao-cao-20260310-20260311-wards.csv"' in answer.headers["content-disposition"]


def test_xlsx_opens_with_every_table(world_app: FastAPI, login_as: LoginFactory) -> None:
    me = login_as(Role.COMMAND_CENTRE)
    answer = me.client.get("/api/reports/daily.xlsx", params=DAYS)
    book = openpyxl.load_workbook(io.BytesIO(answer.content))
    assert book.sheetnames == [
        "Theo chốt, theo ngày",
        "Theo giờ",
        "Theo phường-xã",
        "Theo tỉnh-thành phố",
    ]
    rows: Sequence[tuple[object, ...]] = list(
        book["Theo chốt, theo ngày"].iter_rows(values_only=True)
    )
    assert rows[0][0] == "Ngày"
    assert sum(int(r[5]) + int(r[6]) for r in rows[1:]) == 12  # type: ignore[arg-type]
    assert rows[1][0] == datetime(2026, 3, 10)
