"""Assessment-level behaviour: HSCT, options, sources, ordering, FHIR export, JSON/FHIR equivalence."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from ipexrx.assess import Assessment, Severity, assess, assessment_json_schema
from ipexrx.knowledge import get_kb
from ipexrx.report import render_assessment_html

AS_OF = dt.date(2026, 11, 25)
EXAMPLES = Path(__file__).parents[2] / "examples"
JSON_EXAMPLES = sorted(p for p in EXAMPLES.glob("*.json") if not p.name.endswith(".fhir.json"))
FHIR_EXAMPLES = sorted(EXAMPLES.glob("*.fhir.json"))


def _load(p: Path) -> Any:
    return json.loads(p.read_text())


@pytest.fixture(scope="module")
def example_results() -> dict[str, Assessment]:
    return {p.name: assess(_load(p), as_of=AS_OF) for p in JSON_EXAMPLES + FHIR_EXAMPLES}


def test_there_are_at_least_six_examples_in_both_formats() -> None:
    assert len(JSON_EXAMPLES) >= 6 and len(FHIR_EXAMPLES) >= 2


@pytest.mark.parametrize("fhir", FHIR_EXAMPLES, ids=[p.name for p in FHIR_EXAMPLES])
def test_fhir_and_json_twins_give_the_same_assessment(fhir: Path, example_results: dict[str, Assessment]) -> None:
    twin = fhir.name.replace(".fhir.json", ".json")
    a, b = example_results[twin], example_results[fhir.name]
    assert [(x.id, x.severity) for x in a.alerts] == [(x.id, x.severity) for x in b.alerts]
    assert [(m.manifestation_id, [o.option_id for o in m.options], [o.patient_receives for o in m.options])
            for m in a.manifestations] == \
        [(m.manifestation_id, [o.option_id for o in m.options], [o.patient_receives for o in m.options])
         for m in b.manifestations]
    assert a.hsct.status == b.hsct.status
    if a.hsct.status_basis == b.hsct.status_basis:
        assert a.hsct.recommendation == b.hsct.recommendation
    else:  # the JSON twin states "not-done"; the Bundle says nothing about HSCT, and the words say so
        assert (a.hsct.status_basis, b.hsct.status_basis) == ("recorded", "not-recorded")
        assert (a.hsct.status_text, b.hsct.status_text) == ("not transplanted", "no transplant recorded")
        assert a.hsct.recommendation and b.hsct.recommendation
        assert b.hsct.recommendation.endswith(a.hsct.recommendation[1:])
    assert a.patient.diagnosis == b.patient.diagnosis


def test_every_alert_source_resolves_to_the_source_registry(example_results: dict[str, Assessment]) -> None:
    kb = get_kb()
    for name, res in example_results.items():
        for al in res.alerts:
            for s in al.sources:
                assert s.source in kb.sources, f"{name}: {al.id} cites unknown source {s.citation}"
                assert s.title
            if al.rule != "results.trough_out_of_range":
                assert al.sources, f"{name}: {al.id} has no source"


def test_alerts_are_ordered_by_severity(example_results: dict[str, Assessment]) -> None:
    for res in example_results.values():
        ranks = [a.severity.rank for a in res.alerts]
        assert ranks == sorted(ranks)


def test_untransplanted_patient_gets_the_hsct_evaluation_suggestion_with_figures() -> None:
    res = assess(_load(EXAMPLES / "infant-new-diagnosis.json"), as_of=AS_OF)
    assert res.hsct.status == "not-done"
    assert res.hsct.recommendation and res.hsct.recommendation.startswith("Consider")
    assert res.hsct.figures and all(f.source.source in get_kb().sources for f in res.hsct.figures)
    assert res.hsct.sources


def test_transplanted_patient_has_no_hsct_suggestion() -> None:
    res = assess(_load(EXAMPLES / "post-hsct.json"), as_of=AS_OF)
    assert res.hsct.status == "done" and res.hsct.recommendation is None
    assert any("HSCT performed" in n for n in res.hsct.notes)


def test_ipex_like_patient_gets_disorder_directed_options_and_a_caveat() -> None:
    res = assess(_load(EXAMPLES / "ipex-like-lrba.json"), as_of=AS_OF)
    assert "IPEX-like" in res.hsct.applies_to_diagnosis
    targeted = [m for m in res.manifestations if "disorder-directed" in m.name]
    assert targeted and targeted[0].options


def test_options_are_ordered_by_evidence_and_mark_what_the_patient_receives() -> None:
    res = assess(_load(EXAMPLES / "sirolimus-azole.json"), as_of=AS_OF)
    ent = next(m for m in res.manifestations if m.manifestation_id == "enteropathy")
    from ipexrx.knowledge.schema import EvidenceLevel

    ranks = [EvidenceLevel(o.evidence_level).rank for o in ent.options]
    assert ranks == sorted(ranks)
    marked = [o for o in ent.options if o.patient_receives]
    assert marked and all("sirolimus" in o.patient_receives for o in marked)
    assert any("dosing" in c.lower() for o in marked for c in o.caveats)


def test_assessment_is_reproducible_for_a_given_as_of() -> None:
    rec = _load(EXAMPLES / "two-calcineurin-inhibitors.json")
    assert assess(rec, as_of=AS_OF).model_dump_json() == assess(rec, as_of=AS_OF).model_dump_json()
    later = assess(rec, as_of=AS_OF + dt.timedelta(days=60))
    assert later.model_dump_json() != assess(rec, as_of=AS_OF).model_dump_json()


def test_trough_without_a_kb_range_is_info_not_judged() -> None:
    kb = get_kb()
    drug = kb.drugs["sirolimus"]
    stripped = drug.model_copy(update={"safety": drug.safety.model_copy(update={"target_ranges": []})})
    kb2 = dataclasses.replace(kb, drugs={**kb.drugs, "sirolimus": stripped})
    rec = {"diagnosis": {"type": "ipex"}, "medications": [{"drug": "sirolimus", "start_date": "2025-01-01"}],
           "labs": [{"test": "sirolimus trough", "value": 40, "unit": "ng/mL", "date": "2026-11-24"}]}
    res = assess(rec, as_of=AS_OF, kb=kb2)
    hits = [a for a in res.alerts if a.rule == "results.trough_out_of_range"]
    assert len(hits) == 1 and hits[0].severity is Severity.INFO and "no target range" in hits[0].summary
    assert any(a.severity is Severity.WARNING for a in assess(rec, as_of=AS_OF).alerts
               if a.rule == "results.trough_out_of_range")


def test_a_known_drug_outside_the_kb_is_listed_as_not_checked() -> None:
    res = assess({"diagnosis": {"type": "ipex"}, "medications": [{"drug": "amlodipine 5 mg tablet"}]}, as_of=AS_OF)
    assert res.medications[0].in_knowledge_base is False
    warning = next(w for w in res.warnings if w.code == "outside-kb-drug")
    assert "Amlodipine is a known drug without IPEX content" in warning.message and "not checked" in warning.message


def test_an_unrecognised_name_is_named_back_with_a_question() -> None:
    res = assess({"diagnosis": {"type": "ipex"}, "medications": [{"drug": "Sirolimis"}]}, as_of=AS_OF)
    warning = next(w for w in res.warnings if w.code == "unknown-drug")
    assert "'Sirolimis' was not recognised - did you mean sirolimus?" in warning.message
    assert "interactions" in warning.message and "did not run" in warning.message
    assert res.medications[0].drug_id is None


def test_to_fhir_builds_valid_detected_issues_and_a_request_group(example_results: dict[str, Assessment]) -> None:
    from fhir.resources.R4B.bundle import Bundle

    res = example_results["sirolimus-azole.json"]
    bundle = res.to_fhir()
    Bundle.model_validate(bundle)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("DetectedIssue") == len(res.alerts) and kinds.count("RequestGroup") == 1
    crit = next(e["resource"] for e in bundle["entry"] if e["resource"].get("severity") == "high")
    assert crit["mitigation"][0]["action"]["text"].startswith("Consider")
    rg = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "RequestGroup")
    assert rg["intent"] == "proposal" and rg["status"] == "draft"


def test_json_schema_and_round_trip(example_results: dict[str, Assessment]) -> None:
    schema = assessment_json_schema()
    assert "alerts" in schema["properties"]
    res = example_results["rituximab-no-hbv-screen.json"]
    assert Assessment.model_validate_json(res.model_dump_json()) == res


def test_html_report_is_self_contained_and_escapes_input() -> None:
    rec = _load(EXAMPLES / "post-hsct.json")
    rec["id"] = "<script>alert(1)</script>"
    html = render_assessment_html(assess(rec, as_of=AS_OF))
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<link" not in html and "src=" not in html
