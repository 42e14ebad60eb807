"""CDS Hooks feedback: a card id (or override-reason coding) longer than its column is a 422 that
names it, not a 500 from PostgreSQL's length check."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ipexrx.storage.models import CdsFeedback

URL = "/cds-services/ipexrx-order-sign/feedback"


def _item(**over: object) -> dict[str, object]:
    return {"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-25T10:00:00Z", **over}


def test_an_over_long_card_id_is_a_422_naming_the_field(dev_client: TestClient) -> None:
    limit = CdsFeedback.__table__.c.card_uuid.type.length
    assert dev_client.post(URL, json={"feedback": [_item(card="c" * limit)]}).status_code == 200
    r = dev_client.post(URL, json={"feedback": [_item(card="c" * (limit + 1))]})
    assert r.status_code == 422
    issue = r.json()["issues"][0]
    assert issue["path"] == "$.feedback[0].card" and str(limit) in issue["expected"]


def test_an_over_long_override_reason_code_is_a_422(dev_client: TestClient) -> None:
    limit = CdsFeedback.__table__.c.override_reason_code.type.length
    item = _item(overrideReason={"reason": {"system": "http://example.org", "code": "x" * (limit + 1)}})
    r = dev_client.post(URL, json={"feedback": [item]})
    assert r.status_code == 422 and r.json()["issues"][0]["path"] == "$.feedback[0].overrideReason.reason.code"
