"""Reading our patient JSON: units are converted or refused, bad input is located by JSON path."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from ipexrx.knowledge import get_kb
from ipexrx.patient import MalformedInputError, PatientInputError, UnitError, read_patient
from ipexrx.patient.units import convert, normalize_dose

AS_OF = dt.date(2026, 11, 25)


def _base(**extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"demographics": {"age_years": 5, "weight_kg": 18}, "diagnosis": {"type": "ipex"}}
    rec.update(extra)
    return rec


def _read(rec: Any) -> Any:
    return read_patient(rec, get_kb(), AS_OF)


def _paths(exc: PatientInputError) -> list[str]:
    return [i.path for i in exc.issues]


@pytest.mark.parametrize(("quantity", "value", "unit", "expected"), [
    ("creatinine", 1.0, "mg/dL", 88.42),
    ("creatinine", 50, "µmol/L", 50),
    ("glucose", 180.16, "mg/dL", 10.0),
    ("drug-concentration", 12, "mcg/L", 12),
    ("drug-concentration", 12, "ug/L", 12),
    ("cell-count", 1500, "cells/uL", 1.5),
    ("cell-count", 1.5, "10*3/uL", 1.5),
    ("cell-count", 1.5, "/nL", 1.5),
    ("hba1c", 53, "mmol/mol", 53 * 0.09148 + 2.152),
    ("tsh", 2.0, "m[IU]/L", 2.0),
])
def test_units_convert_to_the_canonical_unit(quantity: str, value: float, unit: str, expected: float) -> None:
    assert convert(quantity, value, unit, "$.x") == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("unit", [None, "", "nmol/L", "mg", "furlongs"])
def test_unknown_or_missing_units_are_refused_not_guessed(unit: str | None) -> None:
    with pytest.raises(UnitError) as err:
        convert("creatinine", 1.0, unit, "$.labs[0].unit")
    assert err.value.issues[0].path == "$.labs[0].unit"
    assert "umol/l" in err.value.issues[0].expected


def test_doses_normalise_mass_and_refuse_volumes() -> None:
    assert normalize_dose(500, "mcg", "$").value == pytest.approx(0.5)
    assert normalize_dose(2, "mg/kg", "$").unit == "mg/kg"
    assert normalize_dose(375, "mg/m2", "$").unit == "mg/m2"
    with pytest.raises(UnitError, match="unknown dose unit"):
        normalize_dose(2, "mL", "$.medications[0].dose.unit")


def test_lab_values_are_converted_and_drugs_resolved_by_brand_synonym_and_rxcui() -> None:
    data = _read(_base(
        medications=[{"drug": "Prograf"}, {"drug": "rapamycin"}, {"drug": "x", "rxcui": "3008"},
                     {"drug": "cyclophosphamide"}],
        labs=[{"test": "creatinine", "value": 0.5, "unit": "mg/dL", "date": "2026-11-01"},
              {"test": "2160-0", "value": 0.5, "unit": "mg/dL", "date": "2026-11-02"}],
    ))
    assert [m.drug_id for m in data.meds] == ["tacrolimus", "sirolimus", "cyclosporine", None]
    assert data.labs[0].value == pytest.approx(44.21)
    assert data.labs[1].kind.id == "creatinine"
    outside = [w for w in data.warnings if w.code == "outside-kb-drug"]
    assert outside and outside[0].path == "$.medications[3].drug"
    assert "Cyclophosphamide is a known drug without IPEX content" in outside[0].message
    assert "not checked" in outside[0].message


def test_broken_json_is_a_malformed_input_error_with_position() -> None:
    with pytest.raises(MalformedInputError) as err:  # cut off: said so, wherever the text ends
        _read('{"diagnosis": {"type": "ipex"},\n')
    assert err.value.issues[0].got.endswith(": the text ends before the JSON is complete")
    with pytest.raises(MalformedInputError) as err:  # one line: the column (an NDJSON line is a line of its own)
        _read('{"diagnosis": {"type": "ipex"} "x": 1}')
    assert err.value.issues[0].got.endswith(" at column 32")
    with pytest.raises(MalformedInputError) as err:
        _read('{\n "diagnosis": {"type": "ipex"}\n "x": 1}')
    assert err.value.issues[0].got.endswith(" at line 3, column 2")


@pytest.mark.parametrize("doc", ["[1, 2]", "42", '"text"', "null"])
def test_a_json_document_that_is_not_an_object_is_refused(doc: str) -> None:
    with pytest.raises(MalformedInputError):
        _read(doc)


@pytest.mark.parametrize(("record", "path"), [
    (_base(demographics={"weight_kg": 400}), "$.demographics.weight_kg"),
    (_base(demographics={"age_years": -1}), "$.demographics.age_years"),
    (_base(medications=[{"drug": "sirolimus", "dose": {"value": -1, "unit": "mg"}}]), "$.medications[0].dose.value"),
    (_base(medications=[{"drug": "sirolimus", "dose": "-2 mg"}]), "$.medications[0].dose.value"),
    (_base(medications=[{"drug": "sirolimus", "status": "maybe"}]), "$.medications[0].status"),
    (_base(medicatons=[]), "$.medicatons"),
    ({"demographics": {}}, "$.diagnosis"),
    (_base(labs=[{"test": "creatinine", "value": 1}]), "$.labs[0].date"),
    (_base(medications=[{"drug": "sirolimus", "start_date": "2026-05-01", "end_date": "2026-01-01"}]),
     "$.medications[0]"),
])
def test_invalid_records_give_errors_located_by_json_path(record: dict[str, Any], path: str) -> None:
    with pytest.raises(PatientInputError) as err:
        _read(record)
    assert path in _paths(err.value), _paths(err.value)


def test_missing_unit_on_a_lab_the_rules_need_is_a_unit_error() -> None:
    with pytest.raises(UnitError) as err:
        _read(_base(labs=[{"test": "tacrolimus trough", "value": 9, "date": "2026-11-01"}]))
    assert _paths(err.value) == ["$.labs[0].unit"]
    assert err.value.issues[0].got == "no unit"


def test_missing_dose_unit_is_a_unit_error() -> None:
    with pytest.raises(UnitError) as err:
        _read(_base(medications=[{"drug": "sirolimus", "dose": {"value": 1}}]))
    assert _paths(err.value) == ["$.medications[0].dose.unit"]


def test_absurd_lab_value_is_refused_with_the_plausible_range() -> None:
    with pytest.raises(PatientInputError) as err:
        _read(_base(labs=[{"test": "creatinine", "value": 90, "unit": "mmol/L", "date": "2026-11-01"}]))
    issue = err.value.issues[0]
    assert issue.path == "$.labs[0].value" and "plausible" in issue.expected


def test_all_problems_are_reported_together() -> None:
    rec = _base(demographics={"weight_kg": 999},
                medications=[{"drug": "sirolimus", "dose": {"value": 0, "unit": "mg"}}], labs=[{"value": 1}])
    with pytest.raises(PatientInputError) as err:
        _read(rec)
    assert len(err.value.issues) >= 3


def test_future_dates_are_refused_relative_to_as_of() -> None:
    with pytest.raises(PatientInputError) as err:
        _read(_base(labs=[{"test": "creatinine", "value": 40, "unit": "umol/L", "date": "2027-01-01"}]))
    assert _paths(err.value) == ["$.labs[0].date"]


def test_unrecognised_labs_and_vaccines_are_warnings_not_errors() -> None:
    data = _read(_base(labs=[{"test": "ferritin", "value": 40, "unit": "ng/mL", "date": "2026-11-01"}],
                       immunizations=[{"vaccine": "local product X", "status": "planned"}]))
    codes = {w.code for w in data.warnings}
    assert {"unknown-lab", "unknown-vaccine"} <= codes


def test_error_serialises_for_batch_output() -> None:
    with pytest.raises(PatientInputError) as err:
        _read(_base(demographics={"weight_kg": 400}))
    payload = json.loads(json.dumps(err.value.to_dict()))
    assert payload["issues"][0]["path"] == "$.demographics.weight_kg"
