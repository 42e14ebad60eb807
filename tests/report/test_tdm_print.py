"""The TDM report prints on one A4 page in a real browser (Debian chromium via Playwright) and fetches nothing."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from ipexrx.dosing.model import get_model
from ipexrx.dosing.recommend import recommend_from_trough
from ipexrx.dosing.report import build_report
from ipexrx.report import render_tdm_html

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed at "
                                "/usr/bin/chromium (.ci/run installs it with apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) not installed")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu",
                                                              "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.mark.parametrize(("level", "dose", "wt"), [(3.5, 0.8, 12), (60, 1, 20)], ids=["ipex-low-trough",
                                                                                    "unexplained-level"])
def test_report_prints_on_one_a4_page_without_fetching_anything(browser: Any, level: float, dose: float,
                                                                 wt: float) -> None:
    m = get_model("fan2024-sirolimus")
    rec = recommend_from_trough("sirolimus", level, "ng/mL", dose, 24, {"WT": wt}, model_id=m.id)
    html = render_tdm_html(build_report(m, rec, covariates={"WT": wt}, as_of="2026-01-02"))
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.set_content(html)
    pdf = page.pdf(prefer_css_page_size=True)
    page.close()
    assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 1
    assert requests == []
