"""The CDS hook fast path (service/cds/fastpath.py) answers exactly as the FastAPI route it stands in for.

Every request below goes to two applications built from the same settings, one with the fast path and
one without, and the answers must be the same: status, body and headers (bar the date). The requests
cover the accepted call, every refusal the route makes (token, media type, JSON, schema, hook, prefetch,
an unexpected failure), and the requests the fast path must leave to the router (other methods, unknown
services, the feedback route, CORS preflight, a trailing slash).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ipexrx.service import Settings, create_app
from ipexrx.service.cds import samples
from ipexrx.service.cds.fastpath import CdsHookFastPath

from .conftest import BASE, TokenFactory, bearer

PV = "/cds-services/ipexrx-patient-view"
ORIGIN = {"Origin": "https://ehr.example.org"}


@pytest.fixture
def clients(settings: Settings) -> Iterator[dict[str, TestClient]]:
    fast = TestClient(create_app(settings.model_copy(update={"cds_fast_path": True})), base_url=BASE,
                      raise_server_exceptions=False)
    route = TestClient(create_app(settings.model_copy(update={"cds_fast_path": False})), base_url=BASE,
                       raise_server_exceptions=False)
    with fast, route:
        yield {"fast": fast, "route": route}


def _answer(resp: Any) -> tuple[int, Any, dict[str, str]]:
    headers = {k: v for k, v in resp.headers.items() if k != "date"}
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.content
    return resp.status_code, body, headers


def _same(clients: dict[str, TestClient], make: Callable[[], dict[str, Any]]) -> tuple[int, Any, dict[str, str]]:
    """Send the request ``make()`` builds (a fresh one for each app: tokens are used once) to both apps."""
    answers = {}
    for name, client in clients.items():
        answers[name] = _answer(client.request(**make()))
    assert answers["fast"] == answers["route"]
    return answers["fast"]


def _call(make_token: TokenFactory, body: Any = None, *, path: str = PV, method: str = "POST",
          token: bool = True, headers: dict[str, str] | None = None, content: bytes | None = None,
          aud: str | None = None, **claims: Any) -> Callable[[], dict[str, Any]]:
    def make() -> dict[str, Any]:
        h = {**ORIGIN, **(headers or {})}
        if token:
            h.update(bearer(make_token(aud or BASE + path, **claims)))
        req: dict[str, Any] = {"method": method, "url": path, "headers": h}
        if content is not None:
            req["content"] = content
        elif body is not None:
            req["json"] = body
        return req

    return make


def test_an_accepted_call_gets_the_same_cards_and_headers_both_ways(clients: dict[str, TestClient],
                                                                    make_token: TokenFactory) -> None:
    status, body, headers = _same(clients, _call(make_token, samples.load("patient_view")))
    assert status == 200 and body["cards"]
    assert headers["access-control-allow-origin"] == "*"  # CORS still applies
    assert "content-security-policy" in headers and headers["x-content-type-options"] == "nosniff"


def test_order_sign_answers_the_same_both_ways(clients: dict[str, TestClient], make_token: TokenFactory) -> None:
    status, body, _ = _same(clients, _call(make_token, samples.load("order_sign"),
                                           path="/cds-services/ipexrx-order-sign"))
    assert status == 200 and body["cards"]


@pytest.mark.parametrize("case", ["no token", "forged token", "wrong audience"])
def test_refused_tokens_get_the_same_bare_401(clients: dict[str, TestClient], make_token: TokenFactory,
                                              case: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    body = samples.load("patient_view")
    make = {"no token": _call(make_token, body, token=False),
            "forged token": _call(make_token, body, key=ec.generate_private_key(ec.SECP384R1())),
            "wrong audience": _call(make_token, body, aud="https://elsewhere.example.org" + PV)}[case]
    status, answer, headers = _same(clients, make)
    assert status == 401 and answer == {"error": "unauthorized"} and headers["www-authenticate"] == "Bearer"


def _without(name: str, *keys: str) -> dict[str, Any]:
    body = samples.load(name)
    target = body
    for k in keys[:-1]:
        target = target[k]
    del target[keys[-1]]
    return body


@pytest.mark.parametrize("case, status", [
    ("wrong hook", 400), ("not json", 400), ("nan literal", 400), ("missing hookInstance", 422),
    ("missing patientId", 422), ("text/plain", 415), ("prefetch missing, no FHIR server", 412),
    ("nested too deep", 400), ("empty body", 400),
])
def test_refused_bodies_get_the_same_error_both_ways(clients: dict[str, TestClient], make_token: TokenFactory,
                                                     case: str, status: int) -> None:
    pv = samples.load("patient_view")
    make = {
        "wrong hook": _call(make_token, {**pv, "hook": "order-sign"}),
        "not json": _call(make_token, content=b"{not json", headers={"Content-Type": "application/json"}),
        "nan literal": _call(make_token, content=b'{"hook": NaN}', headers={"Content-Type": "application/json"}),
        "missing hookInstance": _call(make_token, _without("patient_view", "hookInstance")),
        "missing patientId": _call(make_token, _without("patient_view", "context", "patientId")),
        "text/plain": _call(make_token, content=json.dumps(pv).encode(), headers={"Content-Type": "text/plain"}),
        "prefetch missing, no FHIR server": _call(make_token, _without("patient_view", "prefetch", "medications")),
        "nested too deep": _call(make_token, content=b"[" * 100 + b"]" * 100,
                                 headers={"Content-Type": "application/json"}),
        "empty body": _call(make_token, content=b"", headers={"Content-Type": "application/json"}),
    }[case]
    got, body, _ = _same(clients, make)
    assert got == status, body


@pytest.mark.parametrize("case, status", [
    ("unknown service", 404), ("GET on a service", 405), ("trailing slash", 307), ("feedback", 422),
    ("preflight", 200),
])
def test_requests_left_to_the_router_are_answered_as_before(clients: dict[str, TestClient],
                                                            make_token: TokenFactory, case: str, status: int) -> None:
    pv = samples.load("patient_view")
    make = {
        "unknown service": _call(make_token, pv, path="/cds-services/no-such-service"),
        "GET on a service": _call(make_token, method="GET"),
        "trailing slash": _call(make_token, pv, path=PV + "/"),
        "feedback": _call(make_token, {"feedback": [{"card": "x"}]}, path=PV + "/feedback"),
        "preflight": _call(make_token, method="OPTIONS", token=False,
                           headers={"Access-Control-Request-Method": "POST",
                                    "Access-Control-Request-Headers": "authorization, content-type"}),
    }[case]
    for client in clients.values():
        client.follow_redirects = False
    got, body, _ = _same(clients, make)
    assert got == status, body


def test_an_unexpected_failure_is_the_same_500_both_ways(clients: dict[str, TestClient], make_token: TokenFactory,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from ipexrx.service.cds import engine

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug in a rule")

    monkeypatch.setattr(engine, "evaluate", broken)
    status, body, _ = _same(clients, _call(make_token, samples.load("patient_view")))
    assert status == 500
    assert "a bug in a rule" not in (body.decode() if isinstance(body, bytes) else json.dumps(body))


def test_a_hook_call_never_reaches_the_router_with_the_fast_path(settings: Settings, make_token: TokenFactory) -> None:
    """The fast path answers by itself: the application behind it (here one that fails the test) is not called
    for a hook call, and is called for anything else."""
    app = create_app(settings)
    reached: list[str] = []

    async def behind(scope: Any, _receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    fast = CdsHookFastPath(behind)

    def call(path: str, body: bytes) -> list[dict[str, Any]]:
        token = make_token(BASE + path)
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                             (b"authorization", f"Bearer {token}".encode())],
                 "client": ("127.0.0.1", 5000), "server": ("testserver", 80), "app": app}
        sent: list[dict[str, Any]] = []
        chunks = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return chunks.pop(0) if chunks else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(fast(scope, receive, send))
        return sent

    with TestClient(app):  # runs the start-up (knowledge base, card log)
        pv = json.dumps(samples.load("patient_view")).encode()
        answered = call(PV, pv)
        assert answered[0]["status"] == 200 and json.loads(answered[1]["body"])["cards"]
        assert reached == []
        call(PV + "/feedback", b"{}")
        assert reached == [PV + "/feedback"]


def test_with_the_fast_path_off_the_route_answers(settings: Settings, make_token: TokenFactory) -> None:
    off = create_app(settings.model_copy(update={"cds_fast_path": False}))
    assert not any(m.cls is CdsHookFastPath for m in off.user_middleware)
    with TestClient(off, base_url=BASE) as client:
        body = copy.deepcopy(samples.load("patient_view"))
        resp = client.post(PV, json=body, headers=bearer(make_token(BASE + PV)))
        assert resp.status_code == 200 and resp.json()["cards"]


def test_the_fast_path_is_on_by_default_and_off_by_environment() -> None:
    assert Settings.from_env({}).cds_fast_path is True
    assert Settings.from_env({"IPEXRX_CDS_FAST_PATH": "0"}).cds_fast_path is False
