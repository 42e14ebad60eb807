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

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..knowledge import KnowledgeBase
from ..knowledge.schema import Drug, DrugClass, Manifestation
from ._kbcache import memo, resolve_kb
from .errors import AmbiguousQueryError, NotFoundError

_STRIP = re.compile(r"[\s\-_/.,'()\u2010-\u2015]+")
MIN_PREFIX = 4


def normalise(name: str) -> str:
    """The lookup key of a name: case-folded, without spaces, hyphens, slashes, dots or quotes."""
    return _STRIP.sub("", name.casefold())


@dataclass
class NameTable:
    """Normalised name -> record ids, plus the display names used for suggestions."""

    kind: str
    keys: dict[str, set[str]] = field(default_factory=dict)
    display: dict[str, str] = field(default_factory=dict)  # display name -> record id

    def add(self, rid: str, names: Iterable[str | None]) -> None:
        for name in names:
            if not name:
                continue
            key = normalise(name)
            if key:
                self.keys.setdefault(key, set()).add(rid)
                self.display.setdefault(name, rid)

    def resolve(self, query: str, *, allow_prefix: bool) -> str:
        key = normalise(query)
        if not key:
            raise NotFoundError(self.kind, query, [])
        ids = self.keys.get(key)
        if not ids and allow_prefix and len(key) >= MIN_PREFIX:
            ids = {rid for k, rids in self.keys.items() if k.startswith(key) for rid in rids}
        if ids and len(ids) == 1:
            return next(iter(ids))
        if ids:
            raise AmbiguousQueryError(self.kind, query, sorted(ids))
        raise NotFoundError(self.kind, query, self.suggest(query))

    def suggest(self, query: str, limit: int = 5) -> list[str]:
        """Record ids whose names are closest to ``query`` (typo-tolerant)."""
        from rapidfuzz import fuzz, process, utils

        names = list(self.display)
        found = process.extract(query, names, scorer=fuzz.WRatio, processor=utils.default_process,
                                limit=limit * 4, score_cutoff=70)
        out: list[str] = []
        for name, _score, _i in found:
            rid = self.display[name]
            if rid not in out:
                out.append(rid)
        return out[:limit]


_COMMAND = {"drug": "drug", "drug class": "class", "manifestation": "manifestation"}


def _resolve(kb: KnowledgeBase, kind: str, query: str, *, allow_prefix: bool) -> str:
    """Resolve in one table; on a miss, say if the name is a record of another kind."""
    tables = name_tables(kb)
    try:
        return tables[kind].resolve(query, allow_prefix=allow_prefix)
    except NotFoundError as exc:
        key = normalise(query)
        elsewhere = [
            f"{_COMMAND[t.kind]} {sorted(t.keys[key])[0]}"
            for k, t in tables.items() if k != kind and key in t.keys and len(t.keys[key]) == 1
        ]
        if elsewhere:
            raise NotFoundError(exc.kind, exc.query, exc.suggestions, elsewhere) from None
        raise


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
