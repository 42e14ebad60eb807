"""Printable HTML report (Jinja2) with Kaplan-Meier plots (matplotlib PNG, embedded), for the
analyses in :mod:`.analytics`. Heavy imports stay inside the functions (CLI start-up budget)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from .analytics import KmCurve, Report
from .synthetic import SYNTHETIC_LABEL

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ipexrx registry report</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:1.5rem auto;color:#111;line-height:1.4}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #999;padding:.2rem .45rem;text-align:right}
th:first-child,td:first-child{text-align:left}svg .pt{fill:transparent}svg .pt:hover{fill:#000}svg .off{display:none}
svg text{font-size:11px}.legend{cursor:pointer}.banner{background:#fde68a;border:2px solid #b45309;padding:.5rem;
font-weight:bold}.note{color:#444;font-size:.9rem}img{max-width:100%}section{page-break-inside:avoid}
@media print{.banner{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
</style></head><body>
{% if r.synthetic %}<p class="banner">{{ synthetic_label }}</p>{% endif %}
<h1>IPEX registry: comparative report</h1>
<p>Scope: {{ r.scope }} · {{ r.patients }} patients · {{ r.centres }} centres · {{ r.deaths }} deaths ·
generated {{ r.generated_at }}. Patients who withdrew consent are excluded. Kaplan-Meier estimates with 95%
confidence intervals (lifelines); definitions at the end. Observational registry data: associations, not effects
of treatment; this report supports, never replaces, clinical judgement.</p>
{% if r.followup_due %}<h2>Yearly follow-up due ({{ r.followup_due|length }})</h2>
<p class="note">Living patients of this centre with no visit in the last 365 days.</p>
<table><tr><th>Pseudonym</th><th>Last visit</th></tr>
{% for p, d in r.followup_due %}<tr><td>{{ p }}</td><td>{{ d }}</td></tr>{% endfor %}</table>{% endif %}
<h2>Drugs</h2>
<table><tr><th>Drug</th><th>Courses</th><th>Patients</th><th>Ongoing</th><th>Median days on drug</th>
<th>On drug at 6 months (95% CI)</th><th>At 12 months (95% CI)</th></tr>
{% for d in r.drugs %}<tr><td>{{ d.drug_id }}</td><td>{{ d.courses }}</td><td>{{ d.patients }}</td>
<td>{{ d.ongoing }}</td><td>{{ fmt_med(d.km.median) }}</td><td>{{ fmt_at(d.km, 182.0) }}</td>
<td>{{ fmt_at(d.km, 365.0) }}</td></tr>
{% endfor %}</table>
<h3>Reasons stopped</h3>
<table><tr><th>Drug</th>{% for k in reasons %}<th>{{ k }}</th>{% endfor %}</tr>
{% for d in r.drugs %}<tr><td>{{ d.drug_id }}</td>{% for k in reasons %}<td>{{ d.reasons.get(k, 0) }}</td>
{% endfor %}</tr>{% endfor %}</table>
<h3>Response by organ-involvement score (improved / stable / worse / stopped before / not evaluable)</h3>
<table><tr><th>Drug</th><th>3 months</th><th>6 months</th><th>12 months</th></tr>
{% for d in r.drugs %}<tr><td>{{ d.drug_id }}</td>{% for m in (3, 6, 12) %}<td>{{ fmt_resp(d.response[m]) }}</td>
{% endfor %}</tr>{% endfor %}</table>
<section><h3>Time on therapy</h3>
{% if svgs %}{{ svgs.drugs|safe }}{% else %}
<img alt="Kaplan-Meier time on therapy per drug" src="data:image/png;base64,{{ plots.drugs }}">{% endif %}</section>
<h2>Survival</h2>
{% for c in r.comparisons %}<section><h3>{{ c.title }}</h3>
<table><tr><th>Group</th><th>n</th><th>Events</th><th>1 year</th><th>5 years</th><th>10 years</th></tr>
{% for k in c.curves %}<tr><td>{{ k.label }}</td><td>{{ k.n }}</td><td>{{ k.events }}</td>
{% for t in (1.0, 5.0, 10.0) %}<td>{{ fmt_at(k, t) }}</td>{% endfor %}</tr>{% endfor %}</table>
{% if c.logrank %}<p>Log-rank test: chi-square {{ '%.2f' % c.logrank[0] }}, p = {{ fmt_p(c.logrank[1]) }}.</p>
{% endif %}
<p class="note">{{ c.note }}</p>
{% if svgs %}{{ svgs['c%d' % loop.index0]|safe }}{% else %}
<img alt="{{ c.title }}" src="data:image/png;base64,{{ plots['c%d' % loop.index0] }}">{% endif %}</section>
{% endfor %}
<h2>Definitions</h2><div class="note">{{ definitions }}</div>
{% if r.synthetic %}<p class="banner">{{ synthetic_label }}</p>{% endif %}
{% if svgs %}{{ legend_script|safe }}{% endif %}
</body></html>
"""

# Click a legend entry to hide / show its curve. One fixed script for the whole page (no inline event
# handlers), so that the served report's Content-Security-Policy can allow exactly it by its hash.
LEGEND_SCRIPT = ("<script>document.addEventListener('click',function(e){var g=e.target.closest('[data-curve]');"
                 "if(g){var c=g.ownerSVGElement.querySelector('[id='+g.getAttribute('data-curve')+']');"
                 "if(c){c.classList.toggle('off');}}});</script>")


def _fmt_at(k: KmCurve, t: float) -> str:
    if t not in k.at or k.n == 0:
        return "-"
    s, lo, hi = k.at[t]
    return f"{100 * s:.1f}% ({100 * lo:.1f}-{100 * hi:.1f})"


def _fmt_resp(d: dict[str, int]) -> str:
    keys = ("improved", "stable", "worse", "stopped before", "not evaluable")
    return " / ".join(str(d.get(k, 0)) for k in keys)


def _png(curves: list[KmCurve], xlabel: str, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    for k in curves:
        if k.n == 0:
            continue
        line = ax.step(k.times, k.survival, where="post", label=f"{k.label} (n={k.n})")[0]
        ax.fill_between(k.times, k.lower, k.upper, step="post", alpha=0.15, color=line.get_color())
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Probability")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if any(k.n for k in curves):
        ax.legend(fontsize=7, loc="lower left")
    else:
        ax.text(0.5, 0.5, "no patients in this group", ha="center", transform=ax.transAxes)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def svg_plot(curves: list[KmCurve], xlabel: str, unit: str, max_points: int = 150) -> str:
    """Kaplan-Meier curves as inline SVG: hover a step for time, estimate, 95% CI; click a legend
    entry to hide or show its curve. No script library, no network."""
    from html import escape

    w, h, left, right, top, bottom = 720, 360, 50, 10, 10, 40
    xmax = max((k.times[-1] for k in curves if k.n), default=1.0) or 1.0

    def x(t: float) -> float:
        return left + (w - left - right) * t / xmax

    def y(v: float) -> float:
        return top + (h - top - bottom) * (1 - v)

    parts = [f'<svg viewBox="0 0 {w} {h + 20 * len(curves)}" width="100%" role="img" '
             f'aria-label="Kaplan-Meier curves" xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="{left}" y="{top}" width="{w - left - right}" height="{h - top - bottom}" fill="none" '
             'stroke="#999"/>']
    for v in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>')
    for i in range(6):
        t = xmax * i / 5
        parts.append(f'<text x="{x(t):.1f}" y="{h - bottom + 15}" text-anchor="middle">{t:.0f}</text>')
    parts.append(f'<text x="{(left + w) / 2}" y="{h - 5}" text-anchor="middle">{escape(xlabel)}</text>')
    for n, k in enumerate(c for c in curves if c.n):
        col = COLOURS[n % len(COLOURS)]
        line = " ".join(f"{x(t):.1f},{y(sv):.1f} {x(k.times[j + 1]):.1f},{y(sv):.1f}"
                        for j, (t, sv) in enumerate(zip(k.times[:-1], k.survival[:-1], strict=True)))
        band = [(x(t), y(u)) for t, u in zip(k.times, k.upper, strict=True)] + \
            [(x(t), y(lo)) for t, lo in reversed(list(zip(k.times, k.lower, strict=True)))]
        step = max(1, len(k.times) // max_points)
        pts = "".join(
            f'<circle class="pt" cx="{x(t):.1f}" cy="{y(sv):.1f}" r="4"><title>{escape(k.label)}: '
            f'{t:.1f} {unit}: {100 * sv:.1f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f})</title></circle>'
            for t, sv, lo, hi in list(zip(k.times, k.survival, k.lower, k.upper, strict=True))[::step])
        gid = f"g{n}"
        parts.append(f'<g id="{gid}"><polygon points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in band)}" '
                     f'fill="{col}" opacity="0.12"/><polyline points="{line}" fill="none" stroke="{col}" '
                     f'stroke-width="1.6"/>{pts}</g>')
        ly = h + 15 + 20 * n
        parts.append(f'<g class="legend" data-curve="{gid}"><rect x="{left}" y="{ly - 9}" width="12" height="12" '
                     f'fill="{col}"/><text x="{left + 18}" y="{ly + 1}">{escape(k.label)} (n={k.n}, events '
                     f'{k.events}) - click to hide/show</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(r: Report, interactive: bool = False) -> str:
    """The printable report; ``interactive`` swaps the PNGs for hoverable SVG curves."""
    from jinja2 import Environment

    from . import analytics

    plots: dict[str, str] = {}
    svgs: dict[str, str] = {}
    if interactive:
        svgs["drugs"] = svg_plot([d.km for d in r.drugs[:8]], "Days since course start", "days")
        for i, c in enumerate(r.comparisons):
            svgs[f"c{i}"] = svg_plot(c.curves, "Years", "years")
    else:
        plots["drugs"] = _png([d.km for d in r.drugs[:8]], "Days since course start", "Still on the drug")
        for i, c in enumerate(r.comparisons):
            plots[f"c{i}"] = _png(c.curves, "Years", c.title)
    reasons = ["inefficacy", "toxicity", "remission", "hsct", "other", "ongoing"]
    env = Environment(autoescape=True)
    return env.from_string(TEMPLATE).render(
        r=r, plots=plots, svgs=svgs, legend_script=LEGEND_SCRIPT, reasons=reasons, fmt_at=_fmt_at, fmt_resp=_fmt_resp,
        fmt_med=lambda m: "-" if m is None else f"{m:.0f}", fmt_p=lambda p: "< 0.001" if p < 0.001 else f"{p:.3f}",
        definitions=(analytics.__doc__ or "").split("Definitions (ipexrx conventions, printed in the report so "
                                                      "nobody has to guess):")[-1],
        synthetic_label=SYNTHETIC_LABEL)


def write_report(r: Report, out_dir: Path) -> list[Path]:
    """report.html (self-contained, printable), one PNG per figure, and report-interactive.html (hoverable
    SVG curves; listed last)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    html = render_html(r)
    paths = [out_dir / "report.html"]
    paths[0].write_text(html, encoding="utf-8")
    interactive = out_dir / "report-interactive.html"
    interactive.write_text(render_html(r, interactive=True), encoding="utf-8")
    import re

    for i, b64 in enumerate(re.findall(r'src="data:image/png;base64,([^"]+)"', html)):
        p = out_dir / f"figure-{i + 1}.png"
        p.write_bytes(base64.b64decode(b64))
        paths.append(p)
    return [*paths, interactive]


# ----------------------------------------------------------------------------------------------
# Figures and tables for download (the registry's analytics web page, and anyone who wants the numbers):
# standalone SVG and PNG Kaplan-Meier plots with confidence bands and numbers at risk under the time
# axis, drawn from the same ticks so both say the same; CSV with units in the column names.
# ----------------------------------------------------------------------------------------------
MIN_PER_CURVE = 10  # fewer patients (or courses) than this in a group: no curve, the page says why
# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), each with its own dash pattern
SAFE_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C6D00"]
DASHES = ["", "6 3", "2 2", "8 3 2 3", "4 4", "1 3", "10 4", "3 1"]
RISK_NOTE = ("Numbers at risk: patients (courses, for time on therapy) still followed at each time, that is with "
             "no event and not censored before it.")


def plotted(curves: list[KmCurve], minimum: int = MIN_PER_CURVE) -> list[KmCurve]:
    """The curves with enough patients to draw."""
    return [k for k in curves if k.n >= minimum]


def time_ticks(xmax: float, most: int = 8) -> list[float]:
    """Round tick times from 0 to at least ``xmax`` (at most ``most`` of them); the numbers at risk are
    counted at these times."""
    import math

    if xmax <= 0:
        return [0.0, 1.0]
    raw = xmax / (most - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    n = math.ceil(xmax / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def figure_ticks(curves: list[KmCurve], minimum: int = MIN_PER_CURVE) -> list[float]:
    """The time ticks of a figure of these curves (where its numbers at risk are counted)."""
    return time_ticks(max((k.times[-1] for k in plotted(curves, minimum)), default=1.0))


def _fmt_tick(t: float) -> str:
    return f"{t:g}"


def _points(pts: list[tuple[float, float]]) -> str:
    """SVG points, rounded to half a pixel, without repeats or the inner points of straight horizontal or vertical
    runs (censoring times leave many): the same drawing in a fraction of the bytes."""
    out: list[tuple[str, str]] = []
    for a, b in pts:
        q = (f"{round(a * 2) / 2:g}", f"{round(b * 2) / 2:g}")
        if out and q == out[-1]:
            continue
        if len(out) >= 2 and ((out[-2][0] == out[-1][0] == q[0]) or (out[-2][1] == out[-1][1] == q[1])):
            out[-1] = q
            continue
        out.append(q)
    return " ".join(f"{a},{b}" for a, b in out)


def km_svg(curves: list[KmCurve], xlabel: str, unit: str, title: str, minimum: int = MIN_PER_CURVE) -> str:
    """A standalone SVG Kaplan-Meier plot: step curves, shaded 95% confidence bands, and the numbers at
    risk in rows under the time axis (each row starts with its group's line style: the legend). Curves with
    fewer than ``minimum`` patients are left out (the caller says so in words); with none left the SVG says
    "cannot judge". No script, no style
    element: it can be inlined in a page under a strict Content-Security-Policy or saved to a file."""
    from html import escape

    ks = plotted(curves, minimum)
    w, left, right, top, plot_h = 720, 190, 20, 34, 280
    row = 18
    axis_y = top + plot_h
    risk_top = axis_y + 58
    h = risk_top + row * (len(ks) + 1) + 14
    ticks = figure_ticks(curves, minimum)
    xmax = ticks[-1] or 1.0

    def x(t: float) -> float:
        return left + (w - left - right) * min(t, xmax) / xmax

    def y(v: float) -> float:
        return top + plot_h * (1 - v)

    p = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
         f'class="km-plot" role="img" aria-label="{escape(title)}" font-family="system-ui, sans-serif" '
         f'font-size="12" fill="#1a1a1a">', f"<title>{escape(title)}</title>",
         f'<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>',
         f'<text x="{left}" y="20" font-size="13" font-weight="bold">{escape(title)}</text>']
    if not ks:
        p.append(f'<text x="{w / 2}" y="{top + plot_h / 2}" text-anchor="middle">Cannot judge: no group has '
                 f'{minimum} or more patients.</text></svg>')
        return "".join(p)
    for v in (0, 0.25, 0.5, 0.75, 1):
        p.append(f'<line x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e3e6ea"/>'
                 f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{100 * v:.0f}%</text>')
    p.append(f'<text transform="translate({left - 44},{top + plot_h / 2}) rotate(-90)" text-anchor="middle">'
             'Probability (95% CI band)</text>')
    p.append(f'<line x1="{left}" x2="{w - right}" y1="{axis_y}" y2="{axis_y}" stroke="#555"/>'
             f'<line x1="{left}" x2="{left}" y1="{top}" y2="{axis_y}" stroke="#555"/>')
    for t in ticks:
        p.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{axis_y}" y2="{axis_y + 5}" stroke="#555"/>'
                 f'<text x="{x(t):.1f}" y="{axis_y + 18}" text-anchor="middle">{_fmt_tick(t)}</text>')
    p.append(f'<text x="{(left + w - right) / 2}" y="{axis_y + 36}" text-anchor="middle">{escape(xlabel)}</text>')
    for i, k in enumerate(ks):
        col, dash = SAFE_COLOURS[i % len(SAFE_COLOURS)], DASHES[i % len(DASHES)]
        times = [*k.times, k.durations[-1]] if k.durations and k.durations[-1] > k.times[-1] else list(k.times)
        surv, lo, hi = [*k.survival], [*k.lower], [*k.upper]
        if len(times) > len(surv):  # the curve runs on, flat, to the last follow-up
            surv, lo, hi = [*surv, surv[-1]], [*lo, lo[-1]], [*hi, hi[-1]]
        steps = [(x(times[0]), y(surv[0]))]
        band_hi = [(x(times[0]), y(hi[0]))]
        band_lo = [(x(times[0]), y(lo[0]))]
        for j in range(1, len(times)):
            steps += [(x(times[j]), y(surv[j - 1])), (x(times[j]), y(surv[j]))]
            band_hi += [(x(times[j]), y(hi[j - 1])), (x(times[j]), y(hi[j]))]
            band_lo += [(x(times[j]), y(lo[j - 1])), (x(times[j]), y(lo[j]))]
        band = _points(band_hi + band_lo[::-1])
        line = _points(steps)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        p.append(f'<g><title>{escape(k.label)}: {k.n} at start, {k.events} events</title>'
                 f'<polygon points="{band}" fill="{col}" fill-opacity="0.14" stroke="none"/>'
                 f'<polyline points="{line}" fill="none" stroke="{col}" stroke-width="2"{dash_attr}/></g>')
    # the rows of numbers at risk double as the legend: line style and colour, then the group's name
    p.append(f'<text x="6" y="{risk_top - 8}" font-weight="bold">Number at risk (and line of each group)</text>')
    for i, k in enumerate(ks):
        ry = risk_top + row * i + 8
        col, dash = SAFE_COLOURS[i % len(SAFE_COLOURS)], DASHES[i % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        p.append(f'<line x1="6" x2="24" y1="{ry - 4}" y2="{ry - 4}" stroke="{col}" stroke-width="3"{dash_attr}/>'
                 f'<text x="30" y="{ry}">{escape(k.label[:24])}</text>')
        for t in ticks:
            p.append(f'<text x="{x(t):.1f}" y="{ry}" text-anchor="middle">{k.at_risk(t)}</text>')
    p.append(f'<text x="6" y="{h - 6}" font-size="10">Time in {escape(unit)}; Kaplan-Meier estimate, shaded: '
             '95% confidence interval.</text></svg>')
    return "".join(p)


def km_png(curves: list[KmCurve], xlabel: str, unit: str, title: str, minimum: int = MIN_PER_CURVE) -> bytes:
    """The same plot as :func:`km_svg` as PNG bytes (matplotlib, imported only when a PNG is asked for)."""
    from ..extras import require

    require("matplotlib", "analytics", "Registry analytics (PNG figures)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    ks = plotted(curves, minimum)
    ticks = figure_ticks(curves, minimum)
    fig_h = 4.6 + 0.22 * len(ks)
    fig, ax = plt.subplots(figsize=(8.0, fig_h), dpi=110)
    bottom_in = 1.0 + 0.22 * (len(ks) + 1)
    fig.subplots_adjust(left=0.24, right=0.97, top=0.9, bottom=bottom_in / fig_h)
    ax.set_title(title, fontsize=10)
    if not ks:
        ax.text(0.5, 0.5, f"Cannot judge: no group has {minimum} or more patients.", ha="center",
                transform=ax.transAxes)
    for i, k in enumerate(ks):
        col = SAFE_COLOURS[i % len(SAFE_COLOURS)]
        dash = DASHES[i % len(DASHES)]
        times, surv, lo, hi = list(k.times), list(k.survival), list(k.lower), list(k.upper)
        if k.durations and k.durations[-1] > times[-1]:
            times, surv, lo, hi = [*times, k.durations[-1]], [*surv, surv[-1]], [*lo, lo[-1]], [*hi, hi[-1]]
        ls = (0, tuple(float(d) for d in dash.split())) if dash else "-"
        ax.step(times, surv, where="post", color=col, linestyle=ls, linewidth=1.8,
                label=f"{k.label} (n={k.n}, events {k.events})")
        ax.fill_between(times, lo, hi, step="post", alpha=0.14, color=col, linewidth=0)
    ax.set_xlim(0, ticks[-1])
    ax.set_xticks(ticks)
    ax.set_xticklabels([_fmt_tick(t) for t in ticks])
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel(f"{xlabel}")
    ax.set_ylabel("Probability (95% CI band)")
    ax.grid(alpha=0.3)
    if ks:
        ax.legend(fontsize=7, loc="best")
        tr = blended_transform_factory(ax.transData, fig.transFigure)
        lab = fig.transFigure
        base = (bottom_in - 0.62) / fig_h  # first row under the axis label
        step = 0.22 / fig_h
        fig.text(0.01, base, "Number at risk", fontsize=8, fontweight="bold", transform=lab)
        for i, k in enumerate(ks):
            yy = base - step * (i + 1)
            fig.text(0.01, yy, k.label[:28], fontsize=8, color=SAFE_COLOURS[i % len(SAFE_COLOURS)], transform=lab)
            for t in ticks:
                fig.text(t, yy, str(k.at_risk(t)), fontsize=8, ha="center", transform=tr)
    fig.text(0.01, 0.01, f"Time in {unit}; Kaplan-Meier estimate, shaded: 95% confidence interval.", fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _csv(rows: list[list[object]]) -> str:
    import csv

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.2f}"


def curves_csv(curves: list[KmCurve], unit: str) -> str:
    """Every step of every curve: group, time, estimate and 95% CI (percent), number at risk, group size
    and events. Groups too small to plot are included (the numbers are the numbers)."""
    rows: list[list[object]] = [["group", f"time_{unit}", "survival_percent", "ci95_lower_percent",
                                 "ci95_upper_percent", "number_at_risk", "group_size", "events"]]
    for k in curves:
        if k.n == 0:
            continue
        for t, s, lo, hi in zip(k.times, k.survival, k.lower, k.upper, strict=True):
            rows.append([k.label, f"{t:g}", _pct(s), _pct(lo), _pct(hi), k.at_risk(t), k.n, k.events])
    return _csv(rows)


REASONS = ["inefficacy", "toxicity", "remission", "hsct", "other", "ongoing"]
RESPONSES = ["improved", "stable", "worse", "stopped before", "not evaluable"]


def _at(k: KmCurve, t: float) -> tuple[str, str, str]:
    """(estimate, lower, upper) in percent at ``t``; empty when nobody is still at risk there (cannot judge)."""
    if t not in k.at or k.n == 0 or k.at_risk(t) == 0:
        return "", "", ""
    s, lo, hi = k.at[t]
    return _pct(s), _pct(lo), _pct(hi)


def drugs_csv(r: Report) -> str:
    """One row per drug: courses, patients, time on therapy (median, 6 and 12 months with 95% CI),
    reasons stopped and response counts at 3, 6 and 12 months."""
    head: list[object] = ["drug", "courses", "patients", "ongoing_courses", "median_days_on_drug",
            "on_drug_182_days_percent", "on_drug_182_days_ci95_lower_percent", "on_drug_182_days_ci95_upper_percent",
            "on_drug_365_days_percent", "on_drug_365_days_ci95_lower_percent", "on_drug_365_days_ci95_upper_percent",
            *[f"stopped_{k.replace(' ', '_')}_courses" if k != "ongoing" else "ongoing_at_report_courses"
              for k in REASONS],
            *[f"response_{m}_months_{v.replace(' ', '_')}_courses" for m in (3, 6, 12) for v in RESPONSES]]
    rows: list[list[object]] = [head]
    for d in r.drugs:
        rows.append([d.drug_id, d.courses, d.patients, d.ongoing,
                     "" if d.km.median is None else f"{d.km.median:g}", *_at(d.km, 182.0), *_at(d.km, 365.0),
                     *[d.reasons.get(k, 0) for k in REASONS],
                     *[d.response[m].get(v, 0) for m in (3, 6, 12) for v in RESPONSES]])
    return _csv(rows)


def survival_csv(r: Report) -> str:
    """One row per group of each survival comparison: size, events, estimate at 1, 5 and 10 years with
    95% CI, and the comparison's log-rank test."""
    head: list[object] = ["comparison", "group", "patients", "events", "median_years",
            *[f"survival_{t}_years_{s}" for t in (1, 5, 10)
              for s in ("percent", "ci95_lower_percent", "ci95_upper_percent")],
            "logrank_chi_square", "logrank_p"]
    rows: list[list[object]] = [head]
    for c in r.comparisons:
        for k in c.curves:
            rows.append([c.title, k.label, k.n, k.events, "" if k.median is None else f"{k.median:.3g}",
                         *[v for t in (1.0, 5.0, 10.0) for v in _at(k, t)],
                         "" if c.logrank is None else f"{c.logrank[0]:.4g}",
                         "" if c.logrank is None else f"{c.logrank[1]:.4g}"])
    return _csv(rows)
