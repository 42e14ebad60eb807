"""Out-of-range results that matter to a current drug.

Why each check exists:

* **trough vs target range** -- CNI and mTOR-inhibitor toxicity tracks blood levels. Ranges come
  only from the KB (``safety.target_ranges``, each with its context and source). A drug with no
  range in the KB gets an info saying the value cannot be judged; we never invent a range.
* **rising creatinine on a calcineurin inhibitor** -- both CNIs are nephrotoxic and their labels
  ask for renal monitoring. ipexrx flags a rise of >= 25% over the baseline (the earliest result
  on or before the drug's start, else the earliest on record); the 25% figure is an ipexrx rule
  parameter (the cyclosporine label's psoriasis/RA sections act on rises of this size), cited
  through the KB's creatinine monitoring statement of the drug.
* **neutropenia under immunosuppression** -- an absolute neutrophil count below 1.5 x 10^9/L
  (ipexrx rule parameter, the usual lower limit of normal in children past infancy) in a patient
  on an immunosuppressive drug raises the infection risk the drug labels warn about.
"""

from __future__ import annotations

from ...knowledge.schema import LabParameter, Statement
from ...patient.labs import kinds_for_parameter, lab_by_id
from ...patient.units import fmt_number
from ..context import Ctx, drug_trigger, lab_trigger
from ..models import Alert, Severity

CREATININE_RISE = 0.25
ANC_LOW = 1.5  # 10^9/L
ANC_SEVERE = 0.5


def trough_out_of_range(ctx: Ctx) -> list[Alert]:
    """Latest trough of each current drug against the KB ranges for that drug."""
    alerts: list[Alert] = []
    for med in ctx.active:
        if med.drug_id is None:
            continue
        kinds = kinds_for_parameter(LabParameter.TROUGH, med.drug_id)
        latest = ctx.latest(kinds) if kinds else None
        if latest is None or latest.value is None:
            continue
        drug = ctx.drug(med.drug_id)
        name = drug.name
        ranges = drug.safety.target_ranges
        v = latest.value
        if not ranges:
            alerts.append(Alert(
                id=f"result:trough:{med.drug_id}:no-range", rule="results.trough_out_of_range", family="result",
                severity=Severity.INFO,
                summary=f"{name} trough {fmt_number(v)} ng/mL: no target range in the knowledge base",
                reasoning="The knowledge base holds no sourced target range for this drug in IPEX, so ipexrx cannot "
                          "call this value high or low.",
                action="Consider interpreting the level against the range your centre uses for this indication.",
                triggers=[drug_trigger(ctx, med), lab_trigger(latest)], sources=[],
            ))
            continue
        above = [r for r in ranges if v > r.high]
        below = [r for r in ranges if v < r.low]
        if not above and not below:
            continue
        ctxs = "; ".join(f"{fmt_number(r.low)}-{fmt_number(r.high)} {r.unit} ({r.context})" for r in ranges)
        statements: list[Statement | None] = [r.statement for r in ranges]
        if len(above) == len(ranges):
            sev, word = Severity.WARNING, "above"
        elif len(below) == len(ranges):
            sev, word = Severity.INFO, "below"
        else:
            sev, word = Severity.INFO, "outside some of the"
        alerts.append(Alert(
            id=f"result:trough:{med.drug_id}:{word.split()[0]}", rule="results.trough_out_of_range", family="result",
            severity=sev, summary=f"{name} trough {fmt_number(v)} ng/mL is {word} target range(s) ({latest.date})",
            reasoning=f"Latest level {latest.show()}. Ranges in the knowledge base: {ctxs}. "
                      "Ranges come from other indications unless stated; none is established for IPEX.",
            action=(f"Consider reviewing the {name} dose and repeating the level; look for interacting drugs."
                    if word == "above" else f"Consider whether the {name} level fits the treatment goal."),
            triggers=[drug_trigger(ctx, med), lab_trigger(latest)], sources=ctx.refs(*statements),
        ))
    return alerts


def creatinine_rise_on_cni(ctx: Ctx) -> list[Alert]:
    """Creatinine >= 25% above baseline while on a systemic calcineurin inhibitor -> warning."""
    cnis = [m for m in ctx.active if ctx.is_cni(m)]
    kind = lab_by_id("creatinine")
    if not cnis or kind is None:
        return []
    results = ctx.results((kind,))
    if len(results) < 2:
        return []
    starts = [m.start for m in cnis if m.start]
    start = min(starts) if starts else None
    before = [r for r in results if start and r.date <= start]
    baseline = before[-1] if before else results[0]
    latest = results[-1]
    if latest is baseline or latest.value is None or baseline.value is None or baseline.value <= 0:
        return []
    rise = latest.value / baseline.value - 1
    if rise < CREATININE_RISE:
        return []
    mons = [mon for m in cnis for mon in ctx.drug(m.drug_id or "").safety.monitoring
            if mon.parameter is LabParameter.CREATININE]
    names = ", ".join(ctx.label(m.drug_id or "") for m in cnis)
    return [Alert(
        id="result:creatinine-rise", rule="results.creatinine_rise_on_cni", family="result", severity=Severity.WARNING,
        summary=f"Creatinine up {rise * 100:.0f}% from baseline on {names}",
        reasoning=f"Baseline {baseline.show()}; latest {latest.show()}. Calcineurin inhibitors are nephrotoxic; "
                  f"ipexrx flags rises of {int(CREATININE_RISE * 100)}% or more. "
                  + " ".join(mon.statement.text for mon in mons[:2]),
        action=f"Consider checking the {names} level and reviewing the dose and other nephrotoxic drugs.",
        triggers=[*(drug_trigger(ctx, m) for m in cnis), lab_trigger(baseline), lab_trigger(latest)],
        sources=ctx.refs(*(mon.statement for mon in mons)),
    )]


def neutropenia_on_immunosuppression(ctx: Ctx) -> list[Alert]:
    """Latest ANC < 1.5 x 10^9/L while on an immunosuppressive drug -> warning."""
    kind = lab_by_id("neutrophils")
    immuno = ctx.immunosuppressive(ctx.active)
    if kind is None or not immuno:
        return []
    latest = ctx.latest((kind,))
    if latest is None or latest.value is None or latest.value >= ANC_LOW:
        return []
    severe = latest.value < ANC_SEVERE
    names = ", ".join(ctx.label(m.drug_id or "") for m in immuno)
    stmts: list[Statement | None] = []
    for m in immuno:
        d = ctx.drug(m.drug_id or "")
        stmts += [mon.statement for mon in d.safety.monitoring
                  if mon.parameter in (LabParameter.NEUTROPHILS, LabParameter.CBC)]
        stmts += [w for w in d.safety.boxed_warnings if "infect" in w.text.lower()][:1]
    return [Alert(
        id="result:neutropenia", rule="results.neutropenia_on_immunosuppression", family="result",
        severity=Severity.WARNING,
        summary=f"{'Severe n' if severe else 'N'}eutropenia: ANC {fmt_number(latest.value)} x10^9/L on {names}",
        reasoning=f"Latest {latest.show()} is below {ANC_LOW} x10^9/L (ipexrx threshold"
                  f"{'; below 0.5 is severe' if severe else ''}). Immunosuppression adds to the infection risk; "
                  "autoimmune neutropenia is also an IPEX manifestation.",
        action="Consider reviewing infection risk and the immunosuppressive drugs; repeat the count.",
        triggers=[*(drug_trigger(ctx, m) for m in immuno), lab_trigger(latest)], sources=ctx.refs(*stmts),
    )]
