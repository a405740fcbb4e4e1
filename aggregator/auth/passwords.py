"""Officer passwords: argon2id hashes (argon2-cffi) and the password rules.

Only hashes are stored. :func:`burn_verify` spends the same time as a real
check so that a login for an unknown username answers no faster than a wrong
password (no username probing by timing). Device MQTT passwords
(:mod:`aggregator.db.fleet`) are hashed here too.

The parameters are argon2-cffi's defaults (RFC 9106 low-memory profile:
64 MiB, 3 passes, 4 lanes), about 0.1-0.2 s per hash or check on a small
server, which is the point. With ``KIEMDICH_INSECURE_CHEAP_HASHES=1`` in the
environment the process uses argon2-cffi's ``CHEAPEST`` profile instead, made
for test suites: ours hashes and checks hundreds of passwords, and spent
minutes of its run in argon2. It is logged as a warning, and a hash made
with it is upgraded at the account's next login (:func:`needs_rehash`).
"""

from __future__ import annotations

import logging
import os
from functools import cache

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from aggregator.auth.problems import Problem
from aggregator.settings import DEMO_SECRETS
from contract.text import fold

MIN_LENGTH = 10
MAX_LENGTH = 256  # argon2 takes any length; this bounds the work a request can ask for

CHEAP_HASHES_ENV = "KIEMDICH_INSECURE_CHEAP_HASHES"

log = logging.getLogger(__name__)


def _make_hasher() -> PasswordHasher:
    if os.environ.get(CHEAP_HASHES_ENV) == "1":
        log.warning(
            "%s=1: mật khẩu được băm với tham số yếu, chỉ dùng để kiểm thử / "
            "passwords are hashed with weak parameters, for test suites only",
            CHEAP_HASHES_ENV,
        )
        return PasswordHasher.from_parameters(profiles.CHEAPEST)
    return PasswordHasher()


_hasher = _make_hasher()


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (a fresh salt each time)."""
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches ``stored_hash``; False for a mismatch or a damaged hash."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's (rehash at next login)."""
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


@cache
def _dummy_hash() -> str:
    return _hasher.hash("kiemdich: no such account")


def burn_verify(password: str) -> None:
    """Spend one verification's time on nothing (login attempt for an unknown username)."""
    verify_password(_dummy_hash(), password)


def password_problems(password: str, *, username: str, field: str = "password") -> list[Problem]:
    """What is wrong with ``password`` as a new password for ``username`` (empty: acceptable)."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(Problem(field, "error.password_short", {"min": MIN_LENGTH}))
    if len(password) > MAX_LENGTH:
        problems.append(Problem(field, "error.password_long", {"max": MAX_LENGTH}))
    folded = fold(password)
    if folded in DEMO_SECRETS or (username and folded == fold(username)):
        problems.append(Problem(field, "error.password_guessable"))
    return problems
