"""The HPO weights shipped in screen/data/hpo-weights.json are hpo3's, derived, never edited by hand: they
equal a fresh computation from the installed hpo3, and are not used when they were derived from another
release, other mapped terms or other disorders."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from ipexrx.knowledge import get_kb
from ipexrx.screen import score


def _shipped() -> dict[str, Any]:
    return json.loads(resources.files("ipexrx.screen").joinpath("data", score.WEIGHTS_FILE).read_text("utf-8"))


def test_the_shipped_weights_are_those_hpo3_gives_now() -> None:
    kb = get_kb()
    shipped = _shipped()
    assert shipped["key"] == score.weights_key(kb), \
        "screen/data/hpo-weights.json is stale: regenerate it with `python -m ipexrx.screen.score`"
    assert shipped == json.loads(json.dumps(score.weights_to_json(score.compute_weights(kb), score.weights_key(kb))))


def test_the_shipped_weights_are_used_when_their_key_matches() -> None:
    kb = get_kb()
    score._WEIGHTS.clear()
    w = score.weights(kb)
    assert w.release == _shipped()["release"]
    assert w.match == score.compute_weights(kb).match


def test_weights_from_another_hpo3_release_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    kb = get_kb()
    real_key = score.weights_key(kb)
    monkeypatch.setattr(score, "weights_key", lambda kb_: {**real_key, "hpo3": "0.0.1"})
    computed: list[bool] = []
    real_compute = score.compute_weights

    def compute(kb_: Any) -> score.Weights:
        computed.append(True)
        return real_compute(kb_)

    monkeypatch.setattr(score, "compute_weights", compute)
    score._WEIGHTS.clear()
    try:
        w = score.weights(kb)
    finally:
        score._WEIGHTS.clear()
    assert computed == [True]
    assert w.match == real_compute(kb).match
