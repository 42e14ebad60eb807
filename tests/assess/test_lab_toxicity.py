"""Lab toxicity and blood-pressure rules: the branches the case files cannot pin by rule name alone
(alert ids of one rule, start vs on-treatment label thresholds, sex unknown, infants)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ipexrx.assess import assess

AS_OF = dt.date(2026, 11, 25)


def _patient(meds: list[dict[str, Any]], labs: list[tuple[str, float, str]], age: float | None = 8,
             sex: str = "male") -> dict[str, Any]:
    demo: dict[str, Any] = {"sex": sex, "weight_kg": 25}
    if age is not None:
        demo["age_years"] = age
    return {"demographics": demo, "diagnosis": {"type": "ipex"}, "medications": meds,
            "labs": [{"test": t, "value": v, "unit": u, "date": "2026-11-20"} for t, v, u in labs]}


def _ids(p: dict[str, Any]) -> dict[str, str]:
    return {a.id: a.severity.value for a in assess(p, as_of=AS_OF, dose_suggestions=False).alerts}


def test_a_parameter_without_interval_is_silent_once_a_result_is_on_record() -> None:
    tac = [{"drug": "tacrolimus", "start_date": "2025-01-01"}]
    without = _ids(_patient(tac, []))
    assert without["monitoring:blood-pressure"] == "info" and without["monitoring:magnesium"] == "info"
    with_results = _ids(_patient(tac, [("systolic blood pressure", 100, "mmHg"), ("magnesium", 0.8, "mmol/L")]))
    assert "monitoring:blood-pressure" not in with_results and "monitoring:magnesium" not in with_results


def test_start_thresholds_apply_to_a_planned_drug_and_treatment_thresholds_to_a_current_one() -> None:
    hb = [("hemoglobin", 8.5, "g/dL")]
    planned = _ids(_patient([{"drug": "tofacitinib", "status": "planned"}], hb, age=16))
    current = _ids(_patient([{"drug": "tofacitinib", "start_date": "2025-01-01"}], hb, age=16))
    assert planned.get("result:lab:hemoglobin") == "warning"  # do not start below 9 g/dL
    assert "result:lab:hemoglobin" not in current  # interrupt only below 8 g/dL


def test_child_blood_pressure_with_sex_unknown_needs_both_screening_values() -> None:
    csa = [{"drug": "cyclosporine", "start_date": "2025-01-01"}]
    # age 2: boys 100/55, girls 101/58
    between = _ids(_patient(csa, [("systolic blood pressure", 100, "mmHg"), ("diastolic blood pressure", 50, "mmHg")],
                            age=2.5, sex="unknown"))
    above_both = _ids(_patient(csa, [("systolic blood pressure", 101, "mmHg"),
                                     ("diastolic blood pressure", 50, "mmHg")], age=2.5, sex="unknown"))
    boy = _ids(_patient(csa, [("systolic blood pressure", 100, "mmHg"), ("diastolic blood pressure", 50, "mmHg")],
                        age=2.5, sex="male"))
    assert "result:blood-pressure" not in between
    assert above_both["result:blood-pressure"] == "info"
    assert boy["result:blood-pressure"] == "info"


def test_an_infant_blood_pressure_cannot_be_judged() -> None:
    csa = [{"drug": "cyclosporine", "start_date": "2025-01-01"}]
    ids = _ids(_patient(csa, [("systolic blood pressure", 120, "mmHg")], age=0.5))
    assert ids["result:blood-pressure:cannot-judge"] == "info"


def test_a_drug_without_blood_pressure_monitoring_is_not_judged() -> None:
    ids = _ids(_patient([{"drug": "sirolimus", "start_date": "2025-01-01"}],
                        [("systolic blood pressure", 150, "mmHg")], age=15))
    assert not any(i.startswith("result:blood-pressure") for i in ids)


def test_a_stopped_drug_raises_no_toxicity_alert() -> None:
    ids = _ids(_patient([{"drug": "tacrolimus", "status": "stopped", "start_date": "2024-01-01",
                          "end_date": "2025-01-01"}], [("potassium", 6.3, "mmol/L")]))
    assert "result:lab:potassium" not in ids


def test_topical_tacrolimus_raises_no_toxicity_alert() -> None:
    ids = _ids(_patient([{"drug": "tacrolimus", "route": "topical", "start_date": "2025-01-01"}],
                        [("potassium", 6.3, "mmol/L")]))
    assert "result:lab:potassium" not in ids


def test_the_blood_pressure_floor_is_the_lowest_upper_threshold_of_each_pressure() -> None:
    """The early exit for normal readings: a reading below every threshold of its pressure crosses none,
    so the floor must be the lowest value among them, and a reading at the floor is still judged."""
    from types import SimpleNamespace

    from ipexrx.assess.rules.results import _bp_thresholds
    from ipexrx.knowledge.loader import get_kb
    from ipexrx.knowledge.schema import LabParameter

    kb = get_kb()
    drugs = [d for d in kb.drugs.values()
             if any(m.parameter is LabParameter.BLOOD_PRESSURE for m in d.safety.monitoring)]
    assert drugs  # the calcineurin inhibitors
    ctx = SimpleNamespace(kb=kb, drug=lambda i: kb.drugs[i])  # what the helper reads of the rule's Ctx
    found, floors = _bp_thresholds(ctx, [SimpleNamespace(drug_id=d.id) for d in drugs])  # type: ignore[arg-type]
    assert set(floors) == {"systolic-bp", "diastolic-bp"}
    for kind, floor in floors.items():
        mine = [t for t, _ in found if t.lab == kind]
        assert floor == min(t.value for t in mine) and all(t.comparison in (">=", ">") for t in mine)
    lowest = next(t for t, _ in found if t.lab == "systolic-bp" and t.value == floors["systolic-bp"])
    age = lowest.min_age_years if lowest.min_age_years is not None else 13
    csa = [{"drug": "cyclosporine", "start_date": "2025-01-01"}]
    sex = lowest.sex or "male"
    at = _ids(_patient(csa, [("systolic blood pressure", floors["systolic-bp"], "mmHg")], age=age + 0.5, sex=sex))
    below = _ids(_patient(csa, [("systolic blood pressure", floors["systolic-bp"] - 1, "mmHg")], age=age + 0.5,
                          sex=sex))
    assert "result:blood-pressure" in at  # the threshold at the floor itself is met (>=)
    assert "result:blood-pressure" not in below


def test_a_blood_pressure_reading_missing_its_value_is_not_judged_and_monitoring_says_it_is_due() -> None:
    csa = [{"drug": "cyclosporine", "start_date": "2025-01-01"}]
    ids = _ids(_patient(csa, [], age=8))
    assert not any(i.startswith("result:blood-pressure") for i in ids)
    assert "monitoring:blood-pressure" in ids
