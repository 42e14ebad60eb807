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
th:first-child,td:first-child{text-align:left}.banner{background:#fde68a;border:2px solid #b45309;padding:.5rem;
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
<img alt="Kaplan-Meier time on therapy per drug" src="data:image/png;base64,{{ plots.drugs }}"></section>
<h2>Survival</h2>
{% for c in r.comparisons %}<section><h3>{{ c.title }}</h3>
<table><tr><th>Group</th><th>n</th><th>Events</th><th>1 year</th><th>5 years</th><th>10 years</th></tr>
{% for k in c.curves %}<tr><td>{{ k.label }}</td><td>{{ k.n }}</td><td>{{ k.events }}</td>
{% for t in (1.0, 5.0, 10.0) %}<td>{{ fmt_at(k, t) }}</td>{% endfor %}</tr>{% endfor %}</table>
{% if c.logrank %}<p>Log-rank test: chi-square {{ '%.2f' % c.logrank[0] }}, p = {{ fmt_p(c.logrank[1]) }}.</p>
{% endif %}
<p class="note">{{ c.note }}</p>
<img alt="{{ c.title }}" src="data:image/png;base64,{{ plots['c%d' % loop.index0] }}"></section>
{% endfor %}
<h2>Definitions</h2><div class="note">{{ definitions }}</div>
{% if r.synthetic %}<p class="banner">{{ synthetic_label }}</p>{% endif %}
</body></html>
"""


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


def render_html(r: Report) -> str:
    from jinja2 import Environment

    from . import analytics

    plots = {"drugs": _png([d.km for d in r.drugs[:8]], "Days since course start", "Still on the drug")}
    for i, c in enumerate(r.comparisons):
        plots[f"c{i}"] = _png(c.curves, "Years", c.title)
    reasons = ["inefficacy", "toxicity", "remission", "hsct", "other", "ongoing"]
    env = Environment(autoescape=True)
    return env.from_string(TEMPLATE).render(
        r=r, plots=plots, reasons=reasons, fmt_at=_fmt_at, fmt_resp=_fmt_resp,
        fmt_med=lambda m: "-" if m is None else f"{m:.0f}", fmt_p=lambda p: "< 0.001" if p < 0.001 else f"{p:.3f}",
        definitions=(analytics.__doc__ or "").split("Definitions (ipexrx conventions, printed in the report so "
                                                      "nobody has to guess):")[-1],
        synthetic_label=SYNTHETIC_LABEL)


def write_report(r: Report, out_dir: Path) -> list[Path]:
    """report.html (self-contained, printable) plus one PNG per figure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    html = render_html(r)
    paths = [out_dir / "report.html"]
    paths[0].write_text(html, encoding="utf-8")
    import re

    for i, b64 in enumerate(re.findall(r'src="data:image/png;base64,([^"]+)"', html)):
        p = out_dir / f"figure-{i + 1}.png"
        p.write_bytes(base64.b64decode(b64))
        paths.append(p)
    return paths
