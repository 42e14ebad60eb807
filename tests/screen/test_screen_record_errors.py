"""A screened patient whose record cannot be assessed: the worklist names the file, the line and the element of
the resource at fault, in words (no JSON path); the JSON result keeps the paths under ``issues``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from .conftest import AS_OF, POPULATION


def _population_with_a_negative_dose(tmp_path: Path) -> tuple[Path, int]:
    pop = tmp_path / "pop"
    shutil.copytree(POPULATION, pop)
    bad = {"resourceType": "MedicationStatement", "id": "bad-dose-1", "status": "active",
           "medicationCodeableConcept": {"text": "tacrolimus"}, "subject": {"reference": "Patient/p000013"},
           "dosage": [{"doseAndRate": [{"doseQuantity": {"value": -2, "unit": "mg",
                                                         "system": "http://unitsofmeasure.org", "code": "mg"}}]}]}
    path = pop / "MedicationStatement.ndjson"
    text = path.read_text(encoding="utf-8")
    path.write_text(text + json.dumps(bad) + "\n", encoding="utf-8")
    return pop, len(text.splitlines()) + 1


def test_the_error_names_file_line_resource_and_element(tmp_path: Path) -> None:
    from ipexrx.screen.run import screen

    pop, line = _population_with_a_negative_dose(tmp_path)
    result = screen(pop, as_of=AS_OF)
    (entry,) = [e for e in result["safety"] if e["patient"] == "p000013"]
    assert entry["alerts"] == []
    assert (f'MedicationStatement.ndjson, line {line}, MedicationStatement, id "bad-dose-1", dosage 1, '
            'doseAndRate 1, element "doseQuantity.value": expected a number > 0.0, got -2.0') in entry["error"]
    assert "$" not in entry["error"]
    assert entry["issues"][0]["path"].startswith("$.entry[")  # the machine-readable place stays


def test_the_terminal_table_and_report_show_it_without_json_paths(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from ipexrx.cli import get_app

    monkeypatch.setenv("COLUMNS", "400")
    pop, line = _population_with_a_negative_dose(tmp_path)
    out = tmp_path / "worklists"
    r = CliRunner().invoke(get_app(), ["screen", "run", str(pop), "--as-of", AS_OF.isoformat(), "--no-progress",
                                       "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert f"MedicationStatement.ndjson, line {line}, MedicationStatement" in r.output
    report = (out / "report.html").read_text(encoding="utf-8")
    assert f"MedicationStatement.ndjson, line {line}" in report
    assert "$." not in r.output and "$.entry" not in report


def _population_with_lenient_json(tmp_path: Path, tail: str) -> tuple[Path, int]:
    """p000013 (tacrolimus + voriconazole) gets one more MedicationStatement whose line DuckDB's lenient JSON
    reader accepts but JSON does not allow (``tail`` closes the object)."""
    pop = tmp_path / "pop"
    shutil.copytree(POPULATION, pop)
    stmt = {"resourceType": "MedicationStatement", "id": "lenient-1", "status": "active",
            "medicationCodeableConcept": {"text": "fluconazole"}, "subject": {"reference": "Patient/p000013"}}
    path = pop / "MedicationStatement.ndjson"
    text = path.read_text(encoding="utf-8")
    path.write_text(text + json.dumps(stmt)[:-1] + tail + "\n", encoding="utf-8")
    return pop, len(text.splitlines()) + 1


@pytest.mark.parametrize("tail, why", [(', "note": [{"text": "x"},]}', "trailing comma"),
                                       (', "dose": NaN}', "NaN"), (', "dose": -Infinity}', "Infinity")])
def test_a_line_that_is_not_strict_json_makes_the_patient_cannot_judge_naming_the_line(
        tmp_path: Path, tail: str, why: str) -> None:
    """DuckDB reads NaN, Infinity and trailing commas; the drug-safety check, which must read every medicine
    exactly, does not: the patient is "cannot judge" with the file, line and reason -- no crash, no silent pass."""
    from ipexrx.screen.run import screen

    pop, line = _population_with_lenient_json(tmp_path, tail)
    result = screen(pop, as_of=AS_OF)
    (entry,) = [e for e in result["safety"] if e["patient"] == "p000013"]
    assert entry["alerts"] == []
    assert f"MedicationStatement.ndjson, line {line} is not strict JSON" in entry["error"]
    assert entry["issues"] == [{"path": f"MedicationStatement.ndjson:{line}", "expected": "strict JSON (RFC 8259)",
                                "got": entry["issues"][0]["got"]}]
    others = {e["patient"]: e for e in result["safety"] if e["patient"] != "p000013"}
    assert others and not any("strict JSON" in (e.get("error") or "") for e in others.values())


def test_strict_json_lines_are_judged_as_before(tmp_path: Path, result: dict[str, Any]) -> None:
    """The same extra medicine written as valid JSON: p000013 is judged (the fluconazole joins its alerts)."""
    from ipexrx.screen.run import screen

    pop, _ = _population_with_lenient_json(tmp_path, "}")
    (entry,) = [e for e in screen(pop, as_of=AS_OF)["safety"] if e["patient"] == "p000013"]
    assert "error" not in entry and entry["alerts"]
    assert any("fluconazole" in a["summary"].lower() for a in entry["alerts"])
