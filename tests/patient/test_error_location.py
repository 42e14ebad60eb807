"""Input errors in words a reader can act on: the field (no JSON path) and the line of the file it is on.

`describe_path` says where an issue is (`medication 1, field "dose"`); `line_of` finds the line by walking the
JSON structure (never by searching for the key's text); `issue_lines` puts file, line, field and problem
together, as every human face prints them.
"""

from __future__ import annotations

import json

import pytest

from ipexrx.patient.errors import (
    ELEMENT_WORDS,
    MISSING,
    InputIssue,
    PatientInputError,
    describe_path,
    issue_in_words,
    issue_lines,
    issue_places,
)
from ipexrx.patient.jsonpos import line_of, path_steps

BUNDLE = {"resourceType": "Bundle", "type": "collection", "entry": [
    {"resource": {"resourceType": "Patient", "id": "p1"}},
    {"resource": {"resourceType": "Condition"}},
    {"resource": {"resourceType": "MedicationStatement", "id": "m7"}},
    {"resource": {"resourceType": "Observation", "id": "x", "valueQuantity": {"value": 400, "unit": "kg"}}},
]}


@pytest.mark.parametrize("path,words", [
    ("$.diagnosis", 'field "diagnosis"'),
    ("$.demographics.weight_kg", 'demographics, field "weight_kg"'),
    ("$.medications[0].dose", 'medication 1, field "dose"'),
    ("$.medications[11].dose.unit", 'medication 12, field "dose.unit"'),
    ("$.labs[2].value", 'lab result 3, field "value"'),
    ("$.immunizations[0]", "immunization 1"),
    ("$.manifestations[4].hpo", 'manifestation 5, field "hpo"'),
    ("$.infections[1].since", 'infection 2, field "since"'),
    ("$.hsct.basis[0]", "hsct, basis 1"),
    ("$", "the whole document"),
    ("", "the whole document"),
])
def test_a_record_path_is_said_as_the_item_counted_from_one_and_the_field(path: str, words: str) -> None:
    assert describe_path(path) == words
    assert "$" not in describe_path(path) and "[" not in describe_path(path)


@pytest.mark.parametrize("path,words", [
    ("$.entry[3].resource.valueQuantity.value", 'entry 4 (Observation, id "x"), element "valueQuantity.value"'),
    ("$.entry[1].resource.code", 'entry 2 (Condition), element "code"'),
    ("$.entry[2].resource.dosage[0].doseAndRate[0].doseQuantity",
     'entry 3 (MedicationStatement, id "m7"), dosage 1, doseAndRate 1, element "doseQuantity"'),
    # a FHIR reader's note: the record field a Bundle element was read into
    ("$.entry[3].resource (field value)", 'entry 4 (Observation, id "x"), field "value"'),
    ("$.entry[2].resource.dosage[0].doseAndRate[0].doseQuantity (field unit)",
     'entry 3 (MedicationStatement, id "m7"), dosage 1, doseAndRate 1, element "doseQuantity.unit"'),
    ("$.entry[9].resource.code", 'entry 10, element "code"'),  # no such entry in the document: no type
    ("$.entry", 'field "entry"'),
    ("$.resourceType", 'field "resourceType"'),
])
def test_a_fhir_path_names_the_entry_with_its_resource_type_and_id(path: str, words: str) -> None:
    assert describe_path(path, BUNDLE) == words


def test_an_element_is_said_relative_to_its_resource_when_a_warning_names_the_resource() -> None:
    from ipexrx.patient.errors import element_words

    assert element_words("$.entry[3].resource.valueQuantity.value", "$.entry[3].resource") == \
        'element "valueQuantity.value"'
    assert element_words("$.entry[3].resource.dosage[0].timing", "$.entry[3].resource") == 'dosage 1, element "timing"'
    assert element_words("$.entry[3].resource", "$.entry[3].resource") == "the resource"
    assert element_words("$.entry[1].resource.code", "$.entry[3].resource") == 'entry 2, element "code"'


def test_without_the_document_an_entry_is_named_by_its_number_only() -> None:
    assert describe_path("$.entry[3].resource.valueQuantity.value") == 'entry 4, element "valueQuantity.value"'


def test_what_is_not_a_json_path_is_left_as_it_is() -> None:
    assert describe_path("level 3 (value)") == "level 3 (value)"
    assert path_steps("level 3") is None and path_steps("$.a..b") is None
    assert path_steps("$.entry[3].resource (field dose.unit)") == ["entry", 3, "resource"]


# ------------------------------------------------------------------------------------------------
# the line finder
# ------------------------------------------------------------------------------------------------

NESTED = """{
  "diagnosis": {"type": "ipex"},
  "demographics": {
    "sex": "male",
    "weight_kg": "heavy"
  },
  "medications": [
    {"drug": "tacrolimus"},
    {
      "drug": "sirolimus",
      "dose": {"value": -1, "unit": "mg"}
    }
  ],
  "note": "the word \\"weight_kg\\" and \\"dose\\" in text must not mislead"
}
"""


@pytest.mark.parametrize("path,line", [
    ("$", 1),
    ("$.diagnosis", 2),
    ("$.diagnosis.type", 2),
    ("$.demographics.weight_kg", 5),
    ("$.medications[0]", 8),
    ("$.medications[0].drug", 8),
    ("$.medications[1]", 9),
    ("$.medications[1].dose", 11),
    ("$.medications[1].dose.value", 11),
    # missing: the line where the object that should hold it starts
    ("$.demographics.birth_date", 3),
    ("$.medications[0].dose", 8),
    ("$.medications[1].route", 9),
    ("$.hsct", 1),
    ("$.medications[5]", 7),  # no such item: the list's line
])
def test_the_line_is_where_the_element_is_or_where_its_object_starts(path: str, line: int) -> None:
    assert line_of(NESTED, path) == line
    assert line_of(NESTED.encode("utf-8"), path) == line


def test_a_key_repeated_elsewhere_in_the_text_is_not_taken_for_the_element() -> None:
    text = '{\n"a": {"value": 1},\n"b": [\n{"value": 2},\n{"x": "\\"value\\": 3",\n "value": 4}]}'
    assert line_of(text, "$.b[1].value") == 6
    assert line_of(text, "$.b[0].value") == 4
    assert line_of(text, "$.a.value") == 2


def test_crlf_and_lone_cr_line_ends_count_as_one_line_each() -> None:
    crlf = NESTED.replace("\n", "\r\n")
    assert line_of(crlf, "$.demographics.weight_kg") == 5
    assert line_of(crlf, "$.medications[1].dose") == 11
    assert line_of(NESTED.replace("\n", "\r"), "$.medications[1].dose") == 11


def test_a_one_line_file_is_line_one_and_a_byte_order_mark_is_skipped() -> None:
    one = json.dumps(json.loads(NESTED))
    assert "\n" not in one
    assert line_of(one, "$.medications[1].dose.value") == 1
    assert line_of(one, "$.hsct") == 1
    assert line_of("\ufeff" + NESTED, "$.demographics.weight_kg") == 5
    assert line_of(b"\xef\xbb\xbf" + NESTED.encode(), "$.medications[1]") == 9


def test_a_fhir_bundle_element_is_found_inside_its_entry() -> None:
    text = json.dumps(BUNDLE, indent=2)
    lines = text.splitlines()
    at = line_of(text, "$.entry[3].resource.valueQuantity.value")
    assert at is not None and '"value": 400' in lines[at - 1]
    at = line_of(text, "$.entry[2].resource")
    assert at is not None and '"resource"' in lines[at - 1] and '"m7"' in lines[at + 1]
    at = line_of(text, "$.entry[3].resource (field value)")  # a reader's note: the entry's resource
    assert at is not None and '"resource"' in lines[at - 1]


def test_invalid_json_answers_with_the_line_where_reading_stopped() -> None:
    text = '{\n "diagnosis": {"type": "ipex"},\n "medications": [{"drug": "x" "dose": "1 mg"}]\n}'
    assert line_of(text, "$") == 3
    assert line_of(text, "$.medications[0].dose") == 3
    assert line_of("not a path", "level 3") is None


# ------------------------------------------------------------------------------------------------
# the sentences
# ------------------------------------------------------------------------------------------------

def test_issue_lines_name_the_file_the_line_and_the_field_without_a_json_path() -> None:
    exc = PatientInputError([InputIssue("$.diagnosis", "this required field", "nothing"),
                             InputIssue("$.demographics.weight_kg", "a number", "'heavy'"),
                             InputIssue("$.patient", "no such field (check spelling; see docs/patient-format.md)",
                                        "{...}")], "the patient record is not valid")
    text = '{\n "patient": {},\n "demographics": {"weight_kg": "heavy"}\n}\n'
    got = issue_lines(exc, "bad.json", text)
    assert got == ['bad.json, line 1, field "diagnosis": required but missing.',
                   "bad.json, line 3, demographics, field \"weight_kg\": expected a number, got 'heavy'.",
                   'bad.json, line 2, field "patient": not a field of the ipexrx patient format (check the '
                   'spelling; see docs/patient-format.md).']
    assert not any("$" in g for g in got)


def test_issue_lines_of_a_batch_line_use_the_known_line_and_read_entry_types_from_the_text() -> None:
    exc = PatientInputError([InputIssue("$.entry[3].resource.valueQuantity.value", "a number <= 250.0", "400.0")])
    assert issue_lines(exc, "batch.ndjson", line=12, document=BUNDLE) == [
        'batch.ndjson, line 12, entry 4 (Observation, id "x"), element "valueQuantity.value": expected a number '
        '<= 250.0, got 400.0.']
    text = json.dumps(BUNDLE, indent=1)
    (place,) = issue_places(exc, text=text)
    assert place.startswith("line ") and place.endswith('entry 4 (Observation, id "x"), element "valueQuantity.value"')


def test_issue_lines_stop_at_the_limit_and_say_how_many_more() -> None:
    exc = PatientInputError([InputIssue(f"$.labs[{i}].value", "a number", "'x'") for i in range(7)])
    got = issue_lines(exc, limit=5)
    assert len(got) == 6 and got[0] == "lab result 1, field \"value\": expected a number, got 'x'."
    assert got[-1] == "... and 2 more problems (the JSON output lists them all)."


def test_the_record_reader_uses_the_wording_constants_for_missing_and_unknown_fields() -> None:
    from ipexrx.patient.errors import MISSING, UNKNOWN_FIELD
    from ipexrx.patient.model import parse_record

    with pytest.raises(PatientInputError) as err:
        parse_record({"patient": {}})
    by_path = {i.path: i.expected for i in err.value.issues}
    assert by_path == {"$.diagnosis": MISSING, "$.patient": UNKNOWN_FIELD}


# ------------------------------------------------------------------------------------------------
# In clinical words, for a card a clinician reads in the EHR: the resource, then the element, then the problem
# ------------------------------------------------------------------------------------------------
CLINICAL = {"resourceType": "Bundle", "type": "collection", "entry": [
    {"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "2024-01-01"}},
    {"resource": {"resourceType": "MedicationRequest", "id": "draft-csa", "status": "draft",
                  "medicationCodeableConcept": {"text": "cyclosporine 25 mg capsule"}}},
    {"resource": {"resourceType": "Observation", "id": "o2", "code": {"coding": [{"display": "Tacrolimus trough"}]}}},
    {"resource": {"resourceType": "Immunization", "id": "i1", "vaccineCode": {"text": "MMR"}}},
    {"resource": {"resourceType": "MedicationStatement", "id": "ms1"}},
]}


@pytest.mark.parametrize("issue,words", [
    (InputIssue("$.entry[1].resource.dosageInstruction[0].doseAndRate[0].doseQuantity.value", "a number > 0.0",
                "-50.0"),
     "the draft order for cyclosporine 25 mg capsule (MedicationRequest draft-csa): its dose (doseQuantity.value) "
     "should be a number more than 0; it is -50.0"),
    (InputIssue("$.entry[1].resource.dosageInstruction[0].doseAndRate[0].doseQuantity.value", "a number", "'ten'"),
     'the draft order for cyclosporine 25 mg capsule (MedicationRequest draft-csa): its dose (doseQuantity.value) '
     'should be a number; it is "ten"'),
    (InputIssue("$.entry[1].resource.dosageInstruction[1].route", "a CodeableConcept", "'po'"),
     'the draft order for cyclosporine 25 mg capsule (MedicationRequest draft-csa): its route in dosage 2 '
     'should be a CodeableConcept; it is "po"'),
    (InputIssue("$.entry[2].resource (field unit)", "a unit of mass concentration", "'mg/L'"),
     'the lab result for Tacrolimus trough (Observation o2): its unit (valueQuantity.unit) should be a unit of mass '
     'concentration; it is "mg/L"'),
    (InputIssue("$.entry[2].resource (field date)", "a date on or before 2026-11-25", "2026-12-01"),
     "the lab result for Tacrolimus trough (Observation o2): its date should be a date on or before 2026-11-25; "
     "it is 2026-12-01"),
    (InputIssue("$.entry[3].resource.occurrenceDateTime", MISSING, "nothing"),
     "the vaccination with MMR (Immunization i1): its date (occurrenceDateTime) is missing; it is required"),
    (InputIssue("$.entry[4].resource.effectiveDateTime", "a FHIR dateTime", "'yesterday'"),
     'the medication (MedicationStatement ms1): its date (effectiveDateTime) should be a FHIR dateTime; it is '
     '"yesterday"'),
    (InputIssue("$.entry[0].resource.birthDate", "a FHIR date", "'soon'"),
     'the patient (Patient p1): its date of birth (birthDate) should be a FHIR date; it is "soon"'),
    (InputIssue("$.entry[0].resource.photo", "a list", "'x'"),
     'the patient (Patient p1): its element "photo" should be a list; it is "x"'),
])
def test_an_issue_in_clinical_words_names_the_resource_then_the_element_then_the_problem(
        issue: InputIssue, words: str) -> None:
    assert issue_in_words(issue, CLINICAL) == words


def test_a_record_without_a_patient_says_so() -> None:
    no_patient = InputIssue("$.entry", "one Patient resource", "none")
    assert issue_in_words(no_patient, {"resourceType": "Bundle", "entry": CLINICAL["entry"][1:]}) == \
        "the record has no Patient resource"
    assert issue_in_words(no_patient) == "the record has no Patient resource"


def test_an_unreadable_patient_is_said_to_be_there_but_unreadable_and_why() -> None:
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "p9",
                                                                "birthDate": "not-a-date"}}]}
    words = issue_in_words(InputIssue("$.entry", "one Patient resource", "none"), bundle)
    assert words.startswith("the record has no Patient resource that can be read: the patient (Patient p9): its "
                            "date of birth (birthDate) should be a FHIR date")
    assert words.endswith('; it is "not-a-date"')


def test_the_element_table_keeps_fhir_names_out_of_the_words_and_the_json_path_is_unchanged() -> None:
    for element, words in ELEMENT_WORDS.items():
        assert words and "." not in words and "_" not in words and words == words.lower(), element
    issue = InputIssue("$.entry[1].resource.dosageInstruction[0].doseAndRate[0].doseQuantity.value", "a number",
                       "'ten'")
    issue_in_words(issue, CLINICAL)
    assert issue.to_dict()["path"] == "$.entry[1].resource.dosageInstruction[0].doseAndRate[0].doseQuantity.value"


def test_a_component_or_reference_range_is_always_numbered_so_its_value_is_not_read_as_the_results() -> None:
    from ipexrx.patient.errors import InputIssue, issue_in_words

    doc = {"resourceType": "Bundle", "entry": [{"resource": {
        "resourceType": "Observation", "id": "bp", "code": {"text": "Blood pressure"},
        "component": [{"valueQuantity": {"value": "x"}}, {"valueQuantity": {"value": "y"}}],
        "referenceRange": [{"high": {"unit": 5}}]}}]}

    def said(path: str) -> str:
        return issue_in_words(InputIssue(path, "a number", "'x'"), doc)

    first = said("$.entry[0].resource.component[0].valueQuantity.value")
    assert "its value (valueQuantity.value) in component 1 should be a number" in first
    assert "in component 2" in said("$.entry[0].resource.component[1].valueQuantity.value")
    own = said("$.entry[0].resource.valueQuantity.value")
    assert "component" not in own and "its value (valueQuantity.value) should be" in own
    limit = said("$.entry[0].resource.referenceRange[0].high.unit")
    assert "its upper reference limit unit (high.unit) in reference range 1" in limit
