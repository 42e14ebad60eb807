"""Shared test set-up: keep the compiled knowledge-base cache out of the user's home directory."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_kb_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test run (and every subprocess it starts) uses a fresh cache directory."""
    old = os.environ.get("IPEXRX_CACHE_DIR")
    os.environ["IPEXRX_CACHE_DIR"] = str(tmp_path_factory.mktemp("ipexrx-cache"))
    yield
    if old is None:
        os.environ.pop("IPEXRX_CACHE_DIR", None)
    else:
        os.environ["IPEXRX_CACHE_DIR"] = old


PG_ENV = "IPEXRX_TEST_POSTGRES_URL"
PG_SKIP = f"PostgreSQL variant: set {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5433/postgres)"


@contextmanager
def _fresh_pg_database(template: str | None = None) -> Iterator[str]:
    """A new, empty PostgreSQL database (a copy of ``template`` when given) on the server that
    ``$IPEXRX_TEST_POSTGRES_URL`` names; its URL is yielded and the database dropped afterwards.
    Skips the test, with that reason, when no server is configured."""
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        pytest.skip(PG_SKIP)
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    name = f"ipexrx_test_{uuid.uuid4().hex[:12]}"
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_pg_database() -> Callable[..., AbstractContextManager[str]]:
    """``with fresh_pg_database(template=None) as url:`` -- see :func:`_fresh_pg_database`."""
    return _fresh_pg_database
