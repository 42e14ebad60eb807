"""`ipexrx assess`: terminal report, --json/--html/--fhir, batch with per-line errors; clean failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from ipexrx.cli import get_app

EXAMPLES = Path(__file__).parents[2] / "examples"
runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(get_app(), list(args))


def test_terminal_report_shows_alerts_options_and_sources() -> None:
    r = run("assess", str(EXAMPLES / "sirolimus-azole.json"), "--as-of", "2026-11-25")
    assert r.exit_code == 0, r.output
    for text in ("CRITICAL", "voriconazole", "Curative therapy (HSCT)", "Autoimmune enteropathy", "Sources",
                 "receives"):
        assert text in r.output, text


def test_json_output_is_the_assessment_model() -> None:
    r = run("assess", str(EXAMPLES / "rituximab-no-hbv-screen.json"), "--json", "--as-of", "2026-11-25")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert data["schema_version"] == "ipexrx-assessment/1"
    assert any(a["rule"] == "screening.required_screening" for a in data["alerts"])


def test_html_output_is_a_page(tmp_path: Path) -> None:
    out = tmp_path / "a.html"
    r = run("assess", str(EXAMPLES / "post-hsct.fhir.json"), "--html", "-o", str(out), "--as-of", "2026-11-25")
    assert r.exit_code == 0
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_fhir_output_is_a_bundle() -> None:
    r = run("assess", str(EXAMPLES / "two-calcineurin-inhibitors.json"), "--fhir", "--as-of", "2026-11-25")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["resourceType"] == "Bundle"


def test_broken_file_fails_cleanly_with_location(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"diagnosis": {"type": "ipex"}, "demographics": {"weight_kg": 400}}')
    r = run("assess", str(bad))
    assert r.exit_code == 1
    assert f'{bad}, line 1, demographics, field "weight_kg"' in r.output and "Traceback" not in r.output
    assert "$." not in r.output
    bad.write_text("{not json")
    r = run("assess", str(bad))
    assert r.exit_code == 1 and "not valid JSON" in r.output


def test_missing_file_and_bad_date_fail_cleanly() -> None:
    assert run("assess", "/nonexistent/p.json").exit_code == 1
    assert run("assess", str(EXAMPLES / "post-hsct.json"), "--as-of", "25/11/2026").exit_code == 2


def test_batch_reports_line_errors_and_writes_ndjson(tmp_path: Path) -> None:
    lines = [json.dumps(json.loads((EXAMPLES / n).read_text()))
             for n in ("post-hsct.json", "sirolimus-azole.fhir.json")]
    src = tmp_path / "in.ndjson"
    src.write_text("\n".join([lines[0], "{broken", "", lines[1], '{"diagnosis": {"type": "x"}}']) + "\n")
    out = tmp_path / "out.ndjson"
    r = run("assess", "--batch", str(src), "-o", str(out), "--no-progress", "--as-of", "2026-11-25")
    assert r.exit_code == 0, r.output
    results = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["line"] for x in results] == [1, 2, 4, 5]
    assert [x["ok"] for x in results] == [True, False, True, False]
    assert results[1]["error"]["issues"][0]["path"] == "$"
    said = " ".join(r.output.split())  # the terminal may wrap a long file name anywhere
    assert "line 2" in said and "line 5" in said and "patients assessed" in said


def test_batch_on_two_processes_gives_the_same_lines_in_the_same_order(tmp_path: Path) -> None:
    names = sorted(p.name for p in EXAMPLES.glob("*.json"))
    lines = [json.dumps(json.loads((EXAMPLES / n).read_text())) for n in names] * 3
    lines.insert(4, "{broken")
    src = tmp_path / "in.ndjson"
    src.write_text("\n".join(lines) + "\n")
    outs = []
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}.ndjson"
        r = run("assess", "--batch", str(src), "-o", str(out), "--no-progress", "--as-of", "2026-11-25",
                "--workers", workers)
        assert r.exit_code == 0, r.output
        assert "line 5" in " ".join(r.output.split())  # the broken line is named either way (wrapped or not)
        outs.append(out.read_text())
    assert outs[0] == outs[1]
    assert [json.loads(x)["line"] for x in outs[1].splitlines()] == list(range(1, len(lines) + 1))


def test_strict_skips_a_bundle_entry_that_is_not_valid_fhir_in_an_element_the_checks_do_not_read(
        tmp_path: Path) -> None:
    bundle = json.loads((EXAMPLES / "sirolimus-azole.fhir.json").read_text())
    med = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationStatement")
    med["subject"] = "Patient/not-a-Reference-object"  # an element no check reads
    src = tmp_path / "b.json"
    src.write_text(json.dumps(bundle))
    lenient = run("assess", str(src), "--json", "--as-of", "2026-11-25")
    strict = run("assess", str(src), "--json", "--as-of", "2026-11-25", "--strict")
    assert lenient.exit_code == 0 and strict.exit_code == 0, strict.output
    n_lenient = len(json.loads(lenient.stdout)["alerts"])
    data = json.loads(strict.stdout)
    assert any("not valid FHIR R4" in w["message"] and "subject" in w["message"] for w in data["warnings"])
    assert len(data["alerts"]) < n_lenient  # the skipped medication no longer takes part: named, not silent
