"""A citizen and their declaration as an officer compares them with the identity card.

Read models for the officers' screens (alert monitor, manual look-up): the
registry's own fields, ward codes turned into names, and the vaccination
mark the gate shows. Every function here returns personal data: the routes
that call them record the read in the audit log in the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, RowMapping, select

from aggregator.db.registry import Citizen, get_citizen, get_citizen_by_identity
from aggregator.db.schema import DeclarationSource, HealthStatus, Sex, declarations, wards
from aggregator.ingest.verdicts import FULLY_VACCINATED_DOSES, RegistryRecord


class VaccinationMark(StrEnum):
    """The mark shown beside a person: green for two doses, yellow for one."""

    GREEN = "green"
    YELLOW = "yellow"
    NONE = "none"


def vaccination_mark(doses: int) -> VaccinationMark:
    """Green from :data:`FULLY_VACCINATED_DOSES` doses, yellow for fewer but some, else none."""
    if doses >= FULLY_VACCINATED_DOSES:
        return VaccinationMark.GREEN
    if doses > 0:
        return VaccinationMark.YELLOW
    return VaccinationMark.NONE


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WardLabel(_View):
    """A ward with its province, as an officer reads it."""

    code: int
    name: str
    province_name: str


class PersonView(_View):
    """The registry's data on a citizen, to compare with their identity card."""

    citizen_id: int
    identity_no: str
    full_name: str
    date_of_birth: date
    sex: Sex
    phone: str | None
    health_status: HealthStatus
    status_since: datetime
    vaccine_doses: int
    vaccination: VaccinationMark
    permanent_ward: WardLabel | None
    temporary_ward: WardLabel | None


class DeclarationView(_View):
    """A health declaration's travel data and validity."""

    id: int
    origin_ward: WardLabel | None
    destination_ward: WardLabel | None
    origin_detail: str | None
    destination_detail: str | None
    symptoms: list[str]
    contact_risk: bool
    source: DeclarationSource
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


def ward_labels(conn: Connection, *, codes: Collection[int | None]) -> dict[int, WardLabel]:
    """Names of the wards among ``codes`` (None and unknown codes are left out)."""
    wanted = sorted({c for c in codes if c is not None})
    if not wanted:
        return {}
    rows = conn.execute(
        select(wards.c.code, wards.c.name, wards.c.province_name).where(wards.c.code.in_(wanted))
    )
    return {
        row.code: WardLabel(code=row.code, name=row.name, province_name=row.province_name)
        for row in rows
    }


def _label(labels: dict[int, WardLabel], code: int | None) -> WardLabel | None:
    return None if code is None else labels.get(code)


def person_view(citizen: Citizen, labels: dict[int, WardLabel]) -> PersonView:
    """A citizen record with its wards named (``labels`` from :func:`ward_labels`)."""
    return PersonView(
        citizen_id=citizen.id,
        identity_no=citizen.identity_no,
        full_name=citizen.full_name,
        date_of_birth=citizen.date_of_birth,
        sex=citizen.sex,
        phone=citizen.phone,
        health_status=citizen.health_status,
        status_since=citizen.status_since,
        vaccine_doses=citizen.vaccine_doses,
        vaccination=vaccination_mark(citizen.vaccine_doses),
        permanent_ward=_label(labels, citizen.permanent_ward_code),
        temporary_ward=_label(labels, citizen.temporary_ward_code),
    )


DECLARATION_COLUMNS = (
    declarations.c.id,
    declarations.c.citizen_id,
    declarations.c.origin_ward_code,
    declarations.c.destination_ward_code,
    declarations.c.origin_detail,
    declarations.c.destination_detail,
    declarations.c.symptoms,
    declarations.c.contact_risk,
    declarations.c.source,
    declarations.c.created_at,
    declarations.c.expires_at,
    declarations.c.revoked_at,
)


def declaration_view(row: Mapping[str, Any], labels: dict[int, WardLabel]) -> DeclarationView:
    """A ``declarations`` row with its wards named (``labels`` from :func:`ward_labels`)."""
    return DeclarationView(
        id=row["id"],
        origin_ward=_label(labels, row["origin_ward_code"]),
        destination_ward=_label(labels, row["destination_ward_code"]),
        origin_detail=row["origin_detail"],
        destination_detail=row["destination_detail"],
        symptoms=list(row["symptoms"] or []),
        contact_risk=row["contact_risk"],
        source=row["source"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


@dataclass(frozen=True, slots=True)
class Person:
    """A citizen with one of their declarations, and what the verdict rules need of both."""

    person: PersonView
    declaration: DeclarationView | None
    record: RegistryRecord | None  # None when the citizen has no declaration


def _declaration_row(
    conn: Connection, *, declaration_id: int | None, citizen_id: int
) -> RowMapping | None:
    query = select(*DECLARATION_COLUMNS).where(declarations.c.citizen_id == citizen_id)
    if declaration_id is not None:
        query = query.where(declarations.c.id == declaration_id)
    else:
        # The citizen's current declaration is the latest one filed.
        query = query.order_by(declarations.c.created_at.desc(), declarations.c.id.desc())
    return conn.execute(query.limit(1)).mappings().first()


def load_person(
    conn: Connection,
    *,
    citizen_id: int | None = None,
    identity_no: str | None = None,
    declaration_id: int | None = None,
) -> Person | None:
    """A citizen (by id or identity number) with a declaration of theirs, or None.

    ``declaration_id`` picks that declaration (none is taken if it is not the
    citizen's own); without it, the citizen's latest declaration is taken.
    """
    if (citizen_id is None) == (identity_no is None):
        raise ValueError("give exactly one of citizen_id and identity_no")
    citizen = (
        get_citizen(conn, citizen_id=citizen_id)
        if citizen_id is not None
        else get_citizen_by_identity(conn, identity_no=identity_no or "")
    )
    if citizen is None:
        return None
    d = _declaration_row(conn, declaration_id=declaration_id, citizen_id=citizen.id)
    codes: list[int | None] = [citizen.permanent_ward_code, citizen.temporary_ward_code]
    if d is not None:
        codes += [d["origin_ward_code"], d["destination_ward_code"]]
    labels = ward_labels(conn, codes=codes)
    person = person_view(citizen, labels)
    if d is None:
        return Person(person=person, declaration=None, record=None)
    declaration = declaration_view(d, labels)
    record = RegistryRecord(
        declaration_id=d["id"],
        citizen_id=citizen.id,
        health_status=citizen.health_status,
        vaccine_doses=citizen.vaccine_doses,
        origin_ward_code=d["origin_ward_code"],
        destination_ward_code=d["destination_ward_code"],
        temporary_ward_code=citizen.temporary_ward_code,
        expires_at=d["expires_at"],
        revoked_at=d["revoked_at"],
    )
    return Person(person=person, declaration=declaration, record=record)
