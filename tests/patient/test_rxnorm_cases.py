"""Every RxNorm code in tests/cases/codes/rxnorm-codes.yaml is read the way EHRs send it (a bare code in our
JSON, and a coded FHIR MedicationRequest) and identifies the drug, product and brand the case names; codes of
drugs outside the knowledge base identify nothing and are named back."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from ipexrx.knowledge import get_kb
from ipexrx.patient import read_patient

AS_OF = dt.date(2026, 12, 5)
CASES_FILE = Path(__file__).parents[1] / "cases" / "codes" / "rxnorm-codes.yaml"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SUBJ = {"reference": "Patient/p1"}
VIA = {"IN": "rxnorm-ingredient", "PIN": "rxnorm-ingredient", "BN": "rxnorm-brand",
       "SCD": "rxnorm-product", "SBD": "rxnorm-product", "GPCK": "rxnorm-product", "BPCK": "rxnorm-product"}

_DOC = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = _DOC["cases"]
NOT_IN_KB: list[dict[str, Any]] = _DOC["not_in_kb"]


def _ours(code: str) -> Any:
    return read_patient({"diagnosis": {"type": "ipex"}, "medications": [{"drug": code}]}, get_kb(), AS_OF)


def _fhir(code: str, display: str) -> Any:
    resources = [
        {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "2020-01-01"},
        {"resourceType": "Condition", "subject": SUBJ, "code": {"text": "IPEX syndrome"}},
        {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": SUBJ,
         "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code, "display": display}]}},
    ]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    return read_patient(bundle, get_kb(), AS_OF)


def _check(med: Any, case: dict[str, Any]) -> None:
    assert med.drug_id == case["drug"]
    assert med.identified_by == VIA[case["tty"]]
    assert med.product_id == case.get("product")
    if "brand" in case:
        assert med.brand == case["brand"]
    elif case["tty"] in ("IN", "PIN", "SCD"):
        assert med.brand is None  # an ingredient or generic product code names no brand


def test_the_case_file_is_well_formed() -> None:
    codes = [c["code"] for c in CASES + NOT_IN_KB]
    assert len(codes) == len(set(codes)), "a code is listed twice"
    for c in CASES:
        assert c["tty"] in VIA and c["source"] and c["name"]
        assert ("product" in c) == (c["tty"] in ("SCD", "SBD", "GPCK", "BPCK")), c["code"]
    assert len(CASES) >= 400


@pytest.mark.parametrize("case", CASES, ids=[f"{c['code']}-{c['drug']}" for c in CASES])
def test_the_knowledge_base_holds_the_code_under_the_named_drug_and_name(case: dict[str, Any]) -> None:
    """The case file and the knowledge base agree: a wrong edit to either is caught here."""
    drug = get_kb().drugs[case["drug"]]
    code, tty = case["code"], case["tty"]
    if tty == "IN":
        assert drug.codes.rxcui == code
    elif tty == "PIN":
        assert code in drug.codes.rxcui_other
    elif tty == "BN":
        assert any(b.rxcui == code and b.name == case["brand"] for b in drug.brands)
    else:
        prod = next(p for p in drug.products if p.id == case["product"])
        entry = next(r for r in prod.rxnorm if r.code == code)
        assert (entry.tty, entry.name) == (tty, case["name"])
    assert case["source"] in get_kb().sources


@pytest.mark.parametrize("case", CASES, ids=[f"{c['code']}-{c['drug']}" for c in CASES])
def test_a_bare_code_in_a_medication_record_identifies_the_drug(case: dict[str, Any]) -> None:
    data = _ours(case["code"])
    _check(data.meds[0], case)
    assert not [w for w in data.warnings if w.code in ("unknown-drug", "ambiguous-drug")]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['code']}-{c['drug']}" for c in CASES])
def test_a_coded_fhir_medication_request_identifies_the_drug(case: dict[str, Any]) -> None:
    data = _fhir(case["code"], case["name"])
    assert len(data.meds) == 1
    _check(data.meds[0], case)
    assert data.meds[0].status == "active"


@pytest.mark.parametrize("case", NOT_IN_KB, ids=[c["code"] for c in NOT_IN_KB])
def test_a_code_outside_the_knowledge_base_identifies_nothing_and_is_named_back(case: dict[str, Any]) -> None:
    data = _ours(case["code"])
    assert data.meds[0].drug_id is None
    assert any(case["code"] in w.message for w in data.warnings)
