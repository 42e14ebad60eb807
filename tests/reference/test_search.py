"""Full-text search: ranked, typo-tolerant, over every kind of record."""

from __future__ import annotations

import pytest

from ipexrx.reference import search


def _ids(text: str, n: int = 10) -> list[tuple[str, str]]:
    return [(h.kind, h.id) for h in search(text, limit=n).results]


def test_a_typo_in_a_drug_name_still_finds_the_drug_first() -> None:
    assert _ids("sirolimis")[0] == ("drug", "sirolimus")


def test_target_fkbp12_finds_tacrolimus_and_sirolimus() -> None:
    top = _ids("FKBP12", 3)
    assert ("drug", "tacrolimus") in top and ("drug", "sirolimus") in top


def test_calcineurin_finds_the_class_and_both_calcineurin_inhibitors() -> None:
    top = _ids("calcineurin", 5)
    assert ("class", "calcineurin-inhibitors") in top
    assert ("drug", "cyclosporine") in top and ("drug", "tacrolimus") in top


def test_brand_finds_its_drug() -> None:
    hit = search("Neoral").results[0]
    assert (hit.kind, hit.id, hit.field) == ("drug", "cyclosporine", "brand")
    assert hit.command == "ipexrx drug cyclosporine"


def test_hpo_id_finds_exactly_its_manifestation() -> None:
    res = search("HP:0002028").results
    assert (res[0].kind, res[0].id) == ("manifestation", "enteropathy")
    assert all(h.id != "enteropathy" or h.kind == "manifestation" for h in res)
    # identifiers match exactly: a neighbouring code is not "nearly" the same phenotype
    assert not [h for h in res if h.kind == "manifestation" and h.id != "enteropathy" and h.field == "hpo"]


def test_two_drug_names_find_their_interaction() -> None:
    assert _ids("voriconazole sirolimus", 1) == [("interaction", "voriconazole-sirolimus")]


def test_words_spread_over_one_record_combine() -> None:
    # "hepatitis B" sits in a warning, the screening tests elsewhere in the same monograph
    from ipexrx.knowledge import get_kb

    kb = get_kb()
    top = _ids("hepatitis B screening", 5)
    assert ("drug", "rituximab") in top
    first_kind, first_id = top[0]
    assert first_kind == "drug"
    assert any(s.parameter.value == "hbv-serology" for s in kb.drugs[first_id].safety.screening)


def test_results_are_sorted_by_score_and_carry_snippets() -> None:
    res = search("lymphoma").results
    assert res and [h.score for h in res] == sorted((h.score for h in res), reverse=True)
    assert all(h.snippet and 0 < h.score <= 100 for h in res)
    assert any("lymphoma" in h.snippet.casefold() for h in res)


def test_sources_and_ipex_like_disorders_are_searchable() -> None:
    assert ("source", "barzaghi-2018") in _ids("barzaghi")
    assert ("disease", "ipex") in _ids("FOXP3", 3)
    assert _ids("LRBA", 1) == [("ipex-like", "lrba-deficiency")]


@pytest.mark.parametrize("text", ["", "   ", "zzzzqqqq"])
def test_nonsense_finds_nothing(text: str) -> None:
    assert search(text).results == []


def test_limit_is_respected() -> None:
    assert len(search("sirolimus", limit=2).results) == 2
