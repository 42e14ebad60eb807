"""``ipexrx serve`` takes the CDS Hooks audience from configuration, never from the Host header: it
refuses to listen on a non-loopback address without IPEXRX_BASE_URL (unless --dev), and on loopback
it uses the bound address, with a notice. The README's first command still starts."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ipexrx.cli import get_app
from ipexrx.cli.serve import public_base_url
from ipexrx.service import Settings, create_app

from .conftest import ISSUER


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, db_url: str) -> dict[str, Any]:
    """Replaces only the final uvicorn.run: records what the server would have been started with."""
    import uvicorn

    seen: dict[str, Any] = {}

    def run(*args: Any, **kwargs: Any) -> None:
        import os

        seen.update(kwargs, base_url=os.environ.get("IPEXRX_BASE_URL"))

    monkeypatch.setattr(uvicorn, "run", run)
    for var in ("IPEXRX_BASE_URL", "IPEXRX_DEV_MODE", "IPEXRX_DB_MIGRATE"):  # serve sets these: restored after
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setenv("IPEXRX_DATABASE_URL", db_url)
    return seen


def test_a_public_address_without_a_base_url_refuses_to_start(started: dict[str, Any]) -> None:
    r = CliRunner().invoke(get_app(), ["serve", "--host", "0.0.0.0", "--port", str(_free_port())])
    assert r.exit_code == 2
    assert "needs IPEXRX_BASE_URL" in r.output and "--dev" in r.output
    assert started == {}  # nothing was started


def test_a_public_address_starts_with_a_base_url_or_in_development_mode(started: dict[str, Any],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    r = CliRunner().invoke(get_app(), ["serve", "--host", "0.0.0.0", "--port", str(_free_port()), "--dev"])
    assert r.exit_code == 0, r.output
    monkeypatch.setenv("IPEXRX_BASE_URL", "https://cds.example.org/")
    monkeypatch.delenv("IPEXRX_DEV_MODE")
    r = CliRunner().invoke(get_app(), ["serve", "--host", "0.0.0.0", "--port", str(_free_port())])
    assert r.exit_code == 0, r.output
    assert started["base_url"] == "https://cds.example.org/"


def test_the_readme_command_on_loopback_starts_and_says_which_audience_it_expects(started: dict[str, Any]) -> None:
    port = _free_port()
    r = CliRunner().invoke(get_app(), ["serve", "--port", str(port)])
    assert r.exit_code == 0, r.output
    assert started["base_url"] == f"http://127.0.0.1:{port}"
    assert f"http://127.0.0.1:{port}/cds-services" in r.output and "IPEXRX_BASE_URL" in r.output


def test_public_base_url_rules() -> None:
    assert public_base_url("0.0.0.0", 80, "https://x.example.org/", False) == ("https://x.example.org", None)
    assert public_base_url("0.0.0.0", 80, None, True) == (None, None)
    assert public_base_url("::1", 8000, None, False)[0] == "http://[::1]:8000"
    assert public_base_url("localhost", 8000, None, False)[0] == "http://localhost:8000"
    with pytest.raises(ValueError, match="IPEXRX_BASE_URL"):
        public_base_url("10.1.2.3", 8000, None, False)


def test_the_audience_is_the_configured_url_whatever_host_header_the_client_sends(
        jwks: dict[str, Any], db_url: str, make_token: Any) -> None:
    settings = Settings.from_env({"IPEXRX_CDS_ISSUERS": json.dumps({ISSUER: {"jwks": jwks}}),
                                  "IPEXRX_DATABASE_URL": db_url, "IPEXRX_DB_MIGRATE": "0",
                                  "IPEXRX_BASE_URL": "http://127.0.0.1:8000"})
    with TestClient(create_app(settings), base_url="http://attacker.example.org") as c:
        forged = make_token("http://attacker.example.org/cds-services")  # what the Host header would suggest
        assert c.get("/cds-services", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        right = make_token("http://127.0.0.1:8000/cds-services")
        assert c.get("/cds-services", headers={"Authorization": f"Bearer {right}"}).status_code == 200
