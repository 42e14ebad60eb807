"""Reading FHIR R4 Bundles: usable data is taken, the rest is skipped with a located warning;
only what makes the assessment unsafe is an error."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipexrx.knowledge import get_kb
from ipexrx.patient import MalformedInputError, PatientInputError, read_patient

AS_OF = dt.date(2026, 11, 25)
EXAMPLES = Path(__file__).parents[2] / "examples"
SUBJ = {"reference": "Patient/p1"}


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    res = [{"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "2020-01-01"},
           {"resourceType": "Condition", "subject": SUBJ, "code": {"text": "IPEX syndrome"}}, *resources]
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in res]}


def _read(doc: Any) -> Any:
    return read_patient(doc, get_kb(), AS_OF)


def _obs(code: str, value: dict[str, Any], date: str = "2026-11-01") -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "subject": SUBJ, "effectiveDateTime": date,
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "valueQuantity": value}


def test_example_bundle_reads_brands_rxcui_and_requests() -> None:
    data = _read(json.loads((EXAMPLES / "sirolimus-azole.fhir.json").read_text()))
    assert data.diagnosis == "ipex" and data.foxp3_variant
    by_drug = {m.drug_id: m for m in data.meds}
    assert by_drug["sirolimus"].status == "active"  # from "Rapamune 1 MG Oral Tablet" text (SBD code not ingredient)
    assert by_drug["voriconazole"].status == "planned"  # MedicationRequest draft / proposal
    assert by_drug["voriconazole"].dose is not None and by_drug["voriconazole"].dose.value == 180
    assert data.weight_kg == pytest.approx(21.5)
    warnings = {w.path: w.message for w in data.warnings}
    assert any("Encounter skipped" in m for m in warnings.values())
    assert any("never guessed" in m for m in warnings.values())


def test_loinc_observations_are_converted_with_ucum_units() -> None:
    data = _read(_bundle(_obs("2160-0", {"value": 0.6, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                         "code": "mg/dL"}),
                         _obs("11253-2", {"value": 7.5, "unit": "µg/L"})))
    values = {r.kind.id: r.value for r in data.labs}
    assert values["creatinine"] == pytest.approx(53.05, rel=1e-3)
    assert values["tacrolimus-trough"] == pytest.approx(7.5)


def test_observation_without_unit_is_skipped_with_a_located_warning() -> None:
    data = _read(_bundle(_obs("2160-0", {"value": 0.6})))
    assert not data.labs
    w = [w for w in data.warnings if w.path == "$.entry[2].resource"]
    assert w and "unit" in w[0].message


def test_invalid_resource_is_skipped_not_fatal() -> None:
    bad = {"resourceType": "Observation", "status": "final", "code": {"text": "serum creatinine"},
           "valueQuantity": {"value": "abc"}}
    data = _read(_bundle(bad, {"resourceType": "Encounter", "status": "finished"}))
    msgs = [w.message for w in data.warnings]
    assert any("not valid FHIR R4" in m for m in msgs)


def test_every_observation_is_checked_as_far_as_it_is_read_and_unused_ones_are_named() -> None:
    vitals = _obs("8867-4", {"value": 120, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"})
    vitals["code"]["text"] = "Heart rate"
    invalid_unused = {"resourceType": "Observation", "status": "final", "code": {"text": "Pain score"},
                      "valueQuantity": {"value": "abc"}}
    data = _read(_bundle(vitals, invalid_unused, _obs("2160-0", {"value": 30, "unit": "umol/L"})))
    msgs = [w.message for w in data.warnings]
    assert "Observation 'Heart rate' skipped: not a lab the rules use" in msgs
    assert any(m.startswith("Observation skipped: not valid FHIR R4 (element \"valueQuantity.value\": "
                            "expected a number, got 'abc')") for m in msgs), msgs
    assert not [m for m in msgs if "$" in m]  # the element in words; the warning's path names the entry
    assert [lab.kind.id for lab in data.labs] == ["creatinine"]  # the lab the rules use is read as before


def test_an_element_the_rules_do_not_read_is_only_checked_with_strict() -> None:
    from ipexrx.knowledge import get_kb
    from ipexrx.patient.reader import read_patient

    patient = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "2024-01-02",
               "name": "not a list of HumanName"}
    doc = _bundle(_obs("2160-0", {"value": 30, "unit": "umol/L"}))
    doc["entry"][0] = {"resource": patient}
    lenient = read_patient(doc, get_kb(), AS_OF)
    assert lenient.sex == "male"
    with pytest.raises(PatientInputError) as err:  # strict: the Patient is not valid FHIR R4, so there is none
        read_patient(doc, get_kb(), AS_OF, strict=True)
    assert "one Patient resource" in str(err.value.issues[0].expected)


def test_a_malformed_date_in_a_read_element_is_named_with_the_fhir_format() -> None:
    bad = _obs("2160-0", {"value": 30, "unit": "umol/L"})
    bad["effectiveDateTime"] = "25/11/2026"
    data = _read(_bundle(bad))
    msg = next(w.message for w in data.warnings if "not valid FHIR R4" in w.message)
    assert 'element "effectiveDateTime": expected a FHIR dateTime (YYYY-MM-DD, optionally with a time and zone), ' \
           "got '25/11/2026'" in msg
    assert data.labs == []  # never guessed


def test_entered_in_error_and_refuted_are_ignored() -> None:
    med = {"resourceType": "MedicationStatement", "status": "entered-in-error", "subject": SUBJ,
           "medicationCodeableConcept": {"text": "tacrolimus"}}
    data = _read(_bundle(med))
    assert data.meds == []


def test_not_a_bundle_is_refused() -> None:
    with pytest.raises(MalformedInputError) as err:
        _read({"resourceType": "Patient", "id": "x"})
    assert err.value.issues[0].path == "$.resourceType"


def test_bundle_without_patient_is_refused() -> None:
    doc = {"resourceType": "Bundle", "type": "collection", "entry": []}
    with pytest.raises(PatientInputError) as err:
        _read(doc)
    assert "Patient" in str(err.value)


def test_absurd_weight_in_a_bundle_is_an_error_located_in_the_bundle() -> None:
    doc = _bundle(_obs("29463-7", {"value": 400, "unit": "kg"}))
    with pytest.raises(PatientInputError) as err:
        _read(doc)
    assert err.value.issues[0].path.startswith("$.entry[2].resource")


def test_negative_dose_in_a_bundle_is_an_error_located_in_the_bundle() -> None:
    med = {"resourceType": "MedicationStatement", "status": "active", "subject": SUBJ,
           "medicationCodeableConcept": {"text": "tacrolimus"},
           "dosage": [{"doseAndRate": [{"doseQuantity": {"value": -1, "unit": "mg"}}]}]}
    with pytest.raises(PatientInputError) as err:
        _read(_bundle(med))
    assert err.value.issues[0].path.startswith("$.entry[2].resource.dosage[0].doseAndRate[0].doseQuantity")


def test_dose_in_ml_is_dropped_but_the_drug_is_still_checked() -> None:
    med = {"resourceType": "MedicationStatement", "status": "active", "subject": SUBJ,
           "medicationCodeableConcept": {"text": "Rapamune oral solution"},
           "dosage": [{"doseAndRate": [{"doseQuantity": {"value": 1, "unit": "mL"}}]}]}
    data = _read(_bundle(med))
    assert data.meds[0].drug_id == "sirolimus" and data.meds[0].dose is None
    assert any("volume" in w.message for w in data.warnings)


def test_missing_diagnosis_condition_means_a_chart_without_ipex_with_a_warning() -> None:
    """A FHIR chart names no IPEX or IPEX-like Condition: diagnosis 'none' (drug-safety checks only), not
    'unconfirmed' (which says IPEX is suspected)."""
    doc = _bundle()
    doc["entry"] = doc["entry"][:1]
    data = _read(doc)
    assert data.diagnosis == "none"
    assert any(w.code == "incomplete" and "without IPEX" in w.message for w in data.warnings)


def test_ipex_like_condition_and_hsct_procedure() -> None:
    doc = _bundle({"resourceType": "Procedure", "status": "completed", "subject": SUBJ,
                   "code": {"text": "Allogeneic stem cell transplant"}, "performedDateTime": "2025-02-01"})
    doc["entry"][1]["resource"] = {"resourceType": "Condition", "subject": SUBJ,
                                   "code": {"text": "IPEX-like syndrome, LRBA deficiency"}}
    data = _read(doc)
    assert data.diagnosis == "ipex-like" and data.ipex_like_id == "lrba-deficiency"
    assert data.hsct_status == "done" and data.hsct_date == dt.date(2025, 2, 1)


def test_reading_does_not_mutate_the_input() -> None:
    doc = json.loads((EXAMPLES / "post-hsct.fhir.json").read_text())
    before = copy.deepcopy(doc)
    _read(doc)
    assert doc == before


@pytest.mark.parametrize(("coding", "expected"), [
    ({"system": "http://hl7.org/fhir/sid/icd-10", "code": "E10.9"}, "type-1-diabetes"),
    ({"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E06.3"}, "autoimmune-thyroiditis"),
    ({"system": "http://snomed.info/sct", "code": "40930008"}, "hypothyroidism"),
    ({"system": "http://hl7.org/fhir/sid/icd-10", "code": "Z99.9"}, None),
])
def test_snomed_and_icd10_conditions_map_to_manifestations(coding: dict[str, str], expected: str | None) -> None:
    cond = {"resourceType": "Condition", "subject": SUBJ, "code": {"coding": [coding]}}
    data = _read(_bundle(cond))
    assert [m.manifestation_id for m in data.manifestations] == [expected]
    if expected is None:
        assert any(w.code == "unknown-manifestation" for w in data.warnings)


def test_contained_medication_and_qualitative_interpretation() -> None:
    req = {"resourceType": "MedicationRequest", "status": "draft", "intent": "order", "subject": SUBJ,
           "contained": [{"resourceType": "Medication", "id": "m1", "code": {"text": "Rituxan 100 mg/10 mL vial"}}],
           "medicationReference": {"reference": "#m1"}}
    hbs = {"resourceType": "Observation", "status": "final", "subject": SUBJ, "effectiveDateTime": "2026-11-01",
           "code": {"coding": [{"system": "http://loinc.org", "code": "5196-1"}]},
           "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                           "code": "NEG"}]}]}
    data = _read(_bundle(req, hbs))
    assert [(m.drug_id, m.status) for m in data.meds] == [("rituximab", "planned")]
    assert [(r.kind.id, r.qualitative) for r in data.labs] == [("hbsag", "negative")]


def _conditions_bundle(*codes: dict[str, Any], verification: str | None = None) -> dict[str, Any]:
    conds = []
    for code in codes:
        c: dict[str, Any] = {"resourceType": "Condition", "subject": SUBJ, "code": code}
        if verification:
            c["verificationStatus"] = {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]}
        conds.append(c)
    res = [{"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "2020-01-01"}, *conds,
           _obs("29463-7", {"value": 12.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"})]
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in res]}


BUNDLES_BY_DIAGNOSIS = {
    "ipex-text": (_conditions_bundle({"text": "IPEX syndrome"}), "ipex"),
    "ipex-snomed": (_conditions_bundle({"coding": [{"system": "http://snomed.info/sct", "code": "724276006"}]}),
                    "ipex"),
    "ipex-like": (_conditions_bundle({"text": "IPEX-like syndrome (LRBA deficiency)"}), "ipex-like"),
    "ipex-display-only": (_conditions_bundle({"coding": [{"system": "http://example.org/local", "code": "X1",
                                                          "display": "Ipex syndrome"}]}), "ipex"),
    "ipex-long-name": (_conditions_bundle({"text": "Immune dysregulation, polyendocrinopathy, enteropathy, X-linked"}),
                       "ipex"),
    "ipex-orpha": (_conditions_bundle({"coding": [{"system": "http://www.orpha.net", "code": "ORPHA:37042"}]}),
                   "ipex"),
    "ipex-omim": (_conditions_bundle({"coding": [{"system": "https://omim.org", "code": "#304790"}]}), "ipex"),
    "refuted-ipex": (_conditions_bundle({"text": "IPEX syndrome"}, verification="refuted"), "none"),
    "provisional-ipex": (_conditions_bundle({"text": "IPEX syndrome"}, verification="provisional"), "unconfirmed"),
    "asthma-only": (_conditions_bundle({"text": "Asthma"}), "none"),
    "no-conditions": (_conditions_bundle(), "none"),
    "invalid-ipex-condition": (_conditions_bundle({"text": "IPEX syndrome", "coding": "not a list"}), "none"),
}


@pytest.mark.parametrize("name", sorted(BUNDLES_BY_DIAGNOSIS))
def test_the_diagnosis_is_the_same_with_the_typed_views_and_with_full_validation(name: str) -> None:
    from ipexrx.patient.fhir import read_bundle

    bundle, expected = BUNDLES_BY_DIAGNOSIS[name]
    assert read_bundle(bundle)[0]["diagnosis"]["type"] == expected
    assert read_bundle(bundle, strict=True)[0]["diagnosis"]["type"] == expected


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.fhir.json")), ids=lambda p: p.name)
def test_the_examples_read_the_same_with_the_typed_views_and_with_full_validation(path: Path) -> None:
    from ipexrx.patient.fhir import read_bundle

    bundle = json.loads(path.read_text())
    fast, full = read_bundle(bundle), read_bundle(bundle, strict=True)
    assert fast[0] == full[0] and fast[2] == full[2] and fast[0]["diagnosis"]["type"] != "none"
    assert [(w.path, w.message) for w in fast[1]] == [(w.path, w.message) for w in full[1]]


_WORDS = ["IPEX", "ipex-like", "IPEX like", "Immune", "immune dysregulation,", "polyendocrinopathy", "syndrome",
          "LRBA", "asthma", "enteropathy", "X-linked", "dysregulation", "FOXP3", "c.1150G>A", "refuted"]
_CODINGS = [("http://snomed.info/sct", "724276006"), ("http://snomed.info/sct", "195967001"),
            ("http://www.orpha.net", "ORPHA:37042"), ("http://www.orpha.net", "ORPHA:1234"),
            ("https://omim.org", "304790"), ("https://omim.org", "#304790"),
            ("http://hl7.org/fhir/sid/icd-10", "D82.8")]


@given(st.lists(st.tuples(st.lists(st.sampled_from(_WORDS), max_size=6),
                          st.lists(st.sampled_from(_CODINGS), max_size=2),
                          st.sampled_from([None, "confirmed", "refuted", "provisional"])), max_size=4))
@settings(max_examples=150, deadline=None)
def test_typed_views_and_full_validation_never_disagree_on_conditions(
        conds: list[tuple[list[str], list[tuple[str, str]], str | None]]) -> None:
    from ipexrx.patient.fhir import read_bundle

    resources: list[dict[str, Any]] = [{"resourceType": "Patient", "id": "p1", "gender": "male",
                                        "birthDate": "2020-01-01"}]
    for words, codings, verification in conds:
        code: dict[str, Any] = {"coding": [{"system": s, "code": c} for s, c in codings]}
        if words:
            code["text"] = " ".join(words)
        cond: dict[str, Any] = {"resourceType": "Condition", "subject": SUBJ, "code": code}
        if verification:
            cond["verificationStatus"] = {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]}
        resources.append(cond)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    fast, full = read_bundle(bundle), read_bundle(bundle, strict=True)
    assert fast[0] == full[0] and fast[2] == full[2]
    assert [(w.path, w.message) for w in fast[1]] == [(w.path, w.message) for w in full[1]]


_OBS_CODINGS = [("http://loinc.org", "2160-0"), ("http://loinc.org", "29463-7"), ("http://loinc.org", "8302-2"),
                ("http://loinc.org", "11253-2"), ("http://loinc.org", "8867-4"), ("http://loinc.org", "85354-9"),
                ("http://snomed.info/sct", "2160-0"), ("http://example.org/local", "CREAT"), (None, "29247-4")]
_OBS_TEXTS = [None, "serum creatinine", "Creatinine", "Heart rate", "tacrolimus trough", "Blood pressure", "HbA1c",
              "weight"]
_OBS_VALUES = [None, {"valueQuantity": {"value": 1.2, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                        "code": "mg/dL"}},
               {"valueQuantity": {"value": 14, "unit": "kg"}}, {"valueString": "positive"},
               {"valueBoolean": False}]


def _concept(codings: list[tuple[str | None, str]], text: str | None, display: bool) -> dict[str, Any]:
    cc: dict[str, Any] = {"coding": [{**({"system": s} if s else {}), "code": c,
                                      **({"display": f"d {c}"} if display else {})} for s, c in codings]}
    if text:
        cc["text"] = text
    return cc


_concepts = st.builds(_concept, st.lists(st.sampled_from(_OBS_CODINGS), max_size=2), st.sampled_from(_OBS_TEXTS),
                      st.booleans())


@st.composite
def _observations(draw: st.DrawFn) -> dict[str, Any]:
    obs: dict[str, Any] = {"resourceType": "Observation", "subject": SUBJ, "code": draw(_concepts),
                           "status": draw(st.sampled_from(["final", "amended", "entered-in-error", "cancelled"])),
                           "effectiveDateTime": draw(st.sampled_from(["2026-11-01", "2026-10-15T08:00:00Z"]))}
    value = draw(st.sampled_from(_OBS_VALUES))
    if value:
        obs.update(value)
    comps = draw(st.lists(st.tuples(_concepts, st.sampled_from(_OBS_VALUES)), max_size=2))
    if comps:
        obs["component"] = [{"code": cc, **(v or {})} for cc, v in comps]
    return obs


@given(st.lists(_observations(), max_size=5))
@settings(max_examples=200, deadline=None)
def test_typed_views_and_full_validation_read_valid_observations_alike(obs: list[dict[str, Any]]) -> None:
    from ipexrx.patient.fhir import read_bundle

    bundle = _bundle(*obs)
    fast = read_bundle(bundle)
    full = read_bundle(bundle, strict=True)
    assert fast[0] == full[0] and fast[2] == full[2]
    assert [(w.path, w.message, w.code) for w in fast[1]] == [(w.path, w.message, w.code) for w in full[1]]
