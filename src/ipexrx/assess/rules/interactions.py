"""Interactions between current and planned drugs, the way the labels reason about them.

Why: in IPEX the main immunosuppressants (sirolimus, tacrolimus, cyclosporine, everolimus) are
CYP3A4/P-gp substrates with narrow margins, and the anti-infectives, anticonvulsants and
antihypertensives these children get change their levels several-fold or add to their toxicity.
Labels reason in two ways, and so does this rule:

* **by mechanism**: "avoid strong CYP3A4 inhibitors", "monitor kidney function with nephrotoxic
  drugs". The knowledge base groups perpetrators by mechanism (``mechanisms.yaml``, each membership
  cited) and each victim drug carries its own label's instruction per mechanism
  (``Drug.interaction_rules``);
* **by pair**: "voriconazole: reduce tacrolimus to one third", "sirolimus 4 h after cyclosporine".
  A pair record (``interactions/*.yaml``) is the label's specific text and overrides the mechanism
  rule for that pair.

A drug that is in no group the other drug's rules name, and in no pair record with it, raises
nothing (azithromycin with tacrolimus). Each alert shows the label's instruction and, for a dose
fraction, the arithmetic on the recorded dose next to the caveat that optimal dosing in IPEX has not
been established. Alerts name the records they are about (route and dose), because a chart may hold
the same drug twice (a topical and an oral tacrolimus): only systemic records take part, except foods.

Pairs of two calcineurin inhibitors are left to :mod:`.duplication` (one alert, not two).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

from ...knowledge.schema import (
    Citation,
    Instruction,
    Interaction,
    InteractionSeverity,
    Mechanism,
    Statement,
    VictimRule,
)
from ...memo import remembered
from ...patient.normalize import Med
from ...patient.units import fmt_number
from ..context import Ctx, drug_trigger, status_word
from ..models import Alert, Severity

CRITICAL_KINDS = {"contraindicated", "do-not-combine"}
_SEVERITY_ORDER = {InteractionSeverity.CONTRAINDICATED: 0, InteractionSeverity.MAJOR: 1,
                   InteractionSeverity.MODERATE: 2}


def _severity(severity: InteractionSeverity, instructions: list[Instruction]) -> Severity:
    """contraindicated / do-not-combine -> critical; major or a dose/timing/avoid instruction -> warning; else info."""
    kinds = {i.kind for i in instructions}
    if severity is InteractionSeverity.CONTRAINDICATED or kinds & CRITICAL_KINDS:
        return Severity.CRITICAL
    if severity is InteractionSeverity.MAJOR or kinds & {"dose-fraction", "timing", "avoid"}:
        return Severity.WARNING
    return Severity.INFO


def severity_of(inter: Interaction) -> Severity:
    return _severity(inter.severity, list(inter.instructions))


def _fraction_text(f: float) -> str:
    for num, den, word in ((1, 3, "one third"), (1, 2, "one half"), (3, 4, "three quarters"), (1, 4, "one quarter"),
                           (2, 3, "two thirds")):
        if abs(f - num / den) < 0.002:
            return word
    return f"{fmt_number(f * 100)}%"


def instruction_text(ctx: Ctx, ins: Instruction, meds: dict[str, Med], victim: str | None = None) -> str:
    """The label's instruction in words, with the dose arithmetic when a dose is recorded.

    ``victim``: the drug a mechanism rule belongs to (its instructions change that drug when they
    name none).
    """
    base = f"Label instruction: {ins.text.text}"
    applies = ins.applies_to or victim
    if ins.kind == "dose-fraction" and applies and ins.dose_fraction:
        target = meds.get(applies)
        name = ctx.label(applies)
        frac = _fraction_text(ins.dose_fraction)
        if target is not None and target.dose is not None and target.status == "active":
            new = target.dose.value * ins.dose_fraction
            per = f" {target.frequency}" if target.frequency else " per dose"
            base += (f" Arithmetic on the recorded dose: {frac} of {target.dose}{per} is about "
                     f"{fmt_number(new)} {target.dose.unit}{per}; levels, not this figure, decide the dose.")
        else:
            base += f" (No current {name} dose on record to apply {frac} to.)"
    elif ins.kind == "timing" and ins.separation_hours and applies:
        base += f" (Separation: {fmt_number(ins.separation_hours)} h; applies to {ctx.label(applies)}.)"
    return base


@dataclass(frozen=True)
class MechanismMatch:
    """A victim's rule that applies to a perpetrator through one mechanism group."""

    victim: str
    perpetrator: str
    mechanism: Mechanism
    rule: VictimRule
    member_sources: tuple[Statement, ...]


_MATCHES: dict[Any, tuple[object, tuple[MechanismMatch, ...]]] = {}


def mechanism_matches(ctx: Ctx, victim: Med, perpetrator: Med) -> list[MechanismMatch]:
    """The victim's mechanism rules that the perpetrator (in its recorded route) falls under.

    They depend on the two drugs and the perpetrator's route only, so they are found once per knowledge base
    (its index) and kept; the matches are immutable, and their membership statements, being the same objects
    each time, let an alert's sources be looked up once (``Ctx.refs``)."""
    v, p = victim.drug_id, perpetrator.drug_id
    if not v or not p or v == p:
        return []
    return list(remembered(_MATCHES, (id(ctx.index), v, p, perpetrator.route), ctx.index,
                           lambda: tuple(_find_matches(ctx, v, p, perpetrator.route))))


def _find_matches(ctx: Ctx, v: str, p: str, route: str | None) -> list[MechanismMatch]:
    out: list[MechanismMatch] = []
    groups = ctx.index.memberships.get(p, {})
    for rule in ctx.drug(v).interaction_rules:
        hit = groups.get(rule.mechanism)
        if hit is None:
            continue
        mech, member = hit
        if member.routes and route is not None and route not in member.routes:
            continue  # e.g. inhaled tobramycin is not the nephrotoxin the group is about
        membership = Statement(text=f"{ctx.label(p)} is in the group '{mech.name}'.", sources=member.sources)
        out.append(MechanismMatch(v, p, mech, rule, (membership,)))
    return out


def _takes_part(m: Med) -> bool:
    return m.systemic or (m.drug_id is not None and m.drug_id == "grapefruit")


def _words(ctx: Ctx, ma: Med, mb: Med) -> str:
    return " + ".join(f"{ctx.label(m.drug_id or '')} ({_record_words(m)})" for m in (ma, mb))


def _record_words(m: Med) -> str:
    parts = [status_word(m)]
    if m.route:
        parts.append(m.route)
    if m.dose:
        parts.append(m.dose.original)
    return ", ".join(parts)


def _kind_word(sev: Severity, severity: InteractionSeverity) -> str:
    word = {"critical": "contraindicated combination", "warning": "interaction with a label instruction",
            "info": "interaction to monitor"}[sev.value]
    if severity is not InteractionSeverity.CONTRAINDICATED and sev is Severity.CRITICAL:
        word = "combination the label says not to use"
    return word


def pair_alert(ctx: Ctx, inter: Interaction, ma: Med, mb: Med, meds: dict[str, Med]) -> Alert:
    """The alert for a pair record: the label's own text for these two drugs."""
    a, b = ma.drug_id or "", mb.drug_id or ""
    sev = severity_of(inter)
    reasoning = inter.mechanism.text + (f" {inter.effect.text}" if inter.effect else "")
    actions = [instruction_text(ctx, ins, meds) for ins in inter.instructions]
    lead = ("Consider an alternative to one of the two drugs." if sev is Severity.CRITICAL
            else "Consider following the label instruction below and monitoring levels.")
    dose_shown = any(ins.kind == "dose-fraction" for ins in inter.instructions)
    caveat = ctx.dosing_caveat(a if ctx.drug(a).dosing_caveat else b) if dose_shown else None
    return Alert(
        id=f"interaction:{inter.id}", rule="interactions.label_instruction", family="interaction",
        severity=sev, summary=f"{_words(ctx, ma, mb)}: {_kind_word(sev, inter.severity)}",
        reasoning=reasoning, action=" ".join([lead, *actions]),
        triggers=[drug_trigger(ctx, ma), drug_trigger(ctx, mb)],
        sources=ctx.refs(inter.mechanism, inter.effect, *(i.text for i in inter.instructions),
                         ctx.dosing_caveat(b) if dose_shown else None),
        evidence=caveat.text if caveat else None,
    )


def mechanism_alert(ctx: Ctx, matches: list[MechanismMatch], ma: Med, mb: Med, meds: dict[str, Med]) -> Alert:
    """One alert for a pair joined by one or more mechanism rules (most severe sets the level)."""
    worst = min(matches, key=lambda m: _SEVERITY_ORDER[m.rule.severity])
    instructions = [i for m in matches for i in m.rule.instructions]
    sev = min((_severity(m.rule.severity, list(m.rule.instructions)) for m in matches), key=lambda s: s.rank)
    groups = "; ".join(dict.fromkeys(f"{ctx.label(m.perpetrator)}: {m.mechanism.name}" for m in matches))
    reasoning = " ".join(dict.fromkeys(
        f"{ctx.label(m.perpetrator)} is in the group '{m.mechanism.name}'. {m.mechanism.description.text} "
        f"{m.rule.effect.text}" for m in matches))
    seen: set[str] = set()
    actions: list[str] = []
    for m in matches:
        for ins in m.rule.instructions:
            if ins.text.text not in seen:
                seen.add(ins.text.text)
                actions.append(instruction_text(ctx, ins, meds, victim=m.victim))
    lead = ("Consider an alternative to one of the two drugs." if sev is Severity.CRITICAL
            else "Consider following the label instruction below.")
    dose_shown = any(i.kind == "dose-fraction" for i in instructions)
    caveat = ctx.dosing_caveat(worst.victim) if dose_shown else None
    a, b = sorted((ma.drug_id or "", mb.drug_id or ""))
    statements: list[Statement | None] = []
    for m in matches:
        statements += [m.mechanism.description, m.rule.effect, *(i.text for i in m.rule.instructions),
                       *m.member_sources]
    return Alert(
        id=f"interaction:{a}+{b}", rule="interactions.mechanism_rule", family="interaction", severity=sev,
        summary=f"{_words(ctx, ma, mb)}: {_kind_word(sev, worst.rule.severity)} ({groups})",
        reasoning=reasoning, action=" ".join([lead, *actions]),
        triggers=[drug_trigger(ctx, ma), drug_trigger(ctx, mb)],
        sources=ctx.refs(*statements, caveat),
        evidence=caveat.text if caveat else None,
    )


def pair_alerts(ctx: Ctx, ma: Med, mb: Med, meds: dict[str, Med]) -> list[Alert]:
    """Every interaction alert two records raise: pair records if any, else the mechanism rules."""
    a, b = ma.drug_id, mb.drug_id
    if not a or not b or a == b or not (_takes_part(ma) and _takes_part(mb)):
        return []
    if ctx.is_cni(ma) and ctx.is_cni(mb):
        return []  # duplication.two_calcineurin_inhibitors owns this pair
    inters = ctx.index.interactions.get(frozenset((a, b)))
    if inters:
        return [pair_alert(ctx, inter, ma, mb, meds) for inter in inters]
    matches = mechanism_matches(ctx, ma, mb) + mechanism_matches(ctx, mb, ma)
    return [mechanism_alert(ctx, matches, ma, mb, meds)] if matches else []


def _pairs(ctx: Ctx) -> list[tuple[Med, Med]]:
    meds = [m for m in ctx.current_and_planned if m.drug_id and _takes_part(m)]
    return list(combinations(meds, 2))


def _recorded(ctx: Ctx, ma: Med, mb: Med) -> bool:
    """Whether a pair record exists for the two drugs (both identified, so ids are set)."""
    return bool(ctx.index.interactions.get(frozenset((ma.drug_id or "", mb.drug_id or ""))))


def label_instruction(ctx: Ctx) -> list[Alert]:
    """Pair records between two current or planned drugs (not both CNIs)."""
    meds = _by_drug(ctx)
    out: list[Alert] = []
    for ma, mb in _pairs(ctx):
        if _recorded(ctx, ma, mb):
            out += pair_alerts(ctx, ma, mb, meds)
    return out


def mechanism_rule(ctx: Ctx) -> list[Alert]:
    """Victim rules by mechanism group, for pairs that have no pair record."""
    meds = _by_drug(ctx)
    out: list[Alert] = []
    for ma, mb in _pairs(ctx):
        if not _recorded(ctx, ma, mb):
            out += pair_alerts(ctx, ma, mb, meds)
    return out


def _by_drug(ctx: Ctx) -> dict[str, Med]:
    """Drug id -> the record used for dose arithmetic (the systemic one when a drug is listed twice)."""
    out: dict[str, Med] = {}
    for m in ctx.current_and_planned:
        if m.drug_id and (m.drug_id not in out or (m.systemic and not out[m.drug_id].systemic)):
            out[m.drug_id] = m
    return out


def after_stop(ctx: Ctx) -> list[Alert]:
    """An inducer stopped recently beside a current victim: levels climb back as induction fades.

    Why: stopping rifampin or carbamazepine is as dangerous for a child on tacrolimus as starting it,
    only later: over one to two weeks the tacrolimus level rises to where the dose, raised during
    induction, becomes toxic. A stopped record with no end date cannot be placed in that window and
    is said to be so (info), never taken as long past.
    """
    out: list[Alert] = []
    victims = [m for m in ctx.current_and_planned if m.drug_id and m.systemic]
    for stopped in ctx.patient.meds:
        if stopped.status != "stopped" or not stopped.drug_id or not stopped.systemic:
            continue
        groups = ctx.index.memberships.get(stopped.drug_id, {})
        for victim in victims:
            if victim.drug_id == stopped.drug_id:
                continue
            for rule in ctx.drug(victim.drug_id or "").interaction_rules:
                hit = groups.get(rule.mechanism)
                if hit is None or hit[0].offset_days is None:
                    continue
                mech, member = hit
                alert = _after_stop_alert(ctx, victim, stopped, mech, rule, member.sources)
                if alert is not None:
                    out.append(alert)
    return out


def _after_stop_alert(ctx: Ctx, victim: Med, stopped: Med, mech: Mechanism, rule: VictimRule,
                      member_sources: list[Citation]) -> Alert | None:
    assert mech.offset_days is not None and mech.offset is not None
    v, p = ctx.label(victim.drug_id or ""), ctx.label(stopped.drug_id or "")
    if stopped.end is None:
        severity, when = Severity.INFO, "stopped on a date the record does not give"
        lead = (f"Cannot judge whether {p}'s effect is still wearing off: record the stop date. "
                f"If it was stopped within the last {mech.offset_days} days, consider checking {v} levels.")
    else:
        days = (ctx.as_of - stopped.end).days
        if days < 0 or days > mech.offset_days:
            return None
        severity, when = Severity.WARNING, f"stopped {stopped.end.isoformat()} ({days} days ago)"
        lead = f"Consider checking {v} levels over the next {mech.offset_days - days} days."
    membership = Statement(text=f"{p} is in the group '{mech.name}'.", sources=member_sources)
    instructions = " ".join(f"Label instruction: {i.text.text}" for i in rule.instructions)
    return Alert(
        id=f"interaction:after-stop:{stopped.drug_id}+{victim.drug_id}", rule="interactions.after_stop",
        family="interaction", severity=severity,
        summary=f"{p} ({when}) with {v} ({_record_words(victim)}): {v} levels may rise as {p}'s "
                f"effect wears off ({mech.name})",
        reasoning=f"{p} is in the group '{mech.name}'. {rule.effect.text} {mech.offset.text}",
        action=f"{lead} {instructions}",
        triggers=[drug_trigger(ctx, stopped), drug_trigger(ctx, victim)],
        sources=ctx.refs(mech.offset, rule.effect, *(i.text for i in rule.instructions), membership),
    )
