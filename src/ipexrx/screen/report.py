"""Worklists and the HTML report of a screen (``ipexrx screen PATH --out DIR``).

Files: ``candidates.csv`` (one row per candidate, best first), ``known.csv``, ``safety.csv`` (one row per
alert) and ``report.html`` (Jinja2, self-contained, with the score distribution drawn as inline SVG).

Citations: every face of a screen (this report, the ``/screen`` web page, the terminal table) cites its sources
as numbers into a numbered list at its end, by the shared rule of :mod:`ipexrx.reference.citations` (numbers in
reading order; one source, one number). :func:`screen_source` says what makes two citations one source, and
:func:`cited_worklists` numbers the worklists the way the HTML faces show them.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..reference.citations import CitationNumbers

_JSON_PATH = re.compile(r"\$\.entry\[(\d+)\]\.resource")
_OTHER_PATH = re.compile(r"\$(?:\.[A-Za-z_][\w]*|\[\d+\])+")
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class ScreenSource:
    """One cited source of a screen. ``source`` (its DOI, else its PMID, else its citation text) and ``locator``
    make it one entry of the numbered list; the rest is what the list shows."""

    source: str
    locator: str | None
    citation: str
    doi: str | None = None
    pmid: str | None = None
    verification: str | None = None


def screen_source(src: dict[str, Any] | str) -> ScreenSource:
    """A source as the screen result gives it: a dict (citation, doi, pmid, verification) from the phenotype map
    or the knowledge base, or the text a drug-safety alert cites (title, section, DOI in one line)."""
    if isinstance(src, str):
        return ScreenSource(src, None, src)
    doi, pmid = src.get("doi") or None, src.get("pmid") or None
    return ScreenSource(str(doi or pmid or src["citation"]), None, str(src["citation"]), doi,
                        None if pmid is None else str(pmid), src.get("verification") or None)


def plain_error(text: str) -> str:
    """A safety check's error in the record's words: JSON paths become the entry's number in the patient's
    record (``$.entry[3].resource`` -> ``record entry 4``)."""
    out = _JSON_PATH.sub(lambda m: f"record entry {int(m[1]) + 1}", text)
    return _OTHER_PATH.sub(lambda m: m[0].lstrip("$.").replace("[", " ").replace("]", "").replace(".", " "), out)


def cited_worklists(result: dict[str, Any]) -> dict[str, Any]:
    """The worklists as the HTML faces show them, each cited statement with the numbers (``refs``) of its sources.

    Reading order (every face: alerts first, then the plan, then the evidence): the drug-safety alerts (each
    patient's by severity, critical first, with ``worst``); then each candidate's scored features and its
    suggested next step; the method. ``sources`` is the numbered list (dicts with ``number``, ``citation``,
    ``doi``, ``pmid``, ``verification``)."""
    numbers: CitationNumbers[ScreenSource] = CitationNumbers()

    def refs(sources: Iterable[dict[str, Any] | str]) -> list[int]:
        return numbers.cite(screen_source(s) for s in sources)

    safety = []
    for e in result["safety"]:
        alerts = sorted(e["alerts"], key=lambda a: SEVERITY_ORDER.get(a["severity"], 3))
        safety.append({**e, "error": plain_error(e["error"]) if e.get("error") else None,
                       "alerts": [{**a, "refs": refs(a["sources"])} for a in alerts],
                       "worst": min((SEVERITY_ORDER.get(a["severity"], 3) for a in alerts), default=3)})
    candidates = []
    for i, c in enumerate(result["candidates"], start=1):
        reasons = [{**r, "refs": refs(r.get("threshold_sources", []))} for r in c["reasons"]]
        step = c["next_step"]
        candidates.append({**c, "rank": i, "reasons": reasons,
                           "step": {"text": step["text"], "refs": refs(step["sources"])}})
    method_refs = refs(result["stats"]["method_sources"])
    sources = [{"number": n, "citation": c.citation, "doi": c.doi, "pmid": c.pmid, "verification": c.verification}
               for n, c in numbers.items()]
    return {"candidates": candidates, "known": result["known"], "safety": safety, "method_refs": method_refs,
            "sources": sources}


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
    html = env.get_template("report.html").render(s=stats, svg=svg, **cited_worklists(result))
    path = out / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def write_outputs(result: dict[str, Any], out: Path | str) -> list[Path]:
    out = Path(out)
    files = write_csvs(result, out)
    files.append(write_html(result, out))
    return files
