"""FastAPI dependencies: the officer behind a request, role checks, CSRF.

``CurrentOfficer`` resolves the session from ``Authorization: Bearer <token>``
or the ``kd_session`` cookie. Without a valid one it raises
:class:`NotAuthenticatedError` (401): :mod:`aggregator.web.errors` turns that into
a redirect to ``/login?next=...`` for pages and leaves a JSON 401 for
``/api/*``. A request that changes something (POST, PUT, PATCH, DELETE) and
is authenticated by the cookie must also carry the session's CSRF token, as
the form field ``csrf_token`` or the header ``X-CSRF-Token`` (the layout puts
it in ``<meta name="csrf-token">`` for scripts); Bearer requests need none,
since no other site can make a browser send that header.

Usage::

    @router.get("/api/alerts")
    def alerts(officer: CurrentOfficer) -> ...

    Commander = Annotated[Officer, Depends(require_roles(Role.COMMAND_CENTRE, Role.ADMIN))]
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from aggregator.api.deps import get_service
from aggregator.auth.model import GLOBAL_ROLES, Officer, Scope, scope_problems
from aggregator.auth.ratelimit import LoginLimits
from aggregator.auth.sessions import (
    SESSION_COOKIE,
    ActiveSession,
    SessionLookup,
    SessionPolicy,
    SessionState,
    resolve_session,
)
from aggregator.db.engine import in_transaction
from aggregator.db.schema import Role
from aggregator.web.i18n import both
from aggregator.web.settings import WebSettings, web_settings

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "GLOBAL_ROLES",
    "AdminOfficer",
    "AuthError",
    "CurrentOfficer",
    "ForbiddenError",
    "NotAuthenticatedError",
    "Officer",
    "Scope",
    "client_ip",
    "current_officer",
    "get_engine",
    "require_roles",
    "scope_problems",
]

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class AuthError(HTTPException):
    """A refused request; ``code`` says why (``detail`` holds it and a bilingual message)."""

    def __init__(self, status_code: int, code: str, key: str, **headers: str) -> None:
        self.code = code
        super().__init__(
            status_code, detail={"code": code, "message": both(key)}, headers=headers or None
        )


_UNAUTHENTICATED_KEYS = {
    "not_authenticated": "auth.not_authenticated",
    "session_expired": "auth.session_expired",
    "inactive": "auth.inactive",
}


class NotAuthenticatedError(AuthError):
    """401: no session, an expired one, or a deactivated account."""

    def __init__(self, code: str) -> None:
        key = _UNAUTHENTICATED_KEYS[code]
        super().__init__(401, code, key, **{"WWW-Authenticate": "Bearer"})


class ForbiddenError(AuthError):
    """403: the role may not use this route, or the form's CSRF token is wrong."""

    def __init__(self, code: str = "forbidden") -> None:
        super().__init__(403, code, "auth.csrf" if code == "csrf" else "auth.forbidden")


def get_engine(request: Request) -> Engine:
    """The database engine of the service this app serves."""
    return get_service(request).engine


def client_ip(request: Request) -> str:
    """The client's address as the server sees it (behind a proxy: uvicorn --proxy-headers)."""
    return request.client.host if request.client else "unknown"


def session_policy(settings: WebSettings) -> SessionPolicy:
    """The session lifetimes the settings ask for."""
    return SessionPolicy(
        idle_s=settings.session_idle_s,
        absolute_s=settings.session_absolute_s,
        touch_s=settings.session_touch_s,
    )


def login_limits(settings: WebSettings) -> LoginLimits:
    """The login rate limits the settings ask for."""
    return LoginLimits(
        window_s=settings.login_window_s,
        max_per_username=settings.login_max_per_username,
        max_per_ip=settings.login_max_per_ip,
    )


def presented_token(request: Request) -> tuple[str | None, bool]:
    """The session token the request carries and whether it came in the cookie."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


def _lookup(engine: Engine, token: str, policy: SessionPolicy) -> SessionLookup:
    # Reads, then may touch last_seen_at: retried whole on a stale SQLite snapshot.
    return in_transaction(engine, lambda conn: resolve_session(conn, token=token, policy=policy))


async def find_session(request: Request) -> tuple[SessionLookup, bool] | None:
    """The session the request presents, resolved (None: it presents none)."""
    token, via_cookie = presented_token(request)
    if token is None:
        return None
    policy = session_policy(web_settings(request))
    lookup = await run_in_threadpool(_lookup, get_engine(request), token, policy)
    return lookup, via_cookie


async def _csrf_sent(request: Request) -> str | None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(_FORM_TYPES):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    return sent


async def current_officer(request: Request) -> Officer:
    """The logged-in officer.

    Raises :class:`NotAuthenticatedError`, or :class:`ForbiddenError` for a bad CSRF token.
    """
    found = await find_session(request)
    if found is None:
        raise NotAuthenticatedError("not_authenticated")
    lookup, via_cookie = found
    if lookup.state is SessionState.INACTIVE:
        raise NotAuthenticatedError("inactive")
    session: ActiveSession | None = lookup.session
    if session is None:
        # A token we do not know was valid once (we issued it): tell the officer it expired.
        raise NotAuthenticatedError("session_expired")
    if via_cookie and request.method not in _SAFE_METHODS:
        sent = await _csrf_sent(request)
        if sent is None or not secrets.compare_digest(sent, session.csrf_token):
            raise ForbiddenError("csrf")
    request.state.kd_session = session
    request.state.officer = session.officer
    return session.officer


CurrentOfficer = Annotated[Officer, Depends(current_officer)]


def require_roles(*roles: Role) -> Callable[..., Officer]:
    """A dependency letting only ``roles`` through (403 for others, 401 without a session)."""
    allowed = frozenset(roles)

    def dependency(officer: CurrentOfficer) -> Officer:
        if officer.role not in allowed:
            raise ForbiddenError()
        return officer

    dependency.__name__ = "require_" + "_or_".join(r.value for r in roles)
    return dependency


AdminOfficer = Annotated[Officer, Depends(require_roles(Role.ADMIN))]


def state_session(request: Request) -> ActiveSession | None:
    """The session :func:`current_officer` resolved for this request, if any."""
    session: Any = getattr(request.state, "kd_session", None)
    return session if isinstance(session, ActiveSession) else None
