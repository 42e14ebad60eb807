"""Registry fixtures: every ``reg`` test runs on SQLite and, when ``$IPEXRX_TEST_POSTGRES_URL`` points
at a server (an admin URL such as ``postgresql+psycopg://postgres@127.0.0.1:5433/postgres``), on a
fresh PostgreSQL database too; without it the PostgreSQL variant is skipped with that reason."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ipexrx.registry import SYSTEM, Actor, Registry

PG_ENV = "IPEXRX_TEST_POSTGRES_URL"
PASSWORD = "a long test password 1"


@pytest.fixture(scope="session")
def _pg_template() -> Iterator[str | None]:
    """One migrated template database per test process; each test gets a copy (CREATE DATABASE ...
    TEMPLATE is a file copy, much faster than migrating a fresh database every time)."""
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        yield None
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"ipexrx_tmpl_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    Registry(url.set(database=name).render_as_string(hide_password=False)).close()
    try:
        yield name
    finally:
        with psycopg.connect(conninfo, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Argon2id with minimal cost in tests (the production cost is ~0.4 s per hash on CI machines);
    ``test_production_hasher_uses_rfc9106_parameters`` checks the real parameters."""
    if request.node.get_closest_marker("real_argon2"):
        return
    from argon2 import PasswordHasher

    from ipexrx.registry import security

    monkeypatch.setattr(security, "_hasher", lambda: PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    else:
        template = request.getfixturevalue("_pg_template")
        if template is None:
            pytest.skip(f"PostgreSQL variant: set {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5433/postgres)")
        with request.getfixturevalue("fresh_pg_database")(template) as url:
            yield url


@pytest.fixture
def reg(db_url: str) -> Iterator[Registry]:
    r = Registry(db_url)
    yield r
    r.close()


def patient_data(centre: str | None = None, **over: Any) -> dict[str, Any]:
    p = {"birth_year": 2019, "birth_month": 5, "sex": "male", "diagnosis": "ipex", "gene": "FOXP3",
         "variant_hgvs": "NM_014009.4:c.1150G>A", "onset_date": dt.date(2019, 6, 1),
         "diagnosis_date": dt.date(2019, 9, 1), "consent_date": dt.date(2019, 9, 2), "consent_scope": "registry"}
    if centre:
        p["centre_code"] = centre
    p.update(over)
    return p


class World:
    """Two centres, one user per role (centre roles in centre A), one patient per centre."""

    def __init__(self, reg: Registry):
        self.reg = reg
        reg.create_centre(SYSTEM, {"code": "CTR-A", "name": "Centre A"})
        reg.create_centre(SYSTEM, {"code": "CTR-B", "name": "Centre B"})
        self.actors: dict[str, Actor] = {}
        for role, centre in (("clinician", "CTR-A"), ("data_manager", "CTR-A"), ("analyst", None), ("admin", None)):
            reg.create_user(SYSTEM, {"username": f"{role.replace('_', '-')}.user", "password": PASSWORD,
                                     "role": role, "centre_code": centre})
            self.actors[role] = reg.authenticate(f"{role.replace('_', '-')}.user", PASSWORD)
        reg.create_user(SYSTEM, {"username": "clin.b", "password": PASSWORD, "role": "clinician",
                                 "centre_code": "CTR-B"})
        self.clin_b = reg.authenticate("clin.b", PASSWORD)
        self.pa = reg.add_patient(self.actors["clinician"], {
            "patient": patient_data(), "courses": [{"drug_id": "sirolimus", "start_date": "2019-09-10"}]})
        self.pb = reg.add_patient(self.clin_b, patient_data())


@pytest.fixture
def world(reg: Registry) -> World:
    return World(reg)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "real_argon2: use the production Argon2 parameters (slow hashing)")
