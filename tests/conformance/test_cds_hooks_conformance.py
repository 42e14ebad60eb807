"""A CDS Hooks 2.0 conformance suite over HTTP, in the spirit of Inferno's CDS Hooks tests.

It starts the real service (``python -m ipexrx serve`` on a free loopback port, in its own process,
with JWT verification ON and a CDS client whose key this suite holds) and checks, as an EHR would:
discovery; every hook served, with and without prefetch; 412 when prefetch is missing and the FHIR
server cannot be used; JWT failures (missing, bad signature, wrong aud, expired, alg none, replayed
jti: all 401); feedback (200, and 4xx on bad bodies). The checks are written from the
specification (https://cds-hooks.hl7.org/2.0/), not from ipexrx's own models.

Against another server: set ``IPEXRX_CDS_CONFORMANCE_URL`` to its base URL (the one before
``/cds-services``), ``IPEXRX_CDS_CONFORMANCE_KEY`` to a PEM private key (EC P-384 or RSA) that the
server trusts, ``IPEXRX_CDS_CONFORMANCE_ISSUER`` to its issuer and ``IPEXRX_CDS_CONFORMANCE_KID`` to
its key id, then ``python -m pytest tests/conformance``. Sample requests are ipexrx's (an IPEX
patient); hooks other than patient-view, order-select and order-sign get a minimal context.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ipexrx.service.cds import samples

ISSUER = "https://conformance.ehr.example"
KID = "conformance-1"
SAMPLE_OF_HOOK = {"patient-view": "patient_view", "order-select": "order_select", "order-sign": "order_sign"}
UNUSABLE_FHIR = "https://fhir.unlisted.invalid/r4"  # .invalid never resolves (RFC 6761)


@dataclass
class Target:
    base: str
    key: Any
    issuer: str
    kid: str
    alg: str

    def token(self, path: str, *, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {"iss": self.issuer, "aud": self.base + path, "exp": now + 300, "iat": now,
                                   "jti": str(uuid.uuid4())}
        for k, v in claims.items():
            if v is None:
                payload.pop(k, None)
            else:
                payload[k] = v
        return jwt.encode(payload, key or self.key, algorithm=self.alg, headers={"kid": self.kid, "typ": "JWT"})

    def headers(self, path: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(path, **claims)}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _external() -> Target | None:
    url = os.environ.get("IPEXRX_CDS_CONFORMANCE_URL")
    if not url:
        return None
    key = serialization.load_pem_private_key(Path(os.environ["IPEXRX_CDS_CONFORMANCE_KEY"]).read_bytes(), None)
    alg = "ES384" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS384"
    return Target(url.rstrip("/"), key, os.environ["IPEXRX_CDS_CONFORMANCE_ISSUER"],
                  os.environ.get("IPEXRX_CDS_CONFORMANCE_KID", KID), alg)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    external = _external()
    if external is not None:
        yield external
        return
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=KID, use="sig", alg="ES384")
    tmp = tmp_path_factory.mktemp("conformance")
    (tmp / "run").mkdir(mode=0o700)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "IPEXRX_CDS_ISSUERS": json.dumps({ISSUER: {"jwks": {"keys": [jwk]}}}),
           "IPEXRX_BASE_URL": base, "IPEXRX_DATABASE_URL": f"sqlite:///{tmp / 'cds.sqlite3'}",
           "XDG_RUNTIME_DIR": str(tmp / "run"), "IPEXRX_ANALYSIS_THREADS": "1"}
    for var in ("IPEXRX_DEV_MODE", "IPEXRX_DEV_FHIR_SERVERS", "IPEXRX_CDS_TENANTS"):
        env.pop(var, None)
    log = (tmp / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "ipexrx", "serve", "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 40
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ipexrx serve exited ({proc.returncode}): {(tmp / 'serve.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/cds-services", timeout=1).status_code == 401:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("ipexrx serve did not answer within 40 s")
            time.sleep(0.2)
        yield Target(base, key, ISSUER, KID, "ES384")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def services(target: Target) -> list[dict[str, Any]]:
    resp = httpx.get(f"{target.base}/cds-services", headers=target.headers("/cds-services"), timeout=10)
    assert resp.status_code == 200, resp.text
    found: list[dict[str, Any]] = resp.json()["services"]
    return found


def _request(svc: dict[str, Any], *, prefetch: bool) -> dict[str, Any]:
    name = SAMPLE_OF_HOOK.get(svc["hook"])
    if name is not None:
        body = copy.deepcopy(samples.load(name))
    else:
        body = {"hook": svc["hook"], "context": {"userId": "Practitioner/example", "patientId": "ipex-boy-1"}}
    body["hook"] = svc["hook"]
    body["hookInstance"] = str(uuid.uuid4())
    if prefetch:
        body["prefetch"] = {k: v for k, v in (body.get("prefetch") or {}).items() if k in svc.get("prefetch", {})}
    else:
        body.pop("prefetch", None)
    return body


def _call(target: Target, svc: dict[str, Any], body: dict[str, Any]) -> httpx.Response:
    path = f"/cds-services/{svc['id']}"
    return httpx.post(target.base + path, json=body, headers=target.headers(path), timeout=30)


# -- the response rules of CDS Hooks 2.0, from the specification text ------------------------------
def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _action_problems(a: Any, where: str) -> list[str]:
    if not isinstance(a, dict):
        return [f"{where}: not an object"]
    p = []
    if a.get("type") not in ("create", "update", "delete"):
        p.append(f"{where}.type must be create, update or delete, got {a.get('type')!r}")
    if not isinstance(a.get("description"), str) or not a["description"]:
        p.append(f"{where}.description is required")
    if a.get("type") in ("create", "update") and not isinstance(a.get("resource"), dict):
        p.append(f"{where}.resource is required for {a.get('type')}")
    if a.get("type") == "delete" and not isinstance(a.get("resourceId"), str):
        p.append(f"{where}.resourceId should name the resource to delete")
    return p


def card_problems(card: Any, where: str) -> list[str]:
    if not isinstance(card, dict):
        return [f"{where}: not an object"]
    p = [f"{where}.{k}: optional fields must be omitted, not empty" for k, v in card.items() if _empty(v)]
    if not isinstance(card.get("summary"), str) or not 0 < len(card["summary"]) < 140:
        p.append(f"{where}.summary must be a string under 140 characters")
    if card.get("indicator") not in ("info", "warning", "critical"):
        p.append(f"{where}.indicator must be info, warning or critical")
    src = card.get("source")
    if not isinstance(src, dict) or not isinstance(src.get("label"), str) or not src["label"]:
        p.append(f"{where}.source.label is required")
    suggestions = card.get("suggestions") or []
    if suggestions and card.get("selectionBehavior") not in ("at-most-one", "any"):
        p.append(f"{where}.selectionBehavior must be at-most-one or any when there are suggestions")
    for i, s in enumerate(suggestions):
        w = f"{where}.suggestions[{i}]"
        if not isinstance(s.get("label"), str) or not s["label"]:
            p.append(f"{w}.label is required")
        if not isinstance(s.get("uuid"), str) or not s["uuid"]:
            p.append(f"{w}.uuid is needed to report the suggestion as accepted in feedback")
        if "isRecommended" in s and not isinstance(s["isRecommended"], bool):
            p.append(f"{w}.isRecommended must be a boolean")
        for j, a in enumerate(s.get("actions") or []):
            p += _action_problems(a, f"{w}.actions[{j}]")
    if sum(1 for s in suggestions if s.get("isRecommended")) > 1:
        p.append(f"{where}: at most one suggestion can be the recommended one")
    for i, r in enumerate(card.get("overrideReasons") or []):
        if not isinstance(r, dict) or not r.get("display"):
            p.append(f"{where}.overrideReasons[{i}] needs a display")
    for i, link in enumerate(card.get("links") or []):
        w = f"{where}.links[{i}]"
        if not (isinstance(link.get("label"), str) and isinstance(link.get("url"), str)):
            p.append(f"{w} needs label and url")
        if link.get("type") not in ("absolute", "smart"):
            p.append(f"{w}.type must be absolute or smart")
        if "appContext" in link and (link.get("type") != "smart" or not isinstance(link["appContext"], str)):
            p.append(f"{w}.appContext is a string, and only on smart links")
    return p


def response_problems(body: Any) -> list[str]:
    if not isinstance(body, dict) or not isinstance(body.get("cards"), list):
        return ["the response must be an object with a cards array"]
    p = [f"unknown response field {k}" for k in set(body) - {"cards", "systemActions"}]
    for i, card in enumerate(body["cards"]):
        p += card_problems(card, f"$.cards[{i}]")
    if "systemActions" in body:
        if not isinstance(body["systemActions"], list) or not body["systemActions"]:
            p.append("systemActions must be a non-empty array when present")
        else:
            for i, a in enumerate(body["systemActions"]):
                p += _action_problems(a, f"$.systemActions[{i}]")
    return p


# -- discovery ------------------------------------------------------------------------------------
def test_discovery_lists_each_service_with_hook_id_description_and_prefetch(services: list[dict[str, Any]]) -> None:
    assert services
    for s in services:
        for field in ("hook", "id", "description"):
            assert isinstance(s.get(field), str) and s[field], (s.get("id"), field)
        assert isinstance(s.get("prefetch"), dict) and s["prefetch"], s["id"]
        assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in s["prefetch"].items())
    assert {"patient-view", "order-select", "order-sign"} <= {s["hook"] for s in services}


def test_discovery_needs_a_token(target: Target) -> None:
    assert httpx.get(f"{target.base}/cds-services", timeout=10).status_code == 401


# -- hooks ----------------------------------------------------------------------------------------
def test_each_hook_with_prefetch_answers_cards_in_the_spec_form(target: Target,
                                                                 services: list[dict[str, Any]]) -> None:
    for svc in services:
        resp = _call(target, svc, _request(svc, prefetch=True))
        assert resp.status_code == 200, (svc["id"], resp.status_code, resp.text[:500])
        assert resp.headers["content-type"].startswith("application/json")
        assert response_problems(resp.json()) == [], svc["id"]
        if svc["hook"] in SAMPLE_OF_HOOK:  # the ipexrx samples are a patient with known problems
            assert resp.json()["cards"], svc["id"]


def test_each_hook_without_prefetch_or_fhir_server_is_412(target: Target, services: list[dict[str, Any]]) -> None:
    for svc in services:
        resp = _call(target, svc, _request(svc, prefetch=False))
        assert resp.status_code == 412, (svc["id"], resp.status_code, resp.text[:300])


def test_each_hook_without_prefetch_and_an_unusable_fhir_server_is_412(
        target: Target, services: list[dict[str, Any]]) -> None:
    for svc in services:
        body = _request(svc, prefetch=False)
        body["fhirServer"] = UNUSABLE_FHIR
        body["fhirAuthorization"] = {"access_token": "conformance-opaque-token", "token_type": "Bearer",
                                     "expires_in": 300, "scope": "patient/*.read", "subject": "conformance"}
        resp = _call(target, svc, body)
        assert resp.status_code == 412, (svc["id"], resp.status_code, resp.text[:300])
        assert "conformance-opaque-token" not in resp.text


def test_a_hook_with_part_of_its_prefetch_and_no_fhir_server_is_412(target: Target,
                                                                       services: list[dict[str, Any]]) -> None:
    svc = next(s for s in services if s["hook"] == "patient-view")
    body = _request(svc, prefetch=True)
    body["prefetch"].pop("medications", None)
    assert _call(target, svc, body).status_code == 412


# -- JWT ------------------------------------------------------------------------------------------
def _jwt_cases(target: Target, path: str) -> dict[str, dict[str, str]]:
    other = ec.generate_private_key(ec.SECP384R1())
    now = int(time.time())
    unsigned = jwt.encode({"iss": target.issuer, "aud": target.base + path, "exp": now + 300, "iat": now,
                           "jti": str(uuid.uuid4())}, "", algorithm="none",
                          headers={"kid": target.kid, "typ": "JWT"})
    return {
        "missing": {},
        "not a JWT": {"Authorization": "Bearer not-a-jwt"},
        "bad signature": {"Authorization": f"Bearer {target.token(path, key=other)}"},
        "wrong aud": {"Authorization": f"Bearer {target.token(path, aud=target.base + '/cds-services/other')}"},
        "expired": {"Authorization": f"Bearer {target.token(path, exp=now - 600, iat=now - 900)}"},
        "unknown issuer": {"Authorization": f"Bearer {target.token(path, iss='https://stranger.example')}"},
        "alg none": {"Authorization": f"Bearer {unsigned}"},
    }


def test_jwt_failures_are_401_on_discovery_services_and_feedback(target: Target,
                                                                  services: list[dict[str, Any]]) -> None:
    svc = services[0]
    calls = [("GET", "/cds-services", None), ("POST", f"/cds-services/{svc['id']}", _request(svc, prefetch=True)),
             ("POST", f"/cds-services/{svc['id']}/feedback", {"feedback": [
                 {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-11-25T10:00:00Z"}]})]
    for method, path, body in calls:
        for case, headers in _jwt_cases(target, path).items():
            resp = httpx.request(method, target.base + path, json=body, headers=headers, timeout=10)
            assert resp.status_code == 401, (path, case, resp.status_code)


def test_a_replayed_token_is_401(target: Target) -> None:
    headers = target.headers("/cds-services")
    assert httpx.get(f"{target.base}/cds-services", headers=headers, timeout=10).status_code == 200
    assert httpx.get(f"{target.base}/cds-services", headers=headers, timeout=10).status_code == 401


# -- feedback -------------------------------------------------------------------------------------
def test_feedback_on_issued_cards_is_accepted(target: Target, services: list[dict[str, Any]]) -> None:
    svc = next(s for s in services if s["hook"] == "order-sign")
    cards = _call(target, svc, _request(svc, prefetch=True)).json()["cards"]
    items: list[dict[str, Any]] = []
    with_suggestion = next((c for c in cards if c.get("suggestions")), None)
    if with_suggestion is not None:
        items.append({"card": with_suggestion["uuid"], "outcome": "accepted",
                      "acceptedSuggestions": [{"id": with_suggestion["suggestions"][0]["uuid"]}],
                      "outcomeTimestamp": "2026-11-25T10:00:00Z"})
    with_reasons = next((c for c in cards if c.get("overrideReasons")), None)
    if with_reasons is not None:
        items.append({"card": with_reasons["uuid"], "outcome": "overridden", "outcomeTimestamp":
                      "2026-11-25T10:01:00Z", "overrideReason": {"reason": with_reasons["overrideReasons"][0],
                                                                 "userComment": "discussed with the team"}})
    assert items, "the order-sign sample should give cards that can be accepted or overridden"
    path = f"/cds-services/{svc['id']}/feedback"
    resp = httpx.post(target.base + path, json={"feedback": items}, headers=target.headers(path), timeout=10)
    assert resp.status_code == 200, resp.text


BAD_FEEDBACK: dict[str, Any] = {
    "no feedback array": {},
    "feedback not a list": {"feedback": {"card": "x"}},
    "unknown outcome": {"feedback": [{"card": "x", "outcome": "ignored", "outcomeTimestamp": "2026-11-25T10:00:00Z"}]},
    "no outcomeTimestamp": {"feedback": [{"card": "x", "outcome": "overridden"}]},
    "no card": {"feedback": [{"outcome": "overridden", "outcomeTimestamp": "2026-11-25T10:00:00Z"}]},
    "timestamp not a date": {"feedback": [{"card": "x", "outcome": "overridden", "outcomeTimestamp": "yesterday"}]},
}


@pytest.mark.parametrize("case", sorted(BAD_FEEDBACK))
def test_bad_feedback_bodies_are_4xx(target: Target, services: list[dict[str, Any]], case: str) -> None:
    path = f"/cds-services/{services[0]['id']}/feedback"
    resp = httpx.post(target.base + path, json=BAD_FEEDBACK[case], headers=target.headers(path), timeout=10)
    assert 400 <= resp.status_code < 500, (case, resp.status_code)


def test_feedback_that_is_not_json_is_4xx(target: Target, services: list[dict[str, Any]]) -> None:
    path = f"/cds-services/{services[0]['id']}/feedback"
    resp = httpx.post(target.base + path, content=b"{not json", headers={
        **target.headers(path), "Content-Type": "application/json"}, timeout=10)
    assert 400 <= resp.status_code < 500
