"""The whole EHR loop in a real browser (Playwright, Debian's chromium): ``ipexrx sandbox`` started as a
user would start it (its own process, which starts ``ipexrx serve`` in another), on free loopback
ports. Open a chart -> patient-view cards -> draft a live vaccine -> order-select card -> accept its
suggestion (the draft goes) -> the feedback is in the service's database (``ipexrx cds feedback
--report``) -> sign orders (order-sign) -> launch the SMART app from a card -> consent -> the
patient's assessment, alerts first. The chart passes axe-core's WCAG 2.1 A/AA checks and fits 375 px."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, SKIP_REASON, WIDTHS, does_not_fit, serious_violations

pytestmark = [pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=SKIP_REASON)]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) not installed")

PID = "ipex-boy-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    import signal

    proc.send_signal(signal.SIGINT)  # as Ctrl-C: the command stops its ipexrx serve child too
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("sandbox")
    (tmp / "run").mkdir(mode=0o700)
    port, app_port = _free_port(), _free_port()
    database = f"sqlite:///{tmp / 'sandbox.sqlite3'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IPEXRX_")}
    env.update(XDG_RUNTIME_DIR=str(tmp / "run"), IPEXRX_ANALYSIS_THREADS="1")
    log_path = tmp / "sandbox.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ipexrx", "sandbox", "--port", str(port), "--app-port",
                                 str(app_port), "--database", database], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"ipexrx sandbox exited ({proc.returncode}): {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{base}/", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"ipexrx sandbox did not answer within 60 s: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            yield {"base": base, "app": f"http://127.0.0.1:{app_port}", "database": database,
                   "log": str(log_path)}
        finally:
            _stop(proc)
    assert "Traceback" not in log_path.read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _axe_violations(page: Any) -> list[tuple[str, str, list[Any]]]:
    from axe_playwright_python.sync_playwright import Axe

    tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": tags}, "resultTypes": ["violations"]})
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in results.response["violations"]]


def _feedback_report(database: str) -> str:
    out = subprocess.run([sys.executable, "-m", "ipexrx", "cds", "feedback", "--report", "--database", database],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout


def test_chart_to_card_to_suggestion_to_feedback_to_smart_app(browser: Any, sandbox: dict[str, str]) -> None:
    base, app = sandbox["base"], sandbox["app"]
    ctx = browser.new_context(viewport={"width": 375, "height": 800})
    page = ctx.new_page()
    page.set_default_timeout(20000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # CSP refusals land here
    try:
        # the patient list, then the chart: patient-view cards, each with its source
        page.goto(f"{base}/")
        assert _axe_violations(page) == []
        page.get_by_role("link", name="Leo Example").click()
        page.wait_for_url(f"{base}/chart/{PID}")
        view = page.locator("article.card")
        assert view.count() >= 3
        assert "tacrolimus" in page.locator("#view-cards ~ article.card").first.inner_text().lower()
        assert page.locator("article.card .source a").count() == view.count()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375  # usable on a phone
        assert _axe_violations(page) == []

        # draft a live vaccine: order-select answers with a critical card and a suggestion to remove the draft
        page.get_by_label("Medicine or vaccine").select_option("vaccine:measles-mumps-rubella")
        page.get_by_role("button", name="Draft order").click()
        page.wait_for_url(f"{base}/chart/{PID}#order-checks")
        assert "Measles, mumps and rubella" in page.locator("#drafts").inner_text()
        order_cards = page.locator("#order-checks ~ article.card")
        live = order_cards.filter(has_text="Live vaccine")
        assert live.count() == 1 and "critical" in live.inner_text().lower()
        assert "(order-select hook" in page.locator("#order-checks ~ p.lede").first.inner_text()
        accept = live.get_by_role("button", name="Accept: Remove the draft order for Measles")
        accept.click()
        page.wait_for_url(f"{base}/chart/{PID}#orders")
        assert "Suggestion applied: removed the draft order" in page.locator("#messages").inner_text()
        assert page.locator("#drafts").inner_text() == "No draft orders."
        report = _feedback_report(sandbox["database"])
        assert "1 accepted, 0 overridden" in report, report

        # sign an order: order-sign checks it first, and its cards are shown before anything is signed
        page.get_by_label("Medicine or vaccine").select_option("product:voriconazole-tablet")
        page.get_by_label("Dose", exact=True).fill("100")
        page.get_by_label("How often").select_option("2")
        page.get_by_role("button", name="Draft order").click()
        page.get_by_role("button", name="Sign orders").click()
        page.wait_for_url(f"{base}/chart/{PID}#order-checks")
        assert "(order-sign hook" in page.locator("#order-checks ~ p.lede").first.inner_text()
        assert page.get_by_role("button", name="Sign anyway").count() == 1

        # launch the SMART app from a patient-view card, consent in the EHR, land on the assessment
        page.locator("#view-cards ~ article.card a.smart-link").first.click()
        page.wait_for_url(f"{base}/auth/authorize?**")
        assert "Leo Example" in page.locator("#consent-patient").inner_text()
        assert _axe_violations(page) == []
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(f"{app}/smart/patient")
        html = page.content()
        assert "Leo Example" in page.locator("body").inner_text()
        assert html.index('id="alerts"') < html.index('id="medications"')  # alerts first
        assert page.locator("#alert-1").count() == 1  # the alerts themselves, not only their heading
        assert "Opened from a decision-support card" in page.locator("#smart-card-context").inner_text()
        assert not [e for e in errors if "Content Security Policy" in e], errors
    finally:
        ctx.close()


def _fits_and_passes_axe(page: Any, width: int, what: str) -> None:
    problems = does_not_fit(page, width)
    assert problems == [], "\n".join([what, *problems])
    assert serious_violations(page) == [], what


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_every_page_of_the_loop_fits_a_phone_and_a_desktop_and_passes_axe(browser: Any, sandbox: dict[str, str],
                                                                          width: str) -> None:
    """The patient list, the chart, the EHR's consent page, the SMART app's patient page (alerts first, then the
    plan with the dosing links, then the evidence, the sources last) and, when the clinician denies consent,
    the app's "consent was declined" page: no horizontal scrolling at 1280 and 375 px, no serious or critical
    axe violation."""
    base, app = sandbox["base"], sandbox["app"]
    w, h = WIDTHS[width]
    ctx = browser.new_context(viewport={"width": w, "height": h})
    page = ctx.new_page()
    page.set_default_timeout(20000)
    try:
        page.goto(f"{base}/")
        _fits_and_passes_axe(page, w, "patient list")
        page.goto(f"{base}/chart/{PID}")
        page.locator("#view-cards ~ article.card").first.wait_for()
        _fits_and_passes_axe(page, w, "chart")
        page.locator("#view-cards ~ article.card a.smart-link").first.click()
        page.wait_for_url(f"{base}/auth/authorize?**")
        _fits_and_passes_axe(page, w, "consent")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(f"{app}/smart/patient")
        _fits_and_passes_axe(page, w, "SMART patient page")
        headings = page.locator("#report h3").all_inner_texts()
        order = [next(i for i, t in enumerate(headings) if t.startswith(start))
                 for start in ("Alerts", "Dosing from drug levels", "Medications as read", "Sources")]
        assert order == sorted(order), headings
        assert headings[-1] == "Sources"
        page.locator("#smart-editors summary").click()  # the details for editors, opened, fit too
        _fits_and_passes_axe(page, w, "SMART patient page, details for editors open")

        page.goto(f"{base}/chart/ex-two-cni")
        page.locator("a.smart-link").first.click()
        page.wait_for_url(f"{base}/auth/authorize?**")
        page.get_by_role("button", name="Deny").click()
        page.wait_for_url(f"{app}/smart/callback?**")
        assert page.locator("h1").inner_text() == "Consent was declined"
        _fits_and_passes_axe(page, w, "consent declined")
    finally:
        ctx.close()


def test_the_command_prints_where_everything_is(sandbox: dict[str, str]) -> None:
    text = Path(sandbox["log"]).read_text()
    assert f"EHR chart      {sandbox['base']}/" in text
    assert f"FHIR server    {sandbox['base']}/fhir" in text
    assert f"CDS Hooks {sandbox['app']}/cds-services" in text
