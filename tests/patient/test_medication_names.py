"""How a medication record is identified, and how every record that is not is named back."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ipexrx.knowledge import get_kb
from ipexrx.patient import read_patient
from ipexrx.patient.lexicon import known_name, suggest
from ipexrx.patient.medtext import read_product_text
from ipexrx.patient.resolve import kb_index

AS_OF = dt.date(2026, 12, 5)


def _read(meds: list[dict[str, Any]]) -> Any:
    return read_patient({"diagnosis": {"type": "ipex"}, "medications": meds}, get_kb(), AS_OF)


@pytest.mark.parametrize(("text", "route", "mg_per_ml", "strength", "percent"), [
    ("Prograf 0.5 mg capsule", "oral", None, 0.5, None),
    ("clarithromycin 250 mg/5 mL suspension", "oral", 50.0, None, None),
    ("clarithromycin 50 MG/ML Oral Suspension", "oral", 50.0, None, None),
    ("Protopic 0.1% ointment", "topical", None, None, 0.1),
    ("tacrolimus 1 MG/ML Topical Ointment", "topical", 1.0, None, None),
    ("budesonide inhalation suspension 0.5 mg/2 mL", "inhaled", 0.25, None, None),
    ("prednisolone acetate 1% ophthalmic suspension", "ophthalmic", None, None, 1.0),
    ("Solu-Medrol 125 mg injection", None, None, 125.0, None),  # injection: IV, IM or SC not said
    ("Sulfatrim 200 mg-40 mg/5 mL", None, None, None, None),  # combination: no single concentration
    ("sulfamethoxazole 200 MG / trimethoprim 40 MG per 5 ML Oral Suspension", "oral", None, None, None),
    ("sirolimus", None, None, None, None),
])
def test_product_text_says_route_strength_and_concentration_only_when_unambiguous(
        text: str, route: str | None, mg_per_ml: float | None, strength: float | None, percent: float | None) -> None:
    got = read_product_text(text)
    assert (got.route, got.mg_per_ml, got.strength_mg, got.percent) == (route, mg_per_ml, strength, percent)


def test_brand_synonym_and_product_text_identify_the_drug() -> None:
    data = _read([{"drug": "Prograf"}, {"drug": "rapamycin"}, {"drug": "Prograf 0.5 mg capsule"},
                  {"drug": "TACROLIMUS 1 mg capsule"}])
    assert [m.drug_id for m in data.meds] == ["tacrolimus", "sirolimus", "tacrolimus", "tacrolimus"]
    assert data.meds[0].brand == "Prograf" and data.meds[2].brand == "Prograf"
    assert data.meds[2].route == "oral" and data.meds[2].route_basis and "capsule" in data.meds[2].route_basis


def test_the_topical_atc_code_makes_a_record_topical() -> None:
    data = _read([{"drug": "eczema ointment", "atc": "D11AH01"}, {"drug": "immunosuppressant", "atc": "L04AD02"}])
    topical, systemic = data.meds
    assert topical.drug_id == systemic.drug_id == "tacrolimus"
    assert topical.route == "topical" and not topical.systemic
    assert systemic.route is None and systemic.systemic
    assert topical.identified_by == "atc"


def test_an_ingredient_rxcui_alone_identifies_the_drug() -> None:
    idx = kb_index(get_kb()).drugs
    data = _read([{"drug": "35302"}, {"drug": "unknown text", "rxcui": "42316"}])
    assert [m.drug_id for m in data.meds] == ["sirolimus", "tacrolimus"]
    assert idx.by_rxcui["35302"].kind == "ingredient"


def test_a_text_naming_two_drugs_is_ambiguous_and_names_both() -> None:
    data = _read([{"drug": "tacrolimus or sirolimus"}])
    assert data.meds[0].drug_id is None and set(data.meds[0].suggestions) == {"tacrolimus", "sirolimus"}
    w = next(w for w in data.warnings if w.code == "ambiguous-drug")
    assert "sirolimus" in w.message and "tacrolimus" in w.message and "did not run" in w.message


def test_a_word_naming_a_group_of_products_is_asked_about() -> None:
    data = _read([{"drug": "insulin"}, {"drug": "Insulin 4 units"}])
    for m in data.meds:
        assert m.drug_id is None and "insulin-human" in m.suggestions
    assert all("does not name one product" in w.message for w in data.warnings if w.code == "ambiguous-drug")
    assert sum(w.code == "ambiguous-drug" for w in data.warnings) == 2


def test_a_typo_is_offered_as_a_question_never_as_an_identity() -> None:
    data = _read([{"drug": "Sirolimis"}, {"drug": "tacrolimis 1 mg capsule"}])
    assert [m.drug_id for m in data.meds] == [None, None]
    assert data.meds[0].suggestions[0] == "sirolimus" and data.meds[1].suggestions[0] == "tacrolimus"
    messages = [w.message for w in data.warnings if w.code == "unknown-drug"]
    assert "'Sirolimis' was not recognised - did you mean sirolimus?" in messages[0]


def test_a_known_drug_outside_the_kb_and_an_unknown_word_are_told_apart() -> None:
    data = _read([{"drug": "Norvasc 5 mg tablet"}, {"drug": "zqxwv"}])
    assert data.meds[0].outside_name == "Amlodipine"
    codes = {w.path: w.code for w in data.warnings}
    assert codes["$.medications[0].drug"] == "outside-kb-drug"
    assert codes["$.medications[1].drug"] == "unknown-drug"
    assert known_name("zqxwv") is None


def test_suggestions_prefer_knowledge_base_names() -> None:
    names = kb_index(get_kb()).drugs.kb_names()
    assert suggest("Sirolimis", names)[0].drug_id == "sirolimus"
    assert suggest("amlodipin", names)[0].name == "Amlodipine"  # outside the KB: the dictionary's name
    assert suggest("zqxwv", names) == []


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("aBcİ ®™©\t\n\x1c\u2003\u00a0\u200b.-/")) | st.characters(),
                    max_size=24))
@example(text="  Prograf®  1 mg\u2003capsules™ ")
def test_name_key_drops_trade_marks_lower_cases_and_collapses_whitespace(text: str) -> None:
    """What every drug-name lookup keys on: the same as removing the marks, trimming, lower-casing and making
    each run of (Unicode) whitespace one space."""
    import re

    from ipexrx.patient.resolve import name_key

    expected = re.sub(r"\s+", " ", re.sub(r"[®™©]", "", text).strip().lower())
    assert name_key(text) == expected
