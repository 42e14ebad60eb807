"""Citations are numbers into a numbered sources list on the same page, in every face.

The rule itself (:mod:`ipexrx.reference.citations`): numbers in order of first use, one number per source
and section however often it is cited. Then the faces: the same example assessment shown in the terminal,
on the web page and in the printout cites the same numbers at the same places and ends with the same
numbered sources; in every face and on every reference page, each number used has an entry and each entry
is used; no source id (``label-prograf#5``) is shown to the reader.
"""

from __future__ import annotations

import html as html_lib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ipexrx.reference.citations import CitationNumbers, format_marker, number_citations, numbers_in

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.json"))
AS_OF = "2026-11-25"  # the examples' dates are set relative to this day (examples/README.md)


def _c(source: str, locator: str | None = None) -> Any:
    return SimpleNamespace(source=source, locator=locator)


# --- the rule ------------------------------------------------------------------------------------------
def test_numbers_follow_first_use_and_a_repeated_source_keeps_its_number() -> None:
    n: CitationNumbers[Any] = CitationNumbers()
    assert n.cite([_c("paper-b"), _c("label-a", "5")]) == [1, 2]
    assert n.cite([_c("label-a", "5"), _c("guideline-c")]) == [2, 3]
    assert n.marker([_c("guideline-c"), _c("paper-b"), _c("paper-b")]) == "[1, 3]"  # ascending, each once
    assert [(k, c.source) for k, c in n.items()] == [(1, "paper-b"), (2, "label-a"), (3, "guideline-c")]


def test_another_section_of_the_same_source_is_its_own_entry() -> None:
    n = number_citations([[_c("label-a", "5")], [_c("label-a", "7"), _c("label-a")], [_c("label-a", "5")]])
    assert [(c.source, c.locator) for c in n.entries()] == [("label-a", "5"), ("label-a", "7"), ("label-a", None)]


def test_a_statement_without_sources_gets_no_marker_and_no_entry() -> None:
    n: CitationNumbers[Any] = CitationNumbers()
    assert n.marker([]) == "" and format_marker([]) == "" and not n and len(n) == 0


def test_numbers_are_read_back_from_markers_only() -> None:
    assert numbers_in("Avoid live vaccines [1, 4]. Dose 2 mg [not a citation] [12]") == [1, 4, 12]


# --- the faces of one assessment -------------------------------------------------------------------------
def _text(fragment: str) -> str:
    """What a reader sees of an HTML fragment: tags (and their title attributes) gone, entities decoded; the
    details kept for editors (rule ids, places in the input file) gone too."""
    fragment = re.sub(r"<(style|script|details)\b.*?</\1>", "", fragment, flags=re.S)
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", "", fragment)).split())


def _html_entries(fragment: str) -> list[str]:
    return [_text(li) for li in re.findall(r'<li id="cite-\d+">(.*?)</li>', fragment, flags=re.S)]


def _terminal(a: Any) -> tuple[str, list[str]]:
    from rich.console import Console

    from ipexrx.cli.assess import render_assessment

    buf = io.StringIO()
    render_assessment(a, Console(file=buf, width=1000, highlight=False, color_system=None))
    body, tail = _split_at_sources(buf.getvalue())
    return " ".join(body.split()), [" ".join(line.split()) for line in tail.splitlines() if line.strip()]


def _split_at_sources(text: str) -> tuple[str, str]:
    """A terminal report: its text, and its sources legend (after the 'Sources' heading line)."""
    m = re.search(r"^Sources *$", text, flags=re.M)
    return (text[:m.start()], text[m.end():]) if m else (text, "")


def _print(a: Any) -> tuple[str, list[str]]:
    from ipexrx.report import render_assessment_html

    page = render_assessment_html(a)
    body, _, tail = page.partition('<section id="sources">')
    return _text(body.split("<body>", 1)[1]), _html_entries(tail)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from ipexrx.service import Settings, create_app

    db = tmp_path_factory.mktemp("citations") / "ipexrx.sqlite3"
    with TestClient(create_app(Settings(database_url=f"sqlite:///{db}"))) as client:
        yield client


def _web(client: Any, patient: str) -> tuple[str, list[str]]:
    resp = client.post("/assess", data={"patient": patient, "as_of": AS_OF, "ipex_plan": "auto"})
    assert resp.status_code == 200, resp.text[:500]
    report = resp.text.split('<section id="report"', 1)[1].split("</section>", 1)[0]
    body, _, tail = report.partition('<h3 id="report-sources">')
    return _text(body), _html_entries(tail)


def _check_one_face(face: str, body: str, entries: list[str]) -> None:
    used = numbers_in(body)
    listed = [int(m.group(1)) for e in entries for m in [re.match(r"\[(\d+)\] ", e)] if m]
    assert len(listed) == len(entries), (face, entries)  # every entry starts with its number
    assert listed == list(range(1, len(entries) + 1)), face  # 1, 2, 3 ... in order
    assert set(used) == set(listed), (face, sorted(set(used) ^ set(listed)))  # used <=> listed
    first_use = list(dict.fromkeys(used))
    assert first_use == sorted(first_use), face  # numbered in order of first use


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_same_assessment_cites_the_same_numbers_and_sources_in_terminal_web_and_print(
        web: Any, example: str) -> None:
    import datetime as dt

    from ipexrx.assess import assess

    raw = (ROOT / "examples" / example).read_text(encoding="utf-8")
    a = assess(raw.encode(), as_of=dt.date.fromisoformat(AS_OF))
    faces = {"terminal": _terminal(a), "web": _web(web, raw), "print": _print(a)}
    for face, (body, entries) in faces.items():
        _check_one_face(face, body, entries)
    (t_body, t_entries), (w_body, w_entries), (p_body, p_entries) = faces.values()
    assert t_entries == w_entries == p_entries  # the same numbered sources, word for word
    assert len(t_entries) >= 3
    markers = {face: re.findall(r"\[\d+(?:, \d+)*\]", body) for face, (body, _) in faces.items()}
    assert markers["terminal"] == markers["web"] == markers["print"]  # the same numbers at the same places
    for s in a.alerts:  # readers see titles and sections, never the source ids
        for ref in s.sources:
            assert all(ref.citation not in body and ref.citation not in " ".join(entries)
                       for body, entries in faces.values()), ref.citation


# --- reference pages and views ---------------------------------------------------------------------------
def _reference_pages() -> list[str]:
    from ipexrx.knowledge import get_kb

    kb = get_kb()
    return ["/", *(f"/drugs/{d}" for d in sorted(kb.drugs)),
            *(f"/manifestations/{m}" for m in sorted(kb.manifestations)),
            *(f"/classes/{c}" for c in sorted(kb.classes))]


def test_every_reference_page_cites_numbers_that_its_own_sources_list_holds(web: Any) -> None:
    bad = []
    for path in _reference_pages():
        page = web.get(path).text
        main = page.split('<main id="content">', 1)[1].split("</main>", 1)[0]
        body, _, tail = main.partition('<ol class="refs">')
        entries = _html_entries(tail)
        try:
            _check_one_face(path, _text(body), entries)
        except AssertionError as exc:
            bad.append(f"{path}: {exc}")
        targets = re.findall(r'<a href="#cite-(\d+)"', body)
        if sorted({int(t) for t in targets}) != list(range(1, len(entries) + 1)):
            bad.append(f"{path}: links {sorted(set(targets))} vs {len(entries)} entries")
    assert bad == []


@pytest.mark.parametrize("args", [["summary"], ["drug", "tacrolimus"], ["drug", "rituximab"],
                                  ["manifestation", "enteropathy"], ["class", "calcineurin-inhibitors"]])
def test_terminal_reference_views_cite_numbers_their_sources_legend_holds(args: list[str]) -> None:
    from typer.testing import CliRunner

    from ipexrx.cli import get_app

    result = CliRunner().invoke(get_app(), args, env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    body, tail = _split_at_sources(out)
    entries = [" ".join(line.split()) for line in tail.splitlines() if re.match(r"\[\d+\] ", line)]
    _check_one_face(" ".join(args), " ".join(body.split()), entries)
    assert len(entries) >= 1 and not re.search(r"label-[a-z0-9-]+#", out)  # no source ids
