"""The dosing API keeps fictional teaching models apart (issue 13 item 5) and passes form/metric with a level."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_api_lists_clinical_models_and_refuses_teaching_ones(dev_client: TestClient) -> None:
    ids = {m["id"] for m in dev_client.get("/api/v1/dosing/models").json()["models"]}
    ref = {m["id"] for m in dev_client.get("/api/v1/dosing/models?reference=true").json()["models"]}
    assert "fan2024-sirolimus" in ids and not ids & ref and "nonmem-405" in ref
    bad = dev_client.post("/api/v1/dosing/recommend", json={"model": "nonmem-405", "covariates": {}})
    assert bad.status_code == 422 and "teaching" in bad.json()["message"]


def test_api_level_respects_form_and_metric(dev_client: TestClient) -> None:
    body = {"drug": "sirolimus", "level": 6, "level_unit": "ng/mL", "dose_mg": 1, "interval_h": 24,
            "covariates": {"WT": 12}}
    d = dev_client.post("/api/v1/dosing/recommend", json={**body, "form": "tablet", "metric": "peak",
                                                            "target_low": 10, "target_high": 20}).json()
    assert d["form"] == "tablet" and d["metric"] == "peak" and "residual error" in d["interval_includes"]
    plain = dev_client.post("/api/v1/dosing/recommend", json=body).json()
    assert plain["form"] == "oral solution" and plain["metric"] == "trough"
    bad = dev_client.post("/api/v1/dosing/recommend", json={**body, "form": "suppository"})
    assert bad.status_code == 422 and "suppository" in bad.json()["message"]
