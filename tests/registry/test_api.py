"""The registry HTTP API (``ipexrx.registry.http.ROUTES``) mounted on a minimal FastAPI app with the
same glue the service uses: every role against every endpoint, authentication, error shapes."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.testclient import TestClient

from ipexrx.service.registry_mount import mount_registry_api

from .conftest import PASSWORD, World, patient_data


@pytest.fixture
def client(world: World) -> TestClient:
    app = FastAPI()
    mount_registry_api(app, world.reg)
    return TestClient(app)


def _token(client: TestClient, username: str) -> dict[str, str]:
    r = client.post("/api/v1/registry/auth/token", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


USERS = {"clinician": "clinician.user", "data_manager": "data-manager.user", "analyst": "analyst.user",
         "admin": "admin.user"}


def endpoints(w: World) -> list[tuple[str, str, str, Any, set[str]]]:
    """(name, method, path, json body, roles allowed)."""
    both = {"clinician", "data_manager"}
    return [
        ("list centres", "GET", "/centres", None, set(USERS)),
        ("create centre", "POST", "/centres", {"code": "CTR-Z", "name": "Centre Z"}, {"admin"}),
        ("list users", "GET", "/users", None, {"admin"}),
        ("create user", "POST", "/users", {"username": "z.user", "password": PASSWORD, "role": "analyst"}, {"admin"}),
        ("change user", "PATCH", "/users/clin.b", {"active": True}, {"admin"}),
        ("list patients", "GET", "/patients", None, both),
        ("create patient", "POST", "/patients", {"patient": patient_data("CTR-A")}, both),
        ("read own patient", "GET", f"/patients/{w.pa}", None, both),
        ("read other patient", "GET", f"/patients/{w.pb}", None, set()),
        ("update own patient", "PATCH", f"/patients/{w.pa}", {"last_followup_date": "2022-01-01"}, both),
        ("update other patient", "PATCH", f"/patients/{w.pb}", {"last_followup_date": "2022-01-01"}, set()),
        ("add visit", "POST", f"/patients/{w.pa}/visits", {"date": "2020-01-01", "oi_score": 1}, both),
        ("add visit other", "POST", f"/patients/{w.pb}/visits", {"date": "2020-01-01"}, set()),
        ("add manifestation", "POST", f"/patients/{w.pa}/manifestations",
         {"hpo_code": "HP:0000964", "onset_date": "2019-10-01"}, both),
        ("add course", "POST", f"/patients/{w.pa}/courses", {"drug_id": "tacrolimus", "start_date": "2020-02-01"},
         both),
        ("add adverse event", "POST", f"/patients/{w.pa}/adverse-events",
         {"date": "2020-02-01", "term": "Hypertension", "grade": 2}, both),
        ("add hsct", "POST", f"/patients/{w.pa}/hsct",
         {"date": "2021-02-01", "donor": "matched-sibling", "conditioning": "myeloablative"}, both),
        ("export de-identified", "GET", "/export/deidentified", None, {"data_manager", "analyst"}),
        ("export fhir", "GET", "/export/fhir", None, {"data_manager"}),
        ("analytics", "GET", "/analytics", None, {"clinician", "data_manager", "analyst"}),
        ("report", "GET", "/report", None, {"clinician", "data_manager", "analyst"}),
        ("audit verify", "GET", "/audit/verify", None, {"admin"}),
    ]


@pytest.mark.parametrize("role", list(USERS))
def test_role_against_every_endpoint(world: World, client: TestClient, role: str) -> None:
    headers = _token(client, USERS[role])
    for name, method, path, body, allowed in endpoints(world):
        r = client.request(method, "/api/v1/registry" + path, json=jsonable_encoder(body), headers=headers)
        if role in allowed:
            assert r.status_code in (200, 201), (name, r.status_code, r.text)
        else:
            assert r.status_code == 403, (name, r.status_code, r.text)
            assert "may not" in r.json()["detail"]["message"]


def test_every_endpoint_needs_a_token(world: World, client: TestClient) -> None:
    for name, method, path, body, _ in endpoints(world):
        r = client.request(method, "/api/v1/registry" + path, json=jsonable_encoder(body))
        assert r.status_code == 401, name
        r = client.request(method, "/api/v1/registry" + path, json=jsonable_encoder(body),
                           headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", name


def test_wrong_password_is_401(client: TestClient) -> None:
    r = client.post("/api/v1/registry/auth/token", json={"username": "clinician.user", "password": "wrong"})
    assert r.status_code == 401


def test_invalid_input_is_422_with_every_problem(world: World, client: TestClient) -> None:
    headers = _token(client, "clinician.user")
    body = {"patient": patient_data(), "courses": [{"drug_id": "unknown-drug", "start_date": "2020-01-01"}],
            "visits": [{"date": "2020-01-01", "weight_z": 40}]}
    r = client.post("/api/v1/registry/patients", headers=headers, json=jsonable_encoder(body))
    assert r.status_code == 422
    problems = r.json()["detail"]["problems"]
    assert any("weight_z: expected -8..8 SD, got 40" in p for p in problems)


def test_malformed_bodies_are_clear_4xx(world: World, client: TestClient) -> None:
    headers = _token(client, "clinician.user")
    r = client.post("/api/v1/registry/patients", headers=headers, content=b"{not json")
    assert r.status_code == 400
    r = client.post("/api/v1/registry/patients", headers=headers, json=[1, 2])
    assert r.status_code == 422 and "expected a JSON object, got list" in r.json()["detail"]["problems"][0]
    r = client.post(f"/api/v1/registry/patients/{world.pa}/courses/x/stop", headers=headers,
                    json={"stop_date": "2020-01-01", "reason_stopped": "toxicity"})
    assert r.status_code == 404


def test_unknown_patient_is_404_and_does_not_reveal_other_centres(world: World, client: TestClient) -> None:
    headers = _token(client, "clinician.user")
    assert client.get("/api/v1/registry/patients/CTR-A-NOPE", headers=headers).status_code == 404
