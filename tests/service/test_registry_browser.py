"""The registry's pages in a real browser (Playwright driving Debian's chromium against uvicorn on loopback),
seeded with the synthetic cohort (ipexrx.registry.synthetic): sign-in, patients, a patient's record with its
courses, visits, adverse events and HSCT and the forms to add them, a refused form, and the analytics page.
Each at desktop width and at 375 px: no horizontal overflow, axe-core's WCAG 2.1 A/AA checks with no
violation (serious, critical or any other), no Content-Security-Policy violation. The analytics downloads
(SVG, PNG, CSV) are fetched by clicking their links and checked against the registry's rows."""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, serve_on_loopback
from tests.service.test_browser import _axe_violations

pytestmark = [pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed at "
                                 "/usr/bin/chromium (.ci/run installs it with apt-get install chromium)")]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) not installed")

PASSWORD = "a long browser password 1"
CLINICIAN, ANALYST = "syn.clinician", "syn.analyst"
AS_OF = "2026-06-30"
WIDTHS = [(1280, 900), (375, 740)]


class Site:
    def __init__(self, url: str, reg: Any, pseudonym: str, other_centre: str):
        self.url, self.reg, self.pseudonym, self.other_centre = url, reg, pseudonym, other_centre


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from ipexrx.registry import SYSTEM, ops
    from ipexrx.service import Settings, create_app

    db = tmp_path_factory.mktemp("registry-browser") / "ipexrx.sqlite3"
    app = create_app(Settings(database_url=f"sqlite:///{db}"))
    reg = app.state.registry
    ops.load_demo(reg, SYSTEM, n_patients=150, n_centres=3)
    reg.create_user(SYSTEM, {"username": CLINICIAN, "password": PASSWORD, "role": "clinician",
                             "centre_code": "SYN01"})
    reg.create_user(SYSTEM, {"username": ANALYST, "password": PASSWORD, "role": "analyst"})
    clin = reg.authenticate(CLINICIAN, PASSWORD)
    # a patient whose record has every section: courses, visits, adverse events and an HSCT
    full = next(p["pseudonym"] for p in reg.list_patients(clin)
                if (rec := reg.get_patient(clin, p["pseudonym"]))["hsct"] and rec["adverse_events"])
    other = next(p["pseudonym"] for p in reg.list_patients(reg.authenticate(CLINICIAN, PASSWORD))).replace(
        "SYN01", "SYN02")
    with serve_on_loopback(app) as url:
        yield Site(url, reg, full, other)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _context(browser: Any, width: int, height: int) -> Any:
    return browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)


def _sign_in(page: Any, site: Site, user: str) -> None:
    page.goto(f"{site.url}/registry/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{site.url}/registry")


# elements wider than the screen outside a sideways-scrolling box (the box, or text running out of it)
_WIDE = """(w) => [...document.querySelectorAll('main *')].filter(el => {
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height || r.right <= 0) return false;
    const own = getComputedStyle(el).overflowX;  // a scrolling box: its own box must fit, its content may not
    if (['auto', 'scroll', 'hidden'].includes(own)) return r.right > w + 1;
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
        if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) return false;
    }
    return Math.max(r.right, r.left + el.scrollWidth) > w + 1;
}).slice(0, 5).map(el => el.tagName.toLowerCase() + ' ' + (el.textContent || '').trim().slice(0, 50))"""


def _check_layout_and_a11y(page: Any, width: int, what: str, csp: list[str]) -> None:
    """Shares the site's header and navigation, fits the width, passes axe (no violation of any impact), broke no
    Content-Security-Policy rule, and prints without the navigation but with the content."""
    assert page.locator("header.site nav[aria-label=Main] a[href='/registry']").count() == 1, what
    assert page.locator("footer.site").count() == 1, what
    scroll = page.evaluate("() => document.documentElement.scrollWidth")
    assert scroll <= width, f"{what}: {scroll - width} px of horizontal overflow at {width} px"
    assert page.evaluate(_WIDE, width) == [], what
    page.emulate_media(media="print")
    try:
        assert not page.locator("header.site").is_visible() and not page.locator("nav.registry-nav").is_visible()
        assert page.locator("main h1").is_visible(), what
    finally:
        page.emulate_media(media="screen")
    bad = _axe_violations(page)
    assert bad == [], (what, bad)
    assert csp == [], (what, csp)


@pytest.mark.parametrize(("width", "height"), WIDTHS)
def test_clinician_pages_share_the_layout_fit_the_width_and_pass_axe(browser: Any, site: Site, width: int,
                                                                     height: int) -> None:
    ctx = _context(browser, width, height)
    try:
        page = ctx.new_page()
        page.set_default_timeout(30000)
        csp: list[str] = []
        page.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(f"{site.url}/registry/login")
        _check_layout_and_a11y(page, width, "sign-in", csp)
        _sign_in(page, site, CLINICIAN)
        assert page.locator("h1").inner_text() == "Centre dashboard"
        assert page.locator("nav[aria-label=Registry] a", has_text="Analytics").count() == 1
        _check_layout_and_a11y(page, width, "patients", csp)
        page.locator("nav[aria-label=Registry] a", has_text="Add a patient").click()
        page.wait_for_url(f"{site.url}/registry/patients/new")
        _check_layout_and_a11y(page, width, "add a patient", csp)
        page.get_by_role("button", name="Save patient").click()  # browser-side checks stop an empty form
        page.get_by_label("Birth year").fill("2020")
        page.get_by_label("Birth month (1-12)").fill("13")
        page.get_by_label("Diagnosis date").fill("2020-05-01")
        page.get_by_label("Consent date").fill("2020-05-02")
        page.get_by_role("button", name="Save patient").click()
        page.locator("[role=alert]", has_text="Not saved").wait_for()  # the library's validation, re-rendered
        _check_layout_and_a11y(page, width, "refused patient form", csp)
        page.goto(f"{site.url}/registry/patients/{site.pseudonym}")
        for heading in ("Manifestations", "HSCT", "Adverse events", "Courses", "Visits"):
            assert page.get_by_role("heading", name=heading, exact=True).count() == 1, heading
        for legend in ("Add a visit", "Add a treatment course", "Add a manifestation episode", "Add an adverse event",
                       "Record an HSCT", "Withdraw consent"):
            assert page.locator("legend", has_text=legend).count() == 1, legend
        _check_layout_and_a11y(page, width, "patient record and forms", csp)
        page.goto(f"{site.url}/registry/patients/{site.other_centre}")
        assert page.locator("h1").inner_text() in ("Not allowed", "Not found")
        _check_layout_and_a11y(page, width, "refused page", csp)
        page.goto(f"{site.url}/registry/analytics?as_of={AS_OF}")
        assert "centre SYN01" in page.locator("main").inner_text()
        _check_layout_and_a11y(page, width, "analytics (one centre)", csp)
    finally:
        ctx.close()


@pytest.mark.parametrize(("width", "height"), WIDTHS)
def test_analyst_analytics_page_fits_the_width_and_passes_axe(browser: Any, site: Site, width: int,
                                                              height: int) -> None:
    ctx = _context(browser, width, height)
    try:
        page = ctx.new_page()
        page.set_default_timeout(30000)
        csp: list[str] = []
        page.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None)
        _sign_in(page, site, ANALYST)
        assert "no patient pages" in page.locator("main").inner_text()
        _check_layout_and_a11y(page, width, "analyst landing", csp)
        page.locator("nav[aria-label=Registry] a", has_text="Analytics").click()
        page.wait_for_url(f"{site.url}/registry/analytics")
        page.get_by_label("Report date", exact=True).fill(AS_OF)
        page.get_by_label("Drug", exact=True).select_option("sirolimus")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url(lambda url: "drug=sirolimus" in url and f"as_of={AS_OF}" in url and "centre=&" in url)
        assert page.locator("h2", has_text="Time on therapy per drug").count() == 1
        assert page.locator("figure.km svg").count() == 5  # time on therapy and four survival comparisons
        assert page.locator("figure.km svg text", has_text="Number at risk").count() == 5
        _check_layout_and_a11y(page, width, "analytics (pooled)", csp)
    finally:
        ctx.close()


def _download(page: Any, link_name: str, nth: int = 0) -> tuple[str, bytes]:
    with page.expect_download() as info:
        page.get_by_role("link", name=link_name).nth(nth).click()
    d = info.value
    return d.suggested_filename, Path(d.path()).read_bytes()


def test_plots_and_tables_download_as_svg_png_and_csv_matching_the_registry(browser: Any, site: Site,
                                                                             tmp_path: Path) -> None:
    from sqlalchemy import select

    from ipexrx.registry.models import Course, Patient

    with site.reg.read_tx() as s:
        courses = Counter(s.scalars(select(Course.drug_id).join(Patient).where(
            Patient.consent_withdrawn_date.is_(None))))
        patients = len(list(s.scalars(select(Patient.id).where(Patient.consent_withdrawn_date.is_(None)))))
    ctx = _context(browser, 1280, 900)
    try:
        page = ctx.new_page()
        page.set_default_timeout(30000)
        _sign_in(page, site, ANALYST)
        page.goto(f"{site.url}/registry/analytics?as_of={AS_OF}")
        name, svg = _download(page, "plot as SVG")  # the first: time on therapy
        assert name == f"ipexrx-registry-time-on-therapy-{AS_OF}.svg"
        assert svg.startswith(b'<svg xmlns="http://www.w3.org/2000/svg"') and b"Number at risk" in svg
        name, png = _download(page, "plot as PNG", 1)  # the second: overall survival, HSCT versus not
        assert name == f"ipexrx-registry-survival-hsct-versus-immunosuppression-{AS_OF}.png"
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        name, data = _download(page, "curve data as CSV", 1)
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
        assert list(rows[0]) == ["group", "time_years", "survival_percent", "ci95_lower_percent",
                                 "ci95_upper_percent", "number_at_risk", "group_size", "events"]
        at_start = {r["group"]: int(r["number_at_risk"]) for r in rows if float(r["time_years"]) == 0}
        assert sum(at_start.values()) == patients and set(at_start) == {"HSCT", "Immunosuppression only"}
        name, data = _download(page, "drugs.csv")
        drugs = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
        assert len(drugs) == len(courses)
        assert {r["drug"]: int(r["courses"]) for r in drugs} == dict(courses)
        assert "median_days_on_drug" in drugs[0]
    finally:
        ctx.close()
