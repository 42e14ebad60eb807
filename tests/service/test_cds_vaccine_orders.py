"""A vaccine ordered as a draft MedicationRequest (CVX-coded) is checked as a planned vaccination, and the
live-vaccine alert points back at that draft order (issue 12 item 4)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from ipexrx.service.cds import samples
from ipexrx.service.cds.engine import analyse
from ipexrx.service.cds.models import CdsRequest
from ipexrx.service.cds.services import SERVICES


def _order_sign_with(resource: dict[str, Any]) -> CdsRequest:
    body = copy.deepcopy(samples.load("order_sign"))
    subject = body["context"]["draftOrders"]["entry"][0]["resource"]["subject"]
    body["context"]["draftOrders"]["entry"].append({"resource": {**resource, "subject": subject}})
    return CdsRequest.model_validate(body)


def test_a_draft_mmr_order_is_a_critical_live_vaccine_on_its_draft() -> None:
    req = _order_sign_with({"resourceType": "MedicationRequest", "id": "draft-mmr", "status": "draft",
                            "intent": "order", "medicationCodeableConcept": {
                                "coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "03"}],
                                "text": "MMR vaccine"}})
    analysis = analyse(SERVICES["ipexrx-order-sign"], req, dict(req.prefetch or {}), dt.date(2026, 12, 5))
    live = [(a, drafts) for a, drafts, _ in analysis.alerts
            if a.rule == "vaccines.live_vaccine_under_immunosuppression"]
    assert live and live[0][0].severity.value == "critical"
    assert "MedicationRequest/draft-mmr" in {d.reference for d in live[0][1]}
    assert not [a for a, _, _ in analysis.alerts if a.rule == "records.medications_not_checked" and "MMR" in a.summary]
