"""F-status and vaccination updates (health officials, ward police, admins), one by one or by CSV.

- ``GET /registry``: the page (one citizen's update; a health department's CSV
  with a dry-run preview and a per-row error report).
- ``POST /registry/status`` (form) and ``POST /api/registry/status`` (JSON
  :class:`~aggregator.db.health_updates.StatusUpdate`): one update.
- ``POST /registry/import`` (multipart form: ``file``, ``dry_run``) and
  ``POST /api/registry/import?dry_run=true`` (the CSV as the body): the import.
  A file with any problem imports nothing (422 with the report); a clean one
  is applied in one transaction.

Ward police change only residents (permanent or temporary) of their wards; a
citizen outside is refused (403, or a row error in a CSV). Every change is
audited and notified to the ward; after the commit the deny-list is rebuilt
and published (``app.state.service.denylist.publish_now()``; while the service
is not connected to the broker the revision is recorded and the housekeeping
thread publishes it on connect).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from aggregator.auth.audit import record_action, record_read
from aggregator.auth.deps import Officer, client_ip, get_engine, require_roles
from aggregator.auth.problems import Problem
from aggregator.db.engine import write_transaction
from aggregator.db.health_updates import (
    CSV_COLUMNS,
    Applied,
    ImportCheck,
    StatusUpdate,
    apply_import,
    apply_update,
    check_import,
    in_scope,
)
from aggregator.db.registry import get_citizen_by_identity
from aggregator.db.schema import HealthStatus, Role
from aggregator.web.forms import by_field, form_fields, validate
from aggregator.web.templating import register_nav, render

log = logging.getLogger(__name__)

router = APIRouter(tags=["registry"])

RegistryOfficer = Annotated[
    Officer,
    Depends(require_roles(Role.HEALTH_OFFICIAL, Role.WARD_POLICE, Role.ADMIN)),
]
register_nav(
    "/registry", "nav.registry", {Role.HEALTH_OFFICIAL, Role.WARD_POLICE, Role.ADMIN}, order=40
)
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
IMPORT_PURPOSE = "Xem trước nhập trạng thái F / status import preview"


def publish_denylist(request: Request) -> int | None:
    """Rebuild and publish the gates' deny-list now; its revision (None if that failed)."""
    service = request.app.state.service
    try:
        return service.denylist.publish_now().revision
    # The change is committed: a failed rebuild is retried by the housekeeping poll.
    except SQLAlchemyError:
        log.exception("deny-list rebuild after a status change failed; the poll will retry")
        return None


class ScopeRefusedError(PermissionError):
    """The citizen is outside the officer's scope."""


def _update_one(request: Request, officer: Officer, body: StatusUpdate) -> Applied | Problem:
    with write_transaction(get_engine(request)) as conn:
        citizen = get_citizen_by_identity(conn, identity_no=body.identity_no)
        if citizen is None:
            return Problem("identity_no", "registry.error.unknown_citizen")
        if not in_scope(conn, officer, citizen):
            raise ScopeRefusedError(body.identity_no)
        applied = apply_update(conn, citizen=citizen, update_=body, officer=officer)
        record_action(
            conn,
            officer=officer,
            action="registry.status",
            subject=f"citizen:{citizen.id}",
            detail={
                "previous": applied.previous.value,
                "status": applied.status.value,
                "since": body.since.isoformat(),
                "doses": applied.doses,
            },
            ip=client_ip(request),
        )
    return applied


def _applied_json(applied: Applied, revision: int | None) -> dict[str, Any]:
    return {
        **applied.model_dump(mode="json"),
        "changed": applied.changed,
        "denylist_revision": revision,
    }


@router.post("/api/registry/status")
async def api_status(request: Request, officer: RegistryOfficer, raw: dict[str, Any]) -> Response:
    """Set one citizen's status (and doses); notifies the ward and the gates."""
    body, problems = validate(StatusUpdate, raw)
    if body is None:
        return JSONResponse({"detail": [p.as_json() for p in problems]}, status_code=422)
    try:
        outcome = await run_in_threadpool(_update_one, request, officer, body)
    except ScopeRefusedError:
        return JSONResponse(
            {"detail": [Problem("identity_no", "registry.error.out_of_scope").as_json()]},
            status_code=403,
        )
    if isinstance(outcome, Problem):
        return JSONResponse({"detail": [outcome.as_json()]}, status_code=404)
    revision = await run_in_threadpool(publish_denylist, request) if outcome.changed else None
    return JSONResponse(_applied_json(outcome, revision))


# --- import ----------------------------------------------------------------------------


def _report(check: ImportCheck, *, page: bool = False) -> dict[str, Any]:
    """The import's report: JSON problems for the API, ``Problem``s (one language) for the page."""

    def problem(field: str, key: str, params: dict[str, Any]) -> Any:
        found = Problem(field, key, params)
        return found if page else found.as_json()

    return {
        "ok": check.ok,
        "rows": len(check.rows),
        "errors": check.error_count,
        "file_problems": [problem("file", k, p) for k, p in check.file_problems],
        "lines": [
            {
                "line": r.line,
                "identity_no": r.raw.get("identity_no", ""),
                "full_name": r.citizen.full_name if r.citizen and not r.problems else None,
                "previous": r.citizen.health_status.value if r.citizen else None,
                "status": r.update.status.value if r.update else r.raw.get("status", ""),
                "since": r.update.since.isoformat() if r.update else r.raw.get("since", ""),
                "doses": r.update.doses if r.update else r.raw.get("doses", ""),
                "problems": [problem(f, k, p) for f, k, p in r.problems],
            }
            for r in check.rows
        ],
    }


def _import(
    request: Request, officer: Officer, data: bytes, dry_run: bool
) -> tuple[ImportCheck, list[Applied] | None]:
    ip = client_ip(request)
    with write_transaction(get_engine(request)) as conn:
        check = check_import(conn, data=data, officer=officer)
        named = [r for r in check.rows if r.citizen is not None and not r.problems]
        if dry_run or not check.ok:
            if named:
                record_read(
                    conn,
                    officer=officer,
                    action="registry.import.preview",
                    subject="citizens:import",
                    purpose=IMPORT_PURPOSE,
                    detail={
                        "rows": len(check.rows),
                        "citizens": [r.citizen.id for r in named if r.citizen][:1000],
                    },
                    ip=ip,
                )
            return check, None
        applied = apply_import(conn, check=check, officer=officer)
        record_action(
            conn,
            officer=officer,
            action="registry.import",
            subject="citizens:import",
            detail={"rows": len(applied), "changed": sum(a.changed for a in applied)},
            ip=ip,
        )
    return check, applied


@router.post("/api/registry/import")
async def api_import(request: Request, officer: RegistryOfficer, dry_run: bool = False) -> Response:
    """Import a CSV body (``identity_no,status,since,doses``): all rows or none."""
    data = await request.body()
    if len(data) > MAX_UPLOAD_BYTES:
        problem = Problem(
            "file", "registry.import.error.too_large", {"mb": MAX_UPLOAD_BYTES // 2**20}
        )
        return JSONResponse({"detail": [problem.as_json()]}, status_code=413)
    check, applied = await run_in_threadpool(_import, request, officer, data, dry_run)
    report = _report(check)
    if not check.ok:
        return JSONResponse(report, status_code=422)
    report["imported"] = applied is not None
    report["changed"] = sum(a.changed for a in applied) if applied else 0
    if applied and report["changed"]:
        report["denylist_revision"] = await run_in_threadpool(publish_denylist, request)
    return JSONResponse(report)


# --- pages -----------------------------------------------------------------------------


def _page(
    request: Request,
    officer: Officer,
    *,
    values: dict[str, str] | None = None,
    problems: list[Problem] | None = None,
    applied: Applied | None = None,
    report: dict[str, Any] | None = None,
    dry_run: bool = True,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "registry.html",
        {
            "values": values or {},
            "problems": by_field(problems or []),
            "statuses": list(HealthStatus),
            "applied": applied,
            "report": report,
            "dry_run": dry_run,
            "columns": ",".join(CSV_COLUMNS),
        },
        officer=officer,
        status_code=status_code,
    )


@router.get("/registry", include_in_schema=False)
def registry_page(request: Request, officer: RegistryOfficer) -> Response:
    """Status updates: one citizen, or a CSV file."""
    return _page(request, officer)


@router.post("/registry/status", include_in_schema=False)
async def registry_status_form(request: Request, officer: RegistryOfficer) -> Response:
    """One update from the page's form."""
    data = await form_fields(request)
    body, problems = validate(StatusUpdate, data)
    if body is not None:
        try:
            outcome = await run_in_threadpool(_update_one, request, officer, body)
        except ScopeRefusedError:
            problems = [Problem("identity_no", "registry.error.out_of_scope")]
            return _page(request, officer, values=data, problems=problems, status_code=403)
        if isinstance(outcome, Problem):
            problems = [outcome]
        else:
            if outcome.changed:
                await run_in_threadpool(publish_denylist, request)
            return _page(request, officer, applied=outcome)
    return _page(request, officer, values=data, problems=problems, status_code=422)


@router.post("/registry/import", include_in_schema=False)
async def registry_import_form(request: Request, officer: RegistryOfficer) -> Response:
    """A CSV file from the page: preview (dry run) or import."""
    form = await request.form()
    upload = form.get("file")
    dry_run = form.get("dry_run") == "on"
    data = b""
    if upload is not None and not isinstance(upload, str):
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        problem = Problem(
            "file", "registry.import.error.too_large", {"mb": MAX_UPLOAD_BYTES // 2**20}
        )
        return _page(request, officer, problems=[problem], dry_run=dry_run, status_code=413)
    check, applied = await run_in_threadpool(_import, request, officer, data, dry_run)
    report = _report(check, page=True)
    report["imported"] = applied is not None
    report["changed"] = sum(a.changed for a in applied) if applied else 0
    if applied and report["changed"]:
        await run_in_threadpool(publish_denylist, request)
    return _page(
        request, officer, report=report, dry_run=dry_run, status_code=200 if check.ok else 422
    )
