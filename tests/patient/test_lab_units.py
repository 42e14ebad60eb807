"""Lab catalogue and unit conversions used by the toxicity rules: LOINC codes, molar drug levels,
electrolytes in mEq/L, glucose, lipids and magnesium in conventional units, blood-pressure panels."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ipexrx.knowledge import get_kb
from ipexrx.patient import read_patient
from ipexrx.patient.errors import UnitError
from ipexrx.patient.labs import lab_by_loinc, lab_by_name
from ipexrx.patient.units import accepts, convert

AS_OF = dt.date(2026, 11, 25)


@pytest.mark.parametrize(("code", "kind"), [
    ("11253-2", "tacrolimus-trough"), ("77348-1", "tacrolimus-trough"), ("74096-9", "tacrolimus-trough"),
    ("80550-7", "tacrolimus-trough"), ("3520-4", "cyclosporine-trough"), ("14978-1", "cyclosporine-trough"),
    ("78920-6", "cyclosporine-trough"), ("29247-4", "sirolimus-trough"), ("77349-9", "everolimus-trough"),
    ("1558-6", "fasting-glucose"), ("2345-7", "glucose"), ("4548-4", "hba1c"), ("2823-3", "potassium"),
    ("19123-9", "magnesium"), ("2571-8", "triglycerides"), ("2093-3", "cholesterol"), ("731-0", "lymphocytes"),
    ("8480-6", "systolic-bp"), ("8462-4", "diastolic-bp"), ("2890-2", "urine-pcr"), ("98979-8", "egfr"),
    ("62238-1", "egfr"), ("33914-3", "egfr"),
])
def test_loinc_codes_map_to_the_lab_kind(code: str, kind: str) -> None:
    found = lab_by_loinc(code)
    assert found is not None and found.id == kind


@pytest.mark.parametrize("code", ["53573-2", "3521-2", "85354-9"])
def test_codes_that_are_not_a_trough_or_a_single_value_are_not_mapped(code: str) -> None:
    # cyclosporine C2 (post-dose) and serum levels are not compared with whole-blood trough ranges;
    # the BP panel code itself holds no value (its components do).
    assert lab_by_loinc(code) is None


def test_fasting_glucose_is_its_own_kind() -> None:
    assert lab_by_name("fasting glucose").id == "fasting-glucose"  # type: ignore[union-attr]
    assert lab_by_name("glucose").id == "glucose"  # type: ignore[union-attr]


@pytest.mark.parametrize(("quantity", "value", "unit", "expected"), [
    ("glucose", 126, "mg/dL", 126 / 18.016),
    ("triglycerides", 620, "mg/dL", 620 / 88.57),
    ("cholesterol", 200, "mg/dL", 200 / 38.67),
    ("magnesium", 1.7, "mg/dL", 1.7 * 0.41144),
    ("magnesium", 1.4, "mEq/L", 0.7),
    ("magnesium", 0.7, "mmol/L", 0.7),
    ("electrolyte", 6.3, "mEq/L", 6.3),
    ("electrolyte", 6.3, "mmol/L", 6.3),
    ("hba1c", 48, "mmol/mol", 6.543),
    ("drug-concentration", 12, "mcg/L", 12),
    ("drug-concentration", 12, "ug/L", 12),
    ("pressure", 130, "mm[Hg]", 130),
    ("cell-count", 400, "cells/uL", 0.4),
    ("protein-creatinine-ratio", 50, "mg/mmol", 442),
    ("protein-creatinine-ratio", 0.2, "mg/mg", 200),
    ("gfr", 90, "mL/min/{1.73_m2}", 90),
    ("gfr", 90, "mL/min/1.73 m2", 90),
])
def test_conversions(quantity: str, value: float, unit: str, expected: float) -> None:
    assert convert(quantity, value, unit, "$") == pytest.approx(expected, rel=1e-3)


def test_a_drug_level_in_nmol_per_litre_needs_the_molar_mass() -> None:
    assert convert("drug-concentration", 10, "nmol/L", "$", molar_mass=804.0) == pytest.approx(8.04)
    assert accepts("drug-concentration", "nmol/L", molar_mass=804.0)
    assert not accepts("drug-concentration", "nmol/L")
    with pytest.raises(UnitError) as err:
        convert("drug-concentration", 10, "nmol/L", "$.labs[0].unit")
    assert "molar mass" in err.value.issues[0].expected


def test_an_unconvertible_unit_names_what_was_expected() -> None:
    with pytest.raises(UnitError) as err:
        convert("electrolyte", 6.3, "mg/dL", "$.labs[0].unit")
    assert "mmol/l" in err.value.issues[0].expected and "meq/l" in err.value.issues[0].expected


def _record(labs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"demographics": {"age_years": 9, "sex": "male"}, "diagnosis": {"type": "ipex"},
            "medications": [{"drug": "tacrolimus"}], "labs": labs}


def test_tacrolimus_level_in_nmol_per_litre_uses_the_kb_molar_mass() -> None:
    kb = get_kb()
    data = read_patient(_record([{"test": "77348-1", "value": 20, "unit": "nmol/L", "date": "2026-11-20"}]),
                        kb=kb, as_of=AS_OF)
    (lab,) = data.labs
    assert lab.kind.id == "tacrolimus-trough"
    assert lab.value == pytest.approx(20 * (kb.drugs["tacrolimus"].molar_mass or 0) / 1000)


def test_a_fhir_blood_pressure_panel_gives_two_readings() -> None:
    loinc = "http://loinc.org"
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p", "birthDate": "2012-01-01", "gender": "female"}},
        {"resource": {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-11-20",
                      "code": {"coding": [{"system": loinc, "code": "85354-9"}]},
                      "component": [
                          {"code": {"coding": [{"system": loinc, "code": "8480-6"}]},
                           "valueQuantity": {"value": 142, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                                             "code": "mm[Hg]"}},
                          {"code": {"coding": [{"system": loinc, "code": "8462-4"}]},
                           "valueQuantity": {"value": 91, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                                             "code": "mm[Hg]"}}]}}]}
    data = read_patient(bundle, kb=get_kb(), as_of=AS_OF)
    assert {(r.kind.id, r.value) for r in data.labs} == {("systolic-bp", 142), ("diastolic-bp", 91)}


def test_fhir_tacrolimus_in_nmol_per_litre_is_read() -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p", "birthDate": "2016-01-01", "gender": "male"}},
        {"resource": {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-11-20",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "11253-2"}]},
                      "valueQuantity": {"value": 10, "unit": "nmol/L", "system": "http://unitsofmeasure.org",
                                        "code": "nmol/L"}}}]}
    data = read_patient(bundle, kb=get_kb(), as_of=AS_OF)
    (lab,) = data.labs
    assert lab.value == pytest.approx(8.04)
