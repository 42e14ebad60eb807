"""Dose recommendation: the regimen whose steady-state trough (or peak, or AUC24) lands in the target range,
rounded to a real dosage form, with its predicted value and uncertainty interval.

Linear pharmacokinetics make steady-state exposure proportional to the dose, so the exposure per mg is
computed once per individual (MAP parameters when levels exist, population typical values from covariates
otherwise) and candidate doses are the amounts a patient can actually take (sums of capsule strengths,
measurable volumes of an oral solution). Uncertainty comes from sampling ETAs from the posterior normal
approximation N(eta_hat, ETC) (or the prior N(0, Omega) without levels). The output is a suggestion for
a clinician, never an order; it carries the model's citation and caveats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .checks import check_inputs, require_ok
from .data import Record, Subject
from .diagnostics import FitDiagnostics, diagnose
from .engine import Design, build_design, individual_parameters, predict
from .errors import DosingError
from .estimate import FitResult, fit
from .model import CompiledModel, DosageForm, Target, get_model
from .units import to_model_unit

IPEX_CAVEAT = "Optimal dosing in IPEX syndrome is not established; this model was developed in another population."

DEFAULT_MODELS = {
    "tacrolimus": "andrews2018-tacrolimus",
    "sirolimus": "fan2024-sirolimus",
    "cyclosporine": "gao2022-cyclosporine",
}


@dataclass
class Exposure:
    metric: str
    per_mg: np.ndarray  # (S,) exposure per mg of dose for each ETA sample (first row = point estimate)
    unit: str


@dataclass
class Recommendation:
    """A dose suggestion with everything needed to judge it."""

    model_id: str
    drug: str
    citation: str
    doi: str | None
    basis: str
    dose_mg: float
    interval_h: float
    daily_dose_mg: float
    form: str
    administration: str
    metric: str
    target_low: float
    target_high: float
    target_unit: str
    target_source: str
    target_context: str
    target_verified: bool
    predicted: float
    predicted_low: float
    predicted_high: float
    probability_in_target: float
    exact_dose_mg: float
    in_target: bool
    caveats: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    parameters: dict[str, float] = field(default_factory=dict)
    fit: FitResult | None = field(default=None, repr=False)
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: FitDiagnostics | None = None  # fit diagnostics (a posteriori only)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("fit", "diagnostics")}
        d["diagnostics"] = self.diagnostics.model_dump() if self.diagnostics is not None else None
        d["interval_note"] = "predicted range: 5th-95th percentile of the individual's steady-state value"
        return d


def _last_covariates(subject: Subject | None, covariates: dict[str, float] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    if subject is not None:
        for r in subject.records:
            out.update(r.covariates)
    if covariates:
        out.update(covariates)
    return out


def dose_compartment(model: CompiledModel) -> int:
    return min(model.dose_f)


def steady_state_exposure(
    model: CompiledModel, covariates: dict[str, float], interval_h: float, eta: np.ndarray, metric: str,
    n_grid: int = 241,
) -> Exposure:
    """Exposure per mg at steady state for each ETA row: trough (just before the next dose), peak, or AUC24."""
    if interval_h <= 0:
        raise DosingError(f"dosing interval must be > 0 h, got {interval_h:g}")
    c = dose_compartment(model) + 1
    obs_cmt = model.outputs[0][0] + 1
    subj = Subject("regimen", [Record(time=0, evid=1, amt=1.0, cmt=c, ii=interval_h, ss=1, covariates=covariates),
                               Record(time=interval_h, evid=2, cmt=obs_cmt, covariates=covariates)])
    grid = np.linspace(0, interval_h, n_grid)
    d = build_design(model, subj, pred_times=grid)
    conc = predict(d, np.atleast_2d(eta)).real[:, ~d.o_is_data]  # (S, n_grid); last point = trough
    if metric == "trough":
        val = conc[:, -1]
    elif metric == "peak":
        val = conc.max(axis=1)
    elif metric == "auc24":
        auc_tau = np.trapezoid(conc, grid, axis=1)
        val = auc_tau * 24.0 / interval_h
    else:
        raise DosingError(f"unknown exposure metric {metric!r}; expected trough, peak or auc24")
    unit = model.spec.outputs[0].unit + ("*h" if metric == "auc24" else "")
    return Exposure(metric, val, unit)


def candidate_doses(form: DosageForm, max_dose: float, max_units: int = 8) -> list[tuple[float, str]]:
    """Doses a patient can take with this form, with how to give them."""
    out: list[tuple[float, str]] = []
    if form.strengths:
        strengths = sorted(form.strengths, reverse=True)
        step = min(strengths)
        n_max = int(max_dose / step) + 2
        for n in range(1, n_max + 1):
            dose = round(n * step, 6)
            combo = _combine(dose, strengths, max_units)
            if combo:
                out.append((dose, combo))
    elif form.concentration:
        step = form.concentration * (form.measurable_ml or 0.1)
        n_max = int(max_dose / step) + 2
        for n in range(1, n_max + 1):
            dose = round(n * step, 6)
            ml = dose / form.concentration
            vol = f"{ml:.{_decimals(form.measurable_ml or 0.1)}f}"
            out.append((dose, f"{vol} mL of {form.concentration:g} {form.unit}/mL"))
    else:
        raise DosingError(f"dosage form {form.form!r} has neither strengths nor a concentration")
    return out


def _decimals(step: float) -> int:
    return max(0, -int(math.floor(math.log10(step) + 1e-9)))


def _combine(dose: float, strengths: list[float], max_units: int) -> str | None:
    """Fewest units adding up to ``dose`` exactly (small dynamic programme over multiples of the finest step)."""
    step = min(strengths)
    n = int(round(dose / step))
    if abs(n * step - dose) > 1e-9:
        return None
    w = [int(round(s / step)) for s in strengths]
    best: list[list[float] | None] = [None] * (n + 1)
    best[0] = []
    for total in range(1, n + 1):
        for wi, s in zip(w, strengths, strict=True):
            if wi <= total and best[total - wi] is not None:
                cand = best[total - wi] + [s]  # type: ignore[operator]
                if best[total] is None or len(cand) < len(best[total]):  # type: ignore[arg-type]
                    best[total] = cand
    combo = best[n]
    if combo is None or len(combo) > max_units:
        return None
    parts = []
    for s in sorted(set(combo), reverse=True):
        k = combo.count(s)
        parts.append(f"{k} x {s:g}")
    return " + ".join(parts)


def choose_target(model: CompiledModel, metric: str | None, low: float | None, high: float | None,
                  unit: str | None) -> Target:
    if low is not None and high is not None:
        if low >= high or low <= 0:
            raise DosingError(f"target range must satisfy 0 < low < high, got {low:g}-{high:g}")
        out_unit = model.spec.outputs[0].unit
        if unit is None:
            raise DosingError(f"give the target unit (the model predicts in {out_unit})")
        if unit != out_unit:
            raise DosingError(f"target unit {unit!r} differs from the model's {out_unit!r}; convert it first")
        return Target(metric=metric or "trough", low=low, high=high, unit=unit, context="user-supplied target",
                      source="user", verified=False)
    cands = [t for t in model.spec.targets if t.metric == (metric or "trough")]
    if not cands:
        raise DosingError(f"model {model.id} states no {metric or ''} target; give --low/--high with units")
    return cands[-1]


def recommend(
    model: CompiledModel | str,
    subject: Subject | None = None,
    covariates: dict[str, float] | None = None,
    interval_h: float | None = None,
    metric: str | None = None,
    target_low: float | None = None,
    target_high: float | None = None,
    target_unit: str | None = None,
    form_index: int = 0,
    n_samples: int = 1000,
    fit_result: FitResult | None = None,
) -> Recommendation:
    """Recommend a steady-state regimen. With observed levels in ``subject`` the individual's MAP estimate is
    used (a posteriori); without, the typical values for the covariates (a priori)."""
    m = get_model(model) if isinstance(model, str) else model
    target = choose_target(m, metric, target_low, target_high, target_unit)
    tau = interval_h or m.spec.default_interval_h
    if tau is None:
        raise DosingError(f"model {m.id} has no default interval; give the dosing interval in hours")
    if not m.spec.dosage_forms:
        raise DosingError(f"model {m.id} lists no dosage forms to round the dose to")
    if not 0 <= form_index < len(m.spec.dosage_forms):
        raise DosingError(f"dosage form index {form_index} out of range 0..{len(m.spec.dosage_forms) - 1}")
    form = m.spec.dosage_forms[form_index]
    covs = _last_covariates(subject, covariates)
    warnings: list[str] = []
    # input checks before any fit: an error stops here (InputCheckError), warnings travel with the result
    warnings += [f"input check: {p}" for p in require_ok(check_inputs(m, subject, covariates, interval_h=interval_h))]
    diag: FitDiagnostics | None = None
    fr = fit_result
    if fr is None and subject is not None and any(r.is_obs for r in subject.records):
        fr = fit(m, subject)
    rng = np.random.default_rng(20240501)
    n = m.n_eta
    if fr is not None:
        center, cov = fr.eta, fr.etc
        basis = f"a posteriori: MAP estimate from {int(np.sum(~np.isnan(fr.dv)) + np.sum(fr.blq))} level(s)"
        warnings += fr.warnings
        diag = diagnose(fr)
        warnings += diag.warnings
    else:
        center, cov = np.zeros(n), m.omega
        basis = "a priori: population typical values for the given covariates (no levels)"
        # validate covariates the same way a fit would (ranges, units, required ones)
        build_design(m, Subject("covariates", [Record(time=0, evid=1, amt=1.0, cmt=dose_compartment(m) + 1,
                                                      covariates=covs)]))
    try:
        L = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise DosingError("the covariance of the individual parameters is not positive definite") from None
    etas = np.vstack([center, center + rng.standard_normal((n_samples, n)) @ L.T])
    d0 = build_design(m, Subject("c", [Record(time=0, evid=1, amt=1.0, cmt=dose_compartment(m) + 1,
                                              covariates=covs)]))
    warnings += [w for w in d0.warnings if w not in warnings]
    goal = math.sqrt(target.low * target.high)  # geometric middle of the range
    taus = [tau] if interval_h else sorted({tau, *(m.spec.allowed_intervals_h or [])})
    options = []
    for t in taus:
        per_mg = steady_state_exposure(m, covs, t, etas, target.metric).per_mg
        if not np.all(np.isfinite(per_mg)) or per_mg[0] <= 0:
            raise DosingError("the model predicts no exposure for this regimen; check the covariates")
        exact_t = goal / per_mg[0]
        cands = candidate_doses(form, max_dose=exact_t * 3)
        if not cands:
            raise DosingError(f"no dose of {form.form} fits; the exact dose would be {exact_t:.3g} mg")

        def score(c: tuple[float, str], pm: np.ndarray = per_mg) -> tuple[int, float]:
            pr = c[0] * pm[0]
            return (0 if target.low <= pr <= target.high else 1, abs(math.log(pr / goal)))

        d_t, how_t = min(cands, key=score)
        ps = d_t * per_mg
        p_t = float(np.mean((ps[1:] >= target.low) & (ps[1:] <= target.high)))
        options.append((t, d_t, how_t, ps, p_t, exact_t))
    # the interval with the highest probability in range; the model's default wins near-ties (within 2 %)
    best_p = max(o[4] for o in options)
    chosen = next((o for o in options if o[0] == tau and o[4] >= best_p - 0.02), None) or max(
        options, key=lambda o: o[4])
    tau, dose, how, pred_s, p_in, exact = chosen
    alternatives = [
        {"interval_h": o[0], "dose_mg": o[1], "administration": o[2], "predicted": float(o[3][0]),
         "probability_in_target": o[4]} for o in options if o is not chosen]
    pred = float(pred_s[0])
    lo, hi = np.quantile(pred_s[1:], [0.05, 0.95])
    inside = target.low <= pred <= target.high
    if not inside:
        warnings.append(
            f"no {form.form} dose puts the predicted {target.metric} inside {target.low:g}-{target.high:g} "
            f"{target.unit}; the closest is shown (exact dose {exact:.3g} mg)"
        )
    caveats = [IPEX_CAVEAT] + [c for c in m.spec.caveats if c != IPEX_CAVEAT]
    if not target.verified:
        caveats.append(f"Target range ({target.context}) is not verified for IPEX: {target.source}.")
    if not form.verified:
        caveats.append(f"Dosage form strengths: {form.source}.")
    params = fr.parameters if fr is not None else {
        k: float(v[0, 0].real) for k, v in individual_parameters(d0, center[None]).items()
    }
    return Recommendation(
        model_id=m.id, drug=m.spec.drug, citation=m.spec.citation.text, doi=m.spec.citation.doi, basis=basis,
        dose_mg=dose, interval_h=tau, daily_dose_mg=dose * 24.0 / tau, form=form.form, administration=how,
        metric=target.metric, target_low=target.low, target_high=target.high, target_unit=target.unit,
        target_source=target.source, target_context=target.context, target_verified=target.verified,
        predicted=pred, predicted_low=float(lo), predicted_high=float(hi), probability_in_target=p_in,
        exact_dose_mg=float(exact), in_target=inside, caveats=caveats, warnings=warnings, parameters=params, fit=fr,
        alternatives=alternatives, diagnostics=diag,
    )


def recommend_from_trough(
    drug: str,
    trough: float,
    trough_unit: str,
    dose_mg: float,
    interval_h: float,
    covariates: dict[str, float],
    model_id: str | None = None,
    hours_after_dose: float | None = None,
    target_low: float | None = None,
    target_high: float | None = None,
) -> Recommendation:
    """For the assessment: a measured steady-state level on the current regimen -> a suggested regimen.

    The patient is assumed at steady state on ``dose_mg`` every ``interval_h`` h; the level was drawn
    ``hours_after_dose`` after a dose (default: just before the next one). Raises DosingError for unknown drugs
    or units that differ from the model's.
    """
    key = drug.strip().lower()
    mid = model_id or DEFAULT_MODELS.get(key)
    if mid is None:
        raise DosingError(f"no dosing model for {drug!r}; modelled drugs: {', '.join(sorted(DEFAULT_MODELS))}")
    m = get_model(mid)
    unit = m.spec.outputs[0].unit
    given = f"{trough:g} {trough_unit}"
    trough = to_model_unit(trough, trough_unit, m, "level")  # case-insensitive UCUM, molar via the molar mass
    if dose_mg <= 0 or interval_h <= 0 or trough <= 0:
        raise DosingError(f"dose, interval and level must be > 0, got {dose_mg:g} mg, {interval_h:g} h, {trough:g}")
    t = interval_h if hours_after_dose is None else hours_after_dose
    if not 0 < t <= interval_h:
        raise DosingError(f"the level must be drawn within the dosing interval (0-{interval_h:g} h), got {t:g} h")
    c = dose_compartment(m) + 1
    subj = Subject("patient", [
        Record(time=0, evid=1, amt=dose_mg, cmt=c, ii=interval_h, ss=1, covariates=covariates),
        Record(time=t, evid=0, cmt=m.outputs[0][0] + 1, dv=trough, covariates=covariates),
    ])
    if given != f"{trough:g} {unit}":
        subj.warnings.append(f"level {given} read as {trough:.4g} {unit} (the model's unit)")
    return recommend(m, subj, interval_h=interval_h, target_low=target_low, target_high=target_high,
                     target_unit=unit if target_low is not None else None)


def prediction_band(
    model: CompiledModel, subject: Subject, eta: np.ndarray, cov: np.ndarray, times: np.ndarray,
    n_samples: int = 500, quantiles: tuple[float, float] = (0.05, 0.95),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Design]:
    """Individual prediction (at eta) and its band over ``times`` from ETA ~ N(eta, cov)."""
    d = build_design(model, subject, pred_times=times)
    rng = np.random.default_rng(7)
    L = np.linalg.cholesky(cov)
    etas = np.vstack([eta, eta + rng.standard_normal((n_samples, len(eta))) @ L.T])
    conc = predict(d, etas).real[:, ~d.o_is_data]
    lo, hi = np.quantile(conc[1:], quantiles, axis=0)
    return conc[0], lo, hi, d
