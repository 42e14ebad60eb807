"""The population-screen page in a real browser (Playwright driving Debian's chromium against uvicorn on loopback):
upload the shipped test population, read the worklists at desktop width and at 375 px without horizontal
scrolling, sort a worklist by a column heading (static/screen.js), download a CSV, print, and pass axe-core's
WCAG 2.1 A/AA checks with no Content-Security-Policy violation."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.service.test_browser import CHROMIUM, CHROMIUM_ARGS, _axe_violations, server  # noqa: F401 (fixture)

pytestmark = [pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed at "
                                 "/usr/bin/chromium (.ci/run installs it with apt-get install chromium)")]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) not installed")

POPULATION = Path(__file__).resolve().parents[1] / "cases" / "screen" / "population"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _column(page: Any, table: str, index: int) -> list[str]:
    return [t.strip() for t in page.locator(f"#{table} tbody tr td:nth-child({index})").all_inner_texts()]


@pytest.mark.parametrize(("width", "height"), [(1280, 900), (375, 740)])
def test_the_worklists_are_readable_sortable_downloadable_and_accessible(browser: Any, server: str,  # noqa: F811
                                                                         width: int, height: int) -> None:
    ctx = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    try:
        page = ctx.new_page()
        page.set_default_timeout(30000)
        violations: list[str] = []  # the Content-Security-Policy allows no inline script or style here
        page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
        page.goto(f"{server}/screen")
        assert _axe_violations(page) == []
        page.get_by_label("NDJSON files", exact=False).set_input_files(sorted(str(p) for p in
                                                                              POPULATION.glob("*.ndjson*")))
        page.get_by_label("Screening date").fill("2026-01-01")
        page.get_by_role("button", name="Screen").click()
        page.locator("#screen-result").wait_for()
        assert page.locator("#bad-lines").is_visible()
        ranks = _column(page, "candidates", 1)
        assert ranks == [str(i) for i in range(1, len(ranks) + 1)] and len(ranks) == 14
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow} px of horizontal overflow at {width} px"
        assert _axe_violations(page) == []
        page.locator("#candidates thead").get_by_role("button", name="Rank").click()  # the other way round
        assert _column(page, "candidates", 1) == ranks[::-1]
        assert page.locator("#candidates th[aria-sort=descending]").count() == 1
        page.locator("#candidates thead").get_by_role("button", name="Patient").click()
        patients = _column(page, "candidates", 2)
        assert patients == sorted(patients)
        with page.expect_download() as download:
            page.get_by_role("link", name="candidates.csv").click()
        saved = Path(download.value.path())
        assert saved.read_text(encoding="utf-8").startswith("rank,patient,score,closest_pattern")
        page.emulate_media(media="print")  # printable: the form and the download links go, the worklists stay
        assert not page.locator("#screen-form").is_visible() and page.locator("#candidates").is_visible()
        assert not page.locator("#csv-downloads").is_visible()
        assert violations == []
    finally:
        ctx.close()


def test_files_over_the_limit_are_refused_in_the_browser_before_they_are_sent(
        browser: Any, server: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from ipexrx.service import screen_web

    monkeypatch.setattr(screen_web, "MAX_UPLOAD_BYTES", 2 * 2**20)  # the server runs in this process
    ctx = browser.new_context(viewport={"width": 375, "height": 740})
    try:
        page = ctx.new_page()
        page.set_default_timeout(20000)
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        page.goto(f"{server}/screen")
        big = b'{"resourceType": "Patient", "id": "p1"}\n' * 80000  # 3.2 MB
        page.get_by_label("NDJSON files", exact=False).set_input_files(
            [{"name": "Patient.ndjson", "mimeType": "application/x-ndjson", "buffer": big}])
        page.get_by_role("button", name="Screen").click()
        error = page.locator("#size-error")
        error.wait_for()
        assert "expected at most 2 MB together" in error.inner_text() and posts == []
        assert _axe_violations(page) == []
    finally:
        ctx.close()
