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
