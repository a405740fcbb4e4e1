"""Server-rendered pages: the Jinja2 environment, the navigation and :func:`render`.

Every page extends ``base.html`` (header with the officer's name and role,
navigation by role, language switch, logout) and is rendered with
:func:`render`, which adds what the layout needs: ``lang``, ``t(key, **params)``
(the text in the page's language), ``officer``, ``nav``, ``csrf_token``,
``lang_links`` and ``static_url(name)``. Pages carry personal data, so they are
sent ``no-store`` with a Content-Security-Policy that runs only our own
scripts from ``/static`` (no inline ``<script>``; data for scripts goes in
``data-*`` attributes or ``<script type="application/json">``).

Navigation entries are registered with :func:`register_nav` (the live
screens may re-register theirs); an entry shows only to its roles and only
when the app serves its path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.routing import Match

from aggregator.auth.audit import LOCAL_TZ
from aggregator.auth.deps import state_session
from aggregator.auth.model import Officer
from aggregator.db.schema import Role
from aggregator.web.i18n import LANG_COOKIE, LANGS, Lang, parse_lang, request_lang, t

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"

templates = Jinja2Templates(directory=TEMPLATES_DIR)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'; object-src 'none'"
)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_LANG_COOKIE_AGE_S = 365 * 86_400


@dataclass(frozen=True, slots=True)
class NavItem:
    """One navigation entry: where it goes, its label key, who sees it, its place."""

    path: str
    label_key: str
    roles: frozenset[Role]
    order: int


NAV: dict[str, NavItem] = {}


def register_nav(
    path: str, label_key: str, roles: frozenset[Role] | set[Role], *, order: int
) -> None:
    """Add (or replace) the navigation entry for ``path``."""
    NAV[path] = NavItem(path, label_key, frozenset(roles), order)


register_nav(
    "/monitor",
    "nav.monitor",
    {Role.CHECKPOINT_OFFICER, Role.VENUE_MANAGER, Role.WARD_POLICE, Role.COMMAND_CENTRE},
    order=10,
)
register_nav(
    "/lookup",
    "nav.lookup",
    {Role.CHECKPOINT_OFFICER, Role.WARD_POLICE, Role.INVESTIGATOR},
    order=20,
)
register_nav(
    "/command", "nav.command", {Role.COMMAND_CENTRE, Role.HEALTH_OFFICIAL, Role.ADMIN}, order=30
)
register_nav("/admin/checkpoints", "nav.admin_checkpoints", {Role.ADMIN}, order=80)
register_nav("/admin/devices", "nav.admin_devices", {Role.ADMIN}, order=81)
register_nav("/admin/officers", "nav.admin_officers", {Role.ADMIN}, order=82)
register_nav("/admin/audit", "nav.admin_audit", {Role.ADMIN}, order=83)


@dataclass(frozen=True, slots=True)
class NavLink:
    """A navigation entry as the layout draws it."""

    path: str
    label: str
    current: bool


def _serves(app: Any, path: str) -> bool:
    # Asks the routes themselves (BaseRoute.matches), so routers included in any way count.
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


def nav_items(request: Request, officer: Officer) -> list[NavItem]:
    """The entries ``officer`` sees in this app, in order."""
    served: dict[str, bool] | None = getattr(request.app.state, "kd_served_paths", None)
    if served is None:
        served = {}
        request.app.state.kd_served_paths = served
    for path in NAV:
        if path not in served:
            served[path] = _serves(request.app, path)
    return sorted(
        (i for i in NAV.values() if officer.role in i.roles and served[i.path]),
        key=lambda i: i.order,
    )


def nav_for(request: Request, officer: Officer | None, lang: Lang) -> list[NavLink]:
    """The navigation bar for ``officer`` (empty when nobody is logged in)."""
    if officer is None:
        return []
    here = request.url.path
    return [
        NavLink(i.path, t(i.label_key, lang), here == i.path or here.startswith(i.path + "/"))
        for i in nav_items(request, officer)
    ]


@cache
def _static_version(name: str) -> str:
    path = STATIC_DIR / name
    return str(int(path.stat().st_mtime)) if path.is_file() else "0"


def static_url(name: str) -> str:
    """URL of a file in ``static/``, with its modification time so browsers refetch changes."""
    return f"/static/{name}?v={_static_version(name)}"


def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A UTC timestamp as Vietnam time (the screens' clock); empty for None."""
    if value is None:
        return ""
    return value.astimezone(LOCAL_TZ).strftime(fmt)


templates.env.filters["localtime"] = local_time
templates.env.globals["static_url"] = static_url


def _translator(lang: Lang) -> Any:
    def tr(key: str, **params: Any) -> str:
        text = t(key, lang)
        return text.format(**params) if params else text

    return tr


def lang_links(request: Request) -> list[tuple[Lang, str]]:
    """The current URL in each language (``?lang=`` replaced)."""
    return [(lang, str(request.url.include_query_params(lang=lang))) for lang in LANGS]


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    *,
    officer: Officer | None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render template ``name`` with the layout's context; remembers a ``?lang=`` choice."""
    lang = request_lang(request)
    session = state_session(request)
    ctx: dict[str, Any] = {
        "lang": lang,
        "t": _translator(lang),
        "officer": officer,
        "role_label": t(f"role.{officer.role.value}", lang) if officer else "",
        "nav": nav_for(request, officer, lang),
        "csrf_token": session.csrf_token if session else "",
        "lang_links": lang_links(request),
    }
    ctx.update(context or {})
    response = templates.TemplateResponse(
        request, name, ctx, status_code=status_code, headers={**PAGE_HEADERS, **(headers or {})}
    )
    chosen = parse_lang(request.query_params.get("lang"))
    if chosen is not None and chosen != request.cookies.get(LANG_COOKIE):
        response.set_cookie(
            LANG_COOKIE, chosen, max_age=_LANG_COOKIE_AGE_S, samesite="lax", httponly=True
        )
    return response
