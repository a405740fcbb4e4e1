"""The live screens in a real browser, against the whole system running.

Real mosquitto (started by the test), a running aggregator (the service started
by the app's lifespan under uvicorn), a registry built by the population
simulator, the city simulator's gates, and headless Chromium (/usr/bin/chromium)
driven by Playwright. A checkpoint officer logs in; a scan of an F0 person's
pass, published over MQTT as a gate would, appears on the alert monitor without
a reload; the officer resolves it; the look-up finds the person; the command
centre's figures move while the city simulator runs; a click on the map opens a
checkpoint's page. The look-up also reads a pass from a webcam (Chromium's fake
camera playing a video of a QR code). Screenshots: monitor.png, lookup.png,
lookup-camera.png, command.png, checkpoint.png (``make screenshots`` keeps them
in docs/screenshots/).
"""

from __future__ import annotations

import csv
import io
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import segno
from fastapi import FastAPI
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, select

from aggregator.api.app import ROUTERS, create_app
from aggregator.api.routes import alerts as alert_routes
from aggregator.api.routes import command as command_routes
from aggregator.api.routes import monitor as monitor_routes
from aggregator.db.schema import Role, alert_actions, alerts, audit_log, citizens, declarations
from aggregator.service import AggregatorService
from aggregator.settings import AggregatorSettings
from aggregator.web.settings import WebSettings
from contract.messages import Direction, ScanEvent, encode
from contract.token import Keyring, SigningKey
from contract.topics import scan_topic
from simulators.city import CityConfig, CityLayout, prepare, run_city
from simulators.population import KEYRING_FILE, TOKENS_CSV, PopulationConfig, build_population
from tests.fixtures.mqtt import Broker
from tests.fixtures.web import (
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    Account,
    OfficerFactory,
    ServerFactory,
)
from tests.ingest_world import build_world

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LIVE_ROUTERS = (alert_routes.router, monitor_routes.router, command_routes.router)
GATES = 6
WAIT_MS = 15_000


@dataclass
class System:
    """Everything running for one test."""

    base: str
    app: FastAPI
    broker: Broker
    service: AggregatorService
    layout: CityLayout
    city: CityConfig
    population: Path


@pytest.fixture
def system(
    web_db_url: str,
    web_settings: WebSettings,
    mosquitto: Broker,
    live_server_factory: ServerFactory,
    tmp_path: Path,
) -> Iterator[System]:
    """A registry, the city's gates registered, and an aggregator serving the screens."""
    population = tmp_path / "population"
    build_population(
        PopulationConfig(
            citizens=400, db_url=web_db_url, seed=11, out=population, f0_share=0.05, f1_share=0.05
        ),
        progress=False,
    )
    city = CityConfig(
        port=mosquitto.port,
        gates=GATES,
        rate=60,
        duration_s=5,
        speedup=60,
        # 08:00 in Hà Nội, not the wall clock's hour: the same traffic at any time of day.
        start=datetime(2026, 3, 2, 1, 0, tzinfo=UTC),
        seed=3,
        population_dir=population,
        out=tmp_path / "city",
        db_url=web_db_url,
        auth=False,
        connections=2,
        dropout_per_hour=0,
        status_interval_s=1,
    )
    layout, _ = prepare(city)
    service = AggregatorService(
        AggregatorSettings(
            environment="development",
            db_url=web_db_url,
            mqtt_host=mosquitto.host,
            mqtt_port=mosquitto.port,
            client_id=f"agg-browser-{uuid.uuid4().hex[:8]}",
            keyring_path=population / KEYRING_FILE,
            poll_interval_s=0.3,
            batch_ms=10,
            fleet_flush_s=0.2,
        )
    )
    app = create_app(service)
    app.state.web_settings = web_settings
    for router in LIVE_ROUTERS:
        if router not in ROUTERS:
            app.include_router(router)
    base = live_server_factory(app, lifespan="on")  # the lifespan starts the service
    assert service.consumer.wait_connected(10) and service.control.wait_connected(10)
    yield System(base, app, mosquitto, service, layout, city, population)


def f0_pass(population: Path, engine: Engine) -> tuple[str, int, str, str]:
    """An F0 person's pass: token, declaration id, full name, identity number."""
    with (population / TOKENS_CSV).open(encoding="utf-8", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["health_status"] == "F0")
    declaration_id = int(row["declaration_id"])
    with engine.connect() as conn:
        name, identity_no = conn.execute(
            select(citizens.c.full_name, citizens.c.identity_no)
            .join(declarations, declarations.c.citizen_id == citizens.c.id)
            .where(declarations.c.id == declaration_id)
        ).one()
    return row["token"], declaration_id, name, identity_no


def camera_crop(token: str) -> bytes:
    """A JPEG of the code's region as a gate crops it: the QR, slightly blurred."""
    buffer = io.BytesIO()
    segno.make(token, error="m").save(buffer, kind="png", scale=4, border=2)
    image = cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_GRAYSCALE)
    image = cv2.GaussianBlur(cv2.resize(image, (240, 240)), (3, 3), 0)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])
    assert ok
    return jpeg.tobytes()


def publish_scan(broker: Broker, event: ScanEvent) -> None:
    """Publish as the gate's edge agent does (QoS 1, its own scan topic)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(scan_topic(event.device_id), encode(event), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def log_in(page: Any, base: str, account: Account) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", account.username)
    page.fill("input[name=password]", account.password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()[:500]


def watch_errors(page: Any) -> list[str]:
    """Script errors on the page (any is a failure)."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def number(page: Any, selector: str) -> int:
    text = page.text_content(selector) or ""
    digits = "".join(ch for ch in text if ch.isdigit())
    return int(digits) if digits else -1


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_f0_scan_appears_live_and_is_resolved(
    system: System,
    page: Any,
    make_officer: OfficerFactory,
    web_engine: Engine,
    screenshot_path: Callable[[str], Path],
) -> None:
    device = system.layout.devices[0]
    officer = make_officer(
        Role.CHECKPOINT_OFFICER,
        scopes=[f"checkpoint:{device.checkpoint_id}"],
        full_name="Trần Thị Bình",
    )
    token, _declaration_id, name, identity_no = f0_pass(system.population, web_engine)
    errors = watch_errors(page)
    log_in(page, system.base, officer)
    page.goto(f"{system.base}/monitor")
    page.wait_for_selector("#live-state.kd-live-ok", timeout=WAIT_MS)

    event = ScanEvent(
        event_id=uuid.uuid4(),
        device_id=device.id,
        checkpoint_id=device.checkpoint_id,
        lane=device.lane,
        direction=Direction.IN,
        seq=0,
        seen_at=datetime.now(UTC),
        token=token,
        decoder="zxing",
        quality=0.93,
        crop_jpeg=camera_crop(token),
    )
    publish_scan(system.broker, event)
    # No reload: the card arrives over the live stream.
    card = page.wait_for_selector(".kd-alert-f0[data-status=open]", timeout=WAIT_MS)
    assert card is not None
    text = card.text_content() or ""
    assert name in text
    assert " ".join(identity_no[i : i + 3] for i in range(0, 12, 3)) in text
    assert "F0 — ca bệnh đã xác nhận" in text
    # The aggregator's alert notice came back over MQTT to the web side's hub.
    hub = system.app.state.live_hub
    assert wait_until(lambda: hub.stats.notices >= 1), hub.stats
    page.wait_for_selector(".kd-alert-f0 .kd-crop img", timeout=WAIT_MS)
    assert wait_until(
        lambda: (
            page.evaluate("document.querySelector('.kd-alert-f0 .kd-crop img').naturalWidth") > 0
        )
    )
    page.wait_for_selector("body:not(.kd-flash-f0)", timeout=WAIT_MS)
    page.screenshot(path=str(screenshot_path("monitor.png")))

    alert_id = int(card.get_attribute("data-alert-id") or 0)
    card.query_selector("textarea[name=note]").fill("Đã chuyển trạm y tế phường cách ly")  # type: ignore[union-attr]
    card.query_selector(".kd-act-resolve").click()  # type: ignore[union-attr]
    # Resolved alerts leave the "not yet resolved" list.
    page.wait_for_selector(f"[data-alert-id='{alert_id}']", state="detached", timeout=WAIT_MS)
    with web_engine.connect() as conn:
        status = conn.execute(select(alerts.c.status).where(alerts.c.id == alert_id)).scalar_one()
        action = conn.execute(
            select(alert_actions.c.action, alert_actions.c.officer_id, alert_actions.c.note).where(
                alert_actions.c.alert_id == alert_id
            )
        ).one()
    assert status == "resolved"
    assert tuple(action) == ("resolve", officer.id, "Đã chuyển trạm y tế phường cách ly")

    page.goto(f"{system.base}/lookup")
    page.fill("#identity_no", identity_no)
    page.click("#lookup-identity button[type=submit]")
    verdict = page.wait_for_selector(".kd-verdict-red", timeout=WAIT_MS)
    assert verdict is not None
    assert name in (page.text_content("#lookup-result") or "")
    page.fill("#identity_no", "12345")
    page.click("#lookup-identity button[type=submit]")
    error = page.wait_for_selector("#lookup-result .kd-error", timeout=WAIT_MS)
    assert "12 chữ số" in (error.text_content() or "")  # type: ignore[union-attr]
    page.fill("#identity_no", identity_no)
    page.click("#lookup-identity button[type=submit]")
    page.wait_for_selector(".kd-verdict-red", timeout=WAIT_MS)
    page.screenshot(path=str(screenshot_path("lookup.png")))
    assert errors == []


def test_command_centre_moves_with_the_city(
    system: System,
    page: Any,
    make_officer: OfficerFactory,
    screenshot_path: Callable[[str], Path],
) -> None:
    commander = make_officer(Role.COMMAND_CENTRE, full_name="Phạm Văn Chỉ Huy")
    errors = watch_errors(page)
    log_in(page, system.base, commander)
    page.goto(f"{system.base}/command")
    page.wait_for_selector("#kd-command[data-loaded]", state="attached", timeout=WAIT_MS)
    assert page.locator("#map a.kd-cp").count() == GATES
    before = number(page, "#kpi-in-today") + number(page, "#kpi-out-today")
    assert before == 0

    report: list[Any] = []
    runner = threading.Thread(target=lambda: report.append(run_city(system.city)))
    runner.start()
    try:
        # The screen polls every few seconds and on each alert: the figures move.
        assert wait_until(
            lambda: number(page, "#kpi-in-today") + number(page, "#kpi-out-today") > 0
        ), page.text_content(".kd-kpis")
        assert wait_until(lambda: page.locator("#devices .kd-dev-online").count() > 0)
    finally:
        runner.join(timeout=60)
    assert report and report[0].planned > 0 and report[0].refused == 0
    # Once the city has finished and ingest caught up, the day's total is every passage.
    assert wait_until(lambda: system.service.stats()["stored"] == report[0].planned)
    stored = report[0].planned
    assert wait_until(
        lambda: number(page, "#kpi-in-today") + number(page, "#kpi-out-today") == stored
    ), (page.text_content(".kd-kpis"), stored)
    page.screenshot(path=str(screenshot_path("command.png")), full_page=True)

    busiest = page.locator("#checkpoints tbody tr").first
    checkpoint_id = busiest.get_attribute("data-checkpoint")
    page.click(f"#map a[data-checkpoint='{checkpoint_id}']")
    page.wait_for_url(f"**/command/checkpoints/{checkpoint_id}")
    page.wait_for_selector("#kd-command[data-loaded]", state="attached", timeout=WAIT_MS)
    lanes = [d for d in system.layout.devices if d.checkpoint_id == checkpoint_id]
    assert page.locator("#devices tbody tr").count() == len(lanes)
    assert number(page, "#kpi-in-today") + number(page, "#kpi-out-today") > 0
    page.screenshot(path=str(screenshot_path("checkpoint.png")), full_page=True)
    assert errors == []


# --- the webcam look-up ----------------------------------------------------------------------


def write_y4m(path: Path, token: str, *, frames: int = 5) -> None:
    """A still video of a pass QR held to the camera (Chromium plays it as the webcam)."""
    buffer = io.BytesIO()
    segno.make(token, error="m").save(buffer, kind="png", scale=6, border=4)
    code = cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_GRAYSCALE)
    frame = np.full((480, 640), 200, np.uint8)  # a grey desk behind the phone
    top, left = (480 - code.shape[0]) // 2, (640 - code.shape[1]) // 2
    frame[top : top + code.shape[0], left : left + code.shape[1]] = code
    yuv = cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), cv2.COLOR_BGR2YUV_I420)
    with path.open("wb") as fh:
        fh.write(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n")
        for _ in range(frames):
            fh.write(b"FRAME\n" + yuv.tobytes())


def test_lookup_reads_a_pass_from_the_webcam(
    *,
    browser: Any,
    web_app: FastAPI,
    web_engine: Engine,
    signing_key: SigningKey,
    keyring: Keyring,
    make_officer: OfficerFactory,
    live_server_factory: ServerFactory,
    tmp_path: Path,
    screenshot_path: Callable[[str], Path],
) -> None:
    world = build_world(web_engine, signing_key)
    for router in LIVE_ROUTERS:
        if router not in ROUTERS:
            web_app.include_router(router)
    web_app.state.service.verifier.replace_keyring(keyring)
    base = live_server_factory(web_app)
    officer = make_officer(Role.CHECKPOINT_OFFICER)
    video = tmp_path / "pass.y4m"
    write_y4m(video, world.people["an"].token)
    camera_browser = browser.browser_type.launch(
        executable_path=str(CHROMIUM),
        args=[
            *CHROMIUM_ARGS,
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={video}",
        ],
    )
    try:
        context = camera_browser.new_context(viewport=VIEWPORT, locale="vi-VN")
        context.grant_permissions(["camera"], origin=base)
        page = context.new_page()
        errors = watch_errors(page)
        log_in(page, base, officer)
        page.goto(f"{base}/lookup")
        page.click("#camera-toggle")
        # Read in the browser, verified on the server, shown like an alert.
        page.wait_for_selector(".kd-verdict-green", timeout=WAIT_MS)
        assert "Nguyễn Văn An" in (page.text_content("#lookup-result") or "")
        assert (page.input_value("#token") or "").startswith("KD1:")
        assert page.locator("#camera-video").is_hidden()  # the camera is off again
        page.screenshot(path=str(screenshot_path("lookup-camera.png")))
        assert errors == []
    finally:
        camera_browser.close()
    with web_engine.connect() as conn:
        subjects = conn.execute(
            select(audit_log.c.subject).where(audit_log.c.action == "lookup.token")
        ).scalars()
        assert list(subjects) == [f"citizen:{world.people['an'].citizen_id}"]
