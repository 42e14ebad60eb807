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


def _bp_index() -> Any:
    from types import SimpleNamespace

    from ipexrx.assess.rules.results import _bp_thresholds
    from ipexrx.knowledge.loader import get_kb
    from ipexrx.knowledge.schema import LabParameter

    kb = get_kb()
    drugs = [d for d in kb.drugs.values()
             if any(m.parameter is LabParameter.BLOOD_PRESSURE for m in d.safety.monitoring)]
    assert drugs  # the calcineurin inhibitors
    ctx = SimpleNamespace(kb=kb, drug=lambda i: kb.drugs[i])  # what the helper reads of the rule's Ctx
    return _bp_thresholds(ctx, [SimpleNamespace(drug_id=d.id) for d in drugs])  # type: ignore[arg-type]


def test_the_age_banded_blood_pressure_index_answers_as_every_threshold_compared_in_turn() -> None:
    """The index (thresholds per pressure and age band, a floor per band) against the plain rule: every threshold
    of the pressure that the value meets at that age, a sex-specific one only for that sex, and with the sex
    unknown only when both sexes' values are met -- over ages 1-80, every value 40-200 mmHg and every sex."""
    from types import SimpleNamespace

    from ipexrx.assess.rules.results import _bp_crossed

    index = _bp_index()
    ages = [1 + k / 4 for k in range(0, 4 * 20)] + [25, 40, 64.9, 65, 80]
    ages += sorted({a for lims in index.bounds.values() for a in lims})  # every band limit itself
    for kind in ("systolic-bp", "diastolic-bp"):
        for age in ages:
            for value in range(40, 201):
                for sex in ("male", "female", "unknown"):
                    r = SimpleNamespace(value=float(value), kind=SimpleNamespace(id=kind))
                    plain = [(t, c) for t, c in index.found if t.lab == kind and t.crossed(float(value))
                             and t.applies_to_age(age) and (t.sex is None or sex not in ("male", "female")
                                                            or t.sex == sex)]
                    if sex not in ("male", "female") and not (any(t.sex == "male" for t, _ in plain)
                                                             and any(t.sex == "female" for t, _ in plain)):
                        plain = [(t, c) for t, c in plain if t.sex is None]
                    assert _bp_crossed(r, index, age, sex) == plain, (kind, age, value, sex)  # type: ignore[arg-type]


def test_a_reading_at_its_age_bands_floor_is_judged_and_one_below_it_is_not() -> None:
    """The early exit for normal readings: the floor of a band is the lowest upper threshold applying at that
    age, so a reading at it still alerts and one below does not."""
    index = _bp_index()
    kind = "systolic-bp"
    age = 8.5
    applying, floor = index.applying(kind, age)
    assert floor is not None and floor == min(t.value for t, _ in applying)
    assert all(t.comparison in (">=", ">") for t, _ in applying)
    lowest = next(t for t, _ in applying if t.value == floor)
    csa = [{"drug": "cyclosporine", "start_date": "2025-01-01"}]
    sex = lowest.sex or "male"
    at = _ids(_patient(csa, [("systolic blood pressure", floor, "mmHg")], age=age, sex=sex))
    below = _ids(_patient(csa, [("systolic blood pressure", floor - 1, "mmHg")], age=age, sex=sex))
    assert "result:blood-pressure" in at  # the threshold at the floor itself is met (>=)
    assert "result:blood-pressure" not in below


def test_a_blood_pressure_reading_missing_its_value_is_not_judged_and_monitoring_says_it_is_due() -> None:
    csa = [{"drug": "cyclosporine", "start_date": "2025-01-01"}]
    ids = _ids(_patient(csa, [], age=8))
    assert not any(i.startswith("result:blood-pressure") for i in ids)
    assert "monitoring:blood-pressure" in ids
