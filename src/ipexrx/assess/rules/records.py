"""Medication records the assessment could not check, said out loud.

Why: a medication that is not identified takes part in no rule, so its interactions, dose and
monitoring simply vanish from the result -- and silence reads as "nothing wrong". Two rules keep
that visible in every face (report, JSON, CDS cards):

* ``unrecognised_medication``: a current or planned record whose name was not recognised or names
  several drugs. The closest knowledge-base names are offered as a *question*, and for each of
  them the checks are run as if the record meant that drug, so the unsafe combination the guess
  would imply is named too ("if 'Sirolimis' is sirolimus: sirolimus + voriconazole is
  contraindicated"). The alert is as severe as the worst implied finding (info when none).
* ``medications_not_checked``: the known drugs without IPEX content (amlodipine) and names that
  match nothing, listed in one info alert with the checks that did not run for them.
"""

from __future__ import annotations

import dataclasses

from ...knowledge.schema import Citation
from ...patient.normalize import MED_CHECKS, Med
from ..context import Ctx, status_word
from ..models import Alert, Severity, Trigger
from .interactions import _by_drug, pair_alerts

DICTIONARY = Citation(source="drug-name-dictionary")


def _record_trigger(m: Med) -> Trigger:
    return Trigger(kind="record", ref=m.text, path=m.path, detail=f"{status_word(m)}: {m.describe()}")


def _unchecked(ctx: Ctx) -> list[Med]:
    return [m for m in ctx.patient.meds if m.drug_id is None and m.status in ("active", "planned")]


def unrecognised_medication(ctx: Ctx) -> list[Alert]:
    """A record not identified but close to knowledge-base names: ask, and name what each guess implies."""
    alerts: list[Alert] = []
    others = [m for m in ctx.current_and_planned if m.drug_id]
    meds = _by_drug(ctx)
    for m in _unchecked(ctx):
        if not m.suggestions:
            continue
        names = [ctx.label(s) for s in m.suggestions]
        ambiguous = any(w.path == f"{m.path}.drug" and w.code == "ambiguous-drug" for w in ctx.patient.warnings)
        question = (f"it does not name one drug: {' or '.join(names)}?" if ambiguous
                    else f"did you mean {' or '.join(names)}?")
        implied: list[tuple[str, Alert]] = []
        for sid in m.suggestions:
            guess = dataclasses.replace(m, drug_id=sid)
            for other in others:
                if other.drug_id == sid:
                    continue
                implied += [(sid, a) for a in pair_alerts(ctx, guess, other, {**meds, sid: guess})]
        severity = min((a.severity for _, a in implied), key=lambda s: s.rank, default=Severity.INFO)
        if implied:
            worst = [(sid, a) for sid, a in implied if a.severity is severity]
            findings = "; ".join(f"if it is {ctx.label(sid)}: {a.summary}" for sid, a in worst)
            summary = f"'{m.text}' was not recognised ({question}) - {findings}"
        else:
            summary = f"'{m.text}' was not recognised ({question})"
        reasoning = (f"The record's drug name matches no drug in the knowledge base exactly, so {MED_CHECKS} did not "
                     "run for it. The names offered are spelling matches, not an identification.")
        if implied:
            reasoning += " Read as each suggested drug, the record would raise: " + " ".join(
                f"[{ctx.label(sid)}] {a.summary}. {a.action}" for sid, a in implied)
        sources = [ctx.index.ref(DICTIONARY)]
        seen: set[str] = {sources[0].citation}
        for _, a in implied:
            for r in a.sources:
                if r.citation not in seen:
                    seen.add(r.citation)
                    sources.append(r)
        alerts.append(Alert(
            id=f"record:unrecognised:{m.path}", rule="records.unrecognised_medication", family="record",
            severity=severity, summary=summary, reasoning=reasoning,
            action="Consider correcting the drug name in the record (or confirming which drug is meant) so that every "
                   "check can run.",
            triggers=[_record_trigger(m), *(t for _, a in implied for t in a.triggers if t.path != m.path)],
            sources=sources,
        ))
    return alerts


def medications_not_checked(ctx: Ctx) -> list[Alert]:
    """One info alert naming every current/planned record no rule could check (no question to ask)."""
    rest = [m for m in _unchecked(ctx) if not m.suggestions]
    if not rest:
        return []
    parts = []
    for m in rest:
        if m.outside_name:
            parts.append(f"'{m.text}' ({m.outside_name}: a known drug without IPEX content)")
        else:
            parts.append(f"'{m.text}' (not recognised as a drug)")
    return [Alert(
        id="record:not-checked", rule="records.medications_not_checked", family="record", severity=Severity.INFO,
        summary=f"{len(rest)} medication record(s) not checked: " + ", ".join(parts),
        reasoning=f"These records are not drugs of the knowledge base, so {MED_CHECKS} did not run for them; "
                  "their absence from the alerts says nothing about their safety.",
        action="Consider checking these medications with a general interaction reference.",
        triggers=[_record_trigger(m) for m in rest], sources=[ctx.index.ref(DICTIONARY)],
    )]
