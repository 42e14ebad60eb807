"""Batch assessment of NDJSON (one patient record or FHIR Bundle per line).

Why per-line isolation: a hospital screening every IPEX patient at once must not lose 9,999 results
to one broken export line. Each line yields a :class:`BatchResult`; an input error is reported with
its line number and located issues, and the run goes on. Blank lines are skipped. The iterator is
lazy so the CLI can show progress and write results as they come.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..knowledge.loader import KnowledgeBase, get_kb
from ..patient.errors import InputIssue, MalformedInputError, PatientInputError
from .engine import assess
from .models import Assessment, PlanChoice, assessment_json


@dataclass(frozen=True)
class BatchResult:
    line: int
    assessment: Assessment | None = None
    error: PatientInputError | None = None

    @property
    def ok(self) -> bool:
        return self.assessment is not None

    def to_dict(self) -> dict[str, object]:
        if self.assessment is not None:
            return {"line": self.line, "ok": True, "assessment": self.assessment.model_dump(mode="json")}
        assert self.error is not None
        return {"line": self.line, "ok": False, "error": self.error.to_dict()}

    def to_json(self) -> str:
        return self.to_ndjson()[:-1].decode("utf-8")

    def to_ndjson(self) -> bytes:
        """The output line as UTF-8 bytes, newline included (what a batch writes; no str round trip)."""
        if self.assessment is not None:
            return b'{"line": %d, "ok": true, "assessment": %b}\n' % (self.line, assessment_json(self.assessment))
        return json.dumps(self.to_dict(), ensure_ascii=False).encode("utf-8") + b"\n"


def assess_batch(lines: Iterable[str | bytes], *, as_of: dt.date | None = None,
                 kb: KnowledgeBase | None = None, dose_suggestions: bool = True,
                 ipex_plan: PlanChoice = "auto", strict: bool = False) -> Iterator[BatchResult]:
    """Assess each non-blank line; yields results in input order (1-based line numbers).

    ``dose_suggestions=False`` skips the model-based doses on trough alerts (faster for large batches);
    ``ipex_plan`` is passed to :func:`~ipexrx.assess.assess` for every line.
    """
    kb = kb or get_kb()
    as_of = as_of or dt.date.today()
    for n, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        if _blank(n, text):
            continue
        yield _one(n, text, as_of, kb, dose_suggestions, ipex_plan, strict)


def _blank(n: int, line: str | bytes) -> bool:
    """A line with nothing to read: blank, or (the first line only) nothing but the byte-order mark that may
    open the file."""
    if n == 1:
        line = line.removeprefix(b"\xef\xbb\xbf") if isinstance(line, bytes) else line.removeprefix("\ufeff")
    return not line.strip()


def _one(n: int, text: str | bytes, as_of: dt.date, kb: KnowledgeBase, dose_suggestions: bool,
         ipex_plan: PlanChoice, strict: bool) -> BatchResult:
    if n > 1 and (text.startswith(b"\xef\xbb\xbf") if isinstance(text, bytes) else text.startswith("\ufeff")):
        # a byte-order mark may open the file (line 1: the JSON reader skips it), not a line inside it
        return BatchResult(line=n, error=MalformedInputError(InputIssue(
            "$", "one JSON document per line, a byte-order mark only at the start of the file",
            "a UTF-8 byte-order mark at the start of this line (files joined together?)"), "line is not valid JSON"))
    try:
        return BatchResult(line=n, assessment=assess(text, as_of=as_of, kb=kb, dose_suggestions=dose_suggestions,
                                                     ipex_plan=ipex_plan, strict=strict))
    except PatientInputError as exc:
        return BatchResult(line=n, error=exc)


@dataclass(frozen=True)
class BatchLine:
    """One output line of a batch, already serialised (what crosses a process boundary cheaply).

    ``ndjson`` is the line as UTF-8 bytes with its newline: a worker sends bytes, which pickle as a
    copy, and the writer writes them as they are (a 35 kB str would be encoded, decoded and encoded
    again on the way to the file)."""

    line: int
    ndjson: bytes
    counts: dict[str, int] | None  # alert counts by severity; None when the line could not be assessed
    error: str | None = None  # why it could not: the first problem in words (no JSON path), and the summary

    @property
    def json(self) -> str:
        """The output line as text, without its newline."""
        return self.ndjson[:-1].decode("utf-8")


def _line(res: BatchResult, text: str | bytes = b"") -> BatchLine:
    if res.assessment is not None:
        return BatchLine(res.line, res.to_ndjson(), res.assessment.counts())
    assert res.error is not None
    return BatchLine(res.line, res.to_ndjson(), None, error_words(res.error, text))


def error_words(exc: PatientInputError, text: str | bytes = b"") -> str:
    """A batch line's error for a reader: 'field "diagnosis": required but missing (the patient record is not
    valid)', the first problem in words (a Bundle entry named by type and id, read from ``text``); the JSON
    path stays in the NDJSON output."""
    from ..patient.errors import issue_lines

    document = None
    if any(".entry[" in i.path for i in exc.issues[:1]):
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            document = None
    first = issue_lines(exc, document=document, limit=1)[0].removesuffix(".")
    more = len(exc.issues) - 1
    return f"{first} ({exc.summary}" + (f"; {more} more problem{'s' if more > 1 else ''} in the output line"
                                        if more else "") + ")"


def _chunk(job: tuple[list[tuple[int, bytes]], dt.date, bool, PlanChoice, bool]) -> list[BatchLine]:
    items, as_of, dose_suggestions, ipex_plan, strict = job
    kb = get_kb()
    return [_line(_one(n, text, as_of, kb, dose_suggestions, ipex_plan, strict), text) for n, text in items]


def assess_batch_lines(lines: Iterable[str | bytes], *, as_of: dt.date | None = None, workers: int = 1,
                       dose_suggestions: bool = True, ipex_plan: PlanChoice = "auto", strict: bool = False,
                       chunk_size: int = 200) -> Iterator[BatchLine]:
    """Like :func:`assess_batch`, serialised, optionally on ``workers`` processes; input order kept.

    Why processes: the assessment is pure Python, so threads would share one core. Lines are sent in
    chunks, and at most two chunks per worker are in flight, so memory stays bounded whatever the
    size of the file (the input is read as it is consumed). The knowledge base is loaded before the
    workers start, so forked workers share it instead of each reading it again."""
    as_of = as_of or dt.date.today()
    kb = get_kb()
    numbered = ((n, raw if isinstance(raw, bytes) else raw.encode("utf-8")) for n, raw in enumerate(lines, start=1))
    nonblank = ((n, raw) for n, raw in numbered if not _blank(n, raw))
    if workers <= 1:
        for n, raw in nonblank:
            yield _line(_one(n, raw, as_of, kb, dose_suggestions, ipex_plan, strict), raw)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import Future, ProcessPoolExecutor
    from itertools import islice

    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pending: deque[Future[list[BatchLine]]] = deque()
        while True:
            while len(pending) < 2 * workers:
                items = list(islice(nonblank, chunk_size))
                if not items:
                    break
                pending.append(pool.submit(_chunk, (items, as_of, dose_suggestions, ipex_plan, strict)))
            if not pending:
                return
            yield from pending.popleft().result()
