"""Multi-row INSERTs for the hot tables, without SQLAlchemy's per-row statement machinery.

Each batch writes a passage and two ward notifications per event; through
Core ``executemany`` most of the time went to compiling parameters row by row.
Here every value still goes through its column's own bind processor (the same
conversion SQLAlchemy applies: aware UTC datetimes, UUIDs, JSON), then:

- SQLite: chunks of rows as ``INSERT ... VALUES (...), (...)``, chunk sizes
  taken from a short ladder so the statement texts repeat and stay cached;
- PostgreSQL: one ``INSERT ... SELECT * FROM unnest(%s::type[], ...)`` with
  one array per column: a single short statement text whatever the row count,
  which psycopg caches and prepares on the server.

Both may end in ``ON CONFLICT (...) DO NOTHING RETURNING ...``, spelled the
same way by SQLite 3.35+ and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Dialect, Table

# SQLite allows 32,766 bound variables per statement, PostgreSQL 65,535.
_MAX_PARAMS = 30_000
# Statements are only ever this many rows long: a handful of distinct texts,
# so sqlite3's statement cache and psycopg's query cache (and its automatic
# server-side prepare) are hit instead of parsing a new statement per batch.
_LADDER = (256, 64, 16, 4, 1)


@dataclass(frozen=True)
class _Prepared:
    head: str
    row: str
    tail: str
    processors: tuple[Callable[[Any], Any] | None, ...]
    ladder: tuple[int, ...]
    unnest: str | None  # the whole statement, on PostgreSQL


@lru_cache(maxsize=64)
def _prepare(
    dialect: Dialect,
    table: Table,
    columns: tuple[str, ...],
    conflict: str | None,
    returning: str | None,
) -> _Prepared:
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    processors = tuple(
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
    )
    tail = ""
    if conflict is not None:
        tail += f" ON CONFLICT ({conflict}) DO NOTHING"
    if returning is not None:
        tail += f" RETURNING {returning}"
    head = f"INSERT INTO {table.name} ({', '.join(columns)}) "
    unnest = None
    if dialect.name == "postgresql":
        # %b: psycopg sends the arrays in binary, skipping per-element text escaping.
        arrays = ", ".join(
            f"%b::{table.c[name].type.compile(dialect=dialect)}[]" for name in columns
        )
        unnest = f"{head}SELECT * FROM unnest({arrays}){tail}"
    return _Prepared(
        head=head + "VALUES ",
        row="(" + ", ".join(mark for _ in columns) + ")",
        tail=tail,
        processors=processors,
        ladder=tuple(n for n in _LADDER if n * len(columns) <= _MAX_PARAMS),
        unnest=unnest,
    )


def _chunks(
    rows: Sequence[tuple[Any, ...]], ladder: tuple[int, ...]
) -> Iterator[Sequence[tuple[Any, ...]]]:
    start = 0
    for size in ladder:
        while len(rows) - start >= size:
            yield rows[start : start + size]
            start += size


def bind(conn: Connection, table: Table, columns: Sequence[str], value: Any, column: str) -> Any:
    """``value`` of ``column`` as the driver receives it (e.g. to match a RETURNING value)."""
    prepared = _prepare(conn.dialect, table, tuple(columns), None, None)
    processor = prepared.processors[list(columns).index(column)]
    return value if processor is None else processor(value)


def insert_rows(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    on_conflict_do_nothing: str | None = None,
    returning: str | None = None,
    bound: frozenset[str] = frozenset(),
) -> list[Any]:
    """Insert ``rows`` (tuples in ``columns`` order) in the caller's transaction.

    With ``on_conflict_do_nothing`` (the conflict target's column list) rows
    that already exist are skipped. With ``returning`` (one column), returns
    that column's driver-level value for each row actually inserted.
    Columns named in ``bound`` already hold driver-level values (from
    :func:`bind`, e.g. one JSON document shared by several rows).
    """
    if not rows:
        return []
    prepared = _prepare(conn.dialect, table, tuple(columns), on_conflict_do_nothing, returning)
    active = [
        (i, p)
        for i, p in enumerate(prepared.processors)
        if p is not None and columns[i] not in bound
    ]
    if prepared.unnest is not None:
        arrays: list[list[Any]] = [[] for _ in columns]
        for row in rows:
            for i, value in enumerate(row):
                arrays[i].append(value)
        for i, processor in active:
            arrays[i] = [processor(v) for v in arrays[i]]
        result = conn.exec_driver_sql(prepared.unnest, tuple(arrays))
        return [r[0] for r in result] if returning is not None else []
    returned: list[Any] = []
    for chunk in _chunks(rows, prepared.ladder):
        params: list[Any] = []
        for row in chunk:
            values = list(row)
            for i, processor in active:
                values[i] = processor(values[i])
            params.extend(values)
        sql = prepared.head + ", ".join([prepared.row] * len(chunk)) + prepared.tail
        result = conn.exec_driver_sql(sql, tuple(params))
        if returning is not None:
            returned.extend(r[0] for r in result)
    return returned
