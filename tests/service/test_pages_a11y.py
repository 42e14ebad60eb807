"""Every public page outside the registry in a real browser (Playwright driving Debian's chromium against
uvicorn on loopback), at desktop width and on a 375 px phone: no horizontal scrolling and no element wider
than the screen, no serious or critical axe-core WCAG 2.1 A/AA violation, and a print view that hides the
navigation and keeps the content (and renders to PDF). The registry pages and /dosing, /screen have their
own browser tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from tests.browser_support import WIDTHS, does_not_fit, serious_violations
from tests.service.test_browser import (  # noqa: F401 (fixture)
    CHROMIUM,
    CHROMIUM_ARGS,
    EXAMPLES,
    server,
)

pytestmark = [pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed at "
                                 "/usr/bin/chromium (.ci/run installs it with apt-get install chromium)")]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) not installed")


def _first_interaction() -> str:
    from ipexrx.knowledge import get_kb

    return sorted(get_kb().interactions)[0]


PAGES = ["/", "/manifestations", "/manifestations/enteropathy", "/manifestations/type-1-diabetes", "/drugs",
         "/classes", "/classes/calcineurin-inhibitors", f"/interactions/{_first_interaction()}", "/sources",
         "/rules", "/search?q=tacrolimus", "/search?q=qqxzv", "/assess", "/smart/launch", "/drugs/rapamycn"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(params=sorted(WIDTHS), scope="module")
def screen(request: pytest.FixtureRequest, browser: Any) -> Iterator[tuple[Any, int]]:
    """One browser page per width, reused by every test of that width (fast: no new context per page)."""
    width, height = WIDTHS[request.param]
    ctx = browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()
    page.set_default_timeout(20000)
    yield page, width
    ctx.close()


def _prints(page: Any, content: str = "main") -> None:
    """In the print view the site navigation and search are hidden and the content stays."""
    page.emulate_media(media="print")
    try:
        assert not page.locator("header.site").is_visible()
        assert page.locator(content).first.is_visible()
    finally:
        page.emulate_media(media="screen")


@pytest.mark.parametrize("path", PAGES)
def test_page_fits_a_phone_and_a_desktop_passes_axe_and_prints(screen: tuple[Any, int], server: str,  # noqa: F811
                                                               path: str) -> None:
    page, width = screen
    page.goto(server + path)
    assert page.locator("h1").count() == 1
    problems = does_not_fit(page, width)
    assert problems == [], "\n".join([path, *problems])
    assert serious_violations(page) == [], path
    _prints(page)


def test_every_drug_monograph_fits_the_screen_and_passes_axe(screen: tuple[Any, int], server: str) -> None:  # noqa: F811
    from ipexrx.knowledge import get_kb

    page, width = screen
    bad: dict[str, Any] = {}
    for drug in sorted(get_kb().drugs):
        page.goto(f"{server}/drugs/{drug}")
        problems = does_not_fit(page, width)
        if width < 400:  # axe once per drug (colours and names do not change with the width)
            problems += serious_violations(page)
        if problems:
            bad[drug] = problems
    assert bad == {}


def _assess_example(page: Any, base: str) -> None:
    page.goto(f"{base}/assess")
    page.get_by_label("Patient file").set_input_files(str(EXAMPLES / "example-patient.json"))
    page.wait_for_function("document.getElementById('patient').value.includes('ipexrx-patient/1')")
    page.get_by_label("Assessment date").fill("2026-11-25")


def test_an_assessment_result_fits_passes_axe_and_prints_with_its_sources(screen: tuple[Any, int],
                                                                          server: str) -> None:  # noqa: F811
    page, width = screen
    _assess_example(page, server)
    page.get_by_role("button", name="Assess", exact=True).click()
    page.locator("#report").wait_for()
    assert page.locator(".alert").count() >= 3
    assert does_not_fit(page, width) == []
    assert serious_violations(page) == []
    page.emulate_media(media="print")
    assert not page.locator("#assess-form").is_visible() and page.locator("#report").is_visible()
    assert page.locator("#report-sources + ol.refs li").first.is_visible()  # the sources are printed too
    page.emulate_media(media="screen")


def test_the_printable_assessment_report_fits_passes_axe_and_ends_with_its_sources(screen: tuple[Any, int],
                                                                                   server: str) -> None:  # noqa: F811
    page, width = screen
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    _assess_example(page, server)
    page.get_by_role("button", name="Printable report").click()
    page.wait_for_url(f"{server}/assess/report")
    assert page.locator("h1").inner_text() == "IPEX medication assessment"
    assert page.locator("section").last.get_attribute("id") == "sources"
    assert page.locator("#sources li").count() >= 3
    assert does_not_fit(page, width) == []
    assert serious_violations(page) == []
    assert violations == []  # its inline stylesheet is allowed on that path, and nothing else is
    if width > 400:
        pdf = page.pdf(format="A4")
        assert pdf.startswith(b"%PDF") and len(pdf) > 20000


def test_a_reference_page_renders_to_pdf_without_the_navigation(screen: tuple[Any, int], server: str) -> None:  # noqa: F811
    page, _ = screen
    page.goto(f"{server}/manifestations/enteropathy")
    _prints(page, "ol.refs")
    page.emulate_media(media="print")
    assert page.locator("p.print-only").is_visible()
    page.emulate_media(media="screen")
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF") and len(pdf) > 10000


def test_a_search_without_a_hit_says_so_and_suggests_what_to_type(screen: tuple[Any, int],
                                                                 server: str) -> None:  # noqa: F811
    page, width = screen
    page.goto(f"{server}/search?q=qqxzv")
    assert page.locator("#search-status").inner_text().startswith("No match for “qqxzv”: try a drug")
    page.get_by_label("Drug, brand, synonym").fill("zzqqx")  # the instant search says the same
    page.locator("#search-status", has_text="zzqqx").wait_for()
    assert "No match" in page.locator("#search-status").inner_text()
    assert does_not_fit(page, width) == []


def test_the_api_docs_fit_pass_axe_and_keep_their_deep_links(screen: tuple[Any, int], server: str) -> None:  # noqa: F811
    """Swagger UI at /docs, as loaded and with an operation opened: its contrast is raised by static/docs.css and
    an operation's path is plain text inside its button (static/swagger-init.js), so no rule is excepted."""
    page, width = screen
    refused: list[str] = []
    page.on("console", lambda msg: refused.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.goto(f"{server}/docs#/Assessment")
    page.locator(".opblock").first.wait_for()
    assert page.locator("#operations-tag-Assessment").count() == 1  # the deep link still finds its section
    assert page.locator("button.opblock-summary-control a[href], button.opblock-summary-control button").count() == 0
    assert does_not_fit(page, width) == []
    assert serious_violations(page) == []
    page.locator("button.opblock-summary-control").first.click()  # an operation opened: examples and schemas
    page.locator(".opblock-body").first.wait_for()
    assert "#/" in page.url  # the address follows what is opened
    assert does_not_fit(page, width) == []
    assert serious_violations(page) == []
    assert refused == []
