"""Browser hardening on every HTML page and request limits on every route: security headers, no
inline script, Secure cookies over TLS; header (431), body (413) and JSON depth (400) limits before
authentication; CPU-heavy work on a bounded pool (503 + Retry-After), off the event loop."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from ipexrx.service import Settings, create_app
from ipexrx.service.cds import samples
from ipexrx.service.limits import INLINE_STYLE_PREFIXES, json_too_deep

BASE = "http://testserver"
SAMPLE_PARAMS = {"name": "sirolimus", "iid": "nope", "pseudonym": "CTR-X-0001", "path": "site.css",
                 "service_id": "ipexrx-patient-view"}


def _html_get_paths(app: Any) -> list[str]:
    """Every GET route of the app that is not part of the JSON API, with sample path parameters."""
    out = []
    for route in app.routes:
        if not isinstance(route, Route) or "GET" not in (route.methods or set()):
            continue
        path = route.path
        if path.startswith(("/api/", "/cds-services", "/openapi.json")):
            continue
        out.append(re.sub(r"\{(\w+)(:\w+)?\}", lambda m: SAMPLE_PARAMS.get(m.group(1), "x"), path))
    return sorted(set(out))


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    d = tmp_path_factory.mktemp("hardening")
    app = create_app(Settings(dev_mode=False, database_url=f"sqlite:///{d}/h.sqlite3", replay_dir=d / "seen"))
    with TestClient(app, base_url=BASE) as c:
        yield c


def _directives(csp: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in (p.strip() for p in csp.split(";")) if part}


def test_every_html_page_carries_the_security_headers(hardened: TestClient) -> None:
    paths = _html_get_paths(hardened.app)
    assert {"/", "/drugs/sirolimus", "/assess", "/search", "/docs", "/registry/login", "/rules"} <= set(paths)
    pages = 0
    for path in paths:
        resp = hardened.get(path, follow_redirects=False)
        assert resp.status_code < 500, path
        h = resp.headers
        csp = _directives(h["content-security-policy"])
        assert csp["script-src"] == ["'self'"], path  # no 'unsafe-inline', no 'unsafe-eval'
        assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"], path
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY", path
        assert h["referrer-policy"] == "strict-origin-when-cross-origin", path
        if not path.startswith(INLINE_STYLE_PREFIXES):
            assert "'unsafe-inline'" not in h["content-security-policy"], path
        if path.startswith("/registry") and resp.status_code == 200:  # its one <style> block, by hash
            import base64
            import hashlib

            for block in re.findall(r"<style>(.*?)</style>", resp.text, re.S):
                digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
                assert f"'sha256-{digest}'" in csp["style-src"], path
        pages += resp.headers.get("content-type", "").startswith("text/html")
    assert pages >= 10


def test_pages_hold_no_inline_script_or_style_the_policy_would_block(hardened: TestClient) -> None:
    for path in _html_get_paths(hardened.app) + ["/search?q=tacrolimus"]:
        resp = hardened.get(path)
        if not resp.headers.get("content-type", "").startswith("text/html"):
            continue
        page = resp.text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page, re.I), path  # every script is a file
        assert not re.search(r"\son[a-z]+\s*=", page, re.I), path  # no inline event handlers
        if not path.startswith(INLINE_STYLE_PREFIXES):
            assert not re.search(r"\sstyle\s*=", page, re.I), path
            if not path.startswith("/registry"):
                assert "<style" not in page.lower(), path


def test_forwarded_proto_is_believed_from_a_listed_proxy_only() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse

    from ipexrx.service.limits import BrowserHardening

    def page(_request: Any) -> PlainTextResponse:
        resp = PlainTextResponse("ok")
        resp.set_cookie("s", "v", httponly=True)
        return resp

    inner = Starlette(routes=[Route("/", page)])
    app = BrowserHardening(inner, trusted_proxies=["10.1.0.0/16"])
    for peer, secure in (("10.1.2.3", True), ("192.0.2.7", False)):
        with TestClient(app, client=(peer, 5000)) as c:
            cookie = c.get("/", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"]
        assert ("; Secure" in cookie) is secure, (peer, cookie)


def test_json_answers_and_static_files_carry_nosniff_too(hardened: TestClient) -> None:
    for path in ("/api/v1/version", "/static/site.css", "/openapi.json", "/no-such-page"):
        assert hardened.get(path).headers["x-content-type-options"] == "nosniff", path


# ------------------------------------------------------------------------------------------
# Secure cookies over TLS
# ------------------------------------------------------------------------------------------
USER, PASSWORD = "cookie.clinician", "a long cookie password 1"


@pytest.fixture
def registry_app(db_url: str) -> Any:
    from ipexrx.registry import SYSTEM

    def make(**extra: Any) -> Any:
        app = create_app(Settings(database_url=db_url, auto_migrate=True, **extra))
        reg = app.state.registry
        if not any(u["username"] == USER for u in reg.users(SYSTEM)):
            reg.create_centre(SYSTEM, {"code": "CTR-C", "name": "Cookie centre"})
            reg.create_user(SYSTEM, {"username": USER, "password": PASSWORD, "role": "clinician",
                                     "centre_code": "CTR-C"})
        return app

    return make


def _session_cookie(app: Any, base_url: str, headers: dict[str, str] | None = None) -> str:
    with TestClient(app, base_url=base_url) as c:
        resp = c.post("/registry/login", data={"username": USER, "password": PASSWORD}, headers=headers or {},
                      follow_redirects=False)
    assert resp.status_code in (302, 303), resp.text[:300]
    return resp.headers["set-cookie"]


def test_the_session_cookie_is_secure_over_tls_only(registry_app: Any) -> None:
    app = registry_app()
    assert "secure" in _session_cookie(app, "https://testserver").lower().replace("samesite", "")
    plain = _session_cookie(app, "http://testserver")
    assert "; secure" not in plain.lower() and "httponly" in plain.lower()
    # a forged X-Forwarded-Proto is ignored unless the proxy in front is trusted by configuration
    assert "; secure" not in _session_cookie(app, BASE, {"X-Forwarded-Proto": "https"}).lower()
    trusting = registry_app(trust_forwarded_proto=True)
    assert "; secure" in _session_cookie(trusting, BASE, {"X-Forwarded-Proto": "https"}).lower()
    # or from a listed proxy only (the test client's peer address is 'testclient', never a listed proxy)
    assert "; secure" not in _session_cookie(registry_app(trusted_proxies=["10.0.0.0/8"]), BASE,
                                             {"X-Forwarded-Proto": "https"}).lower()
    assert "; secure" in _session_cookie(registry_app(base_url="https://cds.example.org"), BASE).lower()


# ------------------------------------------------------------------------------------------
# Request limits
# ------------------------------------------------------------------------------------------
@pytest.fixture
def small_limits(db_url: str, jwks: dict[str, Any]) -> Iterator[TestClient]:
    s = Settings(issuers={"https://ehr.example.org": {"jwks": jwks}}, database_url=db_url, auto_migrate=False,
                 max_body_bytes=64 * 1024, max_header_bytes=8 * 1024, max_json_depth=32)
    with TestClient(create_app(s), base_url=BASE) as c:
        yield c


def test_oversized_headers_are_431(small_limits: TestClient, db_url: str) -> None:
    resp = small_limits.get("/api/v1/version", headers={"X-Big": "a" * 9000})
    assert resp.status_code == 431 and resp.json()["error"] == "request_header_fields_too_large"
    assert small_limits.get("/api/v1/version", headers={"X-Small": "a" * 4000}).status_code == 200
    # the default allows ordinary requests and refuses a 1 MB header
    with TestClient(create_app(Settings(dev_mode=True, auto_migrate=False, database_url=db_url))) as c:
        assert c.get("/", headers={"X-Big": "a" * 1_000_000}).status_code == 431


def test_oversized_bodies_are_413_declared_or_streamed(small_limits: TestClient) -> None:
    big = b"[" + b"1," * 40_000 + b"1]"
    resp = small_limits.post("/api/v1/assess", content=big, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 8192

    resp = small_limits.post("/cds-services/ipexrx-patient-view", content=chunks(),
                             headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    form = small_limits.post("/assess", files={"patient_file": ("p.json", b"x" * 100_000)})
    assert form.status_code == 413


JSON_POSTS = ["/api/v1/assess", "/api/v1/dosing/recommend", "/api/v1/dosing/fit", "/cds-services/ipexrx-patient-view",
              "/cds-services/ipexrx-order-sign/feedback", "/api/v1/registry/patients", "/api/v1/registry/auth/token",
              "/api/v1/registry/centres"]


@pytest.mark.parametrize("path", JSON_POSTS)
def test_deeply_nested_json_is_400_before_authentication_on_every_json_route(small_limits: TestClient,
                                                                             path: str) -> None:
    for deep in ("[" * 5000 + "]" * 5000, '{"a":' * 900 + "1" + "}" * 900, "[" * 33 + "]" * 33):
        resp = small_limits.post(path, content=deep, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400, (path, resp.status_code, resp.text[:200])
        assert resp.json()["error"] == "json_too_deep"
    ok = small_limits.post(path, content="[" * 30 + "]" * 30, headers={"Content-Type": "application/json"})
    assert ok.status_code in (401, 404, 422), (path, ok.status_code)  # past the limit: the route's own answer
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Content-Type": ctype} if ctype else {}
        resp = small_limits.post(path, content="[" * 5000 + "]" * 5000, headers=headers)
        assert resp.status_code == 400, (path, ctype, resp.status_code)  # whatever the declared type


def test_deep_json_in_an_uploaded_file_is_400(small_limits: TestClient) -> None:
    deep = b'{"resourceType": "Bundle", "entry": ' + b"[" * 200 + b"]" * 200 + b"}"
    resp = small_limits.post("/assess", files={"patient_file": ("p.json", deep)})
    assert resp.status_code == 400 and resp.json()["error"] == "json_too_deep"


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


_scalars = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(alphabet='[]{}"\\ab\n,:\u00e9', max_size=8)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4), inner, max_size=3), max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(value=_json, limit=st.integers(min_value=0, max_value=8))
def test_the_depth_check_agrees_with_the_parsed_depth(value: Any, limit: int) -> None:
    """Brackets, quotes and backslashes inside strings never fool the byte-level depth check."""
    assert json_too_deep(orjson.dumps(value), limit) == (_depth(value) > limit)


def test_the_sample_cds_calls_pass_the_default_depth_limit() -> None:
    for name in ("patient_view", "order_select", "order_sign"):
        assert not json_too_deep(orjson.dumps(samples.load(name)), Settings().max_json_depth)


# ------------------------------------------------------------------------------------------
# CPU-heavy work: off the event loop, bounded, 503 when saturated
# ------------------------------------------------------------------------------------------
def _run_concurrently(app: Any, blocked: threading.Event, heavy: Any, light: Any) -> tuple[Any, Any, float, bool]:
    """Start ``heavy`` (which blocks until ``blocked`` is set, at most 10 s), then ``light``: returns both
    answers, the seconds from starting ``heavy`` until ``light`` was answered, and whether ``heavy`` was
    still running then. Were ``heavy`` blocking the event loop, nothing else would run for 10 s."""
    import time

    import httpx

    async def main() -> tuple[Any, Any, float, bool]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=30) as c:
            started = time.monotonic()
            first = asyncio.create_task(heavy(c))
            await asyncio.sleep(0.3)
            second = await light(c)
            elapsed = time.monotonic() - started
            still_running = not first.done()
            blocked.set()
            return await first, second, elapsed, still_running

    return asyncio.run(main())


def test_a_cds_analysis_of_a_chart_above_the_inline_size_runs_off_the_event_loop(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ipexrx.service.cds import engine

    release = threading.Event()
    real = engine._analyse

    def slow(*args: Any) -> Any:
        release.wait(10)
        return real(*args)

    monkeypatch.setattr(engine, "_analyse", slow)
    engine._analysis_cache.clear()  # a chart judged before would be answered from the cache
    body = samples.load("patient_view")
    size = len(json.dumps(body))
    # the sample is an ordinary chart; a limit below its size makes it "large"
    app = create_app(Settings(dev_mode=True, database_url=db_url, auto_migrate=False,
                              inline_analysis_bytes=size // 2))

    first, second, elapsed, still_running = _run_concurrently(
        app, release, lambda c: c.post("/cds-services/ipexrx-patient-view", json=body),
        lambda c: c.get("/api/v1/version"))
    assert second.status_code == 200 and elapsed < 3.0 and still_running  # answered during the analysis
    assert first.status_code == 200 and first.json()["cards"]


@pytest.mark.parametrize(("limit", "pooled"), [(0, True), (2**20, False)])
def test_an_ordinary_cds_chart_is_judged_on_the_event_loop_and_a_large_one_on_the_pool(
        db_url: str, limit: int, pooled: bool) -> None:
    from ipexrx.service.cds import engine

    engine._analysis_cache.clear()
    app = create_app(Settings(dev_mode=True, database_url=db_url, auto_migrate=False, inline_analysis_bytes=limit))
    used: list[str] = []
    with TestClient(app) as c:
        pool = app.state.analysis_pool
        real_run = pool.run

        async def counting_run(fn: Any, *args: Any, **kwargs: Any) -> Any:
            used.append(fn.__name__)
            return await real_run(fn, *args, **kwargs)

        pool.run = counting_run
        r = c.post("/cds-services/ipexrx-patient-view", json=samples.load("patient_view"))
    assert r.status_code == 200 and r.json()["cards"]
    assert used == (["evaluate"] if pooled else [])


def test_a_saturated_analysis_pool_answers_503_with_retry_after(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ipexrx.service import api

    release = threading.Event()
    real = api.run_assessment

    def slow(*args: Any) -> Any:
        release.wait(10)
        return real(*args)

    monkeypatch.setattr(api, "run_assessment", slow)
    app = create_app(Settings(dev_mode=True, database_url=db_url, auto_migrate=False, analysis_threads=1,
                              analysis_queue=0))
    patient = {"diagnosis": {"type": "ipex"}, "medications": [{"drug": "tacrolimus"}]}
    first, second, _, _ = _run_concurrently(app, release, lambda c: c.post("/api/v1/assess", json=patient),
                                            lambda c: c.post("/api/v1/assess", json=patient))
    assert second.status_code == 503 and second.headers["retry-after"].isdigit()
    assert second.json()["error"] == "busy"
    assert first.status_code == 200
    assert app.state.analysis_pool.admitted == 0  # every place given back


# ------------------------------------------------------------------------------------------
# Reports read in read-only transactions
# ------------------------------------------------------------------------------------------
def test_the_analytics_report_holds_no_write_lock_while_it_is_built(tmp_path: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """While the (slow) report is being built, another connection can still take the SQLite write lock."""
    import sqlite3

    from ipexrx.registry import SYSTEM, Registry, ops

    path = tmp_path / "registry.sqlite3"
    reg = Registry(f"sqlite:///{path}")
    ops.load_demo(reg, SYSTEM, n_patients=12, n_centres=2)
    real = ops.build_report
    writer_could_lock: list[bool] = []

    def build_and_probe(*args: Any) -> Any:
        report = real(*args)  # the report's transaction has read by now, and is still open
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            writer_could_lock.append(True)
        except sqlite3.OperationalError:
            writer_could_lock.append(False)
        finally:
            other.close()
        return report

    monkeypatch.setattr(ops, "build_report", build_and_probe)
    report = ops.analytics_report(reg, SYSTEM)
    assert report.patients == 12 and writer_could_lock == [True]
    from sqlalchemy import select

    from ipexrx.registry.models import AuditEntry

    with reg.tx() as s:  # the report is still audited, in its own (write) transaction after the read
        assert "analytics" in set(s.scalars(select(AuditEntry.action)))
    reg.close()
