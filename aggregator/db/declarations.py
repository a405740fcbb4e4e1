"""Health declarations: filing one (web form or paper form) and signing its pass token.

A declaration is filed for a citizen the registry already holds: the identity
number, the full name and the date of birth must all match it (the name
compared without diacritics or case), so knowing somebody's identity number
alone does not get a pass in their name. A mismatch and an unknown number give
the same answer, so the form cannot be used to probe who is registered.

The pass token carries only a random declaration id (``contract.ids``); the
id is drawn again on the rare collision with an existing one (inside a
savepoint, so the caller's transaction survives). The pass is valid from the
travel day's start (Vietnam time) or now, whichever is later, for the
configured number of hours.

Requests to the public form are counted per client address in
``public_requests`` (shared by every aggregator process) by
:func:`public_wait_s` / :func:`count_public_request`.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import Connection, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from aggregator.auth.problems import Problem, ProblemError, custom_error
from aggregator.db.registry import get_citizen_by_identity
from aggregator.db.schema import DeclarationSource, declarations, public_requests, wards
from contract.ids import new_declaration_id
from contract.text import fold
from contract.token import SigningKey, issue_token

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
MAX_ID_ATTEMPTS = 8
MAX_TRAVEL_DAYS_AHEAD = 7

# Province codes that open a 12-digit identity number (CCCD): the 63 provinces'
# codes of Circular 07/2016/TT-BCA (001 Hà Nội ... 096 Cà Mau). Numbers issued
# since the 2025 merger still use them (the 34 new provinces kept one of their
# members' codes), so the old list is the one a number can start with.
PROVINCE_CODES = frozenset(
    {
        1, 2, 4, 6, 8, 10, 11, 12, 14, 15, 17, 19, 20, 22, 24, 25, 26, 27, 30, 31, 33,
        34, 35, 36, 37, 38, 40, 42, 44, 45, 46, 48, 49, 51, 52, 54, 56, 58, 60, 62, 64,
        66, 67, 68, 70, 72, 74, 75, 77, 79, 80, 82, 83, 84, 86, 87, 89, 91, 92, 93, 94,
        95, 96,
    }
)  # fmt: skip


class Symptom(StrEnum):
    """Symptoms a declaration may list (the 2021 form's check boxes)."""

    FEVER = "fever"
    COUGH = "cough"
    SHORTNESS_OF_BREATH = "shortness_of_breath"
    SORE_THROAT = "sore_throat"
    LOSS_OF_TASTE_SMELL = "loss_of_taste_smell"
    FATIGUE = "fatigue"


def check_identity_no(value: str) -> str:
    """A 12-digit identity number whose first three digits are a province code.

    Spaces, dots and dashes people type between groups are dropped. Raises a
    pydantic custom error (an i18n key) otherwise.
    """
    digits = "".join(ch for ch in value if ch not in " .-")
    if not (len(digits) == 12 and digits.isascii() and digits.isdigit()):
        raise custom_error("declare.error.identity_format")
    if int(digits[:3]) not in PROVINCE_CODES:
        raise custom_error("declare.error.identity_province", code=digits[:3])
    return digits


Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


class DeclarationInput(BaseModel):
    """What a citizen (or the officer copying a paper form) fills in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    identity_no: str
    full_name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=2, max_length=120)
    ]
    date_of_birth: date
    origin_ward_code: int = Field(ge=1)
    origin_detail: Text | None = None
    destination_ward_code: int = Field(ge=1)
    destination_detail: Text | None = None
    travel_date: date
    symptoms: list[Symptom] = Field(default_factory=list, max_length=len(Symptom))
    contact_risk: bool = False

    @field_validator("identity_no")
    @classmethod
    def _identity(cls, value: str) -> str:
        return check_identity_no(value)

    @field_validator("date_of_birth")
    @classmethod
    def _born(cls, value: date) -> date:
        today = datetime.now(LOCAL_TZ).date()
        if value > today or value.year < 1900:
            raise custom_error("declare.error.birth_date")
        return value

    @field_validator("travel_date")
    @classmethod
    def _travel(cls, value: date) -> date:
        today = datetime.now(LOCAL_TZ).date()
        if not today <= value <= today + timedelta(days=MAX_TRAVEL_DAYS_AHEAD):
            raise custom_error("declare.error.travel_date", days=MAX_TRAVEL_DAYS_AHEAD)
        return value

    @field_validator("symptoms")
    @classmethod
    def _unique(cls, value: list[Symptom]) -> list[Symptom]:
        return sorted(set(value), key=list(Symptom).index)


class IssuedPass(BaseModel):
    """A filed declaration and its signed pass (what the citizen's phone shows)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    declaration_id: int
    token: str
    initials: str
    valid_from: datetime
    expires_at: datetime
    source: DeclarationSource


def initials(full_name: str) -> str:
    """``"Nguyễn Văn Đức"`` -> ``"N.V.Đ."``: enough for the citizen to recognise their pass."""
    return "".join(part[0].upper() + "." for part in full_name.split() if part)


def _valid_from(travel_date: date, now: datetime) -> datetime:
    day_start = datetime.combine(travel_date, time(0), tzinfo=LOCAL_TZ).astimezone(UTC)
    return max(now, day_start)


def _missing_wards(conn: Connection, body: DeclarationInput) -> list[Problem]:
    wanted = {body.origin_ward_code, body.destination_ward_code}
    known = set(conn.execute(select(wards.c.code).where(wards.c.code.in_(wanted))).scalars())
    return [
        Problem(name, "declare.error.ward")
        for name in ("origin_ward_code", "destination_ward_code")
        if getattr(body, name) not in known
    ]


def file_declaration(
    conn: Connection,
    *,
    body: DeclarationInput,
    source: DeclarationSource,
    key: SigningKey,
    validity_hours: int,
    entered_by: int | None = None,
    now: datetime | None = None,
) -> IssuedPass:
    """Record a declaration in the caller's transaction and sign its pass token.

    ``source`` paper requires ``entered_by`` (the officer who typed it in);
    web and app forbid it. Raises :class:`ProblemError` when the citizen does
    not match the registry or a ward code does not exist.
    """
    if (source is DeclarationSource.PAPER) != (entered_by is not None):
        raise ValueError("paper declarations, and only they, record the officer who entered them")
    if validity_hours < 1:
        raise ValueError(f"validity_hours must be positive: {validity_hours}")
    now = now if now is not None else datetime.now(UTC)
    problems = _missing_wards(conn, body)
    citizen = get_citizen_by_identity(conn, identity_no=body.identity_no)
    if (
        citizen is None
        or fold(citizen.full_name) != fold(body.full_name)
        or citizen.date_of_birth != body.date_of_birth
    ):
        raise ProblemError([Problem("identity_no", "declare.error.no_match"), *problems])
    if problems:
        raise ProblemError(problems)
    valid_from = _valid_from(body.travel_date, now)
    expires_at = valid_from + timedelta(hours=validity_hours)
    row = {
        "citizen_id": citizen.id,
        "origin_ward_code": body.origin_ward_code,
        "destination_ward_code": body.destination_ward_code,
        "origin_detail": body.origin_detail or None,
        "destination_detail": body.destination_detail or None,
        "symptoms": [s.value for s in body.symptoms],
        "contact_risk": body.contact_risk,
        "source": source.value,
        "entered_by": entered_by,
        "key_id": key.kid,
        "created_at": now,
        "expires_at": expires_at,
    }
    for _ in range(MAX_ID_ATTEMPTS):
        declaration_id = new_declaration_id()
        try:
            with conn.begin_nested():
                conn.execute(insert(declarations).values(id=declaration_id, **row))
        except IntegrityError:
            if conn.execute(
                select(declarations.c.id).where(declarations.c.id == declaration_id)
            ).first():
                continue  # the random id was taken: draw another
            raise
        break
    else:
        raise RuntimeError(f"no free declaration id after {MAX_ID_ATTEMPTS} draws")
    token = issue_token(
        key,
        declaration_id=declaration_id,
        issued_at=int(valid_from.timestamp()),
        expires_at=int(expires_at.timestamp()),
    )
    return IssuedPass(
        declaration_id=declaration_id,
        token=token,
        initials=initials(citizen.full_name),
        valid_from=valid_from,
        expires_at=expires_at,
        source=source,
    )


# --- rate limit of the public form ------------------------------------------------------


def public_wait_s(
    conn: Connection,
    *,
    bucket: str,
    ip: str,
    window_s: int,
    max_requests: int,
    now: datetime | None = None,
) -> int:
    """Seconds before ``ip`` may use the public form ``bucket`` again; 0 when it may now."""
    now = now if now is not None else datetime.now(UTC)
    since = now - timedelta(seconds=window_s)
    where = (public_requests.c.bucket == bucket, public_requests.c.ip == ip[:45])
    recent = conn.execute(
        select(func.count())
        .select_from(public_requests)
        .where(*where, public_requests.c.at > since)
    ).scalar_one()
    if recent < max_requests:
        return 0
    # The request whose ageing out brings the count back under the limit.
    freeing = conn.execute(
        select(public_requests.c.at)
        .where(*where, public_requests.c.at > since)
        .order_by(public_requests.c.at)
        .offset(recent - max_requests)
        .limit(1)
    ).scalar_one()
    return max(1, math.ceil((freeing - since).total_seconds()))


def count_public_request(
    conn: Connection, *, bucket: str, ip: str, window_s: int, now: datetime | None = None
) -> None:
    """Count one request to ``bucket`` from ``ip`` (and forget those older than the window)."""
    now = now if now is not None else datetime.now(UTC)
    conn.execute(
        delete(public_requests).where(
            public_requests.c.bucket == bucket,
            public_requests.c.at <= now - timedelta(seconds=window_s),
        )
    )
    conn.execute(insert(public_requests).values(at=now, bucket=bucket, ip=ip[:45]))
