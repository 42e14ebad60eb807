"""MAP-Bayesian estimation with NONMEM POSTHOC's objective, its OBJ and its conditional covariance.

Objective (mapbayr form; identical ETAs to NONMEM FOCE-I POSTHOC):

    OFV(eta) = sum_j [ ln V_j + (y_j - f_j)^2 / V_j ] + eta' Omega^-1 eta,   V_j = s_prop W_j^2 + s_add,

with W_j = f_j, or 1 when f_j == 0 (NONMEM's ``W = F + DEL``). Log-additive error compares ln y with ln f
and V = s_add. A BLQ observation (M3) contributes -2 ln Phi((LLOQ - f) / sqrt(V)).

NONMEM's phi-file OBJ = OFV(eta_hat) + ln|Omega| + ln|I| and its ETC = I^-1, where
I = Omega^-1 + sum_j g_j g_j' (1/V_j + V'_j^2 / (2 V_j^2)) and g_j = df_j/deta (see docs/reference/tdm.md).

Optimisation: damped Newton with the exact Hessian (derivatives of f by complex step, second derivatives
by central differences of complex-step gradients, all in one vectorised evaluation), falling back to the
always positive-definite Fisher matrix 2I when the Hessian is not, with a backtracking line search; it
is restarted from prior draws and the best optimum is kept. Non-convergence is reported, never hidden.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import Subject
from .engine import Design, build_design, individual_parameters, predict
from .errors import EstimationError
from .model import CompiledModel

_HC = 1e-20  # complex-step size
_HF = 1e-3  # central-difference step for second derivatives of f


@dataclass
class ObsTerms:
    y: np.ndarray
    sp: np.ndarray
    sa: np.ndarray
    islog: np.ndarray
    blq: np.ndarray
    lloq: np.ndarray


def obs_terms(design: Design) -> ObsTerms:
    model = design.model
    sel = design.o_is_data
    out = design.o_out[sel]
    sp = np.array([model.outputs[k][3].prop_var for k in out])
    sa = np.array([model.outputs[k][3].add_var for k in out])
    islog = np.array([model.outputs[k][3].model == "log_additive" for k in out], dtype=bool)
    y = design.o_dv[sel].copy()
    blq = design.o_blq[sel]
    lloq = design.o_lloq[sel]
    bad = islog & ~blq & ~(y > 0)
    if np.any(bad):
        from .errors import DataError

        raise DataError(
            f"subject {design.subject_id}: log-additive error needs DV > 0, got {y[bad].tolist()} "
            "(report non-quantifiable levels as BLQ with LLOQ)"
        )
    return ObsTerms(y=y, sp=sp, sa=sa, islog=islog, blq=blq, lloq=lloq)


def _log_ndtr(z: np.ndarray) -> np.ndarray:
    from scipy.special import log_ndtr

    return np.asarray(log_ndtr(z))


def residual_terms(f: np.ndarray, ot: ObsTerms) -> tuple[np.ndarray, ...]:
    """Per-observation objective t(f), dt/df, d2t/df2, Fisher weight w (I = sum g g' w) and variance V.

    For log-additive outputs these are derivatives with respect to u = ln f (the caller maps g to g/f).
    """
    y, sp, sa = ot.y, ot.sp, ot.sa
    zero = f == 0
    W = np.where(zero, 1.0, f)
    V = np.where(ot.islog, sa, sp * W * W + sa)
    V1 = np.where(ot.islog | zero, 0.0, 2.0 * sp * f)
    V2 = np.where(ot.islog | zero, 0.0, 2.0 * sp)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(ot.islog, np.log(np.where(f > 0, f, 1e-300)), f)
        yy = np.where(ot.islog, np.log(np.where(y > 0, y, 1.0)), y)
    r = yy - u
    t = np.log(V) + r * r / V
    t1 = V1 / V - 2 * r / V - r * r * V1 / V**2
    t2 = V2 / V - V1**2 / V**2 + 2 / V + 4 * r * V1 / V**2 + 2 * r * r * V1**2 / V**3 - r * r * V2 / V**2
    w = 1.0 / V + 0.5 * V1**2 / V**2
    if np.any(ot.blq):
        b = ot.blq
        L = np.where(ot.islog, np.log(np.where(ot.lloq > 0, ot.lloq, 1.0)), ot.lloq)
        s = np.sqrt(V)
        z = (L - u) / s
        lphi = -0.5 * z * z - 0.5 * np.log(2 * np.pi)
        lPhi = _log_ndtr(z)
        q = np.exp(lphi - lPhi)
        z1 = -1 / s - z * V1 / (2 * V)
        z2 = 0.5 * V ** -1.5 * V1 - (z1 * V1 / (2 * V) + z * V2 / (2 * V) - z * V1**2 / (2 * V**2))
        tb = -2 * lPhi
        tb1 = -2 * q * z1
        tb2 = 2 * q * (z + q) * z1 * z1 - 2 * q * z2
        t = np.where(b, tb, t)
        t1 = np.where(b, tb1, t1)
        t2 = np.where(b, tb2, t2)
        w = np.where(b, np.nan, w)  # BLQ rows use observed information (see information())
    return t, t1, t2, w, V


@dataclass
class Evaluation:
    eta: np.ndarray
    f: np.ndarray
    ofv: float
    grad: np.ndarray
    hess: np.ndarray
    info: np.ndarray  # NONMEM's I (expected information / 2, with observed terms for BLQ rows)


class Problem:
    """One subject's MAP problem: predictions, objective and its derivatives."""

    def __init__(self, design: Design, method: str = "auto") -> None:
        self.design = design
        self.model = design.model
        self.n = self.model.n_eta
        self.ot = obs_terms(design)
        self.method = method
        self.complex_ok = method != "ode" and self.model.closed_form
        self.n_pred_calls = 0

    def f(self, eta: np.ndarray) -> np.ndarray:
        self.n_pred_calls += 1
        return np.asarray(predict(self.design, np.atleast_2d(eta), self.method).real)

    def ofv(self, eta: np.ndarray) -> float:
        f = self.f(eta)[0]
        if not np.all(np.isfinite(f)):
            return float("inf")
        t = residual_terms(f, self.ot)[0]
        val = float(np.sum(t) + eta @ self.model.omega_inv @ eta)
        return val if np.isfinite(val) else float("inf")

    def derivatives(self, eta: np.ndarray, second: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """f (J,), g = df/deta (n, J) and, if asked, d2f/deta2 (n, n, J)."""
        n = self.n
        eye = np.eye(n)
        if self.complex_ok:
            base = eta[None, :] + 1j * _HC * eye  # (n, n)
            rows = [base]
            if second:
                for i in range(n):
                    rows.append(base + _HF * eye[i])
                    rows.append(base - _HF * eye[i])
            self.n_pred_calls += 1
            F = predict(self.design, np.concatenate(rows), self.method)
            f = F[0].real
            g = F[:n].imag / _HC
            H = None
            if second:
                gp = np.stack([F[n * (1 + 2 * i): n * (2 + 2 * i)].imag / _HC for i in range(n)])
                gm = np.stack([F[n * (2 + 2 * i): n * (3 + 2 * i)].imag / _HC for i in range(n)])
                H = (gp - gm) / (2 * _HF)
                H = 0.5 * (H + H.transpose(1, 0, 2))
            return f, g, H
        # real arithmetic only (ODE path): central differences
        h = 1e-5
        pts = [eta[None, :]]
        for i in range(n):
            pts += [eta[None, :] + h * eye[i], eta[None, :] - h * eye[i]]
        F = self.f(np.concatenate(pts))
        f = F[0]
        g = np.stack([(F[1 + 2 * i] - F[2 + 2 * i]) / (2 * h) for i in range(n)])
        H = None
        if second:
            H = np.empty((n, n, len(f)))
            hh = 1e-4
            for i in range(n):
                for k in range(i, n):
                    e1, e2 = hh * eye[i], hh * eye[k]
                    Q = self.f(np.stack([eta + e1 + e2, eta + e1 - e2, eta - e1 + e2, eta - e1 - e2]))
                    H[i, k] = H[k, i] = (Q[0] - Q[1] - Q[2] + Q[3]) / (4 * hh * hh)
        return f, g, H

    def evaluate(self, eta: np.ndarray, second: bool = True) -> Evaluation:
        f, g, H = self.derivatives(eta, second)
        ot = self.ot
        t, t1, t2, w, V = residual_terms(f, ot)
        if np.any(ot.islog):
            fs = np.where(f > 0, f, 1e-300)
            lg = ot.islog
            if H is not None:
                H = np.where(lg, H / fs - g[:, None, :] * g[None, :, :] / fs**2, H)
            g = np.where(lg, g / fs, g)
        Oi = self.model.omega_inv
        ofv = float(np.sum(t) + eta @ Oi @ eta)
        grad = g @ t1 + 2 * Oi @ eta
        hess = np.einsum("ij,kj,j->ik", g, g, t2) + 2 * Oi
        if H is not None:
            hess = hess + np.einsum("ikj,j->ik", H, t1)
        wi = np.where(np.isnan(w), 0.0, w)
        info = Oi + np.einsum("ij,kj,j->ik", g, g, wi)
        if np.any(ot.blq):  # M3 rows: observed information of their likelihood term (half its Hessian)
            b = ot.blq
            info = info + 0.5 * np.einsum("ij,kj,j->ik", g[:, b], g[:, b], t2[b])
            if H is not None:
                info = info + 0.5 * np.einsum("ikj,j->ik", H[:, :, b], t1[b])
        return Evaluation(eta=eta, f=f, ofv=ofv, grad=grad, hess=hess, info=info)


@dataclass
class Optimum:
    eta: np.ndarray
    ofv: float
    converged: bool
    iterations: int
    message: str
    start: np.ndarray


def newton(problem: Problem, eta0: np.ndarray, bound: np.ndarray, maxit: int = 200, tol: float = 1e-12) -> Optimum:
    eta = np.clip(np.asarray(eta0, dtype=float), -bound, bound)
    ev = problem.evaluate(eta)
    if not np.isfinite(ev.ofv):
        return Optimum(eta, float("inf"), False, 0, "objective not finite at the start", eta0)
    msg = "iteration limit reached"
    converged = False
    it = 0
    for it in range(1, maxit + 1):  # noqa: B007
        d = None
        try:
            L = np.linalg.cholesky(ev.hess)
            d = -np.linalg.solve(L.T, np.linalg.solve(L, ev.grad))
        except np.linalg.LinAlgError:
            d = None
        fisher = False
        if d is None or not np.all(np.isfinite(d)) or ev.grad @ d >= 0:
            d = -np.linalg.solve(2 * ev.info, ev.grad)
            fisher = True
        dec = -(ev.grad @ d)
        if dec < tol:
            converged, msg = True, "converged (Newton decrement below tolerance)"
            break
        big = np.max(np.abs(d) / bound)
        if big > 0.5:  # never jump more than half the bound width in one step
            d = d * (0.5 / big)
        step, accepted = 1.0, False
        for _ in range(60):
            trial = np.clip(eta + step * d, -bound, bound)
            val = problem.ofv(trial)
            if val <= ev.ofv - 1e-4 * step * dec or (val <= ev.ofv and np.max(np.abs(trial - eta)) < 1e-9):
                accepted = True
                break
            step *= 0.5
        if not accepted:
            if not fisher:  # retry once along the Fisher direction
                d = -np.linalg.solve(2 * ev.info, ev.grad)
                step = 1.0
                for _ in range(60):
                    trial = np.clip(eta + step * d, -bound, bound)
                    val = problem.ofv(trial)
                    if val <= ev.ofv:
                        accepted = True
                        break
                    step *= 0.5
            if not accepted:
                gnorm = float(np.max(np.abs(ev.grad)))
                converged = gnorm < 1e-5
                msg = "converged (no further decrease at machine precision)" if converged else (
                    f"line search failed (gradient {gnorm:.2e})")
                break
        moved = float(np.max(np.abs(trial - eta)))
        eta = trial
        ev = problem.evaluate(eta)
        if moved < 1e-11:
            converged, msg = True, "converged (step below 1e-11)"
            break
    return Optimum(eta, ev.ofv, converged, it, msg, np.asarray(eta0, dtype=float))


@dataclass
class FitResult:
    """A MAP fit. ``ofv`` is mapbayr's MAP objective; ``obj`` is NONMEM's phi OBJ; ``etc`` NONMEM's ETC."""

    model_id: str
    subject_id: str
    eta_names: list[str]
    eta: np.ndarray
    ofv: float
    obj: float
    etc: np.ndarray
    cov_observed: np.ndarray | None
    converged: bool
    message: str
    n_starts: int
    n_converged: int
    distinct_optima: list[float]
    iterations: int
    times: np.ndarray
    cmt: np.ndarray
    dv: np.ndarray
    blq: np.ndarray
    ipred: np.ndarray
    pred: np.ndarray
    parameters: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    at_bound: bool = False
    design: Design | None = field(default=None, repr=False)

    @property
    def etc_sd(self) -> np.ndarray:
        return np.sqrt(np.diag(self.etc))

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_id, "id": self.subject_id,
            "eta": dict(zip(self.eta_names, map(float, self.eta), strict=True)),
            "ofv_map": self.ofv, "obj_nonmem": self.obj,
            "etc": self.etc.tolist(), "converged": self.converged, "message": self.message,
            "n_starts": self.n_starts, "n_converged": self.n_converged, "at_bound": self.at_bound,
            "parameters": self.parameters,
            "observations": [
                {"time": float(t), "cmt": int(c) + 1, "dv": None if np.isnan(y) else float(y), "blq": bool(b),
                 "ipred": float(i), "pred": float(p)}
                for t, c, y, b, i, p in zip(self.times, self.cmt, self.dv, self.blq, self.ipred, self.pred, strict=True)
            ],
            "warnings": self.warnings,
        }


def _seed(model_id: str, subject_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{model_id}/{subject_id}".encode()).digest()[:8], "little")


def fit(
    model: CompiledModel,
    subject: Subject | Design,
    n_starts: int = 3,
    bound_sd: float = 5.0,
    method: str = "auto",
    raise_on_failure: bool = True,
    extra_starts: list[np.ndarray] | None = None,
) -> FitResult:
    """MAP estimate for one subject. Starts at ETA = 0 and from ``n_starts - 1`` prior draws (seeded by
    model and subject id, so results are reproducible); keeps the lowest objective."""
    design = subject if isinstance(subject, Design) else build_design(model, subject)
    problem = Problem(design, method)
    n = model.n_eta
    sd = np.sqrt(np.diag(model.omega))
    bound = bound_sd * sd
    starts = [np.zeros(n)]
    if n_starts > 1:
        rng = np.random.default_rng(_seed(model.id, design.subject_id))
        L = np.linalg.cholesky(model.omega)
        for _ in range(n_starts - 1):
            starts.append(np.clip(L @ rng.standard_normal(n), -0.9 * bound, 0.9 * bound))
    for s in extra_starts or []:
        starts.append(np.asarray(s, dtype=float))
    if design.n_obs == 0:
        starts = starts[:1]
    opts = [newton(problem, s, bound) for s in starts]
    good = [o for o in opts if o.converged and np.isfinite(o.ofv)]
    pool = good or [o for o in opts if np.isfinite(o.ofv)]
    if not pool:
        raise EstimationError(
            f"subject {design.subject_id}: the objective is not finite at any start; check doses, units and times"
        )
    best = min(pool, key=lambda o: o.ofv)
    distinct: list[float] = []
    for o in sorted(good, key=lambda o: o.ofv):
        if all(abs(o.ofv - x) > 1e-6 for x in distinct):
            distinct.append(o.ofv)
    if not good and raise_on_failure:
        raise EstimationError(
            f"subject {design.subject_id}: MAP optimisation did not converge from any of {len(starts)} starts "
            f"(best objective {best.ofv:.6g}: {best.message})"
        )
    ev = problem.evaluate(best.eta)
    try:
        etc = np.linalg.inv(ev.info)
        sign, logdet_i = np.linalg.slogdet(ev.info)
        obj = ev.ofv + model.logdet_omega + logdet_i if sign > 0 else float("nan")
    except np.linalg.LinAlgError:
        etc = np.full((n, n), np.nan)
        obj = float("nan")
    try:
        cov_obs = 2 * np.linalg.inv(ev.hess)
    except np.linalg.LinAlgError:
        cov_obs = None
    warnings = list(design.warnings)
    at_bound = bool(np.any(np.abs(best.eta) >= bound * (1 - 1e-9)))
    if at_bound:
        warnings.append(f"an ETA sits on its bound (+/-{bound_sd:g} SD): the estimate may be unreliable")
    if len(distinct) > 1:
        warnings.append(
            f"{len(distinct)} distinct local optima found (objectives {', '.join(f'{x:.4f}' for x in distinct[:4])}); "
            "the lowest was kept"
        )
    if not best.converged:
        warnings.append(f"optimisation did not converge: {best.message}")
    sel = design.o_is_data
    pred = problem.f(np.zeros(n))[0][sel]
    params = individual_parameters(design, best.eta[None, :])
    pvals = {k: float(v[0, 0].real) for k, v in params.items()}
    return FitResult(
        model_id=model.id, subject_id=design.subject_id, eta_names=model.eta_names, eta=best.eta, ofv=ev.ofv,
        obj=float(obj), etc=etc, cov_observed=cov_obs, converged=best.converged, message=best.message,
        n_starts=len(starts), n_converged=len(good), distinct_optima=distinct,
        iterations=sum(o.iterations for o in opts), times=design.o_time[sel], cmt=design.o_cmt[sel],
        dv=design.o_dv[sel], blq=design.o_blq[sel], ipred=ev.f, pred=pred, parameters=pvals, warnings=warnings,
        at_bound=at_bound, design=design,
    )


def map_objective(model: CompiledModel, subject: Subject | Design, eta: np.ndarray, method: str = "auto") -> float:
    """mapbayr's MAP objective at given ETAs (no ln|Omega|, no 2*pi terms)."""
    design = subject if isinstance(subject, Design) else build_design(model, subject)
    return Problem(design, method).ofv(np.asarray(eta, dtype=float))


def nonmem_obj(model: CompiledModel, subject: Subject | Design, eta: np.ndarray) -> tuple[float, np.ndarray]:
    """NONMEM's phi OBJ and ETC evaluated at given ETAs."""
    design = subject if isinstance(subject, Design) else build_design(model, subject)
    ev = Problem(design).evaluate(np.asarray(eta, dtype=float))
    sign, ld = np.linalg.slogdet(ev.info)
    return ev.ofv + model.logdet_omega + ld, np.linalg.inv(ev.info)
