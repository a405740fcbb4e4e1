"""The checkpoint officer's pages (alert monitor, manual look-up) and the look-up JSON API.

``GET /monitor``   the alert monitor (static/monitor.js: list, live stream, actions)
``GET /lookup``    the manual look-up (static/lookup.js: identity number, pass code, webcam)

Manual look-up: by identity number, or by a scanned pass code.

``POST /api/lookup/identity`` ``{"identity_no": "001090000001"}``
    The citizen's registry status and current (latest) declaration, with the
    verdict the gate would give for it now. The number travels in the body,
    not the URL, so it stays out of access logs and browser history.
``POST /api/lookup/token`` ``{"token": "KD1:..."}``
    A pass code read by the laptop's webcam (or typed): verified here against
    the keyring and the registry exactly as a gate's scan is (same
    :func:`~aggregator.ingest.verdicts.decide`), and shown like an alert.

Both are for checkpoint officers, ward police, investigators and
administrators (a citizen crossing a checkpoint may come from anywhere, so
look-ups are not limited to a scope); every look-up is
recorded in the audit log (a "not found" too: whether someone holds a
number is itself personal data).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from aggregator.api.deps import ServiceDep
from aggregator.api.routes.alerts import (
    MONITOR_ROLES,
    EngineDep,
    MonitorOfficer,
    in_transaction,
    refuse,
)
from aggregator.auth.audit import record_read
from aggregator.auth.deps import Officer, client_ip, require_roles
from aggregator.db.people import DeclarationView, Person, PersonView, load_person
from aggregator.db.places import checkpoint_places
from aggregator.db.schema import Role
from aggregator.ingest.lookup import registry_records
from aggregator.ingest.verdicts import Decision, RegistryRecord, decide, is_authentic
from aggregator.web.i18n import Lang, request_lang, t
from aggregator.web.i18n_live import js_strings
from aggregator.web.templating import register_nav, render
from contract.messages import Color, VerdictCode
from contract.token import PassClaims, Reason, Verification

router = APIRouter(tags=["lookup"])

LOOKUP_ROLES = (Role.CHECKPOINT_OFFICER, Role.WARD_POLICE, Role.INVESTIGATOR, Role.ADMIN)
LookupOfficer = Annotated[Officer, Depends(require_roles(*LOOKUP_ROLES))]

register_nav("/monitor", "nav.monitor", set(MONITOR_ROLES), order=10)
register_nav("/lookup", "nav.lookup", set(LOOKUP_ROLES), order=20)

STATUS_FILTERS = (
    ("unresolved", "monitor.filter.unresolved"),
    ("open", "alert.status.open"),
    ("acknowledged", "alert.status.acknowledged"),
    ("resolved", "alert.status.resolved"),
    ("all", "common.all"),
)
PURPOSE_LOOKUP = "tra cứu thủ công tại chốt / manual look-up at a checkpoint"
IDENTITY_DIGITS = 12


class IdentityLookup(BaseModel):
    """A typed identity number (spaces and dots, as printed on cards, are ignored)."""

    model_config = ConfigDict(extra="forbid")

    identity_no: str = Field(max_length=64)


class TokenLookup(BaseModel):
    """A pass code as read from a QR code."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(max_length=4096)


class VerdictOut(BaseModel):
    """What the gate would show, and why, in the officer's language."""

    model_config = ConfigDict(extra="forbid")

    color: Color
    code: VerdictCode
    text: str
    reason: str


class LookupResult(BaseModel):
    """A look-up's answer: the verdict, and the person and declaration when known."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["identity", "token"]
    checked_at: datetime
    verdict: VerdictOut | None
    token_check: Reason | None = None
    declaration_id: int | None = None
    person: PersonView | None
    declaration: DeclarationView | None


def normalize_identity_no(text: str) -> str | None:
    """The 12 digits of an identity number typed with or without separators; None if not one."""
    digits = "".join(ch for ch in text if ch not in " .-\u00a0\t")
    if len(digits) != IDENTITY_DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    return digits


def registry_decision(record: RegistryRecord, now: datetime) -> Decision:
    """The verdict for a declaration the registry holds, as if its pass were shown ``now``.

    The registry is the authority here, so the pass is taken as authentic and
    within its signed window; the registry's expiry and revocation still
    apply. The claims are a stand-in (only ``declaration_id`` matters to
    :func:`decide`), hence ``model_construct``.
    """
    claims = PassClaims.model_construct(declaration_id=record.declaration_id)
    return decide(Verification(Reason.OK, claims), record, now)


def _verdict(decision: Decision, lang: Lang) -> VerdictOut:
    return VerdictOut(
        color=decision.color,
        code=decision.code,
        text=t(f"verdict.{decision.color.value}", lang),
        reason=t(f"code.{decision.code.value}", lang),
    )


@router.post("/api/lookup/identity", response_model=LookupResult, responses={404: {}, 422: {}})
def lookup_identity(
    request: Request, body: IdentityLookup, officer: LookupOfficer, engine: EngineDep
) -> LookupResult:
    """The citizen holding this identity number, their current declaration and verdict."""
    identity_no = normalize_identity_no(body.identity_no)
    if identity_no is None:
        raise refuse(422, "identity_no", "lookup.error.identity")
    now = datetime.now(UTC)

    def work(conn: Connection) -> Person | None:
        found = load_person(conn, identity_no=identity_no)
        record_read(
            conn,
            officer=officer,
            action="lookup.identity",
            subject=f"citizen:{found.person.citizen_id}" if found else f"identity:{identity_no}",
            purpose=PURPOSE_LOOKUP,
            detail={"found": found is not None},
            ip=client_ip(request),
        )
        return found

    found = in_transaction(engine, work)
    if found is None:
        raise refuse(404, "not_found", "lookup.error.not_found")
    lang = request_lang(request)
    decision = registry_decision(found.record, now) if found.record is not None else None
    return LookupResult(
        source="identity",
        checked_at=now,
        verdict=_verdict(decision, lang) if decision is not None else None,
        declaration_id=found.declaration.id if found.declaration else None,
        person=found.person,
        declaration=found.declaration,
    )


@router.post("/api/lookup/token", response_model=LookupResult, responses={422: {}})
def lookup_token(
    request: Request,
    body: TokenLookup,
    officer: LookupOfficer,
    engine: EngineDep,
    service: ServiceDep,
) -> LookupResult:
    """Verify a pass code against the keyring and the registry, as a gate's scan is."""
    token = body.token.strip()
    if not token:
        raise refuse(422, "token", "lookup.error.token_empty")
    now = datetime.now(UTC)
    verification = service.verifier.verify(token, at=int(now.timestamp()))
    claims = verification.claims
    lang = request_lang(request)

    def work(conn: Connection) -> tuple[Decision, Person | None]:
        record = None
        if is_authentic(verification) and claims is not None:
            record = registry_records(conn, declaration_ids=[claims.declaration_id]).get(
                claims.declaration_id
            )
        decision = decide(verification, record, now)
        if record is None:
            return decision, None
        found = load_person(
            conn, citizen_id=record.citizen_id, declaration_id=record.declaration_id
        )
        record_read(
            conn,
            officer=officer,
            action="lookup.token",
            subject=f"citizen:{record.citizen_id}",
            purpose=PURPOSE_LOOKUP,
            detail={"declaration_id": record.declaration_id, "code": decision.code.value},
            ip=client_ip(request),
        )
        return decision, found

    decision, found = in_transaction(engine, work)
    return LookupResult(
        source="token",
        checked_at=now,
        verdict=_verdict(decision, lang),
        token_check=verification.reason,
        # Claims of a code that failed its signature are untrusted: not shown.
        declaration_id=claims.declaration_id if claims and is_authentic(verification) else None,
        person=found.person if found else None,
        declaration=found.declaration if found else None,
    )


# --- pages -------------------------------------------------------------------------


@router.get("/monitor", include_in_schema=False)
def monitor_page(
    request: Request,
    officer: MonitorOfficer,
    engine: EngineDep,
    checkpoint: str | None = None,
    status: str = "unresolved",
) -> HTMLResponse:
    """The alert monitor: filters by checkpoint (within scope) and status; cards come live."""
    lang = request_lang(request)
    with engine.connect() as conn:
        places = checkpoint_places(conn, scope=officer.checkpoint_filter())
    chosen_status = status if status in dict(STATUS_FILTERS) else "unresolved"
    return render(
        request,
        "monitor.html",
        {
            "checkpoints": list(places.values()),
            "chosen_checkpoint": checkpoint if checkpoint in places else "",
            "statuses": STATUS_FILTERS,
            "chosen_status": chosen_status,
            "strings": js_strings(lang),
            "page": {"title": t("monitor.title", lang)},
        },
        officer=officer,
    )


@router.get("/lookup", include_in_schema=False)
def lookup_page(request: Request, officer: LookupOfficer) -> HTMLResponse:
    """The manual look-up page."""
    return render(
        request, "lookup.html", {"strings": js_strings(request_lang(request))}, officer=officer
    )
