"""What every rule reads: the resolved patient, the knowledge base with its indexes, the date.

Why a context object: rules stay small pure functions ``rule(ctx) -> list[Alert]`` and share the
per-KB indexes (interaction pairs, resolved citations) that are built once and cached, which is
what keeps an assessment in the low milliseconds.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from ..knowledge.loader import KnowledgeBase
from ..knowledge.schema import Citation, Drug, Interaction, Mechanism, MechanismMember, Statement
from ..patient.labs import LabKind
from ..patient.normalize import LabResult, Med, PatientData
from .models import SourceRef, Trigger


@dataclass
class AssessIndex:
    """Per-KB lookups built once: interactions by drug pair, mechanism groups by member, resolved citations."""

    kb: KnowledgeBase
    interactions: dict[frozenset[str], list[Interaction]]
    memberships: dict[str, dict[str, tuple[Mechanism, MechanismMember]]] = field(default_factory=dict)
    _refs: dict[str, SourceRef] = field(default_factory=dict)
    # By the citation object (the knowledge base's own, alive as long as it is): rules ask for the
    # same few hundred citations tens of times per chart, and formatting the key cost more than the rest.
    _by_object: dict[int, tuple[Citation, SourceRef]] = field(default_factory=dict)
    _statement_refs: dict[tuple[int, ...], tuple[tuple[Statement | None, ...], tuple[SourceRef, ...]]] = field(
        default_factory=dict)

    def ref(self, c: Citation) -> SourceRef:
        known = self._by_object.get(id(c))
        if known is not None and known[0] is c:
            return known[1]
        key = str(c)
        hit = self._refs.get(key)
        if hit is None:
            src = self.kb.sources.get(c.source)
            if src is None:
                hit = SourceRef(citation=key, source=c.source, locator=c.locator)
            else:
                hit = SourceRef(citation=key, source=c.source, locator=c.locator, title=src.title,
                                section=src.sections.get(c.locator) if c.locator else None, kind=src.kind.value,
                                doi=src.doi, pmid=src.pmid, url=src.url)
            self._refs[key] = hit
        if len(self._by_object) > 100_000:
            self._by_object.clear()
        self._by_object[id(c)] = (c, hit)
        return hit

    def refs(self, statements: tuple[Statement | None, ...]) -> list[SourceRef]:
        """The resolved sources of ``statements``, each once, in order (remembered per tuple of statement
        objects, which are the knowledge base's; the caller gets its own list)."""
        key = tuple(map(id, statements))
        known = self._statement_refs.get(key)
        if known is not None and all(a is b for a, b in zip(known[0], statements, strict=True)):
            return list(known[1])
        out: dict[str, SourceRef] = {}
        for st in statements:
            if st is None:
                continue
            for c in st.sources:
                r = self.ref(c)
                out.setdefault(r.citation, r)
        if len(self._statement_refs) > 100_000:
            self._statement_refs.clear()
        self._statement_refs[key] = (statements, tuple(out.values()))
        return list(out.values())


_CACHE: dict[int, AssessIndex] = {}
_LOCK = threading.Lock()


def assess_index(kb: KnowledgeBase) -> AssessIndex:
    hit = _CACHE.get(id(kb))
    if hit is not None and hit.kb is kb:
        return hit
    with _LOCK:
        pairs: dict[frozenset[str], list[Interaction]] = {}
        for inter in kb.interactions.values():
            pairs.setdefault(frozenset(inter.drugs), []).append(inter)
        members: dict[str, dict[str, tuple[Mechanism, MechanismMember]]] = {}
        for mech in kb.mechanisms.values():
            for mem in mech.members:
                members.setdefault(mem.drug, {})[mech.id] = (mech, mem)
        idx = AssessIndex(kb, pairs, members)
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[id(kb)] = idx
        return idx


_FREQ = [
    (re.compile(r"^(once daily|daily|qd|od|q24h|once a day|every 24 hours|1 per day|nightly|qhs|every morning)$"), 1.0),
    (re.compile(r"^(twice daily|bid|b\.i\.d\.|q12h|every 12 hours|2 per day|twice a day)$"), 2.0),
    (re.compile(r"^(three times daily|tid|t\.i\.d\.|q8h|every 8 hours|3 per day)$"), 3.0),
    (re.compile(r"^(four times daily|qid|q\.i\.d\.|q6h|every 6 hours|4 per day)$"), 4.0),
    (re.compile(r"^(every other day|qod|alternate days|every 48 hours)$"), 0.5),
    (re.compile(r"^(weekly|once weekly|once a week|1 per week|every week)$"), 1 / 7),
]


@lru_cache(maxsize=4096)
def doses_per_day(frequency: str | None) -> float | None:
    """Administrations per day from common frequency spellings; None when not recognisable. Cached: charts
    spell frequencies from a small vocabulary, and a dose is compared with several ranges."""
    if not frequency:
        return None
    f = frequency.strip().lower()
    for pat, n in _FREQ:
        if pat.match(f):
            return n
    m = re.match(r"^(\d+(?:\.\d+)?) per (\d+ )?(day|days|hour|hours)$", f)
    if m:
        count = float(m.group(1))
        per = float(m.group(2) or 1)
        return count / per * (24 if m.group(3).startswith("hour") else 1)
    m = re.match(r"^q(\d+)h$", f)
    if m and int(m.group(1)) > 0:
        return 24 / int(m.group(1))
    m = re.match(r"^(?:(\d+(?:\.\d+)?) per|(?:once )?every) (\d+ )?(week|weeks|month|months)$", f) \
        or re.match(r"^(?:(\d+) )?q(\d+)(w|wk)$", f)
    if m:
        count = float(m.group(1) or 1)
        n = float(m.group(2) or 1)
        days = 7.0 if m.group(3).startswith("w") else 30.4375
        return count / (n * days)
    return None


@dataclass
class Ctx:
    kb: KnowledgeBase
    index: AssessIndex
    patient: PatientData
    as_of: dt.date
    dose_suggestions: bool = True  # model-based doses for out-of-range troughs (imports numpy/scipy lazily)
    # id(record) -> (record, its trigger): see drug_trigger; the record is kept so that an id is never reused
    triggers: dict[int, tuple[object, Trigger]] = field(default_factory=dict, repr=False, compare=False)

    def drug(self, drug_id: str) -> Drug:
        return self.kb.drugs[drug_id]

    def label(self, drug_id: str) -> str:
        return self.kb.drugs[drug_id].name

    @cached_property
    def active(self) -> list[Med]:
        """Active medications resolved to the KB: one record per drug and kind of use (systemic or local),
        the first listed, so a topical record never hides a systemic one of the same drug."""
        return _unique(self.patient.meds_with("active"))

    @cached_property
    def planned(self) -> list[Med]:
        active_keys = {(m.drug_id, m.systemic) for m in self.active}
        return [m for m in _unique(self.patient.meds_with("planned")) if (m.drug_id, m.systemic) not in active_keys]

    @cached_property
    def current_and_planned(self) -> list[Med]:
        return self.active + self.planned

    def immunosuppressive(self, meds: Iterable[Med]) -> list[Med]:
        """Systemic meds whose KB record is flagged immunosuppressive (topical use does not count)."""
        return [m for m in meds if m.drug_id and m.systemic and self.drug(m.drug_id).immunosuppressive]

    def is_cni(self, m: Med) -> bool:
        return bool(m.drug_id) and m.systemic and self.drug(m.drug_id).calcineurin_inhibitor  # type: ignore[arg-type]

    @cached_property
    def _last_of_kind(self) -> dict[str, tuple[int, LabResult]]:
        """Per lab kind, the position and result of its last record (the record keeps results in date order).
        Why: the rules ask for the latest result dozens of times per chart."""
        return {r.kind.id: (i, r) for i, r in enumerate(self.patient.labs)}

    def latest(self, kinds: tuple[LabKind, ...]) -> LabResult | None:
        """The last result of any of ``kinds`` (the one listed last, as the record orders them)."""
        best: tuple[int, LabResult] | None = None
        for k in kinds:
            hit = self._last_of_kind.get(k.id)
            if hit is not None and (best is None or hit[0] > best[0]):
                best = hit
        return best[1] if best is not None else None

    def results(self, kinds: tuple[LabKind, ...]) -> list[LabResult]:
        ids = {k.id for k in kinds}
        return [r for r in self.patient.labs if r.kind.id in ids]

    def refs(self, *statements: Statement | None) -> list[SourceRef]:
        return self.index.refs(statements)

    def dosing_caveat(self, drug_id: str) -> Statement | None:
        d = self.drug(drug_id)
        if d.dosing_caveat is not None:
            return d.dosing_caveat
        return next((c for c in self.kb.disease.caveats if c.id == "dosing-not-established"), None)


def drug_trigger(ctx: Ctx, m: Med) -> Trigger:
    """The trigger naming medication ``m``; made once per record and chart (a record sets off several
    alerts; the record and the trigger are both immutable, so the alerts share it)."""
    known = ctx.triggers.get(id(m))
    if known is not None and known[0] is m:
        return known[1]
    detail = f"{m.status}: {m.describe()}"
    name = ctx.kb.drugs[m.drug_id].name if m.drug_id in ctx.kb.drugs else None
    made = Trigger(kind="drug", ref=m.drug_id or m.text, path=m.path, detail=detail, name=name)
    ctx.triggers[id(m)] = (m, made)
    return made


def lab_trigger(ctx: Ctx, r: LabResult) -> Trigger:
    """The trigger naming result ``r``; made once per result and chart, as :func:`drug_trigger`."""
    known = ctx.triggers.get(id(r))
    if known is not None and known[0] is r:
        return known[1]
    made = Trigger(kind="lab", ref=r.kind.id, path=r.path, detail=r.show())
    ctx.triggers[id(r)] = (r, made)
    return made


def _unique(meds: list[Med]) -> list[Med]:
    seen: set[tuple[str, bool]] = set()
    out = []
    for m in meds:
        if m.drug_id and (m.drug_id, m.systemic) not in seen:
            seen.add((m.drug_id, m.systemic))
            out.append(m)
    return out


def status_word(m: Med) -> str:
    return {"active": "current", "planned": "planned", "stopped": "stopped"}.get(m.status, m.status)
