"""Every card we can produce is checked against the CDS Hooks 2.0 card rules.

The patient below takes every drug in the knowledge base, and every drug is also drafted once in
an order-sign call, so every interaction, duplication, screening, vaccine, monitoring and dosing
rule that can fire on drugs does fire; out-of-range and positive results trigger the result rules.
The checker is written from the spec text, independently of our own card model.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import example, given
from hypothesis import strategies as st

from ipexrx.knowledge import get_kb
from ipexrx.service.cds import samples
from ipexrx.service.cds.cards import NO_SOURCE
from ipexrx.service.cds.models import Card

INDICATORS = {"info", "warning", "critical"}
ACTION_TYPES = {"create", "update", "delete"}


def _empty_values(obj: Any, path: str = "$") -> list[str]:
    """The spec prohibits null, "", [] and {} for optional fields (omit them instead)."""
    out = []
    if obj is None or obj == "" or obj == [] or obj == {}:
        return [f"{path}: empty value {obj!r}"]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _empty_values(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _empty_values(v, f"{path}[{i}]")
    elif isinstance(obj, str) and not obj.strip():
        out.append(f"{path}: blank string")
    return out


def spec_problems(card: dict[str, Any]) -> list[str]:
    p = _empty_values(card)
    allowed = {"uuid", "summary", "detail", "indicator", "source", "suggestions", "selectionBehavior",
               "overrideReasons", "links"}
    p += [f"unknown card field {k}" for k in set(card) - allowed]
    s = card.get("summary")
    if not isinstance(s, str) or len(s) >= 140:
        p.append(f"summary must be a string under 140 characters: {s!r}")
    if card.get("indicator") not in INDICATORS:
        p.append(f"indicator {card.get('indicator')!r}")
    src = card.get("source")
    if not isinstance(src, dict) or not isinstance(src.get("label"), str):
        p.append("source.label is required")
    elif "url" in src and not str(src["url"]).startswith(("http://", "https://")):
        p.append("source.url must be absolute")
    if "detail" in card and "**Sources**" not in card["detail"] and "could not check" not in card["summary"]:
        p.append("detail must list the sources (or say that none is recorded)")
    sugg = card.get("suggestions")
    if sugg is not None:
        if card.get("selectionBehavior") not in ("at-most-one", "any"):
            p.append("selectionBehavior must be present with suggestions")
        for sg in sugg:
            if not sg.get("label"):
                p.append("suggestion.label is required")
            for a in sg.get("actions", []):
                if a.get("type") not in ACTION_TYPES or not a.get("description"):
                    p.append(f"bad action {a}")
                if a.get("type") == "delete" and "/" not in str(a.get("resourceId", "")):
                    p.append("delete action needs a relative resourceId")
                if a.get("type") in ("create", "update") and not isinstance(a.get("resource"), dict):
                    p.append("create/update action needs the resource")
    elif "selectionBehavior" in card:
        p.append("selectionBehavior without suggestions")
    for r in card.get("overrideReasons", []):
        if not (r.get("display") and r.get("code") and r.get("system")):
            p.append(f"override reason without code/system/display: {r}")
    for sg in sugg or []:
        if not sg.get("uuid"):
            p.append("suggestion.uuid is needed for feedback (acceptedSuggestions)")
    if sum(1 for sg in sugg or [] if sg.get("isRecommended")) > (1 if sugg and len(sugg) > 1 else 0):
        p.append("isRecommended marks one suggestion among several, never a lone one")
    for link in card.get("links", []):
        if not (link.get("label") and str(link.get("url", "")).startswith(("http://", "https://"))):
            p.append(f"link needs a label and an absolute url: {link}")
        if link.get("type") not in ("absolute", "smart"):
            p.append(f"link type must be absolute or smart: {link}")
        if "appContext" in link and (link.get("type") != "smart" or not isinstance(link["appContext"], str)):
            p.append(f"appContext is a string, only on smart links: {link}")
    return p


def _med(i: int, name: str, status: str) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": f"{'draft' if status == 'draft' else 'med'}-{i}",
            "status": status, "intent": "order", "subject": {"reference": "Patient/ipex-boy-1"},
            "medicationCodeableConcept": {"text": name}}


def _everything() -> tuple[dict[str, Any], dict[str, Any]]:
    kb = get_kb()
    pv = samples.load("patient_view")
    drugs = sorted(kb.drugs.values(), key=lambda d: d.id)
    pv["prefetch"]["medications"]["entry"] = [{"resource": _med(i, d.name, "active")} for i, d in enumerate(drugs)]
    obs = pv["prefetch"]["observations"]["entry"]
    extra = [("11253-2", "Tacrolimus trough", 31.0, "ng/mL"), ("777-3", "Platelets", 12, "10*3/uL"),
             ("751-8", "Neutrophils", 0.2, "10*3/uL"), ("2823-3", "Potassium", 6.9, "mmol/L")]
    for j, (code, text, value, unit) in enumerate(extra):
        obs.append({"resource": {"resourceType": "Observation", "id": f"x-{j}", "status": "final",
                                 "subject": {"reference": "Patient/ipex-boy-1"},
                                 "code": {"coding": [{"system": "http://loinc.org", "code": code}], "text": text},
                                 "effectiveDateTime": "2026-11-20",
                                 "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                                                   "code": unit}}})
    obs.append({"resource": {"resourceType": "Observation", "id": "hbsag", "status": "final",
                             "subject": {"reference": "Patient/ipex-boy-1"},
                             "code": {"coding": [{"system": "http://loinc.org", "code": "5196-1"}], "text": "HBsAg"},
                             "effectiveDateTime": "2026-11-20", "valueString": "positive"}})
    pv["prefetch"]["immunizations"]["entry"].append({"resource": {
        "resourceType": "Immunization", "id": "imm-mmr", "status": "completed",
        "patient": {"reference": "Patient/ipex-boy-1"}, "occurrenceDateTime": "2026-11-01",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "03"}], "text": "MMR"}}})
    sign = copy.deepcopy(pv)
    sign["hook"] = "order-sign"
    sign["prefetch"]["medications"]["entry"] = sign["prefetch"]["medications"]["entry"][: len(drugs) // 2]
    sign["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": [
        {"resource": _med(i, d.name, "draft")} for i, d in enumerate(drugs)] + [
        {"resource": {"resourceType": "MedicationRequest", "id": "draft-broken", "status": "draft",
                      "dosageInstruction": "n/a"}}]}
    return pv, sign


def test_every_card_we_can_produce_meets_the_card_rules(dev_client: TestClient) -> None:
    pv, sign = _everything()
    select = copy.deepcopy(sign)
    select["hook"] = "order-select"
    select["context"]["selections"] = [e["resource"]["resourceType"] + "/" + e["resource"]["id"]
                                       for e in sign["context"]["draftOrders"]["entry"][::2]]
    broken = copy.deepcopy(sign)  # an IPEX record that cannot be assessed safely: a negative dose
    broken["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"] = [
        {"doseAndRate": [{"doseQuantity": {"value": -5, "unit": "mg"}}]}]
    cards: list[dict[str, Any]] = []
    for service, body in (("patient-view", pv), ("order-sign", sign), ("order-select", select),
                          ("order-sign", broken)):
        got = dev_client.post(f"/cds-services/ipexrx-{service}", json=body).json()["cards"]
        assert len({c["uuid"] for c in got}) == len(got), f"card uuids repeat within one {service} call"
        cards += got
    topics = {c["source"].get("topic", {}).get("code", c["summary"][:30]).split(".")[0] for c in cards}
    # the wide patient exercises every alert family that drugs and results can trigger
    assert {"interactions", "duplication", "monitoring", "screening", "results"} <= topics, topics
    assert any("could not check the draft order" in c["summary"] for c in cards)
    assert any("could not check this patient's medicines" in c["summary"] for c in cards)
    assert len(cards) > 30
    assert any(c.get("suggestions") for c in cards)
    assert {c["indicator"] for c in cards} == INDICATORS
    problems = {c["summary"][:60]: spec_problems(c) for c in cards}
    assert {k: v for k, v in problems.items() if v} == {}
    unsourced = sorted(c["summary"] for c in cards if NO_SOURCE in c.get("detail", ""))
    assert unsourced == []  # a gap would be shown on the card (never hidden), but every alert must cite
    # Cards are built as plain dicts on the hot path: each must also be exactly what our strict Card
    # model gives back (no field it lacks, none it would drop as null, nothing it would refuse).
    assert [Card.model_validate(c).wire() for c in cards] == cards


def test_long_summaries_are_shortened_below_140_characters() -> None:
    from ipexrx.service.cds.cards import shorten

    text = "Tacrolimus and voriconazole together: " + "reduce the tacrolimus dose and check troughs " * 5
    short = shorten(text)
    assert len(short) < 140 and short.endswith("…") and short.startswith("Tacrolimus and voriconazole")
    assert shorten("Short one") == "Short one"


_KEY_OF = {"Condition": "conditions", "MedicationRequest": "medications",
           "MedicationStatement": "medication_statements", "Observation": "observations", "Procedure": "procedures",
           "Immunization": "immunizations", "AllergyIntolerance": "allergies"}
_EMPTY_KEYS = {"vital_signs"}  # the examples keep every Observation under one key


def test_the_example_fhir_bundles_as_prefetch_give_valid_cards(dev_client: TestClient) -> None:
    examples = sorted((Path(__file__).parents[2] / "examples").glob("*.fhir.json"))
    assert examples, "the repository ships FHIR examples"
    for path in examples:
        bundle = json.loads(path.read_text())
        resources = [e["resource"] for e in bundle["entry"]]
        patient = next(r for r in resources if r["resourceType"] == "Patient")
        keys = set(_KEY_OF.values()) | _EMPTY_KEYS
        prefetch: dict[str, Any] = {"patient": patient, **{k: {"resourceType": "Bundle", "type": "searchset",
                                                               "entry": []} for k in keys}}
        for r in resources:
            if r["resourceType"] in _KEY_OF:
                prefetch[_KEY_OF[r["resourceType"]]]["entry"].append({"resource": r})
        body = {"hook": "patient-view", "hookInstance": f"example-{path.stem}",
                "context": {"userId": "Practitioner/1", "patientId": patient["id"]}, "prefetch": prefetch}
        resp = dev_client.post("/cds-services/ipexrx-patient-view", json=body)
        assert resp.status_code == 200, (path.name, resp.text[:300])
        cards = resp.json()["cards"]
        assert cards, f"{path.name}: an IPEX example patient gets cards"
        assert {c["summary"][:50]: spec_problems(c) for c in cards if spec_problems(c)} == {}, path.name


@given(st.text(max_size=60), st.text(max_size=60))
def test_card_uuids_are_the_rfc_4122_name_based_uuids_of_the_hook_call_and_seed(hook: str, seed: str) -> None:
    import uuid

    from ipexrx.service.cds.cards import CARD_NAMESPACE, card_uuid

    got = card_uuid(hook, seed)
    assert got == str(uuid.uuid5(CARD_NAMESPACE, hook + seed))
    assert uuid.UUID(got).version == 5


_SEGMENT = st.one_of(st.sampled_from([".medications", ".labs", ".dose", ".value", ".resource", ".entry"]),
                     st.integers(0, 3).map(lambda i: f"[{i}]"))
_PATH = st.lists(_SEGMENT, max_size=5).map(lambda segs: "$" + "".join(segs))


@given(st.dictionaries(_PATH, st.one_of(_PATH, st.integers(0, 9).map(lambda i: f"$.entry[{i}].resource")),
                       max_size=8),
       st.lists(st.one_of(st.none(), _PATH), max_size=8))
def test_the_indexed_entry_lookup_agrees_with_the_scan_it_replaces(locations: dict[str, str],
                                                                  paths: list[str | None]) -> None:
    from ipexrx.service.cds.engine import _entry_of, _EntryFinder

    finder = _EntryFinder(locations)
    for path in paths:
        assert finder.find(path) == _entry_of(path, locations), path


@given(st.lists(st.text(max_size=30), max_size=3), st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)),
                                                              max_size=3))
@example(["tacrolimus\ud800"], [("potassium", "5.9 mmol/L \udfff")])  # lone surrogates: orjson refuses them
def test_the_app_context_is_the_compact_json_the_standard_library_writes(drugs: list[str],
                                                                         levels: list[tuple[str, str]]) -> None:
    """appContext is written with orjson for speed; it must be the very text json.dumps(separators=(",", ":"),
    ensure_ascii=False) gives, including for text orjson refuses (lone surrogates), where json is used."""
    import json
    from types import SimpleNamespace

    from ipexrx.service.cds.cards import app_context

    triggers = [SimpleNamespace(kind="drug", ref=d, detail=None) for d in drugs]
    triggers += [SimpleNamespace(kind="lab", ref=t, detail=r) for t, r in levels]
    alert = SimpleNamespace(rule="results.lab_toxicity", triggers=triggers)
    names = {d: d.upper() for d in drugs}
    expected: dict[str, object] = {"rule": alert.rule}
    if drugs:
        expected["drugs"] = list(dict.fromkeys(drugs))
    if any(r for _, r in levels):
        expected["levels"] = [{"test": t, "result": r} for t, r in levels if r]
    assert app_context(alert, names) == json.dumps(expected, separators=(",", ":"), ensure_ascii=False)
