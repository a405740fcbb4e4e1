"""Injection in names, declarations and QR codes is inert: SQL stays data, HTML stays text.

A citizen is registered as ``<script>window.__pwned=1</script>Nguyễn'; DROP TABLE
passages;--`` with a declaration whose addresses carry an ``<img onerror>``
payload and more SQL; the real ingest pipeline stores their F0 passage (an
alert, ward notifications). Then:

* the registry, the name search, the public declaration API and the look-up
  take the text as data: every table is intact and the rows are found by it;
* in Chromium, every screen that shows a name (alert monitor, look-up,
  tracing, ward inbox, registry update, the declaration's pass page) shows the
  literal text, and ``window.__pwned`` stays undefined: no script ran, no
  payload became an element;
* a QR code carrying such text, scanned at a gate, is stored as a malformed
  code (no alert, nothing executed); the MQTT path is in
  ``tests/test_hostile_mqtt.py`` ("injection text in QR").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, func, select

from aggregator.auth.audit import LOCAL_TZ
from aggregator.db.declarations import initials
from aggregator.db.registry import insert_citizens, insert_declarations
from aggregator.db.schema import Role, alerts, citizens, declarations, passages
from contract.token import HOUR, Keyring, SigningKey, issue_token
from tests.conftest import Reliability
from tests.fixtures.web import Account, LoginFactory, OfficerFactory, ServerFactory
from tests.ingest_world import BEN_THANH, HOAN_KIEM, World, build_world
from tests.registry_world import wire_app
from tests.test_browser_trace import log_in
from tests.test_web_alerts import ingest

pytestmark = pytest.mark.reliability

EVIL_NAME = "<script>window.__pwned=1</script>Nguyễn'; DROP TABLE passages;--"
EVIL_DETAIL = '<img src=x onerror="window.__pwned=2">Số 1 Hàng Bạc\'); DELETE FROM citizens;--'
EVIL_ID = "001090777777"
EVIL_BIRTH = date(1991, 2, 3)
EVIL_CITIZEN = 77
EVIL_DECLARATION = 7_000_077
QR_INJECTIONS = (
    "KD1:'; DROP TABLE passages;--",
    "<script>window.__pwned=3</script>",
    'KD1:"><img src=x onerror="window.__pwned=4">',
)
TABLES = (citizens, declarations, passages, alerts)


@dataclass
class Evil:
    """The world with the hostile citizen registered and their F0 passage stored."""

    world: World
    token: str
    counts: dict[str, int]


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows per table (a dropped table raises here)."""
    with engine.connect() as conn:
        return {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in TABLES
        }


@pytest.fixture
def evil(
    web_app: FastAPI,
    web_engine: Engine,
    signing_key: SigningKey,
    keyring: Keyring,
    tmp_path: Path,
) -> Evil:
    world = build_world(web_engine, signing_key)
    now = datetime.now(UTC)
    with web_engine.begin() as conn:
        insert_citizens(
            conn,
            rows=[
                {
                    "id": EVIL_CITIZEN,
                    "identity_no": EVIL_ID,
                    "full_name": EVIL_NAME,
                    "date_of_birth": EVIL_BIRTH,
                    "sex": "male",
                    "phone": "0912000077",
                    "permanent_ward_code": HOAN_KIEM,
                    "temporary_ward_code": None,
                    "vaccine_doses": 0,
                    "health_status": "F0",
                    "status_since": now - timedelta(days=1),
                    "updated_at": now - timedelta(days=1),
                }
            ],
        )
        insert_declarations(
            conn,
            rows=[
                {
                    "id": EVIL_DECLARATION,
                    "citizen_id": EVIL_CITIZEN,
                    "origin_ward_code": HOAN_KIEM,
                    "destination_ward_code": BEN_THANH,
                    "origin_detail": EVIL_DETAIL,
                    "destination_detail": EVIL_DETAIL,
                    "symptoms": [],
                    "contact_risk": False,
                    "source": "app",
                    "entered_by": None,
                    "key_id": signing_key.kid,
                    "created_at": now - timedelta(hours=2),
                    "expires_at": now + timedelta(days=7),
                    "revoked_at": None,
                }
            ],
        )
    issued = int(now.timestamp()) - HOUR
    token = issue_token(
        signing_key,
        declaration_id=EVIL_DECLARATION,
        issued_at=issued,
        expires_at=issued + 48 * HOUR,
    )
    assert len(ingest(web_engine, keyring, [world.scan(token)])) == 1  # the F0 alert
    web_app.state.service.verifier.replace_keyring(keyring)
    wire_app(web_app, tmp_path)  # the public declaration form issues passes
    return Evil(world, token, table_counts(web_engine))


def _declaration(**change: Any) -> dict[str, Any]:
    return {
        "identity_no": EVIL_ID,
        "full_name": EVIL_NAME,
        "date_of_birth": EVIL_BIRTH.isoformat(),
        "origin_ward_code": HOAN_KIEM,
        "origin_detail": EVIL_DETAIL,
        "destination_ward_code": BEN_THANH,
        "destination_detail": "'; UPDATE citizens SET health_status='none';--",
        "travel_date": datetime.now(LOCAL_TZ).date().isoformat(),
        **change,
    }


def test_sql_in_names_declarations_and_codes_is_data(
    *,
    evil: Evil,
    web_engine: Engine,
    keyring: Keyring,
    login_as: LoginFactory,
    client: Any,
    reliability: Reliability,
) -> None:
    investigator = login_as(Role.INVESTIGATOR)
    hostile_inputs = 0

    def search(q: str) -> list[dict[str, Any]]:
        answer = investigator.client.get(
            "/api/trace/citizens", params={"q": q, "purpose": "kiểm tra chèn mã độc"}
        )
        assert answer.status_code == 200, answer.text
        return list(answer.json())

    # The stored name is the typed text, found by itself and ignoring diacritics.
    for query in (EVIL_NAME, "<script>window.__pwned=1</script>nguyen", EVIL_ID):
        hostile_inputs += 1
        assert [hit["full_name"] for hit in search(query)] == [EVIL_NAME], query
    hostile_inputs += 1
    assert search("'; DROP TABLE passages;--") == []

    # The public form files a declaration for the name as registered, details verbatim.
    hostile_inputs += 1
    filed = client.post("/api/declarations", json=_declaration())
    assert filed.status_code == 201, filed.text
    with web_engine.connect() as conn:
        details = conn.execute(
            select(declarations.c.origin_detail, declarations.c.destination_detail).where(
                declarations.c.id == filed.json()["declaration_id"]
            )
        ).one()
    assert details == (EVIL_DETAIL, "'; UPDATE citizens SET health_status='none';--")

    # A pass code typed or scanned into the look-up: a malformed code, nothing else.
    officer = login_as(Role.CHECKPOINT_OFFICER)
    for text in QR_INJECTIONS:
        hostile_inputs += 1
        answer = officer.send_json("POST", "/api/lookup/token", {"token": text})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["verdict"]["code"], body["person"]) == ("malformed", None)

    # ...and at a gate: stored as malformed codes, no alert raised.
    scans = [evil.world.scan(text) for text in QR_INJECTIONS]
    hostile_inputs += len(scans)
    assert ingest(web_engine, keyring, scans) == []
    with web_engine.connect() as conn:
        verdicts = conn.execute(
            select(passages.c.verdict, passages.c.reason).where(
                passages.c.event_id.in_([s.event_id for s in scans])
            )
        ).all()
        f0_status = conn.execute(
            select(citizens.c.health_status).where(citizens.c.id == EVIL_CITIZEN)
        ).scalar_one()
    assert sorted(verdicts) == [("invalid", "malformed")] * len(QR_INJECTIONS)
    assert f0_status == "F0"

    after = table_counts(web_engine)
    expected = {
        **evil.counts,
        "declarations": evil.counts["declarations"] + 1,
        "passages": evil.counts["passages"] + len(scans),
    }
    reliability(
        scenario="SQL injection text in names, declarations, QR codes: inputs / inert",
        sent=hostile_inputs,
        stored=hostile_inputs if after == expected else 0,
        duplicates=0,
        lost=0 if after == expected else hostile_inputs,
    )
    assert after == expected


# --- in the browser -----------------------------------------------------------------------


class Screen:
    """A Chromium page that fails on any script the payloads could have run."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def goto(self, path: str) -> None:
        """Open a page of the live server."""
        self.page.goto(f"{self.base}{path}")

    def shows(self, selector: str, text: str) -> str:
        """Wait until ``selector`` shows ``text`` literally; return where it was seen."""
        self.page.wait_for_selector(selector)
        locator = self.page.locator(selector).filter(has_text=text).first
        locator.wait_for(state="visible")
        return str(locator.inner_text())

    def inert(self, where: str) -> None:
        """Nothing the payloads carried ran or became markup."""
        state = self.page.evaluate(
            """() => ({
                pwned: window.__pwned === undefined ? null : String(window.__pwned),
                scripts: [...document.scripts].filter(s => s.text.includes('__pwned')).length,
                images: document.querySelectorAll('img[onerror], img[src="x"]').length,
            })"""
        )
        assert state == {"pwned": None, "scripts": 0, "images": 0}, (where, state)
        assert self.dialogs == [], (where, self.dialogs)


@pytest.fixture
def screen(page: Any, web_app: FastAPI, live_server_factory: ServerFactory) -> Iterator[Screen]:
    seen = Screen(page, live_server_factory(web_app))
    yield seen
    assert seen.errors == [], seen.errors


@pytest.mark.browser
def test_every_screen_shows_hostile_names_as_text(
    evil: Evil,
    screen: Screen,
    make_officer: OfficerFactory,
    web_engine: Engine,
    reliability: Reliability,
) -> None:
    del evil  # the hostile citizen, their alert and notifications are in the database
    admin: Account = make_officer(Role.ADMIN, full_name="Quản Trị Viên")
    log_in(screen.page, screen.base, admin)
    page = screen.page
    checked: list[str] = []

    screen.goto("/monitor")
    assert EVIL_NAME in screen.shows(".kd-name", EVIL_NAME)
    assert EVIL_DETAIL in page.inner_text("main")
    screen.inert("monitor")
    checked.append("monitor")

    screen.goto("/lookup")
    page.fill("#identity_no", EVIL_ID)
    page.press("#identity_no", "Enter")
    assert EVIL_NAME in screen.shows("#lookup-result .kd-name", EVIL_NAME)
    screen.inert("lookup by identity")
    page.fill("#token", QR_INJECTIONS[2])
    page.click("#lookup-token button[type=submit]")
    page.wait_for_selector("#lookup-result :text-matches('[Kk]hông|malformed|đọc')")
    screen.inert("lookup by code")
    checked.append("lookup")

    screen.goto("/trace")
    page.fill("#purpose", "Kiểm tra chèn mã độc vào tên")
    page.click("#tab-route")
    page.fill("#route-q", "<script>window")
    page.click("#form-route button[type=submit]")
    # One citizen found: their route opens at once, headed by the name.
    assert EVIL_NAME in screen.shows("#result-route h2", EVIL_NAME)
    screen.inert("trace")
    checked.append("trace")

    screen.goto("/inbox")
    assert EVIL_NAME in screen.shows("main table", EVIL_NAME)
    screen.inert("inbox")
    checked.append("inbox")

    screen.goto("/registry")
    page.fill("#f-identity_no", EVIL_ID)
    page.select_option("#f-status", "recovered")
    page.fill("#f-since", datetime.now(LOCAL_TZ).date().isoformat())
    page.click("form[action='/registry/status'] button[type=submit]")
    assert EVIL_NAME in screen.shows("#registry-applied", EVIL_NAME)
    screen.inert("registry")
    checked.append("registry")

    screen.goto("/khai-bao")
    today = datetime.now(LOCAL_TZ).date().isoformat()
    for field, value in (
        ("identity_no", EVIL_ID),
        ("full_name", EVIL_NAME),
        ("date_of_birth", EVIL_BIRTH.isoformat()),
        ("origin_q", str(HOAN_KIEM)),
        ("destination_q", str(BEN_THANH)),
        ("travel_date", today),
    ):
        page.fill(f"#f-{field}", value)
    page.fill("textarea[name=origin_detail], input[name=origin_detail]", EVIL_DETAIL)
    page.locator("form[action='/khai-bao'] button[type=submit]").click()
    assert screen.shows("#pass-initials", initials(EVIL_NAME)) == initials(EVIL_NAME)
    assert EVIL_NAME not in page.content()  # the pass shows initials only
    screen.inert("declaration pass")
    checked.append("declaration pass")

    table_counts(web_engine)  # every table still there
    with web_engine.connect() as conn:
        stored_name = conn.execute(
            select(citizens.c.full_name).where(citizens.c.id == EVIL_CITIZEN)
        ).scalar_one()
    assert stored_name == EVIL_NAME
    reliability(
        scenario="HTML/JS injection in names on every screen (Chromium): screens / inert",
        sent=len(checked),
        stored=len(checked),
        duplicates=0,
        lost=0,
    )
