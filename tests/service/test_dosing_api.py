"""`/api/v1/dosing`: the model library, MAP fits and dose suggestions over HTTP, with the same
numbers as the library and clean 4xx errors for bad input."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

DATA = Path(__file__).parents[1] / "dosing" / "data" / "data_to_fit001.csv"
# NONMEM POSTHOC ETAs of subject 1 (run001.phi, shared/reference/tdm-validation/mapbayr-examples)
NONMEM_ETA_ID1 = (0.405058386, 0.0728505976, -0.0749540941)


def test_model_library_lists_paediatric_models_with_citations(dev_client: TestClient) -> None:
    models = {m["id"]: m for m in dev_client.get("/api/v1/dosing/models").json()["models"]}
    for mid, doi in [("fan2024-sirolimus", "10.3389/fphar.2024.1457614"),
                     ("gao2022-cyclosporine", "10.3389/fphar.2022.933739"),
                     ("andrews2018-tacrolimus", "10.1007/s40262-017-0567-8")]:
        assert models[mid]["citation"]["doi"] == doi
        assert models[mid]["covariates"], mid


def test_fit_reproduces_nonmem_posthoc_for_subject_1(dev_client: TestClient) -> None:
    resp = dev_client.post("/api/v1/dosing/fit", json={
        "model": "mapbayr-001", "data_csv": DATA.read_text(), "subject_id": "1"})
    assert resp.status_code == 200, resp.text
    (res,) = resp.json()["results"]
    assert res["converged"]
    for ours, ref in zip(res["eta"].values(), NONMEM_ETA_ID1, strict=True):
        assert abs(ours - ref) < 1e-4


def test_recommend_from_a_trough_carries_citation_and_ipex_caveat(dev_client: TestClient) -> None:
    resp = dev_client.post("/api/v1/dosing/recommend", json={
        "drug": "sirolimus", "level": 17.5, "level_unit": "ng/mL", "dose_mg": 1.5, "interval_h": 24,
        "covariates": {"WT": 21.5}})
    assert resp.status_code == 200, resp.text
    rec = resp.json()
    assert rec["model_id"] == "fan2024-sirolimus" and rec["doi"] == "10.3389/fphar.2024.1457614"
    assert rec["dose_mg"] < 1.5, "a level above range must lead to a lower dose"
    assert rec["target_low"] <= rec["predicted"] <= rec["target_high"]
    assert any("IPEX" in c and "not established" in c for c in rec["caveats"])


def test_a_priori_recommendation_without_levels(dev_client: TestClient) -> None:
    resp = dev_client.post("/api/v1/dosing/recommend", json={"drug": "sirolimus", "covariates": {"WT": 12}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["basis"].startswith("a priori")


def test_bad_dosing_input_is_a_located_4xx(dev_client: TestClient) -> None:
    wrong_unit = dev_client.post("/api/v1/dosing/recommend", json={
        "drug": "sirolimus", "level": 17.5, "level_unit": "mg/L", "dose_mg": 1.5, "interval_h": 24,
        "covariates": {"WT": 21.5}})
    assert wrong_unit.status_code == 422 and "unit" in wrong_unit.json()["message"]
    negative = dev_client.post("/api/v1/dosing/recommend", json={
        "drug": "sirolimus", "level": 5, "level_unit": "ng/mL", "dose_mg": -1, "interval_h": 24})
    assert negative.status_code == 422
    assert any("dose_mg" in i["path"] for i in negative.json()["issues"])
    both = dev_client.post("/api/v1/dosing/recommend", json={"drug": "sirolimus", "model": "fan2024-sirolimus"})
    assert both.status_code == 422
    unknown = dev_client.post("/api/v1/dosing/fit", json={"model": "no-such-model", "data_csv": "ID,TIME\n"})
    assert unknown.status_code == 422 and "no-such-model" in unknown.json()["message"]
    path = dev_client.post("/api/v1/dosing/fit", json={"model": "/etc/passwd", "data_csv": "ID,TIME\n"})
    assert path.status_code == 422
    absurd_weight = dev_client.post("/api/v1/dosing/recommend", json={"drug": "sirolimus", "covariates": {"WT": 400}})
    assert absurd_weight.status_code == 422 and "WT" in absurd_weight.json()["message"]


def test_recommend_by_drug_returns_the_model_choice_and_refuses_a_covariate_no_model_knows(
        dev_client: TestClient) -> None:
    resp = dev_client.post("/api/v1/dosing/recommend", json={
        "drug": "sirolimus", "level": 8, "level_unit": "ng/mL", "dose_mg": 1, "interval_h": 24,
        "covariates": {"WT": 20}, "age_years": 5})
    assert resp.status_code == 200, resp.text
    mc = resp.json()["model_choice"]
    assert mc["method"] == "model averaging" and mc["chosen_model_id"] == resp.json()["model_id"]
    assert abs(sum(c["weight"] for c in mc["candidates"] if c["usable"]) - 1) < 1e-9
    bad = dev_client.post("/api/v1/dosing/recommend", json={"drug": "sirolimus", "covariates": {"WT": 20, "XYZ": 1}})
    assert bad.status_code == 422 and "XYZ" in bad.text


def test_recommend_by_drug_sets_co_medication_indicators_from_a_stated_list(dev_client: TestClient) -> None:
    body = {"drug": "tacrolimus", "covariates": {"WT": 10}, "age_years": 2}
    unknown = dev_client.post("/api/v1/dosing/recommend", json=body)
    assert unknown.status_code == 422 and "POSACONAZOLE" in unknown.text
    stated = dev_client.post("/api/v1/dosing/recommend", json={**body, "co_medications": ["Posaconazole"]})
    assert stated.status_code == 200, stated.text
    chen = next(c for c in stated.json()["model_choice"]["candidates"] if c["model_id"] == "chen2022-tacrolimus")
    assert any("posaconazole: yes" in m for m in chen["matches"])
