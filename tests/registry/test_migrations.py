"""The shipped migrations form one line (one head) that creates the registry tables and the
append-only guard, and a registry database can be downgraded and upgraded again."""

from __future__ import annotations

from pathlib import Path

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
