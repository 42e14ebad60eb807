"""CDS Hooks 2.0 completeness (issue 16 item 3): suggestion uuids and isRecommended, actions in the
spec's form, no systemActions, smart and absolute links, coded override reasons checked on feedback,
the feedback report (library and `ipexrx cds feedback --report`), prefetch tokens."""

from __future__ import annotations

import copy
import json
import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ipexrx.cli import get_app
from ipexrx.service.cds import samples
from ipexrx.service.cds.cards import OVERRIDE_REASONS
from ipexrx.service.cds.models import ServiceResponse

SIGN = "/cds-services/ipexrx-order-sign"
VIEW = "/cds-services/ipexrx-patient-view"
BASE = "http://testserver"


def _sign_with_mmr() -> dict[str, Any]:
    """order-sign: the sample drafts (cyclosporine beside current tacrolimus, voriconazole...) plus a
    drafted MMR vaccine, so the live-vaccine card offers to remove either the vaccine or cyclosporine."""
    body = copy.deepcopy(samples.load("order_sign"))
    subject = body["context"]["draftOrders"]["entry"][0]["resource"]["subject"]
    body["context"]["draftOrders"]["entry"].append({"resource": {
        "resourceType": "MedicationRequest", "id": "draft-mmr", "status": "draft", "intent": "order",
        "subject": subject, "medicationCodeableConcept": {
            "coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "03"}], "text": "MMR vaccine"}}})
    return body


def _cards(client: TestClient, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    resp = client.post(path, json=body)
    assert resp.status_code == 200, resp.text
    ServiceResponse.model_validate(resp.json())  # the whole response, strictly
    return list(resp.json()["cards"])


def test_every_suggestion_has_a_uuid_and_a_spec_form_action(dev_client: TestClient) -> None:
    cards = _cards(dev_client, SIGN, _sign_with_mmr())
    suggestions = [s for c in cards for s in c.get("suggestions", [])]
    assert len(suggestions) >= 3
    uuids = [s["uuid"] for s in suggestions]
    assert len(set(uuids)) == len(uuids)
    for s in suggestions:
        uuid.UUID(s["uuid"])
        for a in s["actions"]:
            assert a["type"] in {"create", "update", "delete"} and a["description"]
            if a["type"] == "delete":
                assert re.fullmatch(r"MedicationRequest/[A-Za-z0-9\-.]+", a["resourceId"])
            else:
                assert a["resource"]["resourceType"]


def test_suggestion_uuids_are_stable_within_a_hook_instance_and_differ_across(dev_client: TestClient) -> None:
    body = _sign_with_mmr()
    first = [s["uuid"] for c in _cards(dev_client, SIGN, body) for s in c.get("suggestions", [])]
    again = [s["uuid"] for c in _cards(dev_client, SIGN, body) for s in c.get("suggestions", [])]
    other = [s["uuid"] for c in _cards(dev_client, SIGN, {**body, "hookInstance": str(uuid.uuid4())})
             for s in c.get("suggestions", [])]
    assert first == again and not set(first) & set(other)


def test_the_live_vaccine_draft_is_the_recommended_removal_beside_an_immunosuppressant(
        dev_client: TestClient) -> None:
    cards = _cards(dev_client, SIGN, _sign_with_mmr())
    live = next(c for c in cards if "Live vaccine" in c["summary"])
    by_target = {s["actions"][0]["resourceId"]: s for s in live["suggestions"]}
    assert set(by_target) == {"MedicationRequest/draft-mmr", "MedicationRequest/draft-csa"}
    assert by_target["MedicationRequest/draft-mmr"]["isRecommended"] is True
    assert "isRecommended" not in by_target["MedicationRequest/draft-csa"]
    assert live["selectionBehavior"] == "at-most-one"


def test_a_single_option_is_not_marked_recommended(dev_client: TestClient) -> None:
    cards = _cards(dev_client, SIGN, samples.load("order_sign"))
    dup = next(c for c in cards if c.get("suggestions"))
    assert len(dup["suggestions"]) == 1 and "isRecommended" not in dup["suggestions"][0]


def test_no_system_actions_are_sent_and_the_response_schema_refuses_invented_action_types(
        dev_client: TestClient) -> None:
    for name, path in (("order_sign", SIGN), ("patient_view", VIEW)):
        resp = dev_client.post(path, json=samples.load(name)).json()
        assert set(resp) == {"cards"}
    ok = {"cards": [], "systemActions": [{"type": "update", "description": "d",
                                          "resource": {"resourceType": "MedicationRequest"}}]}
    ServiceResponse.model_validate(ok)
    bad: dict[str, Any]
    for bad in ({"cards": [], "systemActions": [{"type": "cancel", "description": "d", "resourceId": "X/1"}]},
                {"cards": [], "systemActions": [{"type": "delete", "description": "d"}]},
                {"cards": [], "systemActions": []}):
        with pytest.raises(ValueError):
            ServiceResponse.model_validate(bad)


def test_without_a_configured_smart_app_cards_carry_no_smart_link(dev_client: TestClient) -> None:
    cards = _cards(dev_client, VIEW, samples.load("patient_view"))
    assert cards and all(link["type"] != "smart" for card in cards for link in card["links"])
    assert all(any(link["type"] == "absolute" for link in card["links"]) for card in cards)


def test_cards_link_to_the_smart_app_with_the_drug_and_level_and_to_reference_pages(db_url: str) -> None:
    from ipexrx.service import Settings, create_app

    settings = Settings(dev_mode=True, database_url=db_url, auto_migrate=False, base_url=BASE,
                        smart_issuers=["https://ehr.example.org/fhir"], smart_client_id="ipexrx-app")
    with TestClient(create_app(settings), base_url=BASE) as dev_client:
        _check_smart_links(dev_client)


def _check_smart_links(dev_client: TestClient) -> None:
    cards = _cards(dev_client, VIEW, samples.load("patient_view"))
    trough = next(c for c in cards if "trough" in c["summary"].lower())
    smart = [link for link in trough["links"] if link["type"] == "smart"]
    assert len(smart) == 1 and smart[0]["url"] == f"{BASE}/smart/launch"
    ctx = json.loads(smart[0]["appContext"])
    assert ctx["drugs"] == ["tacrolimus"]
    assert any(lv["test"] == "tacrolimus-trough" and "ng/mL" in lv["result"] for lv in ctx["levels"])
    absolute = [link["url"] for link in trough["links"] if link["type"] == "absolute"]
    assert f"{BASE}/drugs/tacrolimus" in absolute
    for url in absolute:
        assert dev_client.get(url.removeprefix(BASE).split("#")[0]).status_code == 200
    for card in cards:  # every alert card has the app link; appContext only on smart links
        assert any(link["type"] == "smart" for link in card["links"])
        assert all("appContext" not in link for link in card["links"] if link["type"] == "absolute")


def _feedback(client: TestClient, *items: dict[str, Any]) -> Any:
    return client.post(SIGN + "/feedback", json={"feedback": [
        {"outcomeTimestamp": "2026-11-25T09:30:00Z", **it} for it in items]})


def test_override_reasons_are_coded_and_feedback_may_name_only_an_offered_one(dev_client: TestClient) -> None:
    cards = _cards(dev_client, SIGN, samples.load("order_sign"))
    warning = next(c for c in cards if c["indicator"] == "warning")
    info = next(c for c in cards if c["indicator"] == "info")
    assert "overrideReasons" not in info
    codes = {r["code"] for r in warning["overrideReasons"]}
    assert {"benefit-outweighs-risk", "already-addressed", "not-applicable"} <= codes
    assert all(r["system"] and r["code"] and r["display"] for r in warning["overrideReasons"])
    offered = warning["overrideReasons"][0]
    assert _feedback(dev_client, {"card": warning["uuid"], "outcome": "overridden",
                                  "overrideReason": {"reason": offered}}).json() == {"stored": 1}
    bad = _feedback(dev_client, {"card": warning["uuid"], "outcome": "overridden",
                                 "overrideReason": {"reason": {**offered, "code": "too-busy"}}})
    assert bad.status_code == 422
    assert bad.json()["issues"][0]["path"] == "$.feedback[0].overrideReason.reason"
    assert "benefit-outweighs-risk" in bad.json()["issues"][0]["expected"]
    on_info = _feedback(dev_client, {"card": info["uuid"], "outcome": "overridden",
                                     "overrideReason": {"reason": offered}})
    assert on_info.status_code == 422 and "offered none" in on_info.json()["issues"][0]["expected"]
    accepted_with_reason = _feedback(dev_client, {"card": warning["uuid"], "outcome": "accepted",
                                                  "overrideReason": {"reason": offered}})
    assert accepted_with_reason.status_code == 422


def test_feedback_report_counts_per_card_type_and_reason(dev_client: TestClient, db_url: str) -> None:
    from ipexrx.service.cds.feedback import feedback_report
    from ipexrx.storage import Database

    cards = _cards(dev_client, SIGN, samples.load("order_sign"))
    dup = next(c for c in cards if c.get("suggestions"))
    warnings = [c for c in cards if c["indicator"] == "warning"]
    reason = {c["code"]: c for c in warnings[0]["overrideReasons"]}
    assert _feedback(
        dev_client,
        {"card": dup["uuid"], "outcome": "accepted", "acceptedSuggestions": [{"id": dup["suggestions"][0]["uuid"]}]},
        {"card": warnings[0]["uuid"], "outcome": "overridden",
         "overrideReason": {"reason": reason["already-addressed"], "userComment": "levels checked twice weekly"}},
        {"card": warnings[1]["uuid"], "outcome": "overridden",
         "overrideReason": {"reason": reason["already-addressed"]}},
        {"card": warnings[1]["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-10-01T00:00:00Z"},
    ).status_code == 200
    rep = feedback_report(Database(db_url))
    assert rep["total"] == {"accepted": 1, "overridden": 3}
    types = {r["card_type"]: r for r in rep["by_card_type"]}
    assert types["duplication.two_calcineurin_inhibitors"] == {
        "card_type": "duplication.two_calcineurin_inhibitors", "accepted": 1, "overridden": 0}
    assert sum(r["overridden"] for r in rep["by_card_type"]) == 3
    assert rep["by_override_reason"] == [{"system": OVERRIDE_REASONS[0].system, "code": "already-addressed",
                                          "display": reason["already-addressed"]["display"], "count": 2}]
    assert rep["overridden_without_reason"] == 1

    runner = CliRunner()
    out = runner.invoke(get_app(), ["cds", "feedback", "--report", "--json", "--since", "2026-11-01",
                                    "--database", db_url])
    assert out.exit_code == 0, out.output
    since = json.loads(out.output)
    assert since["total"] == {"accepted": 1, "overridden": 2} and since["overridden_without_reason"] == 0
    text = runner.invoke(get_app(), ["cds", "feedback", "--report", "--database", db_url])
    assert text.exit_code == 0
    assert "1 accepted, 3 overridden" in text.output and "already-addressed" in text.output
    assert "duplication.two_calcineurin_inhibitors" in text.output
    bad = runner.invoke(get_app(), ["cds", "feedback", "--report", "--since", "last week", "--database", db_url])
    assert bad.exit_code == 2 and "2026-11-01" in bad.output


def test_prefetch_templates_fill_from_every_hook_context_and_draft_orders_are_no_token() -> None:
    """Every token in our templates is a root-level primitive context field that all three hooks
    define ({{context.patientId}}); draftOrders and selections are not prefetch tokens."""
    from ipexrx.service.cds.fhir import render_template
    from ipexrx.service.cds.services import PREFETCH

    used = {t for tpl in PREFETCH.values() for t in re.findall(r"\{\{([^}]*)\}\}", tpl)}
    assert used == {"context.patientId"}
    for name in ("patient_view", "order_select", "order_sign"):
        ctx = samples.load(name)["context"]
        for key, template in PREFETCH.items():
            filled = render_template(template, ctx)
            assert filled is not None and "{{" not in filled, (name, key)
            assert ctx["patientId"] in filled
    ctx = samples.load("order_sign")["context"]
    assert render_template("MedicationRequest/{{context.draftOrders}}", ctx) is None
    assert render_template("Patient/{{context.patientId}}", {**ctx, "patientId": "../Group/1"}) is None


def test_feedback_is_checked_only_against_the_calling_clients_own_cards(
        dev_client: TestClient, client: TestClient, auth: Any) -> None:
    """Both apps share one database: cards issued to the development client are unknown to the
    verified EHR, so its feedback on them reveals nothing about them (no 'offered none')."""
    cards = _cards(dev_client, SIGN, samples.load("order_sign"))
    info = next(c for c in cards if c["indicator"] == "info")
    item = {"card": info["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-25T09:30:00Z",
            "overrideReason": {"reason": OVERRIDE_REASONS[0].model_dump()}}
    path = SIGN + "/feedback"
    assert client.post(path, json={"feedback": [item]}, headers=auth(path)).status_code == 200
    assert _feedback(dev_client, item).status_code == 422


def test_two_drafted_calcineurin_inhibitors_are_offered_as_equal_options(dev_client: TestClient) -> None:
    body = copy.deepcopy(samples.load("order_sign"))
    meds = body["prefetch"]["medications"]["entry"]
    tac = next(e for e in meds if "tacrolimus" in json.dumps(e).lower())
    meds.remove(tac)
    body["context"]["draftOrders"]["entry"].append(
        {"resource": {**tac["resource"], "id": "draft-tac", "status": "draft"}})
    cards = _cards(dev_client, SIGN, body)
    dup = next(c for c in cards if "calcineurin" in c["summary"].lower() and c.get("suggestions"))
    assert {s["actions"][0]["resourceId"] for s in dup["suggestions"]} == {
        "MedicationRequest/draft-tac", "MedicationRequest/draft-csa"}
    assert not any("isRecommended" in s for s in dup["suggestions"])
