"""Render a :class:`~ipexrx.dosing.report.TDMReport` as one printable, self-contained HTML page (A4).

The page has its CSS inline, no JavaScript and no external assets (it is printed or attached to a chart and
must not fetch anything); the concentration plot is an inline SVG written here. Autoescaping is on: model
texts and user input are never trusted as HTML. Print to PDF from any browser (the print rules set A4).
"""

from __future__ import annotations

import functools
import math
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import jinja2

    from ..dosing.report import TDMReport

TEMPLATES = Path(__file__).parent / "templates"

# plot geometry (SVG user units; the SVG scales to the page width)
W, H = 820, 215
ML, MR, MT, MB = 58, 12, 14, 40


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = _num
    env.filters["pct"] = lambda x: f"{100 * float(x):.0f} %"
    env.filters["sentence"] = lambda s: (s[:1].upper() + s[1:]) if s else s
    return env


def _num(x: Any, digits: int = 3) -> str:
    """A number to ``digits`` significant figures, without exponent for ordinary clinical magnitudes."""
    if x is None:
        return "-"
    v = float(x)
    if not math.isfinite(v):
        return "-"
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e6:
        decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(v)))))
        s = f"{v:.{decimals}f}"
        return s.rstrip("0").rstrip(".") if "." in s else s
    return f"{v:.{digits}g}"


def plot_svg(report: TDMReport) -> str:
    """The concentration-time plot as an SVG element (a string; the caller marks it safe).

    Outer band: 90 % predictive interval (parameter uncertainty and residual error); inner band: parameter
    uncertainty only; line: the individual (or population) prediction; green band: the target; dots: measured
    levels (red ring: a level the model cannot explain); open triangles: levels below the limit of
    quantification; dashed line: where the suggested regimen starts."""
    from ..dosing.plot import ticks  # the dosing stack is loaded already when a TDM report exists

    c = report.curve
    if c is None:
        return ""
    t = c.times_h
    t0, t1 = t[0], t[-1]
    ys = [max(c.predictive_high), max(c.prediction)]
    if report.target.on_plot:
        ys.append(report.target.high)
    ys += [lv.value for lv in report.patient.levels if lv.value is not None]
    ymax = max(ys) * 1.08 or 1.0
    yt = ticks(0.0, ymax)
    ymax = max(ymax, yt[-1])

    def X(v: float) -> float:
        return ML + (v - t0) / ((t1 - t0) or 1.0) * (W - ML - MR)

    def Y(v: float) -> float:
        return H - MB - v / ymax * (H - MT - MB)

    def band(lo: list[float], hi: list[float]) -> str:
        up = " ".join(f"{X(a):.1f},{Y(b):.1f}" for a, b in zip(t, hi, strict=True))
        down = " ".join(f"{X(a):.1f},{Y(b):.1f}" for a, b in zip(reversed(t), reversed(lo), strict=True))
        return f"{up} {down}"

    unit = escape(c.unit)
    p = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
         f'aria-labelledby="plot-title"><title id="plot-title">{escape(report.drug)} concentration ({unit}) over time '
         "(h): prediction with 90 % bands, target range and measured levels</title>"]
    if report.target.on_plot:
        lo, hi = report.target.low, report.target.high
        p.append(f'<rect class="target" x="{ML}" y="{Y(min(hi, ymax)):.1f}" width="{W - ML - MR}" '
                 f'height="{Y(lo) - Y(min(hi, ymax)):.1f}" fill="#2e7d32" fill-opacity="0.13">'
                 f"<title>target {_num(lo)}-{_num(hi)} {unit}</title></rect>")
    p.append(f'<polygon class="band-predictive" points="{band(c.predictive_low, c.predictive_high)}" '
             'fill="#4a78b5" fill-opacity="0.15"/>')
    p.append(f'<polygon class="band-parameter" points="{band(c.parameter_low, c.parameter_high)}" '
             'fill="#4a78b5" fill-opacity="0.30"/>')
    line = " ".join(f"{X(a):.1f},{Y(b):.1f}" for a, b in zip(t, c.prediction, strict=True))
    p.append(f'<polyline class="prediction" points="{line}" fill="none" stroke="#1f4e8c" stroke-width="1.6"/>')
    if c.regimen_change_h is not None:
        xc = X(c.regimen_change_h)
        p.append(f'<line x1="{xc:.1f}" y1="{MT}" x2="{xc:.1f}" y2="{H - MB}" stroke="#444" stroke-dasharray="4 3"/>')
        p.append(f'<text x="{xc + 4:.1f}" y="{MT + 10}" font-size="10" fill="#333">suggested regimen from here</text>')
    for lv in report.patient.levels:
        if lv.value is None:
            yb = H - MB - 5
            p.append(f'<polygon class="blq" points="{X(lv.time_h) - 4:.1f},{yb + 4:.1f} {X(lv.time_h) + 4:.1f},'
                     f'{yb + 4:.1f} {X(lv.time_h):.1f},{yb - 4:.1f}" fill="white" stroke="black">'
                     f"<title>below the limit of quantification at {_num(lv.time_h)} h</title></polygon>")
            continue
        ring = ' stroke="#b00020" stroke-width="2.5"' if lv.flagged else ""
        p.append(f'<circle class="level" cx="{X(lv.time_h):.1f}" cy="{Y(lv.value):.1f}" r="3.6" fill="black"{ring}>'
                 f"<title>measured {_num(lv.value)} {unit} at {_num(lv.time_h)} h</title></circle>")
    # axes, ticks, labels
    p.append(f'<line x1="{ML}" y1="{H - MB}" x2="{W - MR}" y2="{H - MB}" stroke="black"/>')
    p.append(f'<line x1="{ML}" y1="{MT}" x2="{ML}" y2="{H - MB}" stroke="black"/>')
    for v in yt:
        p.append(f'<line x1="{ML - 4}" y1="{Y(v):.1f}" x2="{ML}" y2="{Y(v):.1f}" stroke="black"/>'
                 f'<text x="{ML - 6}" y="{Y(v) + 3.5:.1f}" font-size="10" text-anchor="end">{_num(v)}</text>')
    for v in ticks(t0, t1, 8):
        p.append(f'<line x1="{X(v):.1f}" y1="{H - MB}" x2="{X(v):.1f}" y2="{H - MB + 4}" stroke="black"/>'
                 f'<text x="{X(v):.1f}" y="{H - MB + 15}" font-size="10" text-anchor="middle">{_num(v)}</text>')
    p.append(f'<text x="{(W + ML) / 2:.0f}" y="{H - 6}" font-size="11" text-anchor="middle">time (h)</text>')
    p.append(f'<text x="13" y="{(H - MB + MT) / 2:.0f}" font-size="11" text-anchor="middle" '
             f'transform="rotate(-90 13 {(H - MB + MT) / 2:.0f})">{escape(report.drug)} concentration ({unit})</text>')
    p.append("</svg>")
    return "".join(p)


def render_tdm_html(report: TDMReport) -> str:
    """The report as a complete HTML document (UTF-8 text)."""
    from markupsafe import Markup

    return _env().get_template("tdm_report.html").render(r=report, plot=Markup(plot_svg(report)))
