"""Every fact of the source page is encoded in the knowledge base.

The facts live in ``tests/cases/source_page_facts.yaml`` (one case per fact, each tied to a numbered
sentence of the page). One test runs per case, so removing any single fact from the KB YAML fails the
suite with a message naming the fact. The checker is deliberately generic (field + keywords, therapy
option shape, class chain) so that it pins *content*, not the statement ids another editor may rename.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from ipexrx.knowledge.loader import KnowledgeBase, get_kb
from ipexrx.knowledge.schema import Citation, Statement

CASES_FILE = Path(__file__).resolve().parent.parent / "cases" / "source_page_facts.yaml"
CHECKS = ("contains", "equals", "keywords", "option", "in_class")


def _load_cases() -> dict[str, Any]:
    with CASES_FILE.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    assert isinstance(data, dict) and "cases" in data and "sentences" in data, f"{CASES_FILE} is malformed"
    return data


DATA = _load_cases()
CASES: list[dict[str, Any]] = DATA["cases"]
SENTENCES: dict[str, str] = DATA["sentences"]


# --------------------------------------------------------------------------------------------
# The checker: returns None when the fact is present, otherwise a reason.
# --------------------------------------------------------------------------------------------
def _records(kb: KnowledgeBase, case: dict[str, Any]) -> list[tuple[str, Any]]:
    kind = case["kind"]
    if kind == "disease":
        return [(kb.disease.id, kb.disease)]
    if kind == "meta":
        return [("meta", kb.meta)]
    tables: dict[str, dict[str, Any]] = {
        "drug": kb.drugs, "class": kb.classes, "manifestation": kb.manifestations,
        "ipex_like": kb.ipex_like, "source": kb.sources, "evidence": kb.evidence,
    }
    table = tables[kind]
    ids = case["id"] if isinstance(case["id"], list) else [case["id"]]
    return [(rid, table[rid]) for rid in ids if rid in table]


def _resolve(obj: Any, field: str | None) -> Any:
    for part in field.split(".") if field else []:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)


def _texts(value: Any) -> Iterator[str]:
    """Text values to search; for named items (brands) only the name counts, not a note mentioning it."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, BaseModel) and isinstance(getattr(item, "name", None), str):
            yield item.name
        else:
            yield from (v for v in _walk(item) if isinstance(v, str))


def _has_keywords(text: str, keywords: list[Any]) -> bool:
    folded = text.casefold()
    for kw in keywords:
        alternatives = kw if isinstance(kw, list) else [kw]
        if not any(str(alt).casefold() in folded for alt in alternatives):
            return False
    return True


def _cites(statement: Statement, cite: str | None) -> bool:
    return cite is None or any(str(c) == cite for c in statement.sources)


def _statement_matches(stmt: Statement, case: dict[str, Any]) -> bool:
    if case.get("statement_id") and stmt.id != case["statement_id"]:
        return False
    return _has_keywords(stmt.text, case.get("keywords", [])) and _cites(stmt, case.get("cites"))


def _option_matches(opt: Any, want: dict[str, Any]) -> bool:
    if not set(want.get("drugs", [])) <= set(opt.drugs):
        return False
    if not set(want.get("drug_classes", [])) <= set(opt.drug_classes):
        return False
    if "role" in want and opt.role != want["role"]:
        return False
    if "on_source_page" in want and opt.on_source_page != want["on_source_page"]:
        return False
    if "condition_contains" in want and want["condition_contains"].casefold() not in (opt.condition or "").casefold():
        return False
    if "cites" in want and not _cites(opt.statement, want["cites"]):
        return False
    return _has_keywords(opt.statement.text, want.get("keywords", []))


def _class_chain(kb: KnowledgeBase, class_ids: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(class_ids)
    while todo:
        cid = todo.pop()
        if cid in seen or cid not in kb.classes:
            continue
        seen.add(cid)
        parent = kb.classes[cid].parent
        if parent:
            todo.append(parent)
    return seen


def _matches(kb: KnowledgeBase, rec: Any, value: Any, case: dict[str, Any]) -> bool:
    if "contains" in case:
        needle = str(case["contains"]).casefold()
        return any(needle in text.casefold() for text in _texts(value))
    if "equals" in case:
        return bool(value == case["equals"])
    if "option" in case:
        return any(_option_matches(opt, case["option"]) for opt in getattr(rec, "therapy", []))
    if "in_class" in case:
        return case["in_class"] in _class_chain(kb, list(rec.classes))
    return any(isinstance(v, Statement) and _statement_matches(v, case) for v in _walk(value))


def check_case(kb: KnowledgeBase, case: dict[str, Any]) -> str | None:
    """None if the KB encodes the fact; otherwise a sentence saying what is missing."""
    records = _records(kb, case)
    if not records:
        return f"no {case['kind']} record {case.get('id')!r} in the knowledge base"
    where = case.get("field")
    for _rid, rec in records:
        value = _resolve(rec, where)
        if value is not None and _matches(kb, rec, value, case):
            return None
    target = ", ".join(rid for rid, _ in records)
    return f"fact not encoded in {case['kind']} {target}{f' field {where}' if where else ''}: {case['fact']}"


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return get_kb()


def _params() -> list[Any]:
    params = []
    for i, case in enumerate(CASES):
        missing = case.get("status") == "missing"
        marks = [pytest.mark.xfail(strict=True, reason="fact not yet encoded")] if missing else []
        params.append(pytest.param(case, id=f"{i:03d}-{case['sentence']}-{case['fact'][:60]}", marks=marks))
    return params


@pytest.mark.parametrize("case", _params())
def test_source_page_fact_is_encoded(kb: KnowledgeBase, case: dict[str, Any]) -> None:
    problem = check_case(kb, case)
    assert problem is None, problem


def test_every_case_is_well_formed() -> None:
    for case in CASES:
        assert {"fact", "sentence", "kind"} <= case.keys(), f"case lacks fact/sentence/kind: {case}"
        assert case["sentence"] in SENTENCES, f"case {case['fact']!r} names unknown sentence {case['sentence']!r}"
        assert sum(k in case for k in CHECKS) == 1 or ("statement_id" in case and "keywords" in case), (
            f"case {case['fact']!r} must have exactly one check of {CHECKS}"
        )
        if case["kind"] not in ("disease", "meta"):
            assert "id" in case, f"case {case['fact']!r} needs an id"


def test_every_page_sentence_is_covered_by_a_case() -> None:
    covered = {case["sentence"] for case in CASES}
    uncovered = sorted(set(SENTENCES) - covered)
    assert not uncovered, f"page sentences without any pinned fact: {uncovered}"


def test_fact_names_are_unique() -> None:
    names = [case["fact"] for case in CASES]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, f"duplicate fact names: {dupes}"


# --- the checker really detects a removed fact (one mutation per check kind) -------------------
def _without(kb: KnowledgeBase, table: str, rid: str, **update: Any) -> KnowledgeBase:
    clone = copy.copy(kb)
    new_table = dict(getattr(kb, table))
    new_table[rid] = new_table[rid].model_copy(update=update)
    setattr(clone, table, new_table)
    return clone


def _case(fact: str) -> dict[str, Any]:
    return next(c for c in CASES if c["fact"] == fact)


def test_removing_a_brand_fails_its_case(kb: KnowledgeBase) -> None:
    case = _case("Cyclosporine brand Neoral")
    drug = kb.drugs["cyclosporine"]
    mutated = _without(kb, "drugs", "cyclosporine", brands=[b for b in drug.brands if b.name != "Neoral"])
    assert check_case(kb, case) is None
    assert check_case(mutated, case) is not None


def test_removing_a_therapy_option_fails_its_case(kb: KnowledgeBase) -> None:
    case = _case("Tacrolimus reduces GI symptoms (mainstay option)")
    ent = kb.manifestations["enteropathy"]
    mutated = _without(kb, "manifestations", "enteropathy",
                       therapy=[o for o in ent.therapy if "tacrolimus" not in o.drugs])
    assert check_case(kb, case) is None
    assert check_case(mutated, case) is not None


def test_dropping_the_seed_citation_fails_a_keyword_case(kb: KnowledgeBase) -> None:
    case = _case("Cyclosporine binds cyclophilin")
    drug = kb.drugs["cyclosporine"]
    stripped = [
        m.model_copy(update={"sources": [Citation(source="barzaghi-2018")]}) for m in drug.mechanism
    ]
    mutated = _without(kb, "drugs", "cyclosporine", mechanism=stripped)
    assert check_case(kb, case) is None
    assert check_case(mutated, case) is not None


def test_breaking_the_class_chain_fails_an_in_class_case(kb: KnowledgeBase) -> None:
    case = _case("Rituximab grouped under immunomodulators")
    mutated = _without(kb, "drugs", "rituximab", classes=["anti-infectives"])
    assert check_case(kb, case) is None
    assert check_case(mutated, case) is not None


# --- the on/off-page flag is honest --------------------------------------------------------------
def _seed_cited(statement: Statement) -> bool:
    return any(c.source == "seed" for c in statement.sources)


def test_options_marked_on_page_cite_the_page(kb: KnowledgeBase) -> None:
    wrong = [
        f"{mid}/{opt.id}"
        for mid, man in kb.manifestations.items()
        for opt in man.therapy
        if opt.on_source_page and not _seed_cited(opt.statement)
    ]
    assert not wrong, f"options flagged on_source_page but not citing the page: {wrong}"


def test_off_page_options_cite_their_own_source(kb: KnowledgeBase) -> None:
    wrong = [
        f"{mid}/{opt.id}"
        for mid, man in kb.manifestations.items()
        for opt in man.therapy
        if not opt.on_source_page and all(c.source == "seed" for c in opt.statement.sources)
    ]
    assert not wrong, f"options flagged off-page must cite the source they come from: {wrong}"


def test_ipex_like_therapies_and_drugs_are_beyond_the_page(kb: KnowledgeBase) -> None:
    for did, disorder in kb.ipex_like.items():
        for opt in disorder.therapies:
            assert not opt.on_source_page, f"{did}/{opt.id} is not on the source page"
            assert not _seed_cited(opt.statement), f"{did}/{opt.id} cites the page, which covers FOXP3-IPEX only"
    targeted = [d for d in kb.drugs.values() if d.role == "ipex-like-targeted"]
    assert {d.id for d in targeted} >= {"abatacept", "ruxolitinib", "baricitinib", "tocilizumab"}
    for drug in targeted:
        assert not drug.on_source_page and drug.immunosuppressive, f"{drug.id}: off-page and immunosuppressive"
