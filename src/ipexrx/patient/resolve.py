"""Map what a record says (names, brands, synonyms, RxCUIs, HPO ids) onto knowledge-base ids.

Why exact matching only (no fuzzy): a typo-tolerant match is fine for a search box but not for a
medication list -- "cyclosporin" is a synonym we list, "cyclophosphamide" is not a near miss of
anything we should pretend to know. Unknown names are reported ("not in the knowledge base; not
checked"), never silently dropped and never guessed.

For free-text product descriptions (FHIR ``medicationCodeableConcept.text`` such as "Rapamune 1 mg
tablet") :meth:`DrugIndex.resolve_text` looks for known names as whole words and accepts the result
only when exactly one drug is named.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from ..knowledge.loader import KnowledgeBase

_PUNCT = re.compile(r"[®™©]")
_WS = re.compile(r"\s+")


def name_key(text: str) -> str:
    return _WS.sub(" ", _PUNCT.sub("", text).strip().lower())


@dataclass(frozen=True)
class DrugIndex:
    by_name: dict[str, str]
    by_rxcui: dict[str, str]
    pattern: re.Pattern[str] | None

    def resolve(self, text: str | None = None, rxcui: str | None = None) -> str | None:
        """KB drug id for an exact name/brand/synonym, an ingredient RxCUI, or a known RxCUI string."""
        if rxcui and rxcui.strip() in self.by_rxcui:
            return self.by_rxcui[rxcui.strip()]
        if text:
            key = name_key(text)
            if key in self.by_name:
                return self.by_name[key]
            if key.isdigit() and key in self.by_rxcui:
                return self.by_rxcui[key]
        return None

    def resolve_text(self, text: str) -> str | None:
        """The single KB drug named as a whole word in free text; None if none or several."""
        exact = self.resolve(text)
        if exact or self.pattern is None:
            return exact
        found = {self.by_name[m.group(0)] for m in self.pattern.finditer(name_key(text))}
        return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class ManifestationIndex:
    by_name: dict[str, str]
    by_hpo: dict[str, str]

    def resolve(self, hpo: str | None = None, name: str | None = None) -> str | None:
        if hpo and hpo in self.by_hpo:
            return self.by_hpo[hpo]
        if name:
            key = name_key(name)
            return self.by_name.get(key) or self.by_name.get(key.replace(" ", "-")) \
                or self.by_hpo.get(name.strip().upper())
        return None


@dataclass(frozen=True)
class KbIndex:
    drugs: DrugIndex
    manifestations: ManifestationIndex
    ipex_like: dict[str, str]


def _build(kb: KnowledgeBase) -> KbIndex:
    by_name: dict[str, str] = {}
    by_rxcui: dict[str, str] = {}
    for drug in kb.drugs.values():
        for n in (drug.id, drug.name, *drug.synonyms, *(b.name for b in drug.brands)):
            by_name.setdefault(name_key(n), drug.id)
        if drug.codes.rxcui:
            by_rxcui[drug.codes.rxcui] = drug.id
    names = sorted(by_name, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n in names) + r")(?![\w-])") if names else None
    m_name: dict[str, str] = {}
    m_hpo: dict[str, str] = {}
    for man in kb.manifestations.values():
        for n in (man.id, man.name, *man.synonyms):
            m_name.setdefault(name_key(n), man.id)
        for c in man.hpo:
            m_hpo.setdefault(c.code, man.id)
            if c.label:
                m_name.setdefault(name_key(c.label), man.id)
    like: dict[str, str] = {}
    for dis in kb.ipex_like.values():
        for n in (dis.id, dis.name, *dis.synonyms, dis.gene.symbol):
            like.setdefault(name_key(n), dis.id)
    return KbIndex(DrugIndex(by_name, by_rxcui, pattern), ManifestationIndex(m_name, m_hpo), like)


_CACHE: dict[int, tuple[KnowledgeBase, KbIndex]] = {}
_LOCK = threading.Lock()


def kb_index(kb: KnowledgeBase) -> KbIndex:
    """The lookup index of a knowledge base, built once per KB object."""
    hit = _CACHE.get(id(kb))
    if hit is not None and hit[0] is kb:
        return hit[1]
    with _LOCK:
        idx = _build(kb)
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[id(kb)] = (kb, idx)
        return idx
