"""The phenotype score: record features -> HPO terms -> a PheRS-like score for IPEX and each IPEX-like disorder.

Method (docs/screen.md has the full statement, sources and limits):

1. **Features.** Conditions (SNOMED CT, ICD-10 / ICD-10-CM with subcodes, free text) and laboratory results
   (LOINC beyond the laboratory's flag or reference range, or a cited fixed threshold) are mapped to HPO
   terms by ``data/phenotype-map.yaml``. A refuted or entered-in-error Condition is not used; a diarrhoea
   recorded within 30 days of an infectious gastroenteritis is taken as explained by it.
2. **Weights.** As in the phenotype risk score (PheRS; Bastarache 2018), a feature earns the information
   content (IC) of the disease annotation it matches: for each target disorder, the HPO terms annotated to
   it in the OMIM (and, for IPEX, Orphanet) annotations shipped with hpo3; IC is hpo3's OMIM-based
   information content (rare terms weigh more). A patient term matches an annotated term that is the
   same or more general (an ancestor) -- it earns that term's IC -- or a more specific one (a descendant) --
   it earns its own, smaller IC. Each annotated term counts once per disorder (its best feature).
3. **Onset age.** Points are multiplied by an onset factor (1.0 in the first year, falling with age).
4. **Sex.** The IPEX score is multiplied by the sex factor (X-linked); IPEX-like scores are not.
5. **Co-occurrence.** Organ-specific autoimmunity in two or more organs adds points per extra organ.
6. A patient's score is the best disorder's score; that disorder is named as the closest pattern.

hpo3 is imported here only, when a screen runs (never at CLI start-up), and needs no network: the ontology
and annotations are inside the wheel.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ..knowledge.loader import KnowledgeBase
from ..memo import remembered

# --- the map (validated) ----------------------------------------------------------------------------------------


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MapSource(_M):
    id: str
    citation: str
    doi: str | None = None
    pmid: str | None = None
    verification: str


class OnsetFactor(_M):
    below_years: float | None
    factor: float = Field(gt=0, le=1)


class Scoring(_M):
    onset_factors: list[OnsetFactor]
    unknown_onset_factor: float
    onset_sources: list[str]
    sex_factors: dict[str, dict[Literal["male", "female", "other", "unknown"], float]]
    sex_sources: list[str]
    organ_bonus: float
    organ_sources: list[str]
    candidate_min_score: float
    candidate_min_features: int
    next_step_sources: list[str]


class Code(_M):
    system: Literal["snomed", "omim", "orpha", "icd10"]
    code: str


class DiagnosisRule(_M):
    codes: list[Code] = []
    text: list[str] = []


class ConditionRule(_M):
    hpo: str = Field(pattern=r"^HP:\d{7}$")
    snomed: list[str] = []
    icd10: list[str] = []
    text: list[str] = []
    organ: Literal["gut", "endocrine", "blood", "kidney", "liver"] | None = None
    explained_by: Literal["infection"] | None = None


class InfectionRule(_M):
    icd10: list[str] = []
    snomed: list[str] = []
    text: list[str] = []


class Threshold(_M):
    value: float
    unit: str
    sources: list[str] = []
    kb_threshold: str | None = None
    note: str | None = None


class LabRule(_M):
    hpo: str = Field(pattern=r"^HP:\d{7}$")
    name: str
    loinc: list[str]
    direction: Literal["high", "low"]
    threshold: Threshold | None
    units: dict[str, float] = {}
    flag_counts: bool = True
    organ: Literal["gut", "endocrine", "blood", "kidney", "liver"] | None = None


class PhenotypeMap(_M):
    version: int
    sources: list[MapSource]
    target_sources: list[str]
    scoring: Scoring
    diagnoses: dict[Literal["ipex", "ipex-like"], DiagnosisRule]
    conditions: list[ConditionRule]
    infection: InfectionRule
    labs: list[LabRule]


@cache
def load_map() -> PhenotypeMap:
    text = resources.files("ipexrx.screen").joinpath("data/phenotype-map.yaml").read_text(encoding="utf-8")
    return PhenotypeMap.model_validate(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


# --- code and text matching ---------------------------------------------------------------------------------------


def _system(uri: str | None) -> str | None:
    s = (uri or "").lower()
    if "snomed" in s:
        return "snomed"
    if "icd-10" in s or "icd10" in s:
        return "icd10"
    if "omim" in s:
        return "omim"
    if "orpha" in s:
        return "orpha"
    if "loinc" in s:
        return "loinc"
    return None


def _icd_match(code: str, prefixes: list[str]) -> bool:
    """ICD-10 code within one of ``prefixes`` (the code itself or a subcode: E10 covers E10.9 and E109)."""
    c = code.strip().upper().replace(".", "")
    return any(c.startswith(p.upper().replace(".", "")) for p in prefixes)


@dataclass(frozen=True)
class CompiledMap:
    pmap: PhenotypeMap
    rules: list[tuple[ConditionRule, re.Pattern[str] | None]]
    infection: re.Pattern[str] | None
    ipex_text: re.Pattern[str] | None
    like_text: re.Pattern[str] | None
    like_omim: dict[str, str]  # OMIM -> KB disorder name
    like_names: dict[str, str]  # lower-case name/synonym -> KB disorder name
    lab_by_loinc: dict[str, LabRule]


def _rx(patterns: list[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.I) if patterns else None


_COMPILED: dict[int, tuple[object, CompiledMap]] = {}
_LOCK = threading.Lock()


def compiled(kb: KnowledgeBase) -> CompiledMap:
    return remembered(_COMPILED, id(kb), kb, lambda: _compile(kb), limit=0, lock=_LOCK)


def _compile(kb: KnowledgeBase) -> CompiledMap:
    pmap = load_map()
    like_omim: dict[str, str] = {}
    like_names: dict[str, str] = {}
    for d in kb.ipex_like.values():
        for ident in d.identifiers:
            if ident.system == "OMIM":
                like_omim[ident.code] = d.name
        for n in [d.name, *d.synonyms]:
            if len(n) >= 8:  # "STAT1 GOF" and longer; never a bare gene symbol
                like_names[n.lower()] = d.name
    like_text = _rx(pmap.diagnoses["ipex-like"].text + [re.escape(n) for n in like_names])
    return CompiledMap(pmap, [(r, _rx(r.text)) for r in pmap.conditions], _rx(pmap.infection.text),
                       _rx(pmap.diagnoses["ipex"].text), like_text, like_omim, like_names,
                       {code: rule for rule in pmap.labs for code in rule.loinc})


def classify_condition(cm: CompiledMap, system: str | None, code: str | None, text: str | None,
                       display: str | None) -> list[str]:
    """What one Condition coding row says: 'dx:ipex', 'dx:ipex-like:<name>', 'infection' or HPO ids."""
    sys_ = _system(system)
    code = (code or "").strip()
    words = " | ".join(t for t in (text, display) if t)
    out: list[str] = []
    ipex_codes = {(c.system, c.code) for c in cm.pmap.diagnoses["ipex"].codes}
    like = bool(cm.like_text and words and cm.like_text.search(words))
    if (sys_ and (sys_, code.lstrip("#").replace("ORPHA:", "")) in ipex_codes) or (
            cm.ipex_text and words and cm.ipex_text.search(words) and not like):
        return ["dx:ipex"]
    if sys_ == "omim" and code.lstrip("#") in cm.like_omim:
        return [f"dx:ipex-like:{cm.like_omim[code.lstrip('#')]}"]
    if cm.like_text and words and cm.like_text.search(words):
        low = words.lower()
        named = sorted((n for n in cm.like_names if n in low), key=len, reverse=True)
        return [f"dx:ipex-like:{cm.like_names[named[0]] if named else (text or display or 'IPEX-like disorder')}"]
    inf = cm.pmap.infection
    if (sys_ == "icd10" and code and _icd_match(code, inf.icd10)) or (sys_ == "snomed" and code in inf.snomed) or (
            cm.infection and words and cm.infection.search(words)):
        out.append("infection")
    for rule, rx in cm.rules:
        if (sys_ == "snomed" and code in rule.snomed) or (sys_ == "icd10" and code and _icd_match(code, rule.icd10)) \
                or (rx is not None and words and any(rx.search(w) for w in (text, display) if w)):
            out.append(rule.hpo)
    return out


# --- HPO weights (hpo3, lazily) ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    id: str
    name: str
    omim: tuple[str, ...]
    orpha: tuple[str, ...]
    x_linked: bool


_TARGETS: dict[int, tuple[object, list[Target]]] = {}


def targets(kb: KnowledgeBase) -> list[Target]:
    """IPEX first, then each IPEX-like disorder of the knowledge base with an OMIM number (built once per KB)."""
    return remembered(_TARGETS, id(kb), kb, lambda: _targets(kb), limit=0)


def _targets(kb: KnowledgeBase) -> list[Target]:
    ids = kb.disease.identifiers
    out = [Target("ipex", "IPEX (FOXP3)", (str(ids.omim),) if ids.omim else (),
                  (str(ids.orpha).replace("ORPHA:", ""),) if ids.orpha else (), True)]
    for d in kb.ipex_like.values():
        omim = tuple(i.code for i in d.identifiers if i.system == "OMIM")
        if omim:
            out.append(Target(d.id, d.name, omim, (), False))
    return out


@dataclass(frozen=True)
class Match:
    points: float  # information content earned
    annotated: str  # the annotated HPO term matched
    annotated_name: str


@dataclass
class Weights:
    names: dict[str, str]  # HPO id -> label (current release)
    match: dict[tuple[str, str], Match]  # (patient HPO term, target id) -> match
    release: str
    annotation_counts: dict[str, int] = field(default_factory=dict)
    ancestors: dict[str, set[str]] = field(default_factory=dict)  # mapped HPO term -> its ancestors


_WEIGHTS: dict[int, tuple[object, Weights]] = {}


WEIGHTS_FILE = "hpo-weights.json"  # in screen/data: the weights derived from hpo3, and the key they hold for


def weights_key(kb: KnowledgeBase) -> dict[str, Any]:
    """What the weights are computed from: the hpo3 release (its ontology and annotations), the mapped HPO
    terms and the target disorders' OMIM / Orphanet numbers."""
    from importlib.metadata import version

    terms = sorted({r.hpo for r in load_map().conditions} | {r.hpo for r in load_map().labs})
    return {"hpo3": version("hpo3"), "terms": terms,
            "targets": [[t.id, list(t.omim), list(t.orpha)] for t in targets(kb)]}


def weights_to_json(w: Weights, key: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "release": w.release, "names": w.names, "annotation_counts": w.annotation_counts,
            "ancestors": {h: sorted(a) for h, a in sorted(w.ancestors.items())},
            "match": [[h, t, m.points, m.annotated, m.annotated_name] for (h, t), m in sorted(w.match.items())]}


def _weights_from_json(data: dict[str, Any]) -> Weights:
    return Weights(dict(data["names"]), {(h, t): Match(float(p), a, n) for h, t, p, a, n in data["match"]},
                   str(data["release"]), dict(data["annotation_counts"]),
                   {h: set(a) for h, a in data["ancestors"].items()})


def weights(kb: KnowledgeBase) -> Weights:
    """IC-weighted matches of every mapped HPO term against every target's annotations (built once).

    Loading hpo3's ontology takes most of a second of one core, which a screen of 100k patients cannot
    spare; the weights are therefore shipped, derived, in ``data/hpo-weights.json`` (regenerate with
    ``python -m ipexrx.screen.score``; a test checks the file against hpo3), and used when they were
    derived from the same hpo3 release, terms and disorders -- otherwise they are computed from hpo3."""
    return remembered(_WEIGHTS, id(kb), kb, lambda: _load_weights(kb), limit=0)


def _load_weights(kb: KnowledgeBase) -> Weights:
    import json

    shipped = json.loads(resources.files("ipexrx.screen").joinpath("data", WEIGHTS_FILE).read_text(encoding="utf-8"))
    return _weights_from_json(shipped) if shipped.get("key") == weights_key(kb) else compute_weights(kb)


def compute_weights(kb: KnowledgeBase) -> Weights:
    """:func:`weights` computed from hpo3's ontology and annotations."""
    from pyhpo import Omim, Ontology, Orpha

    Ontology()
    terms = {r.hpo for r in load_map().conditions} | {r.hpo for r in load_map().labs}
    names: dict[str, str] = {}
    ancestors = {h: {p.id for p in Ontology.get_hpo_object(h).all_parents} for h in terms}
    match: dict[tuple[str, str], Match] = {}
    counts: dict[str, int] = {}
    for tgt in targets(kb):
        annotated: set[int] = set()
        for o in tgt.omim:
            annotated |= set(Omim.get(int(o)).hpo)
        for o in tgt.orpha:
            annotated |= set(Orpha.get(int(o)).hpo)
        counts[tgt.id] = len(annotated)
        ann_terms = [Ontology.get_hpo_object(a) for a in sorted(annotated)]
        ann_parents = {a.id: {p.id for p in a.all_parents} for a in ann_terms}
        for h in terms:
            t = Ontology.get_hpo_object(h)
            names[h] = t.name
            best: Match | None = None
            for a in ann_terms:
                if a.id == t.id or a.id in ancestors[h]:
                    cand = Match(a.information_content.omim, a.id, a.name)
                elif t.id in ann_parents[a.id]:
                    cand = Match(t.information_content.omim, a.id, a.name)
                else:
                    continue
                # ties go to the term itself, then to the lowest HPO id: hpo3 hands out annotations in no
                # fixed order, and the reason shown must not change from one run to the next
                if best is None or (cand.points, cand.annotated == t.id, best.annotated) > (
                        best.points, best.annotated == t.id, cand.annotated):
                    best = cand
            if best is not None and best.points > 0:
                match[(h, tgt.id)] = best
    return Weights(names, match, str(Ontology.version()), counts, ancestors)


# --- scoring ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Feature:
    patient: str
    hpo: str
    kind: Literal["condition", "lab"]
    evidence: str  # "ICD-10-CM E10.9 Type 1 diabetes mellitus", "LOINC 19113-0 IgE 2400 [IU]/mL (above 1000)"
    date: dt.date | None
    age_years: float | None
    organ: str | None = None
    where: str = ""  # file:line
    code: str | None = None  # "ICD-10-CM E10.9", "LOINC 19113-0"; None when matched on text only
    sources: tuple[dict[str, Any], ...] = ()  # where a fixed laboratory threshold comes from


@dataclass(frozen=True)
class PatientInfo:
    sex: str
    birth_date: dt.date | None


def onset_factor(scoring: Scoring, age: float | None) -> float:
    if age is None:
        return scoring.unknown_onset_factor
    for step in scoring.onset_factors:
        if step.below_years is None or age < step.below_years:
            return step.factor
    return scoring.onset_factors[-1].factor


@dataclass
class Scored:
    patient: str
    score: float
    target: Target
    reasons: list[dict[str, Any]]
    features: int


def score_patient(patient: str, info: PatientInfo, feats: list[Feature], kb: KnowledgeBase,
                  w: Weights) -> Scored | None:
    pmap = load_map()
    sc = pmap.scoring
    sex_key: Literal["male", "female", "other", "unknown"] = (
        "male" if info.sex == "male" else "female" if info.sex == "female" else "other" if info.sex == "other"
        else "unknown")
    # the totals of every target first, the reasons of the best one only (most patients score low and
    # are only counted in the histogram)
    best: tuple[float, Target, dict[str, tuple[float, Feature, Match, float]], list[str], float, float] | None = None
    for tgt in targets(kb):
        by_term: dict[str, tuple[float, Feature, Match, float]] = {}
        for f in feats:
            m = w.match.get((f.hpo, tgt.id))
            if m is None:
                continue
            factor = onset_factor(sc, f.age_years)
            pts = m.points * factor
            old = by_term.get(m.annotated)
            if old is None or pts > old[0]:
                by_term[m.annotated] = (pts, f, m, factor)
        if not by_term:
            continue
        base = sum(v[0] for v in by_term.values())
        organs = sorted({v[1].organ for v in by_term.values() if v[1].organ})
        bonus = sc.organ_bonus * (len(organs) - 1) if len(organs) >= 2 else 0.0
        sex = sc.sex_factors.get("ipex", {}).get(sex_key, 1.0) if tgt.x_linked else 1.0
        total = round((base + bonus) * sex, 2)
        if best is not None and total <= best[0]:  # ties go to the earlier target (IPEX first)
            continue
        best = (total, tgt, by_term, organs, bonus, sex)
    if best is None:
        return None
    total, tgt, by_term, organs, bonus, sex = best
    reasons: list[dict[str, Any]] = []
    for pts, f, m, factor in sorted(by_term.values(), key=lambda v: (-v[0], v[1].hpo)):
        r: dict[str, Any] = {"feature": w.names.get(f.hpo, f.hpo), "hpo": f.hpo, "code": f.code,
                             "evidence": f.evidence,
                             "date": f.date.isoformat() if f.date else None,
                             "age_at_onset_years": round(f.age_years, 2) if f.age_years is not None else None,
                             "points": round(pts, 2), "information_content": round(m.points, 2),
                             "onset_factor": factor, "record": f.where}
        if m.annotated != f.hpo:
            r["matches_annotation"] = f"{m.annotated} {m.annotated_name}"
        if f.sources:
            r["threshold_sources"] = list(f.sources)
        reasons.append(r)
    if bonus:
        reasons.append({"feature": f"organ-specific autoimmunity in {len(organs)} organs ({', '.join(organs)})",
                        "points": round(bonus, 2)})
    if tgt.x_linked:
        reasons.append({"feature": f"sex: {info.sex} (IPEX is X-linked)", "factor": sex})
    return Scored(patient, total, tgt, reasons, len(by_term))


def most_specific(feats: list[Feature], w: Weights) -> list[Feature]:
    """Within one record line, drop a term that is an ancestor of another term read from the same line
    (a D70 code and the text "autoimmune neutropenia" are one finding, not two)."""
    by_line: dict[str, set[str]] = {}
    for f in feats:
        by_line.setdefault(f.where, set()).add(f.hpo)
    if len(by_line) == len(feats):  # one term per line (the usual case): nothing to drop
        return feats
    return [f for f in feats if not any(f.hpo in w.ancestors.get(o, set()) for o in by_line[f.where] if o != f.hpo)]


def explained_by_infection(feats: list[Feature], infections: list[dt.date | None], rule_hpo: set[str],
                           days: int = 30) -> list[Feature]:
    """Drop the features of ``rule_hpo`` recorded within ``days`` of a recorded infection."""
    if not infections:
        return feats
    dates = [d for d in infections if d is not None]
    out = []
    for f in feats:
        if f.hpo in rule_hpo and (f.date is None or any(abs((f.date - d).days) <= days for d in dates)):
            continue
        out.append(f)
    return out


def lab_sql_filter(rules: list[LabRule]) -> str:
    """An SQL condition over the observation view's columns keeping every result :func:`lab_feature` could
    count (a superset: the exact judgement is still made in Python), so the many unremarkable results of
    the same tests (a routine platelet count) never leave the database."""
    def q(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    parts = []
    for rule in rules:
        codes = ", ".join(q(c) for c in rule.loinc)
        high = rule.direction == "high"
        conds = []
        if rule.flag_counts:
            flags = "('H', 'HH', 'HU')" if high else "('L', 'LL', 'LU')"
            conds.append(f"upper(coalesce(interpretation, '')) IN {flags}")
            conds.append("value > ref_high" if high else "value < ref_low")
        if rule.threshold is not None:
            for unit, factor in rule.units.items():
                cmp = ">" if high else "<"
                conds.append(f"(trim(coalesce(nullif(unit, ''), unit_text)) = {q(unit)} "
                             f"AND value * {factor!r} {cmp} {rule.threshold.value!r})")
        if conds:
            parts.append(f"(code IN ({codes}) AND ({' OR '.join(conds)}))")
    return "(" + " OR ".join(parts) + ")" if parts else "FALSE"


def lab_feature(rule: LabRule, value: float | None, unit: str | None, interpretation: str | None,
                ref_low: float | None, ref_high: float | None, comparator: str | None) -> str | None:
    """Why a result counts (text), or None when it does not (or cannot be judged)."""
    if value is None:
        return None
    interp = (interpretation or "").upper()
    high = rule.direction == "high"
    if rule.flag_counts:
        if (high and interp in ("H", "HH", "HU")) or (not high and interp in ("L", "LL", "LU")):
            return f"flagged {interp} by the laboratory"
        if high and ref_high is not None and value > ref_high and comparator not in ("<", "<="):
            return f"above the reference range (upper limit {ref_high:g})"
        if not high and ref_low is not None and value < ref_low and comparator not in (">", ">="):
            return f"below the reference range (lower limit {ref_low:g})"
    th = rule.threshold
    if th is None:
        return None
    factor = rule.units.get((unit or "").strip())
    if factor is None:
        return None  # a unit we cannot convert: cannot judge
    v = value * factor
    if high and v > th.value and comparator not in ("<", "<="):
        return f"above {th.value:g} {th.unit}"
    if not high and v < th.value and comparator not in (">", ">="):
        return f"below {th.value:g} {th.unit}"
    return None


if __name__ == "__main__":  # regenerate data/hpo-weights.json from the installed hpo3
    import json
    from pathlib import Path

    from ..knowledge.loader import get_kb

    kb_ = get_kb()
    out = Path(__file__).parent / "data" / WEIGHTS_FILE
    out.write_text(json.dumps(weights_to_json(compute_weights(kb_), weights_key(kb_)), indent=1, ensure_ascii=False)
                   + "\n", encoding="utf-8")
    print(f"wrote {out}")
