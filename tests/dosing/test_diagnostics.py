"""Fit diagnostics (issue 13 item 2): IWRES, ETA z-scores and shrinkage, prior-data conflict."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import chi2
from typer.testing import CliRunner

from ipexrx.cli import get_app
from ipexrx.dosing.data import Record, Subject, read_nmtran
from ipexrx.dosing.diagnostics import CHECK_ADVICE, ETA_Z_LIMIT, IWRES_LIMIT, diagnose
from ipexrx.dosing.engine import build_design, predict
from ipexrx.dosing.estimate import fit
from ipexrx.dosing.model import get_model
from ipexrx.dosing.recommend import recommend, recommend_from_trough


def _sirolimus(level: float):
    return recommend_from_trough("sirolimus", level, "ng/mL", 1.0, 24.0, {"WT": 20.0})


def test_sirolimus_60_ng_ml_on_1_mg_day_is_not_explained_and_warns():
    rec = _sirolimus(60.0)  # issue 13 example
    dg = rec.diagnostics
    assert dg is not None and not dg.explained
    assert dg.levels[0].flagged and dg.levels[0].iwres > IWRES_LIMIT
    assert dg.etas[0].flagged and abs(dg.etas[0].z) > ETA_Z_LIMIT
    assert dg.conflict is not None and dg.conflict.flagged
    named = [w for w in rec.warnings if "60 ng/mL at t = 24 h" in w]
    assert len(named) == 3  # IWRES, ETA and conflict warnings each name the level with its unit and time
    for w in named:
        assert CHECK_ADVICE in w
        for word in ("sample timing", "dose history", "adherence", "interacting drugs", "assay"):
            assert word in w


def test_typical_sirolimus_level_is_explained_without_warnings():
    rec = _sirolimus(8.0)  # near the population prediction (about 6 ng/mL at 20 kg on 1 mg/day)
    dg = rec.diagnostics
    assert dg is not None and dg.explained and dg.warnings == []
    assert not any(CHECK_ADVICE in w for w in rec.warnings)
    assert abs(dg.levels[0].iwres) < 1 and abs(dg.etas[0].z) < 1
    assert dg.conflict is not None and not dg.conflict.flagged and dg.conflict.p_value > 0.1


def test_values_follow_their_definitions():
    rec = _sirolimus(18.0)
    fr, dg = rec.fit, rec.diagnostics
    assert fr is not None and dg is not None
    m = get_model("fan2024-sirolimus")
    sd_add = m.outputs[0][3].add_var ** 0.5  # additive error model
    lv = dg.levels[0]
    assert lv.iwres == pytest.approx((18.0 - fr.ipred[0]) / sd_add)
    omega = float(m.omega[0, 0])
    e = dg.etas[0]
    assert e.z == pytest.approx(fr.eta[0] / math.sqrt(omega))
    assert e.posterior_sd == pytest.approx(math.sqrt(fr.etc[0, 0]))
    assert e.shrinkage == pytest.approx(1 - math.sqrt(1 - fr.etc[0, 0] / omega))
    assert dg.conflict is not None
    assert dg.conflict.statistic == pytest.approx(lv.iwres**2 + fr.eta[0] ** 2 / omega)
    assert dg.conflict.df == 1 and dg.conflict.limit == pytest.approx(chi2.ppf(0.99, 1))


def test_a_priori_recommendation_has_no_diagnostics():
    rec = recommend("fan2024-sirolimus", None, {"WT": 20.0})
    assert rec.diagnostics is None and rec.as_dict()["diagnostics"] is None


def test_multi_level_fit_counts_levels_and_names_them(data_dir):
    m = get_model("nonmem-001")
    s = read_nmtran(data_dir / "nm4000_sample_001.csv", m.covariate_names())[0]
    fr = fit(m, s)
    dg = diagnose(fr)
    n_obs = int(np.sum(~fr.blq & ~np.isnan(fr.dv)))
    assert len(dg.levels) == n_obs and dg.conflict is not None and dg.conflict.df == n_obs
    assert [e.name for e in dg.etas] == fr.eta_names
    assert dg.explained  # data simulated from the model


def test_nonmem_reference_subjects_are_explained(data_dir):
    """Data of Le Louedec 2021 (simulated from these models): no subject of the sample is flagged."""
    for run in ("001", "003", "405"):
        m = get_model(f"nonmem-{run}")
        for s in read_nmtran(data_dir / f"nm4000_sample_{run}.csv", m.covariate_names()):
            assert diagnose(fit(m, s)).explained, (run, s.id)


def test_conflict_limit_is_calibrated_on_data_simulated_from_the_model():
    """Under the model Q ~ chi-square(n levels): the 99 % limit flags about 1 % of simulated patients."""
    m = get_model("fan2024-sirolimus")
    rng = np.random.default_rng(7)
    covs = {"WT": 20.0}
    sd = m.outputs[0][3].add_var ** 0.5
    flagged, pvals = 0, []
    n = 0
    while n < 200:
        dose = Record(time=0, evid=1, amt=1.0, cmt=min(m.dose_f) + 1, ii=24, ss=1, covariates=covs)
        obs = Record(time=24, evid=0, cmt=m.outputs[0][0] + 1, dv=1.0, covariates=covs)
        d = build_design(m, Subject("s", [dose, obs]))
        eta = rng.standard_normal(1) * math.sqrt(float(m.omega[0, 0]))
        y = float(predict(d, eta[None]).real[0][d.o_is_data][0] + sd * rng.standard_normal())
        if y <= 0:
            continue
        n += 1
        obs = Record(time=24, evid=0, cmt=m.outputs[0][0] + 1, dv=y, covariates=covs)
        dg = diagnose(fit(m, Subject(str(n), [dose, obs])))
        assert dg.conflict is not None
        flagged += dg.conflict.flagged
        pvals.append(dg.conflict.p_value)
    assert flagged <= 8  # expected 2 of 200; P(>8 | p=0.01) < 1e-3
    assert 0.35 < np.mean(np.array(pvals) < 0.5) < 0.65  # p-values roughly uniform


def test_fit_without_design_is_refused():
    rec = _sirolimus(8.0)
    assert rec.fit is not None
    rec.fit.design = None
    with pytest.raises(ValueError):
        diagnose(rec.fit)


def test_cli_recommend_prints_diagnostics_and_json_carries_them():
    runner = CliRunner()
    args = ["dose", "recommend", "--drug", "sirolimus", "--level", "60", "--level-unit", "ng/mL", "--dose", "1",
            "--interval", "24", "--cov", "WT=20"]
    r = runner.invoke(get_app(), args)
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "Fit diagnostics: a level the model cannot explain" in out
    assert "IWRES" in out and "prior-data conflict" in out and "adherence" in out
    r = runner.invoke(get_app(), [*args, "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["diagnostics"]["explained"] is False
    assert d["diagnostics"]["levels"][0]["unit"] == "ng/mL" and d["diagnostics"]["levels"][0]["flagged"]
    r = runner.invoke(get_app(), [*args[:5], "8", *args[6:], "--json"])
    assert json.loads(r.output)["diagnostics"]["explained"] is True


def test_blq_rows_carry_no_residual_and_are_not_counted():
    m = get_model("mapbayr-blq")
    recs = [Record(time=0, evid=1, amt=100, cmt=1, rate=1200, lloq=1)]
    recs += [Record(time=t, cmt=1, dv=y, lloq=1) for t, y in ((1, 75), (6, 25), (24, 7))]
    recs.append(Record(time=48, cmt=1, dv=-1, blq=True, lloq=1))
    dg = diagnose(fit(m, Subject("1", recs)))
    assert [lv.time_h for lv in dg.levels] == [1, 6, 24]
    assert dg.conflict is not None and dg.conflict.df == 3
    assert dg.conflict.limit == pytest.approx(chi2.ppf(0.99, 3))


def test_fit_json_and_cli_text_carry_the_diagnostics(tmp_path):
    csv = tmp_path / "sirolimus60.csv"
    csv.write_text("ID,TIME,EVID,AMT,CMT,II,SS,DV,WT\n1,0,1,1,1,24,1,.,20\n1,24,0,.,2,0,0,60,20\n")
    runner = CliRunner()
    r = runner.invoke(get_app(), ["dose", "fit", "--model", "fan2024-sirolimus", "--data", str(csv)])
    assert r.exit_code == 0, r.output
    assert "prior-data conflict" in r.output and "60 ng/mL at t = 24 h" in r.output
    r = runner.invoke(get_app(), ["dose", "fit", "--model", "fan2024-sirolimus", "--data", str(csv), "--json"])
    (res,) = json.loads(r.output)
    assert res["diagnostics"]["explained"] is False and res["diagnostics"]["conflict"]["flagged"]
