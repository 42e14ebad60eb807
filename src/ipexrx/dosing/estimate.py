"""MAP-Bayesian estimation with NONMEM POSTHOC's objective, its OBJ and its conditional covariance.

Objective (mapbayr form; identical ETAs to NONMEM FOCE-I POSTHOC):

    OFV(eta) = sum_j [ ln V_j + (y_j - f_j)^2 / V_j ] + eta' Omega^-1 eta,   V_j = s_prop W_j^2 + s_add,

with W_j = f_j, or 1 when f_j == 0 (NONMEM's ``W = F + DEL``). Log-additive error compares ln y with ln f
and V = s_add. A BLQ observation (M3) contributes -2 ln Phi((LLOQ - f) / sqrt(V)).

NONMEM's phi-file OBJ = OFV(eta_hat) + ln|Omega| + ln|I| and its ETC = I^-1, where
I = Omega^-1 + sum_j g_j g_j' (1/V_j + V'_j^2 / (2 V_j^2)) and g_j = df_j/deta (see docs/reference/tdm.md).

Optimisation: damped Newton with the exact Hessian (derivatives of f by complex step, second derivatives
by forward differences of complex-step gradients, all in one vectorised evaluation), falling back to the
always positive-definite Fisher matrix 2I when the Hessian is not, with an interpolating backtracking line
search; it is restarted from prior draws (all starts share each vectorised evaluation) and the best optimum is
kept. ETAs on lag times make the objective piecewise smooth (a sample falls before or after a lagged dose), so
for them the optimiser also restarts from the valleys of a profile along that ETA and from just across the
nearest dose-arrival crossings, and polishes the other ETAs when the optimum sits on a crossing.
Non-convergence is reported, never hidden.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import Subject
from .engine import Design, build_design, individual_parameters, predict
from .errors import EstimationError
from .model import CompiledModel

if TYPE_CHECKING:
    from .diagnostics import FitDiagnostics

_HC = 1e-20  # complex-step size
_SCAN_MARGIN = float("inf")  # restart only from profile valleys whose objective is below best + margin
_HF = 1e-5  # forward-difference step for second derivatives of f


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
    """Objective and derivatives for a batch of S ETA vectors."""

    eta: np.ndarray  # (S, n)
    f: np.ndarray  # (S, J)
    ofv: np.ndarray  # (S,)
    grad: np.ndarray  # (S, n)
    hess: np.ndarray  # (S, n, n)
    info: np.ndarray  # (S, n, n) NONMEM's I (expected information; observed terms for BLQ rows)

    def take(self, k: np.ndarray) -> Evaluation:
        return Evaluation(self.eta[k], self.f[k], self.ofv[k], self.grad[k], self.hess[k], self.info[k])


class Problem:
    """One subject's MAP problem: predictions, objective and its derivatives, batched over ETA vectors."""

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

    def ofv_batch(self, eta: np.ndarray) -> np.ndarray:
        eta = np.atleast_2d(eta)
        with np.errstate(all="ignore"):
            f = self.f(eta)
            t = residual_terms(f, self.ot)[0]
            val = np.sum(t, axis=1) + np.einsum("si,ij,sj->s", eta, self.model.omega_inv, eta)
        ok = np.all(np.isfinite(f), axis=1) & np.isfinite(val)
        return np.where(ok, val, np.inf)

    def ofv(self, eta: np.ndarray) -> float:
        return float(self.ofv_batch(np.asarray(eta, dtype=float))[0])

    def derivatives(self, eta: np.ndarray, second: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """f (S, J), g = df/deta (S, n, J) and, if asked, d2f/deta2 (S, n, n, J) for ETA rows (S, n)."""
        eta = np.atleast_2d(eta)
        S, n = eta.shape
        eye = np.eye(n)
        if self.complex_ok:
            base = eta[:, None, :] + 1j * _HC * eye[None]  # (S, n, n)
            blocks = [base]
            if second:  # forward differences of exact gradients: O(h) error, only steers the Newton step
                for i in range(n):
                    blocks.append(base + _HF * eye[i])
            nb = len(blocks)
            rows = np.stack(blocks, axis=1).reshape(S * nb * n, n)
            self.n_pred_calls += 1
            F = predict(self.design, rows, self.method).reshape(S, nb, n, -1)
            f = F[:, 0, 0].real
            g = F[:, 0].imag / _HC
            H = None
            if second:
                gp = F[:, 1:].imag / _HC  # (S, n_i, n_k, J)
                H = (gp - g[:, None]) / _HF
                H = 0.5 * (H + H.transpose(0, 2, 1, 3))
            return f, g, H
        # real arithmetic only (ODE path): central differences
        h = 1e-5
        f = self.f(eta)
        g = np.empty((S, n, f.shape[1]))
        for i in range(n):
            g[:, i] = (self.f(eta + h * eye[i]) - self.f(eta - h * eye[i])) / (2 * h)
        H = None
        if second:
            H = np.empty((S, n, n, f.shape[1]))
            hh = 1e-4
            for i in range(n):
                for k in range(i, n):
                    e1, e2 = hh * eye[i], hh * eye[k]
                    q = self.f(eta + e1 + e2) - self.f(eta + e1 - e2) - self.f(eta - e1 + e2) + self.f(eta - e1 - e2)
                    H[:, i, k] = H[:, k, i] = q / (4 * hh * hh)
        return f, g, H

    def evaluate(self, eta: np.ndarray, second: bool = True) -> Evaluation:
        eta = np.atleast_2d(np.asarray(eta, dtype=float))
        with np.errstate(all="ignore"):
            f, g, H = self.derivatives(eta, second)
            ot = self.ot
            t, t1, t2, w, V = residual_terms(f, ot)
            if np.any(ot.islog):
                fs = np.where(f > 0, f, 1e-300)[:, None, :]
                lg = ot.islog
                if H is not None:
                    H = np.where(lg, H / fs[:, None] - g[:, :, None, :] * g[:, None, :, :] / fs[:, None] ** 2, H)
                g = np.where(lg, g / fs, g)
            Oi = self.model.omega_inv
            ofv = np.sum(t, axis=1) + np.einsum("si,ij,sj->s", eta, Oi, eta)
            grad = np.einsum("sij,sj->si", g, t1) + 2 * eta @ Oi
            hess = np.einsum("sij,skj,sj->sik", g, g, t2) + 2 * Oi
            if H is not None:
                hess = hess + np.einsum("sikj,sj->sik", H, t1)
            wi = np.where(np.isnan(w), 0.0, w)
            info = Oi + np.einsum("sij,skj,sj->sik", g, g, wi)
            if np.any(ot.blq):  # M3 rows: observed information of their likelihood term (half its Hessian)
                b = ot.blq
                info = info + 0.5 * np.einsum("sij,skj,sj->sik", g[:, :, b], g[:, :, b], t2[:, b])
                if H is not None:
                    info = info + 0.5 * np.einsum("sikj,sj->sik", H[:, :, :, b], t1[:, b])
        ofv = np.where(np.isfinite(ofv) & np.all(np.isfinite(f), axis=1), ofv, np.inf)
        return Evaluation(eta=eta, f=f, ofv=ofv, grad=grad, hess=hess, info=info)


@dataclass
class Optimum:
    eta: np.ndarray
    ofv: float
    converged: bool
    iterations: int
    message: str
    start: np.ndarray


def _direction(grad: np.ndarray, hess: np.ndarray, info: np.ndarray) -> tuple[np.ndarray, bool]:
    """Newton direction when the Hessian is positive definite and gives descent, else Fisher scoring."""
    try:
        L = np.linalg.cholesky(hess)
        d = -np.linalg.solve(L.T, np.linalg.solve(L, grad))
        if np.all(np.isfinite(d)) and grad @ d < 0:
            return d, False
    except np.linalg.LinAlgError:
        pass
    return -np.linalg.solve(2 * info, grad), True


def _directions(grad: np.ndarray, hess: np.ndarray, info: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched :func:`_direction`: Newton where the Hessian is positive definite and gives descent."""
    with np.errstate(all="ignore"):
        w = np.linalg.eigvalsh(hess)
    pd = np.all(np.isfinite(w), axis=1) & (w[:, 0] > 1e-12 * np.maximum(np.abs(w[:, -1]), 1e-300))
    D = np.empty_like(grad)
    fisher = ~pd
    if np.any(pd):
        D[pd] = -np.linalg.solve(hess[pd], grad[pd][..., None])[..., 0]
        bad = pd.copy()
        bad[pd] = ~(np.all(np.isfinite(D[pd]), axis=1) & (np.einsum("si,si->s", grad[pd], D[pd]) < 0))
        fisher |= bad
    if np.any(fisher):
        D[fisher] = -np.linalg.solve(2 * info[fisher], grad[fisher][..., None])[..., 0]
    return D, fisher


def newton(
    problem: Problem, starts: np.ndarray, bound: np.ndarray, maxit: int = 200, tol: float = 1e-12,
    free: np.ndarray | None = None,
) -> list[Optimum]:
    """Damped Newton from several starts at once (the starts share each vectorised model evaluation).

    ``free`` (boolean mask over ETAs) optimises a subspace, the other ETAs staying at their start values."""
    starts = np.atleast_2d(np.asarray(starts, dtype=float))
    S = starts.shape[0]
    eta = np.clip(starts, -bound, bound)
    ev = problem.evaluate(eta)
    ofv = ev.ofv.copy()
    grad, hess, info = ev.grad.copy(), ev.hess.copy(), ev.info.copy()
    active = np.isfinite(ofv)
    converged = np.zeros(S, dtype=bool)
    iters = np.zeros(S, dtype=int)
    msgs = ["objective not finite at the start" if not a else "iteration limit reached" for a in active]
    for _ in range(maxit):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        D = np.zeros((S, problem.n))
        dec = np.zeros(S)
        fisher = np.zeros(S, dtype=bool)
        if free is None:
            D[idx], fisher[idx] = _directions(grad[idx], hess[idx], info[idx])
        else:
            fi = np.flatnonzero(free)
            sub = np.ix_(idx, fi, fi)
            Dsub, fisher[idx] = _directions(grad[np.ix_(idx, fi)], hess[sub], info[sub])
            D[np.ix_(idx, fi)] = Dsub
        dec[idx] = -np.einsum("si,si->s", grad[idx], D[idx])
        iters[idx] += 1
        done = idx[dec[idx] < tol]
        converged[done] = True
        active[done] = False
        for s in done:
            msgs[s] = "converged (Newton decrement below tolerance)"
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        big = np.max(np.abs(D[idx]) / bound, axis=1)
        D[idx] *= np.minimum(1.0, 0.5 / np.maximum(big, 1e-300))[:, None]  # at most half a bound width
        dec[idx] = -np.einsum("si,si->s", grad[idx], D[idx])
        step = np.ones(S)
        # nearly converged (decrement below 1e-8, i.e. OFV changes at the level of rounding): a Newton step is
        # accurate to second order, so it is taken without asking for a decrease that rounding cannot show
        final = np.isin(idx, idx[(dec[idx] < 1e-8) & ~fisher[idx]])
        # first trial: full evaluation (its derivatives are reused when the step is accepted)
        trial = np.clip(eta[idx] + D[idx], -bound, bound)
        ev_t = problem.evaluate(trial)
        acc = (ev_t.ofv <= ofv[idx] - 1e-4 * dec[idx]) | (
            (ev_t.ofv <= ofv[idx]) & (np.max(np.abs(trial - eta[idx]), axis=1) < 1e-9)) | (
            final & (ev_t.ofv <= ofv[idx] + 1e-12 * (1 + np.abs(ofv[idx]))))
        new_eta = eta.copy()
        new_eta[idx[acc]] = trial[acc]
        moved = np.zeros(S)
        moved[idx[acc]] = np.max(np.abs(trial[acc] - eta[idx[acc]]), axis=1)
        ofv[idx[acc]] = ev_t.ofv[acc]
        grad[idx[acc]], hess[idx[acc]], info[idx[acc]] = ev_t.grad[acc], ev_t.hess[acc], ev_t.info[acc]
        pending = idx[~acc]
        last = np.full(S, np.inf)
        last[pending] = ev_t.ofv[~acc]
        for _h in range(40):
            if pending.size == 0:
                break
            # backtrack to the minimum of the quadratic through f(0), f'(0) = -dec and the rejected trial,
            # kept within [0.1, 0.5] of the previous step (Armijo backtracking with interpolation)
            a, f0, dd, fa = step[pending], ofv[pending], dec[pending], last[pending]
            with np.errstate(all="ignore"):
                q = dd * a * a / (2 * (fa - f0 + dd * a))
            q = np.where(np.isfinite(q), q, 0.25 * a)
            step[pending] = np.clip(q, 0.1 * a, 0.5 * a)
            tr = np.clip(eta[pending] + step[pending, None] * D[pending], -bound, bound)
            v = problem.ofv_batch(tr)
            ok = (v <= ofv[pending] - 1e-4 * step[pending] * dec[pending]) | (
                (v <= ofv[pending]) & (np.max(np.abs(tr - eta[pending]), axis=1) < 1e-9))
            new_eta[pending[ok]] = tr[ok]
            moved[pending[ok]] = np.max(np.abs(tr[ok] - eta[pending[ok]]), axis=1)
            last[pending] = v
            pending = pending[~ok]
        # starts whose line search failed: retry along the Fisher direction, else stop
        for s in pending:
            ok = False
            if not fisher[s]:
                d = -np.linalg.solve(2 * info[s], grad[s])
                if free is not None:
                    d = np.zeros_like(d)
                    fi = np.flatnonzero(free)
                    d[fi] = -np.linalg.solve(2 * info[s][np.ix_(fi, fi)], grad[s][fi])
                st = 1.0
                for _h in range(60):
                    tr1 = np.clip(eta[s] + st * d, -bound, bound)
                    if problem.ofv(tr1) <= ofv[s]:
                        ok = True
                        new_eta[s] = tr1
                        moved[s] = np.max(np.abs(tr1 - eta[s]))
                        break
                    st *= 0.5
            if not ok:
                gnorm = float(np.max(np.abs(grad[s])))
                converged[s] = gnorm < 1e-5
                msgs[s] = "converged (no further decrease at machine precision)" if converged[s] else (
                    f"line search failed (gradient {gnorm:.2e})")
                active[s] = False
        re = np.array([s for s in idx if active[s] and not np.array_equal(new_eta[s], eta[s]) and s not in idx[acc]],
                      dtype=int)
        eta = new_eta
        if re.size:
            e2 = problem.evaluate(eta[re])
            ofv[re], grad[re], hess[re], info[re] = e2.ofv, e2.grad, e2.hess, e2.info
        small = np.flatnonzero(active & (moved < 1e-11))
        for s in small:
            converged[s], active[s], msgs[s] = True, False, "converged (step below 1e-11)"
        for s in idx[acc & final]:
            if active[s]:
                converged[s], active[s], msgs[s] = True, False, "converged (final Newton step)"
    return [Optimum(eta[s], float(ofv[s]), bool(converged[s]), int(iters[s]), msgs[s], starts[s]) for s in range(S)]


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
            "diagnostics": self.diagnostics().model_dump() if self.design is not None else None,
        }

    def diagnostics(self) -> FitDiagnostics:
        """IWRES, ETA z-scores and shrinkage, prior-data conflict (see :mod:`ipexrx.dosing.diagnostics`)."""
        from .diagnostics import diagnose

        return diagnose(self)


def _seed(model_id: str, subject_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{model_id}/{subject_id}".encode()).digest()[:8], "little")


def fit(
    model: CompiledModel,
    subject: Subject | Design,
    n_starts: int | None = None,
    bound_sd: float = 5.0,
    method: str = "auto",
    raise_on_failure: bool = True,
    extra_starts: list[np.ndarray] | None = None,
    scan: bool = True,
) -> FitResult:
    """MAP estimate for one subject. Starts at ETA = 0 and from ``n_starts - 1`` prior draws (seeded by
    model and subject id, so results are reproducible); keeps the lowest objective. ``n_starts`` defaults to
    3, or 1 for models with dose-timing ETAs, which get the structured restarts described next.

    ETAs on dose-timing parameters (lag time, modelled infusion duration) make the objective multimodal:
    an observation can fall before or after the lagged dose. For these, ``scan`` profiles the objective
    along each such ETA on a grid (one vectorised evaluation) and restarts from the other valleys."""
    design = subject if isinstance(subject, Design) else build_design(model, subject)
    problem = Problem(design, method)
    n = model.n_eta
    if n_starts is None:
        # models with dose-timing ETAs get structured restarts below (profile valleys, dose-arrival crossings),
        # which found every NONMEM optimum on the 4,000 subjects of run003 without random starts
        n_starts = 1 if (scan and _timing_etas(model)) else 3
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
    opts = newton(problem, np.array(starts), bound)
    if scan and design.n_obs:  # valleys of the objective along dose-timing ETAs, seen from the best optimum
        opts += _scan_restarts(problem, opts, bound)
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
    ev = problem.evaluate(best.eta).take(np.array(0))
    try:
        etc = np.linalg.inv(ev.info)
        sign, logdet_i = np.linalg.slogdet(ev.info)
        obj = float(ev.ofv) + model.logdet_omega + logdet_i if sign > 0 else float("nan")
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
        model_id=model.id, subject_id=design.subject_id, eta_names=model.eta_names, eta=best.eta, ofv=float(ev.ofv),
        obj=float(obj), etc=etc, cov_observed=cov_obs, converged=best.converged, message=best.message,
        n_starts=len(starts), n_converged=len(good), distinct_optima=distinct,
        iterations=sum(o.iterations for o in opts), times=design.o_time[sel], cmt=design.o_cmt[sel],
        dv=design.o_dv[sel], blq=design.o_blq[sel], ipred=ev.f, pred=pred, parameters=pvals, warnings=warnings,
        at_bound=at_bound, design=design,
    )


def _timing_etas(model: CompiledModel) -> list[int]:
    """Indices of ETAs that act on lag times or modelled durations (directly or through other parameters)."""
    names = model.param_names
    used: set[str] = set()
    for e in list(model.dose_lag.values()) + list(model.dose_dur.values()):
        used |= set(e.symbols)
    changed = True
    while changed:  # parameters feeding those parameters
        changed = False
        for i, pe in enumerate(model.param_exprs):
            if names[i] in used:
                new = {x for x in pe.symbols if x in names} - used
                if new:
                    used |= new
                    changed = True
    return [k for k, pi in enumerate(model.eta_param_index) if names[pi] in used]


def _profile_valleys(problem: Problem, center: np.ndarray, center_ofv: float, bound: np.ndarray,
                     n_grid: int = 81, max_per_eta: int = 3) -> list[np.ndarray]:
    """Local minima of the objective along each dose-timing ETA (others held at ``center``), one evaluation."""
    idx = _timing_etas(problem.model)
    out: list[np.ndarray] = []
    for k in idx:
        grid = np.linspace(-0.95 * bound[k], 0.95 * bound[k], n_grid)
        pts = np.repeat(center[None, :], n_grid, axis=0)
        pts[:, k] = grid
        v = problem.ofv_batch(pts)
        step = grid[1] - grid[0]
        loc = [i for i in range(n_grid) if np.isfinite(v[i]) and (i == 0 or v[i] <= v[i - 1])
               and (i == n_grid - 1 or v[i] <= v[i + 1]) and abs(grid[i] - center[k]) > 1.5 * step
               and v[i] < center_ofv + _SCAN_MARGIN]
        out += [pts[i] for i in sorted(loc, key=lambda i: v[i])[:max_per_eta]]
    return out


def _lag_kinks(problem: Problem, center: np.ndarray, k: int, bound: np.ndarray) -> np.ndarray:
    """ETA_k values where a lagged dose arrives exactly at an observation time (others at ``center``).

    The objective is smooth between these values and not across them, so each interval is a candidate valley."""
    design = problem.design
    grid = np.linspace(-bound[k], bound[k], 401)
    pts = np.repeat(center[None, :], grid.size, axis=0)
    pts[:, k] = grid
    from .engine import _Ctx, dose_quantities

    lag = dose_quantities(design, _Ctx(design, pts))[1].real  # (G, D)
    obs = design.o_time[design.o_is_data]
    gap = obs[None, :, None] - design.d_time[None, None, :] - lag[:, None, :]  # (G, J, D)
    sign = np.sign(gap)
    change = np.any(sign[1:] != sign[:-1], axis=(1, 2))
    cells = np.flatnonzero(change)
    lo, hi = grid[cells], grid[cells + 1]
    pair_sign = sign[cells]  # sign pattern at the low end of each cell
    for _ in range(18):  # bisection of all crossings at once, one parameter evaluation per step
        mid = 0.5 * (lo + hi)
        p = np.repeat(center[None, :], mid.size, axis=0)
        p[:, k] = mid
        lm = dose_quantities(design, _Ctx(design, p))[1].real
        s_mid = np.sign(obs[None, :, None] - design.d_time[None, None, :] - lm[:, None, :])
        moved = np.any(s_mid != pair_sign, axis=(1, 2))
        hi = np.where(moved, mid, hi)
        lo = np.where(moved, lo, mid)
        pair_sign = np.where(moved[:, None, None], pair_sign, s_mid)
    out = 0.5 * (lo + hi)
    return np.asarray(out)


def _scan_restarts(problem: Problem, opts: list[Optimum], bound: np.ndarray) -> list[Optimum]:
    """Restarts for dose-timing ETAs: profile valleys, both sides of each lag/observation crossing, and a
    polish of the other ETAs when the optimum sits on a crossing (where the objective has a kink)."""
    good = [o for o in opts if np.isfinite(o.ofv)]
    if not good:
        return []
    best = min(good, key=lambda o: o.ofv)
    starts = _profile_valleys(problem, best.eta, best.ofv, bound)
    out: list[Optimum] = []
    for k in _timing_etas(problem.model):
        if not problem.model.dose_lag:
            break
        kinks = _lag_kinks(problem, best.eta, k, bound)
        kinks = kinks[np.abs(kinks) < 0.95 * bound[k]]
        below, above = kinks[kinks < best.eta[k] - 1e-6], kinks[kinks > best.eta[k] + 1e-6]
        for kv in ([below.max() - 1e-4] if below.size else []) + ([above.min() + 1e-4] if above.size else []):
            p = best.eta.copy()  # just across the nearest crossings: the neighbouring smooth pieces
            p[k] = kv
            starts.append(p)
        if kinks.size and np.min(np.abs(kinks - best.eta[k])) < 1e-6:  # optimum on a kink: polish the rest
            free = np.ones(problem.n, dtype=bool)
            free[k] = False
            out += newton(problem, best.eta[None], bound, free=free)
    if starts:
        out += newton(problem, np.array(starts), bound)
    return out


def map_objective(model: CompiledModel, subject: Subject | Design, eta: np.ndarray, method: str = "auto") -> float:
    """mapbayr's MAP objective at given ETAs (no ln|Omega|, no 2*pi terms)."""
    design = subject if isinstance(subject, Design) else build_design(model, subject)
    return Problem(design, method).ofv(np.asarray(eta, dtype=float))


def nonmem_obj(model: CompiledModel, subject: Subject | Design, eta: np.ndarray) -> tuple[float, np.ndarray]:
    """NONMEM's phi OBJ and ETC evaluated at given ETAs."""
    design = subject if isinstance(subject, Design) else build_design(model, subject)
    ev = Problem(design).evaluate(np.asarray(eta, dtype=float)).take(np.array(0))
    sign, ld = np.linalg.slogdet(ev.info)
    return float(ev.ofv) + model.logdet_omega + ld, np.linalg.inv(ev.info)
