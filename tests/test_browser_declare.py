"""The public health declaration in Chromium: fill the form as a citizen would (ward pickers
searching as they type), get the pass, and read its QR back with the edge's own decoder, from
the PNG the page offers and from a screenshot of the code on screen. Bad input shows the
Vietnamese message next to its field and files nothing.

Screenshots: declare.png, declare-pass.png (``make screenshots`` keeps them in docs/screenshots/).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, func, select

from aggregator.db.declarations import LOCAL_TZ
from aggregator.db.schema import declarations, public_requests
from contract.token import Keyring, PassClaims, SigningKey, decode_token, verify_token
from edge.vision.decoders import make_decoder
from tests.fixtures.web import ServerFactory
from tests.registry_world import BA_DINH, HOAN_KIEM, load_citizens, wire_app

pytestmark = pytest.mark.browser


def edge_read(image: bytes) -> list[str]:
    """What the gate's decoder (zxing, the edge default) reads in a PNG."""
    gray = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert gray is not None, "not an image"
    return [d.text for d in make_decoder("zxing").decode(gray)]


@pytest.fixture
def site(
    web_app: FastAPI, web_engine: Engine, tmp_path: Path, live_server_factory: ServerFactory
) -> tuple[str, SigningKey]:
    """The app over HTTP with the test registry and an issuing key."""
    load_citizens(web_engine)
    key = wire_app(web_app, tmp_path, declare_max_per_ip=50)
    return live_server_factory(web_app), key


def pick_ward(page: Any, side: str, typed: str, code: int) -> None:
    """Type in a ward picker's search box and choose ``code`` among the matches."""
    page.fill(f"#f-{side}_q", typed)
    page.wait_for_selector(f"#f-{side}_ward_code option[value='{code}']", state="attached")
    page.select_option(f"#f-{side}_ward_code", str(code))


def tomorrow() -> str:
    return (datetime.now(LOCAL_TZ).date() + timedelta(days=1)).isoformat()


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_declare_and_read_the_pass_back_with_the_edge_decoder(
    page: Any,
    *,
    site: tuple[str, SigningKey],
    web_engine: Engine,
    screenshot_path: Callable[[str], Path],
) -> None:
    base, key = site
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/khai-bao")
    assert page.inner_text("h1") == "Khai báo y tế"
    page.fill("#f-identity_no", "001 090 000 001")
    page.fill("#f-full_name", "nguyen van an")  # the registry's "Nguyễn Văn An"
    page.fill("#f-date_of_birth", "1990-05-17")
    pick_ward(page, "origin", "ba dinh", BA_DINH)
    page.fill("#f-origin_detail", "12 Đội Cấn")
    pick_ward(page, "destination", "hoàn kiếm", HOAN_KIEM)
    page.fill("#f-travel_date", tomorrow())
    page.check("input[name=symptoms][value=cough]")
    # Filling scrolled the page; a full-page shot from the top keeps the sticky bar on top.
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(screenshot_path("declare.png")), full_page=True)

    page.click("#declare-form button[type=submit]")
    page.wait_for_selector("#pass-qr")
    assert page.inner_text("#pass-initials") == "N.V.A."
    # The QR is drawn (an SVG image that loaded), not just linked.
    page.wait_for_function("document.getElementById('pass-qr').naturalWidth > 0")
    page.screenshot(path=str(screenshot_path("declare-pass.png")), full_page=True)

    with web_engine.connect() as conn:
        row = conn.execute(select(declarations)).one()
    assert row.citizen_id == 1 and row.source == "web" and row.symptoms == ["cough"]
    assert (row.origin_ward_code, row.destination_ward_code) == (BA_DINH, HOAN_KIEM)
    assert page.inner_text(".kd-pass-facts code") == str(row.id)

    with page.expect_download() as info:
        page.click("#pass-png")
    assert info.value.suggested_filename == f"kiem-dich-{row.id}.png"
    from_png = edge_read(Path(info.value.path()).read_bytes())
    from_screen = edge_read(page.locator("#pass-qr").screenshot())
    assert len(from_png) == 1 and from_screen == from_png
    token = from_png[0]
    assert token == page.get_attribute("#pass-qr", "data-token")
    # Valid from the travel date (tomorrow): checked as the gate will, that day.
    claims = decode_token(token)
    assert isinstance(claims, PassClaims)
    at_gate = claims.issued_at + 3600
    assert datetime.fromtimestamp(at_gate, LOCAL_TZ).date().isoformat() == tomorrow()
    verdict = verify_token(token, Keyring([key.public()]), now=at_gate)
    assert verdict.ok, verdict
    assert verdict.claims is not None and verdict.claims.declaration_id == row.id
    assert errors == []


def test_bad_input_is_shown_next_to_its_field_and_files_nothing(
    page: Any, *, site: tuple[str, SigningKey], web_engine: Engine
) -> None:
    base, _ = site
    page.goto(f"{base}/khai-bao")
    page.fill("#f-identity_no", "00109000000")  # 11 digits
    page.fill("#f-full_name", "Nguyễn Văn An")
    page.fill("#f-date_of_birth", "1990-05-17")
    pick_ward(page, "origin", "ba dinh", BA_DINH)
    page.fill("#f-destination_q", "không có phường này")
    page.wait_for_selector("#f-destination_q ~ [data-ward-empty]:not([hidden])")
    page.fill("#f-travel_date", tomorrow())
    with page.expect_navigation():
        page.click("#declare-form button[type=submit]")

    identity = page.locator("#f-identity_no")
    assert identity.get_attribute("aria-invalid") == "true"
    assert page.inner_text("#identity_no-error") == "Số CCCD phải gồm đúng 12 chữ số."
    assert page.locator("#destination_ward_code-error").is_visible()
    assert page.get_attribute("#f-destination_ward_code", "aria-invalid") == "true"
    # What was typed is kept, the ward chosen too.
    assert page.input_value("#f-full_name") == "Nguyễn Văn An"
    assert page.input_value("#f-origin_ward_code") == str(BA_DINH)

    # A ward code that does not exist (a stale page, a tampered form) is refused by the server.
    page.fill("#f-identity_no", "001090000001")
    page.evaluate(
        """() => {
          const select = document.getElementById('f-destination_ward_code');
          select.replaceChildren(new Option('Phường không tồn tại', '999999', true, true));
        }"""
    )
    # The page being left shows a destination error too: wait for the new one.
    with page.expect_navigation():
        page.click("#declare-form button[type=submit]")
    assert page.inner_text("#destination_ward_code-error") == "Chọn một phường/xã trong danh sách."
    assert page.locator("#identity_no-error").count() == 0
    assert count(web_engine, declarations) == 0
    assert count(web_engine, public_requests) == 2  # each attempt counted for the rate limit
