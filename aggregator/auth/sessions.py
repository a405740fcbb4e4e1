"""Server-side login sessions: one random token, a cookie for pages, Bearer for the JSON API.

The browser holds a 256-bit random token in the HttpOnly, SameSite=Lax cookie
``kd_session``; scripts and other clients send the same token as
``Authorization: Bearer``. The database keeps only the token's SHA-256 (a
copy of the table opens no session), the form CSRF token, and the times:
a session ends when unused for the idle limit or at the absolute limit after
login, whichever comes first, and at logout, password change or
deactivation. Expired rows are deleted when met and at each login.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, delete, insert, select, update

from aggregator.auth.accounts import get_officer
from aggregator.auth.model import Officer
from aggregator.db.schema import officer_sessions, officers

SESSION_COOKIE = "kd_session"
TOKEN_BYTES = 32
_USER_AGENT_MAX = 200


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How long sessions live (seconds) and how often their last use is written."""

    idle_s: int
    absolute_s: int
    touch_s: int = 60


class NewSession(BaseModel):
    """A session just opened: the token is only ever known here and to the client."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: str
    csrf_token: str
    expires_at: datetime
    officer: Officer


class ActiveSession(BaseModel):
    """A valid session found for a request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    officer: Officer
    csrf_token: str
    created_at: datetime
    expires_at: datetime
    """When it ends if unused (the earlier of the idle and the absolute limit)."""


class SessionState(StrEnum):
    """What a presented token turned out to be."""

    ACTIVE = "active"
    UNKNOWN = "unknown"  # never issued, logged out, or expired and already deleted
    EXPIRED = "expired"
    INACTIVE = "inactive"  # the account was deactivated


@dataclass(frozen=True, slots=True)
class SessionLookup:
    """The state of a token, with the session when it is active."""

    state: SessionState
    session: ActiveSession | None = None


def token_hash(token: str) -> str:
    """The stored form of a token (SHA-256, hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def prune_expired(conn: Connection, *, now: datetime | None = None) -> int:
    """Delete sessions past their absolute limit; returns how many."""
    result = conn.execute(
        delete(officer_sessions).where(officer_sessions.c.expires_at <= _now(now))
    )
    return int(result.rowcount)


def create_session(
    conn: Connection,
    *,
    officer: Officer,
    policy: SessionPolicy,
    ip: str | None,
    user_agent: str | None,
    now: datetime | None = None,
) -> NewSession:
    """Open a session for ``officer`` (already authenticated) and return its token."""
    now = _now(now)
    prune_expired(conn, now=now)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    csrf_token = secrets.token_urlsafe(TOKEN_BYTES)
    expires_at = now + timedelta(seconds=policy.absolute_s)
    conn.execute(
        insert(officer_sessions).values(
            token_hash=token_hash(token),
            officer_id=officer.id,
            csrf_token=csrf_token,
            created_at=now,
            last_seen_at=now,
            expires_at=expires_at,
            ip=ip,
            user_agent=(user_agent or "")[:_USER_AGENT_MAX] or None,
        )
    )
    return NewSession(token=token, csrf_token=csrf_token, expires_at=expires_at, officer=officer)


def resolve_session(
    conn: Connection, *, token: str, policy: SessionPolicy, now: datetime | None = None
) -> SessionLookup:
    """What ``token`` opens right now; an active session's last use is brought forward."""
    now = _now(now)
    digest = token_hash(token)
    row = conn.execute(
        select(
            officer_sessions.c.officer_id,
            officer_sessions.c.csrf_token,
            officer_sessions.c.created_at,
            officer_sessions.c.last_seen_at,
            officer_sessions.c.expires_at,
            officers.c.active,
        )
        .join(officers, officers.c.id == officer_sessions.c.officer_id)
        .where(officer_sessions.c.token_hash == digest)
    ).first()
    if row is None:
        return SessionLookup(SessionState.UNKNOWN)
    idle_limit = row.last_seen_at + timedelta(seconds=policy.idle_s)
    if now >= row.expires_at or now >= idle_limit:
        conn.execute(delete(officer_sessions).where(officer_sessions.c.token_hash == digest))
        return SessionLookup(SessionState.EXPIRED)
    if not row.active:
        conn.execute(delete(officer_sessions).where(officer_sessions.c.token_hash == digest))
        return SessionLookup(SessionState.INACTIVE)
    last_seen = row.last_seen_at
    if now - last_seen >= timedelta(seconds=policy.touch_s):
        last_seen = now
        conn.execute(
            update(officer_sessions)
            .where(officer_sessions.c.token_hash == digest)
            .values(last_seen_at=now)
        )
    account = get_officer(conn, officer_id=row.officer_id)
    if account is None:  # deleted meanwhile; the cascade takes the session with it
        return SessionLookup(SessionState.UNKNOWN)
    return SessionLookup(
        SessionState.ACTIVE,
        ActiveSession(
            officer=account.officer(),
            csrf_token=row.csrf_token,
            created_at=row.created_at,
            expires_at=min(row.expires_at, last_seen + timedelta(seconds=policy.idle_s)),
        ),
    )


def end_session(conn: Connection, *, token: str) -> bool:
    """Log out: delete the session; False when there was none."""
    result = conn.execute(
        delete(officer_sessions).where(officer_sessions.c.token_hash == token_hash(token))
    )
    return bool(result.rowcount)
