"""Name resolution: which record does a typed name mean?

Matching is exact after normalisation (case, spaces, hyphens, slashes and dots are ignored, so
``FK-506`` = ``fk506`` and ``Cyclosporin A`` = ``cyclosporina``). Drugs match by id, generic name,
synonym, brand, ATC code or RxCUI; manifestations by id, name, synonym or HPO id; classes by id,
name, synonym or ATC code. For classes and manifestations a query of at least four characters
that starts exactly one record's name is accepted too (``calcineurin``); drugs never resolve by
prefix, because ``predniso`` must not silently become prednisone when prednisolone was meant.
No match raises :class:`NotFoundError` with the closest names (rapidfuzz, imported only then).
"""

from __future__ import annotations

from ..knowledge import KnowledgeBase
from ..knowledge.schema import Drug, DrugClass, Manifestation
from ._kbcache import memo, resolve_kb
from .names import NameTable, normalise, resolve_in

__all__ = ["NameTable", "find_class", "find_drug", "find_manifestation", "name_tables", "normalise"]

def _resolve(kb: KnowledgeBase, kind: str, query: str, *, allow_prefix: bool) -> str:
    return resolve_in(name_tables(kb), kind, query, allow_prefix=allow_prefix)


def _drug_names(d: Drug) -> list[str | None]:
    return [d.id, d.name, *d.synonyms, *(b.name for b in d.brands), d.codes.rxcui, *(a.code for a in d.codes.atc)]


def _tables(kb: KnowledgeBase) -> dict[str, NameTable]:
    drugs, classes, mans = NameTable("drug"), NameTable("drug class"), NameTable("manifestation")
    for did, d in kb.drugs.items():
        drugs.add(did, _drug_names(d))
    for cid, c in kb.classes.items():
        classes.add(cid, [cid, c.name, *c.synonyms, *c.atc])
    for mid, m in kb.manifestations.items():
        mans.add(mid, [mid, m.name, *m.synonyms, *(h.code for h in m.hpo)])
    return {"drug": drugs, "class": classes, "manifestation": mans}


def name_tables(kb: KnowledgeBase) -> dict[str, NameTable]:
    return memo(kb, "name-tables", _tables)


def find_drug(query: str, kb: KnowledgeBase | None = None) -> Drug:
    """The drug named ``query`` (generic, brand, synonym, ATC code or RxCUI; any case)."""
    kb = resolve_kb(kb)
    return kb.drugs[_resolve(kb, "drug", query, allow_prefix=False)]


def find_class(query: str, kb: KnowledgeBase | None = None) -> DrugClass:
    """The drug class named ``query`` (id, name, synonym, ATC code, or a unique name prefix)."""
    kb = resolve_kb(kb)
    return kb.classes[_resolve(kb, "class", query, allow_prefix=True)]


def find_manifestation(query: str, kb: KnowledgeBase | None = None) -> Manifestation:
    """The manifestation named ``query`` (id, name, synonym, HPO id, or a unique name prefix)."""
    kb = resolve_kb(kb)
    return kb.manifestations[_resolve(kb, "manifestation", query, allow_prefix=True)]
