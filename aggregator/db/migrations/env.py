"""Alembic environment: runs the migrations on the connection handed over by
``aggregator.db.migrate`` (or on ``sqlalchemy.url`` when run from the alembic CLI)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from aggregator.db.engine import default_url, make_engine
from aggregator.db.schema import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    # The pragma is ignored inside a transaction, so it goes straight to the
    # driver while SQLAlchemy has not begun one yet.
    raw = connection.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("connection is closed")
    raw.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch migrations rebuild tables (copy, drop, rename); with enforced
        # foreign keys the drop would cascade or fail. Integrity is checked
        # below before commit instead.
        _sqlite_foreign_keys(connection, on=False)
    try:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=sqlite,
            compare_type=True,
            # make_engine hands SQLite transactions to SQLAlchemy, so its DDL is
            # transactional too: the whole upgrade commits or none of it does.
            transactional_ddl=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left dangling foreign keys: {broken[:10]}")
    finally:
        if sqlite:
            _sqlite_foreign_keys(connection, on=True)


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade --sql``) instead of running it."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or default_url(),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run on the shared connection, or on a fresh engine for ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or default_url())
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
