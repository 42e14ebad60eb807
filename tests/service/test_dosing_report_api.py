"""`POST /api/v1/dosing/report`: the request of /recommend, the report as JSON, or the printable page when the
client prefers text/html; bad input is a 422 naming the problem."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ipexrx.service.dosing_api import _wants_html

BODY = {"model": "fan2024-sirolimus", "level": 3.5, "level_unit": "ng/mL", "dose_mg": 0.8, "interval_h": 24,
        "covariates": {"WT": 12}, "as_of": "2026-01-02"}


def test_report_is_json_by_default_and_agrees_with_recommend(dev_client: TestClient) -> None:
    resp = dev_client.post("/api/v1/dosing/report", json=BODY)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    d = resp.json()
    rec = dev_client.post("/api/v1/dosing/recommend", json={k: v for k, v in BODY.items() if k != "as_of"}).json()
    assert d["as_of"] == "2026-01-02"
    assert (d["suggestion"]["dose_mg"], d["suggestion"]["predicted"]) == (rec["dose_mg"], rec["predicted"])
    assert d["model"]["doi"] == "10.3389/fphar.2024.1457614" and d["suggestion"]["unit"] == "ng/mL"
    assert {s["number"] for s in d["sources"]} >= set(d["model"]["refs"])


def test_report_is_a_printable_page_when_html_is_preferred(dev_client: TestClient) -> None:
    resp = dev_client.post("/api/v1/dosing/report", json=BODY, headers={"Accept": "text/html,application/json;q=0.8"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert html.startswith("<!DOCTYPE html>") and '<svg class="plot"' in html and "Produced on 2026-01-02" in html
    assert "<script" not in html and "fan2024-sirolimus" not in html


def test_same_request_gives_the_same_report(dev_client: TestClient) -> None:
    a = dev_client.post("/api/v1/dosing/report", json=BODY).content
    b = dev_client.post("/api/v1/dosing/report", json=BODY).content
    assert a == b


def test_a_priori_report_by_drug_carries_the_model_choice(dev_client: TestClient) -> None:
    resp = dev_client.post("/api/v1/dosing/report", json={"drug": "sirolimus", "covariates": {"WT": 12},
                                                          "as_of": "2026-01-02"})
    assert resp.status_code == 200, resp.text
    d = resp.json()
    assert d["individualised"] is False and d["diagnostics"]["available"] is False
    assert d["model_choice"] is not None and d["model_choice"]["models"]


def test_bad_report_requests_are_422_with_the_reason(dev_client: TestClient) -> None:
    no_unit = dev_client.post("/api/v1/dosing/report", json={**BODY, "level_unit": None})
    assert no_unit.status_code == 422 and "level_unit" in no_unit.text
    bad_date = dev_client.post("/api/v1/dosing/report", json={**BODY, "as_of": "02/01/2026"})
    assert bad_date.status_code == 422 and any("as_of" in i["path"] for i in bad_date.json()["issues"])
    too_much = dev_client.post("/api/v1/dosing/report", json={**BODY, "dose_mg": 80},
                               headers={"Accept": "text/html"})
    assert too_much.status_code == 422 and too_much.json()["error"] == "input_check_failed"
    assert any("AMT" in i["path"] or "dose" in i["path"] for i in too_much.json()["issues"])


def test_accept_header_negotiation() -> None:
    assert _wants_html("text/html")
    assert _wants_html("text/html,application/xhtml+xml,*/*;q=0.8")
    assert not _wants_html(None) and not _wants_html("*/*") and not _wants_html("application/json")
    assert not _wants_html("application/json, text/html")  # a tie goes to JSON
    assert not _wants_html("text/html;q=0.5, application/json")
    assert not _wants_html("text/html;q=0")
