"""The medication-breadth mechanics, pinned on controlled knowledge-base edits.

Each test adds what it needs (a mechanism group and a victim rule, a dose range, two formulations,
a product code) to a copy of the knowledge base, so the behaviour is pinned whatever the shipped
content says; the shipped content itself is pinned by the data-driven cases in tests/cases/assess.
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
from ipexrx.knowledge.loader import KnowledgeBase, load_kb
from ipexrx.knowledge.validate import validate_kb
from ipexrx.patient.errors import UnitError

AS_OF = dt.date(2026, 12, 5)
REVIEW = {"date": "2026-12-05", "reviewer": "test"}


def _stmt(text: str, source: str = "label-prograf#7") -> dict[str, Any]:
    return {"text": text, "sources": [source]}


def _kb(tmp_path: Path, edits: dict[str, Callable[[Any], Any]], new_files: dict[str, Any] | None = None,
        ) -> KnowledgeBase:
    dest = tmp_path / "data"
    shutil.copytree(get_kb().data_dir, dest)
    for rel, change in edits.items():
        path = dest / rel
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        change(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    for rel, data in (new_files or {}).items():
        (dest / rel).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    kb = load_kb(dest)
    assert validate_kb(kb) == []
    return kb


def _patient(meds: list[dict[str, Any]], **demo: Any) -> dict[str, Any]:
    demographics = {"age_years": 10, "sex": "male", "weight_kg": 30} | demo
    return {"demographics": {k: v for k, v in demographics.items() if v is not None}, "diagnosis": {"type": "ipex"},
            "medications": meds}


def _alerts(patient: dict[str, Any], kb: KnowledgeBase, rule: str) -> list[Any]:
    return [a for a in assess(patient, as_of=AS_OF, kb=kb, dose_suggestions=False).alerts if a.rule == rule]


# --- mechanism groups and victim rules --------------------------------------------------------
GROUP = {"id": "test-perpetrators", "review": REVIEW, "name": "Test perpetrator group", "kind": "enzyme-inhibitor",
         "description": _stmt("Drugs in this test group raise the victim's levels."),
         "members": [{"drug": "itraconazole", "sources": ["label-prograf#7"]},
                     {"drug": "trimethoprim-sulfamethoxazole", "routes": ["iv"], "sources": ["label-prograf#7"]}]}


def _with_rule(severity: str = "major", kind: str = "monitor") -> dict[str, Callable[[Any], Any]]:
    def add(drug: Any) -> None:
        drug.setdefault("interaction_rules", []).append({
            "id": "pimecrolimus-test-rule", "mechanism": "test-perpetrators", "severity": severity,
            "effect": _stmt("Levels of the victim rise."),
            "instructions": [{"kind": kind, "text": _stmt("Follow levels closely (test instruction).")}]})
    return {"drugs/levothyroxine.yaml": add}


def _mech_kb(tmp_path: Path, **rule: Any) -> KnowledgeBase:
    def add_group(groups: Any) -> None:
        groups.append(GROUP)
    return _kb(tmp_path, {**_with_rule(**rule), "mechanisms.yaml": add_group})


def test_a_victim_rule_fires_for_a_member_of_its_group(tmp_path: Path) -> None:
    kb = _mech_kb(tmp_path)
    hits = _alerts(_patient([{"drug": "levothyroxine"}, {"drug": "itraconazole"}]), kb, "interactions.mechanism_rule")
    assert len(hits) == 1
    a = hits[0]
    assert a.severity.value == "warning" and {t.ref for t in a.triggers} == {"levothyroxine", "itraconazole"}
    assert "Test perpetrator group" in a.summary and "test instruction" in a.action
    assert any(s.source == "label-prograf" and s.locator == "7" for s in a.sources)


def test_a_drug_outside_the_group_raises_nothing(tmp_path: Path) -> None:
    kb = _mech_kb(tmp_path)
    assert _alerts(_patient([{"drug": "levothyroxine"}, {"drug": "fluconazole"}]), kb,
                   "interactions.mechanism_rule") == []


def test_a_member_in_a_route_outside_its_group_raises_nothing(tmp_path: Path) -> None:
    kb = _mech_kb(tmp_path)
    oral = _patient([{"drug": "levothyroxine"}, {"drug": "trimethoprim-sulfamethoxazole", "route": "oral"}])
    iv = _patient([{"drug": "levothyroxine"}, {"drug": "trimethoprim-sulfamethoxazole", "route": "iv"}])
    assert _alerts(oral, kb, "interactions.mechanism_rule") == []
    assert len(_alerts(iv, kb, "interactions.mechanism_rule")) == 1


def test_a_contraindicated_rule_is_critical(tmp_path: Path) -> None:
    kb = _mech_kb(tmp_path, severity="contraindicated", kind="contraindicated")
    (a,) = _alerts(_patient([{"drug": "levothyroxine"}, {"drug": "itraconazole"}]), kb, "interactions.mechanism_rule")
    assert a.severity.value == "critical"


def test_a_pair_record_overrides_the_group_rule(tmp_path: Path) -> None:
    def add_group(groups: Any) -> None:
        groups.append(GROUP)
    pair = [{"id": "itraconazole-levothyroxine-test", "review": REVIEW, "drugs": ["itraconazole", "levothyroxine"],
             "severity": "moderate", "mechanism": _stmt("Pair-specific label text."),
             "instructions": [{"kind": "monitor", "text": _stmt("Pair-specific instruction.")}]}]
    kb = _kb(tmp_path, {**_with_rule(), "mechanisms.yaml": add_group}, {"interactions/test-pair.yaml": pair})
    patient = _patient([{"drug": "levothyroxine"}, {"drug": "itraconazole"}])
    assert _alerts(patient, kb, "interactions.mechanism_rule") == []
    (a,) = _alerts(patient, kb, "interactions.label_instruction")
    assert "Pair-specific instruction" in a.action


def test_a_stopped_or_missing_partner_raises_nothing(tmp_path: Path) -> None:
    kb = _mech_kb(tmp_path)
    stopped = _patient([{"drug": "levothyroxine"}, {"drug": "itraconazole", "status": "stopped"}])
    alone = _patient([{"drug": "levothyroxine"}])
    assert _alerts(stopped, kb, "interactions.mechanism_rule") == []
    assert _alerts(alone, kb, "interactions.mechanism_rule") == []


def test_validation_names_a_rule_for_an_unknown_mechanism(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    shutil.copytree(get_kb().data_dir, dest)
    path = dest / "drugs/levothyroxine.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.setdefault("interaction_rules", []).append({
        "id": "x-rule", "mechanism": "no-such-group", "severity": "major", "effect": _stmt("x"),
        "instructions": [{"kind": "monitor", "text": {"text": "uncited section", "sources": ["label-prograf"]}}]})
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    messages = [p.message for p in validate_kb(load_kb(dest))]
    assert "references unknown mechanism 'no-such-group'" in messages
    assert any("must cite the section" in m for m in messages)


def test_validation_requires_codes_for_every_drug(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    shutil.copytree(get_kb().data_dir, dest)
    path = dest / "drugs/levothyroxine.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["codes"] = {}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    problems = [str(p) for p in validate_kb(load_kb(dest))]
    assert any("levothyroxine" in p and "RxCUI" in p for p in problems)
    assert any("levothyroxine" in p and "ATC code" in p for p in problems)


# --- dose ranges ------------------------------------------------------------------------------
def _range_kb(tmp_path: Path) -> KnowledgeBase:
    def add(drug: Any) -> None:
        drug["dose_ranges"] = [
            {"id": "levothyroxine-test-kg", "routes": ["oral"], "age_min_years": 0, "age_max_years": 18,
             "context": "test paediatric band", "basis": "mg/kg/day", "low": 0.002, "high": 0.01, "maximum": 0.015,
             "statement": _stmt("Test paediatric range.")},
            {"id": "levothyroxine-test-adult", "routes": ["oral"], "age_min_years": 18, "context": "test adult band",
             "basis": "mg/day", "low": 0.025, "high": 0.2, "absolute_max": 0.3,
             "statement": _stmt("Test adult range.")}]
    return _kb(tmp_path, {"drugs/levothyroxine.yaml": add})


@pytest.mark.parametrize(("dose", "frequency", "demo", "severity", "words"), [
    ("100 mcg", "once daily", {}, None, None),  # 0.0033 mg/kg/day: inside the band
    ("600 mcg", "once daily", {}, "warning", "outside the labelled range"),  # 0.02 mg/kg/day > 0.015
    ("5 mg", "once daily", {}, "critical", "more than ten times"),  # 0.167 mg/kg/day > 10 x 0.015
    ("50 mcg", "twice daily", {"age_years": 30, "weight_kg": None}, None, None),  # adult band, weight not needed
    ("100 mcg", "once daily", {"weight_kg": None}, "info", "weight missing"),
    ("100 mcg", None, {}, "info", "frequency missing"),
    ("5 g", None, {}, "critical", "more than ten times"),  # one dose beyond ten times any day's ceiling
])
def test_doses_are_judged_against_the_labelled_range(tmp_path: Path, dose: str, frequency: str | None,
                                                     demo: dict[str, Any], severity: str | None,
                                                     words: str | None) -> None:
    kb = _range_kb(tmp_path)
    med = {"drug": "levothyroxine", "dose": dose, "route": "oral"} | ({"frequency": frequency} if frequency else {})
    hits = _alerts(_patient([med], **demo), kb, "dosing.dose_range")
    if severity is None:
        assert hits == []
        return
    (a,) = hits
    assert a.severity.value == severity
    assert words in (a.summary + " " + a.reasoning)
    assert any(s.source == "label-prograf" for s in a.sources)


def test_a_local_route_is_not_judged(tmp_path: Path) -> None:
    kb = _range_kb(tmp_path)
    med = {"drug": "levothyroxine", "dose": "5 g", "route": "topical", "frequency": "once daily"}
    assert _alerts(_patient([med]), kb, "dosing.dose_range") == []


# --- formulations and products ----------------------------------------------------------------
def _formulation_kb(tmp_path: Path) -> KnowledgeBase:
    def add(drug: Any) -> None:
        drug["formulations"] = [
            {"id": "levo-a", "name": "formulation A", "switch": _stmt("Switching from A: check levels (test).")},
            {"id": "levo-b", "name": "formulation B", "switch": _stmt("Switching to B: check levels (test).")}]
        drug["brands"] = [{"name": "Brandone", "formulation": "levo-a", "sources": ["label-prograf#7"]},
                          {"name": "Brandtwo", "formulation": "levo-b", "sources": ["label-prograf#7"]}]
        drug["products"] = [{"id": "levo-solution", "form": "oral solution", "route": "oral",
                             "strengths": [{"value": 25, "unit": "mcg", "per_ml": 5}], "formulation": "levo-b",
                             "rxnorm": [{"code": "99999901", "tty": "SCD", "name": "test 5 MCG/ML Oral Solution"}],
                             "sources": ["label-prograf#7"]},
                            {"id": "levo-cream", "form": "cream", "route": "topical", "strengths": [],
                             "rxnorm": [{"code": "99999902", "tty": "SCD", "name": "test Topical Cream"}],
                             "sources": ["label-prograf#7"]}]
    return _kb(tmp_path, {"drugs/levothyroxine.yaml": add})


def test_a_switch_between_formulations_is_flagged(tmp_path: Path) -> None:
    kb = _formulation_kb(tmp_path)
    switch = _patient([{"drug": "Brandone", "status": "stopped", "end_date": "2026-12-01"},
                       {"drug": "Brandtwo", "start_date": "2026-12-02"}])
    (a,) = _alerts(switch, kb, "duplication.formulation_switch")
    assert a.severity.value == "warning" and "Brandone" in a.summary and "Brandtwo" in a.summary
    assert "test" in a.action
    same = _patient([{"drug": "Brandone", "status": "stopped"}, {"drug": "Brandone"}])
    assert _alerts(same, kb, "duplication.formulation_switch") == []


def test_a_current_record_of_unstated_formulation_after_a_stopped_one_cannot_be_judged(tmp_path: Path) -> None:
    kb = _formulation_kb(tmp_path)
    unknown = _patient([{"drug": "Brandone", "status": "stopped"}, {"drug": "levothyroxine"}])
    (a,) = _alerts(unknown, kb, "duplication.formulation_switch")
    assert a.severity.value == "info" and "cannot be judged" in a.summary


def test_a_product_code_gives_the_drug_route_and_concentration(tmp_path: Path) -> None:
    kb = _formulation_kb(tmp_path)
    res = assess(_patient([{"drug": "thyroid drops", "rxcui": "99999901", "dose": "2 mL"},
                           {"drug": "skin cream", "rxcui": "99999902"}]), as_of=AS_OF, kb=kb)
    solution, cream = res.medications
    assert solution.drug_id == "levothyroxine" and solution.route == "oral"
    assert solution.identified_by == "rxnorm-product"
    assert solution.dose == "0.01 mg" and solution.formulation == "levo-b"
    assert cream.drug_id == "levothyroxine" and cream.route == "topical"
    assert any(w.path == "$.medications[1].route" and "topical" in w.message for w in res.warnings)


def test_a_volume_without_a_concentration_is_an_error_naming_it(tmp_path: Path) -> None:
    kb = _formulation_kb(tmp_path)
    with pytest.raises(UnitError, match="no concentration"):
        assess(_patient([{"drug": "levothyroxine", "dose": "2 mL"}]), as_of=AS_OF, kb=kb)
