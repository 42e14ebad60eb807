"""CDS Hooks feedback: what may be recorded, and the report of what clinicians did with our cards.

Override reasons: a card offers the coded set in :data:`~.cards.OVERRIDE_REASONS` (warning and
critical cards only); feedback may name only a reason the card offered, so the report counts
reasons that mean something. A card this server has no record of (issued by another server, or
its record was dropped under load) can still be reported, with a reason from our set.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import select

from ...storage import Database
from ...storage.models import CdsCard, CdsFeedback
from .cards import OVERRIDE_INDICATORS, OVERRIDE_REASONS
from .models import FeedbackItem

UNKNOWN_CARD = "(card not issued by this server)"


def feedback_issues(items: list[FeedbackItem], cards: dict[str, Any]) -> list[dict[str, str]]:
    """Located problems of a feedback body (empty when it may be stored). ``cards``: issued cards
    by uuid (rows with ``indicator``), for the cards the body names."""
    offered = {(c.system, c.code) for c in OVERRIDE_REASONS}
    codes = ", ".join(c.code for c in OVERRIDE_REASONS)
    issues = []
    for i, item in enumerate(items):
        where = f"$.feedback[{i}]"
        if item.outcome == "accepted" and item.overrideReason is not None:
            issues.append({"path": f"{where}.overrideReason", "expected": "no override reason on an accepted card",
                           "got": "an overrideReason with outcome 'accepted'"})
        if item.outcome == "overridden" and item.acceptedSuggestions:
            issues.append({"path": f"{where}.acceptedSuggestions", "expected": "no accepted suggestions on an "
                           "overridden card", "got": f"{len(item.acceptedSuggestions)} suggestion(s)"})
        reason = item.overrideReason.reason if item.overrideReason else None
        if reason is None:
            continue
        card = cards.get(item.card)
        if card is not None and card.indicator not in OVERRIDE_INDICATORS:
            issues.append({"path": f"{where}.overrideReason.reason", "expected": "no override reason: this card "
                           f"({card.indicator}) offered none", "got": f"{reason.system}|{reason.code}"})
        elif (reason.system, reason.code) not in offered:
            issues.append({"path": f"{where}.overrideReason.reason",
                           "expected": f"one of the card's override reasons (system {OVERRIDE_REASONS[0].system}, "
                           f"code one of {codes})", "got": f"{reason.system}|{reason.code}"})
    return issues


def feedback_report(db: Database, since: dt.datetime | None = None, service: str | None = None) -> dict[str, Any]:
    """Accepted / overridden counts per card type (the rule behind the card) and per override reason,
    for outcomes at or after ``since`` (UTC)."""
    stmt = select(CdsFeedback.outcome, CdsFeedback.override_reason_system, CdsFeedback.override_reason_code,
                  CdsFeedback.override_reason_display, CdsCard.rule).join(
        CdsCard, CdsCard.uuid == CdsFeedback.card_uuid, isouter=True)
    if since is not None:
        stmt = stmt.where(CdsFeedback.outcome_timestamp >= since)
    if service:
        stmt = stmt.where(CdsFeedback.service_id == service)
    totals: Counter[str] = Counter()
    per_type: dict[str, Counter[str]] = {}
    reasons: Counter[tuple[str, str]] = Counter()
    displays = {(c.system, c.code): c.display for c in OVERRIDE_REASONS}
    without_reason = 0
    with db.session() as s:
        for outcome, system, code, display, rule in s.execute(stmt):
            totals[outcome] += 1
            per_type.setdefault(rule or UNKNOWN_CARD, Counter())[outcome] += 1
            if outcome == "overridden":
                if code:
                    reasons[(system or "", code)] += 1
                    displays.setdefault((system or "", code), display or code)
                else:
                    without_reason += 1
    return {
        "since": since.isoformat().replace("+00:00", "Z") if since else None,
        "service": service,
        "total": {"accepted": totals["accepted"], "overridden": totals["overridden"]},
        "by_card_type": [{"card_type": rule, "accepted": c["accepted"], "overridden": c["overridden"]}
                         for rule, c in sorted(per_type.items(), key=lambda kv: (-kv[1].total(), kv[0]))],
        "by_override_reason": [{"system": sys_, "code": code, "display": displays[(sys_, code)], "count": n}
                               for (sys_, code), n in reasons.most_common()],
        "overridden_without_reason": without_reason,
    }
