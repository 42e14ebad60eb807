"""HSCT status from every record type: codes (SNOMED CT, ICD-10-PCS, CPT, ICD-10-CM), Procedure and
Condition status, and free text in our JSON format and in FHIR."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ipexrx.knowledge import get_kb
from ipexrx.patient import PatientInputError, read_patient
from ipexrx.patient.codes import hsct_code, might_be_transplant
from ipexrx.patient.hsct import HsctEvidence, combine, format_date, read_date, read_hsct_text

AS_OF = dt.date(2026, 11, 25)
SUBJ = {"reference": "Patient/p1"}
SCT = "http://snomed.info/sct"
CPT = "http://www.ama-assn.org/go/cpt"
PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
CM = "http://hl7.org/fhir/sid/icd-10-cm"


def _read(doc: Any) -> Any:
    return read_patient(doc, get_kb(), AS_OF)


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    res = [{"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "2020-01-01"},
           {"resourceType": "Condition", "subject": SUBJ, "code": {"text": "IPEX syndrome"}}, *resources]
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in res]}


def _proc(system: str | None, code: str | None, text: str | None = None, status: str = "completed",
          date: str | None = "2024-05-02") -> dict[str, Any]:
    cc: dict[str, Any] = {}
    if code:
        cc["coding"] = [{"system": system, "code": code}]
    if text:
        cc["text"] = text
    out = {"resourceType": "Procedure", "status": status, "subject": SUBJ, "code": cc}
    if date:
        out["performedDateTime"] = date
    return out


@pytest.mark.parametrize(("system", "code", "meaning", "kind"), [
    (SCT, "234336002", "transplant", None),
    (SCT, "23719005", "transplant", None),
    (SCT, "425983008", "transplant", "autologous"),
    (SCT, "2631000119108", "status", None),
    (CPT, "38240", "transplant", "allogeneic"),
    (CPT, "38241", "transplant", "autologous"),
    (CPT, "38242", "related", None),  # donor lymphocyte infusion: not a transplant
    (CPT, "38243", "related", None),
    (PCS, "30243G1", "transplant", "allogeneic"),  # nonautologous (before FY2017)
    (PCS, "30233Y0", "transplant", "autologous"),
    (PCS, "30243X3", "transplant", "allogeneic"),
    ("http://hl7.org/fhir/sid/icd-10-pcs", "30230G2", "transplant", "allogeneic"),
    (PCS, "30233C0", "related", None),  # genetically modified autologous cells: gene therapy
    (CM, "Z94.84", "status", None),
    (CM, "Z94.81", "status", None),
    (CM, "T86.01", "status", None),
    (CM, "T86.5", "status", None),
    ("http://hl7.org/fhir/sid/icd-10", "Z94.8", "related", None),
])
def test_hsct_codes(system: str, code: str, meaning: str, kind: str | None) -> None:
    hit = hsct_code(system, code)
    assert hit is not None and hit.meaning == meaning and hit.kind == kind


@pytest.mark.parametrize(("system", "code"), [
    (PCS, "30233U2"),  # pancreatic islet cells
    (PCS, "30233N1"),  # red blood cells
    (CM, "Z94.0"),  # kidney transplant status
    (CM, "Z94.82"),  # intestine transplant status
    (SCT, "80146002"),  # appendectomy
    (CPT, "50360"),  # kidney transplant
    (None, "38240"),
    ("http://loinc.org", "38240"),
])
def test_codes_that_are_not_hsct(system: str | None, code: str) -> None:
    assert hsct_code(system, code) is None


@pytest.mark.parametrize(("text", "status", "kind", "date"), [
    ("allogeneic HSCT 2024-03", "done", "allogeneic", "2024-03"),
    ("s/p BMT", "done", None, None),
    ("post cord blood transplant", "done", None, None),
    ("status post haplo transplant (day +100)", "done", "allogeneic", None),
    ("history of allo-HCT in March 2023", "done", "allogeneic", "2023-03"),
    ("autologous stem cell transplant 2019", "done", "autologous", "2019"),
    ("underwent bone marrow transplantation 12/2021", "done", None, "2021-12"),
    ("Bone marrow transplant status", "done", None, None),
    ("HSCT planned", "planned", None, None),
    ("referral for HSCT evaluation", "planned", None, None),
    ("pre-HSCT work-up, donor search", "planned", "allogeneic", None),
    ("no HSCT", "not-done", None, None),
    ("HSCT not done", "not-done", None, None),
    ("post-HSCT evaluation of chimerism", "done", None, None),
    ("s/p BMT, no second transplant", "done", None, None),
    ("GvHD prophylaxis planned for HSCT", "planned", None, None),
    ("HSCT", None, None, None),
    ("Hematopoietic stem cell transplant", None, None, None),
])
def test_free_text(text: str, status: str | None, kind: str | None, date: str | None) -> None:
    m = read_hsct_text(text)
    assert m is not None
    assert (m.status, m.kind, format_date(m.date, m.date_precision)) == (status, kind, date)


@pytest.mark.parametrize("text", ["HCT 35%", "Hct 0.41", "kidney transplant", "liver transplant 2020",
                                  "not transplanted", "eczema", ""])
def test_text_that_names_no_hsct(text: str) -> None:
    assert read_hsct_text(text) is None


def test_dates_keep_their_precision() -> None:
    assert read_date("on 2024-03-14") == (dt.date(2024, 3, 14), "day")
    assert read_date("Mar 2024") == (dt.date(2024, 3, 1), "month")
    assert read_date("in 2019") == (dt.date(2019, 1, 1), "year")
    assert read_date("2024-13") == (None, "day")
    assert format_date(dt.date(2024, 3, 1), "month") == "2024-03"


def test_might_be_transplant() -> None:
    assert might_be_transplant("Kidney transplant") and might_be_transplant("Donor lymphocyte infusion")
    assert not might_be_transplant("Appendectomy")


def test_done_wins_and_the_latest_transplant_dates_it() -> None:
    ev = [HsctEvidence("planned", dt.date(2023, 1, 1), "day", None, "plan", "$.a"),
          HsctEvidence("done", dt.date(2023, 6, 1), "day", "allogeneic", "first", "$.b"),
          HsctEvidence("done", dt.date(2024, 2, 1), "day", "allogeneic", "second", "$.c")]
    r = combine(ev, AS_OF)
    assert (r.status, r.date, r.kind, r.path) == ("done", dt.date(2024, 2, 1), "allogeneic", "$.c")
    assert r.notes and "plan reads as transplant planned" in r.notes[0][1]


def test_a_done_reading_dated_in_the_future_is_a_plan() -> None:
    r = combine([HsctEvidence("done", dt.date(2027, 1, 1), "month", None, "'HSCT 2027-01'", "$.x")], AS_OF)
    assert r.status == "planned" and r.notes and "after the assessment date" in r.notes[0][1]


def test_json_free_text_forms() -> None:
    p = _read({"diagnosis": {"type": "ipex"}, "hsct": "s/p allogeneic BMT 2023-05"})
    assert (p.hsct_status, p.hsct_date, p.hsct_date_precision, p.hsct_kind) == (
        "done", dt.date(2023, 5, 1), "month", "allogeneic")
    p = _read({"diagnosis": {"type": "ipex"}, "hsct": {"status": "done", "date": "2022-09"}})
    assert (p.hsct_date, p.hsct_date_precision) == (dt.date(2022, 9, 1), "month")
    p = _read({"diagnosis": {"type": "ipex"}, "hsct": {"status": "done", "donor": "matched sibling donor"}})
    assert p.hsct_kind == "allogeneic"


def test_json_manifestation_line_is_hsct_history_not_a_manifestation() -> None:
    p = _read({"diagnosis": {"type": "ipex"}, "manifestations": ["post cord blood transplant", "eczema"]})
    assert p.hsct_status == "done"
    assert [m.text for m in p.manifestations] == ["eczema"]
    assert any(w.code == "hsct" and w.path == "$.manifestations[0]" for w in p.warnings)


def test_json_stated_status_and_contradicting_text_named_back() -> None:
    p = _read({"diagnosis": {"type": "ipex"}, "hsct": {"status": "not-done", "note": "s/p BMT 2021"}})
    assert p.hsct_status == "done"
    assert any("reads as not transplanted" in w.message for w in p.warnings)


def test_json_bare_mention_cannot_be_judged() -> None:
    p = _read({"diagnosis": {"type": "ipex"}, "hsct": {"note": "HSCT"}})
    assert p.hsct_status == "not-done" and p.hsct_status_basis == "unclear"
    assert any("cannot be judged" in w.message for w in p.warnings) and p.hsct_notes


@pytest.mark.parametrize(("hsct", "basis"), [
    ({"status": "not-done"}, "recorded"), ({"note": "no HSCT"}, "recorded"), ({}, "not-recorded"),
    ({"note": "BMT"}, "unclear"), ({"date": "2023-05"}, "unclear"), ({"donor": "matched sibling"}, "unclear")])
def test_json_not_done_says_what_it_rests_on(hsct: dict[str, str], basis: str) -> None:
    """not-done from the record, from nothing, or from a mention without a status: only the first is
    'not transplanted' (patient.hsct.status_words)."""
    from ipexrx.patient.hsct import status_words

    p = _read({"diagnosis": {"type": "ipex"}, "hsct": hsct})
    assert (p.hsct_status, p.hsct_status_basis) == ("not-done", basis)
    assert status_words(p.hsct_status, p.hsct_status_basis) == {
        "recorded": "not transplanted", "not-recorded": "no transplant recorded",
        "unclear": "HSCT mentioned, status unclear"}[basis]
    if basis == "unclear":
        assert any(w.code == "hsct" and "cannot be judged" in w.message for w in p.warnings)


def test_json_done_is_recorded_and_transplanted() -> None:
    from ipexrx.patient.hsct import status_words

    p = _read({"diagnosis": {"type": "ipex"}, "hsct": {"status": "done", "date": "2023-05"}})
    assert (p.hsct_status, p.hsct_status_basis) == ("done", "recorded")
    assert status_words(p.hsct_status, p.hsct_status_basis) == "transplanted"


def test_json_transplant_date_in_the_future_is_an_error() -> None:
    with pytest.raises(PatientInputError):
        _read({"diagnosis": {"type": "ipex"}, "hsct": {"status": "done", "date": "2027-01-02"}})


def test_fhir_procedure_codes_with_and_without_text() -> None:
    for system, code in ((SCT, "234336002"), (PCS, "30243G3"), (CPT, "38240")):
        p = _read(_bundle(_proc(system, code)))
        assert p.hsct_status == "done" and p.hsct_date == dt.date(2024, 5, 2), code
        assert any(code in b for b in p.hsct_basis)
    p = _read(_bundle(_proc(SCT, "234336002", "Allo HSCT from matched unrelated donor")))
    assert p.hsct_kind == "allogeneic"


@pytest.mark.parametrize("status", ["not-done", "entered-in-error", "stopped", "unknown"])
def test_fhir_procedure_not_performed_is_not_a_transplant(status: str) -> None:
    p = _read(_bundle(_proc(SCT, "234336002", status=status)))
    assert p.hsct_status == "not-done" and p.hsct_status_basis == "unclear"  # named, status not readable
    assert any("234336002" in n and "no status that can be read" in n for n in p.hsct_notes)
    assert any(f"status '{status}'" in w.message and "not read as a transplant" in w.message for w in p.warnings)


def test_fhir_procedure_in_preparation_is_planned_and_says_so() -> None:
    p = _read(_bundle(_proc(CPT, "38240", status="preparation", date=None)))
    assert p.hsct_status == "planned"
    assert any("read as planned, not as a transplant" in w.message for w in p.warnings)


def test_fhir_unrelated_procedures_keep_the_old_policy_and_transplant_like_ones_are_named() -> None:
    p = _read(_bundle(_proc(SCT, "80146002", "Appendectomy"), _proc(None, None, "Kidney transplant"),
                      _proc(CPT, "38242")))
    msgs = [w.message for w in p.warnings]
    assert any("Procedure 'Appendectomy' skipped: only HSCT is used" in m for m in msgs)
    assert any("'Kidney transplant'" in m and "not read as an HSCT" in m for m in msgs)
    assert any("CPT 38242" in m and "not a transplant" in m for m in msgs)
    assert p.hsct_status == "not-done" and p.hsct_status_basis == "unclear"  # a DLI follows a transplant
    p = _read(_bundle(_proc(SCT, "80146002", "Appendectomy"), _proc(None, None, "Kidney transplant")))
    assert p.hsct_status == "not-done" and p.hsct_status_basis == "not-recorded"  # no HSCT named at all


def test_fhir_conditions_history_status_and_text() -> None:
    inactive = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "resolved"}]}
    for code in ({"coding": [{"system": CM, "code": "Z94.84"}]}, {"coding": [{"system": CM, "code": "Z94.81"}]},
                 {"coding": [{"system": SCT, "code": "153351000119102"}]}, {"text": "s/p BMT"}):
        p = _read(_bundle({"resourceType": "Condition", "subject": SUBJ, "clinicalStatus": inactive, "code": code,
                           "onsetDateTime": "2022-02-02"}))
        assert p.hsct_status == "done" and p.hsct_date == dt.date(2022, 2, 2), code
        assert not p.manifestations
    p = _read(_bundle({"resourceType": "Condition", "subject": SUBJ, "code": {"text": "HSCT planned"}}))
    assert p.hsct_status == "planned"


def test_fhir_completed_procedure_beats_a_planning_condition() -> None:
    p = _read(_bundle({"resourceType": "Condition", "subject": SUBJ, "code": {"text": "candidate for HSCT"}},
                      _proc(SCT, "234336002")))
    assert p.hsct_status == "done"
    assert any("reads as transplant planned" in w.message for w in p.warnings)


def test_fhir_no_hsct_anywhere_is_not_done() -> None:
    p = _read(_bundle())
    assert p.hsct_status == "not-done" and not p.hsct_basis and p.hsct_status_basis == "not-recorded"


def test_fhir_completed_procedure_is_recorded() -> None:
    p = _read(_bundle(_proc(SCT, "234336002")))
    assert (p.hsct_status, p.hsct_status_basis) == ("done", "recorded")
