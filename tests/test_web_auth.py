"""Officer login, sessions, rate limit, CSRF, roles and scopes.

Web tests run the real app on a migrated SQLite database (tests/fixtures/web.py);
the data functions underneath (sessions, rate limit, scope filters) also run on
PostgreSQL through the ``engine`` fixture.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, func, select, update

from aggregator.auth import accounts, passwords
from aggregator.auth.accounts import LoginOutcome
from aggregator.auth.cli import DEMO_ACCOUNTS
from aggregator.auth.cli import main as officers_cli
from aggregator.auth.model import Officer, Scope, scope_problems
from aggregator.auth.problems import ProblemError
from aggregator.auth.ratelimit import LoginLimits, login_wait_s, record_failure
from aggregator.auth.sessions import (
    SESSION_COOKIE,
    SessionPolicy,
    SessionState,
    create_session,
    resolve_session,
    token_hash,
)
from aggregator.db.fleet import upsert_checkpoint
from aggregator.db.schema import (
    CheckpointKind,
    DeviceDirection,
    Role,
    ScopeKind,
    audit_log,
    checkpoints,
    officer_sessions,
    officers,
)
from aggregator.web.i18n import LANGS, STRINGS
from aggregator.web.settings import WebSettings
from aggregator.web.templating import TEMPLATES_DIR
from tests.fixtures.web import HOAN_KIEM, LoggedIn, LoginFactory, OfficerFactory, login_form

HOANG_LIET = 337  # Phường Hoàng Liệt, Hà Nội
BEN_THANH = 26743  # Phường Bến Thành, TP Hồ Chí Minh
HANOI, HCMC = 1, 79

ADMIN_PAGES = ["/admin/officers", "/admin/checkpoints", "/admin/devices", "/admin/audit"]
ADMIN_API_GETS = [
    "/api/admin/officers",
    "/api/admin/checkpoints",
    "/api/admin/devices",
    "/api/admin/audit",
]
# (method, path, JSON body): bodies are valid, so only the role decides the answer.
ADMIN_API_WRITES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "POST",
        "/api/admin/checkpoints",
        {"id": "cp-role-test", "name": "Chốt thử", "kind": "city_gate", "ward_code": HOAN_KIEM},
    ),
    ("POST", "/api/admin/broker/sync", {}),
    (
        "POST",
        "/api/admin/officers",
        {
            "username": "role-test-new",
            "full_name": "Phạm Văn Mới",
            "role": "investigator",
            "password": "mot-mat-khau-dai",
        },
    ),
]


def audit_actions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(audit_log.c.action).order_by(audit_log.c.id)).scalars())


def set_cookie_headers(response: Any) -> list[str]:
    return list(response.headers.get_list("set-cookie"))


# --- login -----------------------------------------------------------------------------


def test_login_page_is_vietnamese_first_and_english_on_request(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    assert '<html lang="vi">' in page.text
    assert "Đăng nhập" in page.text and "Mật khẩu" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    english = client.get("/login?lang=en")
    assert '<html lang="en">' in english.text and "Password" in english.text
    assert any(h.startswith("kd_lang=en") for h in set_cookie_headers(english))
    # The cookie remembers the choice on the next page.
    assert '<html lang="en">' in client.get("/login").text


def test_login_ok_sets_a_session_cookie_and_goes_to_next(
    client: TestClient, make_officer: OfficerFactory, web_engine: Engine
) -> None:
    account = make_officer(Role.ADMIN, full_name="Đặng Thu Hà")
    answer = login_form(client, account.username, account.password, next="/admin/audit?action=auth")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/audit?action=auth"
    cookie = next(h for h in set_cookie_headers(answer) if h.startswith(f"{SESSION_COOKIE}="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    with web_engine.connect() as conn:
        stored = conn.execute(select(officer_sessions.c.token_hash)).scalars().all()
        last_login = conn.execute(
            select(officers.c.last_login_at).where(officers.c.id == account.id)
        ).scalar_one()
    # Only the token's hash is stored.
    assert stored == [token_hash(token)] and token not in stored
    assert last_login is not None
    page = client.get("/admin/officers")
    assert page.status_code == 200
    assert "Đặng Thu Hà" in page.text and "Quản trị viên" in page.text
    assert audit_actions(web_engine)[-1] == "auth.login"


def test_usernames_are_compared_lowercase_and_trimmed(
    client: TestClient, make_officer: OfficerFactory
) -> None:
    account = make_officer(Role.INVESTIGATOR, username="le.cuong")
    assert login_form(client, "  LE.Cuong ", account.password).status_code == 303


def test_wrong_password_and_unknown_username_get_the_same_answer(
    client: TestClient, make_officer: OfficerFactory, web_engine: Engine
) -> None:
    account = make_officer(Role.INVESTIGATOR)
    wrong = login_form(client, account.username, "not-the-password")
    unknown = login_form(client, "nobody-here", "not-the-password")
    for answer in (wrong, unknown):
        assert answer.status_code == 401
        assert "Sai tên đăng nhập hoặc mật khẩu." in answer.text
        assert SESSION_COOKIE not in "".join(set_cookie_headers(answer))
    # The username typed is kept in the form, the password is not.
    assert f'value="{account.username}"' in wrong.text
    assert "not-the-password" not in wrong.text
    assert audit_actions(web_engine) == ["auth.login_failed", "auth.login_failed"]


def test_production_hashes_with_argon2_defaults_and_upgrades_cheap_hashes_at_login(
    make_officer: OfficerFactory, web_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process started without the test switch hashes with argon2-cffi's defaults.
    env = {k: v for k, v in os.environ.items() if k != passwords.CHEAP_HASHES_ENV}
    params = subprocess.run(
        [
            sys.executable,
            "-c",
            "from aggregator.auth import passwords as p; "
            "h = p._hasher; print(h.time_cost, h.memory_cost, h.parallelism)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    default = PasswordHasher()
    assert params == [str(default.time_cost), str(default.memory_cost), str(default.parallelism)]
    assert default.memory_cost >= 64 * 1024 and default.time_cost >= 3

    # A hash made with the test profile is replaced by a production one at the next login.
    account = make_officer(Role.INVESTIGATOR)
    monkeypatch.setattr(passwords, "_hasher", default)

    def stored() -> str:
        with web_engine.connect() as conn:
            return conn.execute(
                select(officers.c.password_hash).where(officers.c.username == account.username)
            ).scalar_one()

    cheap = stored()
    assert passwords.needs_rehash(cheap)
    with web_engine.begin() as conn:
        result = accounts.authenticate(conn, username=account.username, password=account.password)
    assert result.outcome is LoginOutcome.OK
    upgraded = stored()
    assert upgraded != cheap and f"m={default.memory_cost},t={default.time_cost}" in upgraded
    assert not passwords.needs_rehash(upgraded)


def test_login_form_without_its_csrf_cookie_is_refused(
    client: TestClient, make_officer: OfficerFactory
) -> None:
    account = make_officer(Role.ADMIN)
    answer = client.post(
        "/login",
        data={"username": account.username, "password": account.password, "csrf_token": "forged"},
    )
    assert answer.status_code == 400
    assert "Biểu mẫu đã hết hạn" in answer.text


def test_next_never_leaves_the_site(client: TestClient, make_officer: OfficerFactory) -> None:
    account = make_officer(Role.ADMIN)
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        answer = login_form(client, account.username, account.password, next=target)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/"
        client.cookies.clear()


def test_login_is_rate_limited_per_username_with_the_wait_time(
    client: TestClient, web_app: FastAPI, make_officer: OfficerFactory
) -> None:
    web_app.state.web_settings = WebSettings(
        session_touch_s=0, login_max_per_username=3, login_max_per_ip=100, login_window_s=600
    )
    account = make_officer(Role.CHECKPOINT_OFFICER)
    for _ in range(3):
        assert login_form(client, account.username, "wrong-password").status_code == 401
    # Locked now, even with the right password.
    locked = login_form(client, account.username, account.password)
    assert locked.status_code == 429
    assert "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau 10 phút." in locked.text
    client.cookies.set("kd_lang", "en")
    english = login_form(client, account.username, account.password)
    assert "Too many failed logins. Please try again in 10 min." in english.text
    api = client.post(
        "/api/auth/token", json={"username": account.username, "password": account.password}
    )
    assert api.status_code == 429
    assert 590 <= int(api.headers["retry-after"]) <= 600
    assert api.json()["detail"]["code"] == "rate_limited"
    assert "thử lại sau 10 phút" in api.json()["detail"]["message"]
    # Another account is not affected.
    other = make_officer(Role.CHECKPOINT_OFFICER)
    assert login_form(client, other.username, other.password).status_code == 303


def test_login_is_rate_limited_per_client_address(
    client: TestClient, web_app: FastAPI, make_officer: OfficerFactory
) -> None:
    web_app.state.web_settings = WebSettings(
        session_touch_s=0, login_max_per_username=50, login_max_per_ip=4, login_window_s=900
    )
    account = make_officer(Role.ADMIN)
    for n in range(4):
        assert login_form(client, f"spray-{n}", "guess-guess").status_code == 401
    answer = login_form(client, account.username, account.password)
    assert answer.status_code == 429
    assert "thử lại sau 15 phút" in answer.text


def test_inactive_account_cannot_log_in(client: TestClient, make_officer: OfficerFactory) -> None:
    account = make_officer(Role.WARD_POLICE, active=False)
    answer = login_form(client, account.username, account.password)
    assert answer.status_code == 403
    assert "Tài khoản đã bị khoá" in answer.text
    # A wrong password does not reveal that the account exists and is locked.
    assert "bị khoá" not in login_form(client, account.username, "wrong-one-x").text
    api = client.post(
        "/api/auth/token", json={"username": account.username, "password": account.password}
    )
    assert api.status_code == 403 and api.json()["detail"]["code"] == "inactive"


def test_deactivation_ends_the_accounts_sessions(
    login_as: LoginFactory, make_officer: OfficerFactory
) -> None:
    admin = login_as(Role.ADMIN)
    officer = login_as(Role.COMMAND_CENTRE)
    assert officer.client.get("/api/auth/me").status_code == 200
    changed = admin.send_json(
        "PATCH", f"/api/admin/officers/{officer.account.id}", {"active": False}
    )
    assert changed.status_code == 200 and changed.json()["active"] is False
    refused = officer.client.get("/api/auth/me")
    assert refused.status_code == 401
    page = officer.client.get("/admin/officers")
    assert page.status_code == 303 and page.headers["location"].startswith("/login?")


# --- sessions --------------------------------------------------------------------------


def _age_sessions(engine: Engine, officer_id: int, **values: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(officer_sessions)
            .where(officer_sessions.c.officer_id == officer_id)
            .values(**values)
        )


@pytest.mark.parametrize("limit", ["idle", "absolute"])
def test_expired_session_says_so_and_returns_after_login(
    limit: str, login_as: LoginFactory, web_engine: Engine, web_settings: WebSettings
) -> None:
    admin = login_as(Role.ADMIN)
    now = datetime.now(UTC)
    if limit == "idle":
        _age_sessions(
            web_engine,
            admin.account.id,
            last_seen_at=now - timedelta(seconds=web_settings.session_idle_s + 5),
        )
    else:
        _age_sessions(web_engine, admin.account.id, expires_at=now - timedelta(seconds=1))
    page = admin.client.get("/admin/audit?action=admin")
    assert page.status_code == 303
    location = page.headers["location"]
    assert location == "/login?next=%2Fadmin%2Faudit%3Faction%3Dadmin&reason=expired"
    login_page = admin.client.get(location)
    assert "Phiên đăng nhập đã hết hạn. Vui lòng đăng nhập lại." in login_page.text
    assert 'name="next" value="/admin/audit?action=admin"' in login_page.text
    # The expired row is gone; the JSON API says why in both languages.
    api = admin.client.get("/api/auth/me")
    assert api.status_code == 401
    assert api.headers["www-authenticate"] == "Bearer"
    assert api.json()["detail"] == {
        "code": "session_expired",
        "message": "Phiên đăng nhập đã hết hạn / Session expired",
    }
    again = login_form(
        admin.client,
        admin.account.username,
        admin.account.password,
        next="/admin/audit?action=admin",
    )
    assert again.headers["location"] == "/admin/audit?action=admin"


def test_a_page_without_a_session_asks_to_log_in(client: TestClient) -> None:
    page = client.get("/admin/devices")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fadmin%2Fdevices"
    assert "Vui lòng đăng nhập để tiếp tục." in client.get(page.headers["location"]).text
    api = client.get("/api/admin/devices")
    assert api.status_code == 401
    assert api.json()["detail"]["code"] == "not_authenticated"


def test_logout_ends_the_session(login_as: LoginFactory, web_engine: Engine) -> None:
    officer = login_as(Role.INVESTIGATOR)
    token = officer.client.cookies[SESSION_COOKIE]
    # Logging out is a change: it needs the CSRF token too.
    assert officer.client.post("/logout").status_code == 403
    out = officer.post_form("/logout", {})
    assert out.status_code == 303
    assert out.headers["location"] == "/login?reason=logged_out"
    assert any(h.startswith(f'{SESSION_COOKIE}=""') for h in set_cookie_headers(out))
    assert "Đã đăng xuất." in officer.client.get(out.headers["location"]).text
    # The old token opens nothing any more, as cookie or as Bearer.
    stale = TestClient(officer.client.app, follow_redirects=False)
    assert (
        stale.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    )
    with web_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(officer_sessions)).scalar_one() == 0
    assert audit_actions(web_engine)[-1] == "auth.logout"


def test_bearer_token_is_the_same_session_as_the_cookie(
    client: TestClient, make_officer: OfficerFactory
) -> None:
    account = make_officer(Role.ADMIN, full_name="Đặng Thu Hà")
    issued = client.post(
        "/api/auth/token", json={"username": account.username, "password": account.password}
    )
    assert issued.status_code == 200
    body = issued.json()
    assert body["token_type"] == "bearer"
    assert body["officer"]["full_name"] == "Đặng Thu Hà"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    me = client.get("/api/auth/me", headers=bearer)
    assert me.status_code == 200 and me.json()["officer"]["role"] == "admin"
    # A Bearer request needs no CSRF token (no other site can make a browser send it).
    created = client.post(
        "/api/admin/checkpoints",
        headers=bearer,
        json={"id": "cp-bearer", "name": "Chốt Bearer", "kind": "highway", "ward_code": HOAN_KIEM},
    )
    assert created.status_code == 201
    # The same token works as the page cookie.
    client.cookies.set(SESSION_COOKIE, body["access_token"])
    assert client.get("/admin/checkpoints").status_code == 200
    client.cookies.clear()
    assert client.delete("/api/auth/token", headers=bearer).status_code == 204
    assert client.get("/api/auth/me", headers=bearer).status_code == 401
    bad = client.post("/api/auth/token", json={"username": account.username, "password": "nope"})
    assert bad.status_code == 401 and bad.json()["detail"]["code"] == "login_failed"
    extra = client.post(
        "/api/auth/token", json={"username": "a", "password": "b", "remember": True}
    )
    assert extra.status_code == 422


def test_cookie_requests_that_change_things_need_the_csrf_token(
    login_as: LoginFactory, web_engine: Engine
) -> None:
    admin = login_as(Role.ADMIN)
    body = {"id": "cp-csrf", "name": "Chốt CSRF", "kind": "city_gate", "ward_code": HOAN_KIEM}
    missing = admin.client.post("/api/admin/checkpoints", json=body)
    wrong = admin.client.post(
        "/api/admin/checkpoints", json=body, headers={"X-CSRF-Token": "x" * 43}
    )
    for answer in (missing, wrong):
        assert answer.status_code == 403
        assert answer.json()["detail"]["code"] == "csrf"
    form = admin.client.post(
        "/admin/officers",
        data={"username": "csrf-victim", "full_name": "Nạn Nhân", "role": "admin"},
    )
    assert form.status_code == 403
    assert "Biểu mẫu không hợp lệ hoặc đã hết hạn" in form.text
    with web_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(checkpoints)).scalar_one() == 0
        assert accounts.find_officer(conn, username="csrf-victim") is None
    assert admin.send_json("POST", "/api/admin/checkpoints", body).status_code == 201


# --- roles -----------------------------------------------------------------------------


NON_ADMIN_ROLES = [r for r in Role if r is not Role.ADMIN]


def test_admin_routes_refuse_the_anonymous(client: TestClient) -> None:
    for path in ADMIN_PAGES:
        answer = client.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login?next=")
    for path in ADMIN_API_GETS:
        assert client.get(path).status_code == 401, path
    for method, path, body in ADMIN_API_WRITES:
        assert client.request(method, path, json=body).status_code == 401, path


def test_admin_routes_refuse_every_other_role(
    clients_by_role: dict[Role, LoggedIn], web_engine: Engine
) -> None:
    for role in NON_ADMIN_ROLES:
        who = clients_by_role[role]
        for path in ADMIN_PAGES:
            page = who.client.get(path)
            assert page.status_code == 403, (role, path)
            assert "Bạn không có quyền xem trang này" in page.text
            # The layout still knows who they are.
            assert who.account.username in page.text or who.account.full_name in page.text
        for path in ADMIN_API_GETS:
            answer = who.client.get(path)
            assert answer.status_code == 403, (role, path)
            assert answer.json()["detail"]["code"] == "forbidden"
        for method, path, body in ADMIN_API_WRITES:
            assert who.send_json(method, path, body).status_code == 403, (role, path)
        form = who.post_form("/admin/checkpoints", {"id": "x-1", "name": "x", "kind": "venue"})
        assert form.status_code == 403
    with web_engine.connect() as conn:
        made = set(conn.execute(select(checkpoints.c.id)).scalars())
        assert not made & {"cp-role-test", "x-1"}
        assert accounts.find_officer(conn, username="role-test-new") is None


def test_admin_routes_answer_the_admin(clients_by_role: dict[Role, LoggedIn]) -> None:
    admin = clients_by_role[Role.ADMIN]
    for path in ADMIN_PAGES:
        assert admin.client.get(path).status_code == 200, path
    for path in ADMIN_API_GETS:
        assert admin.client.get(path).status_code == 200, path
    for method, path, body in ADMIN_API_WRITES:
        assert admin.send_json(method, path, body).status_code in (200, 201), path


def test_navigation_follows_the_role(clients_by_role: dict[Role, LoggedIn]) -> None:
    admin_nav = clients_by_role[Role.ADMIN].client.get("/admin/officers").text
    for path in ADMIN_PAGES:
        assert f'href="{path}"' in admin_nav
    # Roles with no screen served here land on the home page, which lists their scope.
    home = clients_by_role[Role.WARD_POLICE].client.get("/")
    if home.status_code == 303:  # the live screens are installed
        assert not home.headers["location"].startswith("/admin")
    else:
        assert home.status_code == 200
        assert "Công an phường" in home.text and f"Phường/xã {HOAN_KIEM}" in home.text
        assert 'href="/admin/officers"' not in home.text


def test_me_reports_role_label_in_the_chosen_language(login_as: LoginFactory) -> None:
    officer = login_as(Role.HEALTH_OFFICIAL)
    assert officer.client.get("/api/auth/me").json()["role_label"] == "Cán bộ y tế"
    assert officer.client.get("/api/auth/me?lang=en").json()["role_label"] == "Health official"


# --- scopes ------------------------------------------------------------------------------


def _officer(role: Role, *scopes: str) -> Officer:
    return Officer(
        id=1, username="x", full_name="X", role=role, scopes=[Scope.parse(s) for s in scopes]
    )


def test_scopes_decide_what_an_officer_sees() -> None:
    hanoi_gate = {"ward_code": HOANG_LIET, "province_code": HANOI}
    saigon_gate = {"ward_code": BEN_THANH, "province_code": HCMC}
    checkpoint = _officer(Role.CHECKPOINT_OFFICER, "checkpoint:hn-ql1a-phapvan")
    assert checkpoint.can_see_checkpoint("hn-ql1a-phapvan", **hanoi_gate)
    assert not checkpoint.can_see_checkpoint("hn-ql1a-vandien", **hanoi_gate)
    # A checkpoint scope does not open the whole ward.
    assert not checkpoint.can_see_ward(HOANG_LIET, province_code=HANOI)
    ward = _officer(Role.WARD_POLICE, f"ward:{HOANG_LIET}")
    assert ward.can_see_checkpoint("hn-ql1a-vandien", **hanoi_gate)
    assert ward.can_see_ward(HOANG_LIET, province_code=HANOI)
    assert not ward.can_see_ward(HOAN_KIEM, province_code=HANOI)
    command = _officer(Role.COMMAND_CENTRE, f"province:{HANOI}")
    assert command.can_see_ward(HOAN_KIEM, province_code=HANOI)
    assert not command.can_see_checkpoint("hcm-gate", **saigon_gate)
    nationwide = _officer(Role.INVESTIGATOR)
    assert nationwide.unrestricted and nationwide.checkpoint_filter() is None
    assert nationwide.can_see_checkpoint("hcm-gate", **saigon_gate)
    # A place-bound role without scopes sees nothing, never everything.
    blind = _officer(Role.CHECKPOINT_OFFICER)
    assert not blind.unrestricted
    assert not blind.can_see_checkpoint("hn-ql1a-phapvan", **hanoi_gate)


def test_scope_text_is_checked_and_normalised() -> None:
    assert str(Scope.parse(" Ward : 070 ")) == "ward:70"
    for bad in ("ward", "ward:ba-dinh", "checkpoint:Bad Id", "city:1", "province:"):
        with pytest.raises(ValidationError):
            Scope.parse(bad)
    assert [p.key for p in scope_problems(Role.WARD_POLICE, [])] == [
        "error.scope_required.ward_police"
    ]
    assert [p.key for p in scope_problems(Role.VENUE_MANAGER, [Scope.parse("ward:70")])] == [
        "error.scope_kind_for_role"
    ]
    assert scope_problems(Role.INVESTIGATOR, []) == []


def test_checkpoint_filter_on_the_database(engine: Engine) -> None:
    with engine.begin() as conn:
        for cp_id, ward in [
            ("hn-phapvan", HOANG_LIET),
            ("hn-hoankiem", HOAN_KIEM),
            ("hcm-benthanh", BEN_THANH),
        ]:
            upsert_checkpoint(
                conn,
                id=cp_id,
                name=cp_id,
                kind=CheckpointKind.CITY_GATE,
                ward_code=ward,
                lat=None,
                lon=None,
            )

    def visible(officer: Officer) -> set[str]:
        query = select(checkpoints.c.id)
        clause = officer.checkpoint_filter()
        if clause is not None:
            query = query.where(clause)
        with engine.connect() as conn:
            return set(conn.execute(query).scalars())

    assert visible(_officer(Role.INVESTIGATOR)) == {"hn-phapvan", "hn-hoankiem", "hcm-benthanh"}
    assert visible(_officer(Role.COMMAND_CENTRE, f"province:{HANOI}")) == {
        "hn-phapvan",
        "hn-hoankiem",
    }
    assert visible(_officer(Role.WARD_POLICE, f"ward:{BEN_THANH}")) == {"hcm-benthanh"}
    assert visible(
        _officer(Role.CHECKPOINT_OFFICER, "checkpoint:hn-phapvan", f"ward:{BEN_THANH}")
    ) == {"hn-phapvan", "hcm-benthanh"}
    assert visible(_officer(Role.CHECKPOINT_OFFICER)) == set()


# --- data functions on both backends -------------------------------------------------------


def _account(engine: Engine, role: Role = Role.ADMIN, **kw: Any) -> Officer:
    with engine.begin() as conn:
        officer_id = accounts.create_officer(
            conn,
            username=kw.get("username", "nguyen.an"),
            full_name="Nguyễn Văn An",
            role=role,
            scopes=[Scope.parse(s) for s in kw.get("scopes", [])],
            password="mat-khau-rat-dai",
        )
        row = accounts.get_officer(conn, officer_id=officer_id)
    assert row is not None
    return row.officer()


def test_sessions_expire_idle_and_absolute(engine: Engine) -> None:
    officer = _account(engine)
    policy = SessionPolicy(idle_s=600, absolute_s=3600, touch_s=0)
    t0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
    with engine.begin() as conn:
        session = create_session(
            conn, officer=officer, policy=policy, ip="10.0.0.7", user_agent="Chromium", now=t0
        )

    def at(minutes: float) -> SessionState:
        with engine.begin() as conn:
            found = resolve_session(
                conn, token=session.token, policy=policy, now=t0 + timedelta(minutes=minutes)
            )
        return found.state

    # Used every 9 minutes it lives until the absolute limit, then it is gone for good.
    for minute in range(9, 60, 9):
        assert at(minute) is SessionState.ACTIVE
    assert at(60) is SessionState.EXPIRED
    assert at(61) is SessionState.UNKNOWN
    with engine.begin() as conn:
        second = create_session(
            conn, officer=officer, policy=policy, ip=None, user_agent=None, now=t0
        )
        assert (
            resolve_session(conn, token=second.token, policy=policy, now=t0 + timedelta(minutes=11))
        ).state is SessionState.EXPIRED
        assert resolve_session(conn, token="forged", policy=policy).state is SessionState.UNKNOWN


def test_rate_limit_counts_and_frees_in_order(engine: Engine) -> None:
    limits = LoginLimits(window_s=600, max_per_username=3, max_per_ip=5)
    t0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
    with engine.begin() as conn:
        for minute in (0, 2, 4):
            record_failure(
                conn, username="an", ip="10.0.0.1", window_s=600, now=t0 + timedelta(minutes=minute)
            )

        def wait(minute: float, *, username: str = "an", ip: str = "10.0.0.9") -> int:
            return login_wait_s(
                conn, username=username, ip=ip, limits=limits, now=t0 + timedelta(minutes=minute)
            )

        # Three failures: wait until the first leaves the 10-minute window.
        assert wait(5) == 300
        assert wait(10) == 0
        assert wait(5, username="binh") == 0
        for minute in (5, 6):
            record_failure(
                conn,
                username="cuong",
                ip="10.0.0.1",
                window_s=600,
                now=t0 + timedelta(minutes=minute),
            )
        # Five from one address: everyone there waits for the oldest to age out.
        assert wait(7, username="dung", ip="10.0.0.1") == 180


def test_accounts_refuse_broken_rules_all_at_once(engine: Engine) -> None:
    _account(engine, username="tran.binh")
    with engine.begin() as conn, pytest.raises(ProblemError) as caught:
        accounts.create_officer(
            conn,
            username="Bad Name!",
            full_name="X",
            role=Role.WARD_POLICE,
            scopes=[Scope.parse("ward:999999")],
            password="short",
        )
    keys = {(p.field, p.key) for p in caught.value.problems}
    assert keys == {
        ("username", "error.username"),
        ("full_name", "error.full_name"),
        ("password", "error.password_short"),
        ("scopes", "error.scope_unknown_ward"),
    }
    with engine.begin() as conn, pytest.raises(ProblemError) as taken:
        accounts.create_officer(
            conn,
            username="tran.binh",
            full_name="Trần Bình",
            role=Role.INVESTIGATOR,
            scopes=[],
            password="tran.binh",
        )
    assert {p.key for p in taken.value.problems} == {
        "error.password_short",
        "error.password_guessable",
    }
    with engine.begin() as conn:
        result = accounts.authenticate(conn, username="tran.binh", password="wrong-password")
        assert result.outcome is LoginOutcome.WRONG_PASSWORD
        ok = accounts.authenticate(conn, username="TRAN.BINH", password="mat-khau-rat-dai")
        assert ok.outcome is LoginOutcome.OK and ok.officer is not None
        assert ok.officer.full_name == "Nguyễn Văn An"


# --- CLI -----------------------------------------------------------------------------------


def test_officers_cli_add_list_password_deactivate(
    web_db_url: str,
    web_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AN_PW", "mat-khau-cua-an")
    code = officers_cli(
        [
            "add",
            "--url",
            web_db_url,
            "--username",
            "an.nv",
            "--full-name",
            "Nguyễn Văn An",
            "--role",
            "checkpoint_officer",
            "--scope",
            f"ward:{HOANG_LIET}",
            "--password-env",
            "AN_PW",
        ]
    )
    assert code == 0
    assert officers_cli(["list", "--url", web_db_url]) == 0
    listing = capsys.readouterr().out
    assert "an.nv" in listing and f"ward:{HOANG_LIET}" in listing and "Nguyễn Văn An" in listing
    # Broken rules are reported, bilingual, with exit status 2.
    assert (
        officers_cli(
            [
                "add",
                "--url",
                web_db_url,
                "--username",
                "ward.x",
                "--full-name",
                "Công An",
                "--role",
                "ward_police",
                "--password-env",
                "AN_PW",
            ]
        )
        == 2
    )
    assert "Công an phường cần ít nhất một phạm vi" in capsys.readouterr().err
    assert (
        officers_cli(
            [
                "add",
                "--url",
                web_db_url,
                "--username",
                "x.y",
                "--full-name",
                "X Y",
                "--role",
                "admin",
                "--password-env",
                "UNSET_VAR_KD",
            ]
        )
        == 2
    )
    assert "UNSET_VAR_KD" in capsys.readouterr().err
    monkeypatch.setenv("AN_PW2", "mat-khau-moi-cua-an")
    assert (
        officers_cli(
            ["set-password", "--url", web_db_url, "--username", "an.nv", "--password-env", "AN_PW2"]
        )
        == 0
    )
    assert officers_cli(["deactivate", "--url", web_db_url, "--username", "an.nv"]) == 0
    with web_engine.begin() as conn:
        result = accounts.authenticate(conn, username="an.nv", password="mat-khau-moi-cua-an")
    assert result.outcome is LoginOutcome.INACTIVE
    assert "admin.officer.password" in audit_actions(web_engine)


def test_officers_demo_is_refused_outside_development(
    web_db_url: str, web_engine: Engine, capsys: pytest.CaptureFixture[str], client: TestClient
) -> None:
    assert officers_cli(["demo", "--url", web_db_url, "--environment", "production"]) == 2
    assert "development" in capsys.readouterr().err
    with web_engine.connect() as conn:
        assert accounts.list_officers(conn) == []
    assert officers_cli(["demo", "--url", web_db_url, "--environment", "development"]) == 0
    printed = capsys.readouterr().out
    # Running it twice resets the accounts instead of failing.
    assert officers_cli(["demo", "--url", web_db_url, "--environment", "development"]) == 0
    with web_engine.connect() as conn:
        made = {r.username: r for r in accounts.list_officers(conn)}
    assert {r.role for r in made.values()} == set(Role)
    for demo in DEMO_ACCOUNTS:
        assert demo.username in printed and demo.password in printed
        answer = login_form(client, demo.username, demo.password)
        assert answer.status_code == 303, demo.username
        client.cookies.clear()


# --- texts ---------------------------------------------------------------------------------


def test_every_text_the_templates_use_exists_in_both_languages() -> None:
    used: set[str] = set()
    for template in Path(TEMPLATES_DIR).rglob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z0-9_.]+)["']""", template.read_text()))
    assert used, "no t('...') calls found"
    # t("role." ~ r.value) and the like: every value of the vocabulary needs a text.
    vocabularies = {
        "role.": Role,
        "kind.": CheckpointKind,
        "direction.": DeviceDirection,
        "scope.": ScopeKind,
    }
    for prefix in [k for k in used if k.endswith(".")]:
        used.discard(prefix)
        if prefix in vocabularies:
            used |= {prefix + v.value for v in vocabularies[prefix]}
        else:  # another screen's vocabulary: at least its prefix is known
            assert any(k.startswith(prefix) for k in STRINGS), prefix
    used |= {
        f"error.scope_required.{r.value}"
        for r in (Role.CHECKPOINT_OFFICER, Role.WARD_POLICE, Role.VENUE_MANAGER)
    }
    missing = sorted(k for k in used if k not in STRINGS)
    assert missing == []
    for key, texts in STRINGS.items():
        assert all(texts[lang].strip() for lang in LANGS), key
