"""Population registry data functions: citizens and their health declarations.

Keyword-only arguments, SQLAlchemy Core, and a bulk path that loads millions
of rows (``COPY`` on PostgreSQL, chunked ``executemany`` on SQLite). Reads
return frozen pydantic records so callers never handle raw rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime
from functools import lru_cache, partial
from itertools import islice
from typing import Any, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Connection,
    Select,
    Table,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy import exc as sa_exc

from aggregator.db.schema import (
    DeclarationSource,
    HealthStatus,
    Sex,
    UTCDateTime,
    citizens,
    declarations,
)
from contract.text import fold

BULK_CHUNK = 10_000


class CitizenRow(TypedDict):
    """One citizen for :func:`insert_citizens` (the folded name is derived, not given)."""

    id: int
    identity_no: str
    full_name: str
    date_of_birth: date
    sex: str
    phone: str | None
    permanent_ward_code: int
    temporary_ward_code: int | None
    vaccine_doses: int
    health_status: str
    status_since: datetime
    updated_at: datetime


class DeclarationRow(TypedDict):
    """One health declaration for :func:`insert_declarations`."""

    id: int
    citizen_id: int
    origin_ward_code: int | None
    destination_ward_code: int | None
    origin_detail: str | None
    destination_detail: str | None
    symptoms: list[str]
    contact_risk: bool
    source: str
    entered_by: int | None
    key_id: int
    created_at: datetime
    expires_at: datetime
    revoked_at: NotRequired[datetime | None]


class Citizen(BaseModel):
    """A citizen as the registry knows them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    identity_no: str
    full_name: str
    date_of_birth: date
    sex: Sex
    phone: str | None
    permanent_ward_code: int
    temporary_ward_code: int | None
    vaccine_doses: int
    health_status: HealthStatus
    status_since: datetime
    updated_at: datetime


class Declaration(BaseModel):
    """A health declaration with the citizen who filed it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    citizen: Citizen
    origin_ward_code: int | None
    destination_ward_code: int | None
    origin_detail: str | None
    destination_detail: str | None
    symptoms: list[str]
    contact_risk: bool
    source: DeclarationSource
    entered_by: int | None
    key_id: int
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class StatusChange(BaseModel):
    """Outcome of :func:`set_health_status`: what the status was and is now."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    citizen: Citizen
    previous: HealthStatus
    changed: bool


class CitizenNotFoundError(LookupError):
    """No citizen has the given id."""


def _check_identity_no(identity_no: object) -> str:
    if not (
        isinstance(identity_no, str)
        and len(identity_no) == 12
        and identity_no.isascii()
        and identity_no.isdigit()
    ):
        raise ValueError(
            f"Số CCCD phải gồm đúng 12 chữ số / identity number must be 12 digits: {identity_no!r}"
        )
    return identity_no


# --- bulk insert -------------------------------------------------------------


def _chunks(items: Iterable[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _identity(value: Any) -> Any:
    return value


def _json_text(value: Any) -> Any:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _converters(conn: Connection, table: Table) -> list[Callable[[Any], Any]]:
    """Per-column conversion of Python values to what the driver receives.

    The bulk paths hand tuples straight to the driver, skipping SQLAlchemy's
    per-row statement machinery (half the time of a million-row load), so the
    columns' own bind processors are applied here instead: the same checks
    (aware datetimes) and the same storage formats as ordinary inserts.
    """
    dialect = conn.dialect
    converters: list[Callable[[Any], Any]] = []
    for column in table.columns:
        if dialect.name == "postgresql":
            # COPY adapts dates, numbers and aware datetimes itself; JSON goes as text.
            if isinstance(column.type, UTCDateTime):
                converters.append(partial(column.type.process_bind_param, dialect=dialect))
            elif isinstance(column.type, JSON):
                converters.append(_json_text)
            else:
                converters.append(_identity)
        else:
            processor = column.type.dialect_impl(dialect).bind_processor(dialect)
            converters.append(processor or _identity)
    return converters


def _tuples(
    conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]]
) -> Iterator[tuple[Any, ...]]:
    names = [c.name for c in table.columns]
    active = [
        (i, convert)
        for i, convert in enumerate(_converters(conn, table))
        if convert is not _identity
    ]
    for row in rows:
        values = [row.get(name) for name in names]
        for i, convert in active:
            values[i] = convert(values[i])
        yield tuple(values)


def _copy(conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]]) -> int:
    columns = ", ".join(c.name for c in table.columns)
    statement = f"COPY {table.name} ({columns}) FROM STDIN"
    driver = conn.connection.driver_connection
    if driver is None:
        raise RuntimeError("connection is closed")
    count = 0
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for values in _tuples(conn, table, rows):
                copy.write_row(values)
                count += 1
    except dbapi_error as exc:
        # Same exception classes as the executemany path (IntegrityError, ...).
        raise sa_exc.DBAPIError.instance(statement, None, exc, dbapi_error) from exc
    return count


def _bulk_insert(conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert ``rows`` (every column by name; a missing key is NULL) into ``table``."""
    if conn.dialect.name == "postgresql":
        return _copy(conn, table, rows)
    columns = ", ".join(c.name for c in table.columns)
    marks = ", ".join("?" for _ in table.columns)
    statement = f"INSERT INTO {table.name} ({columns}) VALUES ({marks})"
    count = 0
    for chunk in _chunks(_tuples(conn, table, rows), BULK_CHUNK):
        conn.exec_driver_sql(statement, chunk)
        count += len(chunk)
    return count


def _resync_sequence(conn: Connection, column: Column[Any]) -> None:
    # Rows loaded with explicit ids leave PostgreSQL's serial sequence behind;
    # without this the next ordinary insert would collide with a loaded id.
    if conn.dialect.name != "postgresql":
        return
    table = column.table.name
    conn.execute(
        text(
            f"SELECT setval(pg_get_serial_sequence('{table}', '{column.name}'), "
            f"COALESCE((SELECT max({column.name}) FROM {table}), 0) + 1, false)"
        )
    )


# Names repeat a lot (a few thousand given-name combinations per family name).
_fold_name = lru_cache(maxsize=65_536)(fold)


def _citizen_values(row: CitizenRow) -> dict[str, Any]:
    values: dict[str, Any] = dict(row)
    values["identity_no"] = _check_identity_no(row["identity_no"])
    values["full_name_folded"] = _fold_name(row["full_name"])
    return values


def insert_citizens(conn: Connection, *, rows: Iterable[CitizenRow]) -> int:
    """Insert citizens in bulk (rows carry their ids); returns how many were inserted.

    Runs inside the caller's transaction. The folded search name is derived
    here. A malformed identity number raises ``ValueError``; a duplicate one
    raises ``sqlalchemy.exc.IntegrityError`` on both backends.
    """
    count = _bulk_insert(conn, citizens, (_citizen_values(row) for row in rows))
    if count:
        _resync_sequence(conn, citizens.c.id)
    return count


def insert_declarations(conn: Connection, *, rows: Iterable[DeclarationRow]) -> int:
    """Insert declarations in bulk (ids are the random ids signed into the tokens)."""
    return _bulk_insert(conn, declarations, (dict(row) for row in rows))


# --- reads --------------------------------------------------------------------

_CITIZEN_FIELDS = tuple(Citizen.model_fields)
_DECLARATION_FIELDS = tuple(name for name in Declaration.model_fields if name != "citizen")


def _citizen_query() -> Select[Any]:
    return select(*(citizens.c[name] for name in _CITIZEN_FIELDS))


# Point look-ups run once per passage: statements built once and bound per
# call cost a third of building them every time.
_CITIZEN_BY_ID = _citizen_query().where(citizens.c.id == bindparam("citizen_id"))
_CITIZEN_BY_IDENTITY = _citizen_query().where(citizens.c.identity_no == bindparam("identity_no"))
_DECLARATION_BY_ID = (
    select(
        *(declarations.c[name] for name in _DECLARATION_FIELDS),
        *(citizens.c[name].label(f"citizen__{name}") for name in _CITIZEN_FIELDS),
    )
    .join_from(declarations, citizens, declarations.c.citizen_id == citizens.c.id)
    .where(declarations.c.id == bindparam("declaration_id"))
)


def count_citizens(conn: Connection) -> int:
    """How many citizens the registry holds."""
    return int(conn.execute(select(func.count()).select_from(citizens)).scalar_one())


def get_citizen(conn: Connection, *, citizen_id: int) -> Citizen | None:
    """The citizen with this id, or None."""
    row = conn.execute(_CITIZEN_BY_ID, {"citizen_id": citizen_id}).mappings().first()
    return None if row is None else Citizen.model_validate(dict(row))


def get_citizen_by_identity(conn: Connection, *, identity_no: str) -> Citizen | None:
    """The citizen holding this 12-digit identity number, or None."""
    row = conn.execute(_CITIZEN_BY_IDENTITY, {"identity_no": identity_no}).mappings().first()
    return None if row is None else Citizen.model_validate(dict(row))


def get_declaration(conn: Connection, *, declaration_id: int) -> Declaration | None:
    """The declaration with this id, joined with its citizen, or None."""
    row = conn.execute(_DECLARATION_BY_ID, {"declaration_id": declaration_id}).mappings().first()
    if row is None:
        return None
    citizen = Citizen.model_validate({name: row[f"citizen__{name}"] for name in _CITIZEN_FIELDS})
    return Declaration.model_validate(
        {**{name: row[name] for name in _DECLARATION_FIELDS}, "citizen": citizen}
    )


def _prefix_upper_bound(prefix: str) -> str:
    # The smallest string greater than every string starting with ``prefix``
    # in code-point (= UTF-8 byte, = SQLite BINARY, = PostgreSQL "C") order.
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def search_citizen_query(
    folded_prefix: str, *, limit: int, where: ColumnElement[bool] | None = None
) -> Select[Any]:
    """The statement behind :func:`search_citizens` for an already folded, non-empty prefix."""
    if not folded_prefix:
        raise ValueError("empty search prefix")
    return (
        _citizen_query()
        .where(
            citizens.c.full_name_folded >= folded_prefix,
            citizens.c.full_name_folded < _prefix_upper_bound(folded_prefix),
            *(() if where is None else (where,)),
        )
        .order_by(citizens.c.full_name_folded, citizens.c.id)
        .limit(limit)
    )


def search_citizens(
    conn: Connection,
    *,
    name_query: str,
    limit: int = 50,
    where: ColumnElement[bool] | None = None,
) -> list[Citizen]:
    """Citizens whose name starts with ``name_query``, ignoring diacritics, case and spacing.

    "nguyen van an" finds "Nguyễn Văn An" (and "Nguyễn Văn Anh"); "dang" finds
    "Đặng ...". Vietnamese names start with the family name, so a prefix is
    how officers search, and it is a range scan on the folded-name index on
    both backends. An empty query finds nobody. ``where`` (a clause on
    ``citizens``) keeps only the people it admits, before the limit.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive: {limit}")
    folded = fold(name_query)
    if not folded:
        return []
    rows = conn.execute(search_citizen_query(folded, limit=limit, where=where)).mappings()
    return [Citizen.model_validate(dict(row)) for row in rows]


# --- writes -------------------------------------------------------------------


def set_health_status(
    conn: Connection, *, citizen_id: int, status: HealthStatus, at: datetime
) -> StatusChange:
    """Record a citizen's new health status as of ``at`` (an aware datetime).

    Setting the status the citizen already has changes nothing (``status_since``
    keeps the original date). Raises :class:`CitizenNotFoundError` for an
    unknown id.
    """
    status = HealthStatus(status)
    current = conn.execute(
        select(citizens.c.health_status).where(citizens.c.id == citizen_id).with_for_update()
    ).scalar_one_or_none()
    if current is None:
        raise CitizenNotFoundError(f"Không có công dân / no citizen with id {citizen_id}")
    previous = HealthStatus(current)
    if previous is not status:
        conn.execute(
            citizens.update()
            .where(citizens.c.id == citizen_id)
            .values(health_status=status.value, status_since=at, updated_at=at)
        )
    citizen = get_citizen(conn, citizen_id=citizen_id)
    if citizen is None:
        raise CitizenNotFoundError(f"Không có công dân / no citizen with id {citizen_id}")
    return StatusChange(citizen=citizen, previous=previous, changed=previous is not status)
