"""The CDS analysis cache: identical calls reuse an analysis, any change to what is judged does not.

Why it matters: an EHR reopening a chart sends the same prefetch with a new hookInstance; reusing
the analysis is what makes that call cheap. It must never serve a stale judgement: a changed
medication list, another patient, another day or another service must be analysed afresh.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from ipexrx.service.cds import engine, samples
from ipexrx.service.cds.models import CdsRequest
from ipexrx.service.cds.services import SERVICES

PV = SERVICES["ipexrx-patient-view"]
DAY = dt.date(2026, 11, 25)


@pytest.fixture(autouse=True)
def _empty_caches() -> Iterator[None]:
    engine._analysis_cache.clear()
    yield
    engine._analysis_cache.clear()


def _call(body: dict[str, Any], as_of: dt.date = DAY, svc: Any = PV) -> list[dict[str, Any]]:
    req = CdsRequest.model_validate(body)
    return [card for card, _ in engine.evaluate(svc, req, dict(req.prefetch or {}), "http://x", as_of=as_of)]


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = engine._analyse

    def counted(*a: Any, **k: Any) -> Any:
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(engine, "_analyse", counted)
    return calls


def test_a_repeated_call_with_a_new_hook_instance_reuses_the_analysis_but_gets_new_card_uuids(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch)
    body = samples.load("patient_view")
    first = _call(body)
    body["hookInstance"] = "another-hook-instance"
    second = _call(body)
    assert len(calls) == 1
    assert [c["summary"] for c in first] == [c["summary"] for c in second] and first
    assert {c["uuid"] for c in first}.isdisjoint(c["uuid"] for c in second)


@pytest.mark.parametrize("change", ["medication", "observation", "patient", "context"])
def test_any_change_to_what_is_judged_is_analysed_afresh(monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    calls = _counting(monkeypatch)
    body = samples.load("patient_view")
    _call(body)
    changed = copy.deepcopy(body)
    if change == "medication":
        changed["prefetch"]["medications"]["entry"].pop()
    elif change == "observation":
        q = changed["prefetch"]["observations"]["entry"][0]["resource"]["valueQuantity"]
        q["value"] = q["value"] + 1
    elif change == "patient":
        changed["prefetch"]["patient"]["gender"] = "unknown"
    else:
        changed["context"]["userId"] = "Practitioner/someone-else"
    _call(changed)
    assert len(calls) == 2


def test_another_day_or_another_service_is_analysed_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch)
    body = samples.load("patient_view")
    _call(body)
    _call(body, as_of=DAY + dt.timedelta(days=1))
    sign = samples.load("order_sign")
    _call(sign, svc=SERVICES["ipexrx-order-sign"])
    assert len(calls) == 3


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "CACHE_SIZE", 3)
    body = samples.load("patient_view")
    for i in range(6):
        b = copy.deepcopy(body)
        b["prefetch"]["observations"]["entry"][0]["resource"]["valueQuantity"]["value"] = 10 + i
        _call(b)
    assert len(engine._analysis_cache) == 3


def test_a_record_without_any_ipex_condition_is_assessed_and_cached_like_any_other(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Drug safety runs for every chart the EHR opens, so a chart without IPEX is analysed (and a repeat
    of it reused) exactly like an IPEX patient's."""
    calls = _counting(monkeypatch)
    body = samples.load("patient_view")
    body["prefetch"]["conditions"]["entry"] = [e for e in body["prefetch"]["conditions"]["entry"]
                                               if "IPEX" not in str(e)]
    first = _call(body)
    assert first and all("no IPEX or IPEX-like diagnosis" in c["detail"].split("\n")[0] for c in first)
    body["hookInstance"] = "another-hook-instance"
    assert [c["summary"] for c in _call(body)] == [c["summary"] for c in first]
    assert len(calls) == 1 and len(engine._analysis_cache) == 1
