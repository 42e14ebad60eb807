"""Therapeutic duplication: two calcineurin inhibitors, and a CNI switch without the interval.

Why: cyclosporine and tacrolimus act on the same target and add their kidney toxicity; the
tacrolimus label says not to give them together and to wait after the last cyclosporine dose
before the first tacrolimus dose (the knowledge base encodes this as a ``do-not-combine`` and a ``timing``
instruction with ``separation_hours``). Drugs count as calcineurin inhibitors by the knowledge base flag
``calcineurin_inhibitor`` and only in systemic use (topical tacrolimus does not).

A *switch* is one CNI with an ``end_date`` and another starting on or after it; anything else with
two CNIs not stopped is a combination.

Beyond CNIs, two systemic drugs of the same class among :data:`SAME_CLASS` (two corticosteroids, two
azoles...) get an info alert: often intended (steroid pulses on maintenance, a switch), sometimes
an error of reconciliation, and the pharmacist should see it.
"""

from __future__ import annotations

from itertools import combinations

from ...knowledge.schema import Instruction, Interaction, Statement
from ...patient.normalize import Med
from ...patient.units import fmt_number
from ..context import Ctx, drug_trigger, status_word
from ..models import Alert, Severity

SAME_CLASS = ("systemic-corticosteroids", "azole-antifungals", "mtor-inhibitors", "anti-cd20-antibodies",
              "anti-tnf-agents", "jak-inhibitors", "il6-receptor-antagonists", "antithyroid-agents")


def _pair_interactions(ctx: Ctx, a: str, b: str) -> list[Interaction]:
    return ctx.index.interactions.get(frozenset((a, b)), [])


def _timing(inters: list[Interaction]) -> Instruction | None:
    for inter in inters:
        for ins in inter.instructions:
            if ins.kind == "timing" and ins.separation_hours:
                return ins
    return None


def _class_statements(ctx: Ctx) -> list[Statement]:
    cls = ctx.kb.classes.get("calcineurin-inhibitors")
    return list(cls.summary) if cls else []


def _is_switch(first: Med, second: Med) -> bool:
    return first.end is not None and second.start is not None and second.start >= first.end


def two_calcineurin_inhibitors(ctx: Ctx) -> list[Alert]:
    """Two systemic CNIs current/planned together (not a dated switch) -> critical."""
    cnis = [m for m in ctx.current_and_planned if ctx.is_cni(m)]
    alerts: list[Alert] = []
    for x, y in combinations(cnis, 2):
        if _is_switch(x, y) or _is_switch(y, x):
            continue
        a, b = sorted((x.drug_id or "", y.drug_id or ""))
        inters = _pair_interactions(ctx, a, b)
        statements: list[Statement | None] = [i.text for inter in inters for i in inter.instructions]
        statements += [inter.mechanism for inter in inters]
        if not inters:
            statements += _class_statements(ctx)
        label_lines = [f"Label instruction: {i.text.text}" for inter in inters for i in inter.instructions
                       if i.kind in ("do-not-combine", "contraindicated", "timing")]
        timing = _timing(inters)
        switch = (f" If this is meant as a switch, record the stop date of the first drug; the label's interval "
                  f"is at least {fmt_number(timing.separation_hours)} h." if timing and timing.separation_hours else "")
        alerts.append(Alert(
            id=f"duplication:cni:{a}+{b}", rule="duplication.two_calcineurin_inhibitors", family="duplication",
            severity=Severity.CRITICAL,
            summary=f"Two calcineurin inhibitors: {ctx.label(x.drug_id or '')} ({status_word(x)}) and "
                    f"{ctx.label(y.drug_id or '')} ({status_word(y)})",
            reasoning="Both drugs inhibit calcineurin; together they duplicate the effect and add nephrotoxicity. "
                      + " ".join(inter.mechanism.text for inter in inters),
            action=" ".join(["Consider using one calcineurin inhibitor only." + switch, *label_lines]),
            triggers=[drug_trigger(ctx, x), drug_trigger(ctx, y)],
            sources=ctx.refs(*statements),
        ))
    return alerts


def cni_switch_interval(ctx: Ctx) -> list[Alert]:
    """A dated switch between CNIs whose gap is shorter than the label's interval -> warning."""
    meds = [m for m in ctx.patient.meds if m.drug_id and ctx.is_cni(m)]
    alerts: list[Alert] = []
    for first in meds:
        for second in meds:
            if first.drug_id == second.drug_id:
                continue
            undated = first.status == "stopped" and first.end is None and second.status in ("active", "planned")
            if not undated and not _is_switch(first, second):
                continue
            inters = _pair_interactions(ctx, first.drug_id or "", second.drug_id or "")
            timing = _timing(inters)
            if timing is None or timing.separation_hours is None:
                continue
            if undated:
                alerts.append(_undated_switch(ctx, first, second, timing))
                continue
            assert first.end is not None and second.start is not None
            gap_days = (second.start - first.end).days
            need_days = timing.separation_hours / 24
            # Dates carry no time of day: a gap of N calendar days guarantees at least (N-1)*24 h.
            if (gap_days - 1) * 24 >= timing.separation_hours and gap_days >= need_days:
                continue
            certain = gap_days * 24 < timing.separation_hours
            a, b = ctx.label(first.drug_id or ""), ctx.label(second.drug_id or "")
            alerts.append(Alert(
                id=f"duplication:cni-switch:{first.drug_id}->{second.drug_id}", rule="duplication.cni_switch_interval",
                family="duplication", severity=Severity.WARNING if certain else Severity.INFO,
                summary=f"Switch {a} -> {b}: {gap_days} day(s) between last {a} ({first.end}) and first {b} "
                        f"({second.start}); the label asks for at least {fmt_number(timing.separation_hours)} h",
                reasoning=("The gap between the recorded dates is shorter than the label's interval." if certain else
                           "With dates only (no times), the gap may be shorter than the label's interval."),
                action=f"Consider confirming the time of the last {a} dose and timing the first {b} dose at least "
                       f"{fmt_number(timing.separation_hours)} h later (longer if {a} levels are high). "
                       f"Label instruction: {timing.text.text}",
                triggers=[drug_trigger(ctx, first), drug_trigger(ctx, second)],
                sources=ctx.refs(timing.text),
            ))
    return alerts


def _undated_switch(ctx: Ctx, first: Med, second: Med, timing: Instruction) -> Alert:
    """A stopped CNI with no stop date beside another CNI: the label's interval cannot be checked."""
    a, b = ctx.label(first.drug_id or ""), ctx.label(second.drug_id or "")
    hours = fmt_number(timing.separation_hours or 0)
    return Alert(
        id=f"duplication:cni-switch:{first.drug_id}->{second.drug_id}", rule="duplication.cni_switch_interval",
        family="duplication", severity=Severity.INFO,
        summary=f"Switch {a} -> {b}: {a} is recorded as stopped without a stop date; the {hours} h interval the "
                "label asks for cannot be checked",
        reasoning="Without the date of the last dose the gap before the other calcineurin inhibitor is unknown; "
                  "this is not a finding that the interval was kept.",
        action=f"Consider recording when the last {a} dose was given and timing the first {b} dose at least "
               f"{hours} h later. Label instruction: {timing.text.text}",
        triggers=[drug_trigger(ctx, first), drug_trigger(ctx, second)],
        sources=ctx.refs(timing.text),
    )


def same_class(ctx: Ctx) -> list[Alert]:
    """Two systemic drugs of one class in SAME_CLASS, current/planned together (not a dated switch) -> info."""
    meds = [m for m in ctx.current_and_planned if m.drug_id and m.systemic and not ctx.is_cni(m)]
    alerts: list[Alert] = []
    for cls_id in SAME_CLASS:
        cls = ctx.kb.classes.get(cls_id)
        members = [m for m in meds if cls_id in ctx.drug(m.drug_id or "").classes]
        for x, y in combinations(members, 2):
            if _is_switch(x, y) or _is_switch(y, x):
                continue
            name = cls.name if cls else cls_id
            alerts.append(Alert(
                id=f"duplication:class:{cls_id}:{x.drug_id}+{y.drug_id}", rule="duplication.same_class",
                family="duplication", severity=Severity.INFO,
                summary=f"Two {name}: {ctx.label(x.drug_id or '')} ({status_word(x)}) and "
                        f"{ctx.label(y.drug_id or '')} ({status_word(y)})",
                reasoning=f"Both drugs belong to the class '{name}' in the knowledge base; together they may "
                          "duplicate an effect.",
                action="Consider checking that both are intended (for example pulses on top of maintenance, or a "
                       "switch: record the stop date of the first).",
                triggers=[drug_trigger(ctx, x), drug_trigger(ctx, y)],
                sources=ctx.refs(*(cls.summary if cls else [])),
            ))
    return alerts


def formulation_switch(ctx: Ctx) -> list[Alert]:
    """Two records of one drug in formulations the label says are not interchangeable mg for mg.

    Why: Sandimmune and Neoral/Gengraf are not bioequivalent; Prograf, Envarsus XR and Astagraf XL
    differ in exposure per mg. A stopped record in one formulation and a current or planned one in
    another is a switch (warning: the label's monitoring instruction); two current ones is a
    probable reconciliation error (warning too). A record whose formulation is not stated is not
    compared (no guess); when it sits beside a stopped record whose formulation is known, an info
    alert says the switch cannot be judged.
    """
    alerts: list[Alert] = []
    by_drug: dict[str, list[Med]] = {}
    for m in ctx.patient.meds:
        if m.drug_id and m.formulation and m.systemic:
            by_drug.setdefault(m.drug_id, []).append(m)
    for did, known in by_drug.items():
        forms = {f.id: f for f in ctx.drug(did).formulations}
        unstated = [m for m in ctx.patient.meds if m.drug_id == did and m.systemic and not m.formulation
                    and m.status in ("active", "planned")]
        old = next((m for m in known if m.status == "stopped" and m.formulation in forms), None)
        if old is None or not unstated:
            continue
        f = forms[old.formulation or ""]
        alerts.append(Alert(
            id=f"duplication:formulation-unknown:{did}", rule="duplication.formulation_switch", family="duplication",
            severity=Severity.INFO,
            summary=f"{ctx.drug(did).name}: {old.brand or f.name} was stopped and the current record does not say "
                    "which formulation it is; whether this is a switch cannot be judged",
            reasoning=f"{ctx.drug(did).name} comes in formulations that are not interchangeable mg for mg; the current "
                      "record names no brand or product, so a switch cannot be recognised.",
            action="Consider recording the brand or product of the current prescription. " + f"Label: {f.switch.text}",
            triggers=[drug_trigger(ctx, old), *(drug_trigger(ctx, m) for m in unstated)],
            sources=ctx.refs(f.switch),
        ))
    for did, meds in by_drug.items():
        drug = ctx.drug(did)
        forms = {f.id: f for f in drug.formulations}
        current = [m for m in meds if m.status in ("active", "planned")]
        stopped = [m for m in meds if m.status == "stopped"]
        pairs = [(old, new, "switch") for old in stopped for new in current if old.formulation != new.formulation]
        pairs += [(x, y, "both") for x, y in combinations(current, 2) if x.formulation != y.formulation]
        seen: set[tuple[str, str]] = set()
        for old, new, kind in pairs:
            key = (old.formulation or "", new.formulation or "")
            if key in seen:
                continue
            seen.add(key)
            fa, fb = forms.get(old.formulation or ""), forms.get(new.formulation or "")
            if fa is None or fb is None:
                continue
            a_name, b_name = old.brand or fa.name, new.brand or fb.name
            summary = (f"{drug.name}: switch from {a_name} to {b_name}, formulations that are not interchangeable "
                       "mg for mg" if kind == "switch" else
                       f"{drug.name}: {a_name} and {b_name} both current, formulations that are not interchangeable "
                       "mg for mg")
            alerts.append(Alert(
                id=f"duplication:formulation:{did}:{fa.id}->{fb.id}", rule="duplication.formulation_switch",
                family="duplication", severity=Severity.WARNING, summary=summary,
                reasoning=f"{fa.name} and {fb.name} are different formulations of {drug.name}; the same mg dose does "
                          "not give the same blood levels.",
                action=" ".join(["Consider converting the dose as the label describes and checking levels after the "
                                 "change.", *dict.fromkeys(f"Label: {s.text}" for s in (fa.switch, fb.switch))]),
                triggers=[drug_trigger(ctx, old), drug_trigger(ctx, new)],
                sources=ctx.refs(fa.switch, fb.switch),
            ))
    return alerts
