"""How refused requests look: JSON for ``/api/*``, a page (or the login page) for people.

Installed on the app by :func:`install_error_handlers`. A 401 on a page
redirects to ``/login?next=<where the officer was>&reason=<why>`` so that
after logging in they land back where they were; a 403 on a page renders
the error page in the officer's language. Under ``/api/`` both stay JSON:
``{"detail": {"code": ..., "message": "tiếng Việt / English"}}``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse

from aggregator.auth.deps import AuthError, NotAuthenticatedError
from aggregator.auth.problems import Problem
from aggregator.web.i18n import has_key
from aggregator.web.templating import render


def is_api(request: Request) -> bool:
    """True for the JSON API (answers stay JSON)."""
    return request.url.path.startswith("/api/")


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else ``/`` (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_url(next_path: str, reason: str | None) -> str:
    """The login page that returns to ``next_path`` and says ``reason``."""
    query = {"next": safe_next(next_path)}
    if reason:
        query["reason"] = reason
    return "/login?" + urlencode(query)


async def _auth_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, AuthError) or is_api(request):
        return await http_exception_handler(request, exc)  # type: ignore[arg-type]
    if isinstance(exc, NotAuthenticatedError):
        here = request.url.path
        if request.method == "GET" and request.url.query:
            here += f"?{request.url.query}"
        reason = {"session_expired": "expired", "inactive": "inactive"}.get(exc.code)
        return RedirectResponse(login_url(here, reason), status_code=303)
    officer = getattr(request.state, "officer", None)
    return render(
        request,
        "error.html",
        {"message_key": "auth.csrf" if exc.code == "csrf" else "auth.forbidden"},
        officer=officer,
        status_code=exc.status_code,
    )


def _readable(error: dict[str, Any]) -> dict[str, Any]:
    if not has_key(error.get("type", "")):
        return error
    params = {k: v for k, v in (error.get("ctx") or {}).items() if k != "key"}
    return {**error, "msg": Problem("", error["type"], params).bilingual()}


async def _validation_error(request: Request, exc: Exception) -> Response:
    # FastAPI's usual 422 body; errors raised with one of our message keys read as text.
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse(
        {"detail": jsonable_encoder([_readable(dict(e)) for e in errors])}, status_code=422
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register on ``app``: :class:`~aggregator.auth.deps.AuthError` as pages or JSON,
    and 422s whose messages are our bilingual texts."""
    app.add_exception_handler(AuthError, _auth_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
