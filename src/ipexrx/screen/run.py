"""``screen``: a Bulk Data directory -> candidates, known patients, safety alerts and statistics.

The result's JSON shape is the one ``ipexrx screen --json`` prints::

    {"candidates": [{"patient", "score", "reasons", ...}, ...]  (best first),
     "known": [...], "safety": [{"patient", "alerts": [...]}, ...], "stats": {...}}

Candidates are suggestions for a clinician to review -- never a diagnosis or an order.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..knowledge.loader import KnowledgeBase, get_kb
from .duckdb_engine import DuckDBReader
from .errors import ScreenInputError
from .safety import SafetyChecks, kb_drug_patients
from .score import (
    Feature,
    PatientInfo,
    classify_condition,
    compiled,
    explained_by_infection,
    lab_feature,
    lab_sql_filter,
    load_map,
    most_specific,
    score_patient,
    weights,
)

Progress = Callable[[str, int, int], None]
GENES_LIKE = "IL2RA (CD25), STAT5B, STAT1, STAT3, CTLA4, LRBA, DEF6 and BACH2"


@functools.lru_cache(maxsize=1 << 16)  # a population's findings share a few thousand dates
def _date(text: str | None) -> dt.date | None:
    if not text or len(text) < 4:
        return None
    try:
        if len(text) == 4:
            return dt.date(int(text), 7, 1)
        if len(text) == 7:
            return dt.date(int(text[:4]), int(text[5:7]), 15)
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        return None


def _years(birth: dt.date | None, when: dt.date | None) -> float | None:
    if birth is None or when is None:
        return None
    return max(0.0, (when - birth).days / 365.25)


@functools.lru_cache(maxsize=1 << 12)
def _code_label(system: str | None, code: str | None) -> str:
    s = (system or "").lower()
    name = ("SNOMED CT" if "snomed" in s else "ICD-10-CM" if "icd-10-cm" in s else "ICD-10" if "icd" in s
            else "LOINC" if "loinc" in s else (system or "code"))
    return f"{name} {code}"


def _source_refs(kb: KnowledgeBase, ids: list[str]) -> list[dict[str, Any]]:
    pmap = load_map()
    own = {s.id: s for s in pmap.sources}
    out = []
    for sid in ids:
        if sid in own:
            s = own[sid]
            out.append({"citation": s.citation, "doi": s.doi, "pmid": s.pmid, "verification": s.verification})
        elif sid in kb.sources:
            k = kb.sources[sid]
            out.append({"citation": k.citation or k.title, "doi": k.doi, "pmid": k.pmid,
                        "verification": k.verification})
    return out


def next_step(kb: KnowledgeBase, target_id: str, target_name: str) -> dict[str, Any]:
    """The suggested next step for a candidate (a suggestion for the treating team, never an order)."""
    if target_id == "ipex":
        text = ("Suggestion for the treating team: consider referral to paediatric immunology and genetic testing -- "
                f"FOXP3 sequencing together with a panel of the IPEX-like genes ({GENES_LIKE}).")
    else:
        text = (f"Suggestion for the treating team: the record resembles {target_name}; consider referral to "
                f"paediatric immunology and an inborn-errors-of-immunity gene panel that includes the IPEX-like "
                f"genes ({GENES_LIKE}) and FOXP3.")
    return {"text": text, "sources": _source_refs(kb, load_map().scoring.next_step_sources)}


def _features(reader: DuckDBReader, kb: KnowledgeBase, as_of: dt.date,
              ) -> tuple[dict[str, list[Feature]], dict[str, dict[str, Any]], dict[str, PatientInfo]]:
    """Scored features per patient, known diagnoses, and the patients' sex and birth date. Findings dated
    after ``as_of`` are not used (the screen describes the record as it stood on that date)."""
    cm = compiled(kb)
    combos = reader.sql("SELECT DISTINCT system, code, text, display FROM t_condition WHERE "
                        "coalesce(verification_status, '') NOT IN ('refuted', 'entered-in-error')")
    mapped = []
    for system, code, text, display in combos:
        for tag in classify_condition(cm, system, code, text, display):
            mapped.append((system, code, text, display, tag))
    cols = list(zip(*mapped, strict=True)) if mapped else [(), (), (), (), ()]
    reader.con.execute("CREATE OR REPLACE TEMP TABLE cmap AS SELECT unnest(?::VARCHAR[]) AS system, "
                       "unnest(?::VARCHAR[]) AS code, unnest(?::VARCHAR[]) AS text, unnest(?::VARCHAR[]) AS display, "
                       "unnest(?::VARCHAR[]) AS tag", [list(c) for c in cols])
    rows = reader.sql(
        "SELECT c.patient, m.tag, c.id, coalesce(c.onset, c.onset_period_start, c.recorded), c.onset_age, c.system, "
        "c.code, c.text, c.display, c._file, c._line, c.verification_status FROM t_condition c JOIN cmap m ON "
        "c.system IS NOT DISTINCT FROM m.system AND c.code IS NOT DISTINCT FROM m.code AND "
        "c.text IS NOT DISTINCT FROM m.text AND c.display IS NOT DISTINCT FROM m.display "
        "WHERE coalesce(c.verification_status, '') NOT IN ('refuted', 'entered-in-error') AND c.patient IS NOT NULL")
    loincs = sorted(cm.lab_by_loinc)
    labs = reader.sql(
        "SELECT patient, code, value, unit, unit_text, interpretation, ref_low, ref_high, comparator, effective, "
        "effective_period_start, text, _file, _line FROM t_observation WHERE system ILIKE '%loinc%' AND code IN "
        f"({', '.join('?' for _ in loincs)}) AND coalesce(status, '') NOT IN ('entered-in-error', 'cancelled') "
        f"AND {lab_sql_filter(load_map().labs)} "
        "AND patient IS NOT NULL", loincs) if loincs else []
    wanted = {r[0] for r in rows} | {r[0] for r in labs}
    reader.con.execute("CREATE OR REPLACE TEMP TABLE wanted AS SELECT unnest(?::VARCHAR[]) AS patient",
                       [sorted(wanted)])
    people = {pid: PatientInfo(sex or "unknown", _date(birth)) for pid, sex, birth in reader.sql(
        "SELECT id, any_value(gender), any_value(birth_date) FROM t_patient WHERE id IN (SELECT patient FROM wanted) "
        "GROUP BY id")}
    rules = {r.hpo: r for r in load_map().conditions}
    feats: dict[str, dict[tuple[str, str], Feature]] = {}
    dx: dict[str, dict[str, Any]] = {}
    infections: dict[str, list[dt.date | None]] = {}
    for pid, tag, rid, when, onset_age, system, code, text, display, fname, line, vstatus in rows:
        birth = people[pid].birth_date if pid in people else None
        date = _date(when)
        label = text or display or ""
        evidence = f"{_code_label(system, code)} {display or text or ''}".strip() if code else f"text '{label}'"
        if tag.startswith("dx:"):
            if date is not None and date > as_of:
                continue  # a diagnosis made after the screening date was not known on that date
            kind = "IPEX" if tag == "dx:ipex" else f"IPEX-like disorder ({tag.split(':', 2)[2]})"
            if vstatus in ("provisional", "differential", "unconfirmed"):
                kind += f" (suspected: verification status '{vstatus}')"  # already being worked up
            old = dx.get(pid)
            if old is None or (kind == "IPEX" and old["diagnosis"] != "IPEX"):
                dx[pid] = {"patient": pid, "diagnosis": kind, "evidence": evidence,
                           "date": date.isoformat() if date else None, "record": f"{fname}:{line}"}
            continue
        if tag == "infection":
            infections.setdefault(pid, []).append(date)
            continue
        age = float(onset_age) if onset_age is not None else _years(birth, date)
        f = Feature(pid, tag, "condition", evidence, date, age, rules[tag].organ, f"{fname}:{line}",
                    _code_label(system, code) if code else None)
        key = (tag, rid or f"{fname}:{line}")
        old_f = feats.setdefault(pid, {}).get(key)
        if old_f is None or (f.date and old_f.date and f.date < old_f.date) or (
                old_f.evidence.startswith("text") and not f.evidence.startswith("text")):
            feats[pid][key] = f
    cited_by: dict[int, list[dict[str, Any]]] = {}  # id(threshold) -> its sources (thresholds live all run)
    for (pid, code, value, unit, unit_text, interp, low, high, comparator, eff, eff_start, _text, fname,
         line) in labs:
        rule = cm.lab_by_loinc[code]
        why = lab_feature(rule, value, unit or unit_text, interp, low, high, comparator)
        if why is None:
            continue
        birth = people[pid].birth_date if pid in people else None
        date = _date(eff or eff_start)
        shown_unit = unit or unit_text or ""
        th = rule.threshold
        cited: tuple[dict[str, Any], ...] = ()
        if th is not None and why.startswith(("above ", "below ")) and not why.startswith(("above the", "below the")):
            if id(th) not in cited_by:  # the same few thresholds, lab after lab: their sources looked up once
                ids = list(th.sources)
                if th.kb_threshold:
                    ids += [c.source for t in kb.thresholds.values() for x in t.thresholds
                            if x.id == th.kb_threshold and x.statement is not None for c in x.statement.sources]
                cited_by[id(th)] = _source_refs(kb, ids)
            refs = [dict(r) for r in cited_by[id(th)]]
            if not refs:
                refs = [{"citation": f"cut-off chosen for this screen ({th.note or 'no published source'})",
                         "doi": None, "pmid": None, "verification": "a method choice, not a published cut-off"}]
            cited = tuple(refs)
        f = Feature(pid, rule.hpo, "lab", f"LOINC {code} {rule.name} {value:g} {shown_unit} ({why})".replace("  ", " "),
                    date, _years(birth, date), rule.organ, f"{fname}:{line}", f"LOINC {code}", cited)
        key = (rule.hpo, "lab")
        old_f = feats.setdefault(pid, {}).get(key)
        if old_f is None or (f.date and old_f.date and f.date < old_f.date):
            feats[pid][key] = f  # the earliest abnormal result gives the age at onset
    explained = {r.hpo for r in load_map().conditions if r.explained_by == "infection"}
    w = weights(kb)
    out = {pid: most_specific(explained_by_infection([f for f in fs.values() if f.date is None or f.date <= as_of],
                                                     infections.get(pid, []), explained), w)
           for pid, fs in feats.items()}
    return out, dx, people


ENGINES = ("duckdb", "spark")


def open_reader(engine: str, path: Path | str, *, memory_limit: str = "1GB", threads: int | None = None,
                spark_master: str | None = None) -> DuckDBReader:
    """The reader of ``engine``: DuckDB, or Spark (PySpark is imported only then; missing, it is a clear error)."""
    if engine == "duckdb":
        return DuckDBReader(path, memory_limit=memory_limit, threads=threads)
    if engine == "spark":
        from .spark_engine import SparkReader

        return SparkReader(path, memory_limit=memory_limit, threads=threads, master=spark_master)
    raise ScreenInputError(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")


def histogram(scores: list[float], patients: int, width: float = 2.0) -> list[dict[str, Any]]:
    """Counts of patients per score band (width 2); patients with no scored feature are in the first band."""
    top = max(scores, default=0.0)
    bins = [0] * (int(top // width) + 1)
    for s in scores:
        bins[int(s // width)] += 1
    bins[0] += max(0, patients - len(scores))
    return [{"from": round(i * width, 1), "to": round((i + 1) * width, 1), "patients": n} for i, n in enumerate(bins)]


def screen(path: Path | str, *, as_of: dt.date | None = None, top: int | None = None,
           kb: KnowledgeBase | None = None, memory_limit: str = "1GB", threads: int | None = None,
           progress: Progress | None = None, all_scored: bool = False, engine: str = "duckdb",
           spark_master: str | None = None, strict: bool = False) -> dict[str, Any]:
    """Screen a Bulk Data directory. Raises :class:`~ipexrx.screen.errors.ScreenInputError` for input that
    cannot be read at all; bad lines are reported in ``stats['bad_lines']`` and skipped.

    ``all_scored``: list every undiagnosed patient with a scored feature, below the candidate threshold too
    (for validation: where do the look-alikes rank?).

    ``engine``: ``duckdb`` (embedded, the default) or ``spark`` (the views flattened by Spark -- ``spark_master``,
    default ``IPEXRX_SPARK_MASTER`` or ``local[2]`` -- then the same scoring and safety checks).

    ``strict``: the safety checks validate each assessed patient's resources in full (fhir.resources),
    as ``ipexrx assess --strict`` does."""
    kb = kb or get_kb()
    as_of = as_of or dt.date.today()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    with open_reader(engine, path, memory_limit=memory_limit, threads=threads, spark_master=spark_master) as reader:
        chosen: dict[str, list[str]] = {}

        def pick(rd: DuckDBReader) -> list[str]:
            chosen.update(kb_drug_patients(rd, kb))
            return list(chosen)

        step = {"n": 0}

        def loaded(rtype: str) -> None:
            step["n"] += 1
            if progress:
                progress(f"reading {rtype}", step["n"], 8)

        # the HPO weights (shipped; computed from hpo3, ~0.8 s, only if stale) are loaded while the files are read
        reader.load_all(pick, loaded, wanted_codes={"Observation": sorted(compiled(kb).lab_by_loinc)},
                        meanwhile=lambda: weights(kb))
        timings["read_seconds"] = round(time.perf_counter() - t0, 3)
        t1 = time.perf_counter()
        checks = SafetyChecks(reader, chosen, kb, as_of, strict=strict)  # beside the scoring, where it can
        try:
            if progress:
                progress("scoring", 0, 1)
            feats, dx, people = _features(reader, kb, as_of)
            w = weights(kb)
            pmap = load_map()
            candidates: list[dict[str, Any]] = []
            known: list[dict[str, Any]] = []
            all_scores: list[float] = []
            for pid in sorted(set(feats) | set(dx)):
                info = people.get(pid, PatientInfo("unknown", None))
                scored = score_patient(pid, info, feats.get(pid, []), kb, w)
                if pid in dx:
                    entry = dict(dx[pid])
                    entry["score"] = scored.score if scored else 0.0
                    known.append(entry)
                    continue
                all_scores.append(scored.score if scored else 0.0)
                if scored is None or (not all_scored and (scored.score < pmap.scoring.candidate_min_score
                                                          or scored.features < pmap.scoring.candidate_min_features)):
                    continue
                candidates.append({
                    "patient": pid, "score": scored.score, "reasons": scored.reasons,
                    "pattern": scored.target.name, "sex": info.sex,
                    "age_years": round(_years(info.birth_date, as_of) or 0, 1) if info.birth_date else None,
                    "next_step": next_step(kb, scored.target.id, scored.target.name)})
            candidates.sort(key=lambda c: (-c["score"], c["patient"]))
            total_candidates = len(candidates)
            if top is not None:
                candidates = candidates[:top]
            known.sort(key=lambda k: k["patient"])
        except BaseException:  # the worker is not left running behind a failed screen
            checks.close()
            raise
        timings["score_seconds"] = round(time.perf_counter() - t1, 3)
        t2 = time.perf_counter()

        def assessed(done: int, total: int) -> None:
            if progress:
                progress("drug-safety checks", done, total)

        safety = checks.result(assessed)
        # the checks' own time; when they ran beside the scoring, only the wait for them adds to the total
        timings["safety_seconds"] = round(checks.seconds, 3)
        timings["safety_wait_seconds"] = round(time.perf_counter() - t2, 3)
        timings["safety_beside_scoring"] = checks.beside
        stats = {
            "as_of": as_of.isoformat(), "engine": reader.engine, "directory": str(Path(path)),
            "patients": reader.stats.resources.get("Patient", 0), "resources": reader.stats.resources,
            "files": reader.stats.files, "ignored_files": reader.stats.ignored_files,
            "bad_lines": [{"file": b.file, "line": b.line, "problem": b.problem} for b in reader.stats.bad_lines],
            "candidates": total_candidates, "candidates_shown": len(candidates), "known": len(known),
            "score_histogram": histogram(all_scores, reader.stats.resources.get("Patient", 0) - len(known)),
            "candidate_min_score": pmap.scoring.candidate_min_score,
            "candidate_min_features": pmap.scoring.candidate_min_features,
            "safety_patients_checked": len(chosen), "safety_patients_with_alerts": len(safety),
            "hpo_release": w.release, "method": "PheRS-like sum of HPO information content over the annotations of "
            "IPEX and the IPEX-like disorders, weighted by onset age, sex (IPEX) and multi-organ autoimmunity; "
            "see docs/screen.md",
            "method_sources": _source_refs(kb, ["bastarache-2018", "bastarache-2019", "fitzpatrick-2025",
                                                "hpo-annotations"]),
            **timings, "total_seconds": round(time.perf_counter() - t0, 3),
        }
    return {"candidates": candidates, "known": known, "safety": safety, "stats": stats}
