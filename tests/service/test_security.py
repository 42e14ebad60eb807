"""JWT verification on CDS Hooks calls: every rejection is a bare 401, valid tokens pass once."""

from __future__ import annotations

import logging
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from ipexrx.service import Settings, create_app
from ipexrx.service.app import DEV_MODE_HTML, DevModeMarker

BASE = "http://testserver"
DISCOVERY = BASE + "/cds-services"
ISSUER = "https://ehr.example.org"


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_bare_401(resp: Any) -> None:
    assert resp.status_code == 401
    assert resp.json() == {"error": "unauthorized"}
    assert resp.headers["www-authenticate"] == "Bearer"


def test_valid_es384_and_rs384_tokens_are_accepted(client: TestClient, make_token: Any) -> None:
    assert client.get("/cds-services", headers=_h(make_token(DISCOVERY))).status_code == 200
    assert client.get("/cds-services", headers=_h(make_token(DISCOVERY, alg="RS384", kid="rsa-1"))).status_code == 200


def test_aud_may_be_an_array_containing_the_called_url(client: TestClient, make_token: Any) -> None:
    token = make_token([DISCOVERY, "https://other.example.org/cds-services"])
    assert client.get("/cds-services", headers=_h(token)).status_code == 200


def test_missing_token_is_refused(client: TestClient) -> None:
    _assert_bare_401(client.get("/cds-services"))
    _assert_bare_401(client.get("/cds-services", headers={"Authorization": "Basic abc"}))
    _assert_bare_401(client.get("/cds-services", headers={"Authorization": "Bearer not-a-jwt"}))


def test_alg_none_is_refused(client: TestClient) -> None:
    now = int(time.time())
    token = jwt.encode({"iss": ISSUER, "aud": DISCOVERY, "exp": now + 300, "iat": now, "jti": "n1"}, None,
                       algorithm="none", headers={"kid": "ec-1"})
    _assert_bare_401(client.get("/cds-services", headers=_h(token)))


def test_hmac_token_is_refused_even_with_the_public_key_as_secret(client: TestClient, jwks: dict[str, Any]) -> None:
    # The classic confusion attack: sign HS256 with the (public) JWK as the shared secret.
    now = int(time.time())
    secret = str(jwks["keys"][0]).encode()
    token = jwt.encode({"iss": ISSUER, "aud": DISCOVERY, "exp": now + 300, "iat": now, "jti": "h1"}, secret,
                       algorithm="HS256", headers={"kid": "ec-1"})
    _assert_bare_401(client.get("/cds-services", headers=_h(token)))


def test_wrong_audience_is_refused(client: TestClient, make_token: Any) -> None:
    _assert_bare_401(client.get("/cds-services", headers=_h(make_token("https://elsewhere.example.org/cds-services"))))
    # a token for discovery cannot be used on the feedback endpoint
    body = {"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-25T10:00:00Z"}]}
    resp = client.post("/cds-services/ipexrx-order-sign/feedback", json=body, headers=_h(make_token(DISCOVERY)))
    _assert_bare_401(resp)


def test_expired_token_is_refused(client: TestClient, make_token: Any) -> None:
    now = int(time.time())
    _assert_bare_401(client.get("/cds-services", headers=_h(make_token(DISCOVERY, iat=now - 900, exp=now - 600))))


def test_token_issued_in_the_future_is_refused(client: TestClient, make_token: Any) -> None:
    now = int(time.time())
    _assert_bare_401(client.get("/cds-services", headers=_h(make_token(DISCOVERY, iat=now + 3600, exp=now + 3900))))


def test_token_living_longer_than_an_hour_is_refused(client: TestClient, make_token: Any) -> None:
    now = int(time.time())
    _assert_bare_401(client.get("/cds-services", headers=_h(make_token(DISCOVERY, exp=now + 7200))))


@pytest.mark.parametrize("claim", ["iss", "aud", "exp", "iat", "jti"])
def test_token_missing_a_required_claim_is_refused(client: TestClient, make_token: Any, claim: str) -> None:
    token = make_token(None) if claim == "aud" else make_token(DISCOVERY, **{claim: None})
    _assert_bare_401(client.get("/cds-services", headers=_h(token)))


def test_replayed_jti_is_refused(client: TestClient, make_token: Any) -> None:
    token = make_token(DISCOVERY)
    assert client.get("/cds-services", headers=_h(token)).status_code == 200
    _assert_bare_401(client.get("/cds-services", headers=_h(token)))


@pytest.mark.parametrize("store", ["file", "database"])
def test_replay_is_refused_across_app_instances(settings: Settings, make_token: Any, store: str) -> None:
    # Two uvicorn workers are two app instances; the jti store (files or database) is shared.
    settings = settings.model_copy(update={"replay_store": store})
    token = make_token(DISCOVERY)
    with TestClient(create_app(settings), base_url=BASE) as a, TestClient(create_app(settings), base_url=BASE) as b:
        assert a.get("/cds-services", headers=_h(token)).status_code == 200
        _assert_bare_401(b.get("/cds-services", headers=_h(token)))


def test_unknown_issuer_is_refused(client: TestClient, make_token: Any) -> None:
    _assert_bare_401(client.get("/cds-services", headers=_h(make_token(DISCOVERY, iss="https://rogue.example.org"))))


def test_bad_signature_is_refused(client: TestClient, make_token: Any) -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    _assert_bare_401(client.get("/cds-services", headers=_h(make_token(DISCOVERY, key=other))))
    # tampered payload, original signature
    head, _payload, sig = make_token(DISCOVERY).split(".")
    forged = jwt.encode({"iss": ISSUER, "aud": DISCOVERY, "exp": int(time.time()) + 300, "iat": int(time.time()),
                         "jti": "forged"}, other, algorithm="ES384").split(".")[1]
    _assert_bare_401(client.get("/cds-services", headers=_h(f"{head}.{forged}.{sig}")))


def test_unknown_kid_and_foreign_jku_are_refused(client: TestClient, make_token: Any) -> None:
    _assert_bare_401(client.get("/cds-services", headers=_h(make_token(DISCOVERY, kid="nope"))))
    jku = {"jku": "https://attacker.example.org/jwks.json"}
    _assert_bare_401(client.get("/cds-services", headers=_h(make_token(DISCOVERY, headers=jku))))


def test_key_of_the_wrong_type_for_the_alg_is_refused(client: TestClient, make_token: Any) -> None:
    # RS384 header pointing at the EC key: must not verify
    _assert_bare_401(client.get("/cds-services", headers=_h(make_token(DISCOVERY, alg="RS384", kid="ec-1"))))


def test_tenant_allow_list(jwks: dict[str, Any], db_url: str, make_token: Any) -> None:
    s = Settings(issuers={ISSUER: {"jwks": jwks}}, tenants=["hospital-a"], database_url=db_url, auto_migrate=False)
    with TestClient(create_app(s), base_url=BASE) as c:
        assert c.get("/cds-services", headers=_h(make_token(DISCOVERY, tenant="hospital-a"))).status_code == 200
        _assert_bare_401(c.get("/cds-services", headers=_h(make_token(DISCOVERY))))  # missing tenant
        _assert_bare_401(c.get("/cds-services", headers=_h(make_token(DISCOVERY, tenant="hospital-b"))))


def test_configured_base_url_is_the_expected_audience(jwks: dict[str, Any], db_url: str, make_token: Any) -> None:
    s = Settings(issuers={ISSUER: {"jwks": jwks}}, base_url="https://cds.example.org/", database_url=db_url,
                 auto_migrate=False)
    with TestClient(create_app(s), base_url=BASE) as c:
        assert c.get("/cds-services", headers=_h(make_token("https://cds.example.org/cds-services"))).status_code == 200
        _assert_bare_401(c.get("/cds-services", headers=_h(make_token(DISCOVERY))))


def test_tokens_are_never_logged(client: TestClient, make_token: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    good, bad = make_token(DISCOVERY), make_token(DISCOVERY, iss="https://rogue.example.org")
    client.get("/cds-services", headers=_h(good))
    client.get("/cds-services", headers=_h(bad))
    client.get("/cds-services", headers=_h(good))  # replay
    text = caplog.text
    assert "refused" in text  # the reason is logged...
    for token in (good, bad):
        for part in token.split("."):
            assert part not in text  # ...but no part of any token


def test_hmac_issuer_configuration_is_rejected_at_start_up(jwks: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        Settings(issuers={ISSUER: {"jwks": jwks, "algorithms": ["HS256"]}})
    with pytest.raises(ValueError, match="symmetric"):
        create_app(Settings(issuers={ISSUER: {"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}}},
                            auto_migrate=False))


def test_dev_mode_lets_calls_through_and_says_so_loudly(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with TestClient(create_app(Settings(dev_mode=True, database_url=db_url, auto_migrate=False)), base_url=BASE) as c:
        resp = c.get("/cds-services")
    assert resp.status_code == 200
    assert resp.headers["x-ipexrx-dev-mode"] == "jwt-verification-disabled"
    assert "JWT verification is OFF" in caplog.text


@pytest.mark.parametrize("path", ["/", "/drugs/sirolimus", "/assess", "/docs", "/registry/login"])
def test_dev_mode_puts_a_banner_on_every_html_page(dev_client: TestClient, client: TestClient, path: str) -> None:
    resp = dev_client.get(path)
    assert resp.status_code == 200
    head = resp.text[:6000]
    assert 'id="ipexrx-dev-mode" role="alert"' in head and "JWT verification is OFF" in head
    assert head.index("ipexrx-dev-mode") > head.lower().index("<body")
    assert int(resp.headers["content-length"]) == len(resp.content)
    assert "ipexrx-dev-mode" not in client.get(path).text  # production pages carry no banner


def test_dev_mode_banner_leaves_head_answers_alone() -> None:
    """A HEAD answer has no body: its Content-Length must stay the page's own (no banner to add)."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    page = "<html><body><p>hello</p></body></html>"
    inner = Starlette(routes=[Route("/", lambda _r: HTMLResponse(page), methods=["GET", "HEAD"])])
    with TestClient(DevModeMarker(inner)) as c:
        head, get = c.head("/"), c.get("/")
    assert head.content == b"" and int(head.headers["content-length"]) == len(page)
    assert head.headers["x-ipexrx-dev-mode"] == "jwt-verification-disabled"
    assert get.text.startswith("<html><body>" + DEV_MODE_HTML) and get.text.endswith("<p>hello</p></body></html>")


def test_dev_mode_leaves_json_and_static_files_intact(dev_client: TestClient) -> None:
    resp = dev_client.get("/api/v1/drugs/sirolimus")
    assert resp.status_code == 200 and resp.json()["id"] == "sirolimus"
    assert resp.headers["x-ipexrx-dev-mode"] == "jwt-verification-disabled"
    assert "ipexrx-dev-mode" not in dev_client.get("/static/site.css").text


def test_settings_from_env_reads_issuers_tenants_and_dev_mode(tmp_path: Any, jwks: dict[str, Any]) -> None:
    import json

    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    env = {"IPEXRX_CDS_ISSUERS": json.dumps({ISSUER: {"jwks_file": str(path)}}), "IPEXRX_CDS_TENANTS": "a, b",
           "IPEXRX_DEV_MODE": "0", "IPEXRX_BASE_URL": "https://cds.example.org/"}
    s = Settings.from_env(env)
    assert s.tenants == ["a", "b"] and not s.dev_mode and s.base_url == "https://cds.example.org"
    assert s.issuers[ISSUER].jwks_file == path


def test_jwks_url_is_fetched_on_first_use_and_is_the_only_jku_accepted(db_url: str, jwks: dict[str, Any],
                                                                       make_token: Any) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class Jwks(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            raw = json.dumps(jwks).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    try:
        s = Settings(issuers={ISSUER: {"jwks_url": url}}, database_url=db_url, auto_migrate=False)
        app = create_app(s)  # no network at start-up
        assert hits == []
        with TestClient(app, base_url=BASE) as c:
            assert c.get("/cds-services", headers=_h(make_token(DISCOVERY, headers={"jku": url}))).status_code == 200
            assert c.get("/cds-services", headers=_h(make_token(DISCOVERY))).status_code == 200
            assert len(hits) == 1  # cached
            _assert_bare_401(c.get("/cds-services", headers=_h(make_token(DISCOVERY, headers={"jku": url + "x"}))))
    finally:
        server.shutdown()
        server.server_close()


def test_an_oversized_jwks_answer_is_refused_and_no_token_is_accepted(db_url: str, make_token: Any) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from ipexrx.service.security import JWKS_MAX_BYTES

    sent: list[int] = []

    class Huge(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            chunk = b" " * 65536
            try:
                for _ in range(JWKS_MAX_BYTES // len(chunk) + 40):
                    self.wfile.write(chunk)
                    sent.append(len(chunk))
            except (BrokenPipeError, ConnectionResetError):
                return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Huge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    try:
        s = Settings(issuers={ISSUER: {"jwks_url": url}}, database_url=db_url, auto_migrate=False)
        with TestClient(create_app(s), base_url=BASE) as c:
            _assert_bare_401(c.get("/cds-services", headers=_h(make_token(DISCOVERY))))
    finally:
        server.shutdown()
        server.server_close()
