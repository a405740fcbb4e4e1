"""One login attempt, start to finish: rate limit, password check, session, audit.

Shared by the login form and ``POST /api/auth/token`` so both obey the same
limits and leave the same trail. Runs in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Engine

from aggregator.auth.accounts import LoginOutcome, authenticate, normalize_username
from aggregator.auth.audit import record_action
from aggregator.auth.ratelimit import LoginLimits, clear_failures, login_wait_s, record_failure
from aggregator.auth.sessions import NewSession, SessionPolicy, create_session
from aggregator.db.engine import write_transaction


class LoginStatus(StrEnum):
    """How an attempt ended."""

    OK = "ok"
    FAILED = "failed"  # unknown username or wrong password: the officer is not told which
    INACTIVE = "inactive"  # right password, deactivated account
    THROTTLED = "throttled"  # too many failures: wait ``wait_s``


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """The result: a session when OK, the wait when throttled."""

    status: LoginStatus
    session: NewSession | None = None
    wait_s: int = 0


def attempt_login(
    engine: Engine,
    *,
    username: str,
    password: str,
    ip: str,
    user_agent: str | None,
    limits: LoginLimits,
    policy: SessionPolicy,
) -> LoginAttempt:
    """Try to log in; failures are counted for the rate limit and written to the audit log."""
    name = normalize_username(username)[:64]
    with write_transaction(engine) as conn:
        wait = login_wait_s(conn, username=name, ip=ip, limits=limits)
        if wait > 0:
            return LoginAttempt(LoginStatus.THROTTLED, wait_s=wait)
        result = authenticate(conn, username=name, password=password)
        if result.outcome is LoginOutcome.OK and result.officer is not None:
            clear_failures(conn, username=name)
            session = create_session(
                conn, officer=result.officer, policy=policy, ip=ip, user_agent=user_agent
            )
            record_action(
                conn, officer=result.officer, action="auth.login", subject=f"officer:{name}", ip=ip
            )
            return LoginAttempt(LoginStatus.OK, session=session)
        if result.outcome is LoginOutcome.INACTIVE:
            record_action(
                conn, officer=None, action="auth.login_inactive", subject=f"officer:{name}", ip=ip
            )
            return LoginAttempt(LoginStatus.INACTIVE)
        record_failure(conn, username=name, ip=ip, window_s=limits.window_s)
        record_action(
            conn, officer=None, action="auth.login_failed", subject=f"officer:{name}", ip=ip
        )
        return LoginAttempt(LoginStatus.FAILED)
