"""The dosing page in a real browser (Playwright driving Debian's chromium against uvicorn on loopback): fill the
form, read the suggestion and its plots at desktop width and at 375 px without horizontal scrolling, and pass
axe-core's WCAG 2.1 A/AA checks."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from tests.browser_support import does_not_fit, serious_violations
from tests.service.test_browser import CHROMIUM, CHROMIUM_ARGS, _axe_violations, server  # noqa: F401 (fixture)

pytestmark = [pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed at "
                                 "/usr/bin/chromium (.ci/run installs it with apt-get install chromium)")]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) not installed")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _fill_and_submit(page: Any, server_url: str) -> None:
    page.goto(f"{server_url}/dosing")
    page.get_by_label("Body weight (WT, kg)").fill("20")
    page.get_by_label("Kidney donor", exact=False).select_option("1")
    page.get_by_label("EGFR", exact=False).fill("80")
    page.get_by_label("Haematocrit", exact=False).fill("0.35")
    page.get_by_label("Dose (mg per administration)").fill("2")
    page.get_by_label("Interval (h)", exact=True).fill("12")
    page.get_by_label("Level 1 value").fill("5")
    page.get_by_label("Level 1 unit").select_option("ng/mL")
    page.get_by_role("button", name="Suggest a dose").click()
    page.locator("#suggestion").wait_for()


@pytest.mark.parametrize(("width", "height"), [(1280, 900), (375, 740)])
def test_the_form_gives_a_suggestion_and_plots_without_horizontal_scrolling(browser: Any, server: str,  # noqa: F811
                                                                             width: int, height: int) -> None:
    ctx = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = ctx.new_page()
        page.set_default_timeout(20000)
        violations: list[str] = []  # the Content-Security-Policy allows no inline script or style here
        page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
        _fill_and_submit(page, server)
        text = page.locator("#suggestion").inner_text()
        assert re.search(r"Consider: tacrolimus [\d.]+ mg every 12 h", text), text
        assert "ng/mL" in page.locator("#result").inner_text()
        plots = page.locator("svg.conc-plot")
        assert plots.count() == 2
        box = plots.first.bounding_box()
        assert box is not None and 0 < box["width"] <= width and box["height"] > 100
        assert page.locator("#plot-fit svg circle[fill=black]").count() >= 1  # the measured level
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow} px of horizontal overflow at {width} px"
        assert _axe_violations(page) == []
        page.emulate_media(media="print")  # printable: the form goes, the suggestion and plots stay
        assert not page.locator("#dosing-form").is_visible() and page.locator("#suggestion").is_visible()
        assert page.locator("svg.conc-plot").first.is_visible()
        page.emulate_media(media="screen")
        page.get_by_role("button", name="Printable report (one page)").click()  # the same inputs, the TDM report
        page.wait_for_url(f"{server}/dosing/report")
        assert page.locator("h1").first.inner_text().startswith("Therapeutic drug monitoring report")
        assert does_not_fit(page, width) == []  # the printable report fits this screen and passes axe too
        assert serious_violations(page) == []
        assert violations == []
    finally:
        ctx.close()


def test_adding_a_level_row_and_changing_the_model_work_with_the_page_script(browser: Any,
                                                                            server: str) -> None:  # noqa: F811
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.set_default_timeout(20000)
        page.goto(f"{server}/dosing")
        assert _axe_violations(page) == []
        assert page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0
        rows = page.locator("#level-rows tbody tr")
        n = rows.count()
        page.get_by_role("button", name="Add a level").click()
        assert rows.count() == n + 1
        assert page.get_by_label(f"Level {n + 1} value").count() == 1
        page.get_by_label("Exposure to target").select_option("peak")
        assert page.get_by_label("Target low", exact=False).input_value() == ""  # no peak target in this model
        page.get_by_label("Population model").select_option("fan2024-sirolimus")
        page.wait_for_url(re.compile(r"/dosing\?model=fan2024-sirolimus"))
        assert page.locator("#model-title").inner_text().startswith("Model: Sirolimus")
    finally:
        ctx.close()


def test_an_input_error_is_shown_on_the_page_at_375_px(browser: Any, server: str) -> None:  # noqa: F811
    ctx = browser.new_context(viewport={"width": 375, "height": 740})
    try:
        page = ctx.new_page()
        page.set_default_timeout(20000)
        page.goto(f"{server}/dosing")
        page.get_by_label("Body weight (WT, kg)").fill("20")
        page.get_by_label("Dose (mg per administration)").fill("500")
        page.get_by_label("Level 1 value").fill("5")
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.get_by_role("button", name="Suggest a dose").click()
        assert answer.value.status == 422
        err = page.locator("#dosing-error")
        err.wait_for()
        assert "500 mg every 12 h" in err.inner_text() and page.locator("#result").count() == 0
        assert page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0
        assert _axe_violations(page) == []
    finally:
        ctx.close()


def test_by_drug_the_model_comparison_is_shown_and_accessible(browser: Any, server: str) -> None:  # noqa: F811
    ctx = browser.new_context(viewport={"width": 375, "height": 740})
    try:
        page = ctx.new_page()
        page.set_default_timeout(30000)
        page.goto(f"{server}/dosing")
        page.get_by_label("Population model", exact=False).select_option("drug:tacrolimus")
        page.wait_for_url(re.compile(r"model=drug%3Atacrolimus"))
        page.get_by_label("Body weight (WT, kg)").fill("20")
        page.get_by_label("Haematocrit", exact=False).fill("0.35")
        for drug in ("POSACONAZOLE", "OMEPRAZOLE", "LORATADINE", "DILTIAZEM"):
            page.locator(f"#cov-{drug}").select_option("0")
        page.get_by_label("Age (years)").fill("6")
        page.get_by_label("Dose (mg per administration)").fill("2")
        page.get_by_label("Interval (h)", exact=True).fill("12")
        page.get_by_label("Level 1 value").fill("5")
        page.get_by_role("button", name="Suggest a dose").click()
        page.locator("#model-comparison").wait_for()
        assert "(chosen)" in page.locator("#result").inner_text()
        assert page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0
        assert _axe_violations(page) == []
    finally:
        ctx.close()
