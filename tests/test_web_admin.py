"""Admin screens: checkpoints, devices (credentials that work on a real mosquitto), accounts,
the audit log viewer, and one run in real headless Chromium.

Page and API tests run the real app on a migrated SQLite database (tests/fixtures/web.py);
the audit query also runs on PostgreSQL through the ``engine`` fixture.
"""

from __future__ import annotations

import queue
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi import FastAPI
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, func, insert, select

from aggregator.auth import accounts
from aggregator.auth.audit import AuditFilter, query_audit, record_read
from aggregator.auth.device_credentials import merge_password_lines
from aggregator.broker import write_broker_files
from aggregator.db.fleet import check_device_password, upsert_checkpoint
from aggregator.db.schema import CheckpointKind, Role, audit_log, checkpoints, devices, officers
from aggregator.web.settings import WebSettings
from contract.topics import scan_topic
from simulators.hanoi_gates import HANOI_GATES
from tests.fixtures.mqtt import free_port
from tests.fixtures.web import HOAN_KIEM, LoggedIn, LoginFactory, OfficerFactory, login_form

NOT_AUTHORIZED = 135
BAD_CREDENTIALS = 134
SERVICE_PASSWORD = "agg-service-secret-1"


@pytest.fixture
def admin(login_as: LoginFactory) -> LoggedIn:
    return login_as(Role.ADMIN, username="dang.thu.ha", full_name="Đặng Thu Hà")


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def last_audit(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(1)).mappings()
        return dict(row.one())


def add_gate(engine: Engine, index: int = 0) -> str:
    site = HANOI_GATES[index]
    with engine.begin() as conn:
        upsert_checkpoint(
            conn,
            id=site.checkpoint_id,
            name=site.name,
            kind=site.kind,
            ward_code=site.ward_code,
            lat=site.lat,
            lon=site.lon,
        )
    return site.checkpoint_id


# --- wards and checkpoints ------------------------------------------------------------


def test_ward_search_ignores_diacritics_and_case(admin: LoggedIn, client: Any) -> None:
    for query in ("hoan kiem", "Hoàn Kiếm", "HOAN KIEM", "70"):
        found = admin.client.get("/api/wards", params={"q": query}).json()
        assert any(w["code"] == HOAN_KIEM for w in found), query
        hit = next(w for w in found if w["code"] == HOAN_KIEM)
        assert hit["label"] == "Phường Hoàn Kiếm, Thành phố Hà Nội"
    assert admin.client.get("/api/wards", params={"q": "khong co phuong nay"}).json() == []
    assert client.get("/api/wards", params={"q": "hoan kiem"}).status_code == 401


def test_admin_creates_a_checkpoint_from_the_form(admin: LoggedIn, web_engine: Engine) -> None:
    form = {
        "id": "hn-ql1a-phapvan",
        "name": "Chốt QL1A – Pháp Vân",
        "kind": "highway",
        "ward_q": "hoang liet",
        "ward_code": "337",
        "lat": "20.9517",
        "lon": "105.8436",
        "owner": "Công an TP Hà Nội",
    }
    created = admin.post_form("/admin/checkpoints", form)
    assert created.status_code == 303
    assert created.headers["location"] == "/admin/checkpoints?created=hn-ql1a-phapvan"
    page = admin.client.get(created.headers["location"])
    assert "Đã tạo chốt hn-ql1a-phapvan." in page.text
    assert "Chốt QL1A – Pháp Vân" in page.text and "Phường Hoàng Liệt" in page.text
    assert "Quốc lộ / cao tốc" in page.text
    with web_engine.connect() as conn:
        row = conn.execute(select(checkpoints).where(checkpoints.c.id == "hn-ql1a-phapvan")).one()
    assert (row.ward_code, row.lat, row.lon, row.kind) == (337, 20.9517, 105.8436, "highway")
    entry = last_audit(web_engine)
    assert entry["action"] == "admin.checkpoint.create"
    assert entry["subject"] == "checkpoint:hn-ql1a-phapvan"
    assert entry["officer_id"] == admin.account.id and entry["ip"] == "testclient"


def test_checkpoint_form_shows_every_error_in_the_officers_language(
    admin: LoggedIn, web_engine: Engine
) -> None:
    add_gate(web_engine)
    bad = {
        "id": "Chốt Mới",
        "name": "",
        "kind": "highway",
        "ward_code": "999999",
        "lat": "95",
        "lon": "105.8",
    }
    page = admin.post_form("/admin/checkpoints", bad)
    assert page.status_code == 422
    assert "Chưa lưu được: vui lòng sửa các lỗi bên dưới." in page.text
    assert "Mã chốt: 1–64 ký tự" in page.text
    assert "Bắt buộc nhập." in page.text
    assert "Vĩ độ từ -90 đến 90." in page.text
    # What was typed stays in the form.
    assert 'value="Chốt Mới"' in page.text and 'value="105.8"' in page.text
    # Database checks come once the shape is right: unknown ward, taken id, half coordinates.
    second = admin.post_form(
        "/admin/checkpoints?lang=en",
        {"id": HANOI_GATES[0].checkpoint_id, "name": "Dup", "kind": "venue", "ward_code": "999999"},
    )
    assert second.status_code == 422
    assert "There is no ward with code 999999; pick one from the list." in second.text
    assert "Give both latitude and longitude" not in second.text
    third = admin.post_form(
        "/admin/checkpoints",
        {"id": HANOI_GATES[0].checkpoint_id, "name": "Dup", "kind": "venue", "ward_code": "70"},
    )
    assert f"A checkpoint with id {HANOI_GATES[0].checkpoint_id} exists already." in third.text
    half = admin.post_form(
        "/admin/checkpoints",
        {"id": "cp-half", "name": "Nửa", "kind": "venue", "ward_code": "70", "lat": "21"},
    )
    assert "Give both latitude and longitude, or neither." in half.text
    assert count(web_engine, checkpoints) == 1


def test_checkpoint_api_answers_problems_like_fastapi(admin: LoggedIn) -> None:
    body = {"id": "cp-api", "name": "Chốt API", "kind": "side_road", "ward_code": HOAN_KIEM}
    created = admin.send_json("POST", "/api/admin/checkpoints", body)
    assert created.status_code == 201
    assert created.json()["ward_name"] == "Phường Hoàn Kiếm" and created.json()["devices"] == 0
    again = admin.send_json("POST", "/api/admin/checkpoints", body)
    assert again.status_code == 422
    assert again.json()["detail"] == [
        {
            "loc": ["body", "id"],
            "msg": "Đã có chốt mã cp-api. / A checkpoint with id cp-api exists already.",
            "type": "error.checkpoint_taken",
        }
    ]
    shaped = admin.send_json("POST", "/api/admin/checkpoints", {**body, "id": "x", "lat": 91})
    errors = shaped.json()["detail"]
    assert shaped.status_code == 422
    assert {e["type"] for e in errors} == {"error.lat"}
    assert errors[0]["msg"] == "Vĩ độ từ -90 đến 90. / Latitude between -90 and 90."
    unknown = admin.send_json("POST", "/api/admin/checkpoints", {**body, "id": "y", "extra": 1})
    assert unknown.status_code == 422
    listed = admin.client.get("/api/admin/checkpoints").json()
    assert [c["id"] for c in listed] == ["cp-api"]


# --- devices ---------------------------------------------------------------------------


def _device_password(page_html: str) -> str:
    match = re.search(r'<code id="mqtt-password" class="secret">([^<]+)</code>', page_html)
    assert match, "no password on the page"
    return match[1]


def test_device_credentials_are_shown_once_and_stored_hashed(
    admin: LoggedIn, web_engine: Engine
) -> None:
    gate = add_gate(web_engine)
    page = admin.post_form(
        "/admin/devices",
        {"checkpoint_id": gate, "id": f"{gate}-in-1", "lane": "1", "direction": "in"},
    )
    assert page.status_code == 201
    assert page.headers["cache-control"] == "no-store"
    password = _device_password(page.text)
    assert len(password) >= 30
    assert "Mật khẩu chỉ hiện MỘT LẦN" in page.text
    # Without a broker file configured the page says the device cannot log in yet.
    assert "KIEMDICH_WEB_BROKER_PASSWD_FILE" in page.text
    with web_engine.connect() as conn:
        row = conn.execute(select(devices).where(devices.c.id == f"{gate}-in-1")).one()
        assert check_device_password(conn, device_id=row.id, password=password)
    assert password not in row.mqtt_password_hash and row.mqtt_broker_hash.startswith("$7$")
    listing = admin.client.get("/admin/devices").text
    assert f"{gate}-in-1" in listing and password not in listing
    assert password not in str(last_audit(web_engine))
    taken = admin.post_form(
        "/admin/devices",
        {"checkpoint_id": gate, "id": f"{gate}-in-1", "lane": "1", "direction": "in"},
    )
    assert taken.status_code == 422
    assert f"Đã có thiết bị (hoặc tài khoản MQTT) mã {gate}-in-1." in taken.text
    nowhere = admin.send_json(
        "POST", "/api/admin/devices", {"checkpoint_id": "no-such", "id": "dev-x", "lane": 120}
    )
    assert nowhere.status_code == 422
    assert [e["type"] for e in nowhere.json()["detail"]] == ["error.lane"]


@dataclass
class RunningBroker:
    port: int
    process: subprocess.Popen[bytes]
    passwd: Path
    pid_file: Path


@pytest.fixture
def generated_broker(tmp_path: Path) -> Iterator[RunningBroker]:
    """mosquitto started with the files ``aggregator.broker`` generates (one service account)."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.skip("mosquitto is not installed (make test installs it with apt-get)")
    port = free_port()
    conf = write_broker_files(
        tmp_path / "broker", port=port, devices=[], services={"aggregator": SERVICE_PASSWORD}
    )
    log = tmp_path / "mosquitto.log"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log.open("ab"), stderr=subprocess.STDOUT)
    pid_file = tmp_path / "broker" / "mosquitto.pid"
    pid_file.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 10
    while connect_code(port, "aggregator", SERVICE_PASSWORD) != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mosquitto did not start: {log.read_text()}")
        time.sleep(0.05)
    yield RunningBroker(port, proc, conf.parent / "passwd", pid_file)
    proc.terminate()
    proc.wait(timeout=10)


def connect_code(
    port: int, username: str, password: str, *, publish: str | None = None
) -> int | tuple[int, int]:
    """The CONNACK reason code; with ``publish``, also the PUBACK code of a QoS 1 message."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(username, password)
    connack: queue.Queue[int] = queue.Queue()
    puback: queue.Queue[int] = queue.Queue()
    client.on_connect = lambda _c, _u, _f, rc, _p: connack.put(int(rc.value))
    client.on_publish = lambda _c, _u, _m, rc, _p: puback.put(int(rc.value))
    try:
        client.connect("127.0.0.1", port)
    except OSError:
        return -1
    client.loop_start()
    try:
        code = connack.get(timeout=5)
        if publish is None or code != 0:
            return code if publish is None else (code, -1)
        client.publish(publish, b"{}", qos=1)
        return code, puback.get(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


def wait_connect(port: int, username: str, password: str, timeout: float = 10.0) -> int:
    """CONNACK code once the broker has reloaded (mosquitto rereads its files on SIGHUP)."""
    deadline = time.monotonic() + timeout
    while True:
        code = connect_code(port, username, password)
        if code == 0 or time.monotonic() > deadline:
            return int(code)  # type: ignore[arg-type]
        time.sleep(0.1)


def test_new_device_logs_in_to_the_real_broker(
    admin: LoggedIn, web_app: FastAPI, web_engine: Engine, generated_broker: RunningBroker
) -> None:
    web_app.state.web_settings = WebSettings(
        session_touch_s=0,
        broker_passwd_file=generated_broker.passwd,
        broker_pid_file=generated_broker.pid_file,
    )
    gate = add_gate(web_engine)
    device_id = f"{gate}-in-1"
    assert connect_code(generated_broker.port, device_id, "anything") in (
        BAD_CREDENTIALS,
        NOT_AUTHORIZED,
    )
    page = admin.post_form(
        "/admin/devices", {"checkpoint_id": gate, "id": device_id, "lane": "1", "direction": "in"}
    )
    assert page.status_code == 201
    password = _device_password(page.text)
    assert f"Đã ghi tệp mật khẩu của broker ({generated_broker.passwd}, 2 tài khoản)." in page.text
    assert f"Đã yêu cầu broker nạp lại (SIGHUP, pid {generated_broker.process.pid})." in page.text

    port = generated_broker.port
    assert wait_connect(port, device_id, password) == 0
    # Its own scan topic only: the ACL patterns cover the new device too.
    # PUBACK 0, or 16 "no matching subscribers": accepted either way.
    assert connect_code(port, device_id, password, publish=scan_topic(device_id)) in (
        (0, 0),
        (0, 16),
    )
    other = scan_topic(f"{gate}-out-1")
    assert connect_code(port, device_id, password, publish=other) == (0, NOT_AUTHORIZED)
    assert connect_code(port, device_id, password + "x") in (BAD_CREDENTIALS, NOT_AUTHORIZED)
    # The service account written by `kiemdich broker files` survived the rewrite.
    assert connect_code(port, "aggregator", SERVICE_PASSWORD) == 0

    # A second device through the JSON API: both work.
    issued = admin.send_json(
        "POST",
        "/api/admin/devices",
        {"checkpoint_id": gate, "id": f"{gate}-out-1", "lane": 1, "direction": "out"},
    )
    assert issued.status_code == 201
    body = issued.json()
    assert [n["level"] for n in body["broker"]] == ["ok", "ok"]
    second = body["device"]["mqtt_password"]
    assert wait_connect(port, f"{gate}-out-1", second) == 0
    assert connect_code(port, device_id, password) == 0
    assert generated_broker.passwd.stat().st_mode & 0o777 == 0o600


def test_password_file_merge_keeps_other_accounts() -> None:
    existing = "aggregator:$7$101$aaa$bbb\nsim-gate-1:$7$101$ccc$ddd\n\nhn-x-in-1:$7$101$old$old\n"
    lines = merge_password_lines(existing, {"hn-x-in-1": "$7$new", "hn-x-out-1": "$7$new2"})
    assert lines == [
        "aggregator:$7$101$aaa$bbb",
        "sim-gate-1:$7$101$ccc$ddd",
        "hn-x-in-1:$7$new",
        "hn-x-out-1:$7$new2",
    ]


def test_broker_file_problems_are_reported_not_raised(
    admin: LoggedIn, web_app: FastAPI, web_engine: Engine, tmp_path: Path
) -> None:
    web_app.state.web_settings = WebSettings(broker_passwd_file=tmp_path / "missing" / "passwd")
    gate = add_gate(web_engine)
    page = admin.post_form(
        "/admin/devices", {"checkpoint_id": gate, "id": "dev-a", "lane": "0", "direction": "both"}
    )
    # The device is saved and its password shown; the page says what to do about the file.
    assert page.status_code == 201
    assert "Không ghi được tệp mật khẩu broker" in page.text
    assert "kiemdich broker files" in page.text
    assert count(web_engine, devices) == 1


# --- officer accounts ------------------------------------------------------------------


def test_admin_creates_an_officer_with_scopes(admin: LoggedIn, web_engine: Engine) -> None:
    form = {
        "username": "Tran.Thi.Binh",
        "full_name": "Trần Thị Bình",
        "role": "ward_police",
        "scopes": "ward:70\nward:337",
        "password": "binh-mat-khau-2021",
        "password_again": "binh-mat-khau-2021",
    }
    created = admin.post_form("/admin/officers", form)
    assert created.status_code == 303
    assert created.headers["location"] == "/admin/officers?created=tran.thi.binh"
    page = admin.client.get(created.headers["location"])
    assert "Đã tạo tài khoản tran.thi.binh." in page.text
    assert "Trần Thị Bình" in page.text and "Công an phường" in page.text
    assert "ward:337" in page.text
    with web_engine.connect() as conn:
        row = accounts.find_officer(conn, username="tran.thi.binh")
        hashed = conn.execute(select(officers.c.password_hash).where(officers.c.id == row.id))
        assert hashed.scalar_one().startswith("$argon2id$")
    assert row is not None and [str(s) for s in row.scopes] == ["ward:337", "ward:70"]
    entry = last_audit(web_engine)
    assert (entry["action"], entry["subject"]) == ("admin.officer.create", "officer:tran.thi.binh")
    assert entry["detail"] == {"role": "ward_police", "scopes": ["ward:70", "ward:337"]}


def test_officer_form_errors(admin: LoggedIn, make_officer: OfficerFactory) -> None:
    taken = make_officer(Role.INVESTIGATOR, username="le.cuong")
    page = admin.post_form(
        "/admin/officers",
        {
            "username": "x",
            "full_name": "Trần Thị Bình",
            "role": "ward_police",
            "scopes": "ward:hoan-kiem",
            "password": "short",
            "password_again": "different",
        },
    )
    assert page.status_code == 422
    for text in (
        "Tên đăng nhập: 3–64 ký tự",
        "Mã “hoan-kiem” phải là số.",
        "Hai lần nhập mật khẩu không khớp.",
    ):
        assert text in page.text
    assert 'value="Trần Thị Bình"' in page.text and "short" not in page.text
    missing_scope = admin.post_form(
        "/admin/officers",
        {
            "username": "binh.tt",
            "full_name": "Trần Thị Bình",
            "role": "ward_police",
            "scopes": "",
            "password": "binh-mat-khau-2021",
            "password_again": "binh-mat-khau-2021",
        },
    )
    assert "Công an phường cần ít nhất một phạm vi phường hoặc tỉnh." in missing_scope.text
    dup = admin.post_form(
        "/admin/officers?lang=en",
        {
            "username": taken.username,
            "full_name": "Lê Cường",
            "role": "investigator",
            "password": "cuong-mat-khau-21",
            "password_again": "cuong-mat-khau-21",
        },
    )
    assert dup.status_code == 422 and "The username le.cuong is taken." in dup.text


def test_admin_edits_resets_and_deactivates_an_officer(
    admin: LoggedIn, login_as: LoginFactory, web_engine: Engine
) -> None:
    officer = login_as(Role.CHECKPOINT_OFFICER, full_name="Nguyễn Văn An")
    target = f"/admin/officers/{officer.account.id}"
    page = admin.client.get(target)
    assert page.status_code == 200 and "Nguyễn Văn An" in page.text
    saved = admin.post_form(
        target,
        {
            "full_name": "Nguyễn Văn An",
            "role": "checkpoint_officer",
            "scopes": "ward:337",
            "active": "on",
        },
    )
    assert saved.status_code == 303 and saved.headers["location"] == f"{target}?saved=1"
    # A change of scope ends the officer's sessions.
    assert officer.client.get("/api/auth/me").status_code == 401
    entry = last_audit(web_engine)
    assert entry["action"] == "admin.officer.update"
    assert entry["detail"] == {"scopes": [["ward:70"], ["ward:337"]]}

    reset = admin.post_form(
        f"{target}/password",
        {"password": "an-mat-khau-moi-1", "password_again": "an-mat-khau-moi-1"},
    )
    assert reset.status_code == 303
    assert "Đã đặt mật khẩu mới" in admin.client.get(reset.headers["location"]).text
    weak = admin.post_form(f"{target}/password", {"password": "demo", "password_again": "demo"})
    assert weak.status_code == 422 and "Mật khẩu cần ít nhất 10 ký tự." in weak.text

    off = admin.post_form(
        target, {"full_name": "Nguyễn Văn An", "role": "checkpoint_officer", "scopes": "ward:337"}
    )
    assert off.status_code == 303
    listing = admin.client.get("/admin/officers").text
    assert "Đã khoá" in listing
    refused = login_form(officer.client, officer.account.username, "an-mat-khau-moi-1")
    assert refused.status_code == 403


def test_admin_cannot_lock_themself_out(admin: LoggedIn) -> None:
    mine = f"/admin/officers/{admin.account.id}"
    page = admin.post_form(mine, {"full_name": "Đặng Thu Hà", "role": "admin", "scopes": ""})
    assert page.status_code == 422
    assert "Bạn không thể tự khoá hoặc bỏ quyền quản trị của chính mình." in page.text
    api = admin.send_json(
        "PATCH", f"/api/admin/officers/{admin.account.id}", {"role": "investigator"}
    )
    assert api.status_code == 422 and api.json()["detail"][0]["type"] == "error.self_lockout"
    assert admin.client.get("/api/auth/me").status_code == 200
    assert admin.client.get("/admin/officers/999999").status_code == 404
    assert (
        admin.send_json("PATCH", "/api/admin/officers/999999", {"active": True}).status_code == 404
    )


# --- audit log ---------------------------------------------------------------------------


def _seed_audit(engine: Engine, officer_ids: list[int]) -> None:
    base = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)  # 08:00 in Vietnam
    rows = []
    for n in range(30):
        rows.append(
            {
                "at": base + timedelta(hours=6 * n),
                "officer_id": officer_ids[n % len(officer_ids)],
                "action": ("alert.view", "citizen.lookup", "admin.officer.update")[n % 3],
                "subject": f"citizen:{n % 4}",
                "purpose": "Đối chiếu tại chốt",
                "ip": "10.0.0.1",
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(audit_log), rows)


def test_audit_query_filters_and_pages(engine: Engine) -> None:
    with engine.begin() as conn:
        ids = [
            accounts.create_officer(
                conn,
                username=name,
                full_name=full,
                role=Role.INVESTIGATOR,
                scopes=[],
                password="mat-khau-rat-dai",
            )
            for name, full in (("le.cuong", "Lê Cường"), ("pham.dung", "Phạm Dũng"))
        ]
    _seed_audit(engine, ids)
    with engine.connect() as conn:
        everything = query_audit(conn, filters=AuditFilter(), limit=100).entries
        assert len(everything) == 30
        assert [e.id for e in everything] == sorted((e.id for e in everything), reverse=True)
        first = query_audit(conn, filters=AuditFilter(action="alert"), limit=4)
        assert {e.action for e in first.entries} == {"alert.view"}
        assert len(first.entries) == 4 and first.has_older and not first.has_newer
        second = query_audit(
            conn, filters=AuditFilter(action="alert"), before_id=first.entries[-1].id, limit=4
        )
        assert second.has_newer and second.entries[0].id < first.entries[-1].id
        back = query_audit(
            conn, filters=AuditFilter(action="alert"), after_id=second.entries[0].id, limit=4
        )
        assert [e.id for e in back.entries] == [e.id for e in first.entries]
        mine = query_audit(conn, filters=AuditFilter(officer_id=ids[1]), limit=100).entries
        assert len(mine) == 15 and {e.officer_name for e in mine} == {"Phạm Dũng"}
        subject = query_audit(conn, filters=AuditFilter(subject="citizen:3"), limit=100).entries
        assert len(subject) == 7
        prefix = query_audit(conn, filters=AuditFilter(subject="citizen:*"), limit=100).entries
        assert len(prefix) == 30
        # Days are Vietnamese days: 08:00, 14:00 and 20:00 on 5 Jan; the next entry is
        # still 5 Jan in UTC (19:00) but 02:00 on 6 Jan in Vietnam.
        day = query_audit(
            conn, filters=AuditFilter(since=date(2026, 1, 5), until=date(2026, 1, 5)), limit=100
        ).entries
        assert len(day) == 3
        assert query_audit(conn, filters=AuditFilter(action="nothing"), limit=5).entries == []


def test_audit_page_filters_pages_and_records_its_own_reading(
    admin: LoggedIn, web_app: FastAPI, web_engine: Engine, make_officer: OfficerFactory
) -> None:
    web_app.state.web_settings = WebSettings(session_touch_s=0, audit_page_size=5)
    reader = make_officer(Role.INVESTIGATOR, username="le.cuong", full_name="Lê Hoàng Cường")
    _seed_audit(web_engine, [reader.id])
    page = admin.client.get(
        "/admin/audit", params={"officer": "le.cuong", "action": "alert", "subject": "citizen:1"}
    )
    assert page.status_code == 200
    assert page.text.count('data-action="alert.view"') == 2  # entries 9 and 21
    assert "Lê Hoàng Cường" in page.text and "Đối chiếu tại chốt" in page.text
    assert "Cũ hơn →" not in page.text
    first = admin.client.get("/admin/audit", params={"action": "citizen.lookup"})
    assert first.text.count('data-action="citizen.lookup"') == 5
    older = re.search(r'href="(/admin/audit\?action=citizen.lookup&amp;before=\d+)"', first.text)
    assert older, "no link to older entries"
    second = admin.client.get(older[1].replace("&amp;", "&"))
    assert second.text.count('data-action="citizen.lookup"') == 5
    assert "← Mới hơn" in second.text
    dated = admin.client.get("/admin/audit", params={"since": "2026-01-05", "until": "2026-01-05"})
    assert dated.text.count("<tr data-action=") == 3
    backwards = admin.client.get(
        "/admin/audit", params={"since": "2026-01-06", "until": "2026-01-05"}
    )
    assert backwards.status_code == 422
    assert "Ngày bắt đầu phải trước ngày kết thúc." in backwards.text
    unknown = admin.client.get("/admin/audit", params={"officer": "nobody"})
    assert "Không tìm thấy." in unknown.text
    views = count(web_engine, audit_log, audit_log.c.action == "audit.view")
    assert views == 5  # every successful viewing is itself in the log, with its filters
    entry = last_audit(web_engine)
    assert entry["officer_id"] == admin.account.id and entry["purpose"].startswith("Kiểm tra")
    api = admin.client.get("/api/admin/audit", params={"subject": "citizen:2"}).json()
    assert len(api["entries"]) == 5 and api["has_older"]
    refused = admin.client.get("/api/admin/audit", params={"bogus": "1"})
    assert refused.status_code == 422


def test_non_admins_change_nothing(
    clients_by_role: dict[Role, LoggedIn], web_engine: Engine
) -> None:
    gate = add_gate(web_engine)
    before = count(web_engine, officers)
    for role, who in clients_by_role.items():
        if role is Role.ADMIN:
            continue
        assert (
            who.post_form(
                "/admin/devices", {"checkpoint_id": gate, "id": f"dev-{role.value}", "lane": "0"}
            ).status_code
            == 403
        )
        assert (
            who.post_form(
                "/admin/officers",
                {
                    "username": f"x-{role.value}"[:60],
                    "full_name": "Kẻ Lạ",
                    "role": "admin",
                    "password": "mat-khau-rat-dai",
                    "password_again": "mat-khau-rat-dai",
                },
            ).status_code
            == 403
        )
        target = clients_by_role[Role.ADMIN].account.id
        assert (
            who.post_form(
                f"/admin/officers/{target}/password",
                {"password": "mat-khau-rat-dai", "password_again": "mat-khau-rat-dai"},
            ).status_code
            == 403
        )
    assert count(web_engine, devices) == 0
    assert count(web_engine, officers) == before


# --- browser ------------------------------------------------------------------------------


def _seed_screens(engine: Engine, make_officer: OfficerFactory) -> None:
    for index in range(4):
        add_gate(engine, index)
    with engine.begin() as conn:
        upsert_checkpoint(
            conn,
            id="hn-cho-dong-xuan",
            name="Chợ Đồng Xuân",
            kind=CheckpointKind.VENUE,
            ward_code=HOAN_KIEM,
            lat=21.0381,
            lon=105.8497,
            owner="Ban quản lý chợ Đồng Xuân",
        )
    an = make_officer(
        Role.CHECKPOINT_OFFICER,
        username="nguyen.van.an",
        full_name="Nguyễn Văn An",
        scopes=[f"checkpoint:{HANOI_GATES[0].checkpoint_id}"],
    )
    make_officer(
        Role.COMMAND_CENTRE,
        username="pham.minh.dung",
        full_name="Phạm Minh Dũng",
        scopes=["province:1"],
    )
    cuong = make_officer(Role.INVESTIGATOR, username="le.hoang.cuong", full_name="Lê Hoàng Cường")
    make_officer(
        Role.VENUE_MANAGER,
        username="hoang.thi.en",
        full_name="Hoàng Thị Én",
        scopes=["checkpoint:hn-cho-dong-xuan"],
    )
    make_officer(
        Role.HEALTH_OFFICIAL, username="vu.duc.giang", full_name="Vũ Đức Giang", active=False
    )
    # Reads of personal data as the live screens record them, for the audit screenshot.
    reads = [
        (an, "alert.view", "alert:17", "Đối chiếu CCCD tại chốt", "10.20.1.15"),
        (an, "citizen.lookup", "citizen:48213", "Tra cứu tờ khai giấy", "10.20.1.15"),
        (
            cuong,
            "passages.checkpoint",
            f"checkpoint:{HANOI_GATES[0].checkpoint_id}",
            "Truy vết F0 ngày 05/01",
            "10.8.0.4",
        ),
        (cuong, "citizen.route", "citizen:48213", "Truy vết F0 ngày 05/01", "10.8.0.4"),
    ]
    with engine.begin() as conn:
        for account, action, subject, purpose, ip in reads:
            officer = accounts.get_officer(conn, officer_id=account.id)
            assert officer is not None
            record_read(
                conn,
                officer=officer.officer(),
                action=action,
                subject=subject,
                purpose=purpose,
                ip=ip,
            )


@pytest.mark.browser
def test_browser_admin_logs_in_creates_an_officer_and_sees_it(
    page: Any,
    live_server: str,
    make_officer: OfficerFactory,
    web_engine: Engine,
    screenshot_path: Callable[[str], Path],
) -> None:
    _seed_screens(web_engine, make_officer)
    admin = make_officer(Role.ADMIN, username="dang.thu.ha", full_name="Đặng Thu Hà")
    errors: list[str] = []
    missing: list[str] = []
    # Script errors and CSP refusals; the failed login's 401 is logged by Chromium as a
    # failed resource, so loads are checked by status instead.
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)

    page.goto(f"{live_server}/admin/officers")
    assert page.url.startswith(f"{live_server}/login?next=")
    assert page.locator("#login-message").inner_text() == "Vui lòng đăng nhập để tiếp tục."
    page.fill("#f-username", admin.username)
    page.screenshot(path=str(screenshot_path("login.png")))
    page.fill("#f-password", "wrong password")
    page.click("button[type=submit]")
    assert "Sai tên đăng nhập hoặc mật khẩu." in page.locator("#login-message").inner_text()
    page.fill("#f-password", admin.password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/admin/officers")
    assert page.locator(".whoami-name").inner_text() == "Đặng Thu Hà"

    page.fill("#f-username", "tran.thi.binh")
    page.fill("#f-full_name", "Trần Thị Bình")
    page.select_option("#f-role", "ward_police")
    page.fill("#f-scopes", f"ward:{HOAN_KIEM}")
    page.fill("#f-password", "binh-mat-khau-2021")
    page.fill("#f-password_again", "binh-mat-khau-2021")
    page.click("section[aria-labelledby=new-officer] button[type=submit]")
    page.wait_for_url(f"{live_server}/admin/officers?created=tran.thi.binh")
    row = page.locator("tr[data-username='tran.thi.binh']")
    assert row.is_visible()
    assert "Trần Thị Bình" in row.inner_text() and "Công an phường" in row.inner_text()
    page.screenshot(path=str(screenshot_path("admin-officers.png")), full_page=True)

    # The ward picker: typing without accents finds the ward, live.
    page.goto(f"{live_server}/admin/checkpoints")
    page.fill("#f-ward_q", "hoan kiem")
    page.wait_for_selector(f"#f-ward_code option[value='{HOAN_KIEM}']")
    assert "Phường Hoàn Kiếm" in page.locator("#f-ward_code").inner_text()
    page.screenshot(path=str(screenshot_path("admin-checkpoints.png")), full_page=True)

    page.goto(f"{live_server}/admin/audit?action=admin")
    table = page.locator("#audit-table")
    assert "admin.officer.create" in table.inner_text()
    assert "officer:tran.thi.binh" in table.inner_text()
    page.goto(f"{live_server}/admin/audit")
    page.screenshot(path=str(screenshot_path("admin-audit.png")), full_page=True)

    page.click("a[hreflang='en']")
    page.wait_for_url(re.compile(r".*lang=en"))
    assert page.locator("h1").first.inner_text() == "Data access audit log"
    page.click("form.logout button")
    page.wait_for_url(re.compile(r".*/login\?reason=logged_out"))
    assert errors == [] and missing == []
