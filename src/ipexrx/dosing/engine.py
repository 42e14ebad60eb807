"""Prediction engine: closed-form linear compartment solutions, with an ODE path that must agree.

Design choices (the why):

* Any model whose compartments and first-order flows form strongly connected blocks of at most two
  compartments (1-/2-compartment disposition, depot absorption, parent -> metabolite chains) has an
  exact solution: eigenvalues come block by block from closed formulas, and the spectral projectors
  from Sylvester's formula. Every operation is analytic, so the same code runs on complex numbers and
  gives exact parameter derivatives by complex step (used by the estimator for gradients, the
  NONMEM-style information matrix and Newton steps).
* With constant individual parameters each dose contributes independently (superposition): one
  vectorised pass over (observations x doses x modes), with per-row lag times and infusion durations.
* Time-varying covariates use NONMEM's convention (next observation carried backward: the value on a
  record applies to the interval ending at that record) and propagate the state record by record.
* ``predict_ode`` integrates the same system with scipy ``solve_ivp``; tests require both to agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import Subject, validate_subject
from .errors import CovariateError, DataError, DosingError
from .model import CompiledModel


@dataclass
class Design:
    """Everything about one subject that does not depend on ETA, precomputed once per fit."""

    model: CompiledModel
    subject_id: str
    rec_time: np.ndarray  # (R,)
    cov: dict[str, np.ndarray]  # covariate per record (R,) or (1,) when constant
    n_seg: int  # 1 when covariates are constant, else R
    # doses
    d_time: np.ndarray
    d_amt: np.ndarray
    d_cmt: np.ndarray
    d_rate: np.ndarray  # 0 bolus, >0 rate, -2 modelled duration
    d_ss: np.ndarray
    d_ii: np.ndarray
    d_seg: np.ndarray
    d_pos: np.ndarray
    # observations (and prediction points)
    o_time: np.ndarray
    o_cmt: np.ndarray
    o_out: np.ndarray  # output index
    o_seg: np.ndarray
    o_pos: np.ndarray
    o_dv: np.ndarray  # NaN for prediction points
    o_blq: np.ndarray
    o_lloq: np.ndarray
    o_is_data: np.ndarray  # True for data observations, False for requested prediction points
    mask: np.ndarray  # (J, D) dose d contributes to observation j
    resets: list[tuple[float, int]]  # (time, position) of reset events
    warnings: list[str] = field(default_factory=list)
    static: dict[str, Any] = field(default_factory=dict)  # per-subject caches (typical values, index arrays)

    @property
    def n_obs(self) -> int:
        return int(self.o_is_data.sum())


def _check_covariates(model: CompiledModel, subject: Subject, values: dict[str, np.ndarray]) -> list[str]:
    warnings: list[str] = []
    for name, c in model.spec.covariates.items():
        v = values[name]
        bad_allowed = c.allowed is not None and not np.all(np.isin(v, c.allowed))
        if bad_allowed:
            raise CovariateError(
                f"subject {subject.id}: covariate {name} ({c.description}) expected one of {c.allowed}, "
                f"got {sorted(set(v.tolist()))}"
            )
        lo, hi = float(np.min(v)), float(np.max(v))
        if (c.hard_min is not None and lo < c.hard_min) or (c.hard_max is not None and hi > c.hard_max):
            raise CovariateError(
                f"subject {subject.id}: covariate {name} ({c.description}) = {lo:g}" + (f"..{hi:g}" if hi != lo else "")
                + f" is not a plausible value in {c.unit} (expected {c.hard_min}-{c.hard_max} {c.unit}); check the unit"
            )
        outside = (c.min is not None and lo < c.min) or (c.max is not None and hi > c.max)
        if outside:
            rng = f"{c.min if c.min is not None else '-inf'}-{c.max if c.max is not None else 'inf'}"
            msg = (
                f"covariate {name} = {lo:g}" + (f"..{hi:g}" if hi != lo else "") + f" {c.unit} lies outside the "
                f"range the model {model.id} was developed on ({rng} {c.unit})"
            )
            if c.out_of_range == "refuse":
                raise CovariateError(f"subject {subject.id}: {msg}; the model refuses extrapolation")
            warnings.append(msg + "; predictions are an extrapolation")
    return warnings


def build_design(
    model: CompiledModel,
    subject: Subject,
    pred_times: list[float] | np.ndarray | None = None,
    pred_output: int = 0,
) -> Design:
    """Expand ADDL, resolve covariates (NOCB, defaults), check the data against the model."""
    validate_subject(subject, n_cmt=len(model.spec.compartments))
    recs = subject.records
    R = len(recs)
    rec_time = np.array([r.time for r in recs], dtype=float)
    spec = model.spec
    warnings = list(subject.warnings)

    # covariates: NOCB fill of missing values within the subject, then defaults
    cov: dict[str, np.ndarray] = {}
    for name, c in spec.covariates.items():
        vals = [r.covariates.get(name) for r in recs]
        if all(v is None for v in vals):
            if c.default is None:
                raise CovariateError(
                    f"subject {subject.id}: the model {model.id} needs covariate {name} ({c.description}, "
                    f"unit {c.unit}) and the data have none"
                )
            arr = np.full(R, float(c.default))
            u = "" if c.unit == "1" else f" {c.unit}"
            warnings.append(f"covariate {name} ({c.description}) absent: the model default {c.default:g}{u} was used")
        else:
            filled: list[float | None] = list(vals)
            nxt: float | None = None
            for i in range(R - 1, -1, -1):  # next observation carried backward
                if filled[i] is None:
                    filled[i] = nxt
                else:
                    nxt = filled[i]
            last: float | None = None
            for i in range(R):  # trailing gaps: last value carried forward
                if filled[i] is None:
                    filled[i] = last
                else:
                    last = filled[i]
            if any(v is None for v in vals):
                warnings.append(f"covariate {name} missing on some records: filled from the next known value")
            arr = np.array(filled, dtype=float)
        cov[name] = arr
    warnings += _check_covariates(model, subject, cov)
    varying = any(np.ptp(a) > 0 for a in cov.values()) if cov else False
    n_seg = R if varying else 1
    if not varying:
        cov = {k: v[:1] for k, v in cov.items()}

    # events
    keys: list[tuple[float, int, int, int]] = []
    kinds: list[tuple[str, Any]] = []
    for ri, r in enumerate(recs):
        if r.is_dose:
            if (r.cmt - 1) not in model.dose_f:
                raise DataError(
                    f"subject {subject.id}, row {r.row}: dose into CMT {r.cmt} ({spec.compartments[r.cmt - 1]}), "
                    f"but the model {model.id} doses only into {[spec.compartments[i] for i in model.dose_f]}"
                )
            if r.rate == -2 and (r.cmt - 1) not in model.dose_dur:
                raise DataError(
                    f"subject {subject.id}, row {r.row}: RATE=-2 needs a modelled duration for "
                    f"{spec.compartments[r.cmt - 1]}, which the model {model.id} does not define"
                )
            keys.append((r.time, 0, ri, 0))
            kinds.append(("dose", (ri, r.time)))
            for k in range(1, r.addl + 1):
                t = r.time + k * r.ii
                keys.append((t, 1, ri, k))
                kinds.append(("dose", (ri, t)))
        elif r.evid == 3:
            keys.append((r.time, 0, ri, 0))
            kinds.append(("reset", ri))
        if r.is_obs:
            if (r.cmt - 1) not in model.output_by_cmt:
                raise DataError(
                    f"subject {subject.id}, row {r.row}: observation in CMT {r.cmt} "
                    f"({spec.compartments[r.cmt - 1]}), which the model {model.id} does not observe"
                )
            keys.append((r.time, 0, ri, 1))
            kinds.append(("obs", ri))
    for pi, t in enumerate(pred_times if pred_times is not None else []):
        keys.append((float(t), -1, pi, 0))
        kinds.append(("pred", (pi, float(t))))
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    pos = np.empty(len(keys), dtype=int)
    pos[order] = np.arange(len(keys))

    def seg_of(t: float) -> int:
        if n_seg == 1:
            return 0
        return min(int(np.searchsorted(rec_time, t, side="left")), R - 1)

    d_rows: list[tuple[float, float, int, float, int, float, int, int]] = []
    o_rows: list[tuple[float, int, int, int, int, float, bool, float, bool]] = []
    resets: list[tuple[float, int]] = []
    out_cmt = model.outputs[pred_output][0]
    for i, (kind, payload) in enumerate(kinds):
        if kind == "dose":
            ri, t = payload
            r = recs[ri]
            is_parent = t == r.time and keys[i][1] == 0
            ss = r.ss if is_parent else 0
            if is_parent and (r.evid == 4 or ss == 1):
                resets.append((t, int(pos[i])))
            d_rows.append((t, r.amt, r.cmt - 1, r.rate, ss, r.ii, ri if n_seg > 1 else 0, int(pos[i])))
        elif kind == "reset":
            resets.append((recs[payload].time, int(pos[i])))
        elif kind == "obs":
            r = recs[payload]
            c = r.cmt - 1
            o_rows.append((
                r.time, c, model.output_by_cmt[c], payload if n_seg > 1 else 0, int(pos[i]),
                np.nan if r.dv is None else float(r.dv), bool(r.blq), np.nan if r.lloq is None else float(r.lloq),
                True,
            ))
        else:
            _, t = payload
            o_rows.append((t, out_cmt, pred_output, seg_of(t), int(pos[i]), np.nan, False, np.nan, False))
    d_rows.sort(key=lambda x: x[7])
    o_rows.sort(key=lambda x: x[4])
    D, J = len(d_rows), len(o_rows)
    da = np.array(d_rows, dtype=float).reshape(D, 8)
    oa = np.array([x[:8] for x in o_rows], dtype=float).reshape(J, 8)
    d_pos = da[:, 7].astype(int)
    o_pos = oa[:, 4].astype(int)
    last_reset = np.full(J, -1)
    for _, rp in resets:
        last_reset = np.where(o_pos >= rp, np.maximum(last_reset, rp), last_reset)
    mask = (d_pos[None, :] < o_pos[:, None]) & (d_pos[None, :] >= last_reset[:, None])
    for row in d_rows:
        if row[4] and row[3] > 0 and row[1] / row[3] > row[5] + 1e-12:
            raise DataError(
                f"subject {subject.id}: steady-state infusion lasting {row[1] / row[3]:g} h exceeds its interval "
                f"II {row[5]:g} h; this engine supports steady-state infusions no longer than the interval"
            )
    design = Design(
        model=model, subject_id=subject.id, rec_time=rec_time, cov=cov, n_seg=n_seg,
        d_time=da[:, 0], d_amt=da[:, 1], d_cmt=da[:, 2].astype(int), d_rate=da[:, 3], d_ss=da[:, 4].astype(int),
        d_ii=da[:, 5], d_seg=da[:, 6].astype(int), d_pos=d_pos,
        o_time=oa[:, 0], o_cmt=oa[:, 1].astype(int), o_out=oa[:, 2].astype(int), o_seg=oa[:, 3].astype(int),
        o_pos=o_pos, o_dv=oa[:, 5], o_blq=np.array([x[6] for x in o_rows], dtype=bool), o_lloq=oa[:, 7],
        o_is_data=np.array([x[8] for x in o_rows], dtype=bool), mask=mask, resets=resets, warnings=warnings,
    )
    _precompute_static(design)
    return design


# ----------------------------------------------------------------------------------------------
# Parameters


def _eta_dependent(model: CompiledModel) -> list[bool]:
    dep: list[bool] = []
    names = model.param_names
    for i, e in enumerate(model.param_exprs):
        d = model.param_iiv[i] != "none" or any(dep[names.index(s)] for s in e.symbols if s in names[:i])
        dep.append(d)
    return dep


def _precompute_static(design: Design) -> None:
    model = design.model
    env: dict[str, Any] = {k: v.value for k, v in model.spec.thetas.items()}
    env.update(design.cov)
    dep = _eta_dependent(model)
    for i, name in enumerate(model.param_names):
        if dep[i]:
            continue
        val = np.asarray(model.param_exprs[i](env), dtype=float)
        design.static[name] = np.broadcast_to(val, (design.n_seg,)).copy()
        env[name] = design.static[name]


def individual_parameters(design: Design, eta: np.ndarray) -> dict[str, np.ndarray]:
    """Individual parameters for a batch of ETA rows: each value has shape (B, n_seg)."""
    return _Ctx(design, np.atleast_2d(eta)).params


class _Ctx:
    """Evaluation context of one prediction call: the symbol table shared by every formula."""

    __slots__ = ("B", "S", "env", "params")

    def __init__(self, design: Design, eta: np.ndarray) -> None:
        model = design.model
        B = eta.shape[0]
        S = design.n_seg
        self.B, self.S = B, S
        env: dict[str, Any] = design.static.get("__env0__")  # type: ignore[assignment]
        if env is None:
            env = {k: v.value for k, v in model.spec.thetas.items()}
            env.update({k: v[None, :] for k, v in design.cov.items()})
            design.static["__env0__"] = env  # type: ignore[assignment]
        env = dict(env)
        params: dict[str, np.ndarray] = {}
        eta_of = design.static.get("__etaof__")
        if eta_of is None:
            eta_of = {pi: k for k, pi in enumerate(model.eta_param_index)}
            design.static["__etaof__"] = eta_of  # type: ignore[assignment]
        for i, name in enumerate(model.param_names):
            if name in design.static:
                val: Any = design.static[name][None, :]
            else:
                val = model.param_exprs[i](env)
                k = eta_of.get(i)  # type: ignore[union-attr]
                if k is not None:
                    e = eta[:, k][:, None]
                    kind = model.param_iiv[i]
                    if kind == "exponential":
                        val = val * np.exp(e)
                    elif kind == "additive":
                        val = val + e
                    else:  # proportional
                        val = val * (1.0 + e)
            val = np.asarray(val)
            if val.shape != (B, S):
                val = np.broadcast_to(val, (B, S))
            params[name] = val
            env[name] = val
        self.env = env
        self.params = params

    def eval(self, expr: Any) -> np.ndarray:
        v = expr.constant_value
        if v is not None:
            return np.full((self.B, self.S), v)
        val = np.asarray(expr(self.env))
        return val if val.shape == (self.B, self.S) else np.broadcast_to(val, (self.B, self.S))


def _dtype(ctx: _Ctx) -> Any:
    return complex if any(np.iscomplexobj(v) for v in ctx.params.values()) else float


# ----------------------------------------------------------------------------------------------
# Linear system: eigenvalues block by block, projectors by Sylvester's formula


def rate_matrix(design: Design, ctx: _Ctx, dtype: Any) -> np.ndarray:
    B = ctx.B
    m = len(design.model.spec.compartments)
    K = np.zeros((B, design.n_seg, m, m), dtype=dtype)
    for a, b, expr in design.model.flows:
        k = ctx.eval(expr)
        K[:, :, a, a] -= k
        if b is not None:
            K[:, :, b, a] += k
    return K


_TRIU: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def eigen_projectors(K: np.ndarray, blocks: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (..., m) and spectral projectors (..., m, m, m) of compartmental rate matrices."""
    m = K.shape[-1]
    lam = np.empty(K.shape[:-1], dtype=K.dtype)
    for blk in blocks:
        if len(blk) == 1:
            lam[..., blk[0]] = K[..., blk[0], blk[0]]
        else:
            i, j = blk
            a, d, b, c = K[..., i, i], K[..., j, j], K[..., i, j], K[..., j, i]
            tr = a + d
            disc = np.sqrt((a - d) ** 2 + 4.0 * b * c)
            l1 = 0.5 * (tr - disc)  # the faster (more negative) root, computed without cancellation
            l2 = (a * d - b * c) / l1
            lam[..., i] = l1
            lam[..., j] = l2
    # near-coincident eigenvalues (e.g. KA == k) make Sylvester's formula ill-conditioned: separate them
    # by a relative 1e-7 (the prediction error this causes is of the same relative order)
    if m > 1:
        lr = lam.real
        iu = _TRIU.get(m)
        if iu is None:
            iu = _TRIU[m] = np.triu_indices(m, 1)
        diff = np.abs(lr[..., :, None] - lr[..., None, :])[..., iu[0], iu[1]]
        scale = np.maximum(np.abs(lr[..., :, None]), np.abs(lr[..., None, :]))[..., iu[0], iu[1]]
        if np.any(diff < 1e-7 * scale):
            for k in range(m):
                for j in range(k):
                    lr = lam.real
                    close = np.abs(lr[..., k] - lr[..., j]) < 1e-7 * np.maximum(np.abs(lr[..., k]), np.abs(lr[..., j]))
                    lam[..., k] = np.where(close, lam[..., k] * (1 + 2e-7), lam[..., k])
    eye = np.eye(m)
    P = np.empty(K.shape[:-2] + (m, m, m), dtype=K.dtype)
    acc = None
    for k in range(m - 1):  # Sylvester: P_k = prod_{j != k} (K - l_j I) / (l_k - l_j)
        Pk = None
        for j in range(m):
            if j == k:
                continue
            f = (K - lam[..., j, None, None] * eye) / (lam[..., k] - lam[..., j])[..., None, None]
            Pk = f if Pk is None else np.matmul(Pk, f)
        P[..., k, :, :] = Pk
        acc = Pk if acc is None else acc + Pk
    P[..., m - 1, :, :] = eye - acc if acc is not None else eye  # projectors sum to the identity
    return lam, P


def _phi(alpha: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(1 - exp(-alpha x)) / alpha, accurate for small alpha*x."""
    ax = alpha * x
    small = np.abs(ax) < 1e-8
    safe_a = np.where(small, 1.0, alpha)
    return np.where(small, x * (1 - 0.5 * ax), -np.expm1(-ax) / safe_a)


def _dose_groups(design: Design) -> list[tuple[int, np.ndarray, np.ndarray]]:
    g = design.static.get("__groups__")
    if g is None:
        g = [(int(c), design.d_cmt == c, design.d_seg[design.d_cmt == c]) for c in np.unique(design.d_cmt)]
        design.static["__groups__"] = g  # type: ignore[assignment]
    return g  # type: ignore[return-value]


def dose_quantities(design: Design, ctx: _Ctx) -> tuple[np.ndarray, ...]:
    """Per-dose bioavailable amount, lag and infusion duration, each (B, D)."""
    model = design.model
    D = len(design.d_time)
    B = ctx.B
    dtype = _dtype(ctx)
    F = np.ones((B, D), dtype=dtype)
    lag = np.zeros((B, D), dtype=dtype)
    dur = np.zeros((B, D), dtype=dtype)
    for c, sel, seg in _dose_groups(design):
        f = ctx.eval(model.dose_f[c])[:, seg]
        F[:, sel] = f
        if c in model.dose_lag:
            lag[:, sel] = ctx.eval(model.dose_lag[c])[:, seg]
        if c in model.dose_dur:
            dd = ctx.eval(model.dose_dur[c])[:, seg]
            dur[:, sel] = np.where(design.d_rate[sel] == -2, dd, 0.0)
    amt = design.d_amt * F
    pos_rate = design.d_rate > 0
    if np.any(pos_rate):
        dur = np.where(pos_rate, amt / np.where(pos_rate, design.d_rate, 1.0), dur)
    return amt, lag, dur


@dataclass
class _SPCache:
    tau0: np.ndarray  # (J, D) observation time - dose time
    oc: np.ndarray
    dc: np.ndarray
    ss: np.ndarray  # (D,) bool
    any_ss: bool
    ii: np.ndarray  # (D,)
    maybe_inf: bool
    has_lag: bool
    same: np.ndarray  # (J, D) obs compartment == dose compartment


def _sp_cache(design: Design) -> _SPCache:
    c = design.static.get("__sp__")
    if c is None:
        model = design.model
        c = _SPCache(
            tau0=design.o_time[:, None] - design.d_time[None, :],
            oc=design.o_cmt[:, None], dc=design.d_cmt[None, :], ss=design.d_ss > 0,
            any_ss=bool(np.any(design.d_ss > 0)),
            ii=np.where(design.d_ii > 0, design.d_ii, 1.0),
            maybe_inf=bool(np.any(design.d_rate != 0)),
            has_lag=any(int(d) in model.dose_lag for d in np.unique(design.d_cmt)),
            same=design.o_cmt[:, None] == design.d_cmt[None, :],
        )
        design.static["__sp__"] = c  # type: ignore[assignment]
    return c  # type: ignore[return-value]


def predict_superposition(design: Design, ctx: _Ctx) -> np.ndarray:
    """Concentrations (B, J) for constant parameters, by superposition of exact single-dose responses."""
    model = design.model
    B = ctx.B
    dtype = _dtype(ctx)
    J, D = len(design.o_time), len(design.d_time)
    if not (D and J):
        return _to_conc(design, ctx, np.zeros((B, J), dtype=dtype))
    c = _sp_cache(design)
    K = rate_matrix(design, ctx, dtype)[:, 0]  # (B, m, m)
    lam, P = eigen_projectors(K, model.blocks)
    amt, lag, dur = dose_quantities(design, ctx)
    alpha = -lam[:, :, None, None]  # (B, K, 1, 1)
    Pcd = P[:, :, c.oc, c.dc]  # (B, K, J, D)
    tau = c.tau0[None] - lag[:, None, :] if c.has_lag else c.tau0[None]  # (B|1, J, D)
    tr = tau.real
    if c.any_ss:
        tau = tau + np.where(c.ss & (tr < 0), np.ceil(-tr / c.ii) * c.ii, 0.0)
    active = design.mask[None] & ((tr >= 0) | c.ss)
    tau = np.where(active, tau, 0.0)[:, None]  # (B|1, 1, J, D); inactive entries set to 0 (no overflow)
    e_tau = np.exp(-alpha * tau)
    is_inf = dur.real > 0
    if c.maybe_inf and np.any(is_inf):
        inf4 = is_inf[:, None, None, :]
        dur4 = np.where(is_inf, dur, 1.0)[:, None, None, :]
        in_inf = tau.real <= dur4.real
        ph_d = _phi(alpha, dur4)
        tail = np.exp(-alpha * np.where(in_inf, 0.0, tau - dur4)) * ph_d
        inf_resp = np.where(in_inf, _phi(alpha, np.where(in_inf, tau, 0.0)), tail) / dur4
        resp = np.where(inf4, inf_resp, e_tau)
        if c.any_ss:
            geo = 1.0 / (-np.expm1(-alpha * c.ii))
            ss_inf = inf_resp + np.exp(-alpha * (tau + c.ii - dur4)) * ph_d / dur4 * geo
            resp = np.where(c.ss, np.where(inf4, ss_inf, e_tau * geo), resp)
    else:
        is_inf = np.zeros((1, D), dtype=bool)
        resp = e_tau
        if c.any_ss:
            resp = np.where(c.ss, e_tau / (-np.expm1(-alpha * c.ii)), resp)
    contrib = np.einsum("bkjd,bkjd->bjd", Pcd, resp) * amt[:, None, :]  # (B, J, D)
    # exact values at the instant of a bolus (the modes cancel to the identity)
    at0 = active & (tr == 0) & ~is_inf[:, None, :] & ~c.ss
    if np.any(at0):
        contrib = np.where(at0, np.where(c.same, amt[:, None, :], 0.0), contrib)
    A = np.where(active, contrib, 0.0).sum(axis=2)
    return _to_conc(design, ctx, A)


def _to_conc(design: Design, ctx: _Ctx, A: np.ndarray) -> np.ndarray:
    model = design.model
    out = np.empty_like(A)
    for k, (_, scale_expr, factor, _) in enumerate(model.outputs):
        sel = design.o_out == k
        if not np.any(sel):
            continue
        s = ctx.eval(scale_expr)[:, design.o_seg[sel]]
        out[:, sel] = A[:, sel] / s * factor
    return out


# ----------------------------------------------------------------------------------------------
# Record-by-record propagation (time-varying parameters)


def _event_list(design: Design, amt_row: np.ndarray, lag_row: np.ndarray, dur_row: np.ndarray) -> list[tuple]:
    """Events for one ETA row, sorted: (time, priority, order, kind, index). Real parts decide order."""
    ev: list[tuple] = []
    for d in range(len(design.d_time)):
        t = float(design.d_time[d] + lag_row[d].real)
        ev.append((t, 1, int(design.d_pos[d]), "dose", d))
        if dur_row[d].real > 0:
            ev.append((t + float(dur_row[d].real), 0, -1, "infend", d))
    for j in range(len(design.o_time)):
        ev.append((float(design.o_time[j]), 1, int(design.o_pos[j]), "obs", j))
    for t, p in design.resets:
        ev.append((float(t), 1, p - 0.5, "reset", -1))
    ev.sort(key=lambda e: (e[0], e[1], e[2]))
    return ev


def predict_propagation(design: Design, ctx: _Ctx) -> np.ndarray:
    """Concentrations (B, J) advancing the state between events with exact matrix exponentials."""
    model = design.model
    B = ctx.B
    dtype = _dtype(ctx)
    m = len(model.spec.compartments)
    K = rate_matrix(design, ctx, dtype)  # (B, S, m, m)
    lam, P = eigen_projectors(K, model.blocks)  # (B, S, m), (B, S, m, m, m)
    amt, lag, dur = dose_quantities(design, ctx)
    J = len(design.o_time)
    A_out = np.zeros((B, J), dtype=dtype)
    evs = [_event_list(design, amt[b], lag[b], dur[b]) for b in range(B)]
    shared = all([(e[3], e[4]) for e in ev] == [(e[3], e[4]) for e in evs[0]] for ev in evs[1:])
    groups = [list(range(B))] if shared else [[b] for b in range(B)]
    rec_time = design.rec_time
    R = len(rec_time)
    for rows in groups:
        ev = evs[rows[0]]
        idx = np.array(rows)
        A = np.zeros((len(rows), m), dtype=dtype)
        rate = np.zeros((len(rows), m), dtype=dtype)
        t_now: np.ndarray = np.full(len(rows), ev[0][0] if ev else 0.0, dtype=dtype)
        for _, _, _, kind, k in ev:
            if kind == "dose":
                t_ev = design.d_time[k] + lag[idx, k]
            elif kind == "infend":
                t_ev = design.d_time[k] + lag[idx, k] + dur[idx, k]
            elif kind == "obs":
                t_ev = np.full(len(rows), design.o_time[k], dtype=dtype)
            else:
                t_ev = t_now
            dt = t_ev - t_now
            if np.any(dt.real > 0):
                s = 0 if design.n_seg == 1 else min(int(np.searchsorted(rec_time, float(t_ev[0].real), "left")), R - 1)
                lam_s, P_s = lam[idx, s], P[idx, s]
                e = np.exp(lam_s * dt[:, None])
                ph = _phi(-lam_s, dt[:, None])
                A = np.einsum("bkij,bk,bj->bi", P_s, e, A) + np.einsum("bkij,bk,bj->bi", P_s, ph, rate)
            t_now = t_ev
            if kind == "dose":
                c = design.d_cmt[k]
                s = design.d_seg[k]
                if design.d_ss[k]:
                    if np.any(lag[idx, k].real != 0):
                        raise DosingError("steady-state doses with a lag time need constant covariates")
                    if design.d_ss[k] == 1:
                        A = np.zeros_like(A)
                        rate = np.zeros_like(rate)
                    ii = design.d_ii[k]
                    lam_s, P_s = lam[idx, s], P[idx, s]
                    alpha = -lam_s
                    geo = 1.0 / (-np.expm1(-alpha * ii))
                    if dur[idx, k].real[0] > 0:
                        dd = dur[idx, k][:, None]
                        w = np.exp(-alpha * (ii - dd)) * _phi(alpha, dd) / dd * geo
                    else:
                        w = np.exp(-alpha * ii) * geo
                    A = A + np.einsum("bki,bk->bi", P_s[:, :, :, c], w) * amt[idx, k][:, None]
                if dur[idx, k].real[0] > 0:
                    rate[:, c] += amt[idx, k] / dur[idx, k]
                else:
                    A[:, c] += amt[idx, k]
            elif kind == "infend":
                c = design.d_cmt[k]
                rate[:, c] -= amt[idx, k] / dur[idx, k]
            elif kind == "reset":
                A = np.zeros_like(A)
                rate = np.zeros_like(rate)
            else:
                A_out[idx, k] = A[:, design.o_cmt[k]]
    return _to_conc(design, ctx, A_out)


def predict(design: Design, eta: np.ndarray, method: str = "auto") -> np.ndarray:
    """Predicted concentrations (B, J) for ETA rows (B, n); complex ETAs give complex-step derivatives."""
    ctx = _Ctx(design, np.atleast_2d(eta))
    if method == "ode" or not design.model.closed_form:
        return predict_ode(design, ctx)
    if method == "propagation" or design.n_seg > 1:
        return predict_propagation(design, ctx)
    return predict_superposition(design, ctx)


# ----------------------------------------------------------------------------------------------
# ODE path


_ODE_METHOD = "DOP853"  # explicit 8th order: accurate and fast for these mildly stiff linear systems


def predict_ode(design: Design, ctx: _Ctx, rtol: float = 1e-10, atol: float = 1e-12) -> np.ndarray:
    """Integrate dA/dt = K A + input with scipy's solve_ivp between events (real ETAs only).

    Steady state is reached by integrating repeated intervals until the state repeats (relative 1e-12),
    independently of the closed-form geometric sums.
    """
    from scipy.integrate import solve_ivp

    model = design.model
    B = ctx.B
    if _dtype(ctx) is not float:
        raise DosingError("the ODE path works on real parameters only")
    m = len(model.spec.compartments)
    K = rate_matrix(design, ctx, float)
    amt, lag, dur = dose_quantities(design, ctx)
    J = len(design.o_time)
    out = np.zeros((B, J))
    rec_time = design.rec_time
    R = len(rec_time)

    def advance(A: np.ndarray, rate: np.ndarray, t0: float, t1: float, b: int) -> np.ndarray:
        if t1 <= t0:
            return A
        s = 0 if design.n_seg == 1 else min(int(np.searchsorted(rec_time, t1, "left")), R - 1)
        Km = K[b, s]
        sol = solve_ivp(lambda _t, y: Km @ y + rate, (t0, t1), A, method=_ODE_METHOD, rtol=rtol, atol=atol)
        if not sol.success:
            raise DosingError(f"ODE integration failed: {sol.message}")
        return np.asarray(sol.y[:, -1])

    for b in range(B):
        ev = _event_list(design, amt[b], lag[b], dur[b])
        A = np.zeros(m)
        rate = np.zeros(m)
        t_now = ev[0][0] if ev else 0.0
        for t_ev, _, _, kind, k in ev:
            A = advance(A, rate, t_now, t_ev, b)
            t_now = t_ev
            if kind == "dose":
                c = design.d_cmt[k]
                if design.d_ss[k]:
                    if design.d_ss[k] == 1:
                        A, rate = np.zeros(m), np.zeros(m)
                    A = A + _ode_ss_state(K[b, design.d_seg[k]], c, amt[b, k].real, dur[b, k].real,
                                          design.d_ii[k], lag[b, k].real, rtol, atol)
                if dur[b, k] > 0:
                    rate[c] += amt[b, k] / dur[b, k]
                else:
                    A[c] += amt[b, k]
            elif kind == "infend":
                rate[design.d_cmt[k]] -= amt[b, k] / dur[b, k]
            elif kind == "reset":
                A, rate = np.zeros(m), np.zeros(m)
            else:
                out[b, k] = A[design.o_cmt[k]]
    return _to_conc(design, ctx, out)


def _ode_ss_state(Km: np.ndarray, c: int, amt: float, dur: float, ii: float, lag: float,
                  rtol: float, atol: float) -> np.ndarray:
    """State at the record time of a steady-state dose, from prior doses only, by repeated integration."""
    from scipy.integrate import solve_ivp

    m = Km.shape[0]
    if lag > 0:
        raise DosingError("the ODE path does not support steady-state doses with a lag time")

    def one_interval(A0: np.ndarray) -> np.ndarray:
        # an interval that starts at a dose time (dose already applied via A0/infusion) and lasts ii
        A = A0.copy()
        t = 0.0
        if dur > 0:
            r = np.zeros(m)
            r[c] = amt / dur
            sol = solve_ivp(lambda _t, y: Km @ y + r, (0, dur), A, method=_ODE_METHOD, rtol=rtol, atol=atol)
            A, t = sol.y[:, -1], dur
        sol = solve_ivp(lambda _t, y: Km @ y, (t, ii), A, method=_ODE_METHOD, rtol=rtol, atol=atol)
        return np.asarray(sol.y[:, -1])

    def one_interval_free(A0: np.ndarray) -> np.ndarray:
        sol = solve_ivp(lambda _t, y: Km @ y, (0, ii), A0, method=_ODE_METHOD, rtol=rtol, atol=atol)
        return np.asarray(sol.y[:, -1])

    # the interval map is affine, A -> M A + b; its fixed point is the steady state (m + 1 integrations)
    b = one_interval(np.eye(m)[c] * amt if dur <= 0 else np.zeros(m))
    M = np.empty((m, m))
    for i in range(m):
        M[:, i] = one_interval_free(np.eye(m)[i])
    A = np.linalg.solve(np.eye(m) - M, b)  # pre-dose state at steady state
    return A


def covariate_range_text(model: CompiledModel) -> list[str]:
    out = []
    for name, c in model.spec.covariates.items():
        rng = f"{c.min:g}-{c.max:g}" if c.min is not None and c.max is not None else "any"
        out.append(f"{name} ({c.unit}): {c.description}; range {rng}" + (
            f"; default {c.default:g}" if c.default is not None else "; required"))
    return out

