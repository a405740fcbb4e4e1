"""Engines for the two supported stores: SQLite (embedded default) and PostgreSQL (scale)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

DEFAULT_URL = "sqlite:///var/kiemdich.db"
URL_ENV = "KIEMDICH_DB_URL"
SQLITE_BUSY_TIMEOUT_MS = 10_000
DEFAULT_SQLITE_CACHE_MIB = 16


def default_url() -> str:
    """The database URL from ``KIEMDICH_DB_URL``, else the embedded SQLite file."""
    return os.environ.get(URL_ENV) or DEFAULT_URL


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``, sending every PostgreSQL URL to the psycopg 3 driver.

    Raises ``ValueError`` for a backend other than SQLite or PostgreSQL.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed
    raise ValueError(
        f"Chỉ hỗ trợ SQLite và PostgreSQL / only SQLite and PostgreSQL are supported: {backend!r}"
    )


def is_memory(url: URL) -> bool:
    """True for an in-memory SQLite URL (nothing on disk)."""
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any, *, cache_mib: int) -> None:
    # Hand transaction control to SQLAlchemy (pysqlite's implicit BEGIN skips
    # DDL and SAVEPOINT handling); BEGIN is emitted by the "begin" hook below.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL is crash-safe (a power cut may lose the last commits, never corrupt).
        cursor.execute("PRAGMA synchronous=NORMAL")
        # The default 2 MiB page cache holds little more than the registry's
        # top B-tree levels: every ingest batch then read index pages back
        # from the OS. A connection's cache is emptied whenever another one
        # has committed since its last read (WAL), which the ingest's reader
        # sees every batch and its writer at each fleet flush, so a bigger
        # cache does not keep more for long: queued drains on a 2 M-passage
        # store (2026-12-07, interleaved) gave 8 MiB 1,884-1,897/s, 16 MiB
        # 1,932-2,313/s, 32 MiB 2,295/s, 64 MiB 1,991-2,025/s, and 64 MiB made
        # the process grow by 63 MiB over a 10-minute soak. Not mmap: its pages
        # would count in the RSS as the file grows, and an I/O error becomes a
        # SIGBUS.
        cursor.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
    finally:
        cursor.close()


_IMMEDIATE = "kiemdich_write"


def _sqlite_begin(connection: Any) -> None:
    # A transaction that will write takes SQLite's write lock when it begins
    # (waiting up to the busy timeout behind the ingest's commits): a deferred
    # one that reads first cannot upgrade its snapshot once another connection
    # has committed, and fails at once with "database is locked".
    immediate = connection.get_execution_options().get(_IMMEDIATE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction that is going to write, committed on exit (rolled back on error).

    Use it instead of ``engine.begin()`` wherever a transaction reads and then
    writes (an audit row after a read, a rate-limit count, a session's last
    use). On SQLite it begins ``IMMEDIATE``, so it waits for the writer lock up
    front instead of failing when ingest commits between its read and its
    write; readers are never blocked (WAL). PostgreSQL is unaffected.
    """
    with engine.connect() as conn:
        conn.execution_options(**{_IMMEDIATE: True})
        with conn.begin():
            yield conn


def make_engine(
    url: str | URL | None = None,
    *,
    sqlite_cache_mib: int = DEFAULT_SQLITE_CACHE_MIB,
    **kwargs: Any,
) -> Engine:
    """Create an engine for ``url`` (default: :func:`default_url`).

    SQLite gets WAL, ``synchronous=NORMAL``, enforced foreign keys and a busy
    timeout on every connection, and its parent directory is created.
    ``postgresql://`` URLs are rewritten to psycopg 3. Extra keyword arguments
    go to :func:`sqlalchemy.create_engine`.
    """
    parsed = normalize_url(url if url is not None else default_url())
    if parsed.get_backend_name() == "sqlite":
        if is_memory(parsed):
            # One shared connection, or every checkout would see an empty database.
            kwargs.setdefault("poolclass", StaticPool)
            kwargs.setdefault("connect_args", {"check_same_thread": False})
        elif parsed.database:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            # Each connection has its own page cache (sqlite_cache_mib): handed
            # out last-in first-out, the few busy threads keep reusing the same
            # connections and their warm caches, and the rarely used ones stay
            # small, instead of every pooled connection filling its cache in turn.
            kwargs.setdefault("pool_use_lifo", True)
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", partial(_sqlite_on_connect, cache_mib=sqlite_cache_mib))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


T = TypeVar("T")
_SQLITE_RETRIES = 6


def in_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run ``work`` in one :func:`write_transaction`, retried whole if SQLite still reports a lock.

    The write lock is taken when the transaction begins, so a snapshot never
    needs upgrading; "database is locked" can then only come from a writer
    holding the lock beyond the busy timeout, and the whole unit is run again
    a few times with a growing pause. PostgreSQL never takes this path.
    """
    for attempt in range(_SQLITE_RETRIES):
        try:
            with write_transaction(engine) as conn:
                return work(conn)
        except OperationalError as exc:
            retry = engine.dialect.name == "sqlite" and "database is locked" in str(exc.orig)
            if not retry or attempt == _SQLITE_RETRIES - 1:
                raise
            time.sleep(0.01 * 2**attempt)
    raise AssertionError("unreachable")
