"""Export, data dictionary, backup and restore."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ipexrx.cli import get_app
from ipexrx.registry import SYSTEM, Conflict, Registry, ops

from .conftest import World, patient_data

ROOT = Path(__file__).resolve().parents[2]


def test_committed_data_dictionary_is_current() -> None:
    committed = (ROOT / "docs" / "data-dictionary.csv").read_text(encoding="utf-8")
    assert committed == ops.data_dictionary_csv(), \
        "regenerate: ipexrx registry data-dictionary --out docs/data-dictionary.csv"


def test_data_dictionary_has_one_row_per_input_field() -> None:
    rows = ops.data_dictionary()
    keys = {(r["Form Name"], r["Variable / Field Name"]) for r in rows}
    assert ("course", "reason_stopped") in keys and ("visit", "oi_score") in keys
    reason = next(r for r in rows if r["Variable / Field Name"] == "reason_stopped")
    assert reason["Choices"] == "inefficacy | toxicity | remission | hsct | other"
    trough = next(r for r in rows if r["Variable / Field Name"] == "value_ng_ml")
    assert (trough["Units"], trough["Max"]) == ("ng/mL", "1000")


def test_deidentified_export_shifts_dates_per_patient_keeping_intervals(world: World) -> None:
    a = world.actors["clinician"]
    world.reg.add_visit(a, world.pa, {"date": "2020-03-01", "oi_score": 1})
    out = ops.export_deidentified(world.reg, world.actors["analyst"])
    orig = world.reg.get_patient(a, world.pa)
    diag = dt.date.fromisoformat(orig["patient"]["diagnosis_date"])
    start = dt.date.fromisoformat(orig["courses"][0]["start_date"])
    course = out["course"][0]
    subject = course["subject"]
    p = next(r for r in out["patient"] if r["subject"] == subject)
    shifted_gap = dt.date.fromisoformat(course["start_date"]) - dt.date.fromisoformat(p["diagnosis_date"])
    assert shifted_gap == start - diag
    assert "variant_hgvs" not in p and "pseudonym" not in p and "centre_code" not in p


def test_backup_restore_round_trip(world: World, tmp_path: Path) -> None:
    path = tmp_path / "reg.jsonl.gz"
    counts = ops.backup(world.reg, SYSTEM, path)
    target = Registry(f"sqlite:///{tmp_path / 'restored.sqlite3'}")
    restored = ops.restore(target, SYSTEM, path)
    assert {k: v for k, v in counts.items() if v} == restored
    assert target.verify_audit(SYSTEM).ok
    assert target.authenticate("clinician.user", "a long test password 1").username == "clinician.user"
    assert target.get_patient(target.authenticate("clinician.user", "a long test password 1"), world.pa)
    with pytest.raises(Conflict, match="empty registry"):
        ops.restore(target, SYSTEM, path)
    # new writes after a restore keep extending the restored chain
    target.add_patient(SYSTEM, {"patient": patient_data("CTR-A")})
    assert target.verify_audit(SYSTEM).ok


def test_restore_refuses_a_tampered_backup(world: World, tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "reg.jsonl.gz"
    ops.backup(world.reg, SYSTEM, path)
    with gzip.open(path, "rt") as fh:
        lines = fh.read().splitlines()
    i = next(i for i, ln in enumerate(lines) if '"t": "reg_audit"' in ln and '"seq": 3,' in ln)
    lines[i] = lines[i].replace('"username": "system"', '"username": "mallory"')
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    target = Registry(f"sqlite:///{tmp_path / 'restored.sqlite3'}")
    from ipexrx.registry import ValidationFailed

    with pytest.raises(ValidationFailed, match="entry 3: content does not match its hash"):
        ops.restore(target, SYSTEM, path)
    assert ops.backup(target, SYSTEM, tmp_path / "empty.gz")["reg_patient"] == 0  # nothing was restored


def test_cli_demo_report_export(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    runner = CliRunner()
    r = runner.invoke(get_app(), ["registry", "demo", "--patients", "30", "--centres", "3", "--db", url])
    assert r.exit_code == 0, r.output
    assert "SYNTHETIC DATA" in r.output
    r = runner.invoke(get_app(), ["registry", "export", "--out", str(tmp_path / "exp"), "--db", url])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "exp" / "patient.csv").read_text().count("\n") == 31
    assert (tmp_path / "exp" / "data-dictionary.csv").exists()
    r = runner.invoke(get_app(), ["registry", "demo", "--patients", "3", "--db", url])
    assert r.exit_code == 1 and "already loaded" in r.output


def test_fhir_export_is_a_valid_r4_bundle_with_every_resource_type(world: World) -> None:
    a = world.actors["clinician"]
    world.reg.add_manifestation(a, world.pa, {"hpo_code": "HP:0002028", "onset_date": "2019-07-01"})
    world.reg.add_visit(a, world.pa, {"date": "2019-12-01", "oi_score": 3, "weight_z": -2.1})
    world.reg.add_hsct(a, world.pa, {"date": "2020-06-01", "donor": "matched-sibling", "conditioning": "myeloablative",
                                     "chimerism_donor_pct": 95, "chimerism_date": "2020-09-01"})
    doc = ops.export_fhir(world.reg, world.actors["data_manager"])
    types = [e["resource"]["resourceType"] for e in doc["entry"]]
    assert {"Patient", "Condition", "MedicationStatement", "Observation", "Procedure"} <= set(types)
    patients = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert [p["id"] for p in patients] == [world.pa]  # own centre only
    assert patients[0]["birthDate"] == "2019-05" and "name" not in patients[0]
    dx = next(e["resource"] for e in doc["entry"] if e["resource"]["id"] == f"{world.pa}-dx")
    assert {"system": "http://www.orpha.net", "code": "37042"}.items() <= dx["code"]["coding"][0].items()
    med = next(e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "MedicationStatement")
    assert med["medicationCodeableConcept"]["coding"][0]["code"] == "35302"  # sirolimus RxCUI from the KB
    obs = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert any(o["valueQuantity"]["unit"] == "{SD}" and o["valueQuantity"]["value"] == -2.1 for o in obs)


def _comparable(rec: dict[str, object]) -> dict[str, object]:
    drop = {"id", "patient_id", "course_id", "pseudonym", "created_at", "updated_at", "centre_id"}

    def strip(x: object) -> object:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in drop}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(rec)  # type: ignore[return-value]


def test_csv_export_then_import_round_trips(world: World, tmp_path: Path) -> None:
    a = world.actors["data_manager"]
    world.reg.add_manifestation(a, world.pa, {"hpo_code": "HP:0002028", "onset_date": "2019-07-01",
                                              "resolution_date": "2020-01-01"})
    world.reg.add_course(a, world.pa, {"drug_id": "tacrolimus", "start_date": "2019-10-01", "stop_date": "2020-02-01",
                                       "reason_stopped": "toxicity", "dose": 0.1, "dose_unit": "mg/kg/day",
                                       "troughs": [{"date": "2019-10-15", "value_ng_ml": 9.5}]})
    world.reg.add_visit(a, world.pa, {"date": "2019-12-01", "oi_score": 3, "organs": ["gut", "skin"],
                                      "weight_z": -1.5})
    world.reg.add_hsct(a, world.pa, {"date": "2020-06-01", "donor": "haploidentical", "conditioning": "myeloablative"})
    world.reg.add_adverse_event(a, world.pa, {"date": "2020-01-20", "term": "Hypertension", "grade": 2})
    ops.write_csv(ops.export_centre(world.reg, a), tmp_path / "csv")
    target = Registry(f"sqlite:///{tmp_path / 'target.sqlite3'}")
    target.create_centre(SYSTEM, {"code": "CTR-A", "name": "Centre A"})
    mapping = ops.import_csv(target, SYSTEM, tmp_path / "csv")
    assert list(mapping) == [world.pa] and mapping[world.pa] != world.pa
    original = world.reg.get_patient(a, world.pa)
    imported = target.get_patient(SYSTEM, mapping[world.pa])
    assert _comparable(imported) == _comparable(original)


def test_csv_import_reports_file_line_and_column_and_writes_nothing(world: World, tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "patient.csv").write_text(
        "record,centre_code,birth_year,birth_month,sex,diagnosis,gene,variant_hgvs,diagnosis_date,consent_date,"
        "consent_scope\n"
        "r1,CTR-A,2019,5,male,ipex,FOXP3,c.1150G>A,2019-09-01,2019-09-02,registry\n"
        "r2,CTR-A,2019,13,male,ipex,FOXP3,c.1150G>A,2019-09-01,2019-09-02,registry\n")
    (d / "course.csv").write_text("record,drug_id,start_date\nr1,sirolimus,2019-09-10\nr9,sirolimus,2019-09-10\n")
    from ipexrx.registry import ValidationFailed

    before = world.reg.list_patients(world.actors["data_manager"])
    with pytest.raises(ValidationFailed) as exc:
        ops.import_csv(world.reg, world.actors["data_manager"], d)
    msg = str(exc.value)
    assert "course.csv, line 3: record 'r9' is not in patient.csv" in msg
    assert 'patient.csv, line 3, column "birth_month": ' in msg
    assert world.reg.list_patients(world.actors["data_manager"]) == before


def test_csv_import_names_the_follow_up_file_line_and_column(world: World, tmp_path: Path) -> None:
    """A problem in a course or trough row is reported in that file, on that row's line (a quoted field over two
    lines counts as two), under its column name."""
    from ipexrx.registry import ValidationFailed

    d = tmp_path / "bad"
    d.mkdir()
    (d / "patient.csv").write_text(
        "record,centre_code,birth_year,birth_month,sex,diagnosis,gene,variant_hgvs,diagnosis_date,consent_date,"
        "consent_scope\r\n"
        "r1,CTR-A,2019,5,male,ipex,FOXP3,c.1150G>A,2019-09-01,2019-09-02,registry\r\n")
    (d / "course.csv").write_text('record,id,drug_id,start_date,reason_other\n'
                                  'r1,1,sirolimus,2019-09-10,"two\nlines"\n'
                                  "r1,2,tacrolimus,not-a-date,\n")
    (d / "trough.csv").write_text("record,course_id,date,value_ng_ml\nr1,1,2019-10-01,5\nr1,1,2019-11-01,lots\n")
    with pytest.raises(ValidationFailed) as exc:
        ops.import_csv(world.reg, world.actors["data_manager"], d)
    msg = str(exc.value)
    assert 'course.csv, line 4, column "start_date": ' in msg
    assert "trough.csv, line 3, column \"value_ng_ml\": " in msg and "'lots'" in msg
    assert "$" not in msg and "courses.1" not in msg


def _edit_backup(path: Path, table: str, old: str, new: str) -> None:
    import gzip

    with gzip.open(path, "rt") as fh:
        lines = fh.read().splitlines()
    i = next(i for i, ln in enumerate(lines) if f'"t": "{table}"' in ln and old in ln)
    lines[i] = lines[i].replace(old, new)
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")


def test_restore_refuses_a_backup_whose_data_row_was_edited(world: World, tmp_path: Path) -> None:
    """The seals travel with the backup: a row edited in the file is caught like one edited in the database."""
    from ipexrx.registry import ValidationFailed

    path = tmp_path / "reg.jsonl.gz"
    ops.backup(world.reg, SYSTEM, path)
    _edit_backup(path, "reg_patient", '"vital_status": "alive"', '"vital_status": "lost"')
    target = Registry(f"sqlite:///{tmp_path / 'restored.sqlite3'}")
    with pytest.raises(ValidationFailed, match="reg_patient id 1: the row differs from its last audited version"):
        ops.restore(target, SYSTEM, path)


def test_a_backup_from_before_row_seals_restores_and_is_sealed_then(tmp_path: Path) -> None:
    """A backup written before migration 0140: a chain without seals. It is verified as a chain, and
    its rows are sealed as restored (a seal-baseline entry), so later edits are caught."""
    import gzip
    import json

    from ipexrx.registry import audit

    values = {"seq": 1, "ts": "2026-11-30T10:00:00.000000+00:00", "user_id": None, "username": "system",
              "role": "system", "action": "create", "entity": "centre", "entity_id": "1", "centre_id": 1,
              "before": "null", "after": '{"code":"OLD-1"}', "prev_hash": audit.GENESIS}
    values["hash"] = audit.entry_hash(values)  # as entries were hashed before 0140
    centre = {"id": 1, "code": "OLD-1", "name": "Centre from before 0140", "country": None, "synthetic": False,
              "created_at": "2026-11-30T10:00:00+00:00"}
    path = tmp_path / "old.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps({"format": ops.BACKUP_FORMAT, "created": "2026-11-30T10:00:00+00:00"}) + "\n")
        fh.write(json.dumps({"t": "reg_centre", "r": centre}) + "\n")
        fh.write(json.dumps({"t": "reg_audit", "r": values}) + "\n")
    target = Registry(f"sqlite:///{tmp_path / 'restored.sqlite3'}")
    ops.restore(target, SYSTEM, path)
    assert target.verify_audit(SYSTEM).ok
    with target.engine.begin() as c:
        c.exec_driver_sql("UPDATE reg_centre SET name = 'Renamed' WHERE id = 1")
    assert any(p.startswith("reg_centre id 1:") for p in target.verify_audit(SYSTEM).problems)
