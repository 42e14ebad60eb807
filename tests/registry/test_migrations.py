"""The shipped migrations form one line (one head) that creates the registry tables and the
append-only guard, and a registry database can be downgraded and upgraded again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from ipexrx.registry import Registry
from ipexrx.registry.models import REGISTRY_TABLES
from ipexrx.storage.db import MIGRATIONS_DIR


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def test_exactly_one_head_and_registry_revision_in_the_line() -> None:
    script = ScriptDirectory.from_config(_config())
    assert len(script.get_heads()) == 1, script.get_heads()
    assert "0100" in {r.revision for r in script.walk_revisions()}


def test_registry_schema_down_and_up_again(tmp_path: Path) -> None:
    reg = Registry(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    names = set(inspect(reg.engine).get_table_names())
    assert {m.__tablename__ for m in REGISTRY_TABLES} <= names
    cfg = _config()
    with reg.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    assert not {t for t in inspect(reg.engine).get_table_names() if t.startswith("reg_")}
    reg.db.migrate()
    with reg.engine.connect() as c:
        triggers = {r[0] for r in c.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert {"reg_audit_no_update", "reg_audit_no_delete"} <= triggers


def _concurrent_upgrades(url: str, code: str, n: int = 2) -> list[tuple[int, str]]:
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(n)]
    return [(p.wait(timeout=120), (p.communicate()[1] or "")[-600:]) for p in procs]


@pytest.mark.parametrize("entry", ["storage", "registry"])
def test_concurrent_upgrades_of_a_fresh_sqlite_file_do_not_race(tmp_path: Path, entry: str) -> None:
    """Two processes starting at once (two workers, a CLI beside the service) both migrate: one waits
    for the other's lock, then finds the schema at the head and does nothing."""
    code = {"storage": "import sys; from ipexrx.storage import Database; Database(sys.argv[1]).migrate()",
            "registry": "import sys; from ipexrx.registry import Registry; Registry(sys.argv[1]).close()"}[entry]
    for attempt in range(3):
        url = f"sqlite:///{tmp_path / f'race-{attempt}.sqlite3'}"
        results = _concurrent_upgrades(url, code)
        assert all(rc == 0 for rc, _ in results), results
        reg = Registry(url, migrate=False)
        with reg.engine.connect() as c:
            versions = [r[0] for r in c.exec_driver_sql("SELECT version_num FROM alembic_version")]
        reg.close()
        assert versions == [ScriptDirectory.from_config(_config()).get_current_head()]


def test_concurrent_upgrades_of_a_fresh_postgresql_database_do_not_race(fresh_pg_database: Any) -> None:
    with fresh_pg_database() as url:
        code = "import sys; from ipexrx.registry import Registry; Registry(sys.argv[1]).close()"
        results = _concurrent_upgrades(url, code, n=3)
        assert all(rc == 0 for rc, _ in results), results
