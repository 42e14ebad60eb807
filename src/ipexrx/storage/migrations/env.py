"""Alembic environment: runs on a connection handed over by ``Database.migrate``, or on
``$IPEXRX_DATABASE_URL`` when started from the ``alembic`` command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from ipexrx.storage.db import default_database_url
from ipexrx.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(default_database_url())
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    context.configure(url=default_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
