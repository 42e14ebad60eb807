"""The dosing page (/dosing) and the upload API: clinical models only, a suggestion with its unit, warnings and
plot from typed levels or an uploaded file, input-check errors shown with 422, and CSV encodings."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

TAC = "andrews2018-tacrolimus"
COVS = {"cov_WT": "20", "cov_DONOR_DECEASED": "1", "cov_EGFR": "80", "cov_HCT": "0.35"}
CSV = ("ID,TIME,EVID,AMT,CMT,II,ADDL,DV,WT,DONOR_DECEASED,EGFR,HCT\n"
       "1,0,1,2,1,12,5,.,20,1,80,0.35\n1,59.5,0,.,2,.,.,5,20,1,80,0.35\n")
NO_FILE = {"file": ("", b"", "application/octet-stream")}  # what a browser sends when no file is chosen


def _text(html: str) -> str:
    html = re.sub(r"<svg.*?</svg>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'").replace("&lt;", "<")


def _section(html: str, element_id: str) -> str:
    at = html.find(f'id="{element_id}"')
    assert at >= 0, f"no #{element_id} on the page"
    return html[at:]


def _form(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"model": TAC, **COVS, "dose_mg": "2", "interval_h": "12", "level_value": ["5", ""],
                            "level_unit": ["ng/mL", "ng/mL"], "level_hours": ["", ""], "metric": "trough",
                            "target_low": "7", "target_high": "12", "target_for": "trough", "form": "0"}
    data.update(over)
    return data


def test_the_form_offers_clinical_models_only_with_the_chosen_models_covariates(dev_client: TestClient) -> None:
    from ipexrx.dosing.model import all_models

    page = dev_client.get("/dosing")
    assert page.status_code == 200
    offered = set(re.findall(r'<option value="([^"]+)"[^>]*>[^<]*\(\w+ \d{4}\)</option>', page.text))
    clinical = {m.id for m in all_models() if m.spec.kind == "clinical"}
    teaching = {m.id for m in all_models() if m.spec.kind != "clinical"}
    assert offered == clinical
    assert not any(f'value="{t}"' in page.text for t in teaching)
    # the default model's covariates, each with its unit and cohort range
    assert 'name="cov_WT"' in page.text and "Body weight (WT, kg)" in page.text
    assert "cohort range 11.6-83.7 kg" in page.text
    assert 'name="target_low" value="7"' in page.text  # the model's target, editable
    other = dev_client.get("/dosing", params={"model": "fan2024-sirolimus"})
    assert 'name="cov_WT"' in other.text and 'name="cov_HCT"' not in other.text
    assert dev_client.get("/dosing", params={"model": "nonmem-001"}).status_code == 404
    assert '<a href="/dosing">Dose a patient</a>' in page.text  # in the site navigation
    assert "<script>" not in page.text and 'src="/static/dosing.js"' in page.text  # no inline script


def test_a_level_gives_a_suggestion_with_unit_warning_plot_and_citation(dev_client: TestClient) -> None:
    r = dev_client.post("/dosing", data=_form(), files=NO_FILE)
    assert r.status_code == 200, _text(r.text)[:800]
    result = _text(_section(r.text, "result"))
    assert re.search(r"Consider: tacrolimus \d+(\.\d+)? mg every 12 h", result)
    assert re.search(r"Predicted steady-state trough: [\d.]+ ng/mL", result)
    assert re.search(r"Probability of target attainment: \d+ %", result)
    # the measured trough below the range is why the dose changes; warnings (a defaulted covariate here) come
    # before the suggestion
    assert "gave a measured trough below the range" in result
    warnings = _text(_section(r.text, "dosing-warnings"))
    assert "CYP3A5" in warnings
    assert r.text.index('id="dosing-warnings"') < r.text.index('id="suggestion"')
    assert r.text.count('<svg class="conc-plot"') == 2  # fit to the level, and the suggested regimen
    fit_plot = _section(r.text, "plot-fit")
    assert "<circle" in fit_plot.split("</svg>")[0] and "measured 5 ng/mL" in fit_plot
    assert "doi:10.1007/s40262-017-0567-8" in result and "Optimal dosing in IPEX syndrome is not established" in result
    assert "Fit diagnostics" in result and "IWRES" in result
    assert TAC not in result  # internal model ids never reach the reader


def test_levels_in_molar_units_are_converted_and_said_so(dev_client: TestClient) -> None:
    r = dev_client.post("/dosing", data=_form(level_value=["6", "7"], level_unit=["nmol/L", "ng/mL"],
                                              level_hours=["", "11"]), files=NO_FILE)
    assert r.status_code == 200, _text(r.text)[:800]
    assert "level 1: 6 nmol/L read as 4.824 ng/mL" in _text(r.text)
    assert "2 level(s)" in _text(r.text)


def test_a_500_mg_tacrolimus_dose_is_an_input_error_with_422_and_no_suggestion(dev_client: TestClient) -> None:
    r = dev_client.post("/dosing", data=_form(dose_mg="500"), files=NO_FILE)
    assert r.status_code == 422
    err = _text(_section(r.text, "dosing-error"))
    assert "ERROR current regimen (dose)" in err and "500 mg every 12 h" in err
    assert "tacrolimus dose far above the labelled maximum" in err
    assert 'href="/sources#src-label-prograf-2"' in r.text  # its source, linked
    assert 'id="result"' not in r.text
    assert 'name="dose_mg" value="500"' in r.text  # the form keeps what was entered


@pytest.mark.parametrize(("over", "expected"), [
    ({"cov_WT": "twenty"}, "Body weight (WT) a number twenty"),
    ({"level_hours": ["30", ""]}, "level 1: expected a time after the dose within the dosing interval (0-12 h)"),
    ({"level_unit": ["mg/dL", "ng/mL"]}, "level 1: unit 'mg/dL' not understood"),
    ({"interval_h": ""}, "a level needs the regimen it was measured on"),
    ({"cov_DONOR_DECEASED": ""}, "needs covariate DONOR_DECEASED"),
    ({"metric": "peak"}, "the model states no peak target; expected a target low and high in ng/mL, got none"),
    ({"level_unit": ["", "ng/mL"]}, "level 1: no unit given"),
])
def test_bad_entries_are_shown_on_the_page_with_422(dev_client: TestClient, over: dict[str, Any],
                                                    expected: str) -> None:
    r = dev_client.post("/dosing", data=_form(**over), files=NO_FILE)
    assert r.status_code == 422
    assert expected in _text(_section(r.text, "dosing-error"))


def test_a_priori_without_levels_uses_the_covariates_only(dev_client: TestClient) -> None:
    r = dev_client.post("/dosing", data=_form(dose_mg="", level_value=["", ""]), files=NO_FILE)
    assert r.status_code == 200, _text(r.text)[:800]
    assert "a priori: population typical values" in _text(r.text)
    assert r.text.count('<svg class="conc-plot"') == 1


def _upload(client: TestClient, name: str, data: bytes, **over: Any) -> Any:
    form = _form(dose_mg="", interval_h="", level_value=[""], level_unit=["ng/mL"], level_hours=[""], **over)
    return client.post("/dosing", data=form, files={"file": (name, data, "text/csv")})


def test_an_uploaded_csv_with_a_byte_order_mark_is_read(dev_client: TestClient) -> None:
    r = _upload(dev_client, "levels.csv", b"\xef\xbb\xbf" + CSV.encode())
    assert r.status_code == 200, _text(r.text)[:800]
    assert re.search(r"Consider: tacrolimus [\d.]+ mg every 12 h", _text(r.text))
    assert "not UTF-8" not in r.text


def test_an_uploaded_latin1_csv_is_read_with_a_warning_naming_the_encoding(dev_client: TestClient) -> None:
    r = _upload(dev_client, "levels.csv", (CSV + "C Müller, 5 µg/L\n").encode("latin-1"))
    assert r.status_code == 200, _text(r.text)[:800]
    warnings = _text(_section(r.text, "dosing-warnings"))
    assert "levels.csv is not UTF-8 (byte 0xFC at line 4" in warnings and "Windows-1252 (Latin-1)" in warnings


def test_an_uploaded_utf16_file_is_refused_with_422_naming_it(dev_client: TestClient) -> None:
    r = _upload(dev_client, "export.csv", CSV.encode("utf-16"))
    assert r.status_code == 422
    err = _text(_section(r.text, "dosing-error"))
    assert "export.csv, line 1: expected UTF-8 text" in err and "got UTF-16 (little-endian) text" in err


def test_an_uploaded_file_over_5_mb_is_refused_with_413(dev_client: TestClient) -> None:
    r = _upload(dev_client, "huge.csv", CSV.encode() + b"C " + b"x" * (5 * 2**20) + b"\n")
    assert r.status_code == 413 and "huge.csv: expected a file of at most 5 MB" in _text(r.text)


def test_a_file_and_typed_levels_together_are_refused(dev_client: TestClient) -> None:
    r = dev_client.post("/dosing", data=_form(), files={"file": ("levels.csv", CSV.encode(), "text/csv")})
    assert r.status_code == 422
    assert "give either the current regimen and levels in the form or a file, not both" in _text(r.text)


def test_an_uploaded_fhir_bundle_is_read(dev_client: TestClient) -> None:
    from tests.dosing.test_fhir_input import BUNDLE

    r = dev_client.post("/dosing", data=_form(dose_mg="", interval_h="", level_value=[""], cov_WT="",
                                              cov_HCT="", cov_EGFR="85"),
                        files={"file": ("bundle.json", json.dumps(BUNDLE).encode(), "application/json")})
    assert r.status_code == 200, _text(r.text)[:800]
    assert "MAP estimate from 1 level(s)" in _text(r.text)


def test_the_printable_report_takes_the_same_inputs(dev_client: TestClient) -> None:
    r = dev_client.post("/dosing/report", data=_form(), files=NO_FILE)
    assert r.status_code == 200, _text(r.text)[:800]
    text = _text(r.text)
    assert "Therapeutic drug monitoring report: tacrolimus" in text
    assert re.search(r"Consider: tacrolimus \d+(\.\d+)? mg every 12 h", text) and "<svg" in r.text
    bad = dev_client.post("/dosing/report", data=_form(dose_mg="500"), files=NO_FILE)
    assert bad.status_code == 422 and "tacrolimus dose far above" in _text(_section(bad.text, "dosing-error"))
    assert 'formaction="/dosing/report"' in dev_client.get("/dosing").text


DRUG_FORM = {"model": "drug:tacrolimus", "cov_WT": "20", "cov_HCT": "0.35", "cov_POSACONAZOLE": "0",
             "cov_OMEPRAZOLE": "0", "cov_LORATADINE": "0", "cov_DILTIAZEM": "0", "age_years": "6", "dose_mg": "2",
             "interval_h": "12", "level_value": ["5"], "level_unit": ["ng/mL"], "level_hours": [""],
             "metric": "trough", "target_low": "", "target_high": "", "form": "capsule (immediate release)"}


def test_choosing_a_drug_offers_the_union_of_its_oral_models_covariates_and_age(dev_client: TestClient) -> None:
    page = dev_client.get("/dosing", params={"drug": "tacrolimus"})
    assert page.status_code == 200
    text = _text(page.text)
    for name in ("cov_WT", "cov_POSACONAZOLE", "cov_DONOR_DECEASED", "cov_OMEPRAZOLE", "age_years"):
        assert f'name="{name}"' in page.text
    assert "used by Andrews 2018 (cohort 11.6-83.7, required); Chen 2022 (cohort 3.7-20.6, required)" in text
    cyclo = _text(_section(dev_client.get("/dosing", params={"model": "drug:cyclosporine"}).text, "model-title"))
    assert "Philippe 2015" in cyclo and "Feng 2023" not in cyclo  # the intravenous model is not compared


def test_by_drug_the_models_are_compared_and_the_choice_is_shown(dev_client: TestClient) -> None:
    r = dev_client.post("/dosing", data=DRUG_FORM, files=NO_FILE)
    assert r.status_code == 200, _text(r.text)[:800]
    result = _text(_section(r.text, "result"))
    assert re.search(r"Consider: tacrolimus [\d.]+ mg every 12 h", result)
    comparison = _text(_section(r.text, "model-comparison"))
    assert "Model choice: model averaging" in comparison and "(chosen)" in comparison
    assert re.search(r"\(Chen 2022\) yes \d+ %", comparison)
    assert "no: needs DONOR_DECEASED" in comparison  # a model without its covariates is not used, and says why
    assert "andrews2018-tacrolimus" not in result and "wang2019-tacrolimus" not in result
    report = dev_client.post("/dosing/report", data=DRUG_FORM, files=NO_FILE)
    assert report.status_code == 200 and "Therapeutic drug monitoring report: tacrolimus" in _text(report.text)


@pytest.mark.parametrize(("over", "expected"), [
    ({"level_value": ["5", "6"], "level_unit": ["ng/mL", "ng/mL"], "level_hours": ["", ""]},
     "comparing the models takes one typed level"),
    ({"cov_WT": "", "cov_HCT": ""}, "no tacrolimus model can be used for this patient"),
])
def test_by_drug_problems_are_shown_with_422(dev_client: TestClient, over: dict[str, Any], expected: str) -> None:
    r = dev_client.post("/dosing", data={**DRUG_FORM, **over}, files=NO_FILE)
    assert r.status_code == 422
    assert expected in _text(_section(r.text, "dosing-error"))


def test_by_drug_a_csv_upload_is_refused_a_fhir_bundle_read(dev_client: TestClient) -> None:
    from tests.dosing.test_fhir_input import BUNDLE

    form = {**DRUG_FORM, "dose_mg": "", "interval_h": "", "level_value": [""], "cov_EGFR": "85",
            "cov_DONOR_DECEASED": "1"}
    csv = dev_client.post("/dosing", data=form, files={"file": ("levels.csv", CSV.encode(), "text/csv")})
    assert csv.status_code == 422 and "expected a FHIR Bundle when the model is chosen" in _text(csv.text)
    fhir = dev_client.post("/dosing", data=form,
                           files={"file": ("bundle.json", json.dumps(BUNDLE).encode(), "application/json")})
    assert fhir.status_code == 200, _text(fhir.text)[:800]
    assert "Model choice: model averaging" in _text(fhir.text)


# the upload API behind the page -------------------------------------------------------------------------

def test_upload_api_returns_the_recommendation_with_checks_and_units(dev_client: TestClient) -> None:
    r = dev_client.post("/api/v1/dosing/recommend-upload", data={"model": TAC},
                        files={"file": ("levels.csv", b"\xef\xbb\xbf" + CSV.encode(), "text/csv")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unit"] == body["target_unit"] == "ng/mL" and body["interval_h"] == 12
    assert body["diagnostics"]["levels"][0]["value"] == 5 and body["input_checks"] == []
    assert body["probability_in_target"] >= 0 and body["citation"].startswith("Andrews")


def test_upload_api_refuses_bad_files_and_inputs_with_the_message(dev_client: TestClient) -> None:
    url = "/api/v1/dosing/recommend-upload"
    utf16 = dev_client.post(url, data={"model": TAC}, files={"file": ("x.csv", CSV.encode("utf-16"), "text/csv")})
    assert utf16.status_code == 422 and "x.csv, line 1: expected UTF-8 text" in utf16.json()["message"]
    big = dev_client.post(url, data={"model": TAC}, files={"file": ("big.csv", b"1" * (5 * 2**20 + 1), "text/csv")})
    assert big.status_code == 413
    dose = dev_client.post(url, data={"model": TAC},
                           files={"file": ("x.csv", CSV.replace("1,0,1,2,", "1,0,1,500,").encode(), "text/csv")})
    assert dose.status_code == 422 and dose.json()["error"] == "input_check_failed"
    assert any(i["path"].endswith(".AMT") and "500 mg" in i["got"] for i in dose.json()["issues"])
    teaching = dev_client.post(url, data={"model": "nonmem-001"}, files={"file": ("x.csv", CSV.encode(), "text/csv")})
    assert teaching.status_code == 422 and "teaching" in teaching.json()["message"]
    covs = dev_client.post(url, data={"model": TAC, "covariates": "[1]"},
                           files={"file": ("x.csv", CSV.encode(), "text/csv")})
    assert covs.status_code == 422 and "JSON object of numbers" in covs.json()["message"]


def test_upload_api_by_drug_chooses_the_model_for_a_fhir_bundle_and_needs_a_model_for_a_csv(
        dev_client: TestClient) -> None:
    from tests.dosing.test_fhir_input import BUNDLE

    url = "/api/v1/dosing/recommend-upload"
    covs = {"WT": 20.5, "HCT": 0.33, "EGFR": 85, "DONOR_DECEASED": 1, "POSACONAZOLE": 0, "OMEPRAZOLE": 0,
            "LORATADINE": 0, "DILTIAZEM": 0}
    r = dev_client.post(url, data={"drug": "tacrolimus", "age_years": "6", "covariates": json.dumps(covs)},
                        files={"file": ("bundle.json", json.dumps(BUNDLE).encode(), "application/json")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_choice"]["chosen_model_id"] == body["model_id"] and body["unit"] == "ng/mL"
    csv = dev_client.post(url, data={"drug": "tacrolimus"}, files={"file": ("x.csv", CSV.encode(), "text/csv")})
    assert csv.status_code == 422 and "expected 'model' with a CSV" in csv.json()["message"]
    neither = dev_client.post(url, data={}, files={"file": ("x.csv", CSV.encode(), "text/csv")})
    assert neither.status_code == 422 and "exactly one of 'model' or 'drug'" in neither.json()["message"]


def test_sources_are_cited_by_number_into_a_numbered_list_on_the_page(dev_client: TestClient) -> None:
    from ipexrx.reference.citations import numbers_in

    r = dev_client.post("/dosing", data=_form(), files=NO_FILE)
    assert r.status_code == 200
    head, _, tail = r.text.partition('id="sources"')
    cited = numbers_in(_text(head))
    listed = [int(n) for n in re.findall(r'<li id="dsrc-(\d+)"', tail)]
    assert cited and listed == list(range(1, len(listed) + 1))
    assert set(cited) == set(listed)  # every number has an entry, every entry is cited
    assert cited[0] == 1  # numbered in order of first use
    assert "doi:10.1007/s40262-017-0567-8" in tail  # the population model, in the list
    assert "source:" not in _text(_section(r.text, "result"))  # no free-text sources inline any more
