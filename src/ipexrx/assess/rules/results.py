"""Out-of-range results that matter to a current drug.

Why each check exists:

* **trough vs target range** -- CNI and mTOR-inhibitor toxicity tracks blood levels. Ranges come
  only from the KB (``safety.target_ranges``, each with its context and source). A drug with no
  range in the KB gets an info saying the value cannot be judged; we never invent a range.
* **rising creatinine on a calcineurin inhibitor** -- both CNIs are nephrotoxic and their labels
  ask for renal monitoring. The threshold is KB data (``safety.result_thresholds`` of the drug,
  relative to baseline): the cyclosporine label's psoriasis dosing section acts on a rise of 25% or
  more over the pre-treatment value. The baseline is the last result on or before the drug's start,
  else the earliest on record. A CNI whose label gives no figure (tacrolimus) borrows the figure of
  another KB calcineurin inhibitor, and the alert says that this extension is an ipexrx convention.
* **neutropenia under immunosuppression** -- an absolute neutrophil count below the KB definition of
  neutropenia (``thresholds.yaml``: below 1.5 x 10^9/L, severe below 0.5, each sourced) in a patient
  on an immunosuppressive drug raises the infection risk the drug labels warn about.
"""

from __future__ import annotations

from ...knowledge.schema import Drug, LabParameter, ResultThreshold, Statement
from ...patient.errors import UnitError
from ...patient.labs import kinds_for_parameter, lab_by_id
from ...patient.normalize import Med
from ...patient.units import convert, fmt_number
from ..context import Ctx, drug_trigger, lab_trigger
from ..dose_link import suggest_dose, suggestion_statements
from ..models import Alert, DoseSuggestion, Severity


def trough_out_of_range(ctx: Ctx) -> list[Alert]:
    """Latest trough of each current drug against the KB ranges for that drug."""
    alerts: list[Alert] = []
    for med in ctx.active:
        if med.drug_id is None or not med.systemic:
            continue  # ranges and dosing models are for systemic use, never for an ointment
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
        action = (f"Consider reviewing the {name} dose and repeating the level; look for interacting drugs."
                  if word == "above" else f"Consider whether the {name} level fits the treatment goal.")
        suggestion = suggest_dose(ctx, med, latest, list(ranges)) if ctx.dose_suggestions else None
        if suggestion is not None:
            action += " " + describe_suggestion(suggestion)
            statements += suggestion_statements(ctx, suggestion)
        alerts.append(Alert(
            id=f"result:trough:{med.drug_id}:{word.split()[0]}", rule="results.trough_out_of_range", family="result",
            severity=sev, summary=f"{name} trough {fmt_number(v)} ng/mL is {word} target range(s) ({latest.date})",
            reasoning=f"Latest level {latest.show()}. Ranges in the knowledge base: {ctxs}. "
                      "Ranges come from other indications unless stated; none is established for IPEX.",
            action=action, triggers=[drug_trigger(ctx, med), lab_trigger(latest)], sources=ctx.refs(*statements),
            dose_suggestion=suggestion,
        ))
    return alerts


def describe_suggestion(s: DoseSuggestion) -> str:
    """One readable sentence for the alert's action; the structured numbers stay on ``dose_suggestion``."""
    if s.not_computed or s.dose_mg is None or s.interval_h is None:
        return f"No model-based dose suggestion: {s.not_computed or 'not computed'}."
    pred = (f"predicted steady-state trough {fmt_number(s.predicted_trough or 0)} {s.target_unit} "
            f"(5th-95th percentile {fmt_number(s.predicted_low or 0)}-{fmt_number(s.predicted_high or 0)})")
    target = (f" for the range {fmt_number(s.target_low or 0)}-{fmt_number(s.target_high or 0)} {s.target_unit}"
              f" ({s.target_context})" if s.target_low is not None else "")
    how = f"{s.administration}{f' ({s.form})' if s.form else ''} " if s.administration else ""
    return (f"Model-based suggestion to check, not an order: {how}every {fmt_number(s.interval_h)} h "
            f"({fmt_number(s.dose_mg)} mg per dose), {pred}{target}; model: {s.model_citation} "
            + " ".join(s.caveats[:1]))


def _relative_thresholds(drug: Drug, parameter: LabParameter) -> list[ResultThreshold]:
    return [t for t in drug.safety.result_thresholds if t.parameter is parameter and t.relative_to_baseline]


def cni_creatinine_thresholds(ctx: Ctx, cnis: list[Med]) -> list[tuple[Med, ResultThreshold, Drug | None]]:
    """(CNI, threshold, lender) per patient CNI: its own KB thresholds, else those of another KB CNI.

    ``lender`` is the drug the threshold was borrowed from (None when it is the drug's own), so the
    alert can say that applying one label's figure to another drug is an ipexrx convention.
    """
    lenders = [d for d in ctx.kb.drugs.values()
               if d.calcineurin_inhibitor and _relative_thresholds(d, LabParameter.CREATININE)]
    out: list[tuple[Med, ResultThreshold, Drug | None]] = []
    for m in cnis:
        drug = ctx.drug(m.drug_id or "")
        own = _relative_thresholds(drug, LabParameter.CREATININE)
        if own:
            out += [(m, t, None) for t in own]
        elif lenders:
            out += [(m, t, lenders[0]) for t in _relative_thresholds(lenders[0], LabParameter.CREATININE)]
    return out


def _severity(t: ResultThreshold) -> Severity:
    return Severity(t.severity)


def creatinine_rise_on_cni(ctx: Ctx) -> list[Alert]:
    """Creatinine at or above the KB rise threshold (vs baseline) on a systemic calcineurin inhibitor -> alert."""
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
    crossed = [x for x in cni_creatinine_thresholds(ctx, cnis) if x[1].crossed(rise * 100)]
    if not crossed:
        return []
    sev = min((_severity(t) for _, t, _ in crossed), key=lambda x: x.rank)
    mons = [mon for m in cnis for mon in ctx.drug(m.drug_id or "").safety.monitoring
            if mon.parameter is LabParameter.CREATININE]
    names = ", ".join(ctx.label(m.drug_id or "") for m in cnis)
    seen: set[str] = set()
    why: list[str] = []
    statements: list[Statement | None] = []
    for m, t, lender in crossed:
        if t.id not in seen:
            seen.add(t.id)
            why.append(t.statement.text)
            if t.action is not None:
                why.append(t.action.text)
            statements += [t.statement, t.action]
        if lender is not None:
            why.append(f"The {ctx.label(m.drug_id or '')} label in the knowledge base gives no such figure; applying "
                       f"the {lender.name} label's {fmt_number(t.value)}% to it is an ipexrx convention.")
    return [Alert(
        id="result:creatinine-rise", rule="results.creatinine_rise_on_cni", family="result", severity=sev,
        summary=f"Creatinine up {rise * 100:.0f}% from baseline on {names}",
        reasoning=f"Baseline {baseline.show()}; latest {latest.show()}. Calcineurin inhibitors are nephrotoxic. "
                  + " ".join(why) + " " + " ".join(mon.statement.text for mon in mons[:2]),
        action=f"Consider checking the {names} level and reviewing the dose and other nephrotoxic drugs.",
        triggers=[*(drug_trigger(ctx, m) for m in cnis), lab_trigger(baseline), lab_trigger(latest)],
        sources=ctx.refs(*statements, *(mon.statement for mon in mons)),
    )]


def _absolute_thresholds(ctx: Ctx, parameter: LabParameter) -> list[tuple[ResultThreshold, Statement | None]]:
    return [(t, rec.context) for rec in ctx.kb.thresholds.values() if rec.parameter is parameter
            for t in rec.thresholds if not t.relative_to_baseline]


def neutropenia_on_immunosuppression(ctx: Ctx) -> list[Alert]:
    """Latest ANC below the KB neutropenia threshold while on an immunosuppressive drug -> alert."""
    kind = lab_by_id("neutrophils")
    immuno = ctx.immunosuppressive(ctx.active)
    if kind is None or not immuno:
        return []
    latest = ctx.latest((kind,))
    if latest is None or latest.value is None:
        return []
    crossed: list[tuple[ResultThreshold, Statement | None, float]] = []
    for t, context in _absolute_thresholds(ctx, LabParameter.NEUTROPHILS):
        try:
            limit = convert(kind.quantity, t.value, t.unit, f"threshold {t.id}")
        except UnitError:
            continue  # a KB unit the lab quantity does not know: validate.py keeps this from happening
        if t.crossed(latest.value, limit):
            crossed.append((t, context, limit))
    if not crossed:
        return []
    base = [c for c in crossed if c[0].grade is None] or crossed
    graded = [c for c in crossed if c[0].grade is not None]
    worst = min(graded, key=lambda c: c[2]) if graded else None
    sev = min((_severity(c[0]) for c in crossed), key=lambda x: x.rank)
    names = ", ".join(ctx.label(m.drug_id or "") for m in immuno)
    stmts: list[Statement | None] = [c[0].statement for c in crossed]
    stmts += [c[1] for c in crossed]
    for m in immuno:
        d = ctx.drug(m.drug_id or "")
        stmts += [mon.statement for mon in d.safety.monitoring
                  if mon.parameter in (LabParameter.NEUTROPHILS, LabParameter.CBC)]
        stmts += [w for w in d.safety.boxed_warnings if "infect" in w.text.lower()][:1]
    unit = f"x{latest.unit}" if latest.unit.startswith("10^") else latest.unit
    main = max(base, key=lambda c: c[2])
    grade_txt = f"; below {fmt_number(worst[2])} {unit} is {worst[0].grade}" if worst else ""
    label = f"{worst[0].grade.capitalize()} n" if worst and worst[0].grade else "N"
    return [Alert(
        id="result:neutropenia", rule="results.neutropenia_on_immunosuppression", family="result",
        severity=sev,
        summary=f"{label}eutropenia: ANC {fmt_number(latest.value)} {unit} on {names}",
        reasoning=f"Latest {latest.show()} is below {fmt_number(main[2])} {unit}{grade_txt}. "
                  + " ".join(dict.fromkeys(c[0].statement.text for c in crossed))
                  + (f" {main[1].text}" if main[1] else "")
                  + " Immunosuppression adds to the infection risk; autoimmune neutropenia is also an IPEX "
                    "manifestation.",
        action="Consider reviewing infection risk and the immunosuppressive drugs; repeat the count.",
        triggers=[*(drug_trigger(ctx, m) for m in immuno), lab_trigger(latest)], sources=ctx.refs(*stmts),
    )]
