"""Dosing API: level and DV units are converted, and input checks answer 422 with one issue per problem."""

from __future__ import annotations

from fastapi.testclient import TestClient

TAC = "andrews2018-tacrolimus"
COVS = {"WT": 20.0, "DONOR_DECEASED": 1.0, "EGFR": 80.0, "HCT": 0.35}


def test_api_input_check_failure_is_a_422_with_one_issue_per_problem(dev_client: TestClient) -> None:
    bad = dev_client.post("/api/v1/dosing/recommend", json={
        "drug": "tacrolimus", "level": 8, "level_unit": "ng/mL", "dose_mg": 500, "interval_h": 12,
        "covariates": COVS})
    assert bad.status_code == 422 and bad.json()["error"] == "input_check_failed"
    assert any(i["path"].endswith(".AMT") and "500 mg" in i["got"] for i in bad.json()["issues"])
    ok = dev_client.post("/api/v1/dosing/recommend", json={
        "drug": "tacrolimus", "level": 10, "level_unit": "nmol/L", "dose_mg": 2, "interval_h": 12,
        "covariates": COVS})
    assert ok.status_code == 200 and ok.json()["target_unit"] == "ng/mL"
    unknown = dev_client.post("/api/v1/dosing/recommend", json={"drug": "tacrolimus", "covariates": {"WEIGHT": 3}})
    assert unknown.status_code == 422 and "WEIGHT" in unknown.json()["message"]


def test_api_fit_dv_unit_and_checks(dev_client: TestClient) -> None:
    csv = ("ID,TIME,EVID,AMT,CMT,II,ADDL,DV,WT,DONOR_DECEASED,EGFR,HCT\n"
           "1,0,1,2,1,12,5,.,20,1,80,0.35\n1,59.5,0,.,2,.,.,10,20,1,80,0.35\n")
    ok = dev_client.post("/api/v1/dosing/fit", json={"model": TAC, "data_csv": csv, "dv_unit": "nmol/L"})
    assert ok.status_code == 200, ok.text
    (res,) = ok.json()["results"]
    assert res["unit"] == "ng/mL" and res["input_checks"] == []
    dup = csv + "1,59.5,0,.,2,.,.,10,20,1,80,0.35\n"
    bad = dev_client.post("/api/v1/dosing/fit", json={"model": TAC, "data_csv": dup})
    assert bad.status_code == 422 and bad.json()["error"] == "input_check_failed"
    wrong = dev_client.post("/api/v1/dosing/fit", json={"model": TAC, "data_csv": csv, "dv_unit": "mg/dL"})
    assert wrong.status_code == 422 and "mg/dL" in wrong.json()["message"]
