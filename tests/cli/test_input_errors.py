"""Input errors on the command line name the file, the line and the field, in words (no JSON path such as
``$.diagnosis``); the machine outputs (the batch's NDJSON) keep the ``path``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ipexrx.cli import get_app

EXAMPLES = Path(__file__).parents[2] / "examples"
AS_OF = "2026-11-25"


def run(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(get_app(), list(args), input=stdin)


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # rich does not wrap the batch summary lines


def test_a_missing_and_an_unknown_field_are_named_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"patient": {"sex": "male"}}')
    r = run("assess", str(bad), "--as-of", AS_OF)
    assert r.exit_code == 1
    assert f'{bad}, line 1, field "diagnosis": required but missing.' in r.output
    assert f'{bad}, line 1, field "patient": not a field of the ipexrx patient format' in r.output
    assert "$" not in r.output and "Traceback" not in r.output


def test_a_wrong_value_deep_in_a_file_is_named_on_its_own_line(tmp_path: Path) -> None:
    bad = tmp_path / "weights.json"
    bad.write_bytes(b'{\r\n  "diagnosis": {"type": "ipex"},\r\n  "demographics": {\r\n    "sex": "male",\r\n'
                    b'    "weight_kg": "heavy"\r\n  },\r\n  "medications": [\r\n    {"drug": "tacrolimus"},\r\n'
                    b'    {"drug": "sirolimus", "dose": {"value": -1, "unit": "mg"}}\r\n  ]\r\n}\r\n')
    r = run("assess", str(bad), "--as-of", AS_OF)
    assert r.exit_code == 1
    assert f"{bad}, line 5, demographics, field \"weight_kg\": expected a number, got 'heavy'." in r.output
    assert f'{bad}, line 9, medication 2, field "dose.value": expected a number > 0' in r.output
    assert "$." not in r.output


def test_a_unit_problem_found_after_reading_is_located_too(tmp_path: Path) -> None:
    bad = tmp_path / "unit.json"
    bad.write_text('{"diagnosis": {"type": "ipex"},\n "medications": [\n  {"drug": "tacrolimus", '
                   '"dose": "1 furlong"}]}\n')
    r = run("assess", str(bad), "--as-of", AS_OF)
    assert r.exit_code == 1
    assert f'{bad}, line 3, medication 1, field "dose.unit": expected a dose unit' in r.output
    assert "got 'furlong'" in r.output and "$." not in r.output


def test_a_fhir_bundle_problem_names_the_entry_by_type_and_id_and_the_line(tmp_path: Path) -> None:
    bundle = json.loads((EXAMPLES / "sirolimus-azole.fhir.json").read_text())
    i, weight = next((i, e["resource"]) for i, e in enumerate(bundle["entry"])
                     if e["resource"]["resourceType"] == "Observation"
                     and e["resource"]["code"]["coding"][0]["code"] == "29463-7")
    weight["id"] = "weight-1"
    weight["valueQuantity"]["value"] = 400
    src = tmp_path / "b.fhir.json"
    text = json.dumps(bundle, indent=2)
    src.write_text(text)
    line = next(n for n, x in enumerate(text.splitlines(), start=1) if '"value": 400' in x)
    r = run("assess", str(src), "--as-of", AS_OF)
    assert r.exit_code == 1
    assert (f'{src}, line {line}, entry {i + 1} (Observation, id "weight-1"), element "valueQuantity.value": '
            "expected a number <= 250.0, got 400.0.") in r.output
    assert "$." not in r.output


def test_broken_json_names_the_line_where_it_breaks(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{\n "diagnosis": {"type": "ipex"},\n "medications": [{"drug": "x" "dose": "1 mg"}]\n}\n')
    r = run("assess", str(bad), "--as-of", AS_OF)
    assert r.exit_code == 1
    assert f"{bad}, line 3, the whole document: expected valid JSON" in r.output
    assert "$" not in r.output


def test_standard_input_is_named_as_such() -> None:
    r = run("assess", "-", "--as-of", AS_OF, stdin='{\n"diagnosis": {"type": "ipex"},\n"hsct": {"status": "soon"}}')
    assert r.exit_code == 1
    assert 'standard input, line 3, hsct, field "status": expected one of' in r.output


def test_batch_lines_name_file_line_and_field_and_the_ndjson_keeps_the_path(tmp_path: Path) -> None:
    good = json.dumps(json.loads((EXAMPLES / "post-hsct.json").read_text()))
    bundle = json.loads((EXAMPLES / "sirolimus-azole.fhir.json").read_text())
    i = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "MedicationStatement")
    bundle["entry"][i]["resource"]["id"] = "ms1"
    bundle["entry"][i]["resource"]["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"] = -2
    src = tmp_path / "in.ndjson"
    src.write_text("\n".join([good, '{"patient": {}}', "{broken", "", json.dumps(bundle)]) + "\n")
    out = tmp_path / "out.ndjson"
    r = run("assess", "--batch", str(src), "-o", str(out), "--no-progress", "--as-of", AS_OF)
    assert r.exit_code == 0, r.output
    assert (f'{src}, line 2, field "diagnosis": required but missing (the patient record is not valid; 1 more '
            "problem in the output line)") in r.output
    assert f"{src}, line 3, the whole document: expected valid JSON, got" in r.output
    assert (f'{src}, line 5, entry {i + 1} (MedicationStatement, id "ms1"), dosage 1, doseAndRate 1, element '
            '"doseQuantity.value": expected a number > 0.0, got -2.0') in r.output
    assert "$" not in r.output
    results = {x["line"]: x for x in map(json.loads, out.read_text().splitlines())}
    assert [i["path"] for i in results[2]["error"]["issues"]] == ["$.diagnosis", "$.patient"]
    assert results[5]["error"]["issues"][0]["path"].startswith(f"$.entry[{i}].resource")


def test_assess_json_writes_the_error_as_json_on_stdout_and_the_words_on_stderr(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "demographics": {"weight_kg": 400},\n  "medicatons": []\n}\n')
    r = run("assess", "--json", str(bad), "--as-of", AS_OF)
    assert r.exit_code == 1
    doc = json.loads(r.stdout)  # stdout is JSON alone: a script can read it
    assert doc["error"] == "PatientInputError" and doc["message"] == "the patient record is not valid"
    by_path = {i["path"]: i for i in doc["issues"]}
    weight = by_path["$.demographics.weight_kg"]
    assert weight["expected"] == "a number <= 250.0" and weight["got"] == "400"
    assert weight["where"] == f'{bad}, line 2, demographics, field "weight_kg"'
    assert by_path["$.diagnosis"]["where"] == f'{bad}, line 1, field "diagnosis"'
    assert "$.medicatons" in by_path
    # the human lines stay on stderr, in words
    assert f'{bad}, line 2, demographics, field "weight_kg": expected a number <= 250.0, got 400.' in r.stderr
    assert "$" not in r.stderr


def test_assess_json_broken_and_unreadable_files_are_json_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"diagnosis":')
    r = run("assess", "--json", str(broken))
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["error"] == "MalformedInputError"
    assert doc["issues"][0]["path"] == "$" and doc["issues"][0]["expected"] == "valid JSON"
    assert doc["issues"][0]["where"].startswith(f"{broken}, line 1")
    missing = tmp_path / "nope.json"
    r = run("assess", "--json", str(missing))
    assert r.exit_code == 1 and f"cannot read {missing}" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["message"] == f"cannot read {missing}"
    assert doc["issues"] == [{"path": "$", "expected": "a readable file", "got": "No such file or directory",
                              "where": str(missing)}]


def test_without_json_an_error_writes_nothing_on_stdout(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"patient": {}}')
    r = run("assess", str(bad))
    assert r.exit_code == 1 and r.stdout == "" and "required but missing" in r.stderr


def test_dose_json_errors_are_json_on_stdout(tmp_path: Path) -> None:
    csv = tmp_path / "levels.csv"
    csv.write_text("ID,TIME,EVID\n1,0,1\n")
    for args in (["dose", "recommend", "--drug", "aspirin", "--json"],
                 ["dose", "report", "--drug", "aspirin", "--json"],
                 ["dose", "fit", "--model", "fan2024-sirolimus", "--data", str(csv), "--json"]):
        r = run(*args)
        assert r.exit_code == 1, args
        doc = json.loads(r.stdout)
        assert doc["error"].endswith("Error") and doc["issues"] == [], args
        assert doc["message"] and f"error: {doc['message']}" in r.stderr, args
    r = run("dose", "recommend", "--drug", "aspirin")
    assert r.exit_code == 1 and r.stdout == ""


def test_screen_json_errors_are_json_on_stdout(tmp_path: Path) -> None:
    r = run("screen", "run", str(tmp_path / "no-such-export"), "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["error"] == "ScreenInputError" and "no such directory" in doc["message"]
    assert f"error: {doc['message']}" in r.stderr
    assert run("screen", "run", str(tmp_path / "no-such-export")).stdout == ""
