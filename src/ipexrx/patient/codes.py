"""SNOMED CT and ICD-10 codes of conditions -> knowledge-base manifestation ids.

Why from the knowledge base: EHR Conditions usually carry SNOMED CT or ICD-10 rather than HPO, and
which code means which manifestation is clinical content that editors own and cite
(``Manifestation.codings`` in manifestations.yaml, each code with its terminology source), not a
table in code. ICD-10 entries match the code and its subcodes (``E10`` covers ``E10.9``). A condition
no code or name maps is reported as a warning by the reader, never guessed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..knowledge.loader import KnowledgeBase, get_kb


@dataclass(frozen=True)
class CodeIndex:
    """Condition code -> manifestation id, per terminology (codes upper-cased)."""

    icd10: dict[str, str]  # WHO ICD-10 (also valid in ICD-10-CM)
    snomed: dict[str, str]
    icd10cm: dict[str, str]  # codes that exist only in the US clinical modification (R62.51)


_CACHE: dict[int, tuple[KnowledgeBase, CodeIndex]] = {}
_LOCK = threading.Lock()


def code_index(kb: KnowledgeBase | None = None) -> CodeIndex:
    """The code tables of a knowledge base, built once per KB object."""
    kb = kb or get_kb()
    hit = _CACHE.get(id(kb))
    if hit is not None and hit[0] is kb:
        return hit[1]
    with _LOCK:
        icd10: dict[str, str] = {}
        snomed: dict[str, str] = {}
        icd10cm: dict[str, str] = {}
        tables = {"ICD-10": icd10, "SNOMED": snomed, "ICD-10-CM": icd10cm}
        for man in kb.manifestations.values():
            for c in man.codings:
                table = tables.get(c.system)
                if table is not None:
                    table.setdefault(c.code.strip().upper(), man.id)
        idx = CodeIndex(icd10, snomed, icd10cm)
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[id(kb)] = (kb, idx)
        return idx


def manifestation_for_code(system: str | None, code: str | None, kb: KnowledgeBase | None = None) -> str | None:
    """KB manifestation id for a SNOMED CT or ICD-10 code (system URI or name), or None."""
    if not system or not code:
        return None
    idx = code_index(kb)
    code = code.strip().upper()
    system = system.lower()
    if "snomed" in system:
        return idx.snomed.get(code)
    if "icd-10" in system or "icd10" in system:
        # An ICD-10-CM system may carry CM-only codes; a WHO ICD-10 system never does.
        cm = "cm" in system.replace("icd-10", "").replace("icd10", "")
        tables = (idx.icd10cm, idx.icd10) if cm else (idx.icd10,)
        parts = code.split(".")
        for candidate in (code, parts[0] + "." + parts[1][:1] if len(parts) > 1 else None, parts[0]):
            for table in tables:
                if candidate and candidate in table:
                    return table[candidate]
    return None
