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
from ..patient.errors import PatientInputError
from .engine import assess
from .models import Assessment, PlanChoice


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
        if self.assessment is not None:
            return f'{{"line": {self.line}, "ok": true, "assessment": {self.assessment.model_dump_json()}}}'
        return json.dumps(self.to_dict(), ensure_ascii=False)


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
        if not text.strip():
            continue
        try:
            yield BatchResult(line=n, assessment=assess(text, as_of=as_of, kb=kb,
                                                              dose_suggestions=dose_suggestions, ipex_plan=ipex_plan,
                                                              strict=strict))
        except PatientInputError as exc:
            yield BatchResult(line=n, error=exc)
