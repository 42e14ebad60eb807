"""Hostile and random bodies against every registry API route never give a 5xx.

The registry routes are kept out of the OpenAPI document (their bodies are validated by the registry's own
schemas), so the schemathesis run does not reach them; this property test does the same job for them: every route,
as every role, with generated JSON bodies (nested, wrong types, long strings, odd unicode), generated path values
and raw non-JSON bytes."""

from __future__ import annotations

import string
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipexrx.registry.http import ROUTES
from ipexrx.service.registry_mount import mount_registry_api

from .conftest import PASSWORD, World

PREFIX = "/api/v1/registry"
USERS = ("clinician.user", "data-manager.user", "analyst.user", "admin.user")

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=300))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=20), inner, max_size=5)), max_leaves=20)
# bodies shaped like the registry's own: known field names with random values, so validation paths are reached
FIELDS = ("username", "password", "role", "centre_code", "code", "name", "patient", "courses", "date", "drug_id",
          "start_date", "stop_date", "reason", "pseudonym", "sex", "birth_year", "diagnosis_date", "active",
          "oi_score", "grade", "term", "last_followup_date", "donor", "conditioning", "outcome")
shaped = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)
path_values = st.text(alphabet=string.ascii_letters + string.digits + "-_.%~ é😀'\"<>", min_size=1, max_size=120)


@pytest.fixture
def setup(world: World) -> tuple[TestClient, dict[str, dict[str, str]], World]:
    app = FastAPI()
    mount_registry_api(app, world.reg)
    client = TestClient(app)
    headers = {}
    for u in USERS:
        r = client.post(PREFIX + "/auth/token", json={"username": u, "password": PASSWORD})
        assert r.status_code == 200, r.text
        headers[u] = {"Authorization": f"Bearer {r.json()['token']}"}
    return client, headers, world


def _fill(path: str, values: dict[str, str], world: World) -> str:
    out = path
    for key in ("pseudonym", "username", "course_id", "kind"):
        out = out.replace("{" + key + "}", values.get(key, world.pa if key == "pseudonym" else "x"))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_no_route_answers_5xx_to_generated_input(setup: tuple[TestClient, dict[str, dict[str, str]], World],
                                                 data: st.DataObject) -> None:
    client, headers, world = setup
    route = data.draw(st.sampled_from(ROUTES))
    who = data.draw(st.sampled_from((*USERS, None)))
    values = {k: data.draw(st.one_of(st.just(world.pa), path_values)) if k == "pseudonym" else data.draw(path_values)
              for k in ("pseudonym", "username", "course_id", "kind")}
    path = PREFIX + _fill(route.path, values, world)
    kwargs: dict[str, Any] = {"headers": headers[who] if who else {}}
    if route.method != "GET":
        kind = data.draw(st.sampled_from(("shaped", "any", "raw")))
        if kind == "raw":
            kwargs["content"] = data.draw(st.binary(max_size=200))
        else:
            kwargs["json"] = data.draw(shaped if kind == "shaped" else json_values)
    resp = client.request(route.method, path, **kwargs)
    assert resp.status_code < 500, (route.method, path, resp.status_code, resp.text[:300])


def test_a_deep_body_and_a_huge_string_are_client_errors(setup: tuple[TestClient, dict[str, dict[str, str]],
                                                                          World]) -> None:
    client, headers, world = setup
    h = headers["clinician.user"]
    deep = b'{"patient": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"  # deeper than Python's JSON parser goes
    resp = client.post(PREFIX + "/patients", content=deep, headers={**h, "content-type": "application/json"})
    assert 400 <= resp.status_code < 500
    huge = client.patch(f"{PREFIX}/patients/{world.pa}", json={"last_followup_date": "9" * 100_000}, headers=h)
    assert 400 <= huge.status_code < 500
