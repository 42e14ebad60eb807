"""`/api/v1/dosing`: fit diagnostics (IWRES, ETA z-scores, prior-data conflict) in the JSON answers."""

from __future__ import annotations

from fastapi.testclient import TestClient


def _recommend(client: TestClient, level: float) -> dict:
    resp = client.post("/api/v1/dosing/recommend", json={
        "drug": "sirolimus", "level": level, "level_unit": "ng/mL", "dose_mg": 1, "interval_h": 24,
        "covariates": {"WT": 20}})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_recommend_reports_a_level_the_model_cannot_explain(dev_client: TestClient) -> None:
    rec = _recommend(dev_client, 60)
    dg = rec["diagnostics"]
    assert dg["explained"] is False and dg["conflict"]["flagged"] and dg["etas"][0]["flagged"]
    assert any("60 ng/mL" in w and "adherence" in w for w in rec["warnings"])


def test_recommend_on_a_typical_level_is_explained(dev_client: TestClient) -> None:
    dg = _recommend(dev_client, 8)["diagnostics"]
    assert dg["explained"] is True and dg["warnings"] == []


def test_a_priori_recommendation_has_no_diagnostics(dev_client: TestClient) -> None:
    resp = dev_client.post("/api/v1/dosing/recommend", json={"drug": "sirolimus", "covariates": {"WT": 12}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["diagnostics"] is None


def test_fit_results_carry_diagnostics(dev_client: TestClient) -> None:
    csv = "ID,TIME,EVID,AMT,CMT,II,SS,DV,WT\n1,0,1,1,1,24,1,.,20\n1,24,0,.,2,0,0,60,20\n"
    resp = dev_client.post("/api/v1/dosing/fit", json={"model": "fan2024-sirolimus", "data_csv": csv})
    assert resp.status_code == 200, resp.text
    (res,) = resp.json()["results"]
    assert res["diagnostics"]["explained"] is False
