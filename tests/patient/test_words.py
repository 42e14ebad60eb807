"""Words patterns answer exactly as the case-insensitive regular expression they stand for (patient/words.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ipexrx.patient.codes import _TRANSPLANT_WORD
from ipexrx.patient.fhir import _IPEX_LIKE, INFECTION_WORDS, IPEX_WORDS
from ipexrx.patient.hsct import _HCT_TRANSPLANT_CONTEXT, HSCT_TERM
from ipexrx.patient.words import Words

PATTERNS = [INFECTION_WORDS, IPEX_WORDS, _IPEX_LIKE, HSCT_TERM, _HCT_TRANSPLANT_CONTEXT, _TRANSPLANT_WORD]
VOCABULARY = ["Sepsis", "CMV", "viraemia", "IPEX", "ipex-like", "Immune dysregulation, polyendocrinopathy",
              "allo-HSCT", "HCT", "Bone Marrow Transplant", "stem cell", "cord blood", "graft", "donor", "DLI",
              "colitis due to", "Hepatitis B", "herpes", "infection", "Ehlers", "hct: 32", "Stem-cells transplanted",
              "K", "ſepsis", "İPEX", "ﬁnfection", "ß", " ", "-", ",", "\t", "day +30"]
texts = st.lists(st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=6)), max_size=8).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=texts)
@example(text="SEPSIS due to E. coli")
@example(text="\u212aidney transplant")  # KELVIN SIGN: not ASCII, so the case-insensitive pattern answers
@example(text="ſepsis")  # LATIN SMALL LONG S folds to s under IGNORECASE, not under lower()
def test_found_and_first_agree_with_the_case_insensitive_pattern(text: str) -> None:
    for words in PATTERNS:
        m = words.pattern.search(text)
        assert words.found(text) is (m is not None), (words.pattern.pattern, text)
        assert words.first(text) == (m.group(0).lower() if m else None), (words.pattern.pattern, text)


def test_the_fast_way_is_the_lower_cased_text_against_the_pattern_without_the_flag() -> None:
    words = Words(r"sepsis|\bcmv\b")
    assert words.pattern.flags & re.IGNORECASE and not words._lower.flags & re.IGNORECASE
    assert words.found("Severe SEPSIS") and words.first("Severe SEPSIS") == "sepsis"
    assert not words.found("CMVX") and words.first("no match") is None


def test_a_pattern_with_capital_letters_is_refused_but_escapes_are_fine() -> None:
    with pytest.raises(ValueError, match="lower case"):
        Words(r"Sepsis")
    assert Words(r"\bcmv\S*").found("cmv-positive")
