"""The venue screens in Chromium: register a venue, print its poster, check visitors in by
typed code and through a camera (Chromium's fake capture device fed a real pass QR).

Screenshots: venue-register.png, venue-poster.png, venue-checkin.png (``make screenshots``
keeps them in docs/screenshots/).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import segno
from fastapi import FastAPI
from sqlalchemy import Engine, select

from aggregator.auth import accounts
from aggregator.db.schema import Role, alerts, passages
from aggregator.db.venues import Venue, list_venues, register_venue
from contract.token import Keyring, SigningKey
from tests.fixtures.web import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, Account, OfficerFactory
from tests.ingest_world import World, build_world
from tests.test_browser_trace import log_in
from tests.test_venues import DONG_XUAN

pytestmark = pytest.mark.browser

VERDICT = "#checkin-verdict"


def venue_rows(engine: Engine, venue_id: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(passages.c.seq, passages.c.verdict, passages.c.citizen_id)
                .where(passages.c.checkpoint_id == venue_id)
                .order_by(passages.c.seq)
            )
        )


@pytest.fixture
def world(web_app: FastAPI, web_engine: Engine, signing_key: SigningKey, keyring: Keyring) -> World:
    # The app verifies passes with the issuer's keyring (as a started service would).
    web_app.state.service.verifier.replace_keyring(keyring)
    return build_world(web_engine, signing_key)


def test_register_print_the_poster_and_check_in_by_typed_code(
    page: Any,
    *,
    world: World,
    web_engine: Engine,
    live_server: str,
    make_officer: OfficerFactory,
    screenshot_path: Callable[[str], Path],
) -> None:
    base = live_server
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, base, make_officer(Role.VENUE_MANAGER, full_name="Phạm Thị Quản Lý"))
    page.goto(f"{base}/venues")
    page.click("#venue-new")
    page.fill("#f-name", "Bệnh viện Việt Đức")
    page.select_option("#f-category", "hospital")
    page.fill("#f-address", "Số 40 phố Tràng Thi")
    page.fill("#f-ward_q", "hoan kiem")
    page.wait_for_selector("#f-ward_code option[value='70']", state="attached")
    page.select_option("#f-ward_code", "70")
    page.fill("#f-contact_name", "Nguyễn Thị Điều Phối")
    page.fill("#f-contact_phone", "024 3825 3531")
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(screenshot_path("venue-register.png")), full_page=True)
    page.click("#venue-form button[type=submit]")
    page.wait_for_selector("#venue-created")
    assert "Bệnh viện Việt Đức" in page.inner_text("#venue-created")
    with web_engine.connect() as conn:
        [venue] = [v for v in list_venues(conn) if v.name == "Bệnh viện Việt Đức"]

    # The poster: its QR holds the venue's public address, readable by a phone.
    page.click(f"li[data-venue='{venue.id}'] a[href$='/poster']")
    page.wait_for_selector("#poster-qr")
    page.add_script_tag(url=f"{base}/static/vendor/jsqr/jsQR.js")
    read = page.evaluate(
        """async () => {
          const img = document.getElementById("poster-qr");
          await img.decode();
          const size = 600;
          const canvas = document.createElement("canvas");
          canvas.width = size; canvas.height = size;
          const context = canvas.getContext("2d");
          context.fillStyle = "#fff"; context.fillRect(0, 0, size, size);
          context.drawImage(img, 0, 0, size, size);
          const data = context.getImageData(0, 0, size, size);
          const code = window.jsQR(data.data, size, size);
          return code ? code.data : null;
        }"""
    )
    assert read == f"{base}/dia-diem/{venue.id}"
    assert "Hold it up to the staff's camera at the door." in page.inner_text("#poster")
    page.emulate_media(media="print")
    assert not page.is_visible(".topbar") and not page.is_visible("#poster-print")
    page.screenshot(path=str(screenshot_path("venue-poster.png")), full_page=True)
    page.emulate_media(media="screen")

    # The door: typed codes (the camera's fallback).
    page.goto(f"{base}/venues/{venue.id}/checkin")
    page.fill("#checkin-token", world.people["f0"].token)
    page.click("#checkin-submit")
    page.wait_for_selector(f"{VERDICT}[data-color='red']")
    assert page.inner_text("#checkin-headline") == "Không được vào"
    assert "F0" not in page.inner_text(VERDICT)
    page.fill("#checkin-token", world.people["an"].token)
    page.click("#checkin-submit")
    page.wait_for_selector(f"{VERDICT}[data-color='green']")
    assert page.inner_text("#checkin-headline") == "Mời vào"
    page.fill("#checkin-token", "https://example.com/not-a-pass")
    page.click("#checkin-submit")
    page.wait_for_selector(f"{VERDICT}[data-color='error']")
    assert page.locator("#session-log li").count() == 2
    assert page.inner_text("#session-counts [data-color='red']") == "1"
    rows = venue_rows(web_engine, venue.id)
    assert [(r.seq, r.verdict) for r in rows] == [(1, "red"), (2, "green")]
    with web_engine.connect() as conn:
        kinds = list(conn.execute(select(alerts.c.kind)).scalars())
    assert kinds == ["f0"]

    # The day's check-ins: initials only.
    page.click("a[href$='/passages']")
    page.wait_for_selector("#passages-table")
    assert page.locator("#passages-table tbody tr").count() == 2
    assert "N.V.F." in page.inner_text("#passages-table")
    # What a visitor's phone opens from the poster: no login needed.
    page.context.clear_cookies()
    page.goto(f"{base}/dia-diem/{venue.id}")
    assert page.inner_text("#public-title") == "Bệnh viện Việt Đức"
    assert "Nguyễn Thị Điều Phối" not in page.content()
    assert errors == []


def _qr_video(path: Path, text: str, *, width: int = 640, height: int = 480) -> Path:
    """A Y4M clip (what Chromium's fake camera plays, looping) showing ``text`` as a QR code."""
    modules = np.array(
        list(segno.make_qr(text, error="m").matrix_iter(scale=1, border=4)), dtype=np.uint8
    )
    scale = int(min(width, height) * 0.8) // modules.shape[0]
    code = np.kron(modules, np.ones((scale, scale), dtype=np.uint8))
    luma = np.full((height, width), 235, dtype=np.uint8)  # video-range white
    top, left = (height - code.shape[0]) // 2, (width - code.shape[1]) // 2
    luma[top : top + code.shape[0], left : left + code.shape[1]] = np.where(code == 1, 16, 235)
    chroma = np.full((height // 2, width // 2), 128, dtype=np.uint8).tobytes()
    frame = b"FRAME\n" + luma.tobytes() + chroma + chroma
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(5):
            out.write(frame)
    return path


def test_the_camera_reads_a_pass_and_checks_it_in_once(
    browser: Any,
    *,
    world: World,
    web_engine: Engine,
    live_server: str,
    make_officer: OfficerFactory,
    tmp_path: Path,
    screenshot_path: Callable[[str], Path],
) -> None:
    manager: Account = make_officer(Role.VENUE_MANAGER, full_name="Phạm Thị Quản Lý")
    with web_engine.begin() as conn:
        row = accounts.get_officer(conn, officer_id=manager.id)
        assert row is not None
        venue: Venue = register_venue(conn, details=DONG_XUAN, officer=row.officer())
    clip = _qr_video(tmp_path / "pass.y4m", world.people["f1"].token)
    # A second Chromium from the session's Playwright (a second Playwright cannot start
    # inside the first's loop), with a fake camera playing the clip.
    camera_browser = browser.browser_type.launch(
        executable_path=str(CHROMIUM),
        args=[
            *CHROMIUM_ARGS,
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}",
        ],
    )
    try:
        context = camera_browser.new_context(
            viewport=VIEWPORT, locale="vi-VN", permissions=["camera"]
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        log_in(page, live_server, manager)
        page.goto(f"{live_server}/venues/{venue.id}/checkin")
        page.click("#camera-toggle")
        page.wait_for_selector(f"{VERDICT}[data-color='red']", timeout=30_000)
        assert page.inner_text("#checkin-headline") == "Không được vào"
        assert page.get_attribute("#checkin", "data-camera") in {"jsqr", "barcode-detector"}
        # The camera keeps seeing the same pass: still one check-in.
        page.wait_for_function(
            "() => document.querySelectorAll('#session-log li').length === 1"
            " && document.getElementById('camera-video').currentTime > 1.5"
        )
        assert page.locator("#session-log li").count() == 1
        page.screenshot(path=str(screenshot_path("venue-checkin.png")), full_page=True)
        page.click("#camera-toggle")
        assert errors == []
        context.close()
    finally:
        camera_browser.close()
    rows = venue_rows(web_engine, venue.id)
    assert [(r.seq, r.verdict, r.citizen_id) for r in rows] == [
        (1, "red", world.people["f1"].citizen_id)
    ]
