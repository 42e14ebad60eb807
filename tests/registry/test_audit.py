"""The audit chain: every write, read and refusal lands in it, and any edit, deletion or truncation
is detected by ``audit verify``."""

from __future__ import annotations

import json

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
