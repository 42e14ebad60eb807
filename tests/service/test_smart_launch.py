"""SMART App Launch 2.0 (public client, PKCE S256) against a test EHR served on loopback.

The test EHR is a real HTTP server (uvicorn in a thread) with a SMART authorization server (its
``.well-known/smart-configuration``, an authorize endpoint that redirects back with a code, a token
endpoint that verifies PKCE: SHA-256 of the verifier must equal the challenge) and a FHIR server
holding the example patient, which answers only with the access token it issued. The app reaches it
through the same allow-listed, byte-capped outbound client the CDS service uses."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.testclient import TestClient
from tests.test_plain_words import visible_text

from ipexrx.assess import assess
from ipexrx.service import Settings, create_app
from ipexrx.service.smart import COOKIE, READ_SCOPES

CLIENT_ID = "ipexrx-test-client"
BASE = "http://testserver"
REDIRECT = f"{BASE}/smart/callback"
EXAMPLE = Path(__file__).parents[2] / "src/ipexrx/service/static/example-bundle.json"
PATIENT_ID = "ipex-boy-1"


class EhrOnLoopback:
    """Authorization server + FHIR server (one FastAPI app on a loopback port); records every
    request's path and Authorization header, and the PKCE pair of each code."""

    def __init__(self) -> None:
        self.bundle = json.loads(EXAMPLE.read_text(encoding="utf-8"))
        self.codes: dict[str, dict[str, Any]] = {}
        self.tokens: set[str] = set()
        self.issued: list[str] = []
        self.seen: list[tuple[str, str | None]] = []
        self.token_requests: list[dict[str, Any]] = []
        self.token_failure: tuple[int, dict[str, Any]] | None = None
        self.fhir_status: int | None = None  # answer every FHIR read with this status
        self.expires_in = 3600
        self.next_link: str | None = None  # a "next" link on the first page of the Condition search
        self.patient_missing = False  # the FHIR server has no Patient for the id the token names (404)
        self.app = self._build()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started and time.time() < deadline:
            time.sleep(0.01)

    app_context: str | None = None

    @property
    def fhir(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next: Any) -> Any:
            self.seen.append((request.url.path, request.headers.get("authorization")))
            return await call_next(request)

        @app.get("/fhir/.well-known/smart-configuration")
        def configuration() -> dict[str, Any]:
            return {"authorization_endpoint": f"http://127.0.0.1:{self.port}/auth/authorize",
                    "token_endpoint": f"http://127.0.0.1:{self.port}/auth/token",
                    "code_challenge_methods_supported": ["S256"],
                    "capabilities": ["launch-ehr", "launch-standalone", "client-public", "context-ehr-patient",
                                     "context-standalone-patient", "permission-v2"]}

        @app.get("/auth/authorize")
        def authorize(request: Request) -> Any:
            q = dict(request.query_params)
            if q.get("deny"):
                return RedirectResponse(f"{q['redirect_uri']}?error=access_denied&state={q['state']}", 302)
            code = secrets.token_urlsafe(16)
            self.codes[code] = q
            return RedirectResponse(f"{q['redirect_uri']}?code={code}&state={q['state']}", 302)

        @app.post("/auth/token")
        async def token(request: Request) -> Any:
            form = dict(await request.form())
            self.token_requests.append({"form": form, "authorization": request.headers.get("authorization")})
            if self.token_failure is not None:
                return JSONResponse(self.token_failure[1], self.token_failure[0])
            asked = self.codes.pop(str(form.get("code")), None)
            if asked is None or form.get("grant_type") != "authorization_code":
                return JSONResponse({"error": "invalid_grant"}, 400)
            digest = hashlib.sha256(str(form.get("code_verifier", "")).encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            if (asked["code_challenge_method"] != "S256" or challenge != asked["code_challenge"]
                    or form.get("client_id") != asked["client_id"]
                    or form.get("redirect_uri") != asked["redirect_uri"]):
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE verification failed"}, 400)
            access = "at-" + secrets.token_urlsafe(24)
            self.tokens.add(access)
            self.issued.append(access)
            answer = {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in,
                      "scope": asked["scope"], "patient": PATIENT_ID, "id_token": "not-read-by-the-app"}
            if self.app_context is not None:  # the CDS card's appContext, handed on by the EHR at launch
                answer["appContext"] = self.app_context
            return answer

        def allowed(request: Request) -> bool:
            scheme, _, tok = (request.headers.get("authorization") or "").partition(" ")
            return scheme.lower() == "bearer" and tok in self.tokens

        def of_type(rtype: str, request: Request) -> list[dict[str, Any]]:
            out = []
            for e in self.bundle["entry"]:
                r = e["resource"]
                if r["resourceType"] != rtype or r.get("subject", {}).get("reference") != f"Patient/{PATIENT_ID}":
                    continue
                cat = request.query_params.get("category")
                codes = {c.get("code") for cc in r.get("category", []) for c in cc.get("coding", [])}
                if cat and cat not in codes:
                    continue
                out.append({"fullUrl": f"{self.fhir}/{rtype}/{r['id']}", "resource": r, "search": {"mode": "match"}})
            return out

        @app.get("/fhir/Patient/{pid}")
        def patient(pid: str, request: Request) -> Any:
            if self.fhir_status is not None:
                return JSONResponse({"resourceType": "OperationOutcome"}, self.fhir_status)
            if not allowed(request):
                return JSONResponse({"resourceType": "OperationOutcome"}, 401)
            found = pid == PATIENT_ID and not self.patient_missing
            return self.bundle["entry"][0]["resource"] if found else JSONResponse({}, 404)

        @app.get("/fhir/{rtype}")
        def search(rtype: str, request: Request) -> Any:
            if self.fhir_status is not None:
                return JSONResponse({"resourceType": "OperationOutcome"}, self.fhir_status)
            if not allowed(request):
                return JSONResponse({"resourceType": "OperationOutcome"}, 401)
            if request.query_params.get("patient") != PATIENT_ID:
                return JSONResponse({"resourceType": "OperationOutcome"}, 400)
            entries = of_type(rtype, request)
            if rtype == "Condition" and self.next_link is not None:
                if request.query_params.get("page") == "2":
                    return {"resourceType": "Bundle", "type": "searchset", "entry": entries[1:]}
                return {"resourceType": "Bundle", "type": "searchset", "entry": entries[:1],
                        "link": [{"relation": "next", "url": self.next_link}]}
            return {"resourceType": "Bundle", "type": "searchset", "entry": entries}

        return app


@pytest.fixture(scope="module")
def ehr() -> Iterator[EhrOnLoopback]:
    server = EhrOnLoopback()
    yield server
    server.close()


@pytest.fixture
def fresh_ehr(ehr: EhrOnLoopback) -> EhrOnLoopback:
    ehr.seen.clear()
    ehr.token_requests.clear()
    ehr.token_failure = None
    ehr.fhir_status = None
    ehr.expires_in = 3600
    ehr.next_link = None
    ehr.patient_missing = False
    return ehr


@pytest.fixture
def app_client(fresh_ehr: EhrOnLoopback, db_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, auto_migrate=False, base_url=BASE, smart_issuers=[fresh_ehr.fhir],
                        smart_client_id=CLIENT_ID, replay_dir=Path(db_url.removeprefix("sqlite:///")).parent / "seen")
    with TestClient(create_app(settings), base_url=BASE, follow_redirects=False) as c:
        yield c


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def sign_in(client: TestClient, ehr: EhrOnLoopback, launch: str | None = "launch-token-123", deny: bool = False,
            ) -> tuple[dict[str, str], httpx.Response]:
    """Launch, follow the authorization server's redirect (as a browser would), and call the callback:
    (the authorization request's parameters, the callback's answer)."""
    params = {"iss": ehr.fhir, **({"launch": launch} if launch else {})}
    resp = client.get("/smart/launch", params=params)
    assert resp.status_code == 302, resp.text
    location = resp.headers["location"]
    if deny:
        location += "&deny=1"
    back = httpx.get(location, follow_redirects=False)
    assert back.status_code == 302
    target = back.headers["location"]
    assert target.startswith(REDIRECT + "?")
    return query_of(location), client.get(target.removeprefix(BASE))


def test_ehr_launch_redirects_with_every_authorization_parameter(app_client: TestClient,
                                                                 fresh_ehr: EhrOnLoopback) -> None:
    resp = app_client.get("/smart/launch", params={"iss": fresh_ehr.fhir, "launch": "launch-token-123"})
    assert resp.status_code == 302
    location = resp.headers["location"]
    assert location.startswith(f"http://127.0.0.1:{fresh_ehr.port}/auth/authorize?")
    q = query_of(location)
    assert q["response_type"] == "code"
    assert q["client_id"] == CLIENT_ID
    assert q["redirect_uri"] == REDIRECT
    assert q["aud"] == fresh_ehr.fhir
    assert q["launch"] == "launch-token-123"
    assert q["code_challenge_method"] == "S256"
    assert len(q["code_challenge"]) == 43  # base64url of a SHA-256 digest, no padding
    assert len(q["state"]) >= 32
    scopes = q["scope"].split()
    assert scopes[0] == "launch" and "launch/patient" not in scopes
    assert {"openid", "fhirUser", *READ_SCOPES} <= set(scopes)
    assert {"patient/Patient.rs", "patient/MedicationRequest.rs", "patient/Observation.rs"} <= set(scopes)
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert "httponly" in attrs and "samesite=lax" in attrs and "path=/smart" in attrs
    assert "secure" not in attrs  # plain http here; see the https test below
    assert q["state"] not in cookie and q["code_challenge"] not in cookie
    # the smart-configuration was read, and nothing else yet
    assert [p for p, _ in fresh_ehr.seen] == ["/fhir/.well-known/smart-configuration"]


def test_a_new_challenge_and_state_for_every_launch(app_client: TestClient, fresh_ehr: EhrOnLoopback) -> None:
    one = query_of(app_client.get("/smart/launch", params={"iss": fresh_ehr.fhir}).headers["location"])
    two = query_of(app_client.get("/smart/launch", params={"iss": fresh_ehr.fhir}).headers["location"])
    assert one["state"] != two["state"] and one["code_challenge"] != two["code_challenge"]


def test_full_ehr_launch_shows_the_patients_assessment_alerts_first(app_client: TestClient,
                                                                   fresh_ehr: EhrOnLoopback) -> None:
    asked, resp = sign_in(app_client, fresh_ehr)
    assert resp.status_code == 303 and resp.headers["location"] == "/smart/patient"
    # PKCE was checked by the token endpoint: the verifier's SHA-256 is the challenge sent to authorize
    [req] = fresh_ehr.token_requests
    form = req["form"]
    digest = base64.urlsafe_b64encode(hashlib.sha256(form["code_verifier"].encode()).digest()).decode().rstrip("=")
    assert digest == asked["code_challenge"]
    assert 43 <= len(form["code_verifier"]) <= 128
    assert form["client_id"] == CLIENT_ID and form["redirect_uri"] == REDIRECT
    assert form["grant_type"] == "authorization_code" and "client_secret" not in form
    assert req["authorization"] is None  # public client: no secret, no basic auth

    page = app_client.get("/smart/patient")
    assert page.status_code == 200, page.text
    html = page.text
    expected = assess(json.loads(EXAMPLE.read_text(encoding="utf-8")))
    assert expected.alerts, "the example patient must raise alerts for this test to mean anything"
    positions = [html.index(al.summary) for al in expected.alerts]
    assert positions == sorted(positions)  # the same alerts, in the same order
    assert html.index('id="alerts"') < html.index('id="medications"')
    # alerts first, then the plan (the dosing links among it), then the evidence detail, the sources last
    order = ['id="alerts"', 'id="smart-dosing"', 'id="medications"', 'id="smart-editors"', 'id="report-sources"']
    positions = [html.index(marker) for marker in order]
    assert positions == sorted(positions), dict(zip(order, positions, strict=True))
    after = html.split('id="report-sources"', 1)[1].split("</main>", 1)[0]
    assert not re.search(r"<(h[1-6]|section|details)\b", after), after  # nothing after the sources
    assert '<h1 id="smart-patient-name">Leo Example</h1>' in html  # the heading, from the EHR's Patient
    assert "Born 2019-03-14 · sex male." in html and "report for Leo Example, as of" in html
    assert 'href="/dosing?drug=tacrolimus"' in html  # tacrolimus has a clinical dosing model
    # the record was read with the token, from the listed FHIR base only
    fhir_reads = [(p, a) for p, a in fresh_ehr.seen if p.startswith("/fhir/") and "well-known" not in p]
    assert {p for p, _ in fhir_reads} >= {f"/fhir/Patient/{PATIENT_ID}", "/fhir/MedicationRequest",
                                          "/fhir/MedicationStatement", "/fhir/Observation", "/fhir/Condition",
                                          "/fhir/Procedure", "/fhir/Immunization"}
    token = fresh_ehr.issued[-1]
    assert all(a == f"Bearer {token}" for _, a in fhir_reads)
    assert all(a is None for p, a in fresh_ehr.seen if not p.startswith("/fhir/") or "well-known" in p)
    # a reload reads the record again with the same sign-in
    assert app_client.get("/smart/patient").status_code == 200


def test_standalone_launch_asks_the_ehr_to_pick_a_patient(app_client: TestClient, fresh_ehr: EhrOnLoopback) -> None:
    asked, resp = sign_in(app_client, fresh_ehr, launch=None)
    assert "launch" not in asked
    assert asked["scope"].split()[0] == "launch/patient" and "launch" not in asked["scope"].split()
    assert resp.status_code == 303
    assert app_client.get("/smart/patient").status_code == 200


def test_state_mismatch_is_refused_without_exchanging_the_code(app_client: TestClient,
                                                               fresh_ehr: EhrOnLoopback) -> None:
    resp = app_client.get("/smart/launch", params={"iss": fresh_ehr.fhir, "launch": "x"})
    back = httpx.get(resp.headers["location"], follow_redirects=False)
    code = query_of(back.headers["location"])["code"]
    bad = app_client.get("/smart/callback", params={"code": code, "state": "forged-" + secrets.token_urlsafe(8)})
    assert bad.status_code == 400
    assert "state mismatch" in bad.text and "Sign-in refused" in bad.text
    assert fresh_ehr.token_requests == []
    assert app_client.get("/smart/patient").status_code == 401


def test_callback_without_a_launch_in_this_browser_is_refused(app_client: TestClient, fresh_ehr: EhrOnLoopback) -> None:
    resp = app_client.get("/smart/callback", params={"code": "abc", "state": "def"})
    assert resp.status_code == 400 and "No sign-in in progress" in resp.text
    app_client.cookies.set(COOKIE, "made-up.signature", domain="testserver.local", path="/smart")
    assert app_client.get("/smart/callback", params={"code": "abc", "state": "def"}).status_code == 400
    assert fresh_ehr.token_requests == []


def test_a_code_is_used_once(app_client: TestClient, fresh_ehr: EhrOnLoopback) -> None:
    resp = app_client.get("/smart/launch", params={"iss": fresh_ehr.fhir, "launch": "x"})
    back = httpx.get(resp.headers["location"], follow_redirects=False).headers["location"].removeprefix(BASE)
    assert app_client.get(back).status_code == 303
    again = app_client.get(back)
    assert again.status_code == 400 and "No sign-in in progress" in again.text
    assert len(fresh_ehr.token_requests) == 1


def test_declined_consent_gets_a_clear_page(app_client: TestClient, fresh_ehr: EhrOnLoopback) -> None:
    _, resp = sign_in(app_client, fresh_ehr, deny=True)
    assert resp.status_code == 403
    assert "Consent was declined" in resp.text and "Open the app again" in resp.text
    assert fresh_ehr.token_requests == []


def test_unlisted_issuer_is_refused_before_any_connection(app_client: TestClient) -> None:
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(4)
        lst.setblocking(False)
        target = f"http://127.0.0.1:{lst.getsockname()[1]}/fhir"
        resp = app_client.get("/smart/launch", params={"iss": target, "launch": "x"})
        assert resp.status_code == 400
        assert "This FHIR server is not registered" in resp.text
        assert COOKIE not in resp.headers.get("set-cookie", "")
        with pytest.raises(BlockingIOError):
            lst.accept()  # nobody connected


@pytest.mark.parametrize("issuer", ["closed-port", "https://ipexrx-smart-test.invalid/fhir"])
def test_a_listed_server_that_cannot_be_reached_gets_a_page(issuer: str, db_url: str) -> None:
    if issuer == "closed-port":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            issuer = f"http://127.0.0.1:{s.getsockname()[1]}/fhir"
    settings = Settings(database_url=db_url, auto_migrate=False, base_url=BASE, smart_issuers=[issuer],
                        smart_client_id=CLIENT_ID, fhir_timeout=2,
                        replay_dir=Path(db_url.removeprefix("sqlite:///")).parent / "seen")
    with TestClient(create_app(settings), base_url=BASE, follow_redirects=False) as c:
        resp = c.get("/smart/launch", params={"iss": issuer, "launch": "x"})
    assert resp.status_code == 502
    assert "sign-in could not be started" in resp.text and "could not be read" in resp.text


def test_launch_without_iss_lists_the_servers_for_a_standalone_launch(app_client: TestClient,
                                                                      fresh_ehr: EhrOnLoopback) -> None:
    resp = app_client.get("/smart/launch")
    assert resp.status_code == 400
    assert "iss=&lt;FHIR server base URL&gt;" in resp.text
    assert f'href="/smart/launch?iss={fresh_ehr.fhir.replace(":", "%3A").replace("/", "%2F")}"' in resp.text


def test_token_exchange_failure_gets_a_clear_page(app_client: TestClient, fresh_ehr: EhrOnLoopback) -> None:
    fresh_ehr.token_failure = (400, {"error": "invalid_grant"})
    _, resp = sign_in(app_client, fresh_ehr)
    assert resp.status_code == 502
    assert "did not accept the authorization code" in resp.text and "invalid_grant" in resp.text
    assert app_client.get("/smart/patient").status_code == 401


@pytest.mark.parametrize("answer,words", [
    ({"token_type": "Bearer", "patient": PATIENT_ID}, "without an access token"),
    ({"access_token": "t", "token_type": "mac", "patient": PATIENT_ID}, "other than Bearer"),
    ({"access_token": "t", "token_type": "Bearer"}, "carries no patient"),
    ({"access_token": "t", "token_type": "Bearer", "patient": "../Group/1"}, "not a FHIR id"),
    ({"access_token": "t", "token_type": "Bearer", "patient": ".."}, "not a FHIR id"),
])
def test_unusable_token_answers_are_refused(app_client: TestClient, fresh_ehr: EhrOnLoopback, answer: dict[str, Any],
                                            words: str) -> None:
    fresh_ehr.token_failure = (200, answer)
    _, resp = sign_in(app_client, fresh_ehr)
    assert resp.status_code == 502 and words in resp.text


def test_fhir_401_after_sign_in_says_the_sign_in_is_no_longer_accepted(app_client: TestClient,
                                                                        fresh_ehr: EhrOnLoopback) -> None:
    sign_in(app_client, fresh_ehr)
    fresh_ehr.tokens.discard(fresh_ehr.issued[-1])  # revoked / expired at the EHR
    resp = app_client.get("/smart/patient")
    assert resp.status_code == 401
    assert "The EHR no longer accepts this sign-in" in resp.text
    assert app_client.get("/smart/patient").status_code == 401  # the session's token was dropped


def test_fhir_server_error_is_a_page_not_a_partial_assessment(app_client: TestClient, fresh_ehr: EhrOnLoopback) -> None:
    sign_in(app_client, fresh_ehr)
    fresh_ehr.fhir_status = 500
    resp = app_client.get("/smart/patient")
    assert resp.status_code == 502
    assert "could not be read" in resp.text and "answered 500" in resp.text
    assert 'id="alerts"' not in resp.text


def test_search_pages_are_followed_under_the_fhir_base(app_client: TestClient, fresh_ehr: EhrOnLoopback) -> None:
    fresh_ehr.next_link = f"{fresh_ehr.fhir}/Condition?patient={PATIENT_ID}&page=2"
    sign_in(app_client, fresh_ehr)
    paged = app_client.get("/smart/patient")
    fresh_ehr.next_link = None
    whole = app_client.get("/smart/patient")
    assert paged.status_code == whole.status_code == 200
    assert "3 Condition" in whole.text
    assert "3 Condition" in paged.text  # page 1 (1 Condition) + page 2 (2 Conditions)
    assert [a for p, a in fresh_ehr.seen if p == "/fhir/Condition"].count(f"Bearer {fresh_ehr.issued[-1]}") == 3


def test_a_paging_link_to_another_server_is_not_followed(app_client: TestClient, fresh_ehr: EhrOnLoopback) -> None:
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(4)
        lst.setblocking(False)
        fresh_ehr.next_link = f"http://127.0.0.1:{lst.getsockname()[1]}/fhir/Condition?page=2"
        sign_in(app_client, fresh_ehr)
        resp = app_client.get("/smart/patient")
        assert resp.status_code == 502 and "pointed away from the FHIR server" in resp.text
        with pytest.raises(BlockingIOError):
            lst.accept()  # the token never went there


def test_session_ends_when_the_access_token_expires(app_client: TestClient, fresh_ehr: EhrOnLoopback) -> None:
    fresh_ehr.expires_in = 1
    sign_in(app_client, fresh_ehr)
    time.sleep(1.1)
    resp = app_client.get("/smart/patient")
    assert resp.status_code == 401 and "Not signed in" in resp.text


def test_tokens_never_appear_in_logs_pages_or_cookies(app_client: TestClient, fresh_ehr: EhrOnLoopback,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, cb = sign_in(app_client, fresh_ehr)
    page = app_client.get("/smart/patient")
    fresh_ehr.tokens.discard(fresh_ehr.issued[-1])
    expired = app_client.get("/smart/patient")
    token = fresh_ehr.issued[-1]
    verifier = fresh_ehr.token_requests[-1]["form"]["code_verifier"]
    assert page.status_code == 200 and expired.status_code == 401
    for secret in (token, verifier):
        assert secret not in caplog.text
        for resp in (cb, page, expired):
            assert secret not in resp.text
            assert all(secret not in v for v in resp.headers.values())
    assert "SMART sign-in with" in caplog.text  # the log was captured


def test_cookie_is_secure_when_the_public_base_is_https(fresh_ehr: EhrOnLoopback, db_url: str) -> None:
    settings = Settings(database_url=db_url, auto_migrate=False, base_url="https://ipexrx.example.org",
                        smart_issuers=[fresh_ehr.fhir], smart_client_id=CLIENT_ID,
                        replay_dir=Path(db_url.removeprefix("sqlite:///")).parent / "seen")
    with TestClient(create_app(settings), base_url=BASE, follow_redirects=False) as c:
        resp = c.get("/smart/launch", params={"iss": fresh_ehr.fhir})
    assert resp.status_code == 302
    assert query_of(resp.headers["location"])["redirect_uri"] == "https://ipexrx.example.org/smart/callback"
    attrs = {a.strip().lower() for a in resp.headers["set-cookie"].split(";")[1:]}
    assert "secure" in attrs


def test_launch_needs_a_client_id_and_a_base_url(fresh_ehr: EhrOnLoopback, db_url: str) -> None:
    common: dict[str, Any] = {"database_url": db_url, "auto_migrate": False, "smart_issuers": [fresh_ehr.fhir],
                              "replay_dir": Path(db_url.removeprefix("sqlite:///")).parent / "seen"}
    for extra, words in (({"base_url": BASE}, "IPEXRX_SMART_CLIENT_ID"), ({"smart_client_id": CLIENT_ID},
                                                                          "IPEXRX_BASE_URL")):
        with TestClient(create_app(Settings(**common, **extra)), base_url=BASE, follow_redirects=False) as c:
            resp = c.get("/smart/launch", params={"iss": fresh_ehr.fhir})
        assert resp.status_code == 503 and words in resp.text


def test_smart_configuration_without_s256_is_refused(app_client: TestClient, fresh_ehr: EhrOnLoopback,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from ipexrx.service import smart

    real = smart.smart_configuration

    async def plain_only(base: str, settings: Settings) -> dict[str, Any]:
        doc = copy.deepcopy(await real(base, settings))
        doc["code_challenge_methods_supported"] = ["plain"]
        return doc

    monkeypatch.setattr(smart, "smart_configuration", plain_only)
    resp = app_client.get("/smart/launch", params={"iss": fresh_ehr.fhir})
    assert resp.status_code == 502 and "PKCE S256" in resp.text


def test_settings_read_smart_issuers_as_a_json_list() -> None:
    s = Settings.from_env({"IPEXRX_SMART_ISSUERS": '["HTTPS://Fhir.Example.org:443/R4/"]',
                           "IPEXRX_SMART_CLIENT_ID": " abc "})
    assert s.smart_issuers == ["https://fhir.example.org/R4"] and s.smart_client_id == "abc"
    with pytest.raises(ValueError, match="JSON list"):
        Settings.from_env({"IPEXRX_SMART_ISSUERS": "https://fhir.example.org/R4"})


def test_a_listed_ehr_origin_may_frame_the_app_and_nothing_else(fresh_ehr: EhrOnLoopback, db_url: str) -> None:
    ehr = "https://ehr.example.org"
    settings = Settings(database_url=db_url, auto_migrate=False, base_url="https://ipexrx.example.org",
                        smart_issuers=[fresh_ehr.fhir], smart_client_id=CLIENT_ID, smart_frame_ancestors=[ehr],
                        replay_dir=Path(db_url.removeprefix("sqlite:///")).parent / "seen")
    with TestClient(create_app(settings), base_url=BASE, follow_redirects=False) as c:
        launch = c.get("/smart/launch", params={"iss": fresh_ehr.fhir})
        other = c.get("/")
    assert f"frame-ancestors {ehr}" in launch.headers["content-security-policy"]
    assert "x-frame-options" not in launch.headers
    attrs = {a.strip().lower() for a in launch.headers["set-cookie"].split(";")[1:]}
    assert {"secure", "samesite=none", "httponly"} <= attrs  # a framed app's cookie is third-party
    assert "frame-ancestors 'none'" in other.headers["content-security-policy"]  # every other page: never framed
    assert other.headers["x-frame-options"] == "DENY"


def test_frame_ancestors_must_be_https_origins() -> None:
    with pytest.raises(ValueError, match="https"):
        Settings.from_env({"IPEXRX_SMART_FRAME_ANCESTORS": "http://ehr.example.org"})
    with pytest.raises(ValueError, match="no path"):
        Settings.from_env({"IPEXRX_SMART_FRAME_ANCESTORS": "https://ehr.example.org/app"})
    s = Settings.from_env({"IPEXRX_SMART_FRAME_ANCESTORS": "https://a.example.org, https://b.example.org:8443/"})
    assert s.smart_frame_ancestors == ["https://a.example.org", "https://b.example.org:8443"]


def test_a_card_context_handed_on_by_the_ehr_is_shown_and_anything_else_ignored(app_client: TestClient,
                                                                                 fresh_ehr: EhrOnLoopback) -> None:
    fresh_ehr.app_context = json.dumps({"rule": "results.trough_out_of_range", "drugs": ["tacrolimus"], "levels": [
        {"test": "tacrolimus-trough", "result": "tacrolimus trough 18 ng/mL (2026-11-24)"}]})
    sign_in(app_client, fresh_ehr)
    html = app_client.get("/smart/patient").text
    assert "Opened from a decision-support card about tacrolimus" in html
    assert "tacrolimus trough 18 ng/mL (2026-11-24)" in html
    assert "results.trough_out_of_range" not in html  # the rule id is data for the app, never shown
    for junk in ("not json", json.dumps(["tacrolimus"]), json.dumps({"drugs": "tacrolimus"}), "x" * 5000):
        fresh_ehr.app_context = junk
        sign_in(app_client, fresh_ehr)
        page = app_client.get("/smart/patient")
        assert page.status_code == 200 and "Opened from a decision-support card" not in page.text


# --- who the page is about -------------------------------------------------------------------------------
@pytest.mark.parametrize(("names", "shown"), [
    ([{"use": "usual", "given": ["Leo"]}, {"use": "official", "family": "Example", "given": ["Leo", "Jon"]}],
     "Leo Jon Example"),  # the official name, wherever it is in the list
    ([{"use": "nickname", "text": "Little Leo"}, {"use": "usual", "given": ["Leo"], "family": "E"}], "Little Leo"),
    ([{"use": "official", "text": " Leo  Example ", "given": ["Ignored"]}], "Leo Example"),  # text before parts
    ([{"use": "official"}, {"given": ["Leo"], "family": "Example"}], "Leo Example"),  # an empty name is skipped
])
def test_the_heading_is_the_official_or_first_human_name(names: list[dict[str, Any]], shown: str) -> None:
    from ipexrx.service.smart import patient_banner

    b = patient_banner({"resourceType": "Patient", "id": "p-9", "name": names, "birthDate": "2019-03-14",
                        "gender": "male"})
    assert (b.name, b.named, b.birth, b.gender, b.fhir_id) == (shown, True, "2019-03-14", "male", "p-9")


@pytest.mark.parametrize("patient", [{"resourceType": "Patient", "id": "p-9"},
                                     {"resourceType": "Patient", "id": "p-9", "name": [{"use": "official"}, "x"]},
                                     None])
def test_a_patient_without_a_name_is_said_so_never_by_its_id(patient: dict[str, Any] | None) -> None:
    from ipexrx.service.smart import UNNAMED, patient_banner

    b = patient_banner(patient)
    assert (b.name, b.named, b.birth, b.gender) == (UNNAMED, False, None, None)
    assert "p-9" not in b.name


def test_the_page_is_headed_with_the_patients_name_and_shows_the_fhir_id_to_editors_only(
        app_client: TestClient, fresh_ehr: EhrOnLoopback) -> None:
    sign_in(app_client, fresh_ehr)
    html = app_client.get("/smart/patient").text
    assert '<h1 id="smart-patient-name">Leo Example</h1>' in html
    assert PATIENT_ID not in visible_text(html)
    editors = html.split('<details class="editors" id="smart-editors">', 1)[1].split("</details>", 1)[0]
    assert f"<code>{PATIENT_ID}</code>" in editors


def test_an_unnamed_patient_is_headed_as_such_with_what_the_record_holds(
        app_client: TestClient, fresh_ehr: EhrOnLoopback) -> None:
    patient = fresh_ehr.bundle["entry"][0]["resource"]
    saved = copy.deepcopy(patient)
    for key in ("name", "gender"):
        patient.pop(key, None)
    try:
        sign_in(app_client, fresh_ehr)
        page = app_client.get("/smart/patient")
    finally:
        fresh_ehr.bundle["entry"][0]["resource"] = saved
    assert page.status_code == 200, page.text
    html = page.text
    assert '<h1 id="smart-patient-name">Patient without a recorded name</h1>' in html
    assert "Born 2019-03-14 · sex not recorded." in html
    assert "report for the patient opened in the EHR, as of" in html
    assert PATIENT_ID not in visible_text(html) and f"<code>{PATIENT_ID}</code>" in html


def test_a_missing_patient_is_an_error_page_that_does_not_name_the_id(
        app_client: TestClient, fresh_ehr: EhrOnLoopback) -> None:
    fresh_ehr.patient_missing = True
    sign_in(app_client, fresh_ehr)
    page = app_client.get("/smart/patient")
    assert page.status_code == 502
    assert "has no record of the patient named in the sign-in" in page.text
    assert PATIENT_ID not in visible_text(page.text) and "smart-patient-name" not in page.text


def test_a_record_with_more_than_50_problems_lists_50_and_says_how_many_more(
        app_client: TestClient, fresh_ehr: EhrOnLoopback) -> None:
    """60 impossible tacrolimus troughs in the EHR's record: the error page lists the first 50 and counts the
    other 10, saying how to see them."""
    trough = next(e["resource"] for e in fresh_ehr.bundle["entry"] if e["resource"].get("id") == "obs-2")
    added = []
    for k in range(60):
        extra = copy.deepcopy(trough)
        extra["id"] = f"bad-trough-{k}"
        extra["valueQuantity"]["value"] = -5 - k
        added.append({"resource": extra})
    fresh_ehr.bundle["entry"] += added
    try:
        sign_in(app_client, fresh_ehr)
        page = app_client.get("/smart/patient")
    finally:
        del fresh_ehr.bundle["entry"][-60:]
    assert page.status_code == 422
    text = visible_text(page.text)
    assert text.count('Observation, id "bad-trough-') == 50
    assert ("… and 10 more problems not shown; correct these in the EHR and open the app again to see the next "
            "ones.") in text


def test_a_record_that_cannot_be_assessed_names_the_resource_and_element_not_a_json_path(
        app_client: TestClient, fresh_ehr: EhrOnLoopback) -> None:
    weight = next(e["resource"] for e in fresh_ehr.bundle["entry"] if e["resource"].get("id") == "obs-1")
    saved = copy.deepcopy(weight)
    weight["valueQuantity"]["value"] = 400  # kg: not a patient
    try:
        sign_in(app_client, fresh_ehr)
        page = app_client.get("/smart/patient")
    finally:
        weight.clear()
        weight.update(saved)
    assert page.status_code == 422
    text = visible_text(page.text)
    assert 'Observation, id "obs-1", element "valueQuantity.value" a number <= 250.0 400.0' in text
    assert "$." not in text
