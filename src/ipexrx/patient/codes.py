"""SNOMED CT and ICD-10 codes of conditions -> knowledge-base manifestation ids.

Why from the knowledge base: EHR Conditions usually carry SNOMED CT or ICD-10 rather than HPO, and
which code means which manifestation is clinical content that editors own and cite
(``Manifestation.codings`` in manifestations.yaml, each code with its terminology source), not a
table in code. ICD-10 entries match the code and its subcodes (``E10`` covers ``E10.9``). A condition
no code or name maps is reported as a warning by the reader, never guessed.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from ..knowledge.loader import KnowledgeBase, get_kb
from ..memo import remembered
from .words import Words


@dataclass(frozen=True)
class CodeIndex:
    """Condition code -> manifestation id, per terminology (codes upper-cased)."""

    icd10: dict[str, str]  # WHO ICD-10 (also valid in ICD-10-CM)
    snomed: dict[str, str]
    icd10cm: dict[str, str]  # codes that exist only in the US clinical modification (R62.51)


_CACHE: dict[int, tuple[object, CodeIndex]] = {}
_LOCK = threading.Lock()


def code_index(kb: KnowledgeBase | None = None) -> CodeIndex:
    """The code tables of a knowledge base, built once per KB object."""
    kb = kb or get_kb()
    return remembered(_CACHE, id(kb), kb, lambda: _build_code_index(kb), limit=8, lock=_LOCK)


def _build_code_index(kb: KnowledgeBase) -> CodeIndex:
    icd10: dict[str, str] = {}
    snomed: dict[str, str] = {}
    icd10cm: dict[str, str] = {}
    tables = {"ICD-10": icd10, "SNOMED": snomed, "ICD-10-CM": icd10cm}
    for man in kb.manifestations.values():
        for c in man.codings:
            table = tables.get(c.system)
            if table is not None:
                table.setdefault(c.code.strip().upper(), man.id)
    return CodeIndex(icd10, snomed, icd10cm)


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


# --------------------------------------------------------------------------------------------
# HSCT: procedure and condition codes that say a patient was (or was about to be) transplanted.
#
# Why a table here and not in the knowledge base: these codes decide how a record is *read*, not
# what is said to the user; each is listed with the terminology source it was checked in (the
# sources registry ids ``snomed-ct``, ``icd10-cm``, ``icd10-pcs``, ``cpt``), and every code a reader
# acts on is named back in the assessment's input notes. All were read in published value sets and
# code lists (secondary), not in the terminology browsers themselves.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HsctCode:
    """What one code says about HSCT.

    ``meaning``: ``transplant`` -- the transplant procedure itself (a completed Procedure means done);
    ``status`` -- a condition saying the patient has been transplanted (history, status, complication);
    ``related`` -- a procedure around a transplant that is not itself one (donor lymphocyte infusion,
    boost, harvest): it is named back, never read as the transplant.
    ``kind``: allogeneic / autologous when the code says so, else None.
    """

    system: str
    code: str
    meaning: str
    label: str
    kind: str | None = None


_SNOMED_HSCT: dict[str, HsctCode] = {c.code: c for c in (
    HsctCode("SNOMED CT", "234336002", "transplant", "Hemopoietic stem cell transplant"),
    HsctCode("SNOMED CT", "23719005", "transplant", "Transplantation of bone marrow"),
    # 58776007 is a bone marrow transplant in every list read; they disagree on autologous/allogeneic.
    HsctCode("SNOMED CT", "58776007", "transplant", "Bone marrow transplant"),
    HsctCode("SNOMED CT", "425983008", "transplant", "Autologous peripheral blood stem cell transplant", "autologous"),
    HsctCode("SNOMED CT", "709115004", "transplant", "Transplantation of autologous hematopoietic stem cell",
             "autologous"),
    HsctCode("SNOMED CT", "444360002", "transplant", "Allogeneic hematopoietic stem cell transplantation",
             "allogeneic"),
    HsctCode("SNOMED CT", "174241000112100", "transplant", "Transplantation of allogeneic hematopoietic stem cell",
             "allogeneic"),
    HsctCode("SNOMED CT", "2631000119108", "status", "History of bone marrow transplant (situation)"),
    HsctCode("SNOMED CT", "153351000119102", "status", "History of peripheral stem cell transplant (situation)"),
)}

# ICD-10-CM / WHO ICD-10 / ICD-10-GM conditions. Z94.8 without a fifth character (WHO ICD-10: other
# transplanted organ and tissue status) does not say which tissue: named back, not read.
_ICD10_HSCT: dict[str, HsctCode] = {c.code: c for c in (
    HsctCode("ICD-10-CM", "Z94.81", "status", "Bone marrow transplant status"),
    HsctCode("ICD-10-CM", "Z94.84", "status", "Stem cells transplant status"),
    HsctCode("ICD-10-CM", "T86.0", "status", "Complications of bone marrow transplant"),
    HsctCode("ICD-10-CM", "T86.5", "status", "Complications of stem cell transplant"),
    HsctCode("ICD-10-CM", "Z48.290", "status", "Encounter for aftercare following bone marrow transplant"),
    HsctCode("ICD-10", "Z94.8", "related", "Other transplanted organ and tissue status (tissue not stated)"),
)}

# CPT (AMA). 38242 (donor lymphocyte infusion) and 38243 (HPC boost) are given after an allogeneic
# transplant but are not one; harvesting codes describe a collection (the patient may be the donor).
_CPT_HSCT: dict[str, HsctCode] = {c.code: c for c in (
    HsctCode("CPT", "38240", "transplant", "Allogeneic hematopoietic progenitor cell transplantation", "allogeneic"),
    HsctCode("CPT", "38241", "transplant", "Autologous hematopoietic progenitor cell transplantation", "autologous"),
    HsctCode("CPT", "38242", "related", "Allogeneic donor lymphocyte infusion"),
    HsctCode("CPT", "38243", "related", "Hematopoietic progenitor cell boost"),
    HsctCode("CPT", "38230", "related", "Bone marrow harvesting for transplantation (a collection)"),
    HsctCode("CPT", "38232", "related", "Bone marrow harvesting for transplantation, autologous (a collection)"),
    HsctCode("CPT", "38205", "related", "Blood-derived progenitor cell harvesting, allogeneic (a collection)"),
    HsctCode("CPT", "38206", "related", "Blood-derived progenitor cell harvesting, autologous (a collection)"),
)}

# ICD-10-PCS section 3 (administration), body system 0 (circulatory), operation 2 (transfusion);
# body part 3/4/5/6 (peripheral/central vein, peripheral/central artery); approach 0 open, 3 percutaneous;
# substance G bone marrow, X cord blood stem cells, Y hematopoietic stem/progenitor cells;
# qualifier 0 autologous, 1 nonautologous (before FY2017), 2 allogeneic related, 3 unrelated, 4 unspecified.
_PCS_HSCT = re.compile(r"^302[3-6][03]([GXY])([0-4])$")
_PCS_SUBSTANCE = {"G": "bone marrow", "X": "cord blood stem cells", "Y": "hematopoietic stem/progenitor cells"}
# C: genetically modified autologous hematopoietic stem/progenitor cells (gene therapy), not an HSCT.
_PCS_GENE = re.compile(r"^302[3-6][03]C\d$")
# New-technology codes for omidubicel (an allogeneic cord-blood product).
_PCS_NEW_TECH = {"XW133C8", "XW143C8"}


def _pcs(code: str) -> HsctCode | None:
    m = _PCS_HSCT.match(code)
    if m:
        substance, qualifier = m.groups()
        kind = "autologous" if qualifier == "0" else "allogeneic"
        vein = {"3": "peripheral vein", "4": "central vein", "5": "peripheral artery", "6": "central artery"}[code[3]]
        return HsctCode("ICD-10-PCS", code, "transplant",
                        f"Transfusion of {kind} {_PCS_SUBSTANCE[substance]} into {vein}", kind)
    if code in _PCS_NEW_TECH:
        return HsctCode("ICD-10-PCS", code, "transplant", "Transfusion of omidubicel (allogeneic cord blood)",
                        "allogeneic")
    if _PCS_GENE.match(code):
        return HsctCode("ICD-10-PCS", code, "related",
                        "Transfusion of genetically modified autologous stem cells (gene therapy, not an HSCT)")
    return None


def hsct_code(system: str | None, code: str | None) -> HsctCode | None:
    """What a coded Procedure or Condition says about HSCT, or None when the code is not about it.

    ``system`` is a FHIR system URI or a terminology name; the terminology is recognised from it
    (``snomed``, ``icd-10-pcs``/``icd10pcs``/the CMS ICD-10 URI, ``icd-10``, ``cpt``)."""
    if not system or not code:
        return None
    s = system.lower()
    c = code.strip().upper()
    if "snomed" in s:
        return _SNOMED_HSCT.get(c)
    if "cpt" in s or "ama-assn" in s:
        return _CPT_HSCT.get(c)
    if "pcs" in s or "cms.gov/medicare/coding/icd10" in s:
        return _pcs(c)
    if "icd-10" in s or "icd10" in s:
        if c in _ICD10_HSCT:
            return _ICD10_HSCT[c]
        if c.startswith(("T86.0", "T86.5")):  # T86.00-T86.09, T86.5x: complications of the transplant
            base = _ICD10_HSCT[c[:5]]
            return HsctCode(base.system, c, base.meaning, base.label)
        if c == "Z94.80":  # ICD-10-GM: haematopoietic stem cell transplant status (without immunosuppression)
            return HsctCode("ICD-10-GM", c, "status", "Haematopoietic stem cell transplant status")
    return None


def might_be_transplant(text: str) -> bool:
    """Whether a procedure name mentions a transplant or graft of any kind (so an unread one is named back)."""
    return _TRANSPLANT_WORD.found(text)


_TRANSPLANT_WORD = Words(r"transplant|graft|\bhsct\b|\bhct\b|\bbmt\b|stem cell|marrow|cord blood|\bhpc\b|"
                         r"lymphocyte infusion|\bdli\b")
