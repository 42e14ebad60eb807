"""The printable TDM report page: the plot, the target band, the suggestion with units, numbered sources that
match the inline numbers, alerts first, no internal ids, no scripts or external assets, escaped input."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from ipexrx.dosing.model import all_models, get_model
from ipexrx.dosing.recommend import recommend, recommend_from_trough
from ipexrx.dosing.report import TDMReport, build_report
from ipexrx.report import render_tdm_html

SIRO = "fan2024-sirolimus"
BANNED = ("this session", "transcription", "KB", "the page", "records[", "subject patient", "label-")


def _report(level: float, dose: float, wt: float, **kw: object) -> TDMReport:
    rec = recommend_from_trough("sirolimus", level, "ng/mL", dose, 24, {"WT": wt}, model_id=SIRO, **kw)  # type: ignore[arg-type]
    return build_report(get_model(SIRO), rec, covariates={"WT": wt}, as_of="2026-01-02")


@pytest.fixture(scope="module")
def page() -> str:
    return render_tdm_html(_report(3.5, 0.8, 12))


@pytest.fixture(scope="module")
def unexplained_page() -> str:
    return render_tdm_html(_report(60, 1, 20))


class _Text(HTMLParser):
    """Visible text (no tags, no <style>)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skip += tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag == "style"

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _text(html: str) -> str:
    p = _Text()
    p.feed(html)
    return re.sub(r"\s+", " ", " ".join(p.parts))


def test_page_holds_the_plot_with_bands_target_levels_and_labelled_axes(page: str) -> None:
    svg = re.search(r"<svg class=\"plot\".*?</svg>", page, re.S)
    assert svg is not None
    s = svg.group(0)
    assert 'class="band-predictive"' in s and 'class="band-parameter"' in s and 'class="prediction"' in s
    assert re.search(r'<rect class="target"[^>]*><title>target 5-15 ng/mL</title>', s)
    assert re.search(r'<circle class="level"[^>]*><title>measured 3.5 ng/mL at 24 h</title>', s)
    assert ">time (h)<" in s and ">sirolimus concentration (ng/mL)<" in s
    assert "suggested regimen from here" in s


def test_suggested_dose_is_shown_with_its_units(page: str) -> None:
    text = _text(page)
    assert "Consider: sirolimus 0.9 mg every 24 h (0.9 mg/day) as oral solution: 0.9 mL of 1 mg/mL" in text
    assert re.search(r"Predicted steady-state trough: 7\.\d+ ng/mL \(90 % predictive interval [\d.]+-[\d.]+ ng/mL",
                     text)
    assert re.search(r"Probability of target attainment: \d+ %", text)
    assert "Target: trough 5-15 ng/mL" in text
    # the alternative (mid-range dose) carries mg, h, mg/day and the unit of its prediction
    assert re.search(r'<td class="n">1 mg</td><td class="n">24 h</td><td class="n">1 mg/day</td>\s*'
                     r'<td>1.0 mL of 1 mg/mL</td><td class="n">[\d.]+ ng/mL</td>', page)


def test_inline_source_numbers_match_the_numbered_sources(page: str) -> None:
    cited = {int(n) for grp in re.findall(r'<span class="ref">\[([\d, ]+)\]</span>', page)
             for n in grp.split(",")}
    listed = [int(n) for n in re.findall(r'<li value="(\d+)" id="source-\d+">', page)]
    assert listed == list(range(1, len(listed) + 1))
    assert cited == set(listed)
    assert "doi:10.3389/fphar.2024.1457614" in page


def test_page_order_is_alerts_suggestion_data_diagnostics_model_sources(page: str) -> None:
    ids = re.findall(r'<section id="([\w-]+)"', page)
    want = ["alerts", "suggestion", "plot", "data", "diagnostics", "model", "caveats", "sources"]
    assert [i for i in ids if i in want] == want


def test_a_level_the_model_cannot_explain_is_warned_first(unexplained_page: str) -> None:
    first = re.search(r'<div class="notice (\w+)">(.*?)</div>', unexplained_page, re.S)
    assert first is not None and first.group(1) == "alert"
    assert "The model cannot explain the level 60 ng/mL" in first.group(2)
    assert unexplained_page.index("cannot explain the level 60") < unexplained_page.index('<section id="suggestion"')
    assert 'stroke="#b00020"' in unexplained_page  # the level is ringed on the plot
    assert "not explained" in _text(unexplained_page)


def test_no_internal_ids_or_working_notes_on_the_page(page: str, unexplained_page: str) -> None:
    ids = [m.id for m in all_models()]
    for html in (page, unexplained_page):
        text = _text(html)
        for word in BANNED:
            assert word not in text
        assert not [i for i in ids if i in html]


def test_page_is_self_contained_and_printable(page: str) -> None:
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", page)
    assert "@media print" in page and "size: A4" in page
    assert page.startswith("<!DOCTYPE html>")


def test_text_from_the_inputs_is_escaped() -> None:
    m = get_model(SIRO)
    rec = recommend(m, None, {"WT": 12})
    rec.decision_reason = "<script>alert(1)</script>"
    html = render_tdm_html(build_report(m, rec, covariates={"WT": 12}, as_of="2026-01-02"))
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_priori_page_has_no_levels_and_says_cannot_judge() -> None:
    m = get_model(SIRO)
    html = render_tdm_html(build_report(m, recommend(m, None, {"WT": 12}), covariates={"WT": 12}, as_of="2026-01-02"))
    text = _text(html)
    assert "No levels: cannot judge" in text and "population prediction" in text
    assert '<circle class="level"' not in html and '<rect class="target"' in html


def test_auc24_target_is_explained_not_drawn() -> None:
    rep = _report(8, 1, 12, metric="auc24", target_low=150, target_high=300)
    html = render_tdm_html(rep)
    assert '<rect class="target"' not in html
    assert "is not a concentration and is not drawn" in _text(html)
