"""Login, logout and API tokens; the home page; the static files.

Pages: ``GET/POST /login`` (rate-limited; the form is CSRF-protected by a
pre-session cookie), ``POST /logout``, ``GET /`` (the officer's first screen).
JSON: ``POST /api/auth/token`` (username and password for a Bearer token; the
same session as the cookie), ``DELETE /api/auth/token`` (end it),
``GET /api/auth/me``.
"""

from __future__ import annotations

import math
import secrets
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from aggregator.auth.audit import record_action
from aggregator.auth.deps import (
    CurrentOfficer,
    Officer,
    client_ip,
    find_session,
    get_engine,
    login_limits,
    presented_token,
    session_policy,
    state_session,
)
from aggregator.auth.login import LoginAttempt, LoginStatus, attempt_login
from aggregator.auth.sessions import SESSION_COOKIE, SessionState, end_session
from aggregator.db.engine import write_transaction
from aggregator.web.errors import safe_next
from aggregator.web.i18n import both, request_lang, t
from aggregator.web.settings import web_settings
from aggregator.web.templating import STATIC_DIR, nav_items, render

router = APIRouter(tags=["auth"])
router.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

LOGIN_CSRF_COOKIE = "kd_login_csrf"
_REASONS = {
    "expired": "login.expired",
    "inactive": "login.inactive",
    "logged_out": "login.logged_out",
}


def _secure(request: Request) -> bool:
    configured = web_settings(request).cookie_secure
    return request.url.scheme == "https" if configured is None else configured


def _login_page(
    request: Request,
    *,
    next_path: str,
    username: str = "",
    message_key: str | None = None,
    message_params: dict[str, object] | None = None,
    error: bool = False,
    status_code: int = 200,
) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        {
            "login_csrf": token,
            "next": next_path,
            "username": username,
            "message_key": message_key,
            "message_params": message_params or {},
            "message_is_error": error,
        },
        officer=None,
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/login",
    )
    return response


async def _logged_in(request: Request) -> bool:
    found = await find_session(request)
    return found is not None and found[0].state is SessionState.ACTIVE


@router.get("/login", include_in_schema=False)
async def login_form(request: Request, next: str = "/", reason: str | None = None) -> Response:
    """The login page (straight on to ``next`` when already logged in)."""
    target = safe_next(next)
    if await _logged_in(request):
        return RedirectResponse(target, status_code=303)
    key = _REASONS.get(reason or "") or ("login.required" if target != "/" else None)
    return _login_page(request, next_path=target, message_key=key, error=reason == "inactive")


def _attempt(request: Request, username: str, password: str) -> LoginAttempt:
    settings = web_settings(request)
    return attempt_login(
        get_engine(request),
        username=username,
        password=password,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        limits=login_limits(settings),
        policy=session_policy(settings),
    )


@router.post("/login", include_in_schema=False)
async def login_submit(
    request: Request,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the form; on success set the session cookie and go on to ``next``."""
    target = safe_next(next)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(csrf_token, expected):
        return _login_page(
            request,
            next_path=target,
            username=username,
            message_key="login.form_expired",
            error=True,
            status_code=400,
        )
    attempt = await run_in_threadpool(_attempt, request, username, password)
    if attempt.status is LoginStatus.OK and attempt.session is not None:
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            attempt.session.token,
            httponly=True,
            samesite="lax",
            secure=_secure(request),
            path="/",
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response
    if attempt.status is LoginStatus.THROTTLED:
        return _login_page(
            request,
            next_path=target,
            username=username,
            message_key="login.rate_limited",
            message_params={"minutes": max(1, math.ceil(attempt.wait_s / 60))},
            error=True,
            status_code=429,
        )
    inactive = attempt.status is LoginStatus.INACTIVE
    return _login_page(
        request,
        next_path=target,
        username=username,
        message_key="login.inactive" if inactive else "login.failed",
        error=True,
        status_code=403 if inactive else 401,
    )


def _end(request: Request, officer: Officer, token: str) -> None:
    with write_transaction(get_engine(request)) as conn:
        end_session(conn, token=token)
        record_action(
            conn,
            officer=officer,
            action="auth.logout",
            subject=f"officer:{officer.username}",
            ip=client_ip(request),
        )


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, officer: CurrentOfficer) -> Response:
    """End the session and go back to the login page."""
    token, _ = presented_token(request)
    if token is not None:
        await run_in_threadpool(_end, request, officer, token)
    response = RedirectResponse("/login?reason=logged_out", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/", include_in_schema=False)
def home(request: Request, officer: CurrentOfficer) -> Response:
    """The officer's first screen, or a page listing what they may see."""
    items = nav_items(request, officer)
    if items:
        return RedirectResponse(items[0].path, status_code=303)
    return render(request, "home.html", {}, officer=officer)


# --- JSON API ------------------------------------------------------------------------


class TokenRequest(BaseModel):
    """Username and password for a Bearer token."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    """A session token for ``Authorization: Bearer``."""

    model_config = ConfigDict(extra="forbid")

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    officer: Officer


class Me(BaseModel):
    """The officer behind the token, when the session ends if unused, its CSRF token."""

    model_config = ConfigDict(extra="forbid")

    officer: Officer
    role_label: str
    expires_at: datetime
    csrf_token: str


def _refusal(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"detail": {"code": code, "message": message}}, status_code=status, headers=headers or None
    )


@router.post(
    "/api/auth/token",
    response_model=TokenResponse,
    responses={401: {}, 403: {}, 429: {}},
    tags=["auth"],
)
async def issue_token(request: Request, body: TokenRequest) -> Response:
    """Log in for the JSON API: the token works as ``Authorization: Bearer <token>``."""
    attempt = await run_in_threadpool(_attempt, request, body.username, body.password)
    if attempt.status is LoginStatus.OK and attempt.session is not None:
        session = attempt.session
        out = TokenResponse(
            access_token=session.token, expires_at=session.expires_at, officer=session.officer
        )
        return JSONResponse(out.model_dump(mode="json"), headers={"Cache-Control": "no-store"})
    if attempt.status is LoginStatus.THROTTLED:
        minutes = max(1, math.ceil(attempt.wait_s / 60))
        return _refusal(
            429,
            "rate_limited",
            both("login.rate_limited", minutes=minutes),
            **{"Retry-After": str(attempt.wait_s)},
        )
    if attempt.status is LoginStatus.INACTIVE:
        return _refusal(403, "inactive", both("login.inactive"))
    return _refusal(401, "login_failed", both("login.failed"), **{"WWW-Authenticate": "Bearer"})


@router.delete("/api/auth/token", status_code=204, tags=["auth"])
async def revoke_token(request: Request, officer: CurrentOfficer) -> Response:
    """End the session this token (or cookie) belongs to."""
    token, _ = presented_token(request)
    if token is not None:
        await run_in_threadpool(_end, request, officer, token)
    return Response(status_code=204)


@router.get("/api/auth/me", response_model=Me, tags=["auth"])
def me(request: Request, officer: CurrentOfficer) -> Me:
    """Who is logged in."""
    session = state_session(request)
    if session is None:  # current_officer always sets it; a bug otherwise
        raise RuntimeError("no session on an authenticated request")
    lang = request_lang(request)
    return Me(
        officer=officer,
        role_label=t(f"role.{officer.role.value}", lang),
        expires_at=session.expires_at,
        csrf_token=session.csrf_token,
    )
