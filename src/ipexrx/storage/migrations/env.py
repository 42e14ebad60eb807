"""Alembic environment: runs on a connection handed over by ``Database.migrate``, or on
``$IPEXRX_DATABASE_URL`` when started from the ``alembic`` command line.

Concurrent upgrades are serialised: on PostgreSQL by an advisory lock held for the migration
transaction (taken before Alembic reads the current version, so the second process finds the
first one's work done); on SQLite by a file lock (``ipexrx.storage.db.migration_lock``), taken by
``Database.migrate`` and here for the command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from ipexrx.storage.db import MIGRATION_LOCK_KEY, default_database_url, migration_lock
from ipexrx.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":  # released when the migration transaction ends
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _lock(connection)
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = default_database_url()
    engine = create_engine(url)
    with migration_lock(url), engine.begin() as conn:
        _lock(conn)
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    context.configure(url=default_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
