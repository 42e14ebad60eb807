"""Concentration-time plots: individual prediction with its band, observed levels and the target band.

PNG through matplotlib (Agg, no display; the optional 'plots' extra); HTML as a self-contained page with an
inline SVG whose points carry tooltips (no JavaScript library, no network).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import Record, Subject
from .estimate import FitResult
from .model import CompiledModel
from .recommend import Recommendation, dose_compartment, prediction_band


@dataclass
class Curve:
    title: str
    unit: str
    times: np.ndarray
    ipred: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    obs_t: np.ndarray
    obs_y: np.ndarray
    blq_t: np.ndarray
    target: tuple[float, float] | None
    note: str


def fit_curve(model: CompiledModel, subject: Subject, fr: FitResult, n: int = 400) -> Curve:
    t_end = max(r.time for r in subject.records)
    tau = next((r.ii for r in reversed(subject.records) if r.is_dose and r.ii > 0), model.spec.default_interval_h or 24)
    times = np.linspace(min(r.time for r in subject.records), t_end + tau, n)
    ip, lo, hi, _ = prediction_band(model, subject, fr.eta, fr.etc, times)
    sel = ~fr.blq & (fr.cmt == model.outputs[0][0])
    tgt = next(((t.low, t.high) for t in model.spec.targets if t.metric == "trough"), None)
    return Curve(
        title=f"{model.spec.drug}: subject {fr.subject_id} ({model.id})", unit=model.spec.outputs[0].unit,
        times=times, ipred=ip, lo=lo, hi=hi, obs_t=fr.times[sel], obs_y=fr.dv[sel], blq_t=fr.times[fr.blq],
        target=tgt, note="band: 90 % interval of the individual prediction (parameter uncertainty)",
    )


def recommendation_curve(model: CompiledModel, rec: Recommendation, covariates: dict[str, float],
                         n_intervals: int = 2, n: int = 400) -> Curve:
    tau = rec.interval_h
    c = dose_compartment(model) + 1
    subj = Subject("regimen", [Record(time=0, evid=1, amt=rec.dose_mg, cmt=c, ii=tau, ss=1,
                                      addl=n_intervals - 1, covariates=covariates)])
    times = np.linspace(0, n_intervals * tau, n)
    times[0] = 1e-9 * tau  # just after the steady-state dose record (a point at 0 would precede it)
    if rec.fit is not None:
        eta, cov = rec.fit.eta, rec.fit.etc
    else:
        eta, cov = np.zeros(model.n_eta), model.omega
    ip, lo, hi, _ = prediction_band(model, subj, eta, cov, times)
    return Curve(
        title=f"{model.spec.drug} {rec.dose_mg:g} mg every {tau:g} h at steady state ({model.id})",
        unit=model.spec.outputs[0].unit, times=times, ipred=ip, lo=lo, hi=hi, obs_t=np.array([]),
        obs_y=np.array([]), blq_t=np.array([]),
        # an AUC24 target is not a concentration: no band on the concentration axis, only the note
        target=None if rec.metric == "auc24" else (rec.target_low, rec.target_high),
        note=f"{rec.basis}; band: 90 % interval of the concentration from parameter uncertainty only (no "
             f"residual error); {rec.metric} target {rec.target_low:g}-{rec.target_high:g} {rec.target_unit} "
             f"({rec.target_context})",
    )


def write_png(curve: Curve, path: str | Path) -> Path:
    from ..extras import require

    matplotlib = require("matplotlib", "plots", "A PNG plot (--plot)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    if curve.target:
        ax.axhspan(curve.target[0], curve.target[1], color="tab:green", alpha=0.15, label="target range")
    ax.fill_between(curve.times, curve.lo, curve.hi, color="tab:blue", alpha=0.2, label="90 % prediction band")
    ax.plot(curve.times, curve.ipred, color="tab:blue", lw=1.6, label="individual prediction")
    if curve.obs_t.size:
        ax.plot(curve.obs_t, curve.obs_y, "o", color="black", ms=5, label="observed level")
    for t in curve.blq_t:
        ax.axvline(t, color="grey", ls=":", lw=1)
    ax.set_xlabel("time (h)")
    ax.set_ylabel(f"concentration ({curve.unit})")
    ax.set_title(curve.title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.text(0.01, 0.01, curve.note, fontsize=7, color="dimgrey")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    p = Path(path)
    fig.savefig(p)
    plt.close(fig)
    return p


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering lo..hi."""
    span = hi - lo
    if not span > 0:
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(k * mag for k in (1, 2, 2.5, 5, 10) if k * mag >= raw)
    out, t = [], math.ceil(lo / step - 1e-6) * step  # a start a hair above a round value still ticks it
    while t <= hi + 1e-9 * step:
        out.append(round(t, 10))
        t += step
    return out


def svg(curve: Curve, dom_id: str = "plot") -> str:
    """The curve as a responsive SVG element (``viewBox``, scales to its container; no script, no inline style):
    target band, 90 % band, prediction line, observed levels and BLQ times, with a legend and text alternatives
    (``<title>``/``<desc>``) for screen readers. ``dom_id`` keeps ids unique when a page holds several plots."""
    W, H, ml, mr, mt, mb = 640, 380, 64, 16, 44, 52
    ys = [float(curve.hi.max()), float(curve.ipred.max())] + ([curve.target[1]] if curve.target else [])
    if curve.obs_y.size:
        ys.append(float(np.max(curve.obs_y)))
    ymax = max(ys) * 1.08 or 1.0
    yt = ticks(0.0, ymax)
    ymax = max(ymax, yt[-1])
    t0, t1 = float(curve.times[0]), float(curve.times[-1])

    def X(t: float) -> float:
        return ml + (t - t0) / (t1 - t0 or 1) * (W - ml - mr)

    def Y(y: float) -> float:
        return H - mb - min(y, ymax) / ymax * (H - mt - mb)

    u = html.escape(curve.unit)
    e = html.escape
    parts = [f'<svg class="conc-plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
             f'aria-labelledby="{dom_id}-title {dom_id}-desc" preserveAspectRatio="xMidYMid meet">'
             f'<title id="{dom_id}-title">{e(curve.title)}</title><desc id="{dom_id}-desc">{e(curve.note)}'
             + (f"; target {curve.target[0]:g}-{curve.target[1]:g} {u}" if curve.target else "")
             + (f"; {curve.obs_t.size} measured level(s)" if curve.obs_t.size else "") + "</desc>"]
    if curve.target:
        lo, hi = curve.target
        parts.append(f'<rect x="{ml}" y="{Y(hi):.1f}" width="{W - ml - mr}" height="{Y(lo) - Y(hi):.1f}" '
                     f'fill="#2e7d32" fill-opacity="0.15"><title>target {lo:g}-{hi:g} {u}</title></rect>')
    band = " ".join(f"{X(t):.1f},{Y(y):.1f}" for t, y in zip(curve.times, curve.hi, strict=True))
    band += " " + " ".join(f"{X(t):.1f},{Y(y):.1f}" for t, y in zip(curve.times[::-1], curve.lo[::-1], strict=True))
    parts.append(f'<polygon points="{band}" fill="#4a78b5" fill-opacity="0.25"><title>90 % band</title></polygon>')
    line = " ".join(f"{X(t):.1f},{Y(y):.1f}" for t, y in zip(curve.times, curve.ipred, strict=True))
    parts.append(f'<polyline points="{line}" fill="none" stroke="#1f4e8c" stroke-width="2"/>')
    for t in curve.blq_t:
        parts.append(f'<line x1="{X(t):.1f}" y1="{mt}" x2="{X(t):.1f}" y2="{H - mb}" stroke="#555" '
                     f'stroke-dasharray="3 3"><title>below the limit of quantification at {t:g} h</title></line>')
    for t, y in zip(curve.obs_t, curve.obs_y, strict=True):
        parts.append(f'<circle cx="{X(t):.1f}" cy="{Y(y):.1f}" r="5" fill="black"><title>measured {y:.4g} {u} at '
                     f'{t:g} h</title></circle>')
    parts.append(f'<line x1="{ml}" y1="{H - mb}" x2="{W - mr}" y2="{H - mb}" stroke="black"/>'
                 f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{H - mb}" stroke="black"/>')
    for v in yt:
        parts.append(f'<text x="{ml - 6}" y="{Y(v) + 5:.1f}" font-size="14" text-anchor="end">{v:g}</text>')
    for v in ticks(t0, t1, 6):
        parts.append(f'<text x="{X(v):.1f}" y="{H - mb + 20}" font-size="14" text-anchor="middle">{v:g}</text>')
    parts.append(f'<text x="{(W + ml) / 2:.0f}" y="{H - 8}" font-size="14" text-anchor="middle">time (h)</text>')
    parts.append(f'<text x="16" y="{(H - mb + mt) / 2:.0f}" font-size="14" text-anchor="middle" '
                 f'transform="rotate(-90 16 {(H - mb + mt) / 2:.0f})">concentration ({u})</text>')
    # legend along the top
    legend = [("rect", "#4a78b5", "90 % band")] + ([("rect", "#2e7d32", "target")] if curve.target else []) + \
        [("line", "#1f4e8c", "prediction")] + ([("dot", "black", "measured")] if curve.obs_t.size else [])
    x = ml
    for kind, colour, label in legend:
        if kind == "rect":
            parts.append(f'<rect x="{x}" y="12" width="18" height="12" fill="{colour}" fill-opacity="0.35"/>')
        elif kind == "line":
            parts.append(f'<line x1="{x}" y1="18" x2="{x + 18}" y2="18" stroke="{colour}" stroke-width="2"/>')
        else:
            parts.append(f'<circle cx="{x + 9}" cy="18" r="5" fill="{colour}"/>')
        parts.append(f'<text x="{x + 24}" y="23" font-size="14">{label}</text>')
        x += 34 + 8 * len(label)
    parts.append("</svg>")
    return "".join(parts)


def write_html(curve: Curve, path: str | Path, details: list[str] | None = None) -> Path:
    """A standalone page with the plot (:func:`svg`, the same drawing as the web page's) and ``details``."""
    parts = [svg(curve)]
    items = "".join(f"<li>{html.escape(d)}</li>" for d in (details or []))
    page = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>"
        f"{html.escape(curve.title)}</title><style>body{{font-family:sans-serif;max-width:880px;margin:1em auto}}"
        "li{margin:.2em 0}</style></head><body>"
        f"<h1 style=\"font-size:1.1em\">{html.escape(curve.title)}</h1>{''.join(parts)}"
        f"<p style=\"color:#555;font-size:.85em\">{html.escape(curve.note)}. Hover the curve for values.</p>"
        f"<ul>{items}</ul></body></html>"
    )
    p = Path(path)
    p.write_text(page, encoding="utf-8")
    return p
