"""Administration: checkpoints, gate devices, officer accounts, the audit log viewer.

Admins only (401 without a session, 403 for other roles). Pages under
``/admin/`` (forms are CSRF-protected by :func:`~aggregator.auth.deps.current_officer`)
and the same operations as JSON under ``/api/admin/``. A new device's MQTT
password is in the creation answer and nowhere else (see
:mod:`aggregator.auth.device_credentials` for how it reaches the broker).
``GET /api/wards`` (the ward picker's search, any logged-in officer) lives here too.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from aggregator.auth import accounts
from aggregator.auth.accounts import OfficerRow
from aggregator.auth.audit import AuditFilter, AuditPage, query_audit, record_read
from aggregator.auth.deps import AdminOfficer, CurrentOfficer, Officer, client_ip, get_engine
from aggregator.auth.problems import Problem, ProblemError
from aggregator.db.engine import write_transaction
from aggregator.db.fleet import DeviceRecord, list_checkpoints, list_devices
from aggregator.db.schema import CheckpointKind, DeviceDirection, Role
from aggregator.web import admin_ops
from aggregator.web.admin_models import (
    AuditQuery,
    BrokerNotice,
    CheckpointCreate,
    CheckpointOut,
    DeviceCreate,
    DeviceIssued,
    OfficerCreate,
    OfficerUpdate,
    PasswordSet,
    WardOut,
)
from aggregator.web.forms import RowId, by_field, form_fields, split_list, validate
from aggregator.web.settings import web_settings
from aggregator.web.templating import render

router = APIRouter(tags=["admin"])

AUDIT_PURPOSE = "Kiểm tra nhật ký truy cập / audit log review"


def _problems_response(problems: list[Problem]) -> JSONResponse:
    return JSONResponse({"detail": [p.as_json() for p in problems]}, status_code=422)


def _not_found() -> JSONResponse:
    return JSONResponse({"detail": [Problem("", "error.not_found").as_json()]}, status_code=404)


# === pages =========================================================================


@router.get("/admin", include_in_schema=False)
def admin_home(_officer: AdminOfficer) -> Response:
    """The accounts page is where administrators start."""
    return RedirectResponse("/admin/officers", status_code=303)


# --- checkpoints -------------------------------------------------------------------


def _checkpoints_page(
    request: Request,
    officer: Officer,
    *,
    values: dict[str, str] | None = None,
    problems: list[Problem] | None = None,
    ward_q: str = "",
    created: str | None = None,
    status_code: int = 200,
) -> Response:
    values = values or {}
    with get_engine(request).connect() as conn:
        rows = admin_ops.list_checkpoint_rows(conn)
        options = admin_ops.find_wards(conn, ward_q) if ward_q.strip() else []
        chosen = values.get("ward_code", "")
        if chosen.isdigit() and all(w.code != int(chosen) for w in options):
            options = admin_ops.find_wards(conn, chosen) + options
    return render(
        request,
        "admin/checkpoints.html",
        {
            "rows": rows,
            "values": values,
            "problems": by_field(problems or []),
            "ward_q": ward_q,
            "ward_options": options,
            "kinds": list(CheckpointKind),
            "created": created,
        },
        officer=officer,
        status_code=status_code,
    )


@router.get("/admin/checkpoints", include_in_schema=False)
def checkpoints_page(
    request: Request, officer: AdminOfficer, ward_q: str = "", created: str | None = None
) -> Response:
    """Checkpoints and the form to add one (``ward_q`` searches wards without JavaScript)."""
    values = {k: v for k, v in request.query_params.items() if k in CheckpointCreate.model_fields}
    return _checkpoints_page(request, officer, values=values, ward_q=ward_q, created=created)


def _create_checkpoint(request: Request, officer: Officer, data: dict[str, str]) -> Response:
    # ward_q is the picker's search box, not part of the checkpoint.
    body, problems = validate(CheckpointCreate, {k: v for k, v in data.items() if k != "ward_q"})
    if body is not None:
        try:
            with write_transaction(get_engine(request)) as conn:
                admin_ops.create_checkpoint(conn, body=body, officer=officer, ip=client_ip(request))
        except ProblemError as exc:
            problems = exc.problems
        else:
            return RedirectResponse(f"/admin/checkpoints?created={body.id}", status_code=303)
    return _checkpoints_page(
        request,
        officer,
        values=data,
        problems=problems,
        ward_q=data.get("ward_q", ""),
        status_code=422,
    )


@router.post("/admin/checkpoints", include_in_schema=False)
async def checkpoints_create(request: Request, officer: AdminOfficer) -> Response:
    """Create a checkpoint from the form."""
    data = await form_fields(request)
    return await run_in_threadpool(_create_checkpoint, request, officer, data)


# --- devices -----------------------------------------------------------------------


def _devices_page(
    request: Request,
    officer: Officer,
    *,
    values: dict[str, str] | None = None,
    problems: list[Problem] | None = None,
    notices: list[BrokerNotice] | None = None,
    status_code: int = 200,
) -> Response:
    with get_engine(request).connect() as conn:
        rows = list_devices(conn)
        places = list_checkpoints(conn)
    return render(
        request,
        "admin/devices.html",
        {
            "rows": rows,
            "checkpoints": places,
            "checkpoint_names": {c.id: c.name for c in places},
            "directions": list(DeviceDirection),
            "values": values or {},
            "problems": by_field(problems or []),
            "notices": notices or [],
            "broker_configured": web_settings(request).broker_passwd_file is not None,
        },
        officer=officer,
        status_code=status_code,
    )


@router.get("/admin/devices", include_in_schema=False)
def devices_page(request: Request, officer: AdminOfficer, checkpoint_id: str = "") -> Response:
    """Devices and the form to issue one."""
    return _devices_page(request, officer, values={"checkpoint_id": checkpoint_id})


def _create_device(request: Request, officer: Officer, data: dict[str, str]) -> Response:
    body, problems = validate(DeviceCreate, data)
    if body is not None:
        try:
            with write_transaction(get_engine(request)) as conn:
                issued = admin_ops.create_device(
                    conn, body=body, officer=officer, ip=client_ip(request)
                )
        except ProblemError as exc:
            problems = exc.problems
        else:
            notices = admin_ops.update_broker(get_engine(request), web_settings(request))
            return render(
                request,
                "admin/device_created.html",
                {"device": issued, "notices": notices},
                officer=officer,
                status_code=201,
            )
    return _devices_page(request, officer, values=data, problems=problems, status_code=422)


@router.post("/admin/devices", include_in_schema=False)
async def devices_create(request: Request, officer: AdminOfficer) -> Response:
    """Issue a device from the form; the answer shows its MQTT password once."""
    data = await form_fields(request)
    return await run_in_threadpool(_create_device, request, officer, data)


def _sync_broker_page(request: Request, officer: Officer) -> Response:
    notices = admin_ops.update_broker(get_engine(request), web_settings(request))
    return _devices_page(request, officer, notices=notices)


@router.post("/admin/devices/broker", include_in_schema=False)
async def devices_broker_sync(request: Request, officer: AdminOfficer) -> Response:
    """Rewrite the broker's password file from the registry (after fixing a failed write)."""
    return await run_in_threadpool(_sync_broker_page, request, officer)


# --- officers ----------------------------------------------------------------------


def _scopes_field(data: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(data)
    if "scopes" in data:
        out["scopes"] = split_list(data["scopes"])
    return out


def _officers_page(
    request: Request,
    officer: Officer,
    *,
    values: dict[str, str] | None = None,
    problems: list[Problem] | None = None,
    created: str | None = None,
    role: Role | None = None,
    status_code: int = 200,
) -> Response:
    with get_engine(request).connect() as conn:
        rows = accounts.list_officers(conn, role=role)
    return render(
        request,
        "admin/officers.html",
        {
            "rows": rows,
            "roles": list(Role),
            "role_filter": role.value if role else "",
            "values": values or {},
            "problems": by_field(problems or []),
            "created": created,
        },
        officer=officer,
        status_code=status_code,
    )


@router.get("/admin/officers", include_in_schema=False)
def officers_page(
    request: Request, officer: AdminOfficer, created: str | None = None, role: str = ""
) -> Response:
    """Accounts (optionally of one role) and the form to create one."""
    chosen = Role(role) if role in {r.value for r in Role} else None
    return _officers_page(request, officer, created=created, role=chosen)


def _password_again(data: dict[str, str]) -> list[Problem]:
    if data.get("password", "") != data.get("password_again", ""):
        return [Problem("password_again", "error.password_mismatch")]
    return []


def _create_officer(request: Request, officer: Officer, data: dict[str, str]) -> Response:
    fields = {k: v for k, v in _scopes_field(data).items() if k != "password_again"}
    body, problems = validate(OfficerCreate, fields)
    problems += _password_again(data)
    if body is not None and not problems:
        try:
            with write_transaction(get_engine(request)) as conn:
                admin_ops.create_officer(conn, body=body, officer=officer, ip=client_ip(request))
        except ProblemError as exc:
            problems = exc.problems
        else:
            return RedirectResponse(f"/admin/officers?created={body.username}", status_code=303)
    values = {k: v for k, v in data.items() if not k.startswith("password")}
    return _officers_page(request, officer, values=values, problems=problems, status_code=422)


@router.post("/admin/officers", include_in_schema=False)
async def officers_create(request: Request, officer: AdminOfficer) -> Response:
    """Create an account from the form."""
    data = await form_fields(request)
    return await run_in_threadpool(_create_officer, request, officer, data)


def _officer_page(
    request: Request,
    officer: Officer,
    target: OfficerRow,
    *,
    values: dict[str, str] | None = None,
    problems: list[Problem] | None = None,
    password_problems: list[Problem] | None = None,
    notice: tuple[str, dict[str, Any]] | None = None,
    status_code: int = 200,
) -> Response:
    shown = {
        "full_name": target.full_name,
        "role": target.role.value,
        "scopes": "\n".join(str(s) for s in target.scopes),
        "active": "on" if target.active else "",
        **(values or {}),
    }
    return render(
        request,
        "admin/officer_edit.html",
        {
            "target": target,
            "roles": list(Role),
            "values": shown,
            "problems": by_field(problems or []),
            "password_problems": by_field(password_problems or []),
            "notice": notice,
        },
        officer=officer,
        status_code=status_code,
    )


def _load(request: Request, officer_id: RowId) -> OfficerRow | None:
    with get_engine(request).connect() as conn:
        return accounts.get_officer(conn, officer_id=officer_id)


@router.get("/admin/officers/{officer_id}", include_in_schema=False)
def officer_page(
    request: Request, officer: AdminOfficer, officer_id: RowId, saved: str | None = None
) -> Response:
    """One account: role, scopes, activity, password reset."""
    target = _load(request, officer_id)
    if target is None:
        return render(
            request,
            "error.html",
            {"message_key": "error.not_found"},
            officer=officer,
            status_code=404,
        )
    notice = None
    if saved == "1":
        notice = ("admin.officers.updated", {"username": target.username})
    elif saved == "password":
        notice = ("admin.officers.password_set", {"username": target.username})
    return _officer_page(request, officer, target, notice=notice)


def _update_officer(
    request: Request, officer: Officer, officer_id: RowId, data: dict[str, str]
) -> Response:
    target = _load(request, officer_id)
    if target is None:
        return render(
            request,
            "error.html",
            {"message_key": "error.not_found"},
            officer=officer,
            status_code=404,
        )
    fields = _scopes_field(data)
    fields.setdefault("scopes", [])
    # An unticked checkbox sends nothing: absent means "deactivate".
    fields["active"] = "active" in data
    body, problems = validate(OfficerUpdate, fields)
    if body is not None:
        try:
            with write_transaction(get_engine(request)) as conn:
                admin_ops.update_officer(
                    conn, officer_id=officer_id, body=body, officer=officer, ip=client_ip(request)
                )
        except ProblemError as exc:
            problems = exc.problems
        else:
            return RedirectResponse(f"/admin/officers/{officer_id}?saved=1", status_code=303)
    return _officer_page(
        request,
        officer,
        target,
        values=data | {"active": "on" if "active" in data else ""},
        problems=problems,
        status_code=422,
    )


@router.post("/admin/officers/{officer_id}", include_in_schema=False)
async def officer_update(request: Request, officer: AdminOfficer, officer_id: RowId) -> Response:
    """Save an account's name, role, scopes and activity."""
    data = await form_fields(request)
    return await run_in_threadpool(_update_officer, request, officer, officer_id, data)


def _set_password(
    request: Request, officer: Officer, officer_id: RowId, data: dict[str, str]
) -> Response:
    target = _load(request, officer_id)
    if target is None:
        return render(
            request,
            "error.html",
            {"message_key": "error.not_found"},
            officer=officer,
            status_code=404,
        )
    body, problems = validate(PasswordSet, {"password": data.get("password", "")})
    problems += _password_again(data)
    if body is not None and not problems:
        try:
            with write_transaction(get_engine(request)) as conn:
                admin_ops.reset_password(
                    conn,
                    officer_id=officer_id,
                    password=body.password,
                    officer=officer,
                    ip=client_ip(request),
                )
        except ProblemError as exc:
            problems = exc.problems
        else:
            if officer_id == officer.id:
                # Their own sessions ended with the change, this one included.
                return RedirectResponse("/login?reason=expired", status_code=303)
            return RedirectResponse(f"/admin/officers/{officer_id}?saved=password", status_code=303)
    return _officer_page(request, officer, target, password_problems=problems, status_code=422)


@router.post("/admin/officers/{officer_id}/password", include_in_schema=False)
async def officer_password(request: Request, officer: AdminOfficer, officer_id: RowId) -> Response:
    """Set a new password for an account (its sessions end)."""
    data = await form_fields(request)
    return await run_in_threadpool(_set_password, request, officer, officer_id, data)


# --- audit log ---------------------------------------------------------------------


def _audit(
    conn: Connection, officer: Officer, query: AuditQuery, *, limit: int, ip: str
) -> tuple[AuditPage, bool]:
    """One page of the log for ``query``; the viewing itself is recorded. Also whether the
    officer filter named a known account."""
    officer_id: int | None = None
    known = True
    if query.officer:
        found = accounts.find_officer(conn, username=query.officer)
        known = found is not None
        officer_id = found.id if found is not None else -1
    filters = AuditFilter(
        officer_id=officer_id,
        action=query.action,
        subject=query.subject,
        since=query.since,
        until=query.until,
    )
    page = query_audit(
        conn, filters=filters, before_id=query.before, after_id=query.after, limit=limit
    )
    record_read(
        conn,
        officer=officer,
        action="audit.view",
        subject="audit_log",
        purpose=AUDIT_PURPOSE,
        detail=query.model_dump(mode="json", exclude_none=True),
        ip=ip,
    )
    return page, known


_AUDIT_FIELDS = ("officer", "action", "subject", "since", "until", "before", "after")


@router.get("/admin/audit", include_in_schema=False)
def audit_page(request: Request, officer: AdminOfficer) -> Response:
    """The audit log, filtered and paged (newest first)."""
    values = {k: request.query_params.get(k, "") for k in _AUDIT_FIELDS}
    query, problems = validate(AuditQuery, values)
    page: AuditPage | None = None
    known = True
    if query is not None:
        with write_transaction(get_engine(request)) as conn:
            page, known = _audit(
                conn,
                officer,
                query,
                limit=web_settings(request).audit_page_size,
                ip=client_ip(request),
            )
    filters = {k: v for k, v in values.items() if k not in ("before", "after") and v}
    newer_url = older_url = None
    if page is not None and page.entries:
        if page.has_newer:
            newer_url = "/admin/audit?" + urlencode({**filters, "after": page.entries[0].id})
        if page.has_older:
            older_url = "/admin/audit?" + urlencode({**filters, "before": page.entries[-1].id})
    return render(
        request,
        "admin/audit.html",
        {
            "page": page,
            "values": values,
            "problems": by_field(problems),
            "officer_known": known,
            "newer_url": newer_url,
            "older_url": older_url,
        },
        officer=officer,
        status_code=200 if query is not None else 422,
    )


# === JSON API ======================================================================


@router.get("/api/admin/checkpoints", response_model=list[CheckpointOut])
def api_checkpoints(request: Request, _officer: AdminOfficer) -> list[CheckpointOut]:
    """Every checkpoint with its ward and device count."""
    with get_engine(request).connect() as conn:
        return admin_ops.list_checkpoint_rows(conn)


@router.post(
    "/api/admin/checkpoints", status_code=201, response_model=CheckpointOut, responses={422: {}}
)
def api_checkpoint_create(request: Request, officer: AdminOfficer, body: CheckpointCreate) -> Any:
    """Create a checkpoint."""
    try:
        with write_transaction(get_engine(request)) as conn:
            return admin_ops.create_checkpoint(
                conn, body=body, officer=officer, ip=client_ip(request)
            )
    except ProblemError as exc:
        return _problems_response(exc.problems)


@router.get("/api/admin/devices", response_model=list[DeviceRecord])
def api_devices(request: Request, _officer: AdminOfficer) -> list[DeviceRecord]:
    """Every device and what the aggregator last knew of it."""
    with get_engine(request).connect() as conn:
        return list_devices(conn)


@router.post(
    "/api/admin/devices", status_code=201, response_model=DeviceIssued, responses={422: {}}
)
def api_device_create(request: Request, officer: AdminOfficer, body: DeviceCreate) -> Any:
    """Issue a device; the answer holds its MQTT password, which is not kept anywhere."""
    try:
        with write_transaction(get_engine(request)) as conn:
            issued = admin_ops.create_device(
                conn, body=body, officer=officer, ip=client_ip(request)
            )
    except ProblemError as exc:
        return _problems_response(exc.problems)
    notices = admin_ops.update_broker(get_engine(request), web_settings(request))
    out = DeviceIssued(device=issued, broker=notices)
    return JSONResponse(
        out.model_dump(mode="json"), status_code=201, headers={"Cache-Control": "no-store"}
    )


@router.post("/api/admin/broker/sync", response_model=list[BrokerNotice])
def api_broker_sync(request: Request, _officer: AdminOfficer) -> list[BrokerNotice]:
    """Rewrite the broker's password file from the registry and ask the broker to reload."""
    return admin_ops.update_broker(get_engine(request), web_settings(request))


@router.get("/api/admin/officers", response_model=list[OfficerRow])
def api_officers(
    request: Request, _officer: AdminOfficer, role: Role | None = None, active: bool | None = None
) -> list[OfficerRow]:
    """Accounts, optionally of one role or activity."""
    with get_engine(request).connect() as conn:
        return accounts.list_officers(conn, role=role, active=active)


@router.post("/api/admin/officers", status_code=201, response_model=OfficerRow, responses={422: {}})
def api_officer_create(request: Request, officer: AdminOfficer, body: OfficerCreate) -> Any:
    """Create an account."""
    try:
        with write_transaction(get_engine(request)) as conn:
            return admin_ops.create_officer(conn, body=body, officer=officer, ip=client_ip(request))
    except ProblemError as exc:
        return _problems_response(exc.problems)


@router.get("/api/admin/officers/{officer_id}", response_model=OfficerRow, responses={404: {}})
def api_officer(request: Request, _officer: AdminOfficer, officer_id: RowId) -> Any:
    """One account."""
    target = _load(request, officer_id)
    return target if target is not None else _not_found()


@router.patch(
    "/api/admin/officers/{officer_id}", response_model=OfficerRow, responses={404: {}, 422: {}}
)
def api_officer_update(
    request: Request, officer: AdminOfficer, officer_id: RowId, body: OfficerUpdate
) -> Any:
    """Change an account's name, role, scopes or activity (its sessions end on access changes)."""
    try:
        with write_transaction(get_engine(request)) as conn:
            return admin_ops.update_officer(
                conn, officer_id=officer_id, body=body, officer=officer, ip=client_ip(request)
            )
    except ProblemError as exc:
        return _problems_response(exc.problems)
    except LookupError:
        return _not_found()


@router.put(
    "/api/admin/officers/{officer_id}/password", status_code=204, responses={404: {}, 422: {}}
)
def api_officer_password(
    request: Request, officer: AdminOfficer, officer_id: RowId, body: PasswordSet
) -> Response:
    """Set an account's password (its sessions end)."""
    try:
        with write_transaction(get_engine(request)) as conn:
            admin_ops.reset_password(
                conn,
                officer_id=officer_id,
                password=body.password,
                officer=officer,
                ip=client_ip(request),
            )
    except ProblemError as exc:
        return _problems_response(exc.problems)
    except LookupError:
        return _not_found()
    return Response(status_code=204)


@router.get("/api/admin/audit", response_model=AuditPage, responses={422: {}})
def api_audit(
    request: Request, officer: AdminOfficer, query: Annotated[AuditQuery, Query()]
) -> AuditPage:
    """A page of the audit log, newest first (``before``/``after``: entry ids to page from)."""
    with write_transaction(get_engine(request)) as conn:
        page, _ = _audit(
            conn, officer, query, limit=web_settings(request).audit_page_size, ip=client_ip(request)
        )
    return page


@router.get("/api/wards", response_model=list[WardOut], tags=["wards"])
def api_wards(
    request: Request, _officer: CurrentOfficer, q: Annotated[str, Query(max_length=100)] = ""
) -> list[WardOut]:
    """Wards whose name contains ``q`` ignoring diacritics ("hoan kiem"), or with code ``q``."""
    if not q.strip():
        return []
    with get_engine(request).connect() as conn:
        return admin_ops.find_wards(conn, q)
