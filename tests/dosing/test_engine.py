"""The closed-form engine against the ODE solver, steady state against repeated dosing, NOCB covariates."""

from __future__ import annotations

import numpy as np
import pytest

from ipexrx.dosing.data import Record, Subject, read_nmtran
from ipexrx.dosing.engine import build_design, predict
from ipexrx.dosing.model import get_model


def _subject(records: list[Record], sid: str = "1") -> Subject:
    return Subject(sid, records)


def _agree(model_id: str, subject: Subject, eta: np.ndarray, rtol: float = 1e-7) -> np.ndarray:
    m = get_model(model_id)
    d = build_design(m, subject)
    cf = predict(d, eta[None]).real[0]
    ode = predict(d, eta[None], "ode")[0]
    prop = predict(d, eta[None], "propagation").real[0]
    scale = np.max(np.abs(ode))
    np.testing.assert_allclose(cf, ode, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(prop, ode, rtol=rtol, atol=rtol * scale)
    return cf


@pytest.mark.parametrize(("model_id", "file", "n_eta"), [
    ("mapbayr-001", "data_to_fit001.csv", 3), ("mapbayr-006", "data_to_fit006.csv", 4),
    ("mapbayr-401", "data_to_fit401.csv", 5),
])
def test_closed_form_superposition_agrees_with_ode_on_the_mapbayr_examples(data_dir, model_id, file, n_eta):
    m = get_model(model_id)
    rng = np.random.default_rng(1)
    for s in read_nmtran(data_dir / file, m.covariate_names())[:4]:
        _agree(model_id, s, rng.normal(0, 0.4, n_eta))


def test_lag_time_delays_absorption_exactly_and_agrees_with_ode():
    recs = [Record(time=0, evid=1, amt=100, cmt=1)] + [
        Record(time=t, cmt=2, dv=1.0) for t in (0.5, 1.0, 1.2, 2.0, 30.0)]
    f = _agree("nonmem-003", _subject(recs), np.array([0.1, -0.2, 0.3, 0.1]))
    lag = np.exp(0.1)
    assert f[0] == 0.0 and f[1] == 0.0  # before the lagged dose arrives: exactly zero (NONMEM's W=1 branch)
    assert lag < 1.2 and f[2] > 0


def test_two_compartment_infusion_agrees_with_ode_during_and_after_the_infusion():
    recs = [Record(time=0, evid=1, amt=100, cmt=1, rate=40)] + [
        Record(time=t, cmt=1, dv=1.0) for t in (0.5, 2.5, 3.0, 12.0, 48.0)]
    _agree("mapbayr-blq", _subject(recs), np.array([0.2, -0.1]))


def test_steady_state_bolus_and_infusion_equal_the_limit_of_repeated_doses():
    m = get_model("mapbayr-blq")
    eta = np.array([[0.1, 0.05]])
    for rate in (0.0, 50.0):
        ss = _subject([Record(time=0, evid=1, amt=100, cmt=1, rate=rate, ii=12, ss=1)]
                      + [Record(time=t, cmt=1, dv=1.0) for t in (0.5, 3.0, 11.9)])
        many = _subject([Record(time=-12 * 400, evid=1, amt=100, cmt=1, rate=rate, ii=12, addl=400)]
                        + [Record(time=t, cmt=1, dv=1.0) for t in (0.5, 3.0, 11.9)])
        a = predict(build_design(m, ss), eta).real[0]
        b = predict(build_design(m, many), eta).real[0]
        np.testing.assert_allclose(a, b, rtol=1e-9)
        c = predict(build_design(m, ss), eta, "ode")[0]
        np.testing.assert_allclose(a, c, rtol=1e-7)


def test_steady_state_with_lag_time_counts_the_previous_doses_before_the_lag():
    m = get_model("nonmem-003")
    eta = np.array([[0.0, 0.0, 0.0, 0.5]])  # lag = e^0.5 = 1.65 h
    ss = _subject([Record(time=0, evid=1, amt=100, cmt=1, ii=24, ss=1), Record(time=1.0, cmt=2, dv=1.0),
                   Record(time=5.0, cmt=2, dv=1.0)])
    many = _subject([Record(time=-24 * 300, evid=1, amt=100, cmt=1, ii=24, addl=300),
                     Record(time=1.0, cmt=2, dv=1.0), Record(time=5.0, cmt=2, dv=1.0)])
    a = predict(build_design(m, ss), eta).real[0]
    b = predict(build_design(m, many), eta).real[0]
    np.testing.assert_allclose(a, b, rtol=1e-9)


def test_additional_dose_at_an_observation_time_is_given_after_the_sample():
    m = get_model("mapbayr-blq")
    recs = [Record(time=0, evid=1, amt=100, cmt=1, ii=24, addl=2), Record(time=24, cmt=1, dv=1.0)]
    d = build_design(m, _subject(recs))
    trough = predict(d, np.zeros((1, 2))).real[0, 0]
    single = predict(build_design(m, _subject([recs[0].__class__(time=0, evid=1, amt=100, cmt=1),
                                               Record(time=24, cmt=1, dv=1.0)])), np.zeros((1, 2))).real[0, 0]
    assert trough == pytest.approx(single, rel=1e-12)


def test_time_varying_covariates_use_next_observation_carried_backward(data_dir):
    m = get_model("mapbayr-301")
    s = read_nmtran(data_dir / "data_to_fit301.csv", m.covariate_names())[0]
    d = build_design(m, s)
    assert d.n_seg == len(s.records)
    eta = np.array([[0.2, -0.1, 0.1]])
    prop = predict(d, eta).real[0]
    ode = predict(d, eta, "ode")[0]
    np.testing.assert_allclose(prop, ode, rtol=1e-7)
    # NOCB: the interval (0, 1.5] uses the covariates of the record at 1.5 h (BW 113), not of the dose (BW 77)
    first = Subject("x", [s.records[0], s.records[1]])
    d1 = build_design(m, first)
    const = Subject("y", [Record(time=0, evid=1, amt=10000, cmt=1, covariates={"BW": 113, "SEX": 0}),
                          Record(time=1.5, cmt=2, dv=1.0, covariates={"BW": 113, "SEX": 0})])
    a = predict(d1, eta).real[0, 0]
    b = predict(build_design(m, const), eta).real[0, 0]
    assert a == pytest.approx(b, rel=1e-12)


def test_complex_step_derivatives_match_finite_differences():
    m = get_model("mapbayr-401")
    recs = [Record(time=0, evid=1, amt=1000, cmt=1, ii=24, addl=3)] + [
        Record(time=t, cmt=c, dv=1.0) for t in (2.0, 30.0, 80.0) for c in (2, 3)]
    d = build_design(m, _subject(recs))
    eta = np.array([0.1, -0.2, 0.3, 0.05, -0.1])
    g = predict(d, eta[None] + 1e-20j * np.eye(5)).imag / 1e-20
    h = 1e-6
    for i in range(5):
        e = np.eye(5)[i] * h
        fd = (predict(d, (eta + e)[None]).real[0] - predict(d, (eta - e)[None]).real[0]) / (2 * h)
        np.testing.assert_allclose(g[i], fd, rtol=1e-6, atol=1e-7 * np.max(np.abs(fd)))


def test_models_without_a_closed_form_use_the_ode_solver_and_still_fit(tmp_path):
    """A 3-compartment mammillary model (a strongly connected block of 3) has no closed form here: the
    engine switches to solve_ivp, checked against scipy's matrix exponential, and MAP fitting still works."""
    import yaml
    from scipy.linalg import expm

    from ipexrx.dosing.estimate import fit
    from ipexrx.dosing.model import MODELS_DIR

    raw = yaml.safe_load((MODELS_DIR / "mapbayr-blq.yaml").read_text())
    raw["id"] = "three-cmt"
    raw["compartments"] = ["CENT", "PERIPH", "DEEP"]
    raw["flows"] += [{"from": "CENT", "to": "DEEP", "rate": "0.05"}, {"from": "DEEP", "to": "CENT", "rate": "0.02"},
                     {"from": "DEEP", "to": "PERIPH", "rate": "0.03"}, {"from": "PERIPH", "to": "DEEP", "rate": "0.01"}]
    p = tmp_path / "three-cmt.yaml"
    p.write_text(yaml.safe_dump(raw))
    m = get_model(str(p))
    assert not m.closed_form
    s = _subject([Record(time=0, evid=1, amt=100, cmt=1)] + [Record(time=t, cmt=1, dv=y)
                                                             for t, y in ((1, 45.0), (6, 30.0), (24, 12.0))])
    d = build_design(m, s)
    f = predict(d, np.zeros((1, 2)))[0]
    K = np.zeros((3, 3))
    for a, b, k in ((0, 1, 0.05), (1, 0, 0.2), (0, 2, 0.05), (2, 0, 0.02), (2, 1, 0.03), (1, 2, 0.01)):
        K[a, a] -= k
        K[b, a] += k
    K[0, 0] -= 0.1  # elimination CL/V1
    ref = [(expm(K * t) @ np.array([100.0, 0, 0]))[0] / 2.0 for t in (1, 6, 24)]
    np.testing.assert_allclose(f, ref, rtol=1e-8)
    r = fit(m, s, n_starts=1)
    assert r.converged and np.all(np.isfinite(r.etc))


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=15, deadline=None)
@given(
    doses=st.lists(st.tuples(st.floats(0, 48), st.floats(0.5, 50), st.sampled_from([0.0, 5.0, 40.0])),
                   min_size=1, max_size=4),
    obs=st.lists(st.floats(0.01, 72), min_size=1, max_size=5),
    eta=st.lists(st.floats(-0.8, 0.8), min_size=4, max_size=4),
)
def test_random_regimens_closed_form_equals_ode_for_two_compartments_with_lag(doses, obs, eta):
    """Property: any oral (lagged) dosing history gives the same concentrations by superposition, by
    propagation and by numerical integration."""
    m = get_model("andrews2018-tacrolimus")
    covs = {"WT": 30, "EGFR": 80, "HCT": 0.33, "DONOR_DECEASED": 1}
    recs = [Record(time=t, evid=1, amt=a, cmt=1, rate=0.0, covariates=covs) for t, a, _ in doses]
    recs += [Record(time=t, cmt=2, dv=1.0, covariates=covs) for t in obs]
    recs.sort(key=lambda r: (r.time, r.evid == 0))
    s = Subject("p", recs)
    d = build_design(m, s)
    e = np.array([eta])
    cf = predict(d, e).real[0]
    ode = predict(d, e, "ode")[0]
    prop = predict(d, e, "propagation").real[0]
    tol = 1e-7 * max(1.0, float(np.max(np.abs(ode))))
    np.testing.assert_allclose(cf, ode, rtol=1e-6, atol=tol)
    np.testing.assert_allclose(prop, ode, rtol=1e-6, atol=tol)


@settings(max_examples=15, deadline=None)
@given(
    doses=st.lists(st.tuples(st.floats(0, 48), st.floats(0.5, 50), st.sampled_from([0.0, 5.0, 40.0])),
                   min_size=1, max_size=4),
    obs=st.lists(st.floats(0.01, 72), min_size=1, max_size=5),
    eta=st.lists(st.floats(-0.8, 0.8), min_size=2, max_size=2),
)
def test_random_iv_bolus_and_infusion_histories_agree_with_ode(doses, obs, eta):
    m = get_model("mapbayr-blq")
    recs = [Record(time=t, evid=1, amt=a, cmt=1, rate=r) for t, a, r in doses]
    recs += [Record(time=t, cmt=1, dv=1.0) for t in obs]
    recs.sort(key=lambda r: (r.time, r.evid == 0))
    d = build_design(m, Subject("p", recs))
    e = np.array([eta])
    ode = predict(d, e, "ode")[0]
    tol = 1e-7 * max(1.0, float(np.max(np.abs(ode))))
    np.testing.assert_allclose(predict(d, e).real[0], ode, rtol=1e-6, atol=tol)
    np.testing.assert_allclose(predict(d, e, "propagation").real[0], ode, rtol=1e-6, atol=tol)
