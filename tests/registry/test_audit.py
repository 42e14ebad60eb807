"""The audit chain: every write, read and refusal lands in it, and any edit, deletion or truncation
is detected by ``audit verify``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from ipexrx.cli import get_app
from ipexrx.registry import SYSTEM, Registry

from .conftest import World


def _drop_guard(reg: Registry) -> None:
    """What an attacker with database rights would do first: remove the append-only triggers."""
    with reg.engine.begin() as c:
        if reg.engine.dialect.name == "sqlite":
            c.exec_driver_sql("DROP TRIGGER reg_audit_no_update")
            c.exec_driver_sql("DROP TRIGGER reg_audit_no_delete")
        else:
            c.exec_driver_sql("DROP TRIGGER reg_audit_no_update ON reg_audit")


def test_clean_chain_verifies(world: World) -> None:
    r = world.reg.verify_audit(SYSTEM)
    assert r.ok and r.entries > 10 and r.problems == []


def test_reads_are_audited(world: World) -> None:
    world.reg.get_patient(world.actors["clinician"], world.pa)
    with world.reg.tx() as s:
        row = s.execute(text("SELECT action, entity_id, username FROM reg_audit ORDER BY seq DESC LIMIT 1")).one()
    assert tuple(row) == ("read", world.pa, "clinician.user")


def test_writes_record_before_and_after(world: World) -> None:
    world.reg.update_patient(world.actors["clinician"], world.pa, {"last_followup_date": "2022-02-02"})
    with world.reg.tx() as s:
        before, after = s.execute(text("SELECT before, after FROM reg_audit ORDER BY seq DESC LIMIT 1")).one()
    assert json.loads(before) == {"last_followup_date": None}
    assert json.loads(after) == {"last_followup_date": "2022-02-02"}


def test_database_refuses_update_and_delete_of_audit_rows(world: World) -> None:
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError, match="append-only"), world.reg.engine.begin() as c:
        c.exec_driver_sql("UPDATE reg_audit SET username = 'x' WHERE seq = 3")
    with pytest.raises(DBAPIError, match="append-only"), world.reg.engine.begin() as c:
        c.exec_driver_sql("DELETE FROM reg_audit WHERE seq = 3")


def test_edited_entry_is_detected(world: World) -> None:
    _drop_guard(world.reg)
    with world.reg.engine.begin() as c:
        c.exec_driver_sql("UPDATE reg_audit SET after = '{\"forged\":true}' WHERE seq = 5")
    r = world.reg.verify_audit(SYSTEM)
    assert not r.ok and any("entry 5: content does not match its hash" in p for p in r.problems)


def test_deleted_entry_is_detected(world: World) -> None:
    _drop_guard(world.reg)
    with world.reg.engine.begin() as c:
        c.exec_driver_sql("DELETE FROM reg_audit WHERE seq = 4")
    r = world.reg.verify_audit(SYSTEM)
    assert not r.ok and any("entry 4..4 missing" in p for p in r.problems)
    assert any("entry 5: prev_hash does not match" in p for p in r.problems)


def test_truncated_tail_is_detected_by_the_head_and_by_a_noted_hash(world: World) -> None:
    noted = world.reg.verify_audit(SYSTEM).head_hash
    _drop_guard(world.reg)
    with world.reg.engine.begin() as c:
        last = c.exec_driver_sql("SELECT MAX(seq) FROM reg_audit").scalar_one()
        c.exec_driver_sql(f"DELETE FROM reg_audit WHERE seq >= {last - 2}")
    assert any("head says entry" in p for p in world.reg.verify_audit(SYSTEM).problems)
    # an attacker who also rewinds the head row is still caught by the hash noted outside the database
    with world.reg.engine.begin() as c:
        seq, h = c.exec_driver_sql("SELECT seq, hash FROM reg_audit ORDER BY seq DESC LIMIT 1").one()
        c.exec_driver_sql(f"UPDATE reg_audit_head SET seq = {seq}, hash = '{h}'")
    r = world.reg.verify_audit(SYSTEM, expect_head=noted)
    assert [p for p in r.problems if "noted head hash" in p]


def test_cli_audit_verify_exit_codes(world: World) -> None:
    runner = CliRunner()
    ok = runner.invoke(get_app(), ["registry", "audit", "verify", "--db", world.reg.url, "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["ok"] is True
    _drop_guard(world.reg)
    with world.reg.engine.begin() as c:
        c.exec_driver_sql("UPDATE reg_audit SET username = 'mallory' WHERE seq = 2")
    bad = runner.invoke(get_app(), ["registry", "audit", "verify", "--db", world.reg.url])
    assert bad.exit_code == 1 and "entry 2: content does not match its hash" in bad.output


def test_concurrent_writers_extend_one_chain(reg: Registry) -> None:
    import threading

    from .conftest import patient_data

    reg.create_centre(SYSTEM, {"code": "CTR-A", "name": "Centre A"})
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                reg.add_patient(SYSTEM, {"patient": patient_data("CTR-A")})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    r = reg.verify_audit(SYSTEM)
    assert r.ok and r.entries == 1 + 20


# ----------------------------------------------------------------------------------------------
# Data rows changed outside the application (migration 0140: audit entries seal the rows they write)
# ----------------------------------------------------------------------------------------------
def _sql(reg: Registry, statement: str) -> None:
    with reg.engine.begin() as c:
        c.exec_driver_sql(statement)


def _ids(reg: Registry, table: str) -> list[int]:
    with reg.engine.connect() as c:
        return [r[0] for r in c.exec_driver_sql(f"SELECT id FROM {table} ORDER BY id")]


def test_every_operation_seals_what_it_wrote_so_a_busy_registry_verifies(world: World) -> None:
    clin, admin = world.actors["clinician"], world.actors["admin"]
    world.reg.add_visit(clin, world.pa, {"date": "2020-01-01", "oi_score": 2})
    course = world.reg.add_course(clin, world.pa, {"drug_id": "tacrolimus", "start_date": "2020-02-01",
                                                   "troughs": [{"date": "2020-02-10", "value_ng_ml": 6}]})
    world.reg.stop_course(clin, world.pa, course, dt.date(2020, 6, 1), "toxicity")
    world.reg.update_patient(clin, world.pa, {"last_followup_date": "2022-02-02"})
    token = world.reg.issue_token(clin, "script")
    world.reg.revoke_token(clin, token)
    world.reg.change_user(admin, "clin.b", active=False)
    r = world.reg.verify_audit(SYSTEM)
    assert r.ok, r.problems


def test_a_data_row_edited_with_sql_is_reported_by_table_and_id(world: World) -> None:
    pid = _ids(world.reg, "reg_patient")[0]
    _sql(world.reg, f"UPDATE reg_patient SET vital_status = 'dead', death_date = '2020-01-01' WHERE id = {pid}")
    r = world.reg.verify_audit(SYSTEM)
    assert not r.ok
    assert f"reg_patient id {pid}: the row differs from its last audited version (changed outside the application)" \
        in r.problems


def test_a_data_row_deleted_or_inserted_with_sql_is_reported(world: World) -> None:
    cid = _ids(world.reg, "reg_course")[0]
    _sql(world.reg, f"DELETE FROM reg_course WHERE id = {cid}")
    _sql(world.reg, "INSERT INTO reg_centre (code, name, country, synthetic, created_at) "
                    "VALUES ('CTR-X', 'Rogue', NULL, false, '2026-01-01 00:00:00')")
    rogue = _ids(world.reg, "reg_centre")[-1]
    problems = world.reg.verify_audit(SYSTEM).problems
    assert any(p.startswith(f"reg_course id {cid}: the row is missing") for p in problems), problems
    assert any(p.startswith(f"reg_centre id {rogue}: the row is not in the audit trail") for p in problems), problems


def test_a_token_row_slipped_in_with_sql_is_reported(world: World) -> None:
    """Inserting a token hash is how someone with database access would give themselves API access."""
    uid = world.actors["admin"].user_id
    _sql(world.reg, "INSERT INTO reg_api_token (user_id, token_hash, kind, label, created_at) "
                    f"VALUES ({uid}, '{'ab' * 32}', 'api', 'x', '2026-01-01 00:00:00')")
    assert any(p.startswith("reg_api_token id ") and "not in the audit trail" in p
               for p in world.reg.verify_audit(SYSTEM).problems)


def test_cli_audit_verify_reports_a_changed_row_and_exits_1(world: World) -> None:
    vid = _ids(world.reg, "reg_user")[0]
    _sql(world.reg, f"UPDATE reg_user SET role = 'admin' WHERE id = {vid}")
    bad = CliRunner().invoke(get_app(), ["registry", "audit", "verify", "--db", world.reg.url])
    assert bad.exit_code == 1
    assert f"reg_user id {vid}: the row differs from its last audited version" in bad.output


def test_forging_the_seal_in_an_entry_breaks_the_chain(world: World) -> None:
    """Rewriting a row AND its seal needs the audit entry rewritten, which its hash (and the next
    entry's link) reveals."""
    _drop_guard(world.reg)
    with world.reg.engine.begin() as c:
        seq = c.exec_driver_sql("SELECT MAX(seq) FROM reg_audit WHERE row_hashes IS NOT NULL").scalar_one()
        c.exec_driver_sql(f"UPDATE reg_audit SET row_hashes = NULL WHERE seq = {seq}")
    assert any(f"entry {seq}: content does not match its hash" in p for p in world.reg.verify_audit(SYSTEM).problems)


def test_an_existing_registry_is_sealed_by_a_baseline_entry_when_migrated(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    from ipexrx.storage import Database
    from ipexrx.storage.db import MIGRATIONS_DIR

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    db = Database(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0130")
        conn.exec_driver_sql("INSERT INTO reg_centre (code, name, synthetic, created_at) "
                             "VALUES ('OLD-1', 'Centre from before 0140', 0, '2026-11-30 10:00:00.000000')")
    db.dispose()
    reg = Registry(url)  # migrates to the head
    r = reg.verify_audit(SYSTEM)
    assert r.ok, r.problems
    with reg.engine.connect() as c:
        assert c.exec_driver_sql("SELECT action FROM reg_audit WHERE seq = 1").scalar_one() == "seal-baseline"
    _sql(reg, "UPDATE reg_centre SET name = 'Renamed' WHERE code = 'OLD-1'")
    assert not reg.verify_audit(SYSTEM).ok
    reg.close()
