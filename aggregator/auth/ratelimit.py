"""Login rate limit: failed attempts counted per username and per client address.

After ``max_per_username`` failures for one username, or ``max_per_ip`` from
one address, within ``window_s`` seconds, logins for it wait until enough of
those failures are older than the window — even with the right password, so
guessing cannot go on in the background. A success clears the username's
count. Failures live in the ``login_failures`` table, not in process memory:
every aggregator behind the load balancer counts the same attempts, and a
restart forgets nothing. (Request-counting limiters such as ``limits`` count
every request, successes included, and keep their counts per process unless
given a Redis, which this system does not run.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, Connection, delete, func, insert, select

from aggregator.db.schema import login_failures


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """How many failures are tolerated over what window."""

    window_s: int
    max_per_username: int
    max_per_ip: int


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _wait(conn: Connection, column: Column[str], value: str, limit: int, since: datetime) -> float:
    recent = login_failures.c.at > since
    count = conn.execute(
        select(func.count()).select_from(login_failures).where(column == value, recent)
    ).scalar_one()
    if count < limit:
        return 0.0
    # The failure whose ageing out brings the count back under the limit.
    freeing = conn.execute(
        select(login_failures.c.at)
        .where(column == value, recent)
        .order_by(login_failures.c.at)
        .offset(count - limit)
        .limit(1)
    ).scalar_one()
    # It leaves the window at freeing + window_s, i.e. (freeing - since) from now.
    return (freeing - since).total_seconds()


def login_wait_s(
    conn: Connection,
    *,
    username: str,
    ip: str,
    limits: LoginLimits,
    now: datetime | None = None,
) -> int:
    """Seconds before a login for ``username`` from ``ip`` may be tried; 0 when it may now."""
    now = _now(now)
    since = now - timedelta(seconds=limits.window_s)
    wait = max(
        _wait(conn, login_failures.c.username, username, limits.max_per_username, since),
        _wait(conn, login_failures.c.ip, ip, limits.max_per_ip, since),
    )
    return max(0, math.ceil(wait))


def record_failure(
    conn: Connection,
    *,
    username: str,
    ip: str,
    window_s: int,
    now: datetime | None = None,
) -> None:
    """Count a failed login (and forget failures older than the window)."""
    now = _now(now)
    conn.execute(
        delete(login_failures).where(login_failures.c.at <= now - timedelta(seconds=window_s))
    )
    conn.execute(insert(login_failures).values(at=now, username=username[:64], ip=ip[:45]))


def clear_failures(conn: Connection, *, username: str) -> None:
    """Forget the username's failures (after a successful login)."""
    conn.execute(delete(login_failures).where(login_failures.c.username == username[:64]))
