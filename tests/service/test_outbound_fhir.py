"""Outbound FHIR requests (SSRF and token forwarding): only servers listed for the calling issuer are
contacted, at vetted addresses, without following redirects, within a byte and time budget.

Each target is a real TCP listener on loopback that counts the connections it receives, so "refused
before any connection is made" is observed, not assumed."""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ipexrx.service import Settings, create_app
from ipexrx.service.cds import samples
from ipexrx.service.cds.outbound import NOT_ALLOWED

BASE = "http://testserver"
ISSUER = "https://ehr.example.org"
OTHER_ISSUER = "https://other-ehr.example.org"
PATH = "/cds-services/ipexrx-patient-view"
TOKEN = "fhir-access-token-that-must-stay-home-0123456789"
EMPTY_BUNDLE = {"resourceType": "Bundle", "type": "searchset", "entry": []}

Responder = Callable[["Listener", socket.socket, bytes], None]


def http_answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {"Content-Type": "application/fhir+json"}).items())
    return head.encode() + b"\r\n" + body


def json_answer(listener: Listener, conn: socket.socket, request: bytes) -> None:
    conn.sendall(http_answer(200, json.dumps(listener.document).encode()))


class Listener:
    """A TCP server on a free loopback port, in a thread, counting connections and keeping each
    request head; ``respond`` writes the answer."""

    def __init__(self, respond: Responder = json_answer, document: Any = None):
        self.respond = respond
        self.document = document if document is not None else EMPTY_BUNDLE
        self.connections = 0
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def url(self, path: str = "/fhir", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                self.requests.append(data)
                self.respond(self, conn, data)
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(timeout=2)


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture
def unlisted() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call_body(fhir_server: str) -> dict[str, Any]:
    body = copy.deepcopy(samples.load("patient_view"))
    del body["prefetch"]["medications"]  # the rules read it: it must be fetched
    body["fhirServer"] = fhir_server
    body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                 "scope": "user/*.read", "subject": "ipexrx"}
    return body


def app_for(db_url: str, jwks: dict[str, Any], fhir_servers: list[str], **extra: Any) -> TestClient:
    settings = Settings(issuers={ISSUER: {"jwks": jwks, "fhir_servers": fhir_servers},
                                 OTHER_ISSUER: {"jwks": jwks, "fhir_servers": []}},
                        database_url=db_url, auto_migrate=False, **extra)
    return TestClient(create_app(settings), base_url=BASE)


def signed(make_token: Any, iss: str = ISSUER) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(BASE + PATH, iss=iss)}"}


def test_unlisted_fhir_servers_get_no_connection_and_one_answer_whatever_the_target(
        db_url: str, jwks: dict[str, Any], make_token: Any, listener: Listener, unlisted: Listener) -> None:
    """Open port, closed port, cloud metadata address, private and public names: the same 412, and the
    open loopback port never sees a connection (no port scan, no token sent)."""
    targets = [unlisted.url(), f"http://127.0.0.1:{closed_port()}/fhir", unlisted.url(host="localhost"),
               "http://169.254.169.254/latest/meta-data", "https://10.0.0.7/fhir", "https://fhir.elsewhere.example/r4",
               listener.url("/fhir-other"), listener.url("/fhir/../admin")]
    answers = []
    with app_for(db_url, jwks, [listener.url()]) as c:
        for target in targets:
            resp = c.post(PATH, json=call_body(target), headers=signed(make_token))
            answers.append((resp.status_code, resp.headers["content-type"], resp.content))
    assert unlisted.connections == 0 and listener.connections == 0
    assert len(set(answers)) == 1, answers
    status, _ctype, content = answers[0]
    assert status == 412
    assert NOT_ALLOWED in json.loads(content)["issue"][0]["details"]["text"]
    assert TOKEN.encode() not in content


def test_a_listed_server_is_fetched_from_with_the_token(db_url: str, jwks: dict[str, Any], make_token: Any,
                                                       listener: Listener) -> None:
    with app_for(db_url, jwks, [listener.url() + "/"]) as c:  # listed with a trailing slash: same base
        resp = c.post(PATH, json=call_body(listener.url()), headers=signed(make_token))
    assert resp.status_code == 200, resp.text
    assert listener.connections >= 1
    assert all(f"Authorization: Bearer {TOKEN}".encode() in r for r in listener.requests)
    assert all(r.startswith(b"GET /fhir/") for r in listener.requests)


def test_a_server_listed_for_another_issuer_is_refused(db_url: str, jwks: dict[str, Any], make_token: Any,
                                                      listener: Listener) -> None:
    with app_for(db_url, jwks, [listener.url()]) as c:
        resp = c.post(PATH, json=call_body(listener.url()), headers=signed(make_token, OTHER_ISSUER))
    assert resp.status_code == 412 and listener.connections == 0


def test_development_mode_fetches_only_from_the_development_list(db_url: str, listener: Listener) -> None:
    settings = Settings(dev_mode=True, database_url=db_url, auto_migrate=False)
    with TestClient(create_app(settings), base_url=BASE) as c:
        resp = c.post(PATH, json=call_body(listener.url()))
    assert resp.status_code == 412 and listener.connections == 0
    settings = Settings(dev_mode=True, database_url=db_url, auto_migrate=False, dev_fhir_servers=[listener.url()])
    with TestClient(create_app(settings), base_url=BASE) as c:
        assert c.post(PATH, json=call_body(listener.url())).status_code == 200
    assert listener.connections >= 1


def test_redirects_are_not_followed(db_url: str, jwks: dict[str, Any], make_token: Any, unlisted: Listener) -> None:
    def redirect(_lst: Listener, conn: socket.socket, _req: bytes) -> None:
        conn.sendall(http_answer(302, b"", {"Location": unlisted.url("/fhir/MedicationRequest")}))

    listed = Listener(redirect)
    try:
        with app_for(db_url, jwks, [listed.url()]) as c:
            resp = c.post(PATH, json=call_body(listed.url()), headers=signed(make_token))
    finally:
        listed.close()
    assert resp.status_code == 412 and "302" in resp.text
    assert listed.connections >= 1 and unlisted.connections == 0


def test_paging_links_off_the_listed_base_are_not_followed(db_url: str, jwks: dict[str, Any], make_token: Any,
                                                          unlisted: Listener) -> None:
    page = {"resourceType": "Bundle", "type": "searchset", "entry": [],
            "link": [{"relation": "next", "url": unlisted.url("/fhir/MedicationRequest?page=2")}]}
    listed = Listener(document=page)
    try:
        with app_for(db_url, jwks, [listed.url()]) as c:
            resp = c.post(PATH, json=call_body(listed.url()), headers=signed(make_token))
    finally:
        listed.close()
    assert resp.status_code == 412 and unlisted.connections == 0


def _endless(_lst: Listener, conn: socket.socket, _req: bytes) -> None:
    """A chunked answer that never ends (no Content-Length): only a byte cap stops the reader."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b'{"resourceType": "Bundle", "entry": [' + b'{"resource": {"resourceType": "Basic"}},' * 1500
    try:
        while True:
            conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    except OSError:
        return


def _declared_huge(_lst: Listener, conn: socket.socket, _req: bytes) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: 60000000\r\n\r\n")
    try:
        conn.sendall(b"{" * 100_000)
    except OSError:
        return


@pytest.mark.parametrize("respond", [_endless, _declared_huge], ids=["streamed", "declared"])
def test_answers_are_capped_in_bytes(db_url: str, jwks: dict[str, Any], make_token: Any, respond: Responder) -> None:
    listed = Listener(respond)
    try:
        with app_for(db_url, jwks, [listed.url()], fhir_max_bytes=256 * 1024) as c:
            started = time.monotonic()
            resp = c.post(PATH, json=call_body(listed.url()), headers=signed(make_token))
            elapsed = time.monotonic() - started
    finally:
        listed.close()
    assert resp.status_code == 412 and "exceed" in resp.json()["issue"][0]["details"]["text"]
    assert elapsed < 3.0


def test_a_trickling_answer_is_cut_off_in_time(db_url: str, jwks: dict[str, Any], make_token: Any) -> None:
    def trickle(_lst: Listener, conn: socket.socket, _req: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: 100000\r\n\r\n")
        try:
            for _ in range(200):  # one byte every 0.1 s: each read is quick, the whole answer is not
                conn.sendall(b" ")
                time.sleep(0.1)
        except OSError:
            return

    listed = Listener(trickle)
    try:
        with app_for(db_url, jwks, [listed.url()], fhir_timeout=0.5) as c:
            started = time.monotonic()
            resp = c.post(PATH, json=call_body(listed.url()), headers=signed(make_token))
            elapsed = time.monotonic() - started
    finally:
        listed.close()
    assert resp.status_code == 412 and elapsed < 3.0


@pytest.fixture
def hospital_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """'fhir.hospital.test' resolves to loopback, as an internal name (or a rebinding attack) would."""
    import anyio

    from ipexrx.service.cds import outbound

    real = anyio.getaddrinfo

    async def fake(host: str, port: int, **kw: Any) -> Any:
        return await real("127.0.0.1" if host == "fhir.hospital.test" else host, port, **kw)

    monkeypatch.setattr(outbound.anyio, "getaddrinfo", fake)


def test_a_listed_name_resolving_to_a_private_address_needs_that_network_listed(
        db_url: str, jwks: dict[str, Any], make_token: Any, listener: Listener, hospital_dns: None) -> None:
    url = listener.url(host="fhir.hospital.test")
    with app_for(db_url, jwks, [url], fhir_allow_http=True) as c:
        resp = c.post(PATH, json=call_body(url), headers=signed(make_token))
    assert resp.status_code == 412 and "address is not allowed" in resp.text
    assert listener.connections == 0
    with app_for(db_url, jwks, [url], fhir_allow_http=True, fhir_private_networks=["127.0.0.0/8"]) as c:
        assert c.post(PATH, json=call_body(url), headers=signed(make_token)).status_code == 200
    assert listener.connections >= 1


def test_a_listed_name_that_does_not_resolve_is_412_not_500(db_url: str, jwks: dict[str, Any], make_token: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from ipexrx.service.cds import outbound

    async def no_such_name(host: str, port: int, **kw: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(outbound.anyio, "getaddrinfo", no_such_name)
    url = "https://fhir.gone.example/r4"
    with app_for(db_url, jwks, [url]) as c:
        resp = c.post(PATH, json=call_body(url), headers=signed(make_token))
    assert resp.status_code == 412 and "could not be read" in resp.text


def test_fhir_server_lists_are_checked_at_start_up(jwks: dict[str, Any]) -> None:
    for bad in ("ftp://fhir.example.org", "https://user@fhir.example.org/r4", "https://fhir.example.org/r4?x=1",
                "fhir.example.org/r4"):
        with pytest.raises(ValueError, match="FHIR server base URL"):
            Settings(issuers={ISSUER: {"jwks": jwks, "fhir_servers": [bad]}})
    s = Settings(issuers={ISSUER: {"jwks": jwks, "fhir_servers": ["HTTPS://FHIR.Example.org:443/r4/"]}})
    assert s.issuers[ISSUER].fhir_servers == ["https://fhir.example.org/r4"]
    with pytest.raises(ValueError, match="CIDR"):
        Settings(fhir_private_networks=["10.0.0.0/33"])
    env = Settings.from_env({"IPEXRX_DEV_FHIR_SERVERS": "http://127.0.0.1:8080/fhir, https://x.example/r4",
                             "IPEXRX_FHIR_PRIVATE_NETWORKS": "10.20.0.0/16", "IPEXRX_FHIR_MAX_BYTES": "2000000"})
    assert env.dev_fhir_servers == ["http://127.0.0.1:8080/fhir", "https://x.example/r4"]
    assert env.fhir_private_networks == ["10.20.0.0/16"] and env.fhir_max_bytes == 2_000_000


@pytest.mark.parametrize(("address", "allowed"), [
    ("93.184.215.14", True), ("2606:4700::1111", True), ("127.0.0.1", False), ("10.1.2.3", False),
    ("172.16.0.1", False), ("192.168.1.1", False), ("169.254.169.254", False), ("fe80::1", False), ("::1", False),
    ("fd00::1", False), ("100.64.0.1", False), ("0.0.0.0", False), ("::ffff:127.0.0.1", False), ("224.0.0.1", False),
])
def test_only_public_addresses_are_allowed_by_default(address: str, allowed: bool) -> None:
    import ipaddress

    from ipexrx.service.cds.outbound import address_allowed

    assert address_allowed(ipaddress.ip_address(address), set(), []) is allowed
    assert address_allowed(ipaddress.ip_address(address), {ipaddress.ip_address(address)}, []) is (
        allowed or address not in ("0.0.0.0", "224.0.0.1"))


@pytest.mark.parametrize("patient_id", ["../../admin/secrets", "p1?_count=100000", "p1&patient=other", "..",
                                        "p1%2F..%2Fother", "a" * 65])
def test_a_patient_id_that_is_not_a_fhir_id_never_reaches_the_fhir_server(
        db_url: str, jwks: dict[str, Any], make_token: Any, listener: Listener, patient_id: str) -> None:
    """The id goes into the request path and query: anything but a FHIR id could move the request (and
    the token) to another path or query on the listed server. Refused as a malformed context (422) or,
    should one reach the fetch, as a query that cannot be made (412); never sent."""
    body = call_body(listener.url())
    body["context"]["patientId"] = patient_id
    body["prefetch"]["patient"]["id"] = patient_id
    with app_for(db_url, jwks, [listener.url()]) as c:
        resp = c.post(PATH, json=body, headers=signed(make_token))
    assert resp.status_code in (412, 422) and "FHIR id" in resp.text, resp.text[:300]
    assert listener.connections == 0


def test_prefetch_templates_are_filled_only_with_fhir_ids() -> None:
    from ipexrx.service.cds.fhir import render_template

    assert render_template("Patient/{{context.patientId}}", {"patientId": "eq081-VQEgP8drUUqCWzHfw3"}) \
        == "Patient/eq081-VQEgP8drUUqCWzHfw3"
    assert render_template("Patient/{{context.patientId}}", {"patientId": 12345}) == "Patient/12345"
    for bad in ("../x", "a/b", "a?b", "a&b", "a%2Fb", "..", ".", "", "a" * 65, True, 1.5, None, ["a"]):
        assert render_template("Condition?patient={{context.patientId}}", {"patientId": bad}) is None, bad


def test_a_chart_with_fetched_data_is_judged_on_the_pool_however_small_the_request(
        db_url: str, listener: Listener) -> None:
    """A small request may bring a large chart: what the FHIR server sends is not bounded by the request's
    size (up to ``fhir_max_bytes``), so a chart with fetched data never runs on the event loop; the same
    chart sent whole in a small request is judged inline."""
    from ipexrx.service.cds import engine

    settings = Settings(dev_mode=True, database_url=db_url, auto_migrate=False, dev_fhir_servers=[listener.url()])
    used: list[str] = []
    with TestClient(create_app(settings), base_url=BASE) as c:
        pool = c.app.state.analysis_pool  # type: ignore[attr-defined]
        real_run = pool.run

        async def counting_run(fn: Any, *args: Any, **kwargs: Any) -> Any:
            used.append(fn.__name__)
            return await real_run(fn, *args, **kwargs)

        pool.run = counting_run
        engine._analysis_cache.clear()
        fetched = c.post(PATH, json=call_body(listener.url()))
        assert fetched.status_code == 200, fetched.text
        assert used == ["evaluate"] and listener.connections >= 1
        engine._analysis_cache.clear()
        whole = c.post(PATH, json=samples.load("patient_view"))
        assert whole.status_code == 200 and used == ["evaluate"]  # judged inline: the pool was not used again
