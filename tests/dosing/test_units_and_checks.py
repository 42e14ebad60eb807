"""Concentration units (case-insensitive UCUM, molar units via the knowledge base's molar mass) and the input
checks run before any fit: a positive and a negative case for each unit and each check, the wiring through
the CLI, FHIR and the API, and a property test that no suggestion comes out of inputs with an error."""

from __future__ import annotations

import copy
import datetime as dt
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ipexrx.cli import get_app
from ipexrx.dosing.checks import InputCheckError, Problem, check_inputs, limits, require_ok
from ipexrx.dosing.data import Record, Subject
from ipexrx.dosing.engine import build_design, predict
from ipexrx.dosing.errors import DataError
from ipexrx.dosing.fhir_input import subject_from_fhir
from ipexrx.dosing.model import get_model
from ipexrx.dosing.recommend import recommend, recommend_from_trough
from ipexrx.dosing.units import convert_subject, factor_to, molar_mass, to_model_unit
from ipexrx.knowledge import get_kb

from .test_fhir_input import BUNDLE, OTHER

TAC = "andrews2018-tacrolimus"
COVS = {"WT": 20.0, "DONOR_DECEASED": 1.0, "EGFR": 80.0, "HCT": 0.35}
runner = CliRunner()


def tac_subject(*extra: Record, dose: float = 2.0, ii: float = 12.0, dv: float = 6.0) -> Subject:
    recs = [Record(time=0, evid=1, amt=dose, cmt=1, ii=ii, addl=5, covariates=dict(COVS)),
            Record(time=59.5, evid=0, cmt=2, dv=dv, covariates=dict(COVS)), *extra]
    recs.sort(key=lambda r: r.time)
    return Subject("p", recs)


def codes(problems: list[Problem], severity: str | None = None) -> set[str]:
    return {p.code for p in problems if severity is None or p.severity == severity}


# ---------------------------------------------------------------------------------------------- units

@pytest.mark.parametrize("unit", ["ng/mL", "ng/ml", "NG/ML", "ug/L", "µg/L", "μg/l", "mcg/L", "MCG/L", "ug/l"])
def test_mass_concentration_spellings_are_one_unit(unit):
    assert factor_to(unit, "ng/mL", "tacrolimus") == 1.0


@pytest.mark.parametrize(("unit", "model_unit", "factor"), [
    ("mg/L", "ng/mL", 1000.0), ("mg/l", "ng/mL", 1000.0), ("ng/mL", "mg/L", 0.001), ("mg/L", "mg/L", 1.0),
])
def test_mg_per_litre_where_a_model_uses_it(unit, model_unit, factor):
    assert factor_to(unit, model_unit, "tacrolimus") == pytest.approx(factor)
    mg_model = get_model("mapbayr-001")  # predicts in mg/L
    assert to_model_unit(1.0, unit, mg_model) == pytest.approx(factor_to(unit, "mg/L", "x"))


@pytest.mark.parametrize(("drug", "grams_per_mol"), [
    ("tacrolimus", 804.0), ("sirolimus", 914.2), ("cyclosporine", 1202.6)])
def test_molar_masses_come_from_the_knowledge_base(drug, grams_per_mol):
    assert molar_mass(drug) == get_kb().drugs[drug].molar_mass == grams_per_mol


@pytest.mark.parametrize(("drug", "unit", "value", "ng_ml"), [
    ("tacrolimus", "nmol/L", 10.0, 8.04), ("tacrolimus", "NMOL/L", 10.0, 8.04),
    ("sirolimus", "nmol/L", 10.0, 9.142), ("cyclosporine", "nmol/L", 100.0, 120.26),
    ("tacrolimus", "pmol/mL", 10.0, 8.04), ("tacrolimus", "pmol/L", 10000.0, 8.04),
    ("cyclosporine", "umol/L", 0.1, 120.26),
])
def test_molar_units_use_the_drug_molar_mass(drug, unit, value, ng_ml):
    assert value * factor_to(unit, "ng/mL", drug) == pytest.approx(ng_ml)


@pytest.mark.parametrize(("unit", "drug", "message"), [
    ("mg/dL", "tacrolimus", r"unit 'mg/dL' not understood; expected ng/mL .*nmol/L.*804 g/mol"),
    ("mmol/mol", "sirolimus", "not understood"),
    ("", "tacrolimus", "no unit given; expected ng/mL"),
    ("nmol/L", "examplinib (fictional)", "molar and the knowledge base holds no molar mass"),
])
def test_unknown_units_are_errors_naming_expected_and_got(unit, drug, message):
    with pytest.raises(DataError, match=message):
        factor_to(unit, "ng/mL", drug)


def test_convert_subject_scales_dv_and_lloq_and_says_so():
    m = get_model(TAC)
    s = Subject("p", [Record(time=0, evid=1, amt=2, ii=12, addl=3),
                      Record(time=10, evid=0, cmt=2, dv=10.0),
                      Record(time=20, evid=0, cmt=2, blq=True, lloq=1.0)])
    convert_subject(s, "nmol/L", m)
    assert s.records[1].dv == pytest.approx(8.04) and s.records[2].lloq == pytest.approx(0.804)
    assert any("converted from nmol/L to ng/mL" in w for w in s.warnings)
    same = Subject("q", [Record(time=0, evid=1, amt=2), Record(time=1, evid=0, cmt=2, dv=3.0)])
    convert_subject(same, "ug/L", m)
    assert same.records[1].dv == 3.0 and not same.warnings


def test_a_level_in_nmol_per_litre_gives_the_same_suggestion_as_in_ng_per_ml():
    covs = dict(COVS)
    a = recommend_from_trough("tacrolimus", 8.04, "ng/mL", 2.0, 12, covs)
    b = recommend_from_trough("tacrolimus", 10.0, "nmol/L", 2.0, 12, covs)
    c = recommend_from_trough("tacrolimus", 8.04, "MCG/L", 2.0, 12, covs)
    assert a.dose_mg == b.dose_mg == c.dose_mg and b.predicted == pytest.approx(a.predicted, rel=1e-6)
    assert b.target_unit == "ng/mL"
    assert any("10 nmol/L read as 8.04 ng/mL" in w for w in b.warnings)


def test_fhir_level_in_nmol_per_litre_is_converted():
    m = get_model(TAC)
    b = copy.deepcopy(BUNDLE)
    b["entry"][1]["resource"]["valueQuantity"] = {"value": 10.0, "unit": "nmol/L", "code": "nmol/L"}
    s = subject_from_fhir(b, m, covariates=OTHER)
    assert s.observations[0].dv == pytest.approx(8.04)


def test_cli_level_unit_is_case_insensitive_and_an_unknown_unit_exits_1():
    base = ["dose", "recommend", "--drug", "tacrolimus", "--level", "8", "--dose", "2", "--interval", "12",
            *sum((["--cov", f"{k}={v}"] for k, v in COVS.items()), [])]
    ok = runner.invoke(get_app(), [*base, "--level-unit", "UG/L", "--json"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(get_app(), [*base, "--level-unit", "mg/dL"])
    assert bad.exit_code == 1 and "unit 'mg/dL' not understood" in bad.output and "Traceback" not in bad.output


# ---------------------------------------------------------------------------------------------- checks

def test_a_plausible_subject_has_no_problems():
    assert check_inputs(get_model(TAC), tac_subject(), interval_h=12) == []


def test_every_problem_is_structured_with_its_source():
    (p,) = check_inputs(get_model(TAC), tac_subject(dose=500))
    assert (p.severity, p.code, p.path) == ("error", "dose-range", "subject p records[0].AMT")
    assert "500 mg every 12 h" in p.got and "0.3 mg/kg/day x 20 kg" in p.expected
    assert p.source.startswith("label-prograf#2")
    assert set(p.as_dict()) == {"severity", "code", "path", "message", "expected", "got", "source"}


@pytest.mark.parametrize(("model", "dose", "ii", "covs", "severity"), [
    (TAC, 500.0, 12.0, COVS, "error"),  # the 500 mg tacrolimus
    (TAC, 12.0, 12.0, COVS, "warning"),  # 24 mg/day in 20 kg: 4x the labelled 0.3 mg/kg/day
    (TAC, 2.0, 12.0, COVS, None),
    (TAC, 500.0, 12.0, {k: v for k, v in COVS.items() if k != "WT"}, "error"),  # no weight: 10 x 0.3 x 250 kg
    ("fan2024-sirolimus", 50.0, 24.0, {"WT": 20.0}, "error"),  # label: at most 40 mg on any day
    ("fan2024-sirolimus", 20.0, 0.0, {"WT": 20.0}, "warning"),  # above the 15 mg loading dose
    ("fan2024-sirolimus", 1.0, 24.0, {"WT": 20.0}, None),
    ("gao2022-cyclosporine", 2000.0, 12.0, {"WT": 20.0, "TBIL": 10.0}, "error"),
    ("gao2022-cyclosporine", 300.0, 12.0, {"WT": 20.0, "TBIL": 10.0}, "warning"),  # 30 mg/kg/day > 1.5 x 18
    ("gao2022-cyclosporine", 50.0, 12.0, {"WT": 20.0, "TBIL": 10.0}, None),
])
def test_dose_plausibility_per_drug(model, dose, ii, covs, severity):
    m = get_model(model)
    s = Subject("p", [Record(time=0, evid=1, amt=dose, cmt=1, ii=ii, addl=2 if ii else 0, covariates=dict(covs))])
    got = [p for p in check_inputs(m, s) if p.code == "dose-range"]
    assert {p.severity for p in got} == ({severity} if severity else set())


def test_adult_age_uses_the_adult_label_figure():
    m = get_model(TAC)
    s = tac_subject(dose=7.0)  # 14 mg/day in 20 kg: above 3 x the adult 0.2 but below 3 x the child 0.3 mg/kg/day
    assert "dose-range" in codes(check_inputs(m, s, age_years=30))
    assert "dose-range" not in codes(check_inputs(m, s, age_years=8))


@pytest.mark.parametrize(("ii", "bad"), [(0.01, True), (0.5, True), (200.0, True), (12.0, False), (168.0, False)])
def test_interval_between_1_and_168_h(ii, bad):
    m = get_model(TAC)
    assert ("interval-range" in codes(check_inputs(m, tac_subject(ii=ii), dose_mg=None), "error")) == bad
    assert ("interval-range" in codes(check_inputs(m, None, COVS, interval_h=ii), "error")) == bad


@pytest.mark.parametrize(("rate", "bad"), [(10000.0, True), (0.01, True), (1.0, False)])
def test_infusion_time_from_amt_over_rate(rate, bad):
    m = get_model(TAC)
    s = Subject("p", [Record(time=0, evid=1, amt=2, cmt=2, rate=rate, covariates=dict(COVS))])
    assert ("infusion-range" in codes(check_inputs(m, s), "error")) == bad


@pytest.mark.parametrize(("wt", "severity"), [(300.0, "error"), (0.1, "error"), (5.0, "warning"), (20.0, None)])
def test_weight_plausibility_and_model_validity_domain(wt, severity):
    m = get_model(TAC)
    probs = [p for p in check_inputs(m, None, {**COVS, "WT": wt}) if p.path == "covariates.WT"]
    assert {p.severity for p in probs} == ({severity} if severity else set())
    if severity == "warning":
        assert probs[0].code == "covariate-domain" and probs[0].expected == "11.6-83.7 kg"
        assert "Andrews" in probs[0].source


def test_weight_limits_are_the_stated_ones():
    w = limits()["general"]["weight_kg"]
    assert (w["min"], w["max"]) == (0.3, 250) and w["source"]


def test_haematocrit_outside_the_cohort_is_a_warning_inside_is_silent():
    m = get_model(TAC)
    assert codes(check_inputs(m, None, {**COVS, "HCT": 0.12}), "warning") == {"covariate-domain"}
    assert check_inputs(m, None, {**COVS, "HCT": 0.30}) == []


def test_unknown_covariate_names_are_refused():
    m = get_model(TAC)
    (p,) = check_inputs(m, None, {**COVS, "WEIGHT": 20})
    assert (p.severity, p.code, p.path, p.got) == ("error", "covariate-unknown", "covariates.WEIGHT", "WEIGHT")
    s = tac_subject()
    s.records[0].covariates["AGE"] = 5
    assert "covariate-unknown" in codes(check_inputs(m, s), "error")
    assert check_inputs(m, None, COVS) == []


def test_categorical_code_outside_its_allowed_values_is_an_error():
    m = get_model(TAC)
    assert "covariate-code" in codes(check_inputs(m, None, {**COVS, "CYP3A5_EXPR": 2}), "error")
    assert check_inputs(m, None, {**COVS, "CYP3A5_EXPR": 1}) == []


def test_sample_before_the_first_dose():
    m = get_model(TAC)
    s = Subject("p", [Record(time=0, evid=0, cmt=2, dv=5.0, covariates=dict(COVS)),
                      Record(time=1, evid=1, amt=2, ii=12, addl=3, covariates=dict(COVS))])
    assert "sample-before-dose" in codes(check_inputs(m, s), "error")
    zero = Subject("p", [Record(time=0, evid=0, cmt=2, dv=0.0, covariates=dict(COVS)),
                         Record(time=1, evid=1, amt=2, ii=12, addl=3, covariates=dict(COVS))])
    assert "sample-before-dose" not in codes(check_inputs(m, zero))
    ss = Subject("p", [Record(time=0, evid=0, cmt=2, dv=5.0, covariates=dict(COVS)),
                       Record(time=1, evid=1, amt=2, ii=12, ss=1, covariates=dict(COVS))])
    assert "sample-before-dose" not in codes(check_inputs(m, ss))


def test_a_time_in_the_future():
    m = get_model(TAC)
    assert "future-time" in codes(check_inputs(m, tac_subject(), now_h=30.0), "error")
    assert "future-time" not in codes(check_inputs(m, tac_subject(), now_h=100.0))


def test_fhir_records_dated_after_now_are_refused():
    m = get_model(TAC)
    early = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)  # before the 2026-11-04 level
    s = subject_from_fhir(BUNDLE, m, covariates=OTHER, now=early)
    assert "future-time" in codes(check_inputs(m, s), "error")
    later = subject_from_fhir(BUNDLE, m, covariates=OTHER, now=dt.datetime(2026, 11, 5, tzinfo=dt.UTC))
    assert "future-time" not in codes(check_inputs(m, later))


def test_duplicate_records():
    m = get_model(TAC)
    dup_dose = tac_subject(Record(time=0, evid=1, amt=2.0, cmt=1, ii=12, addl=5, covariates=dict(COVS)))
    assert "duplicate-record" in codes(check_inputs(m, dup_dose), "error")
    dup_level = tac_subject(Record(time=59.5, evid=0, cmt=2, dv=6.0, covariates=dict(COVS)))
    assert "duplicate-record" in codes(check_inputs(m, dup_level), "error")
    replicate = tac_subject(Record(time=59.5, evid=0, cmt=2, dv=6.4, covariates=dict(COVS)))
    assert codes(check_inputs(m, replicate), "warning") == {"duplicate-record"}
    assert "duplicate-record" not in codes(check_inputs(m, tac_subject(Record(time=70, evid=0, cmt=2, dv=6.0,
                                                                               covariates=dict(COVS)))))


def _typical(m, s):
    d = build_design(m, s)
    return predict(d, np.zeros((1, m.n_eta))).real[0][d.o_is_data]


def test_log_scale_dv_where_the_model_wants_linear():
    m = get_model(TAC)
    s = tac_subject(Record(time=35.5, evid=0, cmt=2, dv=1.0, covariates=dict(COVS)), dose=6.0)
    f = _typical(m, s)
    logged = copy.deepcopy(s)
    for r, fi in zip(logged.observations, f, strict=True):
        r.dv = float(math.log(fi))  # natural log of the typical level: what a log-transformed DV column holds
    assert "dv-log-scale" in codes(check_inputs(m, logged), "warning")
    linear = copy.deepcopy(s)
    for r, fi in zip(linear.observations, f, strict=True):
        r.dv = float(fi)
    assert "dv-log-scale" not in codes(check_inputs(m, linear))


def test_negative_dv_is_a_log_scale_error_and_the_log_error_model_still_takes_linear_levels():
    m = get_model(TAC)
    assert "dv-negative" in codes(check_inputs(m, tac_subject(dv=-0.7)), "error")
    cyc = get_model("gao2022-cyclosporine")  # log-additive error: the engine logs DV itself
    s = Subject("p", [Record(time=0, evid=1, amt=50, ii=12, addl=5, covariates={"WT": 20.0, "TBIL": 10.0}),
                      Record(time=59.5, evid=0, cmt=2, dv=120.0, covariates={"WT": 20.0, "TBIL": 10.0})])
    assert check_inputs(cyc, s) == []
    s.records[1].dv = -1.2
    assert "dv-negative" in codes(check_inputs(cyc, s), "error")


@pytest.mark.parametrize(("dv", "bad"), [(5000.0, True), (8.0, False)])
def test_an_implausibly_high_level_is_a_unit_slip(dv, bad):
    assert ("level-range" in codes(check_inputs(get_model(TAC), tac_subject(dv=dv)), "error")) == bad


def test_require_ok_raises_on_errors_and_returns_warnings():
    w = Problem("warning", "x", "p", "m", "e", "g", "s")
    e = Problem("error", "y", "p", "m", "e", "g", "s")
    assert require_ok([w]) == [w]
    with pytest.raises(InputCheckError) as info:
        require_ok([w, e])
    assert info.value.problems == [w, e] and "input check failed" in str(info.value)


# ---------------------------------------------------------------------------------------------- wiring

def test_recommend_stops_on_an_error_and_carries_warnings():
    m = get_model(TAC)
    with pytest.raises(InputCheckError, match="dose-range|far above"):
        recommend(m, tac_subject(dose=500))
    with pytest.raises(InputCheckError, match="interval"):
        recommend(m, None, COVS, interval_h=0.01)
    with pytest.raises(InputCheckError, match="far above"):
        recommend(m, None, COVS, current_dose_mg=500, current_interval_h=12)
    rec = recommend(m, None, {**COVS, "WT": 8.0})
    assert any(w.startswith("input check:") and "WT" in w for w in rec.warnings)


def test_cli_recommend_with_a_csv_needs_the_model_its_compartments_belong_to(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("ID,TIME,EVID,AMT,CMT,II,ADDL,DV,WT\n1,0,1,2,1,12,5,.,20\n1,60,0,.,2,.,.,6,20\n")
    res = runner.invoke(get_app(), ["dose", "recommend", "--drug", "tacrolimus", "--data", str(csv)])
    assert res.exit_code == 1 and "give --model" in res.output and "Traceback" not in res.output


def test_cli_recommend_with_a_bad_csv_exits_1(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("ID,TIME,EVID,AMT,CMT,II,ADDL,DV,WT,DONOR_DECEASED,EGFR,HCT\n"
                   "1,0,0,.,2,.,.,5,20,1,80,0.35\n1,1,1,2,1,12,5,.,20,1,80,0.35\n1,60,0,.,2,.,.,6,20,1,80,0.35\n")
    res = runner.invoke(get_app(), ["dose", "recommend", "--model", TAC, "--data", str(csv)])
    assert res.exit_code == 1 and "sample-before-dose" not in res.output  # the message, not the code
    assert "before the first recorded dose" in res.output and "Traceback" not in res.output
    fit = runner.invoke(get_app(), ["dose", "fit", "--model", TAC, "--data", str(csv)])
    assert fit.exit_code == 1 and "before the first recorded dose" in fit.output


def test_cli_fit_dv_unit_converts_the_csv(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("ID,TIME,EVID,AMT,CMT,II,ADDL,DV,WT,DONOR_DECEASED,EGFR,HCT\n"
                   "1,0,1,2,1,12,5,.,20,1,80,0.35\n1,59.5,0,.,2,.,.,10,20,1,80,0.35\n")
    a = runner.invoke(get_app(), ["dose", "fit", "--model", TAC, "--data", str(csv), "--dv-unit", "nmol/l",
                                  "--json"])
    assert a.exit_code == 0, a.output
    csv2 = tmp_path / "q.csv"
    csv2.write_text(csv.read_text().replace(",10,20", ",8.04,20"))
    b = runner.invoke(get_app(), ["dose", "fit", "--model", TAC, "--data", str(csv2), "--json"])
    assert b.exit_code == 0, b.output
    import json

    ea, eb = json.loads(a.output)[0]["eta"], json.loads(b.output)[0]["eta"]
    assert ea == pytest.approx(eb, abs=1e-6)


# ---------------------------------------------------------------------------------------------- property

FAULTS = ["dose", "interval", "before-dose", "duplicate", "unknown-cov", "weight", "future", "level", "negative"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fault=st.sampled_from(FAULTS), scale=st.floats(min_value=1.0, max_value=50.0),
       dv=st.floats(min_value=0.5, max_value=30.0), wt=st.floats(min_value=12.0, max_value=80.0))
def test_no_suggestion_is_ever_returned_when_an_input_check_fails(fault, scale, dv, wt):
    m = get_model(TAC)
    covs = {**COVS, "WT": wt}
    recs = [Record(time=0, evid=1, amt=2.0, cmt=1, ii=12, addl=5, covariates=dict(covs)),
            Record(time=59.5, evid=0, cmt=2, dv=dv, covariates=dict(covs))]
    now_h = None
    given_covs: dict[str, float] | None = None
    if fault == "dose":
        recs[0].amt = 10 * 0.3 * wt * scale  # per dose; x2 a day: > 10x the labelled mg/kg/day
    elif fault == "interval":
        recs[0].ii = 1.0 / (scale + 0.01)
    elif fault == "before-dose":
        recs.insert(0, Record(time=-scale, evid=0, cmt=2, dv=dv, covariates=dict(covs)))
    elif fault == "duplicate":
        recs.append(Record(time=59.5, evid=0, cmt=2, dv=dv, covariates=dict(covs)))
    elif fault == "unknown-cov":
        given_covs = {**covs, "AGE_Y": scale}
    elif fault == "weight":
        for r in recs:
            r.covariates["WT"] = 250.0 + scale
    elif fault == "future":
        now_h = 59.5 - scale / 10.0
    elif fault == "level":
        recs[1].dv = 500.0 * scale + 1.0
    elif fault == "negative":
        recs[1].dv = -dv
    s = Subject("p", recs, now_h=now_h)
    problems = check_inputs(m, s, given_covs)
    assert any(p.severity == "error" for p in problems), (fault, problems)
    with pytest.raises(InputCheckError):
        recommend(m, s, given_covs)
