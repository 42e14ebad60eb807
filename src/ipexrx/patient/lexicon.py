"""Drug names beyond the knowledge base: "is this a real drug?" and "did you mean ...?".

Why: the knowledge base holds the drugs IPEX patients receive and their partners, but a chart
also brings amlodipine, ondansetron and misspellings. A name the knowledge base does not hold must
be named back to the user as one of three things, never dropped:

* a drug known to the open drug dictionary but without IPEX content ("amlodipine: known drug, no
  IPEX content; interactions not checked");
* a probable misspelling of a knowledge-base drug ("Sirolimis: not recognised - did you mean
  sirolimus?"), offered as a question;
* nothing recognisable.

The dictionary is the one shipped offline by ``drug-named-entity-recognition`` (MeSH, DrugBank,
NHS and MedlinePlus names and brands, ~107,000 variants). Importing that package builds an n-gram
index and reads a cache file in the home directory (about 2 s); only its name table is needed here,
so the pickled table is read directly (about 0.3 s), once, and only when a name is not in the
knowledge base. Suggestions use rapidfuzz's edit-distance ratio.
"""

from __future__ import annotations

import bz2
import importlib.util
import pickle
import re
import threading
from dataclasses import dataclass
from pathlib import Path

_DATA_FILE = "drug_ner_dictionary.pkl.bz2"
_LOCK = threading.Lock()
_TABLE: dict[str, str] | None = None
_KEYS: list[str] = []
_WORD = re.compile(r"[a-z][a-z0-9'\-]+")
# Words that are dose forms, units or instructions, never drug names (kept out of fuzzy matching).
_NOT_NAMES = frozenset(re.findall(r"\S+", """
    tablet tablets capsule capsules oral solution suspension injection ointment cream
    lotion gel topical extended release delayed daily twice once with food per dose drops spray inhaler
    inhalation powder granules syrup elixir patch intravenous subcutaneous chewable film coated mg mcg ml
    units unit vial syringe prefilled pen kit pack hour hours day days week weeks morning evening night
    bedtime sodium potassium hydrochloride hcl sulfate acetate monohydrate anhydrous generic brand
    take give apply every as needed prn for the and or of in"""))


@dataclass(frozen=True)
class Suggestion:
    """A name the text may have meant, with how close it is (0-100)."""

    name: str
    score: float
    drug_id: str | None = None  # a knowledge-base drug id, or None for a drug outside it


def _data_path() -> Path | None:
    spec = importlib.util.find_spec("drug_named_entity_recognition")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / _DATA_FILE
    return path if path.is_file() else None


def _load() -> dict[str, str]:
    path = _data_path()
    if path is None:
        return {}
    with bz2.open(path, "rb") as fh:
        raw = pickle.load(fh)  # noqa: S301 - the data file of a pinned, installed dependency
    data = raw.get("drug_canonical_to_data", {})
    out: dict[str, str] = {}
    for variant, canonicals in raw.get("drug_variant_to_canonical", {}).items():
        if not canonicals or not isinstance(variant, str):
            continue
        canon = canonicals[0]
        out[variant.lower()] = str((data.get(canon) or {}).get("name") or canon)
    return out


def table() -> dict[str, str]:
    """Lower-case name or brand -> the dictionary's canonical drug name (loaded once, lazily)."""
    global _TABLE, _KEYS
    if _TABLE is None:
        with _LOCK:
            if _TABLE is None:
                loaded = _load()
                _KEYS = list(loaded)
                _TABLE = loaded
    return _TABLE


def available() -> bool:
    return bool(table())


def words(text: str) -> list[str]:
    """Candidate name words of a medication text (dose forms, units and numbers left out)."""
    return [w for w in _WORD.findall(text.lower()) if w not in _NOT_NAMES and len(w) >= 3]


def known_name(text: str) -> str | None:
    """The dictionary's name for a drug the text names (whole text, two-word or one-word), else None."""
    t = table()
    if not t:
        return None
    key = " ".join(text.lower().split())
    if key in t:
        return t[key]
    ws = words(text)
    for a, b in zip(ws, ws[1:], strict=False):
        hit = t.get(f"{a} {b}")
        if hit:
            return hit
    found = {t[w] for w in ws if w in t}
    return found.pop() if len(found) == 1 else None


def suggest(text: str, kb_names: dict[str, str], *, limit: int = 3, cutoff: float = 80.0) -> list[Suggestion]:
    """Closest names to the words of ``text``: knowledge-base names first, then the dictionary's.

    ``kb_names`` maps lower-case names (generic, brand, synonym) to knowledge-base drug ids.
    """
    from rapidfuzz import fuzz, process

    out: dict[str, Suggestion] = {}
    for w in words(text):
        for name, score, _ in process.extract(w, list(kb_names), scorer=fuzz.ratio, score_cutoff=cutoff, limit=limit):
            did = kb_names[name]
            best = out.get(did)
            if best is None or score > best.score:
                out[did] = Suggestion(name=name, score=round(score, 1), drug_id=did)
    ranked = sorted(out.values(), key=lambda s: -s.score)
    if ranked:
        return ranked[:limit]
    t = table()
    if not t:
        return []
    seen: dict[str, Suggestion] = {}
    for w in words(text):
        for name, score, _ in process.extract(w, _KEYS, scorer=fuzz.ratio, score_cutoff=max(cutoff, 85.0),
                                              limit=limit):
            canon = t[name]
            if canon not in seen or score > seen[canon].score:
                seen[canon] = Suggestion(name=canon, score=round(score, 1))
    return sorted(seen.values(), key=lambda s: -s.score)[:limit]
