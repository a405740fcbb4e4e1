"""Officer accounts: create, read, change, authenticate (SQLAlchemy Core, keyword-only).

Usernames are lowercase ASCII (what an officer types at 3 a.m. without
worrying about case or accents); the full name keeps its diacritics.
Changing a password, the role, the scopes or deactivating an account ends the
account's sessions, so a change takes effect at the next request.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, Connection, delete, exists, insert, select, update

from aggregator.auth.model import Officer, Scope, scope_problems
from aggregator.auth.passwords import (
    burn_verify,
    hash_password,
    needs_rehash,
    password_problems,
    verify_password,
)
from aggregator.auth.problems import Problem, ProblemError
from aggregator.db.schema import (
    Role,
    ScopeKind,
    checkpoints,
    officer_scopes,
    officer_sessions,
    officers,
    wards,
)

USERNAME_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{1,62})[a-z0-9]$"
_USERNAME = re.compile(USERNAME_PATTERN)


class OfficerRow(BaseModel):
    """An account as the admin screens list it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    username: str
    full_name: str
    role: Role
    scopes: list[Scope]
    active: bool
    created_at: datetime
    last_login_at: datetime | None

    def officer(self) -> Officer:
        """The identity a request carries."""
        return Officer(
            id=self.id,
            username=self.username,
            full_name=self.full_name,
            role=self.role,
            scopes=self.scopes,
        )


class LoginOutcome(StrEnum):
    """Why a login succeeded or not (the screens show failed and unknown alike)."""

    OK = "ok"
    UNKNOWN = "unknown"
    WRONG_PASSWORD = "wrong_password"
    INACTIVE = "inactive"


@dataclass(frozen=True, slots=True)
class LoginResult:
    """What :func:`authenticate` found."""

    outcome: LoginOutcome
    officer: Officer | None = None


def normalize_username(username: str) -> str:
    """What a typed username is compared as (trimmed, lowercase)."""
    return username.strip().lower()


def username_problems(username: str, *, field: str = "username") -> list[Problem]:
    """What is wrong with ``username`` as a new account's name."""
    return [] if _USERNAME.match(username) else [Problem(field, "error.username")]


def full_name_problems(full_name: str, *, field: str = "full_name") -> list[Problem]:
    """What is wrong with ``full_name``."""
    return [] if 2 <= len(full_name.strip()) <= 120 else [Problem(field, "error.full_name")]


def unknown_scopes(
    conn: Connection, scopes: Iterable[Scope], *, field: str = "scopes"
) -> list[Problem]:
    """Scopes naming a checkpoint, ward or province that does not exist."""
    problems = []
    for scope in scopes:
        if scope.kind is ScopeKind.CHECKPOINT:
            found = exists().where(checkpoints.c.id == scope.value)
        elif scope.kind is ScopeKind.WARD:
            found = exists().where(wards.c.code == int(scope.value))
        else:
            found = exists().where(wards.c.province_code == int(scope.value))
        if not conn.execute(select(found)).scalar_one():
            key = f"error.scope_unknown_{scope.kind.value}"
            problems.append(Problem(field, key, {"value": scope.value}))
    return problems


def _scopes_of(conn: Connection, officer_ids: Sequence[int]) -> dict[int, list[Scope]]:
    out: dict[int, list[Scope]] = defaultdict(list)
    if not officer_ids:
        return out
    rows = conn.execute(
        select(
            officer_scopes.c.officer_id, officer_scopes.c.scope_kind, officer_scopes.c.scope_value
        )
        .where(officer_scopes.c.officer_id.in_(officer_ids))
        .order_by(
            officer_scopes.c.officer_id, officer_scopes.c.scope_kind, officer_scopes.c.scope_value
        )
    )
    for officer_id, kind, value in rows:
        out[officer_id].append(Scope(kind=kind, value=value))
    return out


_ROW_COLUMNS = (
    officers.c.id,
    officers.c.username,
    officers.c.full_name,
    officers.c.role,
    officers.c.active,
    officers.c.created_at,
    officers.c.last_login_at,
)


def _rows(conn: Connection, *where: ColumnElement[bool]) -> list[OfficerRow]:
    query = select(*_ROW_COLUMNS).where(*where).order_by(officers.c.username)
    found = [dict(r) for r in conn.execute(query).mappings()]
    scopes = _scopes_of(conn, [r["id"] for r in found])
    return [OfficerRow(**r, scopes=scopes.get(r["id"], [])) for r in found]


def get_officer(conn: Connection, *, officer_id: int) -> OfficerRow | None:
    """The account with this id, or None."""
    rows = _rows(conn, officers.c.id == officer_id)
    return rows[0] if rows else None


def find_officer(conn: Connection, *, username: str) -> OfficerRow | None:
    """The account with this username (compared trimmed and lowercase), or None."""
    rows = _rows(conn, officers.c.username == normalize_username(username))
    return rows[0] if rows else None


def list_officers(
    conn: Connection, *, role: Role | None = None, active: bool | None = None
) -> list[OfficerRow]:
    """Accounts by username, optionally of one role or activity."""
    clauses: list[ColumnElement[bool]] = []
    if role is not None:
        clauses.append(officers.c.role == role.value)
    if active is not None:
        clauses.append(officers.c.active == active)
    return _rows(conn, *clauses)


def _check(problems: list[Problem]) -> None:
    if problems:
        raise ProblemError(problems)


def _replace_scopes(conn: Connection, officer_id: int, scopes: Iterable[Scope]) -> None:
    conn.execute(delete(officer_scopes).where(officer_scopes.c.officer_id == officer_id))
    rows = [
        {"officer_id": officer_id, "scope_kind": s.kind.value, "scope_value": s.value}
        for s in dict.fromkeys(scopes)
    ]
    if rows:
        conn.execute(insert(officer_scopes), rows)


def end_sessions(conn: Connection, *, officer_id: int) -> int:
    """End every session of the account; returns how many there were."""
    result = conn.execute(
        delete(officer_sessions).where(officer_sessions.c.officer_id == officer_id)
    )
    return int(result.rowcount)


def create_officer(
    conn: Connection,
    *,
    username: str,
    full_name: str,
    role: Role,
    scopes: Sequence[Scope],
    password: str,
) -> int:
    """Create an account and return its id.

    Raises :class:`ProblemError` listing every rule broken (username shape or
    taken, name, password, scopes unknown or unfit for the role).
    """
    username = normalize_username(username)
    problems = [
        *username_problems(username),
        *full_name_problems(full_name),
        *password_problems(password, username=username),
        *scope_problems(role, list(scopes)),
        *unknown_scopes(conn, scopes),
    ]
    if not problems and find_officer(conn, username=username) is not None:
        problems.append(Problem("username", "error.username_taken", {"username": username}))
    _check(problems)
    officer_id = int(
        conn.execute(
            insert(officers)
            .values(
                username=username,
                full_name=full_name.strip(),
                role=role.value,
                password_hash=hash_password(password),
                active=True,
            )
            .returning(officers.c.id)
        ).scalar_one()
    )
    _replace_scopes(conn, officer_id, scopes)
    return officer_id


def update_officer(
    conn: Connection,
    *,
    officer_id: int,
    full_name: str | None = None,
    role: Role | None = None,
    scopes: Sequence[Scope] | None = None,
    active: bool | None = None,
) -> OfficerRow:
    """Change the given fields of an account (None: unchanged) and return it.

    A change of role, scopes or activity ends the account's sessions. Raises
    ``LookupError`` for an unknown id and :class:`ProblemError` for a broken rule.
    """
    current = get_officer(conn, officer_id=officer_id)
    if current is None:
        raise LookupError(f"officer {officer_id}")
    new_role = role or current.role
    new_scopes = list(scopes) if scopes is not None else current.scopes
    problems = []
    if full_name is not None:
        problems += full_name_problems(full_name)
    if role is not None or scopes is not None:
        problems += scope_problems(new_role, new_scopes)
    if scopes is not None:
        problems += unknown_scopes(conn, new_scopes)
    _check(problems)
    values: dict[str, object] = {}
    if full_name is not None:
        values["full_name"] = full_name.strip()
    if role is not None:
        values["role"] = role.value
    if active is not None:
        values["active"] = active
    if values:
        conn.execute(update(officers).where(officers.c.id == officer_id).values(**values))
    if scopes is not None:
        _replace_scopes(conn, officer_id, new_scopes)
    access_changed = (
        (role is not None and role != current.role)
        or (scopes is not None and set(new_scopes) != set(current.scopes))
        or (active is not None and active != current.active)
    )
    if access_changed:
        end_sessions(conn, officer_id=officer_id)
    updated = get_officer(conn, officer_id=officer_id)
    if updated is None:  # deleted by another transaction meanwhile
        raise LookupError(f"officer {officer_id}")
    return updated


def set_password(conn: Connection, *, officer_id: int, password: str) -> None:
    """Set a new password and end the account's sessions.

    Raises ``LookupError`` for an unknown id and :class:`ProblemError` for a weak password.
    """
    current = get_officer(conn, officer_id=officer_id)
    if current is None:
        raise LookupError(f"officer {officer_id}")
    _check(password_problems(password, username=current.username))
    conn.execute(
        update(officers)
        .where(officers.c.id == officer_id)
        .values(password_hash=hash_password(password))
    )
    end_sessions(conn, officer_id=officer_id)


def authenticate(
    conn: Connection, *, username: str, password: str, now: datetime | None = None
) -> LoginResult:
    """Check a username and password; on success record the login time.

    An unknown username costs the same argon2 time as a wrong password. The
    hash is upgraded in place when today's parameters are stronger.
    """
    row = conn.execute(
        select(officers.c.id, officers.c.password_hash, officers.c.active).where(
            officers.c.username == normalize_username(username)
        )
    ).first()
    if row is None:
        burn_verify(password)
        return LoginResult(LoginOutcome.UNKNOWN)
    if not verify_password(row.password_hash, password):
        return LoginResult(LoginOutcome.WRONG_PASSWORD)
    if not row.active:
        return LoginResult(LoginOutcome.INACTIVE)
    values: dict[str, object] = {"last_login_at": now or datetime.now(UTC)}
    if needs_rehash(row.password_hash):
        values["password_hash"] = hash_password(password)
    conn.execute(update(officers).where(officers.c.id == row.id).values(**values))
    found = get_officer(conn, officer_id=row.id)
    if found is None:  # deleted by another transaction meanwhile
        return LoginResult(LoginOutcome.UNKNOWN)
    return LoginResult(LoginOutcome.OK, found.officer())
