"""Which vaccines are live attenuated: names and CVX codes, read from the knowledge base.

Why from the knowledge base: whether a vaccine is live is a clinical statement that must carry its
source (ACIP's altered-immunocompetence guidance; CDC CVX codes), and editors change data, not code.
``data/vaccines.yaml`` lists vaccine records with ``live``, matching ``names`` and ``cvx`` codes;
this module only matches a record's text and code against them. An unknown vaccine is reported as
"live status unknown" instead of being assumed inactivated; a record may override with
``"live": true/false`` (e.g. a local product name).

Matching order (unchanged from the earlier fixed list): a live CVX code; then the words
"inactivated" / "recombinant" (a non-live product even when a live vaccine's name appears, e.g.
recombinant zoster); then live names; then other non-live names.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from ..knowledge.loader import KnowledgeBase, get_kb
from ..memo import remembered

_NON_LIVE_MARKERS = ("inactivated", "recombinant")


@dataclass(frozen=True)
class VaccineIndex:
    """Per-KB matcher: CVX code -> vaccine id, and one whole-word pattern per liveness."""

    live: dict[str, bool]  # vaccine id -> live
    by_cvx: dict[str, str]
    by_name: dict[str, str]
    live_pattern: re.Pattern[str] | None
    non_live_pattern: re.Pattern[str] | None
    marker_pattern: re.Pattern[str] | None


def _pattern(names: list[str]) -> re.Pattern[str] | None:
    if not names:
        return None
    return re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")\b")


def _cvx_key(code: str) -> str:
    return (code.strip().lstrip("0") or "0").zfill(2)


_CACHE: dict[int, tuple[KnowledgeBase, VaccineIndex]] = {}
_LOCK = threading.Lock()


def vaccine_index(kb: KnowledgeBase | None = None) -> VaccineIndex:
    """The vaccine matcher of a knowledge base, built once per KB object."""
    kb = kb or get_kb()
    hit = _CACHE.get(id(kb))
    if hit is not None and hit[0] is kb:
        return hit[1]
    with _LOCK:
        live: dict[str, bool] = {}
        by_cvx: dict[str, str] = {}
        by_name: dict[str, str] = {}
        live_names: list[str] = []
        other_names: list[str] = []
        markers: list[str] = []
        for vac in kb.vaccines.values():
            live[vac.id] = vac.live
            for code in vac.cvx:
                by_cvx.setdefault(_cvx_key(code), vac.id)
            for name in vac.names:
                by_name.setdefault(name, vac.id)
                if vac.live:
                    live_names.append(name)
                elif name in _NON_LIVE_MARKERS:
                    markers.append(name)
                else:
                    other_names.append(name)
        idx = VaccineIndex(live, by_cvx, by_name, _pattern(live_names), _pattern(other_names), _pattern(markers))
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[id(kb)] = (kb, idx)
        return idx


def classify_vaccine(name: str, cvx: str | None = None,
                     kb: KnowledgeBase | None = None) -> tuple[bool | None, str | None]:
    """(live, KB vaccine id) for a vaccine text and optional CVX code; (None, None) when unknown."""
    idx = vaccine_index(kb)
    if cvx is not None:
        vid = idx.by_cvx.get(_cvx_key(cvx))
        if vid is not None and idx.live[vid]:
            return True, vid
    text = name.strip().lower()
    if text.isdigit():
        vid = idx.by_cvx.get(_cvx_key(text))
        return (idx.live[vid], vid) if vid is not None and idx.live[vid] else (None, None)
    for pattern in (idx.marker_pattern, idx.live_pattern, idx.non_live_pattern):
        m = pattern.search(text) if pattern is not None else None
        if m:
            vid = idx.by_name[m.group(1)]
            return idx.live[vid], vid
    return None, None


def is_live(name: str, cvx: str | None = None, kb: KnowledgeBase | None = None) -> bool | None:
    """True for a live vaccine, False for a known non-live one, None when we cannot tell."""
    return classify_vaccine(name, cvx, kb)[0]


# A medication record is read as a vaccine when its text says so ("MMR vaccine", "varicella virus vaccine
# live", "diphtheria toxoid"), its ATC code is a vaccine (J07), or its whole text is a vaccine name or brand
# the knowledge base lists ("Varivax", "MMR"). Immune globulins ("hepatitis B immune globulin") are not vaccines.
_VACCINE_WORDS = re.compile(r"\b(vaccin\w*|toxoids?|immuni[sz]ation)\b", re.I)
_NOT_VACCINE = re.compile(r"\b(immune globulin|immunoglobulin|antitoxin|antivenin|antivenom)\b", re.I)


@dataclass(frozen=True)
class VaccineMedication:
    """A medication record that is a vaccine: what the vaccine rules read instead of a drug."""

    live: bool | None
    vaccine_id: str | None
    reason: str  # why the record was read as a vaccine (named back in an input warning)


_MED_VACCINE: dict[Any, tuple[object, Any]] = {}


def vaccine_in_medication(text: str, atc: str | None = None, cvx: str | None = None,
                          kb: KnowledgeBase | None = None) -> VaccineMedication | None:
    """The vaccine a medication record orders, or None when the record is not a vaccine. Remembered per
    text and codes (and knowledge base): every medication of every chart is asked, from a formulary."""
    idx = vaccine_index(kb)
    return remembered(_MED_VACCINE, (id(idx), text, atc, cvx), idx,
                      lambda: _vaccine_in_medication(text, atc, cvx, kb), limit=20_000)


def _vaccine_in_medication(text: str, atc: str | None, cvx: str | None,
                           kb: KnowledgeBase | None) -> VaccineMedication | None:
    if _NOT_VACCINE.search(text):
        return None
    live, vid = classify_vaccine(text, cvx, kb)
    if cvx is not None:
        return VaccineMedication(live, vid, f"CVX code {cvx}")
    if atc is not None and atc.upper().startswith("J07"):
        return VaccineMedication(live, vid, f"ATC code {atc.upper()} (vaccines)")
    if _VACCINE_WORDS.search(text):
        return VaccineMedication(live, vid, "the text names a vaccine")
    if vid is not None:
        idx = vaccine_index(kb)
        key = re.sub(r"\s+", " ", text.strip().lower())
        if key in idx.by_name:  # the whole text is a vaccine name or brand the KB lists
            return VaccineMedication(live, vid, f"'{text}' is a vaccine name the knowledge base lists")
    return None


# In utero exposure to a drug, as a chart states it: a Condition (FHIR) or manifestation entry whose text says
# "in utero exposure to infliximab", "maternal infliximab during pregnancy", "prenatal infliximab exposure"...
# (ICD-10-CM P04.1x "newborn affected by maternal medication" carries no drug, so the text must name it).
_IN_UTERO = re.compile(r"\b(in[ -]utero|intra-?uterine|prenatal|antenatal|transplacental|maternal|mother)\b", re.I)
_EXPOSURE = re.compile(r"\b(expos\w*|pregnan\w*|in[ -]utero|transplacental)\b", re.I)


def may_state_in_utero_exposure(text: str) -> bool:
    """Cheap first test: the text speaks of in utero / maternal exposure (the drug is checked after)."""
    return bool(_IN_UTERO.search(text) and _EXPOSURE.search(text))


def names_in_utero_exposure(text: str, drug_names: list[str]) -> bool:
    """Whether ``text`` states in utero (maternal, prenatal) exposure to one of ``drug_names``."""
    if not (_IN_UTERO.search(text) and _EXPOSURE.search(text)):
        return False
    low = text.lower()
    return any(re.search(r"\b" + re.escape(n.lower()) + r"\b", low) for n in drug_names)
