"""Worklists and the HTML report of a screen (``ipexrx screen PATH --out DIR``).

Files: ``candidates.csv`` (one row per candidate, best first), ``known.csv``, ``safety.csv`` (one row per
alert) and ``report.html`` (Jinja2, self-contained, with the score distribution drawn as inline SVG).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any


def _reasons_text(reasons: list[dict[str, Any]]) -> str:
    parts = []
    for r in reasons:
        if "points" in r and r.get("evidence"):
            when = f", {r['date']}" if r.get("date") else ""
            age = f", age {r['age_at_onset_years']} y" if r.get("age_at_onset_years") is not None else ""
            parts.append(f"{r['feature']} ({r['evidence']}{when}{age}): {r['points']}")
        elif "points" in r:
            parts.append(f"{r['feature']}: +{r['points']}")
        else:
            parts.append(f"{r['feature']}: x{r.get('factor')}")
    return "; ".join(parts)


def write_csvs(result: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    path = out / "candidates.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "patient", "score", "closest_pattern", "sex", "age_years", "features", "next_step"])
        for i, c in enumerate(result["candidates"], start=1):
            w.writerow([i, c["patient"], c["score"], c["pattern"], c["sex"], c["age_years"],
                        _reasons_text(c["reasons"]), c["next_step"]["text"]])
    written.append(path)
    path = out / "known.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["patient", "diagnosis", "evidence", "date", "record", "phenotype_score"])
        for k in result["known"]:
            w.writerow([k["patient"], k["diagnosis"], k["evidence"], k["date"], k["record"], k["score"]])
    written.append(path)
    path = out / "safety.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["patient", "drugs", "severity", "family", "summary", "action", "sources", "error"])
        for s in result["safety"]:
            if s.get("error"):
                w.writerow([s["patient"], " + ".join(s["drugs"]), "", "", "", "", "", s["error"]])
            for a in s["alerts"]:
                w.writerow([s["patient"], " + ".join(s["drugs"]), a["severity"], a["family"], a["summary"],
                            a["action"], " | ".join(a["sources"]), ""])
    written.append(path)
    return written


def histogram_svg(bins: list[dict[str, Any]], threshold: float, width: int = 640, height: int = 220) -> str:
    """A bar chart of patients per score band on a log10 count axis, with the candidate threshold marked."""
    if not bins:
        return ""
    left, bottom, top_pad = 48, 34, 12
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    top_count = max(b["patients"] for b in bins) or 1
    ymax = math.log10(top_count + 1)
    bar_w = plot_w / len(bins)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="Patients per phenotype-score band (log scale)" class="hist">']
    for i, b in enumerate(bins):
        h = plot_h * (math.log10(b["patients"] + 1) / ymax if ymax else 0)
        x = left + i * bar_w
        cls = "cand" if b["from"] >= threshold else "below"
        tip = f'score {b["from"]:g}-{b["to"]:g}: {b["patients"]} patient(s)'
        out.append(f'<rect class="{cls}" x="{x + 1:.1f}" y="{top_pad + plot_h - h:.1f}" '
                   f'width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}"><title>{tip}</title></rect>')
    for p in range(0, int(ymax) + 1):
        y = top_pad + plot_h - plot_h * (math.log10(10 ** p + 1) / ymax if ymax else 0)
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{10 ** p}</text>')
    step = max(1, len(bins) // 10)
    for i in range(0, len(bins), step):
        out.append(f'<text x="{left + i * bar_w:.1f}" y="{height - bottom + 14}" font-size="10">{bins[i]["from"]:g}'
                   "</text>")
    tx = left + (threshold / (bins[0]["to"] - bins[0]["from"])) * bar_w
    out.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top_pad}" y2="{top_pad + plot_h}" class="thr"/>')
    out.append(f'<text x="{tx + 3:.1f}" y="{top_pad + 10}" font-size="10">candidate threshold {threshold:g}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" font-size="11" text-anchor="middle">'
               "phenotype score (patients per band, log scale)</text>")
    out.append("</svg>")
    return "\n".join(out)


def write_html(result: dict[str, Any], out: Path) -> Path:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("ipexrx.screen", "templates"), autoescape=select_autoescape(["html"]))
    stats = result["stats"]
    svg = histogram_svg(stats.get("score_histogram", []), float(stats.get("candidate_min_score", 0)))
    html = env.get_template("report.html").render(r=result, s=stats, svg=svg, reasons_text=_reasons_text)
    path = out / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def write_outputs(result: dict[str, Any], out: Path | str) -> list[Path]:
    out = Path(out)
    files = write_csvs(result, out)
    files.append(write_html(result, out))
    return files
