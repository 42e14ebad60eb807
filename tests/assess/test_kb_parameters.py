"""Rule parameters come from the knowledge base, with their sources, not from code.

Each test changes the number (or list) in a copy of the knowledge base and checks that the rule's
behaviour follows, so a rule that kept a private copy of the value would fail here.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ipexrx.assess import assess
from ipexrx.knowledge import get_kb
from ipexrx.knowledge.loader import DEFAULT_DATA_DIR, KnowledgeBase, load_kb
from ipexrx.knowledge.schema import LabParameter
from ipexrx.knowledge.validate import validate_kb
from ipexrx.patient import read_patient
from ipexrx.patient.errors import UnitError
from ipexrx.patient.labs import LabKind, kinds_for_parameter, lab_by_id
from ipexrx.patient.units import convert
from ipexrx.patient.vaccines import classify_vaccine, is_live

from .kbcopy import kb_with

AS_OF = dt.date(2026, 11, 25)


def _patient(meds: list[dict[str, Any]], labs: list[dict[str, Any]] | None = None,
             vaccines: list[dict[str, Any]] | None = None, weight: float = 25) -> dict[str, Any]:
    return {"demographics": {"age_years": 8, "sex": "male", "weight_kg": weight}, "diagnosis": {"type": "ipex"},
            "medications": meds, "labs": labs or [], "immunizations": vaccines or []}


def _alerts(patient: dict[str, Any], rule: str, kb: KnowledgeBase | None = None) -> list[Any]:
    return [a for a in assess(patient, as_of=AS_OF, kb=kb).alerts if a.rule == rule]


CREAT = "results.creatinine_rise_on_cni"
NEUTRO = "results.neutropenia_on_immunosuppression"
LIVE = "vaccines.live_vaccine_under_immunosuppression"


def _creatinine(drug: str, before: float, after: float) -> dict[str, Any]:
    return _patient([{"drug": drug, "start_date": "2026-03-01"}],
                    [{"test": "creatinine", "value": before, "unit": "umol/L", "date": "2026-02-20"},
                     {"test": "creatinine", "value": after, "unit": "umol/L", "date": "2026-11-20"}])


# ---------------------------------------------------------------- result thresholds
def test_every_kb_result_threshold_has_a_unit_the_lab_kind_converts() -> None:
    kb = get_kb()
    thresholds = [t for rec in kb.thresholds.values() for t in rec.thresholds]
    thresholds += [t for d in kb.drugs.values() for t in d.safety.result_thresholds]
    assert thresholds
    for t in thresholds:
        if t.relative_to_baseline:
            assert t.unit == "%"
            continue
        if t.lab is not None:
            kind = lab_by_id(t.lab)
            assert kind is not None, f"threshold {t.id}: lab '{t.lab}' is not in the lab catalogue"
            assert t.parameter in kind.parameters, f"threshold {t.id}: lab '{t.lab}' does not count for {t.parameter}"
            kinds: tuple[LabKind, ...] = (kind,)
        else:
            kinds = kinds_for_parameter(t.parameter, None)
        assert kinds, t.id
        for kind in kinds:
            if t.unit == "x ULN":
                assert kind.quantity != "qualitative", t.id
                continue
            try:
                convert(kind.quantity, t.value, t.unit, t.id)
            except UnitError as exc:  # pragma: no cover - the assertion message is the point
                pytest.fail(f"threshold {t.id}: {exc}")


def test_cyclosporine_creatinine_threshold_is_the_label_figure_with_its_section() -> None:
    (t,) = [t for t in get_kb().drugs["cyclosporine"].safety.result_thresholds
            if t.parameter is LabParameter.CREATININE]
    assert (t.comparison, t.value, t.unit, t.relative_to_baseline, t.origin) == (">=", 25, "%", True, "label")
    assert [str(c) for c in t.statement.sources] == ["label-gengraf#dosage"]
    assert t.action is not None and "25-50%" in t.action.text


def test_creatinine_rise_on_cyclosporine_cites_the_label_dosage_section_and_no_convention() -> None:
    (alert,) = _alerts(_creatinine("cyclosporine", 40, 50), CREAT)  # +25%: at the threshold
    assert "label-gengraf#dosage" in {s.citation for s in alert.sources}
    assert "convention" not in alert.reasoning
    assert not _alerts(_creatinine("cyclosporine", 40, 49), CREAT)  # +22.5%


def test_tacrolimus_borrows_the_cyclosporine_figure_and_says_it_is_a_convention() -> None:
    (alert,) = _alerts(_creatinine("tacrolimus", 40, 52), CREAT)
    assert "ipexrx convention" in alert.reasoning and "cyclosporine" in alert.reasoning
    assert "label-gengraf#dosage" in {s.citation for s in alert.sources}


def test_creatinine_rule_follows_the_kb_threshold(tmp_path: Path) -> None:
    def raise_to_60(d: dict[str, Any]) -> None:
        d["safety"]["result_thresholds"][0]["value"] = 60

    kb = kb_with(tmp_path, "drugs/cyclosporine.yaml", raise_to_60)
    patient = _creatinine("cyclosporine", 40, 60)  # +50%
    assert _alerts(patient, CREAT)
    assert not _alerts(patient, CREAT, kb)


def test_without_any_kb_creatinine_threshold_the_rule_stays_silent(tmp_path: Path) -> None:
    def drop(d: dict[str, Any]) -> None:
        d["safety"]["result_thresholds"] = []

    kb = kb_with(tmp_path, "drugs/cyclosporine.yaml", drop)
    assert not _alerts(_creatinine("tacrolimus", 40, 80), CREAT, kb)


def _anc(value: float) -> dict[str, Any]:
    return _patient([{"drug": "sirolimus", "start_date": "2026-01-01"}],
                    [{"test": "ANC", "value": value, "unit": "10^9/L", "date": "2026-11-20"}])


def test_neutropenia_bands_come_from_the_kb_with_sources() -> None:
    (mild,) = _alerts(_anc(1.2), NEUTRO)
    assert mild.summary.startswith("Neutropenia") and "severe" not in mild.summary.lower()
    assert {"arup-neutropenia", "taplitz-2018"} <= {s.citation for s in mild.sources}
    (severe,) = _alerts(_anc(0.4), NEUTRO)
    assert severe.summary.startswith("Severe neutropenia")
    assert not _alerts(_anc(1.5), NEUTRO)


def test_neutropenia_rule_follows_the_kb_threshold(tmp_path: Path) -> None:
    def lower(d: list[dict[str, Any]]) -> None:
        d[0]["thresholds"][0]["value"] = 1.0

    kb = kb_with(tmp_path, "thresholds.yaml", lower)
    assert _alerts(_anc(1.2), NEUTRO)
    assert not _alerts(_anc(1.2), NEUTRO, kb)
    assert _alerts(_anc(0.9), NEUTRO, kb)


# ---------------------------------------------------------------- live vaccines
def test_every_live_vaccine_in_the_kb_cites_acip() -> None:
    live = [v for v in get_kb().vaccines.values() if v.live]
    assert {"measles-mumps-rubella", "varicella", "zoster-live", "influenza-live", "rotavirus", "yellow-fever",
            "typhoid-oral", "bcg"} <= {v.id for v in live}
    for v in live:
        assert "acip-altered-immunocompetence" in {c.source for c in v.statement.sources}, v.id
        assert not v.cvx or v.cvx_sources


def test_live_vaccine_alert_cites_the_vaccine_statement() -> None:
    patient = _patient([{"drug": "tacrolimus", "start_date": "2026-01-01"}],
                       vaccines=[{"vaccine": "Varivax", "status": "planned"}])
    (alert,) = _alerts(patient, LIVE)
    kb = get_kb()
    assert kb.vaccines["varicella"].statement.text in alert.reasoning
    assert "acip-altered-immunocompetence" in {s.citation for s in alert.sources}


def test_recorded_live_flag_without_kb_match_is_said_to_come_from_the_record() -> None:
    patient = _patient([{"drug": "tacrolimus", "start_date": "2026-01-01"}],
                       vaccines=[{"vaccine": "local strain X", "status": "planned", "live": True}])
    (alert,) = _alerts(patient, LIVE)
    assert "recorded as a live vaccine" in alert.reasoning


def test_vaccine_liveness_follows_the_kb(tmp_path: Path) -> None:
    def drop_bcg(d: list[dict[str, Any]]) -> None:
        d[:] = [v for v in d if v["id"] != "bcg"]

    kb = kb_with(tmp_path, "vaccines.yaml", drop_bcg)
    assert is_live("BCG") is True and is_live("x", "19") is True
    assert is_live("BCG", kb=kb) is None and is_live("x", "19", kb=kb) is None
    assert classify_vaccine("MMR", kb=kb) == (True, "measles-mumps-rubella")


def test_recombinant_zoster_is_not_live_but_live_zoster_is() -> None:
    assert classify_vaccine("recombinant zoster (Shingrix)") == (False, "non-live")
    assert classify_vaccine("Zostavax") == (True, "zoster-live")
    assert is_live("smallpox vaccine") is None  # non-replicating products exist: left unjudged


# ---------------------------------------------------------------- corticosteroid threshold
def _steroid(drug: str, mg: float, weight: float = 20, start: str = "2026-10-01") -> dict[str, Any]:
    return _patient([{"drug": drug, "dose": {"value": mg, "unit": "mg"}, "frequency": "once daily",
                      "start_date": start}], vaccines=[{"vaccine": "MMR", "status": "planned"}], weight=weight)


def test_methylprednisolone_is_judged_in_prednisone_equivalents() -> None:
    (high,) = _alerts(_steroid("methylprednisolone", 16), LIVE)  # 20 mg prednisone-equivalent, 20 kg
    assert high.severity.value == "critical" and "factor 1.25" in high.reasoning
    assert "ucsf-hospital-handbook-steroids" in {s.citation for s in high.sources}
    (low,) = _alerts(_steroid("methylprednisolone", 12), LIVE)  # 15 mg prednisone-equivalent
    assert low.severity.value == "info"


def test_without_a_sourced_equivalence_methylprednisolone_stays_unjudged(tmp_path: Path) -> None:
    def drop(d: dict[str, Any]) -> None:
        del d["safety"]["vaccines"]["prednisone_equivalence"]

    kb = kb_with(tmp_path, "drugs/methylprednisolone.yaml", drop)
    (alert,) = _alerts(_steroid("methylprednisolone", 16), LIVE, kb)
    assert alert.severity.value == "warning" and "cannot judge" in alert.reasoning


def test_prednisone_threshold_is_read_from_the_kb_model(tmp_path: Path) -> None:
    def raise_threshold(d: dict[str, Any]) -> None:
        d["safety"]["vaccines"]["threshold"]["mg_per_day"] = 30
        d["safety"]["vaccines"]["threshold"]["mg_per_kg_day"] = 3

    kb = kb_with(tmp_path, "drugs/prednisone.yaml", raise_threshold)
    assert _alerts(_steroid("prednisone", 25), LIVE)[0].severity.value == "critical"
    (alert,) = _alerts(_steroid("prednisone", 25), LIVE, kb)
    assert alert.severity.value == "info" and "30 mg/day" in alert.reasoning


def test_prednisone_duration_comes_from_the_threshold() -> None:
    (alert,) = _alerts(_steroid("prednisone", 40, start="2026-11-20"), LIVE)  # 5 days so far
    assert alert.severity.value == "warning" and "14 days" in alert.reasoning


# ---------------------------------------------------------------- condition codings
def test_condition_codings_live_in_the_kb_with_sources() -> None:
    kb = get_kb()
    codings = [(m.id, c) for m in kb.manifestations.values() for c in m.codings]
    assert {("type-1-diabetes", "E10"), ("hypothyroidism", "40930008"), ("dermatitis", "L20")} <= {
        (mid, c.code) for mid, c in codings}
    assert all(c.sources for _, c in codings)


def test_fhir_condition_codes_follow_the_kb(tmp_path: Path) -> None:
    def drop(d: list[dict[str, Any]]) -> None:
        for m in d:
            m.pop("codings", None)

    kb = kb_with(tmp_path, "manifestations.yaml", drop)
    subj = {"reference": "Patient/p1"}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "2020-01-01"}},
        {"resource": {"resourceType": "Condition", "subject": subj,
                      "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E10.9"}]}}}]}
    assert [m.manifestation_id for m in read_patient(bundle, get_kb(), AS_OF).manifestations] == ["type-1-diabetes"]
    assert [m.manifestation_id for m in read_patient(bundle, kb, AS_OF).manifestations] == [None]


# ---------------------------------------------------------------- route-aware CNI
@pytest.mark.parametrize("topical", [{"drug": "tacrolimus", "route": "topical"},
                                     {"drug": "tacrolimus ointment 0.1%"}, {"drug": "Elidel 1% cream"},
                                     {"drug": "pimecrolimus"}])
def test_topical_calcineurin_inhibitors_are_not_systemic(topical: dict[str, Any]) -> None:
    patient = _patient([{"drug": "cyclosporine", "start_date": "2026-03-01"}, {**topical, "start_date": "2026-03-01"}],
                       [{"test": "creatinine", "value": 40, "unit": "umol/L", "date": "2026-02-20"},
                        {"test": "creatinine", "value": 44, "unit": "umol/L", "date": "2026-11-20"}],
                       [{"vaccine": "MMR", "status": "planned"}])
    result = assess(patient, as_of=AS_OF)
    rules = {a.rule for a in result.alerts}
    assert "duplication.two_calcineurin_inhibitors" not in rules
    live = [a for a in result.alerts if a.rule == LIVE]
    assert [t.ref for t in live[0].triggers if t.kind == "drug"] == ["cyclosporine"]


def test_topical_tacrolimus_alone_raises_no_systemic_alert() -> None:
    patient = _patient([{"drug": "tacrolimus ointment 0.03%", "start_date": "2026-01-01"}],
                       [{"test": "creatinine", "value": 40, "unit": "umol/L", "date": "2025-12-20"},
                        {"test": "creatinine", "value": 80, "unit": "umol/L", "date": "2026-11-20"}],
                       [{"vaccine": "MMR", "status": "planned"}])
    result = assess(patient, as_of=AS_OF)
    assert not {CREAT, LIVE, "monitoring.monitoring_due"} & {a.rule for a in result.alerts}
    assert any(w.path == "$.medications[0].route" and "topical" in w.message for w in result.warnings)


# ---------------------------------------------------------------- conventions are named as such
def test_overdue_monitoring_and_convention_intervals_are_called_conventions() -> None:
    patient = _patient([{"drug": "cyclosporine", "start_date": "2026-01-01"}],
                       [{"test": "cyclosporine trough", "value": 150, "unit": "ng/mL", "date": "2026-09-01"}])
    (trough,) = [a for a in assess(patient, as_of=AS_OF).alerts if a.id == "monitoring:trough:cyclosporine"]
    assert trough.severity.value == "warning"
    assert "2x the interval is an ipexrx convention" in trough.reasoning
    assert "14-day interval is an ipexrx convention" in trough.reasoning


# ---------------------------------------------------------------- validation of the new data
def _problems_with(tmp_path: Path, rel: str, change: Callable[[Any], Any]) -> list[str]:
    dest = tmp_path / "data"
    shutil.copytree(DEFAULT_DATA_DIR, dest)
    path = dest / rel
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    from ipexrx.knowledge.loader import KnowledgeBaseError

    try:
        return [str(p) for p in validate_kb(load_kb(dest))]
    except KnowledgeBaseError as exc:
        return [str(p) for p in exc.problems]


def test_a_cvx_code_claimed_by_two_vaccines_is_reported(tmp_path: Path) -> None:
    def dup(d: list[dict[str, Any]]) -> None:
        next(v for v in d if v["id"] == "bcg")["cvx"].append("21")

    assert any("CVX code '21' is also used by 'varicella'" in p for p in _problems_with(tmp_path, "vaccines.yaml", dup))


def test_a_condition_code_without_source_or_malformed_is_reported(tmp_path: Path) -> None:
    def bad(d: list[dict[str, Any]]) -> None:
        man = next(m for m in d if m["id"] == "type-1-diabetes")
        man["codings"][0]["sources"] = []
        man["codings"].append({"system": "ICD-10", "code": "E10-9", "sources": ["icd10-who"]})

    problems = _problems_with(tmp_path, "manifestations.yaml", bad)
    assert any("needs a source" in p for p in problems)
    assert any("malformed ICD-10 code 'E10-9'" in p for p in problems)


def test_a_percentage_threshold_must_be_relative_to_baseline(tmp_path: Path) -> None:
    def absolute(d: dict[str, Any]) -> None:
        d["safety"]["result_thresholds"][0]["relative_to_baseline"] = False

    problems = _problems_with(tmp_path, "drugs/cyclosporine.yaml", absolute)
    assert any("relative_to_baseline" in p for p in problems)


def test_a_level_on_topical_tacrolimus_is_not_judged_against_systemic_ranges() -> None:
    patient = _patient([{"drug": "tacrolimus", "route": "topical", "dose": {"value": 1, "unit": "mg"},
                         "frequency": "twice daily", "start_date": "2026-01-01"}],
                       [{"test": "tacrolimus trough", "value": 25, "unit": "ng/mL", "date": "2026-11-20"}])
    assert not _alerts(patient, "results.trough_out_of_range")
    systemic = {**patient, "medications": [{**patient["medications"][0], "route": "oral"}]}
    assert _alerts(systemic, "results.trough_out_of_range")


@pytest.mark.parametrize(("cvx", "vaccine_id"), [("03", "measles-mumps-rubella"), ("3", "measles-mumps-rubella"),
                                                ("94", "mmrv"), ("182", "polio-oral"), ("183", "yellow-fever"),
                                                ("149", "influenza-live"), ("25", "typhoid-oral")])
def test_live_cvx_codes_come_from_the_kb(cvx: str, vaccine_id: str) -> None:
    assert classify_vaccine("vaccine", cvx) == (True, vaccine_id)
