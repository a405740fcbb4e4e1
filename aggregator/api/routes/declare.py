"""The citizen's health declaration (public, no login) and the officers' paper-form entry.

Public:

- ``GET /khai-bao`` the form; ``POST /khai-bao`` files it and answers the pass
  page (a big QR to show at the gate, the name's initials only, PNG and SVG
  downloads, printable). ``POST /api/declarations`` does the same for JSON.
- ``GET /khai-bao/qr.png|qr.svg?token=`` the QR image of a pass token (only of
  a well-formed one: the server does not draw arbitrary text).
- ``GET /api/public/wards?q=`` the ward pickers' search (ignores diacritics;
  ward names are public, unlike ``/api/wards`` which needs a session).

Every public POST is counted per client address; past
``declare_max_per_ip`` per ``declare_window_s`` it is refused with 429 and a
``Retry-After``, before any look-up in the registry (the form must not be a way
to probe identity numbers quickly).

Officers (checkpoint officer, admin): ``GET/POST /declarations/paper`` and
``POST /api/declarations/paper`` enter a paper form, recorded with who entered
it (``declarations.entered_by`` and the audit log).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from aggregator.auth.audit import record_action
from aggregator.auth.deps import Officer, client_ip, get_engine, require_roles
from aggregator.auth.problems import Problem, ProblemError
from aggregator.db.declarations import (
    LOCAL_TZ,
    DeclarationInput,
    IssuedPass,
    Symptom,
    count_public_request,
    file_declaration,
    public_wait_s,
)
from aggregator.db.engine import write_transaction
from aggregator.db.schema import DeclarationSource, Role
from aggregator.web import admin_ops
from aggregator.web.admin_models import WardOut
from aggregator.web.forms import WARD_CODE_MAX, by_field, form_fields, validate
from aggregator.web.i18n import both
from aggregator.web.qr import qr_png, qr_svg
from aggregator.web.settings_issue import IssueSettings, issue_settings, signing_key
from aggregator.web.templating import PAGE_HEADERS, register_nav, render
from contract.token import PassClaims, Verification, decode_token

router = APIRouter(tags=["declarations"])

RATE_BUCKET = "declare"
PaperOfficer = Annotated[Officer, Depends(require_roles(Role.CHECKPOINT_OFFICER, Role.ADMIN))]
register_nav(
    "/declarations/paper",
    "nav.paper_declaration",
    {Role.CHECKPOINT_OFFICER, Role.ADMIN},
    order=15,
)

_WARD_FIELDS = ("origin_ward_code", "destination_ward_code")


def _validate(raw: dict[str, Any]) -> tuple[DeclarationInput | None, list[Problem]]:
    body, problems = validate(DeclarationInput, raw)
    if body is None:
        return None, problems
    # A code beyond the column's range is no ward, and must not reach the driver (a 500).
    outside = [
        Problem(name, "declare.error.ward")
        for name in _WARD_FIELDS
        if getattr(body, name) > WARD_CODE_MAX
    ]
    return (None, outside) if outside else (body, [])


def _problems_json(problems: list[Problem], status_code: int = 422) -> JSONResponse:
    return JSONResponse({"detail": [p.as_json() for p in problems]}, status_code=status_code)


class NotConfiguredError(RuntimeError):
    """No issuing key is configured."""


def _issue(
    request: Request, body: DeclarationInput, source: DeclarationSource, officer: Officer | None
) -> IssuedPass:
    settings = issue_settings(request)
    key = signing_key(settings)
    if key is None:
        raise NotConfiguredError(both("declare.error.not_configured"))
    with write_transaction(get_engine(request)) as conn:
        issued = file_declaration(
            conn,
            body=body,
            source=source,
            key=key,
            validity_hours=settings.pass_validity_hours,
            entered_by=officer.id if officer is not None else None,
        )
        if officer is not None:
            record_action(
                conn,
                officer=officer,
                action="declaration.paper",
                subject=f"declaration:{issued.declaration_id}",
                ip=client_ip(request),
            )
    return issued


def _rate_limited(request: Request, settings: IssueSettings) -> int:
    """Seconds to wait (0: go on); counts this request when it may go on."""
    ip = client_ip(request)
    with write_transaction(get_engine(request)) as conn:
        wait = public_wait_s(
            conn,
            bucket=RATE_BUCKET,
            ip=ip,
            window_s=settings.declare_window_s,
            max_requests=settings.declare_max_per_ip,
        )
        if wait == 0:
            count_public_request(
                conn, bucket=RATE_BUCKET, ip=ip, window_s=settings.declare_window_s
            )
    return wait


def _form_body(data: dict[str, str], symptoms: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: v for k, v in data.items() if k in DeclarationInput.model_fields and k != "symptoms"
    }
    out["symptoms"] = symptoms
    out["contact_risk"] = data.get("contact_risk") == "on"
    return out


def _ward_options(request: Request, data: dict[str, str]) -> dict[str, list[WardOut]]:
    """The choices each ward picker shows again: the chosen ward, or the typed search's hits."""
    options: dict[str, list[WardOut]] = {}
    with get_engine(request).connect() as conn:
        for name in _WARD_FIELDS:
            chosen = data.get(name, "").strip()
            query = data.get(name.removesuffix("_ward_code") + "_q", "").strip()
            found = admin_ops.find_wards(conn, chosen) if chosen.isdigit() else []
            if query:
                found += [w for w in admin_ops.find_wards(conn, query) if w not in found]
            options[name] = found
    return options


def _resolve_typed_wards(request: Request, data: dict[str, str]) -> dict[str, str]:
    """Without JavaScript a citizen types a ward's name: one match is taken as the choice."""
    resolved = dict(data)
    with get_engine(request).connect() as conn:
        for name in _WARD_FIELDS:
            query = data.get(name.removesuffix("_ward_code") + "_q", "").strip()
            if not data.get(name, "").strip() and query:
                found = admin_ops.find_wards(conn, query)
                if len(found) == 1:
                    resolved[name] = str(found[0].code)
    return resolved


def _form_page(
    request: Request,
    *,
    officer: Officer | None,
    values: dict[str, str] | None = None,
    symptoms: list[str] | None = None,
    problems: list[Problem] | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    values = values or {}
    return render(
        request,
        "declare.html",
        {
            "values": values,
            "chosen_symptoms": set(symptoms or []),
            "symptom_choices": list(Symptom),
            "problems": by_field(problems or []),
            "ward_options": _ward_options(request, values),
            "paper": officer is not None,
            "action": "/declarations/paper" if officer is not None else "/khai-bao",
        },
        officer=officer,
        status_code=status_code,
        headers=headers,
    )


def _pass_page(request: Request, issued: IssuedPass, officer: Officer | None) -> Response:
    return render(
        request,
        "declare_pass.html",
        {"issued": issued, "paper": officer is not None},
        officer=officer,
        status_code=201,
    )


async def _submit(request: Request, officer: Officer | None) -> Response:
    form = await request.form()
    symptoms = [v for v in form.getlist("symptoms") if isinstance(v, str)]
    data = await form_fields(request)
    if officer is None:
        settings = issue_settings(request)
        wait = await run_in_threadpool(_rate_limited, request, settings)
        if wait:
            return _form_page(
                request,
                officer=None,
                values=data,
                symptoms=symptoms,
                problems=[Problem("", "declare.error.rate_limited", {"seconds": wait})],
                status_code=429,
                headers={"Retry-After": str(wait)},
            )
    data = await run_in_threadpool(_resolve_typed_wards, request, data)
    body, problems = _validate(_form_body(data, symptoms))
    if body is not None:
        source = DeclarationSource.WEB if officer is None else DeclarationSource.PAPER
        try:
            issued = await run_in_threadpool(_issue, request, body, source, officer)
        except ProblemError as exc:
            problems = exc.problems
        except NotConfiguredError:
            problems = [Problem("", "declare.error.not_configured")]
            return _form_page(
                request, officer=officer, values=data, symptoms=symptoms,
                problems=problems, status_code=503,
            )  # fmt: skip
        else:
            return _pass_page(request, issued, officer)
    return _form_page(
        request, officer=officer, values=data, symptoms=symptoms, problems=problems,
        status_code=422,
    )  # fmt: skip


# === public =========================================================================


@router.get("/khai-bao", include_in_schema=False)
def declare_page(request: Request) -> Response:
    """The citizen's health declaration form (Tờ khai y tế)."""
    return _form_page(request, officer=None, values={"travel_date": _today()})


def _today() -> str:
    return datetime.now(LOCAL_TZ).date().isoformat()


@router.post("/khai-bao", include_in_schema=False)
async def declare_submit(request: Request) -> Response:
    """File the form; answers the pass page (201) or the form with its problems."""
    return await _submit(request, None)


async def _submit_json(request: Request, raw: dict[str, Any], officer: Officer | None) -> Response:
    if officer is None:
        wait = await run_in_threadpool(_rate_limited, request, issue_settings(request))
        if wait:
            return JSONResponse(
                {
                    "detail": [
                        Problem("", "declare.error.rate_limited", {"seconds": wait}).as_json()
                    ]
                },
                status_code=429,
                headers={"Retry-After": str(wait)},
            )
    body, problems = _validate(raw)
    if body is None:
        return _problems_json(problems)
    source = DeclarationSource.WEB if officer is None else DeclarationSource.PAPER
    try:
        issued = await run_in_threadpool(_issue, request, body, source, officer)
    except ProblemError as exc:
        return _problems_json(exc.problems)
    except NotConfiguredError:
        return _problems_json([Problem("", "declare.error.not_configured")], 503)
    return JSONResponse(issued.model_dump(mode="json"), status_code=201)


@router.post("/api/declarations", response_model=IssuedPass, status_code=201)
async def api_declare(request: Request, raw: dict[str, Any]) -> Response:
    """File a declaration (public JSON; the body is a ``DeclarationInput``)."""
    return await _submit_json(request, raw, None)


def _claims_or_none(token: str) -> PassClaims | None:
    claims = decode_token(token)
    return None if isinstance(claims, Verification) else claims


def _qr_headers(claims: PassClaims, extension: str, download: bool) -> dict[str, str]:
    # Named after the pass's number, so a family's passes saved on one phone stay apart
    # (the server's name wins over the page link's ``download`` attribute).
    disposition = "attachment" if download else "inline"
    name = f"kiem-dich-{claims.declaration_id}.{extension}"
    return {**PAGE_HEADERS, "Content-Disposition": f'{disposition}; filename="{name}"'}


@router.get("/khai-bao/qr.png", include_in_schema=False)
def pass_png(token: Annotated[str, Query(max_length=400)], download: bool = False) -> Response:
    """The QR of a pass token as PNG (``?download=1``: as a file to save)."""
    claims = _claims_or_none(token)
    if claims is None:
        return _problems_json([Problem("token", "declare.error.bad_token")], 400)
    return Response(
        qr_png(token), media_type="image/png", headers=_qr_headers(claims, "png", download)
    )


@router.get("/khai-bao/qr.svg", include_in_schema=False)
def pass_svg(token: Annotated[str, Query(max_length=400)], download: bool = False) -> Response:
    """The QR of a pass token as SVG (prints sharp at any size; ``?download=1``: as a file)."""
    claims = _claims_or_none(token)
    if claims is None:
        return _problems_json([Problem("token", "declare.error.bad_token")], 400)
    return Response(
        qr_svg(token), media_type="image/svg+xml", headers=_qr_headers(claims, "svg", download)
    )


@router.get("/api/public/wards", response_model=list[WardOut], tags=["wards"])
def public_wards(request: Request, q: Annotated[str, Query(max_length=100)] = "") -> list[WardOut]:
    """Wards whose name contains ``q`` ignoring diacritics, or with code ``q`` (no login)."""
    if not q.strip():
        return []
    with get_engine(request).connect() as conn:
        return admin_ops.find_wards(conn, q)


# === officers: paper forms ============================================================


@router.get("/declarations/paper", include_in_schema=False)
def paper_page(request: Request, officer: PaperOfficer) -> Response:
    """Enter a citizen's paper declaration at the checkpoint."""
    return _form_page(request, officer=officer, values={"travel_date": _today()})


@router.post("/declarations/paper", include_in_schema=False)
async def paper_submit(request: Request, officer: PaperOfficer) -> Response:
    """File a paper form; answers the pass page to print or show the citizen."""
    return await _submit(request, officer)


@router.post("/api/declarations/paper", response_model=IssuedPass, status_code=201)
async def api_paper(request: Request, officer: PaperOfficer, raw: dict[str, Any]) -> Response:
    """File a paper form (JSON), recorded with the officer who entered it."""
    return await _submit_json(request, raw, officer)
