"""Who an officer is and what they may see: roles, scopes, the checks every screen applies.

A scope restricts an account to one checkpoint, one ward or one province.
Roles that serve a whole territory (admin, command centre, investigator,
health official) see everything when they hold no scope, and only their
scopes when they hold some (a provincial command centre). Roles tied to a
place (checkpoint officer, ward police, venue manager) see nothing without a
scope: an account created without one is refused (see
:func:`scope_problems`), and a scope removed later leaves it blind, never
all-seeing.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator
from sqlalchemy import ColumnElement, exists, false, or_, select

from aggregator.auth.problems import Problem, custom_error
from aggregator.db.schema import Role, ScopeKind, checkpoints, citizens, passages, wards
from contract.topics import CHECKPOINT_ID_PATTERN

GLOBAL_ROLES = frozenset({Role.ADMIN, Role.COMMAND_CENTRE, Role.INVESTIGATOR, Role.HEALTH_OFFICIAL})
"""Roles that see every place when the account holds no scope."""

# Which scope kinds make sense for the roles tied to a place.
_LOCAL_SCOPE_KINDS: dict[Role, frozenset[ScopeKind]] = {
    Role.CHECKPOINT_OFFICER: frozenset(ScopeKind),
    Role.WARD_POLICE: frozenset({ScopeKind.WARD, ScopeKind.PROVINCE}),
    Role.VENUE_MANAGER: frozenset({ScopeKind.CHECKPOINT}),
}
_CHECKPOINT_ID = re.compile(CHECKPOINT_ID_PATTERN)


class Scope(BaseModel):
    """One place an account is restricted to; written ``kind:value`` (``ward:70``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ScopeKind
    value: str

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            kind, sep, value = data.strip().partition(":")
            if not sep:
                raise custom_error("error.scope_syntax", text=data)
            return {"kind": kind.strip().lower(), "value": value.strip()}
        return data

    @field_validator("value")
    @classmethod
    def _value_shape(cls, value: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if kind is None:  # the kind was refused already; that error is enough
            return value
        if kind is ScopeKind.CHECKPOINT:
            if not _CHECKPOINT_ID.match(value):
                raise custom_error("error.scope_checkpoint_id", value=value)
            return value
        if not (value.isascii() and value.isdigit()) or len(value) > 9:
            raise custom_error("error.scope_code", value=value)
        # "070" and "70" are the same ward: keep one spelling so comparisons match.
        return str(int(value))

    @classmethod
    def parse(cls, text: str) -> Scope:
        """``"ward:70"`` -> ``Scope(kind=ward, value="70")`` (raises ``ValidationError``)."""
        return cls.model_validate(text)

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.value}"


class Officer(BaseModel):
    """The officer behind a request: identity, role and scopes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    username: str
    full_name: str
    role: Role
    scopes: list[Scope]

    def _values(self, kind: ScopeKind) -> list[str]:
        return [s.value for s in self.scopes if s.kind is kind]

    def _codes(self, kind: ScopeKind) -> list[int]:
        return [int(v) for v in self._values(kind)]

    @property
    def unrestricted(self) -> bool:
        """True when the account sees every place (a territory-wide role without scopes)."""
        return not self.scopes and self.role in GLOBAL_ROLES

    def can_see_checkpoint(self, checkpoint_id: str, *, ward_code: int, province_code: int) -> bool:
        """Whether the checkpoint (in that ward and province) is within this account's scope."""
        if self.unrestricted:
            return True
        return (
            checkpoint_id in self._values(ScopeKind.CHECKPOINT)
            or ward_code in self._codes(ScopeKind.WARD)
            or province_code in self._codes(ScopeKind.PROVINCE)
        )

    def can_see_ward(self, ward_code: int, *, province_code: int) -> bool:
        """Whether the ward is within scope (a checkpoint scope does not open its whole ward)."""
        if self.unrestricted:
            return True
        return ward_code in self._codes(ScopeKind.WARD) or province_code in self._codes(
            ScopeKind.PROVINCE
        )

    def checkpoint_filter(self) -> ColumnElement[bool] | None:
        """A WHERE clause on ``checkpoints`` keeping the ones in scope; None when all are."""
        if self.unrestricted:
            return None
        clauses: list[ColumnElement[bool]] = []
        if ids := self._values(ScopeKind.CHECKPOINT):
            clauses.append(checkpoints.c.id.in_(ids))
        if ward_codes := self._codes(ScopeKind.WARD):
            clauses.append(checkpoints.c.ward_code.in_(ward_codes))
        if provinces := self._codes(ScopeKind.PROVINCE):
            clauses.append(
                checkpoints.c.ward_code.in_(
                    select(wards.c.code).where(wards.c.province_code.in_(provinces))
                )
            )
        return or_(*clauses) if clauses else false()

    def citizen_filter(self) -> ColumnElement[bool] | None:
        """A WHERE clause on ``citizens`` keeping the people within scope; None when all are.

        A person is within scope when they live (permanently or temporarily)
        in a ward of the account's scope, or have a stored passage at one of
        its checkpoints: a provincial investigator traces the province's
        residents and whoever passed its gates, not the whole registry.
        """
        places = self.checkpoint_filter()
        if places is None:
            return None
        passed = exists(
            select(passages.c.event_id)
            .join(checkpoints, checkpoints.c.id == passages.c.checkpoint_id)
            .where(passages.c.citizen_id == citizens.c.id, places)
        )
        homes = [
            clause
            for column in (citizens.c.permanent_ward_code, citizens.c.temporary_ward_code)
            if (clause := self.ward_filter(column)) is not None
        ]
        return or_(passed, *homes)

    def ward_filter(self, ward_code: ColumnElement[Any]) -> ColumnElement[bool] | None:
        """A WHERE clause keeping rows whose ``ward_code`` column is in scope; None when all are."""
        if self.unrestricted:
            return None
        clauses: list[ColumnElement[bool]] = []
        if ward_codes := self._codes(ScopeKind.WARD):
            clauses.append(ward_code.in_(ward_codes))
        if provinces := self._codes(ScopeKind.PROVINCE):
            clauses.append(
                ward_code.in_(select(wards.c.code).where(wards.c.province_code.in_(provinces)))
            )
        return or_(*clauses) if clauses else false()


def scope_problems(role: Role, scopes: list[Scope], *, field: str = "scopes") -> list[Problem]:
    """Rules between a role and its scopes (a place-bound role needs a fitting scope)."""
    allowed = _LOCAL_SCOPE_KINDS.get(role)
    if allowed is None:
        return []
    problems = []
    if not scopes:
        problems.append(Problem(field, f"error.scope_required.{role.value}"))
    for scope in scopes:
        if scope.kind not in allowed:
            problems.append(Problem(field, "error.scope_kind_for_role", {"scope": str(scope)}))
    return problems
