"""FHIR Bundle -> event-level subject: same fit as the equivalent NM-TRAN records; explicit unit errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from ipexrx.dosing.data import Record, Subject
from ipexrx.dosing.errors import DataError
from ipexrx.dosing.estimate import fit
from ipexrx.dosing.fhir_input import subject_from_fhir
from ipexrx.dosing.model import get_model

LOINC = "http://loinc.org"
BUNDLE = {
    "resourceType": "Bundle", "type": "collection",
    "entry": [
        {"resource": {"resourceType": "MedicationStatement", "status": "active",
                      "medicationCodeableConcept": {"text": "Prograf (tacrolimus) capsules"},
                      "effectivePeriod": {"start": "2026-11-01T08:00:00Z"},
                      "dosage": [{"timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                                  "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "mg"}}]}]}},
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"coding": [{"system": LOINC, "code": "11253-2"}]},
                      "effectiveDateTime": "2026-11-04T07:45:00Z",
                      "valueQuantity": {"value": 5.1, "unit": "ug/L"}}},
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
                      "effectiveDateTime": "2026-10-30", "valueQuantity": {"value": 20500, "unit": "g"}}},
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"coding": [{"system": LOINC, "code": "4544-3"}]},
                      "effectiveDateTime": "2026-11-03T07:00:00Z", "valueQuantity": {"value": 33, "unit": "%"}}},
    ],
}
OTHER = {"EGFR": 85.0, "DONOR_DECEASED": 1.0}


def test_fhir_bundle_gives_the_same_fit_as_the_equivalent_records():
    m = get_model("andrews2018-tacrolimus")
    s = subject_from_fhir(BUNDLE, m, covariates=OTHER)
    t_obs = 71.75  # 2026-11-04 07:45 is 71.75 h after the first dose
    assert [r.time for r in s.records] == [0.0, t_obs]
    assert s.records[0].ii == 12 and s.records[0].addl == 5
    covs = {"WT": 20.5, "HCT": 0.33, **OTHER}
    ref = Subject("csv", [Record(time=0, evid=1, amt=2, cmt=1, ii=12, addl=5, covariates=covs),
                          Record(time=t_obs, cmt=2, dv=5.1, covariates=covs)])
    a, b = fit(m, s), fit(m, ref)
    np.testing.assert_allclose(a.eta, b.eta, atol=1e-10)


@pytest.mark.parametrize(("path", "value", "message"), [
    ((1, "valueQuantity", "unit"), "", "no unit"),
    ((1, "valueQuantity", "unit"), "mg/dL", "not understood"),
    ((1, "effectiveDateTime"), "2026-11-04", "no time of day"),
    ((0, "medicationCodeableConcept", "text"), "Advagraf (tacrolimus) prolonged release", "extended-release"),
    # a malformed element is named with its path (read through the shared typed FHIR views), not a crash
    ((0, "dosage"), {"timing": "twice daily"}, r"^entry 1 \(MedicationStatement(, id \"[^\"]+\")?\), element "
                                               r"\"dosage\" is not valid FHIR R4: expected a list"),
    ((1, "valueQuantity", "value"), "5.1", r"element \"valueQuantity\.value\" is not valid FHIR R4: expected a "
                                           r"number, got '5\.1'"),
    ((1, "effectiveDateTime"), "04/11/2026 07:45", r"expected a FHIR dateTime"),
])
def test_fhir_problems_are_reported_not_guessed(path, value, message):
    b = copy.deepcopy(BUNDLE)
    node = b["entry"][path[0]]["resource"]
    for k in path[1:-1]:
        node = node[k]
    node[path[-1]] = value
    with pytest.raises(DataError, match=message) as err:
        subject_from_fhir(b, get_model("andrews2018-tacrolimus"), covariates=OTHER)
    assert "$" not in str(err.value) and "entry[" not in str(err.value)  # no JSON path: the entry counted from 1


def test_not_a_bundle_is_refused():
    with pytest.raises(DataError, match="expected a FHIR Bundle"):
        subject_from_fhir({"resourceType": "Patient"}, get_model("fan2024-sirolimus"))


def test_a_problem_in_bundle_text_names_the_line_of_the_entry() -> None:
    import json

    b = copy.deepcopy(BUNDLE)
    b["entry"][1]["resource"]["valueQuantity"]["unit"] = "mg/dL"
    text = json.dumps(b, indent=2)
    lines = [n for n, x in enumerate(text.splitlines(), start=1) if '"resource"' in x]
    with pytest.raises(DataError) as err:
        subject_from_fhir(text, get_model("andrews2018-tacrolimus"), covariates=OTHER)
    assert str(err.value).startswith(f"line {lines[1]}, entry 2 (Observation"), str(err.value)
    assert 'element "valueQuantity": unit \'mg/dL\' not understood' in str(err.value)
