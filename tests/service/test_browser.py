"""Browser tests: Playwright for Python driving Debian's chromium (/usr/bin/chromium) against a
real uvicorn server on loopback: search, open a monograph, follow a citation, run an assessment
from an uploaded file (with and without JavaScript), print view, and accessibility of every page kind
(structure checks of our own plus axe-core's WCAG 2.1 A/AA rules, contrast included)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, SKIP_REASON, serve_on_loopback

EXAMPLES = Path(__file__).parents[2] / "src" / "ipexrx" / "service" / "static"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=SKIP_REASON),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) not installed")

__all__ = ["CHROMIUM", "CHROMIUM_ARGS"]  # other browser tests import them from here too


REG_USER, REG_PASSWORD = "browser.clinician", "a long browser password 1"


def _registry_user_and_patient(reg: Any) -> None:
    from ipexrx.registry import SYSTEM

    reg.create_centre(SYSTEM, {"code": "CTR-W", "name": "Web test centre"})
    reg.create_user(SYSTEM, {"username": REG_USER, "password": REG_PASSWORD, "role": "clinician",
                             "centre_code": "CTR-W"})
    actor = reg.authenticate(REG_USER, REG_PASSWORD)
    reg.add_patient(actor, {"patient": {"birth_year": 2021, "birth_month": 4, "sex": "male", "diagnosis": "ipex",
                                        "gene": "FOXP3", "variant_hgvs": "c.1150G>A", "diagnosis_date": "2021-08-01",
                                        "consent_date": "2021-08-02",
                                        "consent_scope": "registry"}})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from ipexrx.service import Settings, create_app

    db = tmp_path_factory.mktemp("browser") / "ipexrx.sqlite3"
    app = create_app(Settings(database_url=f"sqlite:///{db}"))
    _registry_user_and_patient(app.state.registry)
    with serve_on_loopback(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.set_default_timeout(15000)
    yield pg
    ctx.close()


def test_instant_search_finds_a_drug_by_a_misspelt_synonym_and_opens_its_monograph(page: Any, server: str) -> None:
    page.goto(f"{server}/search")
    page.get_by_label("Drug, brand, synonym").fill("rapamycine")
    link = page.locator("#results a", has_text="sirolimus").first
    link.wait_for()
    assert "result(s)" in page.locator("#search-status").inner_text()
    link.click()
    page.wait_for_url(f"{server}/drugs/sirolimus")
    assert page.locator("h1").inner_text() == "sirolimus"


def test_monograph_has_the_clinical_sections_and_each_citation_leads_to_its_source(page: Any, server: str) -> None:
    page.goto(f"{server}/drugs/Prograf")  # a brand redirects to the canonical page
    assert page.url == f"{server}/drugs/tacrolimus"
    headings = page.locator("h2").all_inner_texts()
    for wanted in ("Identity and class", "Mechanism", "Pharmacology", "Evidence in IPEX", "Boxed warnings",
                   "Screening before the first dose", "Monitoring", "Interactions", "Sources"):
        assert wanted in headings, (wanted, headings)
    cite = page.locator("#mechanism + ul .cite a").first  # a number, into the page's numbered sources
    number = cite.inner_text()
    entry = cite.get_attribute("href").split("#", 1)[1]
    assert entry == f"cite-{number}"
    cite.click()
    assert page.locator(f"#{entry}").inner_text().startswith(f"[{number}] ")
    source = page.locator(f"#{entry} a").first  # the entry leads to the source (and section) on /sources
    target = source.get_attribute("href").split("#", 1)[1]
    source.click()
    page.wait_for_url(f"{server}/sources#{target}")
    assert page.locator(f"[id='{target}']").count() == 1


def test_assessment_from_an_uploaded_file_shows_the_cited_report(page: Any, server: str) -> None:
    page.goto(f"{server}/assess")
    page.get_by_label("Patient file").set_input_files(str(EXAMPLES / "example-patient.json"))
    page.wait_for_function("document.getElementById('patient').value.includes('ipexrx-patient/1')")
    page.get_by_label("Assessment date").fill("2026-11-25")
    page.get_by_role("button", name="Assess").click()
    page.locator("#report").wait_for()
    alerts = page.locator(".alert")
    assert alerts.count() >= 3
    assert "CRITICAL" in alerts.first.inner_text()
    assert page.locator(".alert .cite a").count() >= 3  # each alert cites its sources


def test_assessment_from_an_uploaded_file_works_without_javascript(browser: Any, server: str) -> None:
    """The browser uploads the chosen file itself (multipart form) when scripts are off."""
    ctx = browser.new_context(java_script_enabled=False)
    try:
        page = ctx.new_page()
        page.set_default_timeout(15000)
        page.goto(f"{server}/assess")
        page.get_by_label("Patient file").set_input_files(str(EXAMPLES / "example-bundle.json"))
        assert page.get_by_label("Patient JSON or FHIR Bundle").input_value() == ""  # no script read it
        page.get_by_role("button", name="Assess").click()
        page.locator("#report").wait_for()
        assert page.locator(".alert").count() >= 1
        assert page.locator(".alert .cite a").count() >= 1
        assert '"resourceType": "Bundle"' in page.get_by_label("Patient JSON or FHIR Bundle").input_value()
    finally:
        ctx.close()


def test_assessment_of_a_bad_record_shows_located_errors(page: Any, server: str) -> None:
    page.goto(f"{server}/assess")
    page.get_by_label("Patient JSON or FHIR Bundle").fill('{"diagnosis": {"type": "ipex"}, "medicatons": []}')
    page.get_by_role("button", name="Assess").click()
    err = page.locator("#assess-error")
    err.wait_for()
    assert "medicatons" in err.inner_text() and "$." not in err.inner_text()  # the field, in words


def test_print_view_hides_navigation_and_renders_to_pdf(page: Any, server: str) -> None:
    page.goto(f"{server}/drugs/sirolimus")
    assert page.locator("header.site").is_visible()
    page.emulate_media(media="print")
    assert not page.locator("header.site").is_visible()
    assert not page.locator("form[role=search]").first.is_visible()
    assert page.locator("p.print-only").is_visible()  # content version and page URL on paper
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF") and len(pdf) > 20000


@pytest.mark.parametrize("path", ["/", "/drugs", "/drugs/rituximab", "/manifestations/enteropathy",
                                  "/classes/calcineurin-inhibitors", "/sources", "/search?q=tacrolimus", "/assess",
                                  "/rules"])
def test_pages_have_one_h1_labelled_inputs_and_a_language(page: Any, server: str, path: str) -> None:
    page.goto(server + path)
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").count() == 1
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, textarea, select')]
        .filter(el => el.type !== 'hidden' && !el.labels.length && !el.getAttribute('aria-label'))
        .map(el => el.id || el.name)""")
    assert unlabelled == []
    levels = page.evaluate("() => [...document.querySelectorAll('h1,h2,h3,h4')].map(h => +h.tagName[1])")
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:], strict=False)), levels  # no skipped levels


def _axe_violations(page: Any) -> list[tuple[str, str, list[Any]]]:
    """axe-core's WCAG 2.0/2.1 A and AA violations on the page: (rule, impact, first offending nodes)."""
    from axe_playwright_python.sync_playwright import Axe

    tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": tags}, "resultTypes": ["violations"]})
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in results.response["violations"]]


A11Y_PAGES = ["/", "/drugs", "/drugs/rituximab", "/manifestations/enteropathy", "/classes/calcineurin-inhibitors",
              "/sources", "/search?q=tacrolimus", "/assess", "/rules", "/registry/login"]


@pytest.mark.parametrize("path", A11Y_PAGES)
def test_pages_pass_the_axe_wcag_aa_checks(page: Any, server: str, path: str) -> None:
    """axe-core (bundled with axe-playwright-python, run offline) over WCAG 2.x A and AA: contrast,
    names, landmarks, list and table structure, language."""
    page.goto(server + path)
    assert _axe_violations(page) == []


def test_an_assessment_report_passes_the_axe_wcag_aa_checks(page: Any, server: str) -> None:
    page.goto(f"{server}/assess")
    page.get_by_label("Patient JSON or FHIR Bundle").fill((EXAMPLES / "example-bundle.json").read_text())
    page.get_by_label("Assessment date").fill("2026-11-25")
    page.get_by_role("button", name="Assess").click()
    page.locator("#report").wait_for()
    assert _axe_violations(page) == []


def test_registry_dashboard_and_patient_forms_pass_the_axe_wcag_aa_checks(page: Any, server: str) -> None:
    page.goto(f"{server}/registry/login")
    page.get_by_label("Username").fill(REG_USER)
    page.get_by_label("Password").fill(REG_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server}/registry")
    assert _axe_violations(page) == []
    page.locator("a", has_text="CTR-W-").first.click()
    page.get_by_text("Record an HSCT").wait_for()
    assert _axe_violations(page) == []


def test_api_docs_render_from_local_files_only(page: Any, server: str) -> None:
    requested: list[str] = []
    page.on("request", lambda req: requested.append(req.url))
    page.goto(f"{server}/docs")
    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock").count() >= 15  # every operation of the API is listed
    outside = [u for u in requested if not u.startswith(server) and not u.startswith("data:")]
    assert outside == []  # no CDN: the page works with no network


@pytest.mark.parametrize("path", ["/", "/drugs/tacrolimus", "/search?q=tacrolimus", "/assess", "/docs", "/rules",
                                  "/registry/login"])
def test_pages_work_under_the_content_security_policy_without_a_violation(page: Any, server: str, path: str) -> None:
    """The policy forbids inline scripts (and inline styles outside the self-contained reports): a page
    that still used one would log a violation here and lose that behaviour in every browser."""
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.goto(server + path)
    if path == "/docs":
        page.locator(".opblock").first.wait_for()
    if path.startswith("/search"):
        page.get_by_label("Drug, brand, synonym").fill("sirolimus")
        page.locator("#results a", has_text="sirolimus").first.wait_for()
    assert violations == []


def test_the_served_registry_report_toggles_a_curve_under_its_policy(page: Any, tmp_path: Path) -> None:
    """The interactive report's one script (click a legend entry to hide its curve) is allowed by its
    hash and nothing else: the report as served, with its real headers, works in chromium."""
    from fastapi.testclient import TestClient

    from ipexrx.registry import SYSTEM, ops
    from ipexrx.service import Settings, create_app

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'report.sqlite3'}"))
    reg = app.state.registry
    ops.load_demo(reg, SYSTEM, n_patients=40, n_centres=2)
    reg.create_user(SYSTEM, {"username": "report.analyst", "password": "a long analyst password 1", "role": "analyst"})
    with TestClient(app) as c:
        token = c.post("/api/v1/registry/auth/token", json={"username": "report.analyst",
                                                            "password": "a long analyst password 1"}).json()["token"]
        served = c.get("/api/v1/registry/report", headers={"Authorization": f"Bearer {token}"})
    assert served.status_code == 200 and "onclick" not in served.text
    headers = {"content-type": "text/html; charset=utf-8",
               "content-security-policy": served.headers["content-security-policy"]}
    page.route("http://report.test/", lambda route: route.fulfill(status=200, body=served.text, headers=headers))
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.goto("http://report.test/")
    legend = page.locator("g.legend").first
    curve = legend.get_attribute("data-curve")
    svg = legend.locator("xpath=ancestor::*[local-name()='svg'][1]")
    assert "off" not in (svg.locator(f"[id='{curve}']").get_attribute("class") or "")
    legend.click()
    assert "off" in (svg.locator(f"[id='{curve}']").get_attribute("class") or "")
    assert violations == []
