"""The registry commands end to end: bootstrap an administrator, a centre, users and tokens, then
import, report and export as those users."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ipexrx.cli import get_app

PW = "a long test password 1"


def _run(args: list[str], env: dict[str, str] | None = None, code: int = 0) -> str:
    r = CliRunner().invoke(get_app(), ["registry", *args], env=env)
    assert r.exit_code == code, r.output
    return r.output


def test_bootstrap_users_tokens_import_and_scoped_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'r.sqlite3'}"]
    _run(["init", "--admin", "admin.jane", *db], env={"IPEXRX_ADMIN_PASSWORD": PW})
    assert "already has users" in _run(["init", "--admin", "other", *db], env={"IPEXRX_ADMIN_PASSWORD": PW}, code=1)
    admin = _run(["token", "--user", "admin.jane", *db], env={"IPEXRX_PASSWORD": PW}).strip()
    assert admin.startswith("ipxr_")
    assert "wrong password" in _run(["token", "--user", "admin.jane", *db], env={"IPEXRX_PASSWORD": "nope" * 4},
                                    code=1)
    _run(["centre", "add", "CTR-A", "Centre A", "--token", admin, *db])
    _run(["user", "add", "dm.a", "--role", "data_manager", "--centre", "CTR-A", "--token", admin, *db],
         env={"IPEXRX_NEW_PASSWORD": PW})
    _run(["user", "add", "ana", "--role", "analyst", "--token", admin, *db], env={"IPEXRX_NEW_PASSWORD": PW})
    dm = _run(["token", "--user", "dm.a", *db], env={"IPEXRX_PASSWORD": PW}).strip()
    ana = _run(["token", "--user", "ana", *db], env={"IPEXRX_PASSWORD": PW}).strip()
    # a data manager cannot add users; the refusal is a clean error
    assert "may not user.create" in _run(["user", "add", "x.y", "--role", "analyst", "--token", dm, *db],
                                         env={"IPEXRX_NEW_PASSWORD": PW}, code=1)
    src = tmp_path / "in"
    src.mkdir()
    (src / "patient.csv").write_text(
        "record,birth_year,birth_month,sex,diagnosis,gene,variant_hgvs,diagnosis_date,consent_date,consent_scope\n"
        "r1,2019,5,male,ipex,FOXP3,c.1150G>A,2019-09-01,2019-09-02,registry\n")
    (src / "course.csv").write_text("record,id,drug_id,start_date\nr1,1,sirolimus,2019-09-10\n")
    out = _run(["import", str(src), "--token", dm, *db])
    assert out.startswith("r1\tCTR-A-")
    assert "may not import" in _run(["import", str(src), "--token", ana, *db], code=1)
    _run(["export", "--out", str(tmp_path / "deid"), "--token", ana, *db])
    assert "CTR-A" not in (tmp_path / "deid" / "patient.csv").read_text()
    assert "may not export.centre" in _run(["export", "--out", str(tmp_path / "p"), "--pseudonymised", "--token",
                                            ana, *db], code=1)
    _run(["export", "--out", str(tmp_path / "fhir"), "--format", "fhir", "--token", dm, *db])
    assert '"resourceType": "Bundle"' in (tmp_path / "fhir" / "bundle.json").read_text()
    _run(["user", "set", "ana", "--inactive", "--token", admin, *db])
    assert "revoked or expired" in _run(["report", "--out", str(tmp_path / "rep"), "--token", ana, *db], code=1)
    assert "audit chain OK" in _run(["audit", "verify", *db])


def test_user_commands_need_a_token(tmp_path: Path) -> None:
    out = _run(["centre", "add", "CTR-A", "Centre A", "--db", f"sqlite:///{tmp_path / 'r.sqlite3'}"],
               env={"IPEXRX_REGISTRY_TOKEN": ""}, code=2)
    assert "give --token" in out


def test_bad_database_url_is_one_clear_line() -> None:
    out = _run(["audit", "verify", "--db", "nonsense"], code=1)
    assert out.startswith("error: not a database URL: 'nonsense'") and "Traceback" not in out
