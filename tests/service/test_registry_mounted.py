"""The service serves the registry: its JSON API and web forms answer from `ipexrx serve`'s app,
on the service's own database, with the registry's own authentication (dev mode, which only
switches off CDS Hooks JWT checks, does not open the registry)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ipexrx.registry.core import SYSTEM

PASSWORD = "correct horse battery staple"


def test_registry_pages_and_api_need_credentials(dev_client: TestClient) -> None:
    assert dev_client.get("/api/v1/registry/patients").status_code == 401
    login = dev_client.get("/registry/login")
    assert login.status_code == 200 and "password" in login.text.lower()
    assert dev_client.get("/registry", follow_redirects=False).status_code == 303


def test_admin_logs_in_over_the_service_and_creates_a_centre(dev_client: TestClient) -> None:
    reg = dev_client.app.state.registry  # type: ignore[attr-defined]
    assert reg.url == dev_client.app.state.db.url  # type: ignore[attr-defined]
    reg.create_user(SYSTEM, {"username": "admin.user", "password": PASSWORD, "role": "admin"})
    tok = dev_client.post("/api/v1/registry/auth/token", json={"username": "admin.user", "password": PASSWORD})
    assert tok.status_code == 200, tok.text
    auth = {"Authorization": f"Bearer {tok.json()['token']}"}
    made = dev_client.post("/api/v1/registry/centres", json={"code": "RMH01", "name": "Test centre"}, headers=auth)
    assert made.status_code == 201, made.text
    assert any(c["code"] == "RMH01" for c in dev_client.get("/api/v1/registry/centres", headers=auth).json())
    wrong = dev_client.post("/api/v1/registry/auth/token", json={"username": "admin.user", "password": "nope nope"})
    assert wrong.status_code == 401
