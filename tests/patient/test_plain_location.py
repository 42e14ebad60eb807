"""`plain_location`: where a datum sits in the input, in words a clinician reads (no JSON path)."""

from __future__ import annotations

import pytest

from ipexrx.patient.errors import plain_location


@pytest.mark.parametrize("path,words", [
    ("$.medications[11].drug", "medication 12 (drug)"),
    ("$.medications[0].dose.value", "medication 1 (dose, value)"),
    ("$.labs[0]", "lab result 1"),
    ("$.immunizations[1]", "immunization 2"),
    ("$.infections[0]", "infection 1"),
    ("$.entry[12].resource", "FHIR Bundle entry 13"),
    ("$.patient.birth_date", "patient, birth date"),
    ("$", "the record"),
    (None, ""),
])
def test_a_json_path_is_said_in_words_counting_from_one(path: str | None, words: str) -> None:
    assert plain_location(path) == words
    assert "$" not in plain_location(path) and "[" not in plain_location(path)
