"""The TDM report as data (``build_report``): units on every number, diagnostics, citation and numbered sources,
validity-domain notes, caveats in plain words, and the same report for the same inputs and date."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ipexrx.dosing.errors import DosingError
from ipexrx.dosing.model import all_models, get_model
from ipexrx.dosing.recommend import IPEX_CAVEAT, recommend, recommend_from_trough
from ipexrx.dosing.report import TDMReport, build_report, plain

SIRO = "fan2024-sirolimus"
AS_OF = "2026-01-02"
BANNED = ("this session", "transcription", " KB", "the page", "records[", "subject patient", "label-")


def _trough_report(level: float, dose: float = 0.8, wt: float = 12, **kw: Any) -> TDMReport:
    rec = recommend_from_trough("sirolimus", level, "ng/mL", dose, 24, {"WT": wt}, model_id=SIRO, **kw)
    return build_report(get_model(SIRO), rec, covariates={"WT": wt}, as_of=AS_OF)


@pytest.fixture(scope="module")
def low_level() -> TDMReport:
    """IPEX worked example: 12 kg child, sirolimus 0.8 mg every 24 h, trough 3.5 ng/mL (below 5-15 ng/mL)."""
    return _trough_report(3.5)


@pytest.fixture(scope="module")
def unexplained() -> TDMReport:
    """Issue 13: a 20 kg child on sirolimus 1 mg/day with a trough of 60 ng/mL."""
    return _trough_report(60, dose=1, wt=20)


def _all_refs(d: Any) -> set[int]:
    out: set[int] = set()
    if isinstance(d, dict):
        for k, v in d.items():
            if k == "refs":
                out |= set(v)
            else:
                out |= _all_refs(v)
    elif isinstance(d, list):
        for v in d:
            out |= _all_refs(v)
    return out


def _text_fields(d: Any) -> list[str]:
    if isinstance(d, str):
        return [d]
    if isinstance(d, dict):
        return [s for k, v in d.items() if k != "id" for s in _text_fields(v)]
    if isinstance(d, list):
        return [s for v in d for s in _text_fields(v)]
    return []


def test_every_reported_quantity_carries_its_unit(low_level: TDMReport) -> None:
    d = low_level.as_dict()
    s = d["suggestion"]
    assert s["unit"] == "ng/mL" and s["dose_mg"] == pytest.approx(0.9) and s["interval_h"] == 24
    assert "0.9 mg every 24 h (0.9 mg/day)" in s["headline"] and "0.9 mL of 1 mg/mL" in s["headline"]
    assert d["target"] == {**d["target"], "low": 5, "high": 15, "unit": "ng/mL", "metric": "trough"}
    assert all(a["unit"] == "ng/mL" for a in d["alternatives"]) and d["alternatives"]
    assert [(c["name"], c["value"], c["unit"]) for c in d["patient"]["covariates"]] == [("WT", 12, "kg")]
    (dose,) = d["patient"]["doses"]
    assert (dose["time_h"], dose["amount_mg"], dose["route"], dose["interval_h"], dose["steady_state"]) == (
        0, 0.8, "oral", 24, True)
    (lv,) = d["patient"]["levels"]
    assert (lv["time_h"], lv["value"], lv["unit"]) == (24, 3.5, "ng/mL")
    assert d["curve"]["unit"] == "ng/mL"


def test_alternatives_and_probability_of_target_attainment_come_from_the_recommendation(
        low_level: TDMReport) -> None:
    rec = recommend_from_trough("sirolimus", 3.5, "ng/mL", 0.8, 24, {"WT": 12}, model_id=SIRO)
    s = low_level.suggestion
    assert s.probability_in_target == rec.probability_in_target
    assert s.probability_measured_in_target == rec.probability_measured_in_target < s.probability_in_target
    assert [(a.dose_mg, a.interval_h, a.probability_in_target) for a in low_level.alternatives] == [
        (a["dose_mg"], a["interval_h"], a["probability_in_target"]) for a in rec.alternatives]
    assert low_level.alternatives[0].daily_dose_mg == pytest.approx(1.0)
    assert s.interval_includes == "parameter uncertainty and residual error"


def test_curve_shows_history_then_the_suggested_regimen_with_nested_bands(low_level: TDMReport) -> None:
    c = low_level.curve
    assert c is not None
    assert c.regimen_change_h == 24  # the next dose after the steady-state dose at 0 h every 24 h
    assert c.times_h[0] >= 0 and c.times_h[-1] == pytest.approx(24 + 3 * 24)
    n = len(c.times_h)
    assert all(len(col) == n for col in (c.prediction, c.parameter_low, c.parameter_high, c.predictive_low,
                                          c.predictive_high))
    inner = sum(c.parameter_high[i] - c.parameter_low[i] for i in range(n))
    outer = sum(c.predictive_high[i] - c.predictive_low[i] for i in range(n))
    assert outer > inner * 1.2, "residual error must widen the predictive band"
    assert "residual error" in c.band_note and "parameter uncertainty only" in c.band_note
    # the suggested 0.9 mg gives higher troughs than the 0.8 mg history: the prediction rises after the change
    before = max(p for t, p in zip(c.times_h, c.prediction, strict=True) if 12 < t < 24)
    after = max(p for t, p in zip(c.times_h, c.prediction, strict=True) if t > 72)
    assert after > before


def test_diagnostics_are_reported_with_their_limits(low_level: TDMReport) -> None:
    dg = low_level.diagnostics
    assert dg.available and dg.explained
    (lv,) = dg.levels
    assert lv.unit == "ng/mL" and abs(lv.iwres) < 3 and not lv.flagged
    (eta,) = dg.etas
    assert eta.parameter == "CL" and eta.meaning == "clearance"
    assert eta.shrinkage_percent is not None and eta.shrinkage_percent > 30 and eta.weakly_informed
    assert dg.conflict is not None and dg.conflict.df == 1 and not dg.conflict.flagged
    assert dg.iwres_limit == 3 and "limit 3" in dg.limits
    assert any("shrinkage" in c and "clearance" in c for c in low_level.caveats)


def test_a_level_the_model_cannot_explain_is_the_first_alert(unexplained: TDMReport) -> None:
    first = unexplained.notices[0]
    assert first.severity == "alert" and first.topic == "fit diagnostics"
    assert "cannot explain the level 60 ng/mL" in first.text and "check sample timing" in first.text
    assert unexplained.diagnostics.explained is False
    assert unexplained.patient.levels[0].flagged
    assert unexplained.diagnostics.conflict is not None and unexplained.diagnostics.conflict.flagged
    # the diagnostics' sources are cited by the alert
    cited = {unexplained.sources[n - 1].text.split(".")[0] for n in first.refs}
    assert cited == {"Box GEP", "Savic RM, Karlsson MO"}


def test_model_citation_is_a_numbered_source_and_every_number_resolves(low_level: TDMReport) -> None:
    d = low_level.as_dict()
    model_refs = d["model"]["refs"]
    assert len(model_refs) == 1
    src = d["sources"][model_refs[0] - 1]
    assert src["doi"] == "10.3389/fphar.2024.1457614" and src["text"].startswith("Fan L")
    assert d["model"]["label"] == "Fan 2024"
    numbers = [s["number"] for s in d["sources"]]
    assert numbers == list(range(1, len(numbers) + 1))
    assert _all_refs(d) == set(numbers), "every source is cited and every citation has a source"


def test_input_check_warning_cites_the_label_section() -> None:
    rec = recommend_from_trough("sirolimus", 10, "ng/mL", 20, 168, {"WT": 20}, model_id=SIRO)
    rep = build_report(get_model(SIRO), rec, covariates={"WT": 20}, as_of=AS_OF)
    (n,) = [n for n in rep.notices if n.topic == "input check"]
    assert n.severity == "warning" and "the dose at 0 h" in n.text and "expected <= 15 mg; got 20 mg" in n.text
    (ref,) = n.refs
    assert "Rapamune" in rep.sources[ref - 1].text and "Section 2" in rep.sources[ref - 1].text


def test_covariate_outside_the_cohort_gives_a_validity_note_and_one_warning() -> None:
    m = get_model(SIRO)
    rec = recommend(m, None, {"WT": 2.5})
    rep = build_report(m, rec, covariates={"WT": 2.5}, as_of=AS_OF)
    (wt,) = [v for v in rep.validity if v.text.startswith("Body weight")]
    assert wt.inside is False and "2.5 kg" in wt.text and "3.3-65 kg" in wt.text and "extrapolation" in wt.text
    assert len([n for n in rep.notices if "WT" in n.text or "weight" in n.text]) == 1
    assert rep.patient.covariates[0].inside_cohort is False
    age = [v for v in rep.validity if v.text.startswith("Age")]
    assert age and age[0].inside is None and "cannot judge" in age[0].text


def test_a_priori_report_says_there_is_nothing_to_diagnose() -> None:
    m = get_model(SIRO)
    rep = build_report(m, recommend(m, None, {"WT": 12}), covariates={"WT": 12}, as_of=AS_OF)
    assert not rep.individualised and not rep.diagnostics.available and rep.patient.levels == []
    assert "cannot judge" in rep.diagnostics.summary
    assert rep.curve is not None and rep.curve.regimen_change_h is None
    assert rep.suggestion.basis.startswith("Population (a priori)")
    assert any("measure a level" in c for c in rep.caveats)


def test_same_inputs_and_date_give_the_same_report() -> None:
    a = _trough_report(3.5).as_dict()
    b = _trough_report(3.5).as_dict()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    m = get_model(SIRO)
    rec = recommend_from_trough("sirolimus", 3.5, "ng/mL", 0.8, 24, {"WT": 12}, model_id=SIRO)
    other = build_report(m, rec, covariates={"WT": 12}, as_of="2027-03-04").as_dict()
    assert other["as_of"] == "2027-03-04"
    assert {k: v for k, v in other.items() if k != "as_of"} == {k: v for k, v in a.items() if k != "as_of"}


def test_a_date_that_is_not_a_date_is_refused() -> None:
    m = get_model(SIRO)
    with pytest.raises(DosingError, match=r"as_of: expected a date YYYY-MM-DD, got '02/01/2026'"):
        build_report(m, recommend(m, None, {"WT": 12}), as_of="02/01/2026")


def test_a_report_for_another_model_than_the_recommendation_is_refused() -> None:
    m = get_model(SIRO)
    rec = recommend(m, None, {"WT": 12})
    with pytest.raises(DosingError, match="another model"):
        build_report(get_model("gao2022-cyclosporine"), rec, as_of=AS_OF)


def test_auc24_target_is_not_drawn_as_a_concentration_band() -> None:
    rec = recommend_from_trough("sirolimus", 8, "ng/mL", 1, 24, {"WT": 12}, model_id=SIRO, metric="auc24",
                                target_low=150, target_high=300)
    rep = build_report(get_model(SIRO), rec, covariates={"WT": 12}, as_of=AS_OF)
    assert rep.target.unit == "ng/mL*h" and rep.target.on_plot is False
    assert rep.target.source == "entered by the user" and rep.target.refs == []
    assert any("AUC24" in c for c in rep.caveats)


def _covariates_for(model_id: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, c in get_model(model_id).spec.covariates.items():
        if c.allowed:
            out[name] = c.allowed[0]
        elif c.min is not None and c.max is not None:
            out[name] = round((c.min + c.max) / 2, 2)
        elif c.default is None:
            out[name] = {"WT": 20.0, "TBIL": 10.0, "EGFR": 90.0, "HCT": 0.33}.get(name, 1.0)
    return out


CLINICAL = sorted(m.id for m in all_models() if m.spec.kind == "clinical")


@pytest.mark.parametrize("model_id", CLINICAL)
def test_report_text_is_plain_words_without_internal_ids(model_id: str) -> None:
    m = get_model(model_id)
    covs = _covariates_for(model_id)
    rec = recommend(m, None, covs)
    d = build_report(m, rec, covariates=covs, as_of=AS_OF).as_dict()
    text = "\n".join(_text_fields(d))
    assert IPEX_CAVEAT in d["caveats"]
    for word in BANNED:
        assert word not in text, f"{word!r} in the {model_id} report"
    ids = [x.id for x in all_models()]
    assert not [i for i in ids if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", text)]
    assert d["model"]["id"] == model_id  # the id travels as data for API clients, never in the text


def test_plain_rewrites_working_notes_and_model_ids() -> None:
    assert plain("section 3; not re-checked in this session") == (
        "section 3 (not re-checked against the current label)")
    assert plain("via nlmixr2lib transcription") == "as coded in the nlmixr2lib model library"
    assert plain("the model fan2024-sirolimus refuses") == "the Fan 2024 model refuses"


def test_model_choice_is_included_whatever_list_of_models_it_holds() -> None:
    m = get_model(SIRO)
    rec = recommend(m, None, {"WT": 12})
    rec.model_choice = {  # a plain dict, as another producer might attach it
        "method": "population match", "chosen_model": SIRO,
        "reason": f"no levels: {SIRO} has the closest population",
        "models": [{"model_id": SIRO, "citation": m.spec.citation.text, "doi": m.spec.citation.doi, "weight": 0.7},
                   {"model_id": "gao2022-cyclosporine", "citation": "Gao 2022 paper", "weight": 0.3,
                    "usable": False, "excluded_because": "another drug"}],
        "prediction_range": [5.5, 9.25], "source": "Uster DW et al. Clin Pharmacol Ther 2021, doi:10.1002/cpt.2065"}
    d = build_report(m, rec, covariates={"WT": 12}, as_of=AS_OF).as_dict()
    mc = d["model_choice"]
    assert mc["chosen"] == "Fan 2024" and mc["reason"] == "no levels: the Fan 2024 model has the closest population"
    assert [(x["label"], x["chosen"], x["weight"]) for x in mc["models"]] == [
        ("Fan 2024", True, 0.7), ("Gao 2022", False, 0.3)]
    assert mc["prediction_range"] == [5.5, 9.25]
    (ref,) = mc["refs"]
    assert d["sources"][ref - 1]["doi"] == "10.1002/cpt.2065"
    assert _all_refs(d) == {s["number"] for s in d["sources"]}


def test_model_choice_from_model_selection_lists_every_candidate() -> None:
    select = pytest.importorskip("ipexrx.dosing.select")
    rec = select.recommend_for_drug("sirolimus", {"WT": 12}, level=3.5, level_unit="ng/mL", dose_mg=0.8,
                                    interval_h=24)
    rep = build_report(get_model(rec.model_id), rec, covariates={"WT": 12}, as_of=AS_OF)
    assert rep.model_choice is not None
    assert len(rep.model_choice.models) == len(rec.model_choice.candidates) >= 2
    assert sum(x.chosen for x in rep.model_choice.models) == 1
    assert rep.model_choice.method == rec.model_choice.method


def _reading_order_agrees(body: str, listed: list[int]) -> None:
    """Inline numbers and the numbered list agree: every number used is listed, every entry is used, and the
    numbers first appear 1, 2, 3 ... as the report is read."""
    from ipexrx.reference.citations import numbers_in

    used = numbers_in(body)
    assert listed == list(range(1, len(listed) + 1))
    assert set(used) == set(listed), sorted(set(used) ^ set(listed))
    first_use = list(dict.fromkeys(used))
    assert first_use == sorted(first_use), first_use


# an input-check warning on the model's cohort (cites the model) below a fit-diagnostics alert (cites Box and
# Savic): the alert is read first, so its sources are [1, 2] and the model's paper [3]
@pytest.mark.parametrize("level,dose,wt", [(3.5, 0.8, 12), (60, 1, 20), (10, 1, 150)])
def test_printed_report_cites_numbers_its_sources_list_holds_in_reading_order(level: float, dose: float,
                                                                              wt: float) -> None:
    import html as html_lib

    from ipexrx.report import render_tdm_html

    rep = _trough_report(level, dose=dose, wt=wt)
    page = render_tdm_html(rep)
    body, _, tail = page.partition('<section id="sources">')
    body = re.sub(r"<(style|script|svg)\b.*?</\1>", "", body.split("<body>", 1)[1], flags=re.S)
    listed = [int(n) for n in re.findall(r'<li value="(\d+)" id="source-\1">', tail)]
    _reading_order_agrees(html_lib.unescape(re.sub(r"<[^>]+>", " ", body)), listed)
    assert listed == [s.number for s in rep.sources]
    d = rep.as_dict()  # the JSON (`ipexrx dose report --json`) carries the same numbers and list
    assert _all_refs(d) == {s["number"] for s in d["sources"]} == set(listed)
    if level == 10:  # the case whose numbers followed the build order, not the reading order, before
        assert rep.notices[0].topic == "fit diagnostics" and rep.notices[0].refs == [1, 2]
        assert rep.model.refs == [3]
