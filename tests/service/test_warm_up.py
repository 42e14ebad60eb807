"""Start-up warm-up: everything a first CDS call would pay for is done before the first request."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from ipexrx.service import Settings, create_app
from ipexrx.service.cds import engine, samples
from ipexrx.service.fastjson import FastJSONResponse


def test_warm_up_runs_every_service_to_cards_and_leaves_the_caches_empty() -> None:
    cards = engine.warm_up()
    assert cards > 0  # the samples are IPEX patients with alerts: a silent warm-up would prove nothing
    assert not engine._analysis_cache and not engine._template_cache


def test_after_warm_up_the_fhir_reader_is_ready_without_the_full_fhir_models() -> None:
    """In a fresh interpreter, as a worker starts: the CDS path reads with the typed views only (full
    validation with fhir.resources is the --strict option's)."""
    import subprocess

    code = ("import sys; from ipexrx.service.cds import engine; assert engine.warm_up() > 0; "
            "assert 'ipexrx.patient.fhir_types' in sys.modules; "
            "print(sorted(m for m in sys.modules if m.startswith('fhir.resources.R4B.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_verifier_warm_up_parses_each_static_key_for_the_algorithms_it_fits(settings: Settings) -> None:
    app = create_app(settings)
    ready = app.state.verifier.warm_up()
    # one EC P-384 key (ES384) and one RSA key (RS256/RS384/RS512/PS*): at least one pair each
    parsed = [k for keys in app.state.verifier.issuers.values() for k in keys.parsed.values()]
    assert ready == len(parsed) >= 2
    assert any(isinstance(k, ec.EllipticCurvePublicKey) for k in parsed)
    assert any(isinstance(k, rsa.RSAPublicKey) for k in parsed)


def test_card_log_writer_runs_from_start_up(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        thread = client.app.state.cardlog._thread  # type: ignore[attr-defined]
        assert thread is not None and thread.is_alive()


def test_sample_requests_are_ipex_patients_for_each_hook() -> None:
    for name in samples.NAMES:
        body = samples.load(name)
        assert body["hook"] == name.replace("_", "-")
        codes = json.dumps(body["prefetch"]["conditions"])
        assert "FOXP3" in codes or "IPEX" in codes.upper()
    with pytest.raises(ValueError, match="must be one of"):
        samples.load("order_dispatch")


@pytest.mark.parametrize("content", [{"cards": []}, {"a": "é ü 中", "n": 1.5, "b": None, "l": [1, 2]}])
def test_fast_json_response_writes_the_same_json_as_the_standard_encoder(content: dict[str, Any]) -> None:
    body = FastJSONResponse(content).body
    assert json.loads(body) == content
    assert body.decode() == json.dumps(content, ensure_ascii=False, separators=(",", ":"))


def test_start_up_raises_the_young_collection_threshold_above_one_charts_objects(settings: Settings) -> None:
    """A CDS call keeps a chart's objects alive at once; with Python's default threshold (700) the calls set
    off young-generation collections (here in process every few calls; in the server, with its request
    objects, on nearly every call). The service raises it at start-up (app.GC_YOUNG_THRESHOLD): then new
    charts, each read and judged the whole way to cards, set off none."""
    import gc

    from ipexrx.service.app import GC_YOUNG_THRESHOLD
    from ipexrx.service.cds.models import CdsRequest
    from ipexrx.service.cds.services import SERVICES

    before = gc.get_threshold()
    body = CdsRequest.model_validate(samples.load("patient_view"))
    svc = SERVICES["ipexrx-patient-view"]
    young: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 0:
            young.append(1)

    def collections_per_call(threshold: int) -> float:
        gc.set_threshold(threshold, *before[1:])
        gc.collect()
        young.clear()
        gc.callbacks.append(count)
        try:
            for _ in range(20):
                engine._analysis_cache.clear()  # a new chart each time: read and judged in full
                engine.evaluate(svc, body, dict(body.prefetch or {}), "http://x")
        finally:
            gc.callbacks.remove(count)
        return len(young) / 20

    try:
        with TestClient(create_app(settings)):
            assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
        assert collections_per_call(700) > 0  # Python's default
        assert collections_per_call(GC_YOUNG_THRESHOLD) == 0  # ours
    finally:
        gc.set_threshold(*before)
        engine._analysis_cache.clear()
