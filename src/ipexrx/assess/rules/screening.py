"""Screening the label requires before a drug (hepatitis B serology, latent TB...) and not on record.

Why: rituximab can reactivate hepatitis B fatally and infliximab can reactivate latent TB; their
labels require the tests before the first dose. The knowledge base lists each requirement as a ``Screening``
(parameter + the tests named by the label). For a planned drug a missing test is a warning before
the first dose; for a current drug it is the same gap, reported the same way. A positive result
on record raises the knowledge base's ``action_if_positive``.

Test names are matched to the lab catalogue; when the label's wording names no test we recognise
("test for latent tuberculosis infection"), any result for that parameter counts.
"""

from __future__ import annotations

from ...knowledge.schema import Screening
from ...patient.labs import LabKind, kinds_for_parameter, kinds_for_screening_test
from ...patient.normalize import LabResult, Med
from ..context import Ctx, drug_trigger, lab_trigger, status_word
from ..models import Alert, Severity


def _requirements(s: Screening) -> list[tuple[str, tuple[LabKind, ...]]]:
    """(test wording, lab kinds that satisfy it); one requirement per recognised test."""
    reqs = []
    for test in s.tests:
        kinds = kinds_for_screening_test(test)
        if kinds is None:
            return [(" / ".join(s.tests), kinds_for_parameter(s.parameter))]
        reqs.append((test, kinds))
    return reqs or [(s.parameter.value, kinds_for_parameter(s.parameter))]


def required_screening(ctx: Ctx) -> list[Alert]:
    """Per current/planned drug and screening item: missing tests -> warning; positive -> warning."""
    alerts: list[Alert] = []
    for med in ctx.current_and_planned:
        if med.drug_id is None or not med.systemic:
            continue
        for s in ctx.drug(med.drug_id).safety.screening:
            alerts.extend(_check(ctx, med, s))
    return alerts


def _check(ctx: Ctx, med: Med, s: Screening) -> list[Alert]:
    reqs = [r for r in _requirements(s) if r[1]]
    if not reqs:
        return []  # nothing checkable from lab records (e.g. a clinical examination)
    name = ctx.label(med.drug_id or "")
    missing: list[str] = []
    found: list[LabResult] = []
    for test, kinds in reqs:
        latest = ctx.latest(kinds)
        if latest is None:
            missing.append(test)
        else:
            found.append(latest)
    out: list[Alert] = []
    if missing:
        when = "before the first dose" if med.status == "planned" else "(the drug is already given)"
        out.append(Alert(
            id=f"screening:{s.id}", rule="screening.required_screening", family="screening",
            severity=Severity.WARNING,
            summary=f"{name} ({status_word(med)}): {', '.join(missing)} not on record",
            reasoning=f"{s.statement.text} The record has no result for: {', '.join(missing)}.",
            action=f"Consider obtaining {', '.join(missing)} {when} ({s.when} per the label); "
                   "record the result so the check can clear.",
            triggers=[drug_trigger(ctx, med)], sources=ctx.refs(s.statement),
        ))
    positives = [r for r in found if r.qualitative == "positive"]
    unclear = [r for r in found if r.qualitative == "indeterminate"]
    if positives:
        act = s.action_if_positive.text if s.action_if_positive else s.statement.text
        out.append(Alert(
            id=f"screening:{s.id}:positive", rule="screening.required_screening", family="screening",
            severity=Severity.WARNING,
            summary=f"{name} ({status_word(med)}): positive {', '.join(r.kind.label for r in positives)}",
            reasoning=f"A screening test the label requires for {name} is positive: "
                      + "; ".join(r.show() for r in positives) + ".",
            action=f"Consider specialist advice before/while giving {name}. Knowledge-base guidance: {act}",
            triggers=[drug_trigger(ctx, med), *(lab_trigger(ctx, r) for r in positives)],
            sources=ctx.refs(s.action_if_positive, s.statement),
        ))
    if unclear:
        out.append(Alert(
            id=f"screening:{s.id}:indeterminate", rule="screening.required_screening", family="screening",
            severity=Severity.INFO,
            summary=f"{name}: indeterminate {', '.join(r.kind.label for r in unclear)}",
            reasoning="An indeterminate screening result neither clears nor confirms the risk.",
            action="Consider repeating or completing the screening test.",
            triggers=[drug_trigger(ctx, med), *(lab_trigger(ctx, r) for r in unclear)], sources=ctx.refs(s.statement),
        ))
    return out


def boxed_warnings_before_start(ctx: Ctx) -> list[Alert]:
    """A planned systemic drug whose label carries boxed warnings: name them before it is started.

    Why: a boxed warning is the label's strongest statement (JAK inhibitors: serious infection,
    mortality, malignancy, major cardiac events, thrombosis); at the moment of ordering, the
    prescriber should see it in full, cited, without opening the monograph. Info, not an alarm: the
    warnings describe risks to weigh, not a contraindication. Current drugs are not repeated.
    """
    out: list[Alert] = []
    seen: set[str] = set()
    for m in ctx.planned:
        if not m.drug_id or not m.systemic or m.drug_id in seen:
            continue
        boxed = ctx.drug(m.drug_id).safety.boxed_warnings
        if not boxed:
            continue
        seen.add(m.drug_id)
        name = ctx.label(m.drug_id)
        out.append(Alert(
            id=f"screening:boxed:{m.drug_id}", rule="screening.boxed_warnings_before_start", family="screening",
            severity=Severity.INFO,
            summary=f"{name} (planned): the label carries {len(boxed)} boxed warning(s) to weigh before starting",
            reasoning=" ".join(f"Boxed warning: {s.text}" for s in boxed),
            action=f"Consider the boxed warnings above when deciding to start {name}, and discussing them with "
                   "the family.",
            triggers=[drug_trigger(ctx, m)], sources=ctx.refs(*boxed),
        ))
    return out
