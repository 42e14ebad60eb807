"""Every shape of token gives 401, never a 500: a kid that is a list, claims nested in odd ways, exp as
a string, a header that is not JSON, a wrong alg, missing segments... for the CDS Hooks client JWT
and for the registry's bearer tokens. Properties over generated hostile headers and claims, signed
with the issuer's real key (so the signature check is not what stops them)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm

from ipexrx.service import Settings, create_app

from .conftest import BASE, ISSUER

DISCOVERY = BASE + "/cds-services"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed(header: Any, claims: Any, key: ec.EllipticCurvePrivateKey) -> str:
    """A compact JWS over any JSON header and claims (PyJWT's encoder refuses some of these shapes)."""
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    sig = ECAlgorithm(ECAlgorithm.SHA384).sign(signing_input.encode(), key)
    return signing_input + "." + _b64(sig)


@pytest.fixture
def hostile_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url=BASE, raise_server_exceptions=False) as c:
        yield c


def _now() -> int:
    return int(time.time())


ODD = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
                st.floats(allow_nan=False), st.text(max_size=20), st.lists(st.integers(), max_size=3),
                st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
                st.lists(st.lists(st.text(max_size=3), max_size=2), max_size=2))
DELETE = object()
VALUES = st.one_of(st.just(DELETE), ODD, st.builds(lambda n: str(_now() + n), st.integers(-100, 400)),
                   st.just("j" * 5000), st.sampled_from(["RS384", "none", "HS256", "ES256", ""]))
FIELDS = [("header", f) for f in ("alg", "kid", "typ", "jku", "crit", "x5u")] + \
    [("claims", f) for f in ("iss", "aud", "exp", "iat", "nbf", "jti", "tenant")]
# a valid token with one to three of its fields replaced by something odd (or removed)
MUTATIONS = st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), min_size=1, max_size=3)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=MUTATIONS)
def test_hostile_headers_and_claims_signed_with_the_real_key_get_401_or_pass(
        hostile_client: TestClient, ec_key: ec.EllipticCurvePrivateKey, mutations: list[tuple[Any, Any]]) -> None:
    now = _now()
    token: dict[str, dict[str, Any]] = {
        "header": {"alg": "ES384", "typ": "JWT", "kid": "ec-1"},
        "claims": {"iss": ISSUER, "aud": DISCOVERY, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}}
    for (part, name), value in mutations:
        if value is DELETE:
            token[part].pop(name, None)
        else:
            token[part][name] = value
    jws = _signed(token["header"], token["claims"], ec_key)
    resp = hostile_client.get("/cds-services", headers={"Authorization": f"Bearer {jws}"})
    assert resp.status_code in (200, 401), (resp.status_code, token)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.one_of(
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60),
    st.lists(st.one_of(st.text(alphabet="abcXYZ019-_=", max_size=12),
                       st.builds(lambda v: _b64(json.dumps(v).encode()), ODD),
                       st.builds(lambda b: _b64(b), st.binary(max_size=20))), max_size=5).map(".".join)))
def test_malformed_tokens_get_401(hostile_client: TestClient, token: str) -> None:
    resp = hostile_client.get("/cds-services", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401, (resp.status_code, token)


@pytest.mark.parametrize(("header", "claims"), [
    ({"alg": "ES384", "kid": ["ec-1"]}, {}),
    ({"alg": "ES384", "kid": {"k": 1}}, {}),
    ({"alg": "ES384", "kid": "ec-1"}, {"exp": "EXP"}),
    ({"alg": "ES384", "kid": "ec-1"}, {"iat": "IAT"}),
    ({"alg": "ES384", "kid": "ec-1"}, {"jti": {"nested": ["claim"]}}),
    ({"alg": "ES384", "kid": "ec-1"}, {"jti": "j" * 600}),
    ({"alg": "ES384", "kid": "ec-1"}, {"iss": [ISSUER]}),
    ({"alg": ["ES384"], "kid": "ec-1"}, {}),
], ids=["kid-list", "kid-object", "exp-string", "iat-string", "jti-nested", "jti-too-long", "iss-list", "alg-list"])
def test_known_bad_shapes_get_a_bare_401(hostile_client: TestClient, ec_key: ec.EllipticCurvePrivateKey,
                                         header: dict[str, Any], claims: dict[str, Any]) -> None:
    now = _now()
    full = {"iss": ISSUER, "aud": DISCOVERY, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4()), **claims}
    if full["exp"] == "EXP":
        full["exp"] = str(now + 300)
    if full["iat"] == "IAT":
        full["iat"] = str(now)
    resp = hostile_client.get("/cds-services", headers={"Authorization": f"Bearer {_signed(header, full, ec_key)}"})
    assert resp.status_code == 401 and resp.json() == {"error": "unauthorized"}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300),
                       st.builds(lambda t: "Bearer " + t, st.text(alphabet=st.characters(min_codepoint=33,
                                                                                         max_codepoint=126),
                                                                  max_size=300))))
def test_hostile_registry_bearer_values_get_401(hostile_client: TestClient, value: str) -> None:
    resp = hostile_client.get("/api/v1/registry/patients", headers={"Authorization": value})
    assert resp.status_code == 401, (resp.status_code, value)
