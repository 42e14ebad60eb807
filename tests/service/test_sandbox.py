"""The sandbox EHR (``ipexrx sandbox``): its FHIR server, its SMART authorization server and its chart,
driven in-process. The chart calls the real ipexrx CDS service (its TestClient stands in for the
network), with JWTs the service verifies against the sandbox's key exactly as in production."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi.testclient import TestClient

from ipexrx.service import Settings, create_app
from ipexrx.service.sandbox import CLIENT_ID, KID, create_sandbox_app
from ipexrx.service.sandbox.chart import apply_actions
from ipexrx.service.sandbox.client import issuer_config, new_key
from ipexrx.service.sandbox.pages import markdown
from ipexrx.storage import Database

BASE, APP = "http://127.0.0.1:8700", "http://127.0.0.1:8701"
FHIR = f"{BASE}/fhir"
CALLBACK = f"{APP}/smart/callback"
VERIFIER = "v" * 20 + "-._~" + "A1" * 12  # 48 characters of the RFC 7636 alphabet
PID = "ipex-boy-1"


@pytest.fixture()
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sandbox.sqlite3'}"


@pytest.fixture()
def ehr(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    key = new_key()
    settings = Settings(issuers=issuer_config(BASE, key, KID, FHIR), base_url=APP, database_url=db_url,
                        replay_dir=tmp_path / "replay", smart_issuers=[FHIR], smart_client_id=CLIENT_ID)
    with TestClient(create_app(settings), base_url=APP) as service:
        yield TestClient(create_sandbox_app(BASE, APP, key, http=service), base_url=BASE, follow_redirects=False)


def token_for(ehr: TestClient, patient: str = PID, scope: str = "patient/*.rs") -> dict[str, str]:
    token = ehr.app.state.sandbox.auth.issue_token(patient, [scope])  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token}"}


# --- FHIR server ---------------------------------------------------------------------------------------


def test_metadata_is_a_capability_statement_naming_the_smart_endpoints(ehr: TestClient) -> None:
    resp = ehr.get("/fhir/metadata")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/fhir+json")
    body = resp.json()
    assert body["resourceType"] == "CapabilityStatement" and body["fhirVersion"] == "4.0.1"
    uris = {e["url"]: e["valueUri"] for e in body["rest"][0]["security"]["extension"][0]["extension"]}
    assert uris == {"authorize": f"{BASE}/auth/authorize", "token": f"{BASE}/auth/token"}


def test_read_returns_the_patient_and_an_unknown_id_is_a_404_operation_outcome(ehr: TestClient) -> None:
    resp = ehr.get(f"/fhir/Patient/{PID}", headers=token_for(ehr))
    assert resp.status_code == 200 and resp.json()["id"] == PID and resp.json()["name"][0]["given"] == ["Leo"]
    missing = ehr.get("/fhir/Patient/nobody", headers=token_for(ehr))
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome" and missing.json()["issue"][0]["code"] == "not-found"
    assert ehr.get("/fhir/Basic/1", headers=token_for(ehr)).status_code == 404


def test_patient_data_needs_a_token_for_that_patient(ehr: TestClient) -> None:
    none = ehr.get(f"/fhir/Patient/{PID}")
    assert none.status_code == 401 and none.json()["issue"][0]["code"] == "login"
    assert "bearer" in none.headers["www-authenticate"].lower()
    other = ehr.get(f"/fhir/Patient/{PID}", headers=token_for(ehr, patient="ex-two-cni"))
    assert other.status_code == 403
    narrow = ehr.get(f"/fhir/Observation?patient={PID}", headers=token_for(ehr, scope="patient/Condition.rs"))
    assert narrow.status_code == 403


def test_search_by_patient_or_subject_returns_a_searchset_of_that_patients_resources(ehr: TestClient) -> None:
    labs = ehr.get(f"/fhir/Observation?patient={PID}&category=laboratory&_sort=-date&_count=200",
                   headers=token_for(ehr)).json()
    assert labs["resourceType"] == "Bundle" and labs["type"] == "searchset" and labs["total"] == 9
    assert all(e["resource"]["subject"]["reference"] == f"Patient/{PID}" for e in labs["entry"])
    assert all(e["resource"]["category"][0]["coding"][0]["code"] == "laboratory" for e in labs["entry"])
    dates = [e["resource"]["effectiveDateTime"] for e in labs["entry"]]
    assert dates == sorted(dates, reverse=True)
    vitals = ehr.get(f"/fhir/Observation?subject=Patient/{PID}&category=vital-signs", headers=token_for(ehr)).json()
    assert vitals["total"] == 3
    meds = ehr.get(f"/fhir/MedicationRequest?patient={PID}", headers=token_for(ehr)).json()
    assert {e["resource"]["id"] for e in meds["entry"]} == {"medrx-1", "medrx-2", "medrx-3"}
    imm = ehr.get(f"/fhir/Immunization?patient={PID}", headers=token_for(ehr)).json()
    assert imm["total"] == 1


def test_example_patients_observations_carry_a_category(ehr: TestClient) -> None:
    headers = token_for(ehr, patient="ex-two-cni")
    labs = ehr.get("/fhir/Observation?patient=ex-two-cni&category=laboratory", headers=headers).json()
    vitals = ehr.get("/fhir/Observation?patient=ex-two-cni&category=vital-signs", headers=headers).json()
    codes = {c["code"] for e in vitals["entry"] for c in e["resource"]["code"]["coding"]}
    assert codes == {"29463-7", "8480-6"} and labs["total"] == 5


def test_unsupported_or_unscoped_searches_are_400_with_what_was_expected(ehr: TestClient) -> None:
    unknown = ehr.get(f"/fhir/Observation?patient={PID}&code=1234-5", headers=token_for(ehr))
    assert unknown.status_code == 400 and "code" in unknown.json()["issue"][0]["diagnostics"]
    unscoped = ehr.get("/fhir/Observation", headers=token_for(ehr))
    assert unscoped.status_code == 400 and "patient=" in unscoped.json()["issue"][0]["diagnostics"]
    count = ehr.get(f"/fhir/Observation?patient={PID}&_count=-1", headers=token_for(ehr))
    assert count.status_code == 400 and "_count" in count.json()["issue"][0]["diagnostics"]


# --- SMART authorization server ------------------------------------------------------------------------


def authorize_params(**over: str) -> dict[str, str]:
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": CALLBACK,
              "scope": "launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs", "state": "st-1",
              "aud": FHIR, "code_challenge": create_s256_code_challenge(VERIFIER), "code_challenge_method": "S256"}
    params.update(over)
    return params


def consent(ehr: TestClient, decision: str = "allow", patient: str | None = PID, **over: str) -> Any:
    page = ehr.get("/auth/authorize", params=authorize_params(**over))
    assert page.status_code == 200, page.text
    pending = re.search(r'name="pending" value="([^"]+)"', page.text)
    assert pending is not None
    form = {"pending": pending.group(1), "decision": decision}
    if patient:
        form["patient"] = patient
    return ehr.post("/auth/authorize", data=form)


def code_of(resp: Any) -> str:
    assert resp.status_code == 303, resp.text
    query = parse_qs(urlsplit(resp.headers["location"]).query)
    assert query["state"] == ["st-1"]
    return query["code"][0]


def exchange(ehr: TestClient, code: str, verifier: str = VERIFIER, **over: str) -> Any:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "client_id": CLIENT_ID,
            "code_verifier": verifier}
    form.update(over)
    return ehr.post("/auth/token", data=form)


def test_smart_configuration_offers_pkce_s256_only(ehr: TestClient) -> None:
    conf = ehr.get("/fhir/.well-known/smart-configuration").json()
    assert conf["authorization_endpoint"] == f"{BASE}/auth/authorize"
    assert conf["token_endpoint"] == f"{BASE}/auth/token"
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert {"launch-ehr", "launch-standalone", "client-public", "permission-v2"} <= set(conf["capabilities"])


def test_standalone_launch_picks_a_patient_and_the_verified_code_gives_a_patient_token(ehr: TestClient) -> None:
    page = ehr.get("/auth/authorize", params=authorize_params())
    assert "Leo Example" in page.text and 'type="radio"' in page.text and 'id="deny"' in page.text
    assert "read and search the patient&#39;s Observation records (<code>patient/Observation.rs</code>)" in page.text
    assert "fhirUser" not in page.text  # not granted: the sandbox issues no ID token
    token = exchange(ehr, code_of(consent(ehr, patient="ex-post-hsct")))
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["token_type"] == "Bearer" and body["patient"] == "ex-post-hsct" and body["expires_in"] > 0
    assert set(body["scope"].split()) == {"launch/patient", "patient/Patient.rs", "patient/Observation.rs"}
    assert token.headers["cache-control"] == "no-store"
    read = ehr.get("/fhir/Patient/ex-post-hsct", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert read.status_code == 200


def test_a_wrong_code_verifier_is_invalid_grant_and_uses_up_the_code(ehr: TestClient) -> None:
    code = code_of(consent(ehr))
    wrong = exchange(ehr, code, verifier="w" * 48)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert "code_verifier" in wrong.json()["error_description"]
    assert exchange(ehr, code).json()["error"] == "invalid_grant"  # the right one comes too late


def test_a_code_is_used_once(ehr: TestClient) -> None:
    code = code_of(consent(ehr))
    assert exchange(ehr, code).status_code == 200
    again = exchange(ehr, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_an_expired_code_or_another_redirect_uri_is_invalid_grant(ehr: TestClient) -> None:
    code = code_of(consent(ehr))
    ehr.app.state.sandbox.auth.codes[code].expires = time.time() - 1  # type: ignore[attr-defined]
    assert exchange(ehr, code).json()["error"] == "invalid_grant"
    other = exchange(ehr, code_of(consent(ehr)), redirect_uri=f"{APP}/elsewhere")
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant"
    grant = exchange(ehr, code_of(consent(ehr)), grant_type="password")
    assert grant.json()["error"] == "unsupported_grant_type"


def test_denied_consent_returns_access_denied_to_the_redirect_uri(ehr: TestClient) -> None:
    resp = consent(ehr, decision="deny")
    assert resp.status_code == 303
    location = resp.headers["location"]
    assert location.startswith(CALLBACK + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["error"] == ["access_denied"] and query["state"] == ["st-1"] and "code" not in query


def test_an_unregistered_redirect_uri_or_client_gets_a_page_never_a_redirect(ehr: TestClient) -> None:
    bad = ehr.get("/auth/authorize", params=authorize_params(redirect_uri="https://evil.example/cb"))
    assert bad.status_code == 400 and "location" not in bad.headers and "not registered" in bad.text
    client = ehr.get("/auth/authorize", params=authorize_params(client_id="someone-else"))
    assert client.status_code == 400 and "location" not in client.headers


@pytest.mark.parametrize(("over", "expected"), [
    ({"code_challenge_method": "plain"}, "S256"),
    ({"code_challenge": ""}, "PKCE"),
    ({"aud": "https://fhir.elsewhere.example/r4"}, "aud"),
    ({"response_type": "token"}, "response_type"),
])
def test_an_authorization_request_without_pkce_s256_or_the_right_aud_is_refused(
        ehr: TestClient, over: dict[str, str], expected: str) -> None:
    resp = ehr.get("/auth/authorize", params=authorize_params(**over))
    assert resp.status_code == 303
    query = parse_qs(urlsplit(resp.headers["location"]).query)
    assert query["error"] == ["invalid_request"] and expected in query["error_description"][0]


def test_an_ehr_launch_names_the_patient_and_hands_on_the_cards_app_context(ehr: TestClient) -> None:
    launch = ehr.app.state.sandbox.auth.new_launch("ex-two-cni", '{"rule":"x","drugs":["tacrolimus"]}')  # type: ignore[attr-defined]
    page = ehr.get("/auth/authorize", params=authorize_params(scope="launch patient/Patient.rs", launch=launch))
    assert page.status_code == 200 and 'type="radio"' not in page.text and "Two-Calcineurin Example" in page.text
    pending = re.search(r'name="pending" value="([^"]+)"', page.text)
    assert pending is not None
    code = code_of(ehr.post("/auth/authorize", data={"pending": pending.group(1), "decision": "allow"}))
    body = exchange(ehr, code).json()
    assert body["patient"] == "ex-two-cni" and body["appContext"] == '{"rule":"x","drugs":["tacrolimus"]}'
    reused = ehr.get("/auth/authorize", params=authorize_params(scope="launch patient/Patient.rs", launch=launch))
    assert parse_qs(urlsplit(reused.headers["location"]).query)["error"] == ["invalid_request"]


# --- the chart -------------------------------------------------------------------------------------------


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m is not None
    return m.group(1)


def summaries(html: str, section: str = "view-cards") -> list[str]:
    part = html.split(f'id="{section}"', 1)[1]
    if section == "view-cards":
        part = part.split('id="orders"', 1)[0]
    return re.findall(r'<h3 id="card-[^"]+-title">([^<]+)</h3>', part)


def test_opening_a_chart_fires_patient_view_and_shows_cards_with_their_sources(ehr: TestClient) -> None:
    page = ehr.get(f"/chart/{PID}")
    assert page.status_code == 200
    shown = summaries(page.text)
    assert any("tacrolimus" in s.lower() and "trimethoprim" in s.lower() for s in shown), shown
    assert "from the ipexrx CDS service (patient-view hook" in page.text
    assert 'Source: <a href="http://127.0.0.1:8701/drugs/' in page.text
    assert "<strong>What to do:</strong>" in page.text  # the Markdown detail, rendered
    assert "Open the ipexrx app for this patient" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert "<script" not in page.text


def test_a_drafted_live_vaccine_gets_an_order_select_card_and_accepting_its_suggestion_removes_the_draft(
        ehr: TestClient, db_url: str) -> None:
    csrf = csrf_of(ehr.get(f"/chart/{PID}").text)
    page = ehr.post(f"/chart/{PID}/orders", data={"csrf": csrf, "choice": "vaccine:measles-mumps-rubella",
                                                  "dose": "", "unit": "mg", "frequency": "1"},
                    follow_redirects=True)
    assert "from the ipexrx CDS service (order-select hook" in page.text
    shown = summaries(page.text, "order-checks")
    assert any(s.startswith("Live vaccine") for s in shown), shown
    assert re.search(r'<span class="draft">Measles, mumps and rubella', page.text)
    card = re.search(r'name="card" value="([^"]+)"><input type="hidden" name="suggestion" value="([^"]+)"',
                     page.text.split('id="order-checks"')[1])
    assert card is not None
    after = ehr.post(f"/chart/{PID}/accept", data={"csrf": csrf, "card": card.group(1), "suggestion": card.group(2)},
                     follow_redirects=True)
    assert ("Suggestion applied: removed the draft order for Measles, mumps and rubella vaccines (MMR and single "
            "components): one dose; feedback sent (accepted)") in after.text
    assert '<p id="drafts">No draft orders.</p>' in after.text
    assert "Accepted: Remove the draft order" in after.text
    ehr.app.state.sandbox.cds.http.app.state.cardlog.flush()  # type: ignore[attr-defined]
    rows = Database(db_url).query_feedback(card_uuid=card.group(1))
    assert [(r.outcome, list(r.accepted_suggestions)) for r in rows] == [("accepted", [card.group(2)])]


def test_overriding_a_card_sends_feedback_with_the_chosen_reason(ehr: TestClient, db_url: str) -> None:
    page = ehr.get(f"/chart/{PID}").text
    csrf = csrf_of(page)
    card = re.search(r'action="/chart/ipex-boy-1/override" class="override">\s*<input type="hidden" name="csrf" '
                     r'value="[^"]+"><input type="hidden" name="card" value="([^"]+)">\s*<label for="reason',
                     page)
    assert card is not None
    after = ehr.post(f"/chart/{PID}/override", data={"csrf": csrf, "card": card.group(1),
                                                    "reason": "specialist-decision", "comment": "Team agreed"},
                     follow_redirects=True)
    assert "Overridden: Decided with the IPEX / transplant team; feedback sent (overridden)." in after.text
    ehr.app.state.sandbox.cds.http.app.state.cardlog.flush()  # type: ignore[attr-defined]
    rows = Database(db_url).query_feedback(card_uuid=card.group(1))
    assert [(r.outcome, r.override_reason_code, r.user_comment) for r in rows] == [
        ("overridden", "specialist-decision", "Team agreed")]
    bad = ehr.post(f"/chart/{PID}/override", data={"csrf": csrf, "card": card.group(1), "reason": "made-up"},
                   follow_redirects=True)
    assert "Choose one of the card&#39;s reasons" in bad.text


def test_signing_fires_order_sign_and_signing_anyway_adds_the_orders_to_the_record(ehr: TestClient) -> None:
    csrf = csrf_of(ehr.get(f"/chart/{PID}").text)
    ehr.post(f"/chart/{PID}/orders", data={"csrf": csrf, "choice": "product:voriconazole-tablet", "dose": "100",
                                          "unit": "mg", "frequency": "2"})
    page = ehr.post(f"/chart/{PID}/sign", data={"csrf": csrf}, follow_redirects=True).text
    assert "from the ipexrx CDS service (order-sign hook" in page
    assert any("voriconazole" in s.lower() for s in summaries(page, "order-checks"))
    assert 'id="sign-anyway"' in page
    signed = ehr.post(f"/chart/{PID}/sign", data={"csrf": csrf, "confirm": "1"}, follow_redirects=True).text
    assert "1 order signed and added to the record." in signed
    meds = ehr.get(f"/fhir/MedicationRequest?patient={PID}&status=active", headers=token_for(ehr)).json()
    signed_orders = [e["resource"] for e in meds["entry"] if e["resource"]["id"].startswith("signed-")]
    assert len(signed_orders) == 1
    assert signed_orders[0]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] == {
        "value": 100.0, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}


def test_an_unusable_dose_is_a_clear_message_and_no_draft(ehr: TestClient) -> None:
    csrf = csrf_of(ehr.get(f"/chart/{PID}").text)
    page = ehr.post(f"/chart/{PID}/orders", data={"csrf": csrf, "choice": "product:tacrolimus-ir-capsule",
                                                 "dose": "lots", "unit": "mg", "frequency": "2"},
                    follow_redirects=True).text
    assert "The order was not drafted: The dose must be a number (e.g. 0.5); got “lots”." in page
    assert '<p id="drafts">No draft orders.</p>' in page
    none = ehr.post(f"/chart/{PID}/sign", data={"csrf": csrf}, follow_redirects=True).text
    assert "There is no draft order to sign." in none


def test_a_form_without_this_browsers_csrf_token_is_refused(ehr: TestClient) -> None:
    ehr.get(f"/chart/{PID}")
    resp = ehr.post(f"/chart/{PID}/orders", data={"csrf": "forged", "choice": "vaccine:varicella"})
    assert resp.status_code == 403 and "The form has expired" in resp.text


def test_an_unknown_patient_is_a_404_page(ehr: TestClient) -> None:
    resp = ehr.get("/chart/nobody")
    assert resp.status_code == 404 and "No such patient" in resp.text


def test_a_cards_smart_link_launches_the_app_with_the_fhir_base_and_a_launch_bound_to_the_card(
        ehr: TestClient) -> None:
    page = ehr.get(f"/chart/{PID}").text
    link = re.search(r'class="smart-link" href="([^"]+)"', page)
    assert link is not None
    resp = ehr.get(link.group(1).replace("&amp;", "&"))
    assert resp.status_code == 303
    target = urlsplit(resp.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{APP}/smart/launch"
    query = parse_qs(target.query)
    assert query["iss"] == [FHIR]
    launch = ehr.app.state.sandbox.auth.launches[query["launch"][0]]  # type: ignore[attr-defined]
    assert launch.patient == PID and launch.app_context and '"rule"' in launch.app_context
    assert ehr.get(f"/chart/{PID}/launch?card=unknown&link=0").status_code == 404


# --- pieces ----------------------------------------------------------------------------------------------


def test_suggestion_actions_create_update_and_delete_drafts() -> None:
    drafts: list[dict[str, Any]] = [{"resourceType": "MedicationRequest", "id": "d1", "status": "draft",
                                     "medicationCodeableConcept": {"text": "A"}}]
    done = apply_actions(drafts, [
        {"type": "create", "resource": {"resourceType": "MedicationRequest", "id": "d2",
                                        "medicationCodeableConcept": {"text": "B"}}},
        {"type": "update", "resource": {"resourceType": "MedicationRequest", "id": "d1",
                                        "medicationCodeableConcept": {"text": "A2"}}},
    ], PID)
    assert [(d["id"], d["medicationCodeableConcept"]["text"], d["status"]) for d in drafts] == [
        ("d1", "A2", "draft"), ("d2", "B", "draft")]
    assert drafts[1]["subject"] == {"reference": f"Patient/{PID}"} and len(done) == 2
    apply_actions(drafts, [{"type": "delete", "resourceId": "MedicationRequest/d1"}], PID)
    assert [d["id"] for d in drafts] == ["d2"]
    with pytest.raises(ValueError, match="not among the draft orders"):
        apply_actions(drafts, [{"type": "delete", "resourceId": "MedicationRequest/medrx-1"}], PID)
    assert [d["id"] for d in drafts] == ["d2"]  # nothing changed by a refused suggestion


def test_card_markdown_is_shown_without_any_markup_from_the_card() -> None:
    html = str(markdown("**What to do:** stop <script>alert(1)</script> &lt;b&gt;\n\n"
                        "- [a source](https://doi.org/10.1/x) and [bad](javascript:alert(1))\n- `code <i>`"))
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;" in html
    assert '<a href="https://doi.org/10.1/x" rel="noopener noreferrer">a source</a>' in html
    assert 'href="javascript' not in html and "<strong>What to do:</strong>" in html
    assert "<code>code &lt;i&gt;</code>" in html and html.count("<li>") == 2


def test_the_service_started_by_the_command_trusts_the_sandbox_and_nothing_else(tmp_path: Path) -> None:
    import json

    from ipexrx.cli.sandbox import service_env

    env = service_env(BASE, APP, new_key(), "sqlite:///x.db")
    settings = Settings.from_env(env)
    assert list(settings.issuers) == [BASE] and settings.issuers[BASE].fhir_servers == [FHIR]
    assert settings.issuers[BASE].algorithms == ["ES384"] and not settings.dev_mode
    assert settings.smart_issuers == [FHIR] and settings.smart_client_id == CLIENT_ID
    assert settings.base_url == APP and json.loads(str(env["IPEXRX_SMART_ISSUERS"])) == [FHIR]


def test_sandbox_pages_have_no_internal_ids_or_banned_words(ehr: TestClient) -> None:
    """The chart (with patient-view and order cards), the patient list and the consent page, as a reader sees them."""
    from tests.test_plain_words import problems, visible_text

    csrf = csrf_of(ehr.get(f"/chart/{PID}").text)
    ehr.post(f"/chart/{PID}/orders", data={"csrf": csrf, "choice": "vaccine:varicella"})
    pages = {"/": ehr.get("/").text, "chart": ehr.get(f"/chart/{PID}").text,
             "consent": ehr.get("/auth/authorize", params=authorize_params()).text}
    for name, html in pages.items():
        assert problems(visible_text(html)) == [], name


def test_a_chart_says_so_when_the_cds_service_cannot_be_reached(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens once the socket is closed
    sandbox = TestClient(create_sandbox_app(BASE, f"http://127.0.0.1:{closed}", new_key()), base_url=BASE)
    page = sandbox.get(f"/chart/{PID}")
    assert page.status_code == 200
    assert f"Decision support is unavailable: the CDS service at http://127.0.0.1:{closed} could not be reached" \
        in page.text
    assert "No answer from the CDS service." in page.text and "<article" not in page.text


def test_the_command_refuses_one_port_for_both_servers_and_a_busy_port() -> None:
    from typer.testing import CliRunner

    from ipexrx.cli import get_app

    same = CliRunner().invoke(get_app(), ["sandbox", "--port", "8750", "--app-port", "8750"])
    assert same.exit_code == 2 and "--port and --app-port must differ" in same.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = CliRunner().invoke(get_app(), ["sandbox", "--port", str(port), "--app-port", "8751"])
    assert taken.exit_code == 1 and f"cannot listen on 127.0.0.1:{port} (--port)" in taken.output
