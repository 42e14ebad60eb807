"""Choosing a model for a patient: population match without levels, likelihood weights with levels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from ipexrx.dosing import DosingError
from ipexrx.dosing.errors import NoUsableModelError
from ipexrx.dosing.model import get_model
from ipexrx.dosing.select import (
    assess_match,
    clinical_models,
    exclusion_in_words,
    minus2_log_likelihood,
    rank_models,
    recommend_for_drug,
)

runner = CliRunner()


def test_a_model_needing_a_covariate_the_child_lacks_is_not_used_and_says_which():
    andrews = get_model("andrews2018-tacrolimus")
    c = assess_match(andrews, {"WT": 10.0}, age_years=2)
    assert not c.usable and "DONOR_DECEASED" in (c.excluded_because or "")
    assert c.missing == ["DONOR_DECEASED", "EGFR", "HCT"]


def test_why_a_model_is_not_used_is_said_in_words_from_the_model_file() -> None:
    """For clinical text: the model as a citation (author, year, drug), each missing covariate by its label in the
    model file; neither the model's id nor a covariate code."""
    andrews = get_model("andrews2018-tacrolimus")
    words = exclusion_in_words(assess_match(andrews, {"WT": 10.0}, age_years=2))
    labels = [andrews.spec.covariates[n].in_words() for n in ("DONOR_DECEASED", "EGFR", "HCT")]
    assert words == f"the Andrews 2018 tacrolimus model needs to know {labels[0]}, {labels[1]} and {labels[2]}"
    assert labels[0] == "whether the kidney donor was deceased"
    oral = exclusion_in_words(assess_match(get_model("fan2024-sirolimus"), {"WT": 20.0}, 5, route="intravenous"))
    assert oral == "the Fan 2024 sirolimus model was built on oral doses; the regimen is intravenous"
    with pytest.raises(NoUsableModelError) as err:
        recommend_for_drug("tacrolimus", {"WT": 10.0}, age_years=2)  # no co-medication list: Chen 2022 needs one
    assert "andrews2018-tacrolimus" in str(err.value)  # the dosing tools name the model they are given by id
    assert err.value.needs_comedications
    text = "; ".join(err.value.reasons)
    assert "the Chen 2022 tacrolimus model needs to know whether posaconazole is given" in text
    assert not any(m.id in text for m in clinical_models("tacrolimus")) and "POSACONAZOLE" not in text


def test_every_clinical_model_names_its_paper_and_labels_its_covariates() -> None:
    from ipexrx.dosing.model import all_models

    for m in all_models():
        if m.spec.kind != "clinical":
            continue
        assert m.spec.citation_name.endswith(f" {m.spec.drug} model") and m.id not in m.spec.citation_name
        for name, cv in m.spec.covariates.items():
            assert cv.label and name not in cv.label, (m.id, name)


def test_population_match_rewards_weight_and_age_inside_the_cohort_and_says_so():
    fan = get_model("fan2024-sirolimus")
    inside = assess_match(fan, {"WT": 20.0}, age_years=5)
    outside = assess_match(fan, {"WT": 80.0}, age_years=30)
    assert inside.match_score > outside.match_score
    assert any("inside the cohort" in m for m in inside.matches)
    assert any("outside the cohort" in m for m in outside.mismatches)


def test_a_missing_age_is_cannot_judge_not_a_match():
    c = assess_match(get_model("fan2024-sirolimus"), {"WT": 20.0}, age_years=None)
    assert any("age not given: cannot judge" in m for m in c.mismatches)
    assert not any("age" in m for m in c.matches)


def test_an_iv_regimen_cannot_use_an_oral_model():
    c = assess_match(get_model("fan2024-sirolimus"), {"WT": 20.0}, 5, route="intravenous")
    assert not c.usable and "oral" in (c.excluded_because or "")


def test_rank_puts_usable_models_first():
    ranked = rank_models("tacrolimus", {"WT": 10.0}, age_years=2)
    usable = [c.usable for c in ranked]
    assert usable == sorted(usable, reverse=True)


def test_a_covariate_no_model_of_the_drug_knows_is_refused():
    with pytest.raises(DosingError, match="WEIGHT belong to no sirolimus model"):
        recommend_for_drug("sirolimus", {"WT": 20.0, "WEIGHT": 20.0})


def test_an_unknown_drug_is_refused_with_the_modelled_drugs():
    with pytest.raises(DosingError, match="no dosing model for 'aspirin'.*sirolimus"):
        clinical_models("aspirin")


def test_a_priori_the_choice_carries_the_reason_and_every_usable_model_is_compared():
    rec = recommend_for_drug("sirolimus", {"WT": 20.0}, age_years=5)
    mc = rec.model_choice
    assert mc.method == "population match" and mc.chosen_model_id == rec.model_id
    assert "no levels" in mc.reason and "inside the cohort" in mc.reason
    live = [c for c in mc.candidates if c.usable]
    assert all(c.suggested_daily_dose_mg and c.predicted_for_chosen for c in live)
    assert all(c.weight is None for c in mc.candidates)  # no data: no likelihood weights
    assert rec.as_dict()["model_choice"]["chosen_model_id"] == rec.model_id


def test_with_a_level_models_are_weighted_by_likelihood_and_the_weights_sum_to_one():
    rec = recommend_for_drug("sirolimus", {"WT": 20.0}, age_years=5, level=8, level_unit="ng/mL", dose_mg=1,
                             interval_h=24)
    mc = rec.model_choice
    live = [c for c in mc.candidates if c.usable]
    assert mc.method == "model averaging"
    assert math.isclose(sum(c.weight for c in live), 1.0, rel_tol=1e-12)
    best = max(live, key=lambda c: c.weight)
    assert best.model_id == rec.model_id == mc.chosen_model_id
    # weights follow exp(-LL/2): the ratio of two weights is fixed by their likelihood difference
    for a in live:
        for b in live:
            expect = math.exp(-0.5 * (a.minus2_log_likelihood - b.minus2_log_likelihood))
            assert math.isclose(a.weight / b.weight, expect, rel_tol=1e-9)
    lo, hi = mc.prediction_range
    assert lo <= mc.averaged_prediction <= hi


def test_the_laplace_likelihood_is_nonmem_obj_plus_the_log_jacobian_for_log_scale_errors():
    rec = recommend_for_drug("sirolimus", {"WT": 20.0}, level=8, level_unit="ng/mL", dose_mg=1, interval_h=24)
    assert math.isclose(minus2_log_likelihood(rec), rec.fit.obj, rel_tol=1e-12)  # additive error: no Jacobian
    from ipexrx.dosing.recommend import recommend_from_trough

    gao = recommend_from_trough("cyclosporine", 150, "ng/mL", 50, 12, {"WT": 28.0, "TBIL": 10.0},
                                model_id="gao2022-cyclosporine")
    assert get_model("gao2022-cyclosporine").outputs[0][3].model == "log_additive"
    assert math.isclose(minus2_log_likelihood(gao), gao.fit.obj + 2 * np.log(150.0), rel_tol=1e-12)


def test_an_impossible_input_is_refused_whatever_the_model():
    with pytest.raises(DosingError, match="far above|dose"):
        recommend_for_drug("sirolimus", {"WT": 20.0}, level=8, level_unit="ng/mL", dose_mg=500, interval_h=24)


def test_cli_by_drug_prints_the_model_choice():
    from ipexrx.cli import get_app

    res = runner.invoke(get_app(), ["dose", "recommend", "--drug", "sirolimus", "--cov", "WT=20", "--age", "5",
                                    "--level", "8", "--level-unit", "ng/mL", "--dose", "1", "--interval", "24"])
    assert res.exit_code == 0, res.output
    assert "Model choice (model averaging)" in res.output and "weight" in res.output


def test_cli_by_drug_without_any_usable_model_names_what_is_missing():
    from ipexrx.cli import get_app

    res = runner.invoke(get_app(), ["dose", "recommend", "--drug", "cyclosporine", "--cov", "WT=20"])
    if res.exit_code == 0:  # a weight-only cyclosporine model exists: then it is used and named
        assert "Model choice" in res.output
    else:
        assert "TBIL" in res.output and "Traceback" not in res.output


def test_every_co_medication_indicator_names_its_drug():
    from ipexrx.dosing.model import all_models

    for m in all_models():
        for name, cv in m.spec.covariates.items():
            if "given at the same time" in cv.description:
                assert cv.comedication == name.lower(), (m.id, name)


def test_a_complete_co_medication_list_sets_the_indicators_and_says_so():
    rec = recommend_for_drug("tacrolimus", {"WT": 10.0}, age_years=2, co_medications=["posaconazole"])
    chen = next(c for c in rec.model_choice.candidates if c.model_id == "chen2022-tacrolimus")
    assert chen.usable and any("posaconazole: yes" in m for m in chen.matches)
    none = recommend_for_drug("tacrolimus", {"WT": 10.0}, age_years=2, co_medications=[])
    chen0 = next(c for c in none.model_choice.candidates if c.model_id == "chen2022-tacrolimus")
    assert any("posaconazole: no" in m for m in chen0.matches)
    # posaconazole lowers clearance (Chen 2022): the same regimen predicts a higher trough with it
    assert chen.predicted_for_chosen / rec.dose_mg > chen0.predicted_for_chosen / none.dose_mg


def test_without_a_co_medication_list_a_model_needing_one_is_not_used():
    with pytest.raises(DosingError, match="POSACONAZOLE"):
        recommend_for_drug("tacrolimus", {"WT": 10.0}, age_years=2)


def test_a_target_unit_is_read_like_a_level_unit_case_insensitive_and_molar():
    from ipexrx.dosing.recommend import choose_target

    fan = get_model("fan2024-sirolimus")
    lower = choose_target(fan, "trough", 5, 15, "ng/ml")
    assert (lower.low, lower.high, lower.unit) == (5, 15, "ng/mL")
    molar = choose_target(fan, "trough", 5, 15, "nmol/L")  # 914.2 g/mol: 1 nmol/L = 0.9142 ng/mL
    assert math.isclose(molar.low, 5 * 0.9142, rel_tol=1e-9) and "given as 5-15 nmol/L" in molar.context
    auc = choose_target(fan, "auc24", 100, 300, "ng/ml*h")
    assert auc.unit == "ng/mL*h" and auc.low == 100
    with pytest.raises(DosingError, match=r"\*h"):
        choose_target(fan, "auc24", 100, 300, "ng/mL")
    with pytest.raises(DosingError, match="not understood"):
        choose_target(fan, "trough", 5, 15, "ng")


def test_when_the_first_dosage_form_cannot_reach_the_range_the_suggestion_uses_one_that_can():
    from ipexrx.dosing.recommend import recommend_from_trough

    args = dict(model_id="chen2022-tacrolimus", target_low=5, target_high=10, target_unit="ng/mL")
    covs = {"WT": 9.5, "POSACONAZOLE": 1.0}
    auto = recommend_from_trough("tacrolimus", 14.2, "ng/mL", 0.5, 12, covs, **args)
    assert auto.form.startswith("granules") and 5 <= auto.predicted <= 10
    assert "cannot give a dose whose prediction is in range" in auto.warnings[0]
    asked = recommend_from_trough("tacrolimus", 14.2, "ng/mL", 0.5, 12, covs, form_index="capsule", **args)
    assert asked.form.startswith("capsule") and not asked.in_target  # the asked form is kept ...
    assert asked.alternatives[0]["note"].startswith("granules")      # ... and the form that can is offered
    assert "no capsule (immediate release) dose reaches the range" in asked.decision_reason
