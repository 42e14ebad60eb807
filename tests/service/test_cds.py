"""CDS Hooks services end to end: discovery, hooks -> cards, prefetch fetched from a real FHIR
REST server on loopback (or 412), lenient reading of sloppy EHR FHIR, feedback stored and queried."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from ipexrx.service import Settings, create_app
from ipexrx.service.cds import samples

BASE = "http://testserver"
FHIR_TOKEN = "opaque-fhir-access-token-1234567890"


def payload(name: str) -> dict[str, Any]:
    return samples.load(name)


def summaries(resp: Any) -> list[str]:
    return [c["summary"] for c in resp.json()["cards"]]


# ------------------------------------------------------------------------------------------
# A small but real FHIR R4 REST server (read + search with paging), started on loopback.
# ------------------------------------------------------------------------------------------
class FhirStore:
    def __init__(self, resources: list[dict[str, Any]]):
        self.resources = resources
        self.requests: list[tuple[str, str | None]] = []
        self.fail_with: int | None = None
        self.delay = 0.0
        self.page_size = 5
        self.fail_types: set[str] = set()


def _make_handler(store: FhirStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            return

        def _send(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            store.requests.append((self.path, self.headers.get("Authorization")))
            if store.delay:
                time.sleep(store.delay)
            if self.headers.get("Authorization") != f"Bearer {FHIR_TOKEN}":
                self._send(401, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]})
                return
            if store.fail_with:
                self._send(store.fail_with, {"resourceType": "OperationOutcome",
                                             "issue": [{"severity": "error", "code": "exception"}]})
                return
            parts = urlsplit(self.path)
            segs = [s for s in parts.path.split("/") if s][1:]  # drop the "fhir" base segment
            if segs and segs[0] in store.fail_types:
                self._send(500, {"resourceType": "OperationOutcome",
                                 "issue": [{"severity": "error", "code": "exception"}]})
                return
            if len(segs) == 2:
                for r in store.resources:
                    if r["resourceType"] == segs[0] and r.get("id") == segs[1]:
                        self._send(200, r)
                        return
                self._send(404, {"resourceType": "OperationOutcome",
                                 "issue": [{"severity": "error", "code": "not-found"}]})
                return
            q = parse_qs(parts.query)
            rtype, pid = segs[0], q.get("patient", [""])[0]
            status = q.get("status", [None])[0]
            category = q.get("category", [None])[0]
            hits = [r for r in store.resources if r["resourceType"] == rtype
                    and (r.get("subject") or r.get("patient") or {}).get("reference") == f"Patient/{pid}"
                    and (status is None or r.get("status") == status)
                    and (category is None or category in json.dumps(r.get("category")))]
            offset = int(q.get("_offset", ["0"])[0])
            page = hits[offset:offset + store.page_size]
            bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(hits),
                                      "entry": [{"resource": r, "search": {"mode": "match"}} for r in page]}
            if offset + store.page_size < len(hits):
                address: Any = self.server.server_address
                host, port = address[0], address[1]
                nxt = f"http://{host}:{port}{parts.path}?patient={pid}&_offset={offset + store.page_size}"
                if status:
                    nxt += f"&status={status}"
                if category:
                    nxt += f"&category={category}"
                bundle["link"] = [{"relation": "next", "url": nxt}]
            self._send(200, bundle)

    return Handler


@pytest.fixture
def fhir_server() -> Iterator[tuple[str, FhirStore]]:
    pv = payload("patient_view")["prefetch"]
    resources = [pv["patient"]]
    for key in ("conditions", "medications", "medication_statements", "observations", "vital_signs", "procedures",
                "immunizations", "allergies"):
        resources += [e["resource"] for e in pv[key].get("entry", [])]
    store = FhirStore(resources)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(store))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fhir", store
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fhir_client(db_url: str, fhir_server: tuple[str, FhirStore]) -> Iterator[TestClient]:
    """A development-mode app that may fetch from the loopback FHIR server (listed explicitly)."""
    settings = Settings(dev_mode=True, database_url=db_url, auto_migrate=False, dev_fhir_servers=[fhir_server[0]])
    with TestClient(create_app(settings), base_url=BASE) as c:
        yield c


def with_fhir(body: dict[str, Any], url: str, drop: list[str]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    for key in drop:
        body["prefetch"].pop(key, None)
    body["fhirServer"] = url
    body["fhirAuthorization"] = {"access_token": FHIR_TOKEN, "token_type": "Bearer", "expires_in": 300,
                                 "scope": "user/*.read", "subject": "ipexrx"}
    return body


# ------------------------------------------------------------------------------------------
PREFETCH_TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "medications": "MedicationRequest?patient={{context.patientId}}",
    "medication_statements": "MedicationStatement?patient={{context.patientId}}",
    "observations": "Observation?patient={{context.patientId}}&category=laboratory&_sort=-date&_count=200",
    "vital_signs": "Observation?patient={{context.patientId}}&category=vital-signs&_sort=-date&_count=100",
    "procedures": "Procedure?patient={{context.patientId}}",
    "immunizations": "Immunization?patient={{context.patientId}}",
    "allergies": "AllergyIntolerance?patient={{context.patientId}}",
}


def test_discovery_lists_three_hooks_with_all_prefetch_templates(dev_client: TestClient) -> None:
    services = dev_client.get("/cds-services").json()["services"]
    assert sorted(s["hook"] for s in services) == ["order-select", "order-sign", "patient-view"]
    for s in services:
        assert s["prefetch"] == PREFETCH_TEMPLATES
        assert s["description"] and s["title"] and s["id"]
        assert "every patient" in s["description"] or "any patient" in s["description"]


def test_prefetch_templates_use_only_cds_hooks_tokens_and_plain_fhir_search() -> None:
    """CDS Hooks 2.0 prefetch tokens are {{context.<field>}} (and the user tokens); the query is a
    read or a type search with token equality, date prefixes, _sort and _count -- nothing computed."""
    import re

    from ipexrx.service.cds.services import PREFETCH

    allowed_params = {"patient", "category", "_sort", "_count"}
    for key, template in PREFETCH.items():
        tokens = re.findall(r"\{\{([^}]*)\}\}", template)
        assert tokens == ["context.patientId"], (key, tokens)
        path, _, query = template.partition("?")
        if not query:
            assert re.fullmatch(r"[A-Z][A-Za-z]+/\{\{context\.patientId\}\}", path), key
            continue
        assert re.fullmatch(r"[A-Z][A-Za-z]+", path), key
        for part in query.split("&"):
            name, _, value = part.partition("=")
            assert name in allowed_params, (key, name)
            if name == "_count":
                assert value.isdigit()
            if name == "_sort":
                assert value in ("-date", "date")
            if name == "category":
                assert value in ("laboratory", "vital-signs")


def test_patient_view_for_an_ipex_patient_returns_cited_cards(dev_client: TestClient) -> None:
    resp = dev_client.post("/cds-services/ipexrx-patient-view", json=payload("patient_view"))
    assert resp.status_code == 200
    cards = resp.json()["cards"]
    assert cards, "an IPEX patient on tacrolimus gets at least one card"
    for c in cards:
        assert "**Sources**" in c["detail"] and "/sources#src-" in c["detail"]
        assert c["source"]["url"].startswith(BASE + "/")


def _without_ipex(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["prefetch"]["conditions"]["entry"] = [e for e in body["prefetch"]["conditions"]["entry"]
                                               if "IPEX" not in e["resource"]["code"]["text"]]
    return body


def test_a_patient_without_ipex_gets_the_drug_safety_cards_and_no_ipex_plan(dev_client: TestClient) -> None:
    """The service sees every chart: drug safety runs for all; the IPEX plan never becomes a card, and
    every card says at the top that this chart has no IPEX diagnosis."""
    with_ipex = dev_client.post("/cds-services/ipexrx-order-sign", json=payload("order_sign")).json()["cards"]
    body = _without_ipex(payload("order_sign"))
    for svc in ("ipexrx-order-sign", "ipexrx-patient-view"):
        b = copy.deepcopy(body)
        if svc == "ipexrx-patient-view":
            b["hook"] = "patient-view"
            del b["context"]["draftOrders"]
        resp = dev_client.post(f"/cds-services/{svc}", json=b)
        assert resp.status_code == 200
        cards = resp.json()["cards"]
        assert cards, "a second calcineurin inhibitor / an azole with tacrolimus is a hazard in any chart"
        for c in cards:
            assert c["detail"].startswith("_Medication safety check only: no IPEX or IPEX-like diagnosis")
            assert "HSCT" not in c["summary"] and "IPEX" not in c["summary"], c["summary"]
            assert c["source"]["topic"]["code"] != "dosing.dosing_not_established"
        if svc == "ipexrx-order-sign":
            assert any("Two calcineurin inhibitors" in c["summary"] for c in cards)
            safety = {c["source"]["topic"]["code"] for c in with_ipex} - {"dosing.dosing_not_established"}
            assert {c["source"]["topic"]["code"] for c in cards} == safety  # the same checks as for IPEX
    assert all(c["detail"].startswith("_IPEX (FOXP3) chart") for c in with_ipex)


def test_cards_come_critical_first_then_warning_then_info(dev_client: TestClient) -> None:
    rank = {"critical": 0, "warning": 1, "info": 2}
    for name, svc in (("patient_view", "ipexrx-patient-view"), ("order_sign", "ipexrx-order-sign")):
        for body in (payload(name), _without_ipex(payload(name))):
            body["context"].get("draftOrders", {}).get("entry", []).append({"resource": {
                "resourceType": "MedicationRequest", "id": "draft-bad", "status": "draft", "intent": "order",
                "subject": {"reference": "Patient/ipex-boy-1"}, "dosageInstruction": "twice daily"}})
            cards = dev_client.post(f"/cds-services/{svc}", json=body).json()["cards"]
            order = [rank[c["indicator"]] for c in cards]
            assert order == sorted(order) and len(set(order)) >= 2, [c["indicator"] for c in cards]


def test_order_sign_flags_a_second_calcineurin_inhibitor_and_offers_to_delete_the_draft(dev_client: TestClient) -> None:
    cards = dev_client.post("/cds-services/ipexrx-order-sign", json=payload("order_sign")).json()["cards"]
    dup = [c for c in cards if c["source"]["topic"]["code"].startswith("duplication")]
    assert len(dup) == 1
    card = dup[0]
    assert card["indicator"] == "critical"
    assert "calcineurin" in card["summary"].lower()
    assert card["selectionBehavior"] == "at-most-one"
    (suggestion,) = card["suggestions"]
    assert suggestion["actions"] == [{"type": "delete", "resourceId": "MedicationRequest/draft-csa",
                                      "description": suggestion["actions"][0]["description"]}]
    assert "isRecommended" not in suggestion  # an option, never an order
    assert {r["code"] for r in card["overrideReasons"]} >= {"benefit-outweighs-risk", "specialist-decision"}


def test_order_hooks_only_report_alerts_about_the_draft_orders(dev_client: TestClient) -> None:
    pv = summaries(dev_client.post("/cds-services/ipexrx-patient-view", json=payload("patient_view")))
    sign = dev_client.post("/cds-services/ipexrx-order-sign", json=payload("order_sign")).json()["cards"]
    assert all("trough due" not in c["summary"] for c in sign)  # a monitoring reminder is not about the order
    assert any("trough" in s for s in pv)
    assert any("voriconazole" in c["summary"] for c in sign)


def test_order_select_judges_only_the_selected_orders(dev_client: TestClient) -> None:
    body = payload("order_select")
    texts = summaries(dev_client.post("/cds-services/ipexrx-order-select", json=body))
    assert any("voriconazole" in t for t in texts)
    assert not any("Two calcineurin inhibitors" in t for t in texts)  # the cyclosporine draft is not selected
    body["context"]["selections"] = ["MedicationRequest/draft-amox"]
    cards = dev_client.post("/cds-services/ipexrx-order-select", json=body).json()["cards"]
    # Amoxicillin has no IPEX content: one info card says so (never silence), nothing else is judged.
    assert [c["indicator"] for c in cards] == ["info"]
    assert "Amoxicillin" in cards[0]["summary"] and "not checked" in cards[0]["summary"]


def test_stu3_dose_fields_and_missing_bundle_type_and_intent_are_read(dev_client: TestClient) -> None:
    body = payload("order_sign")
    drafts = body["context"]["draftOrders"]
    assert "type" not in drafts  # as the hook library example and the sandbox send it
    csa = drafts["entry"][0]["resource"]
    assert "doseQuantity" in csa["dosageInstruction"][0]  # STU3 style
    del csa["intent"]
    resp = dev_client.post("/cds-services/ipexrx-order-sign", json=body)
    assert any("Two calcineurin inhibitors" in s for s in summaries(resp))
    assert not any("could not check" in s for s in summaries(resp))


def test_an_unreadable_draft_medication_order_gets_an_info_card(dev_client: TestClient) -> None:
    body = payload("order_sign")
    body["context"]["draftOrders"]["entry"].append({"resource": {
        "resourceType": "MedicationRequest", "id": "draft-bad", "status": "draft", "intent": "order",
        "subject": {"reference": "Patient/ipex-boy-1"}, "dosageInstruction": "twice daily"}})
    cards = dev_client.post("/cds-services/ipexrx-order-sign", json=body).json()["cards"]
    info = [c for c in cards if "could not check" in c["summary"]]
    assert len(info) == 1 and info[0]["indicator"] == "info"


def test_wrong_hook_missing_patient_and_foreign_prefetch_are_precise_4xx(dev_client: TestClient) -> None:
    body = payload("patient_view")
    resp = dev_client.post("/cds-services/ipexrx-order-sign", json=body)
    assert resp.status_code == 400 and resp.json()["issues"][0]["path"] == "$.hook"
    b = copy.deepcopy(body)
    del b["context"]["patientId"]
    resp = dev_client.post("/cds-services/ipexrx-patient-view", json=b)
    assert resp.status_code == 422 and resp.json()["issues"][0]["path"] == "$.context.patientId"
    b = copy.deepcopy(body)
    b["prefetch"]["patient"]["id"] = "someone-else"
    resp = dev_client.post("/cds-services/ipexrx-patient-view", json=b)
    assert resp.status_code == 422 and resp.json()["issues"][0]["path"] == "$.prefetch.patient.id"
    resp = dev_client.post("/cds-services/ipexrx-order-sign", json={**body, "hook": "order-sign"})
    assert resp.status_code == 422 and resp.json()["issues"][0]["path"] == "$.context.draftOrders"
    resp = dev_client.post("/cds-services/no-such-service", json=body)
    assert resp.status_code == 404 and "ipexrx-patient-view" in resp.json()["suggestions"]
    resp = dev_client.post("/cds-services/ipexrx-patient-view", content=b"{not json",
                           headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["issues"][0]["path"] == "$"


@pytest.mark.parametrize("raw", [b'{"hook": "patient-view", "weight": NaN}', b'{"hook": "patient-view"} trailing',
                                 b'\xff\xfe', b'{"a": "\\ud800"}'])
def test_bodies_that_are_not_strict_json_are_refused_with_400(dev_client: TestClient, raw: bytes) -> None:
    """CDS bodies are parsed with orjson: NaN literals, trailing data, bytes that are not UTF-8 and lone
    surrogates are refused, never half-read."""
    resp = dev_client.post("/cds-services/ipexrx-patient-view", content=raw,
                           headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["issues"][0]["path"] == "$"


def test_missing_prefetch_without_fhir_server_is_412_with_an_operation_outcome(dev_client: TestClient) -> None:
    body = payload("patient_view")
    del body["prefetch"]["medications"]
    resp = dev_client.post("/cds-services/ipexrx-patient-view", json=body)
    assert resp.status_code == 412
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "medications" in outcome["issue"][0]["diagnostics"]


def test_an_operation_outcome_in_prefetch_is_not_read_as_no_data(dev_client: TestClient) -> None:
    body = payload("patient_view")
    body["prefetch"]["medications"] = {"resourceType": "OperationOutcome",
                                       "issue": [{"severity": "error", "code": "timeout"}]}
    assert dev_client.post("/cds-services/ipexrx-patient-view", json=body).status_code == 412


def test_null_prefetch_means_no_data_not_missing(dev_client: TestClient) -> None:
    body = payload("patient_view")
    body["prefetch"]["immunizations"] = None
    assert dev_client.post("/cds-services/ipexrx-patient-view", json=body).status_code == 200


def test_missing_prefetch_is_fetched_from_the_fhir_server(fhir_client: TestClient,
                                                          fhir_server: tuple[str, FhirStore]) -> None:
    url, store = fhir_server
    full = fhir_client.post("/cds-services/ipexrx-patient-view", json=payload("patient_view")).json()
    body = with_fhir(payload("patient_view"), url, ["patient", "medications", "observations"])
    resp = fhir_client.post("/cds-services/ipexrx-patient-view", json=body)
    assert resp.status_code == 200
    assert resp.json() == full  # same cards as with full prefetch
    paths = [p for p, _ in store.requests]
    assert "/fhir/Patient/ipex-boy-1" in paths
    assert "/fhir/MedicationRequest?patient=ipex-boy-1" in paths  # every status: stopped drugs matter too
    assert any("_offset=5" in p for p in paths)  # 12 observations: the paging links were followed
    assert all(auth == f"Bearer {FHIR_TOKEN}" for _, auth in store.requests)
    assert not any(p.startswith("/fhir/Condition") for p in paths)  # prefetched keys are not fetched again


def test_everything_can_be_fetched_when_nothing_was_prefetched(fhir_client: TestClient,
                                                              fhir_server: tuple[str, FhirStore]) -> None:
    url, _store = fhir_server
    body = with_fhir(payload("order_sign"), url, [])
    del body["prefetch"]
    resp = fhir_client.post("/cds-services/ipexrx-order-sign", json=body)
    assert resp.status_code == 200
    assert any("Two calcineurin inhibitors" in s for s in summaries(resp))


@pytest.mark.parametrize("failure", ["http-500", "unauthorized", "down", "timeout"])
def test_fhir_server_failures_answer_412(db_url: str, fhir_server: tuple[str, FhirStore], failure: str) -> None:
    url, store = fhir_server
    body = with_fhir(payload("patient_view"), url, ["medications"])
    if failure == "http-500":
        store.fail_with = 500
    elif failure == "unauthorized":
        body["fhirAuthorization"]["access_token"] = "wrong-token"
    elif failure == "down":
        body["fhirServer"] = "http://127.0.0.1:9/fhir"  # discard port: nothing listens
    else:
        store.delay = 1.5
    settings = Settings(dev_mode=True, database_url=db_url, fhir_timeout=0.5, auto_migrate=False,
                        dev_fhir_servers=[url, "http://127.0.0.1:9/fhir"])
    with TestClient(create_app(settings), base_url=BASE) as c:
        started = time.monotonic()
        resp = c.post("/cds-services/ipexrx-patient-view", json=body)
        assert time.monotonic() - started < 3.0  # bounded
    assert resp.status_code == 412
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert FHIR_TOKEN not in resp.text


def test_plain_http_fhir_server_off_loopback_is_refused_even_when_listed(db_url: str) -> None:
    settings = Settings(dev_mode=True, database_url=db_url, auto_migrate=False,
                        dev_fhir_servers=["http://fhir.example.org/r4"])
    body = with_fhir(payload("patient_view"), "http://fhir.example.org/r4", ["medications"])
    with TestClient(create_app(settings), base_url=BASE) as c:
        resp = c.post("/cds-services/ipexrx-patient-view", json=body)
    assert resp.status_code == 412 and "https" in resp.json()["issue"][0]["details"]["text"]


def test_feedback_is_stored_and_queryable(client: TestClient, auth: Any) -> None:
    path = "/cds-services/ipexrx-order-sign"
    cards = client.post(path, json=payload("order_sign"), headers=auth(path)).json()["cards"]
    dup = next(c for c in cards if c.get("suggestions"))
    warned = next(c for c in cards if c["indicator"] == "warning")  # a card that offers override reasons
    fb = {"feedback": [
        {"card": dup["uuid"], "outcome": "accepted", "acceptedSuggestions": [{"id": dup["suggestions"][0]["uuid"]}],
         "outcomeTimestamp": "2026-11-25T09:30:00Z"},
        {"card": warned["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-25T09:31:00+01:00",
         "overrideReason": {"reason": warned["overrideReasons"][2], "userComment": "agreed at MDT"}},
    ]}
    resp = client.post(path + "/feedback", json=fb, headers=auth(path + "/feedback"))
    assert resp.status_code == 200 and resp.json() == {"stored": 2}
    q = "/api/v1/cds-feedback"
    rows = client.get(q, params={"service": "ipexrx-order-sign"}, headers=auth(q)).json()["feedback"]
    assert {r["outcome"] for r in rows} == {"accepted", "overridden"}
    over = next(r for r in rows if r["outcome"] == "overridden")
    assert over["overrideReason"]["code"] == "specialist-decision" and over["userComment"] == "agreed at MDT"
    assert over["outcomeTimestamp"] == "2026-11-25T08:31:00Z"  # normalised to UTC
    assert over["issuer"] == "https://ehr.example.org"
    accepted = next(r for r in rows if r["outcome"] == "accepted")
    assert accepted["rule"] == "duplication.two_calcineurin_inhibitors"  # traced through the issued-card log
    assert accepted["indicator"] == "critical" and "cyclosporine" in accepted["alert"]
    acc = client.get(q, params={"outcome": "accepted"}, headers=auth(q)).json()["feedback"]
    assert [r["acceptedSuggestions"] for r in acc] == [[dup["suggestions"][0]["uuid"]]]
    assert client.get(q).status_code == 401


def test_feedback_body_errors_are_located(dev_client: TestClient) -> None:
    resp = dev_client.post("/cds-services/ipexrx-order-sign/feedback",
                           json={"feedback": [{"card": "x", "outcome": "ignored", "outcomeTimestamp": "yesterday"}]})
    assert resp.status_code == 422
    paths = {i["path"] for i in resp.json()["issues"]}
    assert paths == {"$.feedback[0].outcome", "$.feedback[0].outcomeTimestamp"}


def test_cors_preflight_allows_authorization_from_any_origin(client: TestClient) -> None:
    resp = client.options("/cds-services/ipexrx-patient-view", headers={
        "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "POST" in resp.headers["access-control-allow-methods"]
    assert "authorization" in resp.headers["access-control-allow-headers"].lower()
    resp = client.get("/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert resp.headers["access-control-allow-origin"] == "*"  # also on the 401


def test_fhir_access_token_never_reaches_logs_or_error_bodies(fhir_client: TestClient, caplog: pytest.LogCaptureFixture,
                                                              fhir_server: tuple[str, FhirStore]) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    url, store = fhir_server
    body = with_fhir(payload("patient_view"), url, ["medications"])
    body["fhirAuthorization"]["expires_in"] = "soon"  # invalid: a 422 must not echo the block
    resp = fhir_client.post("/cds-services/ipexrx-patient-view", json=body)
    assert resp.status_code == 422 and FHIR_TOKEN not in resp.text
    store.fail_with = 503
    body["fhirAuthorization"]["expires_in"] = 300
    fhir_client.post("/cds-services/ipexrx-patient-view", json=body)
    assert FHIR_TOKEN not in caplog.text


def _negative_dose(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"][0]["doseQuantity"]["value"] = -50
    return body


def test_an_ipex_record_that_cannot_be_assessed_gets_a_warning_card_not_silence(dev_client: TestClient) -> None:
    resp = dev_client.post("/cds-services/ipexrx-order-sign", json=_negative_dose(payload("order_sign")))
    assert resp.status_code == 200
    (card,) = resp.json()["cards"]
    assert card["indicator"] == "warning" and "could not check" in card["summary"]
    # in clinical words: the draft order and its drug first (type and id after it for the integrator), then the
    # element in words with its FHIR name, then what it should be and what it is (no JSON path)
    order = payload("order_sign")["context"]["draftOrders"]["entry"][0]["resource"]
    drug = order["medicationCodeableConcept"]["text"]
    assert (f"- The draft order for {drug} (MedicationRequest {order['id']}): its dose (doseQuantity.value) should "
            "be a number more than 0; it is -50.0.") in card["detail"]
    assert "$." not in card["detail"] and "expected" not in card["detail"] and "dosageInstruction" not in card["detail"]
    assert card["summary"] == "ipexrx could not check this patient's medicines: 1 problem in the record"


def test_a_cannot_check_card_names_a_lab_result_by_its_test_and_its_value_in_words(dev_client: TestClient) -> None:
    """A tacrolimus trough of 8 entered in mg/L (meant ng/mL) is implausible: the card names the lab result by its
    test and says what the value should be and what it is."""
    body = payload("patient_view")
    obs = body["prefetch"]["observations"]["entry"][0]["resource"]
    obs["valueQuantity"] = {"value": 8, "unit": "mg/L", "system": "http://unitsofmeasure.org", "code": "mg/L"}
    (card,) = dev_client.post("/cds-services/ipexrx-patient-view", json=body).json()["cards"]
    assert "could not check" in card["summary"]
    test = obs["code"]["text"].replace("[", "\\[").replace("]", "\\]")  # Markdown-escaped in the detail
    assert (f"- The lab result for {test} (Observation {obs['id']}): its value (valueQuantity.value) should be a "
            "plausible tacrolimus trough") in card["detail"]
    assert "; it is 8 mg/L." in card["detail"]


def test_a_cannot_check_card_says_the_record_has_no_patient() -> None:
    """The HTTP route answers 412 when the prefetch has no Patient; the engine's card for a record without one
    still says so in words."""
    import datetime as dt

    from ipexrx.service.cds.engine import SERVICES, evaluate
    from ipexrx.service.cds.models import CdsRequest

    body = payload("patient_view")
    body["prefetch"]["patient"] = None
    svc = next(s for s in SERVICES.values() if s.hook == "patient-view")
    req = CdsRequest.model_validate(body)
    (card,) = [c for c, _ in evaluate(svc, req, dict(req.prefetch or {}), "https://ipexrx.example.org",
                                      dt.date(2026, 11, 25))]
    assert "could not check" in card["summary"]
    assert "- The record has no Patient resource.\n" in card["detail"]
    assert "entry" not in card["detail"] and "expected" not in card["detail"]


def test_a_draft_order_that_is_not_fhir_says_what_its_dose_should_be_in_words(dev_client: TestClient) -> None:
    body = payload("order_sign")
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["dosageInstruction"][0]["doseQuantity"]["value"] = "ten"
    cards = dev_client.post("/cds-services/ipexrx-order-sign", json=body).json()["cards"]
    (card,) = [c for c in cards if "could not check the draft order" in c["summary"]]
    assert ('**Why:** the order is not valid FHIR R4: its dose (doseQuantity.value) should be a number; it is "ten".'
            in card["detail"])


def test_a_non_ipex_record_that_cannot_be_assessed_gets_the_warning_card_too(dev_client: TestClient) -> None:
    """Drug safety runs for every chart, so a chart it cannot check is said to be unchecked, IPEX or not."""
    body = _negative_dose(payload("order_sign"))
    body["prefetch"]["conditions"]["entry"] = body["prefetch"]["conditions"]["entry"][1:]  # drop the IPEX Condition
    resp = dev_client.post("/cds-services/ipexrx-order-sign", json=body)
    assert resp.status_code == 200
    (card,) = resp.json()["cards"]
    assert card["indicator"] == "warning" and "could not check this patient's medicines" in card["summary"]


def test_an_ipex_patient_whose_patient_resource_is_unusable_gets_the_cannot_check_card(dev_client: TestClient) -> None:
    body = payload("patient_view")
    body["prefetch"]["patient"]["birthDate"] = "not-a-date"  # not valid FHIR: the Patient cannot be read
    resp = dev_client.post("/cds-services/ipexrx-patient-view", json=body)
    assert resp.status_code == 200
    (card,) = resp.json()["cards"]
    assert "could not check" in card["summary"]
    # the Patient is there but unreadable: the card says so, and why, in words
    pid = body["prefetch"]["patient"]["id"]
    assert (f"- The record has no Patient resource that can be read: the patient (Patient {pid}): its date of "
            "birth (birthDate) should be a FHIR date") in card["detail"]
    assert '; it is "not-a-date".' in card["detail"]
    body["prefetch"]["conditions"]["entry"] = body["prefetch"]["conditions"]["entry"][1:]  # not IPEX: same card
    (card,) = dev_client.post("/cds-services/ipexrx-patient-view", json=body).json()["cards"]
    assert "could not check" in card["summary"]


def test_openapi_still_describes_the_cds_request_body(dev_client: TestClient) -> None:
    """The service route reads its body itself (for speed); the document must still say what it takes."""
    spec = dev_client.get("/openapi.json").json()
    op = spec["paths"]["/cds-services/{service_id}"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/CdsRequest"}
    req = spec["components"]["schemas"]["CdsRequest"]
    assert {"hook", "hookInstance", "context"} <= set(req["required"])
    assert "FhirAuthorization" in spec["components"]["schemas"]


def test_a_body_not_declared_as_json_is_415_and_a_schema_violation_is_422_with_paths(dev_client: TestClient) -> None:
    body = payload("patient_view")
    resp = dev_client.post("/cds-services/ipexrx-patient-view", content=json.dumps(body),
                           headers={"Content-Type": "text/plain"})
    assert resp.status_code == 415 and "application/json" in resp.json()["message"]
    resp = dev_client.post("/cds-services/ipexrx-patient-view", content=json.dumps(body),
                           headers={"Content-Type": "application/fhir+json; charset=utf-8"})
    assert resp.status_code == 200
    resp = dev_client.post("/cds-services/ipexrx-patient-view", json={**body, "hookInstance": 42, "context": []})
    assert resp.status_code == 422
    assert {i["path"] for i in resp.json()["issues"]} == {"$.hookInstance", "$.context"}


def test_authentication_comes_before_reading_the_body(client: TestClient) -> None:
    resp = client.post("/cds-services/ipexrx-patient-view", content=b"{not json",
                       headers={"Content-Type": "application/json"})
    assert resp.status_code == 401 and resp.json() == {"error": "unauthorized"}


# ------------------------------------------------------------------------------------------
# Each prefetch key is read; a missing one is fetched or answered as the specification says.
# ------------------------------------------------------------------------------------------
def _statement(drug: str, rid: str = "ms-1") -> dict[str, Any]:
    return {"resourceType": "MedicationStatement", "id": rid, "status": "active",
            "subject": {"reference": "Patient/ipex-boy-1"}, "medicationCodeableConcept": {"text": drug},
            "effectiveDateTime": "2026-10-01"}


def test_every_prefetch_key_reaches_the_patient_reader() -> None:
    from ipexrx.patient.reader import load_record
    from ipexrx.service.cds.engine import assemble
    from ipexrx.service.cds.models import CdsRequest
    from ipexrx.service.cds.services import PREFETCH, SERVICES

    body = payload("patient_view")
    body["prefetch"]["medication_statements"]["entry"] = [{"resource": _statement("voriconazole")}]
    req = CdsRequest.model_validate(body)
    asm = assemble(SERVICES["ipexrx-patient-view"], req, dict(req.prefetch or {}))
    sent = {o.split(".")[2] for o in asm.origins}
    assert sent == set(PREFETCH)  # every key of the sample carries data and all of it is assembled
    record, warnings, _ = load_record(asm.bundle)
    assert any(m.drug == "voriconazole" for m in record.medications)  # MedicationStatement read
    assert record.demographics.weight_kg is not None  # the weight came from vital_signs
    allergy = [w for w in warnings if "AllergyIntolerance" in w.message]
    assert allergy and all("not used by the assessment" in w.message for w in allergy)  # accepted, named unused


def test_a_medication_statement_is_judged_like_an_order(dev_client: TestClient) -> None:
    body = payload("patient_view")
    before = summaries(dev_client.post("/cds-services/ipexrx-patient-view", json=body))
    body["prefetch"]["medication_statements"]["entry"] = [{"resource": _statement("clarithromycin")}]
    after = summaries(dev_client.post("/cds-services/ipexrx-patient-view", json=body))
    new = [s for s in after if s not in before]
    assert any("clarithromycin" in s for s in new), new


def test_the_latest_weight_in_vital_signs_is_what_the_rules_see(dev_client: TestClient) -> None:
    """Moving the weight out of vital_signs changes what can be judged (a per-kg dose range)."""
    body = payload("patient_view")
    with_weight = dev_client.post("/cds-services/ipexrx-patient-view", json=body).json()["cards"]
    body["prefetch"]["vital_signs"] = None  # the EHR says: no vital signs
    without = dev_client.post("/cds-services/ipexrx-patient-view", json=body)
    assert without.status_code == 200
    assert [c["summary"] for c in without.json()["cards"]] != [c["summary"] for c in with_weight]


@pytest.mark.parametrize("key", ["patient", "conditions", "medications", "medication_statements", "observations",
                                 "vital_signs", "procedures", "immunizations"])
def test_a_missing_key_the_rules_read_is_412_without_a_fhir_server(dev_client: TestClient, key: str) -> None:
    body = payload("patient_view")
    del body["prefetch"][key]
    resp = dev_client.post("/cds-services/ipexrx-patient-view", json=body)
    assert resp.status_code == 412, key
    assert resp.json()["resourceType"] == "OperationOutcome" and key in resp.json()["issue"][0]["diagnostics"]


def test_a_missing_allergy_list_is_not_a_412_because_the_rules_do_not_read_it(dev_client: TestClient) -> None:
    body = payload("patient_view")
    full = summaries(dev_client.post("/cds-services/ipexrx-patient-view", json=body))
    del body["prefetch"]["allergies"]
    resp = dev_client.post("/cds-services/ipexrx-patient-view", json=body)
    assert resp.status_code == 200 and summaries(resp) == full


def test_missing_new_keys_are_fetched_with_their_templates(fhir_client: TestClient,
                                                           fhir_server: tuple[str, FhirStore]) -> None:
    url, store = fhir_server
    full = fhir_client.post("/cds-services/ipexrx-patient-view", json=payload("patient_view")).json()
    body = with_fhir(payload("patient_view"), url, ["medication_statements", "vital_signs", "observations",
                                                    "allergies"])
    resp = fhir_client.post("/cds-services/ipexrx-patient-view", json=body)
    assert resp.status_code == 200 and resp.json() == full
    paths = [p for p, _ in store.requests]
    assert "/fhir/MedicationStatement?patient=ipex-boy-1" in paths
    assert "/fhir/Observation?patient=ipex-boy-1&category=vital-signs&_sort=-date&_count=100" in paths
    assert "/fhir/Observation?patient=ipex-boy-1&category=laboratory&_sort=-date&_count=200" in paths
    assert "/fhir/AllergyIntolerance?patient=ipex-boy-1" in paths  # fetched alongside the others


def test_an_allergy_fetch_that_fails_does_not_fail_the_call(fhir_client: TestClient,
                                                           fhir_server: tuple[str, FhirStore]) -> None:
    url, store = fhir_server
    full = fhir_client.post("/cds-services/ipexrx-patient-view", json=payload("patient_view")).json()
    store.fail_types = {"AllergyIntolerance"}
    body = with_fhir(payload("patient_view"), url, ["vital_signs", "allergies"])
    resp = fhir_client.post("/cds-services/ipexrx-patient-view", json=body)
    assert resp.status_code == 200 and resp.json() == full
    assert any(p.startswith("/fhir/AllergyIntolerance") for p, _ in store.requests)
    body = with_fhir(payload("patient_view"), url, ["medications"])
    store.fail_types = {"MedicationRequest"}  # a key the rules read: no answer without it
    assert fhir_client.post("/cds-services/ipexrx-patient-view", json=body).status_code == 412
