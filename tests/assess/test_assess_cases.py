"""Data-driven rule cases (tests/cases/assess/*.json): each pins one rule family, positive or negative.

A case names the alerts it expects (rule, severity, optional id, the drugs/data that must be among
the triggers, words the summary/action must contain) and the rules that must stay silent.

Optional (older cases leave them out): ``ipex_plan`` (auto | always | never, passed to assess),
``expect_mode`` (Assessment.mode) and ``expect_plan`` (whether the IPEX plan -- HSCT section and
options per manifestation -- is in the report; false also means no HSCT recommendation anywhere).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from ipexrx.assess import RULES, assess

CASES = sorted((Path(__file__).parents[1] / "cases" / "assess").glob("*.json"))


def _matches(alert: Any, exp: dict[str, Any]) -> bool:
    if alert.rule != exp["rule"] or alert.severity.value != exp["severity"]:
        return False
    if "id" in exp and alert.id != exp["id"]:
        return False
    refs = {t.ref for t in alert.triggers}
    if not set(exp.get("triggers", [])) <= refs:
        return False
    if any(w not in alert.summary for w in exp.get("summary_contains", [])):
        return False
    return all(w in alert.action for w in exp.get("action_contains", []))


def test_every_rule_has_a_positive_and_a_negative_case() -> None:
    positive: set[str] = set()
    negative: set[str] = set()
    for path in CASES:
        case = json.loads(path.read_text())
        positive |= {e["rule"] for e in case["expect"]}
        negative |= set(case["absent_rules"])
    assert set(RULES) <= positive, f"rules without a positive case: {set(RULES) - positive}"
    assert set(RULES) <= negative, f"rules without a negative case: {set(RULES) - negative}"


def test_every_rule_has_a_missing_data_case() -> None:
    """A missing value must be 'cannot judge', never silence: each rule pins what it does without its data."""
    covered: set[str] = set()
    for path in CASES:
        case = json.loads(path.read_text())
        if case.get("kind") == "missing-data":
            covered |= {e["rule"] for e in case["expect"]} | set(case["absent_rules"])
    assert set(RULES) <= covered, f"rules without a missing-data case: {set(RULES) - covered}"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path: Path) -> None:
    case = json.loads(path.read_text())
    result = assess(case["patient"], as_of=dt.date.fromisoformat(case["as_of"]),
                    ipex_plan=case.get("ipex_plan", "auto"))
    if "expect_mode" in case:
        assert result.mode == case["expect_mode"], f"{case['description']}\nmode {result.mode}: {result.mode_reason}"
        assert result.mode_reason
    if "expect_plan" in case:
        assert result.ipex_plan is case["expect_plan"], case["description"]
        if case["expect_plan"]:
            assert result.hsct is not None
        else:
            assert result.hsct is None and result.manifestations == [], case["description"]
            text = result.model_dump_json()
            assert "HSCT evaluation" not in text and "referral to a transplant centre" not in text
    for exp in case["expect"]:
        found = [a for a in result.alerts if _matches(a, exp)]
        assert found, (f"{case['description']}\nexpected {exp}\ngot:\n"
                       + "\n".join(f"  {a.rule} {a.severity.value} {a.id}: {a.summary} | {a.action}"
                                   for a in result.alerts))
        for a in found:
            assert a.reasoning and a.action and a.summary
            assert not a.action.lower().startswith(("give ", "start ", "stop ", "administer ")), a.action
    for rule in case["absent_rules"]:
        hits = [a for a in result.alerts if a.rule == rule]
        assert not hits, f"{case['description']}\nunexpected {rule}: {[a.summary for a in hits]}"
    if "expect_hsct" in case:
        _check_hsct(case, result)


def _check_hsct(case: dict[str, Any], result: Any) -> None:
    """Optional ``expect_hsct``: {"status", "status_basis", "status_text", "referral" (bool), "date", "kind",
    "followup" (bool),
    "read_from_contains": [...], "warnings_contain": [...]} -- the HSCT section is not an alert."""
    exp, h = case["expect_hsct"], result.hsct
    where = f"{case['description']}\nhsct: {h.model_dump(exclude={'figures', 'sources', 'followup'}) if h else None}"
    assert h is not None, where
    assert h.status == exp["status"], where
    if "status_basis" in exp:
        assert h.status_basis == exp["status_basis"], where
    if "status_text" in exp:
        assert h.status_text == exp["status_text"], where
    if "referral" in exp:
        assert bool(h.recommendation and "referral" in h.recommendation) == exp["referral"], where
    if "date" in exp:
        assert h.when() == exp["date"], where
    if "kind" in exp:
        assert h.kind == exp["kind"], where
    if "followup" in exp:
        assert bool(h.followup) == exp["followup"], where
        assert all(st.sources for st in h.followup), where
    read = " | ".join(h.read_from)
    assert all(w in read for w in exp.get("read_from_contains", [])), where
    notes = " | ".join(w.message for w in result.warnings)
    assert all(w in notes for w in exp.get("warnings_contain", [])), f"{where}\nwarnings: {notes}"
