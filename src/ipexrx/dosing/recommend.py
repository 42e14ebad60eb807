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
from .units import factor_to, to_model_unit

IPEX_CAVEAT = "Optimal dosing in IPEX syndrome is not established; this model was developed in another population."
IV_CAVEAT = ("Intravenous doses are predicted as if given over a few minutes; a 2-4 h infusion changes the predicted "
             "trough by about 1-2 % and lowers the peak, so judge a peak target with care.")

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
    target_origin: str = "study"  # "study" (the model's source study), "user" (typed) or "knowledge base"
    decision: str = "start"  # "keep" (current regimen in range), "change" (smallest change to the target), "start"
    decision_reason: str = ""
    current_dose_mg: float | None = None
    current_interval_h: float | None = None
    current_predicted: float | None = None
    parameter_low: float = 0.0  # 5th-95th percentile from parameter uncertainty only
    parameter_high: float = 0.0
    probability_measured_in_target: float = 0.0
    interval_includes: str = ""
    pta_method: str = ""
    diagnostics: FitDiagnostics | None = None  # fit diagnostics (a posteriori only)
    model_choice: Any = None  # select.ModelChoice when the model was chosen among several (by drug)
    subject: Subject | None = field(default=None, repr=False)  # the doses and levels behind it (for the report)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("fit", "diagnostics", "model_choice", "subject")}
        d["diagnostics"] = self.diagnostics.model_dump() if self.diagnostics is not None else None
        d["model_choice"] = self.model_choice.as_dict() if self.model_choice is not None else None
        d["interval_note"] = (f"predicted_low-predicted_high: 5th-95th percentile of the steady-state {self.metric}, "
                              f"including {self.interval_includes}; parameter_low-parameter_high: parameter "
                              "uncertainty only")
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


def _form_index(model: CompiledModel, form: int | str | None) -> int:
    """A dosage form by index or by (case-insensitive, unique prefix of) its name."""
    forms = model.spec.dosage_forms
    if form is None:
        return 0
    if isinstance(form, int) or form.strip().isdigit():
        i = int(form)
        if not 0 <= i < len(forms):
            raise DosingError(f"dosage form index {i} out of range 0..{len(forms) - 1} "
                              f"({'; '.join(f'{k}: {f.form}' for k, f in enumerate(forms))})")
        return i
    key = form.strip().lower()
    hits = [i for i, f in enumerate(forms) if f.form.lower() == key] or [
        i for i, f in enumerate(forms) if f.form.lower().startswith(key)]
    if len(hits) != 1:
        raise DosingError(f"dosage form {form!r} {'is ambiguous' if hits else 'not found'} for model {model.id}; "
                          f"forms: {'; '.join(f'{k}: {f.form}' for k, f in enumerate(forms))}")
    return hits[0]


def with_residual_error(model: CompiledModel, values: np.ndarray, metric: str,
                        rng: np.random.Generator, z: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Add one draw of the model's residual error to each predicted value (what a measured level would show).

    Troughs and peaks are observable, so their predictive interval includes residual error; AUC24 is derived
    from many concentrations, not measured once, so its interval shows parameter uncertainty only. ``z``
    (standard normal deviates broadcastable to ``values``) replaces the random draw, e.g. one per curve."""
    if metric == "auc24":
        return values, "parameter uncertainty only (AUC24 is not a single measurement, so no residual error)"
    err = model.outputs[0][3]
    z = rng.standard_normal(values.shape) if z is None else np.broadcast_to(z, values.shape)
    if err.model == "log_additive":
        return values * np.exp(math.sqrt(err.add_var) * z), "parameter uncertainty and residual error"
    sd = np.sqrt(values**2 * err.prop_var + err.add_var)
    return np.maximum(values + sd * z, 0.0), "parameter uncertainty and residual error"


def _current_regimen(subject: Subject | None) -> tuple[float | None, float | None]:
    """The last dose (mg) and its interval (II, or the gap to the dose before it) in the subject's records."""
    if subject is None:
        return None, None
    doses = [r for r in subject.records if r.is_dose and r.amt > 0]
    if not doses:
        return None, None
    last = doses[-1]
    tau = last.ii if last.ii > 0 else (last.time - doses[-2].time if len(doses) > 1 else None)
    return last.amt, (tau if tau and tau > 0 else None)


def _last_measured_trough(subject: Subject | None, tau: float) -> float | None:
    """The latest level if it was drawn in the last quarter of a dosing interval (a trough-like sample)."""
    if subject is None:
        return None
    obs = [r for r in subject.records if r.is_obs and r.dv is not None and math.isfinite(r.dv)]
    if not obs:
        return None
    last = obs[-1]
    prior = [r for r in subject.records if r.is_dose and r.time <= last.time]
    if not prior:
        return None
    d = prior[-1]
    since = last.time - d.time
    if d.ii > 0 and (d.ss or d.addl):
        since = since % d.ii if since > d.ii else since
    return float(last.dv) if last.dv is not None and since >= 0.75 * tau else None


def choose_target(model: CompiledModel, metric: str | None, low: float | None, high: float | None,
                  unit: str | None, basis: tuple[str, str] | None = None) -> Target:
    """The range to aim at: ``low``-``high`` ``unit`` when given, else the model's own (source-study) target.

    ``basis`` is (context, source) when the given range is the knowledge base's range for the drug; without it a
    given range was typed by the user. The origin is kept on the target so every caveat can name it."""
    if low is not None and high is not None:
        if low >= high or low <= 0:
            raise DosingError(f"target range must satisfy 0 < low < high, got {low:g}-{high:g}")
        out_unit = _metric_unit(model.spec.outputs[0].unit, metric)
        if unit is None:
            raise DosingError(f"give the target unit (the model predicts in {out_unit})")
        # the same conversion as a level (ng/ml = ug/L = mcg/L, mg/L, molar units); an AUC unit carries '*h'
        conc_unit, is_auc = unit, metric == "auc24"
        if is_auc:
            for suffix in ("*h", ".h", " h", "·h"):
                if unit.replace(" ", "").lower().endswith(suffix.strip().lower()):
                    conc_unit = unit.replace(" ", "")[: -len(suffix.strip())]
                    break
            else:
                raise DosingError(f"an AUC24 target needs a unit with '*h', e.g. {out_unit}; got {unit!r}")
        f = factor_to(conc_unit, model.spec.outputs[0].unit, model.spec.drug, "target")
        given = f" (given as {low:g}-{high:g} {unit})" if f != 1.0 else ""
        if basis is not None:
            return Target(metric=metric or "trough", low=low * f, high=high * f, unit=out_unit,
                          context=basis[0] + given, source=basis[1], verified=False, origin="knowledge base")
        return Target(metric=metric or "trough", low=low * f, high=high * f, unit=out_unit,
                      context="user-supplied target" + given, source="user", verified=False, origin="user")
    cands = [t for t in model.spec.targets if t.metric == (metric or "trough")]
    if not cands:
        raise DosingError(f"the {model.spec.title.split(',')[0]} model states no {metric or ''} target; give a target "
                          "range (low, high and unit)")
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
    form_index: int | str | None = None,
    n_samples: int = 1000,
    fit_result: FitResult | None = None,
    current_dose_mg: float | None = None,
    current_interval_h: float | None = None,
    retarget: bool = False,
    allow_reference: bool = False,
    target_basis: tuple[str, str] | None = None,
) -> Recommendation:
    """Recommend a steady-state regimen. With observed levels in ``subject`` the individual's MAP estimate is
    used (a posteriori); without, the typical values for the covariates (a priori).

    The current regimen (``current_dose_mg`` every ``current_interval_h``; by default the subject's last dose)
    is kept when its predicted exposure is inside the target range, unless ``retarget`` asks to aim at the
    middle of the range or a different ``interval_h`` is imposed; otherwise the suggestion is the smallest
    change of daily dose (real dosage-form amounts) whose prediction is in range. Fictional teaching models
    (``kind: reference``) are refused unless ``allow_reference`` (validation code only)."""
    m = get_model(model) if isinstance(model, str) else model
    if m.spec.kind != "clinical" and not allow_reference:
        raise DosingError(
            f"model {m.id} is a fictional teaching/validation model (kind: {m.spec.kind}), never used for a "
            f"patient; choose a clinical model ({', '.join(sorted(DEFAULT_MODELS.values()))})")
    target = choose_target(m, metric, target_low, target_high, target_unit, target_basis)
    cur_dose, cur_tau = _current_regimen(subject)
    cur_dose = current_dose_mg if current_dose_mg is not None else cur_dose
    cur_tau = current_interval_h if current_interval_h is not None else cur_tau
    tau = interval_h or cur_tau or m.spec.default_interval_h
    if tau is None:
        raise DosingError(f"model {m.id} has no default interval; give the dosing interval in hours")
    if not m.spec.dosage_forms:
        raise DosingError(f"model {m.id} lists no dosage forms to round the dose to")
    form = m.spec.dosage_forms[_form_index(m, form_index)]
    covs = _last_covariates(subject, covariates)
    warnings: list[str] = []
    # input checks before any fit: an error stops here (InputCheckError), warnings travel with the result
    warnings += [f"input check: {p}" for p in require_ok(check_inputs(
        m, subject, covariates, interval_h=interval_h, dose_mg=current_dose_mg, dose_interval_h=current_interval_h))]
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
    direction = 0  # +1 / -1: a measured trough below / above the range asks for a higher / lower daily dose
    keep_possible = cur_dose is not None and cur_tau is not None and not retarget and (
        interval_h is None or abs(interval_h - cur_tau) < 1e-9)
    if keep_possible:
        assert cur_dose is not None and cur_tau is not None
        cur_pm = steady_state_exposure(m, covs, cur_tau, etas, target.metric).per_mg
        cur_pred = float(cur_dose * cur_pm[0])
        measured = _last_measured_trough(subject, cur_tau) if target.metric == "trough" else None
        if measured is not None and not target.low <= measured <= target.high:
            direction = 1 if measured < target.low else -1
            if target.low <= cur_pred <= target.high:  # the level and the model disagree: the level rules
                warnings.append(
                    f"the last measured trough {measured:g} {target.unit} is outside {target.low:g}-{target.high:g} "
                    f"{target.unit} although the model predicts {cur_pred:.3g} {target.unit} for the current "
                    "regimen; the regimen is not kept on the model's word alone")
        elif target.low <= cur_pred <= target.high and _how(form, cur_dose) is not None:
            kept = _finish(m, target, form, fr, diag, basis, warnings, center, d0, rng, "keep",
                           f"the current regimen's predicted {target.metric} {cur_pred:.3g} {target.unit} is inside "
                           f"{target.low:g}-{target.high:g} {target.unit}: keep it",
                           cur_tau, cur_dose, _how(form, cur_dose) or "", cur_dose * cur_pm, cur_dose, [], cur_dose,
                           cur_tau, cur_pred)
            kept.subject = subject
            return kept
        elif target.low <= cur_pred <= target.high:
            warnings.append(f"the current dose {cur_dose:g} mg cannot be given as {form.form}; the nearest amount "
                            "that keeps the prediction in range is suggested")
    cur_pred_out = None
    if cur_dose is not None and cur_tau is not None:
        cur_pred_out = float(cur_dose * steady_state_exposure(m, covs, cur_tau, etas[:1], target.metric).per_mg[0])
    smallest = cur_dose is not None and cur_tau is not None and not retarget
    cur_daily = (cur_dose * 24.0 / cur_tau) if smallest else None  # type: ignore[operator]
    taus = [tau] if interval_h or smallest else sorted({tau, *(m.spec.allowed_intervals_h or [])})
    options = []
    for t in taus:
        per_mg = steady_state_exposure(m, covs, t, etas, target.metric).per_mg
        if not np.all(np.isfinite(per_mg)) or per_mg[0] <= 0:
            raise DosingError("the model predicts no exposure for this regimen; check the covariates")
        exact_t = goal / per_mg[0]
        cands = candidate_doses(form, max_dose=exact_t * 3)
        if not cands:
            raise DosingError(f"no dose of {form.form} fits; the exact dose would be {exact_t:.3g} mg")

        def score(c: tuple[float, str], pm: np.ndarray = per_mg, t: float = t) -> tuple[int, float]:
            pr = c[0] * pm[0]
            inside = target.low <= pr <= target.high
            if cur_daily is not None and inside:  # smallest change of daily dose that reaches the range
                change = math.log(c[0] * 24.0 / t / cur_daily)
                wrong_way = direction != 0 and change * direction <= 0
                return (1 if wrong_way else 0, abs(change))
            return (0 if inside else 2, abs(math.log(pr / goal)))

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
    if not target.low <= float(pred_s[0]) <= target.high:
        # the chosen form cannot reach the range (e.g. the smallest capsule is too strong): say which other dosage
        # form of the model can, at the same interval, rather than leave the clinician with the closest miss; with
        # no form asked for, the suggestion itself uses the first form that can
        pm_t = pred_s / dose
        for k, other in enumerate(m.spec.dosage_forms):
            if other is form:
                continue
            fits = [(d, h) for d, h in candidate_doses(other, max_dose=exact * 3)
                    if target.low <= d * pm_t[0] <= target.high]
            if fits:
                d_o, how_o = min(fits, key=lambda c: abs(math.log(c[0] * pm_t[0] / goal)))
                ps_o = d_o * pm_t
                alternatives.insert(0, {
                    "interval_h": tau, "dose_mg": d_o, "administration": f"{other.form}: {how_o}",
                    "predicted": float(ps_o[0]),
                    "probability_in_target": float(np.mean((ps_o[1:] >= target.low) & (ps_o[1:] <= target.high))),
                    "note": f"{other.form} reaches the target range; {form.form} cannot"})
                if form_index is None:
                    again = recommend(m, subject, covariates, interval_h=interval_h, metric=metric,
                                      target_low=target_low, target_high=target_high, target_unit=target_unit,
                                      form_index=k, n_samples=n_samples, fit_result=fr,
                                      current_dose_mg=current_dose_mg, current_interval_h=current_interval_h,
                                      retarget=retarget, allow_reference=allow_reference,
                                      target_basis=target_basis)
                    again.warnings.insert(0, f"{form.form} cannot give a dose whose prediction is in range: the "
                                             f"suggestion uses {other.form}")
                    return again
                warnings.append(f"{form.form} cannot give a dose whose prediction is in range; {other.form} can: "
                                f"{d_o:g} mg ({how_o}) every {tau:g} h, predicted {float(ps_o[0]):.3g} {target.unit}")
                break
    if smallest:
        # the mid-range dose on the same interval, for comparison with the smallest change
        pm = pred_s / dose
        mid_d, mid_how = min(candidate_doses(form, max_dose=goal / pm[0] * 3),
                             key=lambda c: abs(math.log(c[0] * pm[0] / goal)))
        if mid_d != dose:
            ms = mid_d * pm
            alternatives.append({
                "interval_h": tau, "dose_mg": mid_d, "administration": mid_how, "predicted": float(ms[0]),
                "probability_in_target": float(np.mean((ms[1:] >= target.low) & (ms[1:] <= target.high))),
                "note": "aims at the middle of the target range"})
        why = (f"predicts {cur_pred_out:.3g} {target.unit}" if direction == 0 else
               f"gave a measured trough {'below' if direction > 0 else 'above'} the range")
        reason = (f"the current regimen ({cur_dose:g} mg every {cur_tau:g} h) {why}, target {target.low:g}-"
                  f"{target.high:g} {target.unit}: smallest change of daily dose "
                  f"{'(' + ('up' if direction > 0 else 'down') + ') ' if direction else ''}whose prediction is in "
                  "range")
        if not target.low <= float(pred_s[0]) <= target.high:
            reason = (f"the current regimen ({cur_dose:g} mg every {cur_tau:g} h) {why}, target {target.low:g}-"
                      f"{target.high:g} {target.unit}; no {form.form} dose reaches the range at this interval: the "
                      "closest is shown")
        decision = "change"
    else:
        decision = "change" if cur_dose is not None else "start"
        reason = ("aims at the middle of the target range (geometric mean of low and high)" +
                  (" as asked" if retarget else "") +
                  ("; a different interval than the current one was imposed" if cur_tau and interval_h and
                   abs(interval_h - cur_tau) > 1e-9 else ""))
    rec = _finish(m, target, form, fr, diag, basis, warnings, center, d0, rng, decision, reason, tau, dose, how,
                  pred_s, exact, alternatives, cur_dose, cur_tau, cur_pred_out)
    rec.subject = subject
    return rec


def _how(form: DosageForm, dose: float) -> str | None:
    """How to give ``dose`` with ``form``; None when the form cannot give exactly that amount."""
    for d, how in candidate_doses(form, max_dose=dose):
        if abs(d - dose) < 1e-9:
            return how
    return None


def _finish(m: CompiledModel, target: Target, form: DosageForm, fr: FitResult | None, diag: FitDiagnostics | None,
            basis: str, warnings: list[str], center: np.ndarray, d0: Design, rng: np.random.Generator,
            decision: str, reason: str, tau: float, dose: float, how: str, pred_s: np.ndarray, exact: float,
            alternatives: list[dict[str, Any]], cur_dose: float | None, cur_tau: float | None,
            cur_pred: float | None) -> Recommendation:
    pred = float(pred_s[0])
    draws = pred_s[1:]
    p_in = float(np.mean((draws >= target.low) & (draws <= target.high)))
    plo, phi = np.quantile(draws, [0.05, 0.95])
    measured, includes = with_residual_error(m, draws, target.metric, rng)
    lo, hi = np.quantile(measured, [0.05, 0.95])
    p_meas = float(np.mean((measured >= target.low) & (measured <= target.high)))
    inside = target.low <= pred <= target.high
    if not inside:
        warnings.append(
            f"no {form.form} dose puts the predicted {target.metric} inside {target.low:g}-{target.high:g} "
            f"{target.unit}; the closest is shown (exact dose {exact:.3g} mg)"
        )
    caveats = [IPEX_CAVEAT] + [c for c in m.spec.caveats if c != IPEX_CAVEAT]
    said = target_caveat(target)
    if said:
        caveats.append(said)
    if not form.verified:
        caveats.append(form_caveat(form))
    if any(d.route in ("iv", "intravenous") for d in m.spec.dosing.values()):
        caveats.append(IV_CAVEAT)
    params = fr.parameters if fr is not None else {
        k: float(v[0, 0].real) for k, v in individual_parameters(d0, center[None]).items()
    }
    return Recommendation(
        model_id=m.id, drug=m.spec.drug, citation=m.spec.citation.text, doi=m.spec.citation.doi, basis=basis,
        dose_mg=dose, interval_h=tau, daily_dose_mg=dose * 24.0 / tau, form=form.form, administration=how,
        metric=target.metric, target_low=target.low, target_high=target.high, target_unit=target.unit,
        target_source=target.source, target_context=target.context, target_verified=target.verified,
        target_origin=target.origin,
        predicted=pred, predicted_low=float(lo), predicted_high=float(hi), probability_in_target=p_in,
        exact_dose_mg=float(exact), in_target=inside, caveats=caveats, warnings=warnings, parameters=params, fit=fr,
        alternatives=alternatives, diagnostics=diag, decision=decision, decision_reason=reason,
        current_dose_mg=cur_dose, current_interval_h=cur_tau, current_predicted=cur_pred, parameter_low=float(plo),
        parameter_high=float(phi), probability_measured_in_target=p_meas, interval_includes=includes,
        pta_method=(f"probability of target attainment: fraction of {len(draws)} draws of the individual "
                    "parameters (posterior normal approximation N(eta_hat, covariance) with levels, prior "
                    f"N(0, Omega) without) whose true steady-state {target.metric} is inside the target range; "
                    "probability_measured_in_target adds one residual-error draw to each"),
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
    metric: str | None = None,
    form_index: int | str | None = None,
    new_interval_h: float | None = None,
    retarget: bool = False,
    target_unit: str | None = None,
    target_basis: tuple[str, str] | None = None,
) -> Recommendation:
    """For the assessment: a measured steady-state level on the current regimen -> a suggested regimen.

    ``metric`` (trough, peak, auc24) and ``form_index`` choose what the suggestion targets and rounds to;
    ``new_interval_h`` imposes a different interval for the suggestion (default: keep the current one).

    The patient is assumed at steady state on ``dose_mg`` every ``interval_h`` h; the level was drawn
    ``hours_after_dose`` after a dose (default: just before the next one). Raises DosingError for unknown drugs
    or units it cannot convert (the level is converted to the model's unit: ng/mL = ug/L = mcg/L, mg/L, and
    molar units with the drug's molar mass).
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
    t_unit = target_unit or (_metric_unit(unit, metric) if target_low is not None else None)
    return recommend(m, subj, interval_h=new_interval_h or interval_h, metric=metric, target_low=target_low,
                     target_high=target_high, target_unit=t_unit,
                     form_index=form_index, current_dose_mg=dose_mg, current_interval_h=interval_h, retarget=retarget,
                     target_basis=target_basis)


def target_caveat(target: Target) -> str | None:
    """The caveat on the target range, worded by where it came from; None for a verified model target."""
    rng = f"{target.low:.3g}-{target.high:.3g} {target.unit}"
    if target.origin == "user":
        given = target.context.removeprefix("user-supplied target").strip()
        return (f"Target range {rng}{' ' + given if given else ''} was supplied by the user, not taken from a study "
                "or the knowledge base; it is not established for IPEX: confirm it is the range agreed for this "
                "patient.")
    if target.origin == "knowledge base":
        return (f"Target range {rng} is the knowledge base's range for the drug ({target.context}; taken from "
                f"{target.source}), not established for IPEX: agree the target for this patient.")
    if target.verified:
        return None
    context = target.context.replace("; not an IPEX target", "").replace(" (not an IPEX target)", "")
    # the study is cited where the target is shown (the report's target band); only its setting is said here
    return f"Target range {rng} is from the model's source study, not an IPEX target: {context}. Agree the target " \
           "for this patient."


def form_caveat(form: DosageForm) -> str:
    """The caveat on a dosage form whose strengths were not checked against the label."""
    where = form.source.split("; not re-checked")[0]
    return (f"Dosage form strengths ({form.form}) were not re-checked against the label for this release: confirm "
            f"them against the product in hand (taken from {where}).")


def _metric_unit(unit: str, metric: str | None) -> str:
    return unit + "*h" if metric == "auc24" else unit


def prediction_band(
    model: CompiledModel, subject: Subject, eta: np.ndarray, cov: np.ndarray, times: np.ndarray,
    n_samples: int = 500, quantiles: tuple[float, float] = (0.05, 0.95), residual_error: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Design]:
    """Individual prediction (at eta) and its band over ``times`` from ETA ~ N(eta, cov).

    With ``residual_error`` one draw of the model's residual error is added to each sampled concentration
    (:func:`with_residual_error`), so the band is where a measured level would fall; without, it shows
    parameter uncertainty only. The ETA draws are the same either way (same seed)."""
    d = build_design(model, subject, pred_times=times)
    rng = np.random.default_rng(7)
    L = np.linalg.cholesky(cov)
    etas = np.vstack([eta, eta + rng.standard_normal((n_samples, len(eta))) @ L.T])
    conc = predict(d, etas).real[:, ~d.o_is_data]
    draws = conc[1:]
    if residual_error:  # one deviate per sampled curve: the same marginal quantiles, without jagged band edges
        draws, _ = with_residual_error(model, draws, "trough", rng, z=rng.standard_normal((draws.shape[0], 1)))
    lo, hi = np.quantile(draws, quantiles, axis=0)
    return conc[0], lo, hi, d
