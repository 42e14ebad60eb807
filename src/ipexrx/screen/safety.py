"""Drug safety across a population: the assessment's own rules, run on each patient taking a knowledge-base drug.

Why no rules here: a second rule set would drift from the one clinicians review. Each chosen patient's
resources (kept raw by the reader) are put into a FHIR Bundle and given to :func:`ipexrx.assess.assess`
with the screen's ``as_of`` date -- exactly what ``ipexrx assess`` does with a Bundle -- and its alerts are
reported as they are (severity, summary, reasoning, action, sources), without internal rule ids.

Who is chosen: a patient with a MedicationRequest or MedicationStatement (any status) whose RxNorm or ATC
code, or whose text, the knowledge base's drug index identifies -- the same identification the
assessment uses. Model-based dose suggestions are left out (``dose_suggestions=False``): they are a
per-patient calculation for the clinician's view, not a population worklist item.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import orjson

from ..knowledge.loader import KnowledgeBase
from .duckdb_engine import DuckDBReader

log = logging.getLogger("ipexrx.screen.safety")

MED_CONCEPTS_SQL = """
WITH m AS (
  SELECT patient, _file, _line, text, system, code, display, medication_ref FROM t_medication_request
  UNION ALL
  SELECT patient, _file, _line, text, system, code, display, medication_ref FROM t_medication_statement
), r AS (
  SELECT m.patient, m._file, m._line, coalesce(m.text, md.text) AS text,
         CASE WHEN md.id IS NULL THEN m.system ELSE md.system END AS system,
         CASE WHEN md.id IS NULL THEN m.code ELSE md.code END AS code,
         CASE WHEN md.id IS NULL THEN m.display ELSE md.display END AS display
  FROM m LEFT JOIN t_medication md ON m.medication_ref = 'Medication/' || md.id
)
SELECT patient, _file, _line, any_value(text),
       list(DISTINCT code) FILTER (WHERE system ILIKE '%rxnorm%' AND code IS NOT NULL),
       list(DISTINCT code) FILTER (WHERE system ILIKE '%atc%' AND code IS NOT NULL),
       any_value(display)
FROM r WHERE patient IS NOT NULL GROUP BY patient, _file, _line
"""


def kb_drug_patients(reader: DuckDBReader, kb: KnowledgeBase) -> dict[str, list[str]]:
    """Patient id -> the knowledge-base drugs identified in its medication resources."""
    from ..patient.resolve import kb_index

    drugs = kb_index(kb).drugs
    seen: dict[tuple[str | None, tuple[str, ...], tuple[str, ...]], str | None] = {}
    out: dict[str, set[str]] = {}
    for patient, _f, _l, text, rx, atc, display in reader.sql(MED_CONCEPTS_SQL):
        key = (text or display, tuple(sorted(rx or ())), tuple(sorted(atc or ())))
        if key not in seen:
            seen[key] = drugs.identify(key[0], key[1], key[2]).drug_id
        drug = seen[key]
        if drug is not None:
            out.setdefault(patient, set()).add(drug)
    return {p: sorted(d) for p, d in sorted(out.items())}


def _alert(a: Any) -> dict[str, Any]:
    return {"severity": a.severity.value, "family": a.family, "summary": a.summary, "reasoning": a.reasoning,
            "action": a.action, "evidence": a.evidence, "sources": [s.short() for s in a.sources]}


def assess_patients(reader: DuckDBReader, patients: dict[str, list[str]], kb: KnowledgeBase, as_of: dt.date,
                    progress: Callable[[int, int], None] | None = None, strict: bool = False,
                    ) -> list[dict[str, Any]]:
    """One entry per chosen patient with at least one alert (or with a record that cannot be assessed)."""
    ids = list(patients)
    out: list[dict[str, Any]] = []
    chunk = 500
    for start in range(0, len(ids), chunk):
        batch = ids[start:start + chunk]
        out += assess_located(reader.resource_lines(batch), {p: patients[p] for p in batch}, kb, as_of, strict,
                              progress, start, len(ids))
    return out


def assess_located(located: dict[str, list[tuple[str, int, str]]], patients: dict[str, list[str]],
                   kb: KnowledgeBase, as_of: dt.date, strict: bool = False,
                   progress: Callable[[int, int], None] | None = None, done: int = 0, total: int = 0,
                   ) -> list[dict[str, Any]]:
    """:func:`assess_patients` for patients whose resource lines were already read
    (:meth:`~.duckdb_engine.DuckDBReader.resource_lines`): no database is needed, so it can run in
    another process."""
    from ..assess import assess
    from ..patient.errors import PatientInputError

    out: list[dict[str, Any]] = []
    for n, pid in enumerate(patients, start=done + 1):
        entry: dict[str, Any] = {"patient": pid, "drugs": patients[pid]}
        resources, unreadable = _parsed(located.get(pid, []))
        if unreadable:
            entry["alerts"] = []
            entry["error"] = ("the record cannot be assessed safely, so its drug safety cannot be judged: " + "; ".join(
                f"{f}, line {line} is not strict JSON ({why})" for f, line, why in unreadable))
            entry["issues"] = [{"path": f"{f}:{line}", "expected": "strict JSON (RFC 8259)", "got": why}
                               for f, line, why in unreadable]
            out.append(entry)
            continue
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
        try:
            result = assess(bundle, as_of=as_of, kb=kb, dose_suggestions=False, ipex_plan="never", strict=strict)
        except PatientInputError as exc:
            entry["alerts"] = []
            entry["error"] = (f"the record cannot be assessed safely, so its drug safety cannot be judged: "
                              f"{exc.summary}; " + "; ".join(_issue_words(exc, bundle, located.get(pid, []))))
            entry["issues"] = [i.to_dict() for i in exc.issues]  # the JSON paths, for machines
            out.append(entry)
            continue
        if result.alerts:
            entry["alerts"] = [_alert(a) for a in result.alerts]
            out.append(entry)
        if progress:
            progress(n, total or len(patients))
    return out


def _parsed(lines: list[tuple[str, int, str]]) -> tuple[list[Any], list[tuple[str, int, str]]]:
    """The patient's resources, and the lines that are not strict JSON (file, line, why).

    Why a line the reader kept can fail here: DuckDB's JSON reader is lenient -- it accepts ``NaN``,
    ``Infinity`` and trailing commas, which JSON does not allow and no FHIR server writes -- while this parse
    (orjson) is strict. Such a line was read for the phenotype score (its codes and dates are sound), but a
    patient whose medicines or results cannot be read exactly is not judged: the entry says which line and why,
    as a "cannot judge", never a crash and never a silent pass."""
    resources: list[Any] = []
    bad: list[tuple[str, int, str]] = []
    for f, line, raw in lines:
        try:
            resources.append(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            bad.append((f, line, exc.msg))
    return resources, bad


# What a forked worker inherits instead of receiving it pickled: the knowledge base (set just before the fork).
_FORKED_KB: KnowledgeBase | None = None


def _assess_in_fork(located: dict[str, list[tuple[str, int, str]]], patients: dict[str, list[str]],
                    as_of: dt.date, strict: bool) -> tuple[list[dict[str, Any]], float]:
    import time

    assert _FORKED_KB is not None
    t0 = time.perf_counter()
    return assess_located(located, patients, _FORKED_KB, as_of, strict), time.perf_counter() - t0


class SafetyChecks:
    """The safety checks of a screen, started before the scoring and collected after it.

    Why a process: the checks and the scoring are both Python, so threads would take turns on one core
    while the other waits; a forked worker (it inherits the loaded knowledge base and drug index, and
    never touches the database, whose lines are read here first) runs the checks beside the scoring.
    The checks run here, in chunks, when collected, instead: where fork is not available; when the
    patients are too many to hold their lines at once (:data:`MAX_FORKED`); and when this process runs
    other Python threads (a web server's, a progress bar's), since a fork copies a lock another thread
    may hold at that moment, and the child could wait on it for ever."""

    MAX_FORKED = 5000

    def __init__(self, reader: DuckDBReader, patients: dict[str, list[str]], kb: KnowledgeBase, as_of: dt.date,
                 strict: bool = False):
        import multiprocessing
        from concurrent.futures import Future, ProcessPoolExecutor

        global _FORKED_KB
        self._args = (reader, patients, kb, as_of, strict)
        self._pool: ProcessPoolExecutor | None = None
        self._job: Future[tuple[list[dict[str, Any]], float]] | None = None
        self.beside = False  # the checks ran in the worker, beside the scoring
        self.seconds = 0.0  # the checks' own time
        if not patients or len(patients) > self.MAX_FORKED or not self.may_fork():
            return
        located = reader.resource_lines(list(patients))
        _FORKED_KB = kb
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
        self._job = self._pool.submit(_assess_in_fork, located, patients, as_of, strict)

    @staticmethod
    def may_fork() -> bool:
        """Fork is available and no other Python thread runs in this process (see the class docstring)."""
        import multiprocessing
        import threading

        return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1

    def result(self, progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
        import time
        from concurrent.futures.process import BrokenProcessPool

        reader, patients, kb, as_of, strict = self._args
        if self._job is not None and self._pool is not None:
            try:
                out, self.seconds = self._job.result()
            except BrokenProcessPool as exc:  # the worker died (killed, out of memory): check here instead
                log.warning("the drug-safety worker stopped (%s); the checks run in this process", exc)
            else:
                self.beside = True
                if progress:
                    progress(len(patients), len(patients))
                return out
            finally:
                self.close()
        t0 = time.perf_counter()
        out = assess_patients(reader, patients, kb, as_of, progress, strict=strict)
        self.seconds = time.perf_counter() - t0
        return out

    def close(self) -> None:
        """Stop the worker (after :meth:`result`, or when the screen fails before it)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _issue_words(exc: Any, bundle: dict[str, Any], lines: list[tuple[str, int, str]]) -> list[str]:
    """The first problems of a patient's record, each where it is in the input files: 'MedicationStatement.ndjson,
    line 17, MedicationStatement, id "m1", element "dosage..."' (no JSON path; the bundle's entry number, which
    only this screen made, is not shown)."""
    from ..patient.errors import describe_path, issue_problem
    from ..patient.jsonpos import path_steps

    out = []
    for issue in exc.issues[:5]:
        steps = path_steps(issue.path) or []
        where = describe_path(issue.path, bundle, numbered_entries=False)
        if len(steps) > 1 and steps[0] == "entry" and isinstance(steps[1], int) and steps[1] < len(lines):
            file, line, _raw = lines[steps[1]]
            where = f"{file}, line {line}, {where}"
        out.append(f"{where}: {issue_problem(issue)}")
    return out
