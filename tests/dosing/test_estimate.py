"""MAP estimation against NONMEM POSTHOC and mapbayr's published test figures (docs: tdm.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ipexrx.dosing.data import Record, Subject, read_nmtran
from ipexrx.dosing.engine import build_design, individual_parameters, predict
from ipexrx.dosing.errors import DataError, EstimationError
from ipexrx.dosing.estimate import fit, map_objective
from ipexrx.dosing.model import get_model, with_thetas
from ipexrx.dosing.nonmem import read_phi


def test_map_objective_equals_mapbayr_reference_value_for_id1(data_dir):
    m = get_model("mapbayr-001")
    s = read_nmtran(data_dir / "data_to_fit001.csv")[0]
    eta = [0.4050570108131819, 0.07285029212110256, -0.07495339444174362]
    assert map_objective(m, s, np.array(eta)) == pytest.approx(22.29351276398179, rel=1.5e-8)


def _check_against_phi(model_id: str, csv, phi_path, eta_tol=1e-4, obj_tol=1e-3, etc_tol=1e-3):
    m = get_model(model_id)
    phi = read_phi(phi_path)
    subjects = read_nmtran(csv, m.covariate_names())
    assert len(subjects) == len(phi)
    for s in subjects:
        r = fit(m, s)
        ref = phi[s.id]
        assert r.converged, (s.id, r.message)
        assert np.max(np.abs(r.eta - ref.eta)) <= eta_tol, (s.id, r.eta, ref.eta)
        assert abs(r.obj - ref.obj) <= obj_tol, (s.id, r.obj, ref.obj)
        # ETC: diagonal relative, off-diagonal relative to sqrt(ETC_ii ETC_jj)
        scale = np.sqrt(np.outer(np.diag(ref.etc), np.diag(ref.etc)))
        assert np.max(np.abs(r.etc - ref.etc) / scale) <= etc_tol, (s.id, r.etc, ref.etc)


def test_posthoc_etas_obj_and_etc_match_nonmem_run001_mapbayr_examples(data_dir):
    _check_against_phi("mapbayr-001", data_dir / "data_to_fit001.csv", data_dir / "run001.phi",
                       eta_tol=1e-5, obj_tol=1e-5, etc_tol=1e-5)


@pytest.mark.parametrize("run", ["001", "405"])
def test_posthoc_matches_nonmem_on_a_sample_of_the_4000_subjects(data_dir, run):
    _check_against_phi(f"nonmem-{run}", data_dir / f"nm4000_sample_{run}.csv",
                       data_dir / f"nm4000_sample_run{run}.phi")


def test_lag_model_map_objective_is_never_worse_than_nonmem(data_dir):
    m = get_model("nonmem-003")
    phi = read_phi(data_dir / "nm4000_sample_run003.phi")
    subjects = read_nmtran(data_dir / "nm4000_sample_003.csv")
    same = 0
    for s in subjects:
        d = build_design(m, s)
        r = fit(m, d)
        ref = phi[s.id]
        assert r.ofv <= map_objective(m, d, ref.eta) + 1e-3, s.id
        if np.max(np.abs(r.eta - ref.eta)) <= 1e-4:
            same += 1
            assert abs(r.obj - ref.obj) <= 1e-3
    assert same >= 0.8 * len(subjects)


def test_lag_model_escapes_the_local_optimum_of_subject_475(data_dir):
    """Subject 475: two valleys along the lag ETA; a plain local search from ETA=0 finds the worse one."""
    m = get_model("nonmem-003")
    s = next(x for x in read_nmtran(data_dir / "nm4000_sample_003.csv") if x.id == "475")
    ref = read_phi(data_dir / "nm4000_sample_run003.phi")["475"]
    r = fit(m, s, n_starts=1)
    assert r.ofv <= map_objective(m, s, ref.eta) + 1e-6
    assert np.max(np.abs(r.eta - ref.eta)) < 1e-4


@pytest.mark.parametrize("sid", ["2107", "975"])
def test_lag_model_crosses_dose_arrival_kinks(data_dir, sid):
    """2107: NONMEM's optimum lies just across the lag value where a dose arrives at a sampling time;
    975: the optimum sits on such a crossing, where only the other ETAs can still improve."""
    m = get_model("nonmem-003")
    s = next(x for x in read_nmtran(data_dir / "nm4000_sample_003.csv") if x.id == sid)
    ref = read_phi(data_dir / "nm4000_sample_run003.phi")[sid]
    r = fit(m, s)
    assert r.ofv <= map_objective(m, s, ref.eta) + 1e-6


def test_time_varying_covariates_reproduce_mapbayr_clearance_on_row_1(data_dir):
    m = get_model("mapbayr-301")
    s = read_nmtran(data_dir / "data_to_fit301.csv", ["BW"])[0]  # SEX column dropped: default 0
    s = Subject(s.id, [r for r in s.records if r.time < 72])
    r = fit(m, s)
    d = build_design(m, s)
    cl_row1 = individual_parameters(d, r.eta[None])["CL"][0, 0]
    assert cl_row1 == pytest.approx(5.08330165, rel=1e-4)
    assert any("SEX" in w and "absent" in w for w in r.warnings)


def test_parent_metabolite_pred_and_ipred_match_nonmem(data_dir):
    m = get_model("mapbayr-401")
    s = read_nmtran(data_dir / "data_to_fit401.csv")[0]
    r = fit(m, s)
    first4 = slice(0, 4)  # t = 1.5 and 4.4 h, parent then metabolite
    np.testing.assert_allclose(r.pred[first4], [105.262, 4.564, 115.971, 18.985], rtol=2e-4)
    np.testing.assert_allclose(r.ipred[first4], [92.380, 4.227, 98.689, 17.745], rtol=2e-4)
    np.testing.assert_allclose(r.eta, [0.44326, 0.07524, -0.07393, 0.09152, 0.39119], atol=1e-4)
    assert r.ofv == pytest.approx(34.39639, abs=1e-4)


def _blq_subject(sid: str, m3: bool) -> Subject:
    recs = [Record(time=0, evid=1, amt=100, cmt=1, rate=1200, lloq=1)]
    recs += [Record(time=t, cmt=1, dv=y, lloq=1) for t, y in ((1, 75), (6, 25), (24, 7))]
    recs.append(Record(time=48, cmt=1, dv=-1 if m3 else 1, blq=m3, lloq=1))
    return Subject(sid, recs)


def test_blq_m3_likelihood_reproduces_mapbayr_etas():
    m = get_model("mapbayr-blq")
    r1 = fit(m, _blq_subject("1", True))
    r2 = fit(m, _blq_subject("2", False))
    np.testing.assert_allclose(r1.eta, [-0.0427451, -0.122636], atol=1e-4)
    np.testing.assert_allclose(r2.eta, [-0.0706898, -0.113914], atol=1e-4)


def _averaging_subjects(amt: float, sid: str, dual: bool) -> Subject:
    recs = [Record(time=0, evid=1, amt=amt, cmt=1, ii=24, addl=3)]
    if dual:
        recs.append(Record(time=0, evid=1, amt=amt, cmt=2, ii=24, addl=3, rate=-2))
    recs.append(Record(time=96, cmt=2, dv=1.0))
    return Subject(sid, recs)


def test_model_averaging_figures_validate_dual_zero_and_first_order_absorption():
    m1 = get_model("mapbayr-001")
    m6 = with_thetas(get_model("mapbayr-006"), TVCL=1.0)
    ofv1 = [fit(m1, _averaging_subjects(a, sid, False)).ofv for a, sid in ((100, "2"), (200, "9"))]
    ofv6 = [fit(m6, _averaging_subjects(a, sid, True)).ofv for a, sid in ((100, "2"), (200, "9"))]
    assert ofv1 == pytest.approx([-2.384, -3.037], abs=1e-3)
    w = [1 / (1 + math.exp(-(b - a) / 2)) for a, b in zip(ofv1, ofv6, strict=True)]
    assert w == pytest.approx([0.8564, 0.9833], abs=1e-3)


def test_fit_without_observations_returns_the_prior_and_its_covariance():
    m = get_model("mapbayr-001")
    r = fit(m, Subject("p", [Record(time=0, evid=1, amt=100, cmt=1)]))
    assert np.all(r.eta == 0)
    np.testing.assert_allclose(r.etc, m.omega)


def test_impossible_data_fail_loudly_instead_of_returning_a_silent_estimate():
    m = get_model("mapbayr-001")
    s = Subject("z", [Record(time=0, evid=1, amt=100, cmt=1), Record(time=1, cmt=2, dv=float("inf"))])
    with pytest.raises(DataError, match="finite"):
        fit(m, s)
    # a log-additive model cannot take a zero level: it must be reported as BLQ, not guessed
    s2 = Subject("z", [Record(time=0, evid=1, amt=100, cmt=1), Record(time=1, cmt=2, dv=0.0)])
    with pytest.raises(DataError, match="BLQ"):
        fit(get_model("gao2022-cyclosporine"), Subject("z", [
            Record(time=0, evid=1, amt=100, cmt=1, covariates={"WT": 30, "TBIL": 10}),
            Record(time=1, cmt=2, dv=0.0, covariates={"WT": 30, "TBIL": 10})]))
    _ = s2


def test_optimiser_reports_non_convergence_instead_of_hiding_it(monkeypatch):
    from ipexrx.dosing import estimate

    m = get_model("mapbayr-001")
    s = Subject("w", [Record(time=0, evid=1, amt=10000, cmt=1), Record(time=4, cmt=2, dv=100.0)])
    real = estimate.newton
    monkeypatch.setattr(estimate, "newton", lambda p, st, b, **k: real(p, st, b, maxit=1))
    with pytest.raises(EstimationError, match="did not converge"):
        fit(m, s)
    r = fit(m, s, raise_on_failure=False)
    assert not r.converged and any("did not converge" in w for w in r.warnings)


def test_covariance_prediction_band_contains_the_ipred():
    m = get_model("mapbayr-001")
    s = Subject("q", [Record(time=0, evid=1, amt=10000, cmt=1), Record(time=4, cmt=2, dv=100.0)])
    r = fit(m, s)
    assert np.all(np.linalg.eigvalsh(r.etc) > 0)
    d = build_design(m, s)
    assert predict(d, r.eta[None]).real[0, 0] == pytest.approx(r.ipred[0])
