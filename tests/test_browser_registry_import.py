"""The health department's CSV import in Chromium, and the ward inbox it feeds.

A health official uploads a file with bad rows: the page previews it with an
error next to each bad row and imports nothing. A clean file is previewed (dry
run), then imported, and the page gives the count. The ward police of Hoàn Kiếm
then find the status changes of their residents in the inbox and mark them
handled, one with its own button while another is ticked (only that one goes).

Screenshots: registry-import.png, inbox.png (``make screenshots`` keeps them in docs/screenshots/).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, func, insert, select

from aggregator.db.schema import Role, audit_log, citizens, ward_notifications
from tests.fixtures.web import OfficerFactory, ServerFactory
from tests.registry_world import AN_ID, BINH_ID, CHI_ID, HOAN_KIEM, load_citizens, wire_app
from tests.test_browser_trace import log_in

pytestmark = pytest.mark.browser

YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
CLEAN = f"identity_no,status,since,doses\n{AN_ID},F1,{YESTERDAY},2\n{BINH_ID},F0,{YESTERDAY},\n"
BAD = (
    CLEAN
    + f"001090999999,F1,{YESTERDAY},\n"  # nobody has this number
    + f"{CHI_ID},F9,{YESTERDAY},\n"  # no such status
    + f"{AN_ID},recovered,{YESTERDAY},\n"  # An twice
)


def statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(select(citizens.c.identity_no, citizens.c.health_status))
        return {identity_no: status for identity_no, status in rows}


def upload(page: Any, content: str, *, dry_run: bool) -> None:
    page.set_input_files(
        "#f-file", files=[{"name": "f0.csv", "mimeType": "text/csv", "buffer": content.encode()}]
    )
    page.set_checked("#f-dry_run", dry_run)
    # The page being left may show a report already: wait for the answer's page.
    with page.expect_navigation():
        page.click("#import-form button[type=submit]")


def test_import_preview_with_errors_then_a_clean_file(
    page: Any,
    *,
    web_app: FastAPI,
    web_engine: Engine,
    tmp_path: Path,
    live_server_factory: ServerFactory,
    make_officer: OfficerFactory,
    screenshot_path: Callable[[str], Path],
) -> None:
    load_citizens(web_engine)
    wire_app(web_app, tmp_path)
    base = live_server_factory(web_app)
    before = statuses(web_engine)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, base, make_officer(Role.HEALTH_OFFICIAL, full_name="Phạm Y Tế"))
    page.goto(f"{base}/registry")
    assert page.is_checked("#f-dry_run")  # a preview unless asked otherwise

    # A file with bad rows, previewed: the per-row report.
    upload(page, BAD, dry_run=True)
    report = page.inner_text("#import-report .notice-error")
    assert "Không nhập: 3/5 dòng có lỗi" in report
    rows = page.locator("#import-table tbody tr")
    assert rows.count() == 5
    problems = [rows.nth(i).locator("td").last.inner_text().strip() for i in range(5)]
    assert problems[:2] == ["", ""]
    assert problems[2] == "Không có công dân với số CCCD này."
    assert problems[3] != "" and "F9" in rows.nth(3).inner_text()
    assert "dòng 2" in problems[4]  # the repeated number names its first line
    assert [rows.nth(i).get_attribute("class") for i in range(5)] == [""] * 2 + ["row-error"] * 3
    # Good rows name the person whose status would change (an audited read).
    assert "Nguyễn Văn An" in rows.nth(0).inner_text()
    page.screenshot(path=str(screenshot_path("registry-import.png")), full_page=True)
    # Imported for real, the same file is refused whole: not even its good rows go in.
    upload(page, BAD, dry_run=False)
    assert "Không nhập: 3/5 dòng có lỗi" in page.inner_text("#import-report .notice-error")
    assert statuses(web_engine) == before

    # The clean file: previewed first (still nothing saved), then imported.
    upload(page, CLEAN, dry_run=True)
    assert "Xem trước: 2 dòng hợp lệ, chưa lưu." in page.inner_text("#import-report")
    assert statuses(web_engine) == before
    upload(page, CLEAN, dry_run=False)
    assert "Đã nhập 2 dòng (2 thay đổi)." in page.inner_text("#import-report .notice-ok")
    after = statuses(web_engine)
    assert (after[AN_ID], after[BINH_ID], after[CHI_ID]) == ("F1", "F0", "none")
    with web_engine.connect() as conn:
        actions = conn.execute(select(audit_log.c.action)).scalars().all()
    assert actions.count("registry.import") == 1
    assert actions.count("registry.import.preview") == 3  # bad file twice, clean dry run
    assert errors == []


def test_ward_inbox_marks_one_or_the_ticked_ones(
    page: Any,
    *,
    web_app: FastAPI,
    web_engine: Engine,
    live_server_factory: ServerFactory,
    make_officer: OfficerFactory,
    screenshot_path: Callable[[str], Path],
) -> None:
    load_citizens(web_engine)
    at = datetime.now(UTC) - timedelta(hours=2)
    rows = [
        ("arrival", 1, {"checkpoint_id": "cp-phap-van", "verdict": "green", "direction": "in"}),
        ("departure", 2, {"checkpoint_id": "cp-phap-van", "verdict": "yellow"}),
        ("status_change", 2, {"previous": "none", "status": "F0"}),
        ("status_change", 1, {"previous": "F1", "status": "recovered"}),
    ]
    with web_engine.begin() as conn:
        for i, (kind, citizen, payload) in enumerate(rows):
            conn.execute(
                insert(ward_notifications).values(
                    ward_code=HOAN_KIEM,
                    kind=kind,
                    citizen_id=citizen,
                    payload=payload,
                    created_at=at + timedelta(minutes=10 * i),
                )
            )
    base = live_server_factory(web_app)
    log_in(page, base, make_officer(Role.WARD_POLICE, full_name="Đỗ Công An"))
    page.goto(f"{base}/inbox")
    table = page.locator("#inbox-table tbody tr")
    assert table.count() == 4
    text = page.inner_text("#inbox-table")
    assert "Trần Thị Bình" in text and "Nguyễn Văn An" in text
    # Statuses and verdicts are shown in words, not as codes.
    assert "F0 — ca bệnh" in text and "Cho qua" in text
    page.screenshot(path=str(screenshot_path("inbox.png")), full_page=True)

    # Tick the newest, then press the oldest row's own button: only that one is handled.
    newest, oldest = table.nth(0), table.nth(3)
    newest.locator("input[type=checkbox]").check()
    with page.expect_navigation():
        oldest.locator("button").click()
    assert page.locator("#inbox-table tbody tr").count() == 3
    assert page.inner_text("#inbox-counts [data-kind=arrival]") == "0"
    # The ticked rows with the bulk button.
    for i in range(2):
        page.locator("#inbox-table tbody tr").nth(i).locator("input[type=checkbox]").check()
    with page.expect_navigation():
        page.click("#inbox-mark-selected")
    assert page.locator("#inbox-table tbody tr").count() == 1
    with web_engine.connect() as conn:
        handled = conn.execute(
            select(func.count()).where(ward_notifications.c.handled_at.is_not(None))
        ).scalar_one()
    assert handled == 3
