"""The tracing and daily report screens in Chromium: run a trace, download its CSV, find an
F0's contacts and mark them F1 through the confirm dialog; read the daily report.

Screenshots: trace.png, report-daily.png (``make screenshots`` keeps them in docs/screenshots/).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from aggregator.api.app import ROUTERS
from aggregator.api.routes import reports as report_routes
from aggregator.api.routes import tracing as tracing_routes
from aggregator.db.registry import get_citizen
from aggregator.db.schema import HealthStatus, Role
from contract.token import SigningKey
from tests.fixtures.web import Account, OfficerFactory, ServerFactory
from tests.test_tracing import seed
from tests.test_web_reports import ingest

pytestmark = pytest.mark.browser


def serve(app: FastAPI, factory: ServerFactory) -> str:
    for router in (tracing_routes.router, report_routes.router):
        if router not in ROUTERS:
            app.include_router(router)
    return factory(app)


def log_in(page: Any, base: str, account: Account) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", account.username)
    page.fill("input[name=password]", account.password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()[:500]


def test_trace_a_place_download_csv_and_mark_contacts(
    page: Any,
    *,
    web_app: FastAPI,
    web_engine: Engine,
    live_server_factory: ServerFactory,
    make_officer: OfficerFactory,
    screenshot_path: Callable[[str], Path],
) -> None:
    ids = seed(web_engine)
    base = serve(web_app, live_server_factory)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, base, make_officer(Role.INVESTIGATOR, full_name="Vũ Điều Tra"))
    page.goto(f"{base}/trace")

    # Without a purpose nothing is asked of the server.
    page.click("#form-place button[type=submit]")
    assert page.get_attribute("#purpose", "aria-invalid") == "true"

    page.fill("#purpose", "Truy vết ca F0 số 17 tại chốt Pháp Vân")
    page.fill("#place-since", "2021-08-19T00:00")
    page.fill("#place-until", "2021-08-22T00:00")
    page.click("#form-place button[type=submit]")
    page.wait_for_selector("#result-place tbody tr")
    rows = page.locator("#result-place tbody tr")
    assert rows.count() == 7
    assert "Nguyễn Văn An" in page.inner_text("#result-place")
    page.screenshot(path=str(screenshot_path("trace.png")), full_page=True)

    with page.expect_download() as info:
        page.click("#result-place a[href*='place.csv']")
    content = Path(info.value.path()).read_bytes()
    assert content.startswith(b"\xef\xbb\xbf")
    assert "Đặng Minh Đức" in content.decode("utf-8-sig")

    page.click("#tab-contacts")
    page.fill("#contacts-q", "tran thi benh")
    page.fill("#contacts-since", "2021-08-19T00:00")
    page.fill("#contacts-until", "2021-08-22T00:00")
    page.click("#form-contacts button[type=submit]")
    page.wait_for_selector("#result-contacts tbody tr")
    assert page.locator("#result-contacts tbody tr").count() == 3
    page.click("#mark-f1")
    assert page.is_visible("#confirm-f1")
    assert "3" in page.inner_text("#confirm-f1-text")
    page.click("#confirm-f1-yes")
    page.wait_for_selector("#mark-status:not(:empty)")
    assert "3" in page.inner_text("#mark-status")
    with web_engine.connect() as conn:
        an = get_citizen(conn, citizen_id=ids["an"])
    assert an is not None and an.health_status is HealthStatus.F1
    assert errors == []


def test_daily_report_page(
    page: Any,
    *,
    web_app: FastAPI,
    web_engine: Engine,
    signing_key: SigningKey,
    live_server_factory: ServerFactory,
    make_officer: OfficerFactory,
    screenshot_path: Callable[[str], Path],
) -> None:
    ingest(web_engine, signing_key)
    base = serve(web_app, live_server_factory)
    log_in(page, base, make_officer(Role.COMMAND_CENTRE, full_name="Trung Tâm Chỉ Huy"))
    page.goto(f"{base}/reports/daily")
    page.fill("#first_day", "2026-03-10")
    page.fill("#last_day", "2026-03-11")
    page.click(".kd-report-form button[type=submit]")
    page.wait_for_selector("#report-checkpoints tbody tr")
    assert page.locator("#report-checkpoints tbody tr").count() == 4
    assert "Chốt Pháp Vân" in page.inner_text("#report-checkpoints")
    page.screenshot(path=str(screenshot_path("report-daily.png")), full_page=True)
    page.emulate_media(media="print")
    assert not page.is_visible(".kd-report-form")
    assert not page.is_visible(".topbar")
