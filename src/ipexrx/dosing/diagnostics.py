"""Fit diagnostics for a MAP-Bayesian estimate: can the model explain this patient's levels?

Three checks, each with a stated limit (derivations in docs/dosing.md, "Fit diagnostics"):

* **IWRES** per observed level: ``(y - IPRED) / sqrt(V(IPRED))`` with the model's residual variance
  ``V = s_prop * IPRED^2 + s_add`` (log-additive error: ``(ln y - ln IPRED) / s_log``). Under the model a
  residual is approximately N(0, 1); the limit ``|IWRES| > 3`` is exceeded with probability 0.27 %.
* **ETA z-score** per random effect: ``eta_k / sqrt(omega_kk)``, the individual's deviation from the typical
  value in prior standard deviations. Under the prior ``P(|z| > 3) = 0.27 %``; the MAP estimate is shrunk
  towards 0, so this limit is conservative (it flags fewer patients than 0.27 %).
  **Individual shrinkage** ``1 - sqrt(1 - ETC_kk / omega_kk)``: the ETA shrinkage a population of subjects
  sampled like this one would show (for a linear model ``Var(eta_hat) = omega - ETC``). Above 30 % the
  levels say little about that ETA and its z-score is pulled towards 0 (reported, not warned on its own).
* **Prior-data conflict**: ``Q = sum_j IWRES_j^2 + eta' Omega^-1 eta`` at the MAP estimate. For a model linear
  in the ETAs, Q equals ``y' (F Omega F' + Sigma)^-1 y`` of the marginal (prior-predictive) residuals and is
  chi-square with ``n_obs`` degrees of freedom (minimising over the ETAs removes the ``n_eta`` extra terms);
  the limit is its 99th percentile. The 2 ln V terms of the MAP objective do not depend on the data's fit
  and are left out. BLQ (M3) rows carry no residual and are not counted.

A check that fails produces a warning naming the level (time, value, unit) and asking to check sample
timing, dose history, adherence, interacting drugs and assay. A diagnostic is a reason to look, never a
verdict on the patient.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .estimate import FitResult, obs_terms, residual_terms

IWRES_LIMIT = 3.0
ETA_Z_LIMIT = 3.0
CONFLICT_QUANTILE = 0.99
SHRINKAGE_NOTE = 0.30
CHECK_ADVICE = "check sample timing, dose history, adherence, interacting drugs and assay"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LevelResidual(_Frozen):
    time_h: float = Field(..., description="Sample time in the record's time scale (hours).")
    value: float
    unit: str
    ipred: float = Field(..., description="Individual prediction at the MAP estimate, in `unit`.")
    pred: float = Field(..., description="Population (ETA = 0) prediction, in `unit`.")
    iwres: float = Field(..., description="Individual weighted residual (observed - IPRED) / residual SD.")
    flagged: bool


class EtaDiagnostic(_Frozen):
    name: str
    eta: float
    prior_sd: float = Field(..., description="sqrt(omega_kk).")
    z: float = Field(..., description="eta / sqrt(omega_kk).")
    posterior_sd: float | None = Field(None, description="sqrt(ETC_kk), NONMEM's conditional SD.")
    shrinkage: float | None = Field(
        None, description="Individual shrinkage 1 - sqrt(1 - ETC_kk/omega_kk); None when ETC is not available.")
    flagged: bool


class PriorDataConflict(_Frozen):
    statistic: float = Field(..., description="Q = sum IWRES^2 + eta' Omega^-1 eta at the MAP estimate.")
    df: int = Field(..., description="Degrees of freedom: number of quantified levels.")
    limit: float = Field(..., description="chi-square quantile at `quantile` with `df` degrees of freedom.")
    quantile: float
    p_value: float = Field(..., description="P(chi-square_df >= Q) under the model.")
    flagged: bool


class FitDiagnostics(_Frozen):
    """Diagnostics of one MAP fit; ``explained`` is False when any limit is exceeded."""

    levels: list[LevelResidual]
    etas: list[EtaDiagnostic]
    conflict: PriorDataConflict | None = Field(None, description="None when no level is quantified.")
    iwres_limit: float = IWRES_LIMIT
    eta_z_limit: float = ETA_Z_LIMIT
    shrinkage_note: float = Field(SHRINKAGE_NOTE, description="Shrinkage above which an ETA is weakly informed.")
    explained: bool
    warnings: list[str] = Field(default_factory=list)
    method: str = Field(
        "IWRES with the model's residual error at IPRED; ETA z = eta/sqrt(omega); individual shrinkage "
        "1 - sqrt(1 - ETC/omega); prior-data conflict Q = sum IWRES^2 + eta' Omega^-1 eta against "
        "chi-square(n levels) at 99 % (exact for a model linear in the ETAs)",
    )


def _fmt_level(lv: LevelResidual) -> str:
    return f"level {lv.value:.4g} {lv.unit} at t = {lv.time_h:g} h"


def diagnose(fit: FitResult) -> FitDiagnostics:
    """Diagnostics for a fit made by :func:`ipexrx.dosing.estimate.fit` (needs its design)."""
    from scipy.stats import chi2

    design = fit.design
    if design is None:
        raise ValueError("the fit carries no design; diagnostics need the fitted data")
    model = design.model
    ot = obs_terms(design)
    f = np.asarray(fit.ipred, dtype=float)
    with np.errstate(all="ignore"):
        _, _, _, _, V = residual_terms(f[None, :], ot)
        V = V[0]
        u = np.where(ot.islog, np.log(np.where(f > 0, f, 1e-300)), f)
        yy = np.where(ot.islog, np.log(np.where(ot.y > 0, ot.y, 1.0)), ot.y)
        iwres = (yy - u) / np.sqrt(V)
    units = [model.spec.outputs[int(k)].unit for k in design.o_out[design.o_is_data]]
    quant = ~ot.blq & np.isfinite(ot.y)
    levels = [
        LevelResidual(time_h=float(fit.times[j]), value=float(ot.y[j]), unit=units[j], ipred=float(f[j]),
                      pred=float(fit.pred[j]), iwres=float(iwres[j]),
                      flagged=bool(np.isfinite(iwres[j]) and abs(iwres[j]) > IWRES_LIMIT))
        for j in np.flatnonzero(quant)
    ]
    omega = np.asarray(model.omega)
    etc = np.asarray(fit.etc)
    etas: list[EtaDiagnostic] = []
    for k, name in enumerate(fit.eta_names):
        sd = math.sqrt(float(omega[k, k]))
        z = float(fit.eta[k]) / sd
        ck = float(etc[k, k]) if etc.shape == omega.shape else float("nan")
        post = math.sqrt(ck) if np.isfinite(ck) and ck >= 0 else None
        shr = 1.0 - math.sqrt(max(0.0, 1.0 - ck / (sd * sd))) if post is not None else None
        etas.append(EtaDiagnostic(name=name, eta=float(fit.eta[k]), prior_sd=sd, z=z, posterior_sd=post,
                                  shrinkage=shr, flagged=abs(z) > ETA_Z_LIMIT))
    conflict = None
    if levels:
        n = len(levels)
        q = float(np.sum(iwres[quant] ** 2) + fit.eta @ model.omega_inv @ fit.eta)
        lim = float(chi2.ppf(CONFLICT_QUANTILE, n))
        conflict = PriorDataConflict(statistic=q, df=n, limit=lim, quantile=CONFLICT_QUANTILE,
                                     p_value=float(chi2.sf(q, n)), flagged=bool(q > lim))
    warnings: list[str] = []
    for lv in levels:
        if lv.flagged:
            warnings.append(
                f"the model cannot explain the {_fmt_level(lv)}: IWRES {lv.iwres:+.1f} (limit +/-{IWRES_LIMIT:g}; "
                f"individual prediction {lv.ipred:.3g} {lv.unit}); {CHECK_ADVICE}")
    worst = max(levels, key=lambda lv: abs(lv.iwres)) if levels else None
    named, verb = "", "is"
    if worst is not None:
        named = _fmt_level(worst) if len(levels) == 1 else f"levels (most discrepant: {_fmt_level(worst)})"
        verb = "is" if len(levels) == 1 else "are"
    for e in etas:
        if e.flagged:
            warnings.append(
                f"the {named or 'data'} needs {e.name} {e.z:+.1f} prior SD from the typical value (limit "
                f"+/-{ETA_Z_LIMIT:g} SD): this patient is far outside the model's population, or the data are "
                f"wrong; {CHECK_ADVICE}")
    if conflict is not None and conflict.flagged:
        warnings.append(
            f"prior-data conflict: the {named} {verb} unlikely under the model (Q = {conflict.statistic:.1f} > "
            f"{conflict.limit:.1f}, the 99th percentile of chi-square with {conflict.df} df; p = "
            f"{conflict.p_value:.2g}); {CHECK_ADVICE}; a dose based on this fit may be unreliable")
    explained = not warnings
    return FitDiagnostics(levels=levels, etas=etas, conflict=conflict, explained=explained, warnings=warnings)
