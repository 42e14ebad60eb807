"""Trough alerts on modelled drugs carry a model-based dose suggestion (issue 5), computed lazily."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ipexrx.assess import assess
from ipexrx.knowledge import get_kb

AS_OF = dt.date(2026, 11, 25)
RULE = "results.trough_out_of_range"
CASES = Path(__file__).parents[1] / "cases" / "assess"


def _patient(drug: str, dose: float | None, level: float, frequency: str = "once daily",
             labs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    med: dict[str, Any] = {"drug": drug, "frequency": frequency, "start_date": "2025-01-01"}
    if dose is not None:
        med["dose"] = {"value": dose, "unit": "mg"}
    return {"demographics": {"age_years": 8, "sex": "male", "weight_kg": 25}, "diagnosis": {"type": "ipex"},
            "medications": [med],
            "labs": [{"test": f"{drug} trough", "value": level, "unit": "ng/mL", "date": "2026-11-24"},
                     *(labs or [])]}


def _trough_alert(patient: dict[str, Any], **kw: Any) -> Any:
    (alert,) = [a for a in assess(patient, as_of=AS_OF, **kw).alerts if a.rule == RULE]
    return alert


def test_high_sirolimus_trough_gets_a_lower_model_dose_with_citation_and_caveat() -> None:
    alert = _trough_alert(_patient("sirolimus", 1.5, 22))
    s = alert.dose_suggestion
    assert s is not None and s.not_computed is None
    assert s.model_id == "fan2024-sirolimus" and s.model_doi == "10.3389/fphar.2024.1457614"
    assert s.dose_mg is not None and 0 < s.dose_mg < 1.5 and s.interval_h == 24
    assert s.predicted_low is not None and s.predicted_high is not None and s.predicted_trough is not None
    assert s.predicted_low <= s.predicted_trough <= s.predicted_high
    kb_range = get_kb().drugs["sirolimus"].safety.target_ranges[0]
    assert (s.target_low, s.target_high, s.target_context) == (kb_range.low, kb_range.high, kb_range.context)
    caveat = get_kb().drugs["sirolimus"].dosing_caveat
    assert caveat is not None and s.caveats[0] == caveat.text
    assert "fan-2024" in {r.citation for r in alert.sources}
    assert "not an order" in alert.action and "Fan L" in alert.action and caveat.text in alert.action


def test_low_trough_gets_a_higher_dose() -> None:
    s = _trough_alert(_patient("sirolimus", 1.5, 2)).dose_suggestion
    assert s is not None and s.dose_mg is not None and s.dose_mg > 1.5


def test_cyclosporine_uses_the_bilirubin_on_record_as_model_covariate() -> None:
    bili = [{"test": "bilirubin", "value": 8, "unit": "umol/L", "date": "2026-11-24"}]
    with_bili = _trough_alert(_patient("cyclosporine", 75, 320, "twice daily", bili)).dose_suggestion
    assert with_bili is not None and with_bili.not_computed is None and with_bili.interval_h == 12
    assert "explains them best" in (with_bili.model_choice or "")
    # without bilirubin the bilirubin model cannot be used; a weight-only model is chosen instead, and says so
    without = _trough_alert(_patient("cyclosporine", 75, 320, "twice daily")).dose_suggestion
    assert without is not None and without.dose_mg is not None
    assert without.model_id != "gao2022-cyclosporine" and "explains them best" in (without.model_choice or "")


def test_a_co_medication_indicator_is_set_from_the_chart_and_chosen_model_is_paediatric() -> None:
    s = _trough_alert(_patient("tacrolimus", 2, 18, "twice daily")).dose_suggestion
    assert s is not None and s.dose_mg is not None and s.model_id in ("chen2022-tacrolimus", "wang2019-tacrolimus")
    assert s.model_choice and "explains them best" in s.model_choice


def test_missing_model_covariate_or_dose_is_reported_not_guessed() -> None:
    # an unreadable medication makes the chart's co-medication list incomplete: no co-medication indicator is
    # assumed, so no tacrolimus model can be used, and the suggestion says which inputs are missing
    patient = _patient("tacrolimus", 2, 18, "twice daily")
    patient["medications"].append({"drug": "Zzyzxamab", "start_date": "2026-01-01"})
    tac = _trough_alert(patient)
    assert tac.dose_suggestion is not None and tac.dose_suggestion.dose_mg is None
    why = tac.dose_suggestion.not_computed or ""
    assert "the Chen 2022 tacrolimus model needs to know whether posaconazole is given" in why
    assert "whether the kidney donor was deceased" in why and "could not be identified" in why
    assert "POSACONAZOLE" not in why and "DONOR_DECEASED" not in why and "chen2022-tacrolimus" not in why
    assert "No model-based dose suggestion" in tac.action
    no_dose = _trough_alert(_patient("sirolimus", None, 22)).dose_suggestion
    assert no_dose is not None and no_dose.dose_mg is None and "mg" in (no_dose.not_computed or "")


def test_dose_suggestions_can_be_turned_off() -> None:
    alert = _trough_alert(_patient("sirolimus", 1.5, 22), dose_suggestions=False)
    assert alert.dose_suggestion is None and "not an order" not in alert.action
    assert "dose suggestion was not calculated" in alert.action  # said, not silently left out


def test_assessments_without_an_out_of_range_trough_do_not_import_the_dosing_stack() -> None:
    code = ("import sys, json, datetime as dt\n"
            "from ipexrx.assess import assess\n"
            f"for name in ('result-trough-in-range', 'vaccine-live-planned', 'result-creatinine-rise'):\n"
            f"    case = json.load(open({str(CASES)!r} + '/' + name + '.json'))\n"
            "    assess(case['patient'], as_of=dt.date(2026, 11, 25))\n"
            "print(json.dumps(sorted(m for m in ('numpy', 'scipy', 'ipexrx.dosing.recommend') if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_suggestion_warns_that_it_holds_only_with_the_current_interacting_drugs() -> None:
    patient = _patient("sirolimus", 1.5, 22)
    patient["medications"].append({"drug": "voriconazole", "start_date": "2026-10-01"})
    s = _trough_alert(patient).dose_suggestion
    assert s is not None and any("voriconazole" in c and "unchanged" in c for c in s.caveats)
    alone = _trough_alert(_patient("sirolimus", 1.5, 22)).dose_suggestion
    assert alone is not None and not any("unchanged" in c for c in alone.caveats)
