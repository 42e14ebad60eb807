"""Interactions between current and planned drugs, with the label's concrete instruction.

Why: in IPEX the main immunosuppressants (sirolimus, tacrolimus, cyclosporine) are CYP3A4/P-gp
substrates with narrow margins, and the anti-infectives these children need (azoles, macrolides,
rifampin) change their levels several-fold. The knowledge base encodes each label pair as an
``Interaction`` with machine-readable ``Instruction`` s (contraindicated / avoid / dose-fraction /
timing / monitor / increase-dose); this rule shows the instruction that applies and, for a dose
fraction, the arithmetic on the recorded dose -- next to the caveat that optimal dosing in IPEX
has not been established.

Pairs of two calcineurin inhibitors are left to :mod:`.duplication` (one alert, not two).
"""

from __future__ import annotations

from itertools import combinations

from ...knowledge.schema import Instruction, Interaction, InteractionSeverity
from ...patient.normalize import Med
from ...patient.units import fmt_number
from ..context import Ctx, drug_trigger, status_word
from ..models import Alert, Severity

CRITICAL_KINDS = {"contraindicated", "do-not-combine"}


def severity_of(inter: Interaction) -> Severity:
    """contraindicated / do-not-combine -> critical; major or a dose/timing instruction -> warning; else info."""
    kinds = {i.kind for i in inter.instructions}
    if inter.severity is InteractionSeverity.CONTRAINDICATED or kinds & CRITICAL_KINDS:
        return Severity.CRITICAL
    if inter.severity is InteractionSeverity.MAJOR or kinds & {"dose-fraction", "timing", "avoid"}:
        return Severity.WARNING
    return Severity.INFO


def _fraction_text(f: float) -> str:
    for num, den, word in ((1, 3, "one third"), (1, 2, "one half"), (3, 4, "three quarters"), (1, 4, "one quarter"),
                           (2, 3, "two thirds")):
        if abs(f - num / den) < 0.002:
            return word
    return f"{fmt_number(f * 100)}%"


def instruction_text(ctx: Ctx, ins: Instruction, meds: dict[str, Med]) -> str:
    """The label's instruction in words, with the dose arithmetic when a dose is recorded."""
    base = f"Label instruction: {ins.text.text}"
    if ins.kind == "dose-fraction" and ins.applies_to and ins.dose_fraction:
        target = meds.get(ins.applies_to)
        name = ctx.label(ins.applies_to)
        frac = _fraction_text(ins.dose_fraction)
        if target is not None and target.dose is not None and target.status == "active":
            new = target.dose.value * ins.dose_fraction
            per = f" {target.frequency}" if target.frequency else " per dose"
            base += (f" Arithmetic on the recorded dose: {frac} of {target.dose}{per} is about "
                     f"{fmt_number(new)} {target.dose.unit}{per}; levels, not this figure, decide the dose.")
        else:
            base += f" (No current {name} dose on record to apply {frac} to.)"
    elif ins.kind == "timing" and ins.separation_hours and ins.applies_to:
        base += f" (Separation: {fmt_number(ins.separation_hours)} h; applies to {ctx.label(ins.applies_to)}.)"
    return base


def label_instruction(ctx: Ctx) -> list[Alert]:
    """Every KB interaction between two drugs that are current or planned (not both CNIs)."""
    meds = {m.drug_id: m for m in ctx.current_and_planned if m.drug_id}
    alerts: list[Alert] = []
    for a, b in combinations(sorted(meds), 2):
        inters = ctx.index.interactions.get(frozenset((a, b)))
        if not inters:
            continue
        ma, mb = meds[a], meds[b]
        if ctx.is_cni(ma) and ctx.is_cni(mb):
            continue  # duplication.two_calcineurin_inhibitors owns this pair
        if not (ma.systemic and mb.systemic) and "grapefruit" not in (a, b):
            continue  # a topical form does not reach the blood levels the label pair is about
        for inter in inters:
            sev = severity_of(inter)
            words = " + ".join(f"{ctx.label(m.drug_id)} ({status_word(m)})" for m in (ma, mb) if m.drug_id)
            kind_word = {"critical": "contraindicated combination", "warning": "interaction with a label instruction",
                         "info": "interaction to monitor"}[sev.value]
            if inter.severity is not InteractionSeverity.CONTRAINDICATED and sev is Severity.CRITICAL:
                kind_word = "combination the label says not to use"
            reasoning = inter.mechanism.text + (f" {inter.effect.text}" if inter.effect else "")
            actions = [instruction_text(ctx, ins, meds) for ins in inter.instructions]
            lead = ("Consider an alternative to one of the two drugs." if sev is Severity.CRITICAL
                    else "Consider following the label instruction below and monitoring levels.")
            dose_shown = any(ins.kind == "dose-fraction" for ins in inter.instructions)
            evidence = None
            if dose_shown:
                cav = ctx.dosing_caveat(a if ctx.drug(a).dosing_caveat else b)
                if cav is not None:
                    evidence = cav.text
            alerts.append(Alert(
                id=f"interaction:{inter.id}", rule="interactions.label_instruction", family="interaction",
                severity=sev, summary=f"{words}: {kind_word}",
                reasoning=reasoning, action=" ".join([lead, *actions]),
                triggers=[drug_trigger(ctx, ma), drug_trigger(ctx, mb)],
                sources=ctx.refs(inter.mechanism, inter.effect, *(i.text for i in inter.instructions),
                                 ctx.dosing_caveat(b) if dose_shown else None),
                evidence=evidence,
            ))
    return alerts
