"""What the EHR sends is not trusted where it could do harm: a ``patientId`` that is not a FHIR id
(``../..``, slashes, query strings) never reaches a FHIR request path, and a drug name typed into
an order is shown back in a card only as short plain text."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ipexrx.service.cds import samples
from ipexrx.service.cds.cards import EHR_TEXT_MAX, plain_text
from ipexrx.service.cds.fhir import render_template


@pytest.mark.parametrize("pid", ["../../metadata", "..", "p/1", "x?_count=1000", "a b", "x" * 65, "ipex%2F..",
                                 "#frag"])
def test_a_patient_id_that_is_not_a_fhir_id_is_a_422(dev_client: TestClient, pid: str) -> None:
    body = samples.load("patient_view")
    body["context"]["patientId"] = pid
    r = dev_client.post("/cds-services/ipexrx-patient-view", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["issues"][0]["path"] == "$.context"
    assert "FHIR id" in r.json()["issues"][0]["expected"]


def test_a_well_formed_patient_id_is_accepted(dev_client: TestClient) -> None:
    body = samples.load("patient_view")
    assert dev_client.post("/cds-services/ipexrx-patient-view", json=body).status_code == 200


def test_templates_only_ever_receive_a_fhir_id() -> None:
    assert render_template("Patient/{{context.patientId}}", {"patientId": "ipex-boy-1"}) == "Patient/ipex-boy-1"


HOSTILE = ("cycloSPORINE 25 MG Oral Capsule <img src=x onerror=alert(1)>\u202e**cyclo**"
           "[click](https://evil.example)\u200b`x`\x07 " + "very long text " * 3)


def _sign_with_label(text: str) -> dict[str, Any]:
    body = copy.deepcopy(samples.load("order_sign"))
    for e in body["context"]["draftOrders"]["entry"]:
        if e["resource"].get("id") == "draft-csa":
            e["resource"]["medicationCodeableConcept"]["text"] = text
    return body


def test_raw_order_text_is_shown_back_only_as_short_plain_text(dev_client: TestClient) -> None:
    cards = dev_client.post("/cds-services/ipexrx-order-sign", json=_sign_with_label(HOSTILE)).json()["cards"]
    shown = [s["label"] for c in cards for s in c.get("suggestions") or []]
    shown += [a["description"] for c in cards for s in c.get("suggestions") or [] for a in s["actions"]]
    assert shown, "the duplicated calcineurin inhibitor should still be offered for removal"
    for text in shown:
        assert not set(text) & set("<>`*[]\u202e\u200b\x07"), text
        assert "cycloSPORINE 25 MG Oral Capsule img" in text and "very long text" not in text  # cut short


def test_plain_text_rules() -> None:
    assert plain_text("tacrolimus\n 1 mg\t<b>") == "tacrolimus 1 mg b"
    assert plain_text("\u202e\u200b") == "an unnamed medicine"
    assert len(plain_text("x" * 500)) <= EHR_TEXT_MAX
