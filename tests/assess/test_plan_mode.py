"""The IPEX plan is shown only for IPEX / IPEX-like charts (or on request); drug safety runs for every
chart; every face says the mode at the top and puts the alerts (critical, warning) before the HSCT
detail and the evidence tables."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ipexrx.assess import assess
from ipexrx.assess.engine import plan_mode
from ipexrx.cli import get_app

AS_OF = dt.date(2026, 11, 25)
EXAMPLES = Path(__file__).parents[2] / "examples"
CASES = Path(__file__).parents[1] / "cases" / "assess"


def _case(name: str) -> dict[str, Any]:
    return json.loads((CASES / f"{name}.json").read_text())["patient"]


def _ipex_record() -> dict[str, Any]:
    return json.loads((EXAMPLES / "sirolimus-azole.json").read_text())


@pytest.mark.parametrize(("diagnosis", "choice", "mode"), [
    ("ipex", "auto", "ipex"), ("ipex", "always", "ipex"), ("ipex", "never", "drug-safety-only"),
    ("ipex-like", "auto", "ipex-like"), ("ipex-like", "never", "drug-safety-only"),
    ("unconfirmed", "auto", "ipex-unconfirmed"), ("unconfirmed", "never", "drug-safety-only"),
    ("none", "auto", "drug-safety-only"), ("none", "always", "ipex-plan-on-request"),
    ("none", "never", "drug-safety-only"),
])
def test_the_mode_follows_the_diagnosis_and_the_choice(diagnosis: str, choice: Any, mode: str) -> None:
    got, reason = plan_mode(diagnosis, choice)
    assert got == mode
    assert "drug-safety checks ran" in reason
    if mode == "drug-safety-only":
        assert "not shown" in reason


def test_an_unknown_plan_choice_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError, match="auto, always, never"):
        assess(_ipex_record(), as_of=AS_OF, ipex_plan="sometimes")  # type: ignore[arg-type]


def test_our_record_says_none_and_gets_drug_safety_only_with_the_same_safety_alerts() -> None:
    rec = _ipex_record()
    ipex = assess(rec, as_of=AS_OF)
    assert ipex.mode == "ipex" and ipex.ipex_plan and ipex.hsct is not None and ipex.manifestations
    rec["diagnosis"] = {"type": "none"}
    safety = assess(rec, as_of=AS_OF)
    assert safety.mode == "drug-safety-only" and not safety.ipex_plan
    assert safety.hsct is None and safety.manifestations == []
    assert safety.patient.diagnosis == "none"
    assert {a.id for a in safety.alerts} == {a.id for a in ipex.alerts} - {"dosing:not-established"}
    assert all(m.dosing_caveat is None for m in safety.medications)  # the IPEX dosing caveat is the plan's


def test_never_turns_the_plan_off_for_an_ipex_chart_and_always_turns_it_on_for_any() -> None:
    off = assess(_ipex_record(), as_of=AS_OF, ipex_plan="never")
    assert off.mode == "drug-safety-only" and off.hsct is None and "on request" in off.mode_reason
    on = assess(_case("non-ipex-ibd-live-vaccine"), as_of=AS_OF, ipex_plan="always")
    assert on.mode == "ipex-plan-on-request" and on.hsct is not None
    assert "do not apply to other conditions" in on.hsct.applies_to_diagnosis


def test_unconfirmed_in_our_record_keeps_the_plan() -> None:
    rec = _ipex_record()
    rec["diagnosis"] = {"type": "unconfirmed"}
    a = assess(rec, as_of=AS_OF)
    assert a.mode == "ipex-unconfirmed" and a.ipex_plan and a.hsct is not None


@pytest.mark.parametrize("name", ["sirolimus-azole.fhir.json", "two-calcineurin-inhibitors.fhir.json"])
def test_a_fhir_chart_with_an_ipex_condition_gets_the_plan(name: str) -> None:
    a = assess(json.loads((EXAMPLES / name).read_text()), as_of=AS_OF)
    assert a.mode == "ipex" and a.ipex_plan and a.hsct is not None


def test_a_fhir_chart_without_an_ipex_condition_is_drug_safety_only_and_says_why() -> None:
    bundle = json.loads((EXAMPLES / "sirolimus-azole.fhir.json").read_text())
    bundle["entry"] = [e for e in bundle["entry"] if "IPEX" not in json.dumps(e.get("resource", {}).get("code", {}))]
    a = assess(bundle, as_of=AS_OF)
    assert a.patient.diagnosis == "none" and a.mode == "drug-safety-only"
    assert a.mode_reason.startswith("No IPEX or IPEX-like diagnosis in the chart; IPEX plan not shown")
    assert any(al.severity.value == "critical" for al in a.alerts)  # sirolimus + voriconazole, IPEX or not


def test_a_provisional_ipex_condition_is_suspected_ipex_and_keeps_the_plan() -> None:
    bundle = json.loads((EXAMPLES / "sirolimus-azole.fhir.json").read_text())
    for e in bundle["entry"]:
        res = e.get("resource", {})
        if res.get("resourceType") == "Condition" and "IPEX" in json.dumps(res.get("code", {})):
            res["verificationStatus"] = {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "provisional"}]}
    a = assess(bundle, as_of=AS_OF)
    assert a.patient.diagnosis == "unconfirmed" and a.mode == "ipex-unconfirmed" and a.hsct is not None


# -- reading order ------------------------------------------------------------------------------
def test_json_key_order_puts_mode_then_alerts_before_the_ipex_plan() -> None:
    a = assess(_ipex_record(), as_of=AS_OF)
    keys = list(json.loads(a.model_dump_json()))
    assert keys[:7] == ["schema_version", "as_of", "kb_version", "mode", "mode_reason", "ipex_plan", "patient"]
    assert keys.index("alerts") < keys.index("hsct") < keys.index("manifestations") < keys.index("medications")
    ranks = [al.severity.rank for al in a.alerts]
    assert ranks == sorted(ranks) and 0 in ranks


def _terminal(a: Any) -> str:
    from rich.console import Console

    from ipexrx.cli.assess import render_assessment

    buf = io.StringIO()
    render_assessment(a, Console(file=buf, width=200, highlight=False, color_system=None))
    return buf.getvalue()


def test_terminal_says_the_mode_at_the_top_and_puts_alerts_before_hsct() -> None:
    text = _terminal(assess(_ipex_record(), as_of=AS_OF))
    lines = text.splitlines()
    assert lines[1].startswith("Mode: IPEX. IPEX (FOXP3) in the chart")
    first_critical = text.index(" CRITICAL ")
    first_warning = text.index(" WARNING ")
    assert text.index("Alerts:") < first_critical < first_warning < text.index("Curative therapy (HSCT)")
    assert text.index("Curative therapy (HSCT)") < text.index("Manifestations: options")
    safe = _terminal(assess(_case("non-ipex-kidney-transplant-clarithromycin"), as_of=AS_OF))
    assert safe.splitlines()[0].startswith("Medication safety assessment (ipexrx)")
    assert safe.splitlines()[1].startswith("Mode: drug-safety checks only. No IPEX or IPEX-like diagnosis")
    assert "Curative therapy" not in safe and "Manifestations:" not in safe and "HSCT" not in safe
    assert " WARNING " in safe and "clarithromycin" in safe


def test_html_report_says_the_mode_first_and_puts_alerts_before_hsct_and_options() -> None:
    from ipexrx.report import render_assessment_html

    page = render_assessment_html(assess(_ipex_record(), as_of=AS_OF))
    pos = [page.index(s) for s in ('id="mode"', 'id="alerts"', 'class="alert critical"', 'class="alert warning"',
                                   'id="hsct"', 'id="plans"')]
    assert pos == sorted(pos)
    safe = render_assessment_html(assess(_case("non-ipex-ibd-live-vaccine"), as_of=AS_OF))
    assert "Mode: drug-safety-only." in safe and 'id="hsct"' not in safe and 'id="plans"' not in safe
    assert "<h1>Medication safety assessment (ipexrx)</h1>" in safe and 'class="alert critical"' in safe


def test_fhir_export_of_a_chart_without_ipex_has_no_hsct_or_option_suggestions() -> None:
    bundle = assess(_case("non-ipex-jia-methotrexate-tmp-smx"), as_of=AS_OF).to_fhir()
    rg = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "RequestGroup")
    assert "action" not in rg
    assert rg["note"][0]["text"].startswith("Mode: drug-safety-only.")
    assert any(e["resource"]["resourceType"] == "DetectedIssue" for e in bundle["entry"])


# -- command line -------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_ipex_plan_flags(tmp_path: Path) -> None:
    chart = tmp_path / "ibd.json"
    chart.write_text(json.dumps(_case("non-ipex-ibd-live-vaccine")))
    modes = {}
    for flags in ([], ["--ipex-plan"], ["--no-ipex-plan"]):
        r = runner.invoke(get_app(), ["assess", str(chart), "--json", "--as-of", "2026-11-25", *flags])
        assert r.exit_code == 0, r.output
        data = json.loads(r.stdout)
        modes[tuple(flags)] = (data["mode"], data["hsct"] is None)
    assert modes == {(): ("drug-safety-only", True), ("--ipex-plan",): ("ipex-plan-on-request", False),
                     ("--no-ipex-plan",): ("drug-safety-only", True)}
    r = runner.invoke(get_app(), ["assess", str(EXAMPLES / "sirolimus-azole.json"), "--as-of", "2026-11-25",
                                  "--no-ipex-plan"])
    assert r.exit_code == 0 and "Mode: drug-safety checks only. IPEX plan turned off on request" in r.output
    assert "Curative therapy" not in r.output


def test_cli_batch_passes_the_choice_to_every_line(tmp_path: Path) -> None:
    lines = tmp_path / "b.ndjson"
    rec = _ipex_record()
    lines.write_text(json.dumps(rec) + "\n" + json.dumps(copy.deepcopy(rec)) + "\n")
    out = tmp_path / "out.ndjson"
    r = runner.invoke(get_app(), ["assess", "--batch", str(lines), "-o", str(out), "--as-of", "2026-11-25",
                                  "--no-progress", "--no-ipex-plan"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [row["assessment"]["mode"] for row in rows] == ["drug-safety-only"] * 2


def _case_files() -> list[Path]:
    return sorted(CASES.glob("*.json"))


@pytest.mark.parametrize("choice", ["auto", "never", "always"])
def test_alerts_without_the_plan_are_exactly_the_alerts_of_a_full_assessment(choice: Any) -> None:
    """``assess_alerts`` (what the CDS service uses) skips building the plan's sections; it must not
    change a single alert, its order or the mode, for any case (IPEX, IPEX-like, no diagnosis)."""
    from ipexrx.assess.engine import assess_alerts
    from ipexrx.knowledge import get_kb
    from ipexrx.patient import PatientInputError
    from ipexrx.patient.reader import read_patient

    kb = get_kb()
    compared = 0
    for path in [*_case_files(), *sorted(EXAMPLES.glob("*.json"))]:
        doc = json.loads(path.read_text())
        record = doc.get("patient", doc) if isinstance(doc, dict) else doc
        try:
            patient = read_patient(copy.deepcopy(record), kb, AS_OF, False)
        except PatientInputError:  # a case whose input is meant to be refused: nothing to compare
            continue
        full = assess(patient, as_of=AS_OF, kb=kb, ipex_plan=choice, dose_suggestions=False)
        mode, alerts = assess_alerts(patient, as_of=AS_OF, kb=kb, ipex_plan=choice, dose_suggestions=False)
        assert mode == full.mode, path.name
        assert [a.model_dump() for a in alerts] == [a.model_dump() for a in full.alerts], path.name
        compared += 1
    assert compared > 150


def test_an_assessment_is_the_same_whether_the_shared_parts_were_built_for_it_or_reused() -> None:
    """Parts of the plan that depend on the knowledge base only (an option's view for the drugs the
    patient receives, the HSCT figures, resolved sources) are built once and shared between
    assessments: every case must come out byte for byte as when it is assessed first, with the
    caches empty, also after the other cases filled them (and changed nothing they share)."""
    from ipexrx.assess import engine
    from ipexrx.assess.context import assess_index
    from ipexrx.knowledge import get_kb
    from ipexrx.patient import PatientInputError

    kb = get_kb()
    docs = []
    for path in [*_case_files(), *sorted(EXAMPLES.glob("*.json"))]:
        doc = json.loads(path.read_text())
        docs.append((path.name, doc.get("patient", doc) if isinstance(doc, dict) else doc))

    def fresh(record: Any) -> str | None:
        engine._OPTION_VIEWS.clear()
        engine._FIGURES.clear()
        index = assess_index(kb)
        index._by_object.clear()
        index._statement_refs.clear()
        try:
            return assess(copy.deepcopy(record), as_of=AS_OF, kb=kb, dose_suggestions=False).model_dump_json()
        except PatientInputError:
            return None

    alone = {name: fresh(record) for name, record in docs}
    for name, record in reversed(docs):  # the caches now hold every other case's parts
        try:
            again = assess(copy.deepcopy(record), as_of=AS_OF, kb=kb, dose_suggestions=False).model_dump_json()
        except PatientInputError:
            again = None
        assert again == alone[name], name
    assert sum(v is not None for v in alone.values()) > 150
