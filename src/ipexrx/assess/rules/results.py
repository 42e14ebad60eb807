"""Out-of-range results that matter to a current drug.

Why each check exists:

* **trough vs target range** -- CNI and mTOR-inhibitor toxicity tracks blood levels. Ranges come
  only from the knowledge base (``safety.target_ranges``, each with its context and source). A drug with no
  range in the knowledge base gets an info saying the value cannot be judged; we never invent a range.
* **rising creatinine on a calcineurin inhibitor** -- both CNIs are nephrotoxic and their labels
  ask for renal monitoring. The threshold is knowledge base data (``safety.result_thresholds`` of the drug,
  relative to baseline): the cyclosporine label's psoriasis dosing section acts on a rise of 25% or
  more over the pre-treatment value. The baseline is the last result on or before the drug's start,
  else the earliest on record. A CNI whose label gives no figure (tacrolimus) borrows the figure of
  another knowledge base calcineurin inhibitor, and the alert says that this extension is an ipexrx convention.
* **neutropenia under immunosuppression** -- an absolute neutrophil count below the knowledge base definition of
  neutropenia (``thresholds.yaml``: below 1.5 x 10^9/L, severe below 0.5, each sourced) in a patient
  on an immunosuppressive drug raises the infection risk the drug labels warn about.
* **lab toxicity** -- one generic rule over knowledge base data: for every current or planned drug, the
  drug-independent thresholds (``thresholds/lab-toxicity.yaml``: hyperkalaemia, low magnesium,
  triglycerides and cholesterol, ADA diabetes criteria) of each parameter its label asks to monitor
  (``safety.monitoring``), plus the drug's own label thresholds (JAK-inhibitor blood counts, for
  starting or during treatment). The alert shows the value, its date and unit, the threshold in its
  source unit and converted, and cites both the threshold and the label section. A missing value is
  left to ``monitoring.monitoring_due`` (due / no result / cannot judge), never reassured.
* **blood pressure** -- on a drug whose label asks for blood-pressure monitoring (the calcineurin
  inhibitors), the latest systolic and diastolic pressures against the AAP 2017 screening table
  (1-12 years, by sex; a screening value, not a stage: the percentile tables are not encoded) or the
  stage thresholds from 13 years (AAP 2017, the same figures as ACC/AHA 2017 for adults). No age ->
  cannot judge.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from ...knowledge.schema import Drug, LabParameter, ResultThreshold, Statement
from ...memo import remembered
from ...patient.errors import UnitError
from ...patient.labs import LabKind, kinds_for_parameter, lab_by_id
from ...patient.normalize import LabResult, Med
from ...patient.units import convert, fmt_number
from ..context import Ctx, drug_trigger, lab_trigger
from ..dose_link import suggest_dose, suggestion_statements
from ..models import Alert, DoseSuggestion, Severity


def trough_out_of_range(ctx: Ctx) -> list[Alert]:
    """Latest trough of each current drug against the knowledge base ranges for that drug."""
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
                triggers=[drug_trigger(ctx, med), lab_trigger(ctx, latest)], sources=[],
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
        elif not ctx.dose_suggestions:
            action += (" A model-based dose suggestion was not calculated (many patients assessed at once); an "
                       "assessment of this patient alone gives one where a population model fits.")
        alerts.append(Alert(
            id=f"result:trough:{med.drug_id}:{word.split()[0]}", rule="results.trough_out_of_range", family="result",
            severity=sev, summary=f"{name} trough {fmt_number(v)} ng/mL is {word} target range(s) ({latest.date})",
            reasoning=f"Latest level {latest.show()}. Ranges in the knowledge base: {ctxs}. "
                      "Ranges come from other indications unless stated; none is established for IPEX.",
            action=action, triggers=[drug_trigger(ctx, med), lab_trigger(ctx, latest)], sources=ctx.refs(*statements),
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
    """(CNI, threshold, lender) per patient CNI: its own thresholds, else those of another CNI in the knowledge base.

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


def _baseline_and_latest(ctx: Ctx, kind: LabKind, meds: list[Med]) -> tuple[LabResult, LabResult] | None:
    """The last result on or before the earliest start of ``meds`` (else the earliest) and the latest one."""
    results = ctx.results((kind,))
    if len(results) < 2:
        return None
    starts = [m.start for m in meds if m.start]
    start = min(starts) if starts else None
    before = [r for r in results if start and r.date <= start]
    baseline = before[-1] if before else results[0]
    latest = results[-1]
    if latest is baseline or latest.value is None or baseline.value is None or baseline.value <= 0:
        return None
    return baseline, latest


def creatinine_rise_on_cni(ctx: Ctx) -> list[Alert]:
    """Creatinine at or above the rise threshold (vs baseline) on a systemic calcineurin inhibitor -> alert;
    without such a creatinine rise, an estimated GFR fall at or beyond the pRIFLE bands -> alert."""
    cnis = [m for m in ctx.active if ctx.is_cni(m)]
    kind = lab_by_id("creatinine")
    if not cnis or kind is None:
        return []
    pair = _baseline_and_latest(ctx, kind, cnis)
    found = _creatinine_alert(ctx, cnis, *pair) if pair else []
    return found or _egfr_fall(ctx, cnis)


def _egfr_fall(ctx: Ctx, cnis: list[Med]) -> list[Alert]:
    kind = lab_by_id("egfr")
    pair = _baseline_and_latest(ctx, kind, cnis) if kind else None
    if pair is None:
        return []
    baseline, latest = pair
    change = (latest.value or 0) / (baseline.value or 1) - 1
    crossed = [(t, rec.context) for rec in ctx.kb.thresholds.values() for t in rec.thresholds
               if t.lab == "egfr" and t.relative_to_baseline and t.crossed(change * 100)]
    if not crossed:
        return []
    sev = min((_severity(t) for t, _ in crossed), key=lambda x: x.rank)
    main = min(crossed, key=lambda tc: tc[0].value)[0]
    names = ", ".join(ctx.label(m.drug_id or "") for m in cnis)
    mons = [mon for m in cnis for mon in ctx.drug(m.drug_id or "").safety.monitoring
            if mon.parameter is LabParameter.CREATININE]
    statements: list[Statement | None] = [s for t, c in crossed for s in (t.statement, c)]
    return [Alert(
        id="result:egfr-fall", rule="results.creatinine_rise_on_cni", family="result", severity=sev,
        summary=f"Estimated GFR down {-change * 100:.0f}% from baseline on {names} ({main.grade})",
        reasoning=f"Baseline {baseline.show()}; latest {latest.show()}. No creatinine rise could be judged (fewer "
                  "than two creatinine results, or a rise below the label figure). Calcineurin inhibitors are "
                  "nephrotoxic. " + " ".join(dict.fromkeys(s.text for s in statements if s is not None))
                  + " " + " ".join(mon.statement.text for mon in mons[:2]),
        action=f"Consider checking the {names} level and reviewing the dose and other nephrotoxic drugs.",
        triggers=[*(drug_trigger(ctx, m) for m in cnis), lab_trigger(ctx, baseline), lab_trigger(ctx, latest)],
        sources=ctx.refs(*statements, *(mon.statement for mon in mons)),
    )]


def _creatinine_alert(ctx: Ctx, cnis: list[Med], baseline: LabResult, latest: LabResult) -> list[Alert]:
    rise = (latest.value or 0) / (baseline.value or 1) - 1
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
        triggers=[*(drug_trigger(ctx, m) for m in cnis), lab_trigger(ctx, baseline), lab_trigger(ctx, latest)],
        sources=ctx.refs(*statements, *(mon.statement for mon in mons)),
    )]


def _absolute_thresholds(ctx: Ctx, parameter: LabParameter) -> list[tuple[ResultThreshold, Statement | None]]:
    return [(t, rec.context) for rec in ctx.kb.thresholds.values() if rec.parameter is parameter
            for t in rec.thresholds if not t.relative_to_baseline]


def neutropenia_on_immunosuppression(ctx: Ctx) -> list[Alert]:
    """Latest ANC below the knowledge base neutropenia threshold while on an immunosuppressive drug -> alert."""
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
            continue  # a knowledge base unit the lab quantity does not know: validate.py keeps this from happening
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
        triggers=[*(drug_trigger(ctx, m) for m in immuno), lab_trigger(ctx, latest)], sources=ctx.refs(*stmts),
    )]


# --------------------------------------------------------------------------------------------
# Lab toxicity: absolute thresholds (knowledge base data) for the parameters a current drug's label monitors
# --------------------------------------------------------------------------------------------
# Parameters with a rule of their own: troughs (trough_out_of_range), creatinine rise
# (creatinine_rise_on_cni), blood pressure (blood_pressure). Drug-independent neutrophil thresholds
# belong to neutropenia_on_immunosuppression; a drug's own label ANC threshold is read here.
_OWN_RULE = {LabParameter.TROUGH, LabParameter.CREATININE, LabParameter.BLOOD_PRESSURE}


@dataclass
class _Hit:
    med: Med
    threshold: ResultThreshold
    limit: float  # the threshold in the lab's canonical unit
    context: Statement | None
    basis: list[Statement]  # the drug's label statements that ask for the parameter


def _kinds(t: ResultThreshold) -> tuple[LabKind, ...]:
    if t.lab:
        k = lab_by_id(t.lab)
        return (k,) if k else ()
    return kinds_for_parameter(t.parameter)


_Threshold = tuple[ResultThreshold, Statement | None, list[Statement]]
_THRESHOLDS: dict[Any, tuple[object, Any]] = {}


def _thresholds_for(ctx: Ctx, med: Med) -> list[_Threshold]:
    """(threshold, context, label basis) for one drug: its own absolute thresholds, then the knowledge base's
    drug-independent thresholds for every parameter its label asks to monitor. Made once per knowledge
    base, drug and planned-or-given (they depend on nothing else), not for every chart."""
    return remembered(_THRESHOLDS, (id(ctx.kb), med.drug_id or "", med.status == "planned"), ctx.kb,
                      lambda: _new_thresholds_for(ctx, med))


def _new_thresholds_for(ctx: Ctx, med: Med) -> list[_Threshold]:
    drug = ctx.drug(med.drug_id or "")
    when = {None, "start"} if med.status == "planned" else {None, "treatment"}
    monitored: dict[LabParameter, list[Statement]] = {}
    for mon in drug.safety.monitoring:
        monitored.setdefault(mon.parameter, []).append(mon.statement)
    out: list[tuple[ResultThreshold, Statement | None, list[Statement]]] = []
    for t in drug.safety.result_thresholds:
        if not t.relative_to_baseline and t.when in when and t.parameter not in _OWN_RULE:
            out.append((t, None, monitored.get(t.parameter, [])))
    for rec in ctx.kb.thresholds.values():
        if rec.parameter in monitored and rec.parameter not in _OWN_RULE | {LabParameter.NEUTROPHILS}:
            out += [(t, rec.context, monitored[rec.parameter]) for t in rec.thresholds
                    if not t.relative_to_baseline and t.when in when]
    return out


def _limit(kind: LabKind, t: ResultThreshold, r: LabResult | None = None) -> float | None:
    """The threshold in the lab's canonical unit; a multiple of the upper limit needs the result's limit."""
    if t.unit == "x ULN":
        return t.value * r.upper_limit if r is not None and r.upper_limit is not None else None
    # the threshold is the knowledge base's: its limit in the lab's unit never changes
    return remembered(_LIMITS, (id(t), kind.id), t, lambda: _converted_limit(kind, t))


def _converted_limit(kind: LabKind, t: ResultThreshold) -> float | None:
    try:
        return convert(kind.quantity, t.value, t.unit, f"threshold {t.id}")
    except UnitError:
        return None  # a knowledge base unit the lab's quantity does not read: tests/patient keep this from happening


_LIMITS: dict[Any, tuple[object, Any]] = {}


def _unit(r: LabResult) -> str:
    return f"x{r.unit}" if r.unit.startswith("10^") else r.unit


def _stale_note(ctx: Ctx, r: LabResult, meds: list[Med], parameter: LabParameter) -> str:
    intervals = [mon.interval_days for m in meds for mon in ctx.drug(m.drug_id or "").safety.monitoring
                 if mon.parameter is parameter and mon.interval_days]
    age = (ctx.as_of - r.date).days
    if intervals and age > min(intervals):
        return (f" This result is {age} days old, older than the {min(intervals)}-day monitoring interval: "
                "a newer value may differ (see the monitoring alert).")
    return ""


def lab_toxicity(ctx: Ctx) -> list[Alert]:
    """Latest lab value at or beyond a knowledge base threshold for a parameter a current or planned drug's label
    monitors (potassium, magnesium, lipids, glucose/HbA1c; label blood-count thresholds) -> alert."""
    hits: dict[str, list[tuple[_Hit, LabResult]]] = {}
    age_unknown: dict[str, tuple[LabResult, list[_Hit]]] = {}
    no_uln: dict[str, tuple[LabResult, list[_Hit]]] = {}
    age, sex = ctx.patient.age_years, ctx.patient.sex
    for med in ctx.current_and_planned:
        if med.drug_id is None or not med.systemic:
            continue
        for t, context, basis in _thresholds_for(ctx, med):
            if t.sex is not None and sex != t.sex:
                continue
            for kind in _kinds(t):
                latest = ctx.latest((kind,))
                if latest is None or latest.value is None:
                    continue  # missing: monitoring_due says it is due; never reassurance
                limit = _limit(kind, t, latest)
                if limit is None and t.unit == "x ULN":
                    no_uln.setdefault(kind.id, (latest, []))[1].append(_Hit(med, t, 0.0, context, basis))
                    continue
                if limit is None or not t.crossed(latest.value, limit):
                    continue
                hit = _Hit(med, t, limit, context, basis)
                applies = t.applies_to_age(age)
                if applies is None:
                    age_unknown.setdefault(kind.id, (latest, []))[1].append(hit)
                elif applies:
                    hits.setdefault(kind.id, []).append((hit, latest))
    alerts = [_toxicity_alert(ctx, kid, found) for kid, found in hits.items()]
    for kid, (latest, found) in age_unknown.items():
        if kid not in hits:
            alerts.append(_cannot_judge_alert(ctx, kid, latest, found, "age"))
    for kid, (latest, found) in no_uln.items():
        if kid not in hits:
            alerts.append(_cannot_judge_alert(ctx, kid, latest, found, "uln"))
    return alerts


def _toxicity_alert(ctx: Ctx, kind_id: str, found: list[tuple[_Hit, LabResult]]) -> Alert:
    latest = found[0][1]
    sev = min((Severity(h.threshold.severity) for h, _ in found), key=lambda s: s.rank)
    # The band shown: the worst severity, then the most extreme limit in the direction of the comparison.
    worst = [h for h, _ in found if Severity(h.threshold.severity) is sev]
    low = worst[0].threshold.comparison in ("<", "<=")
    main = min(worst, key=lambda h: h.limit) if low else max(worst, key=lambda h: h.limit)
    t = main.threshold
    meds = list({h.med.drug_id: h.med for h, _ in found}.values())
    names = ", ".join(f"{ctx.label(m.drug_id or '')}{' (planned)' if m.status == 'planned' else ''}" for m in meds)
    word = {"<": "below", "<=": "at or below", ">": "above", ">=": "at or above"}[t.comparison]
    grade = f" ({t.grade})" if t.grade else ""
    shown = f"{fmt_number(t.value)} {t.unit}"
    if t.unit == "x ULN":
        shown = f"{fmt_number(t.value)} x the upper limit {fmt_number(latest.upper_limit or 0)} {_unit(latest)}"
        shown += f" = {fmt_number(main.limit)} {_unit(latest)}"
    elif t.unit != latest.unit:
        shown += f" = {fmt_number(main.limit)} {_unit(latest)}"
    # Threshold statements first (the band shown first), then what to do, the limits of the
    # definition, and last the drugs' label statements asking for the parameter.
    ordered = [main] + [h for h, _ in found if h is not main]
    statements: list[Statement | None] = [h.threshold.statement for h in ordered]
    statements += [h.threshold.action for h in ordered] + [h.context for h in ordered]
    statements += [b for h in ordered for b in h.basis]
    unique = list({id(s): s for s in statements if s is not None}.values())
    origin = (" The threshold is an ipexrx convention, not a label or guideline figure."
              if t.origin == "convention" else "")
    planned = [m for m in meds if m.status == "planned"]
    start = (f" For {', '.join(ctx.label(m.drug_id or '') for m in planned)} (planned) the label's threshold for "
             "starting applies." if planned else "")
    reasoning = (f"Latest {latest.show()} is {word} {shown}{grade}. "
                 + " ".join(dict.fromkeys(s.text for s in unique)) + origin + start
                 + _stale_note(ctx, latest, meds, t.parameter))
    action = (t.action.text if t.action else
              f"Consider repeating the {latest.kind.label} and reviewing {names} against the label; "
              "look for other causes and interacting drugs.")
    return Alert(
        id=f"result:lab:{kind_id}", rule="results.lab_toxicity", family="result", severity=sev,
        summary=f"{latest.kind.label.capitalize()} {fmt_number(latest.value or 0)} {_unit(latest)} ({latest.date}) "
                f"is {word} {shown}{grade} on {names}",
        reasoning=reasoning, action=action,
        triggers=[*(drug_trigger(ctx, m) for m in meds), lab_trigger(ctx, latest)], sources=ctx.refs(*unique),
    )


def _cannot_judge_alert(ctx: Ctx, kind_id: str, latest: LabResult, found: list[_Hit], missing: str) -> Alert:
    """A result whose threshold needs a datum the record lacks: the age (age-banded thresholds) or the
    laboratory's upper reference limit (thresholds in multiples of it)."""
    meds = list({h.med.drug_id: h.med for h in found}.values())
    names = ", ".join(ctx.label(m.drug_id or "") for m in meds)
    bands = "; ".join(dict.fromkeys(h.threshold.statement.text for h in found))
    statements = [s for h in found for s in (h.threshold.statement, h.context, *h.basis)]
    what, why, action = {
        "age": ("the patient's age", "depend on age and the record gives none",
                "Consider recording the birth date or age so the result can be judged."),
        "uln": ("the laboratory's upper limit", "are multiples of the laboratory's upper reference limit, which "
                "the record does not give with this result",
                "Consider judging the result against the reporting laboratory's upper limit (or recording it "
                "with the result as upper_limit / referenceRange.high)."),
    }[missing]
    return Alert(
        id=f"result:lab:{kind_id}:{missing}-unknown", rule="results.lab_toxicity", family="result",
        severity=Severity.INFO,
        summary=f"{latest.kind.label.capitalize()} {fmt_number(latest.value or 0)} {_unit(latest)} ({latest.date}) "
                f"on {names}: cannot judge without {what}",
        reasoning=f"Latest {latest.show()}. The thresholds for this test {why}: {bands}",
        action=action,
        triggers=[*(drug_trigger(ctx, m) for m in meds), lab_trigger(ctx, latest)], sources=ctx.refs(*statements),
    )


# --------------------------------------------------------------------------------------------
# Blood pressure on a drug whose label warns of hypertension
# --------------------------------------------------------------------------------------------
_BpFound = list[tuple[ResultThreshold, Statement | None]]
_BP_THRESHOLDS: dict[Any, tuple[object, Any]] = {}


@dataclass(frozen=True)
class _BpIndex:
    """The blood-pressure thresholds of a set of drugs (``found``: the knowledge base's, then the drugs' own,
    each with its context statement), indexed per pressure and age band.

    Why: there are some fifty of them (the AAP screening values by age and sex, the adult stages), and a
    reading was compared with every one. A band is a stretch of ages between two consecutive age limits of
    the pressure's thresholds, so every age in it has the same thresholds applying; per band the floor is the
    lowest of them when all are upper limits (``>=``, ``>``), and a reading below it -- nearly every chart on
    a calcineurin inhibitor -- crosses none. ``tests/assess/test_lab_toxicity.py`` compares the answers with
    the plain comparison against every threshold, over ages, values and sexes."""

    found: _BpFound
    bounds: dict[str, list[float]]  # per pressure: its thresholds' age limits, sorted
    bands: dict[tuple[str, int], tuple[_BpFound, float | None]]  # (pressure, band) -> (applying, floor)

    def applying(self, kind: str, age: float) -> tuple[_BpFound, float | None]:
        return self.bands.get((kind, bisect_right(self.bounds.get(kind, []), age)), ([], None))


def _bp_thresholds(ctx: Ctx, meds: list[Med]) -> _BpIndex:
    """The blood-pressure thresholds for these drugs, indexed (:class:`_BpIndex`); made once per knowledge
    base and set of drugs (they depend on nothing else)."""
    drug_ids = tuple(sorted({m.drug_id or "" for m in meds}))
    return remembered(_BP_THRESHOLDS, (id(ctx.kb), drug_ids), ctx.kb, lambda: _new_bp_thresholds(ctx, drug_ids))


def _new_bp_thresholds(ctx: Ctx, drug_ids: tuple[str, ...]) -> _BpIndex:
    found: _BpFound = [(t, rec.context) for rec in ctx.kb.thresholds.values()
                       if rec.parameter is LabParameter.BLOOD_PRESSURE for t in rec.thresholds]
    found += [(t, None) for d in drug_ids for t in ctx.drug(d).safety.result_thresholds
              if t.parameter is LabParameter.BLOOD_PRESSURE]
    bounds: dict[str, list[float]] = {}
    bands: dict[tuple[str, int], tuple[_BpFound, float | None]] = {}
    for kind in {t.lab for t, _ in found if t.lab}:
        mine = [(t, c) for t, c in found if t.lab == kind]
        limits = sorted({a for t, _ in mine for a in (t.min_age_years, t.max_age_years) if a is not None})
        bounds[kind] = limits
        # an age inside each band (band i: the ages from limit i-1 up to limit i, as bisect_right numbers them):
        # below the first limit, between two, from the last on
        ages = [limits[0] - 1, *((a + b) / 2 for a, b in zip(limits, limits[1:], strict=False)), limits[-1]] \
            if limits else [0.0]
        for band, age in enumerate(ages):
            applying = [(t, c) for t, c in mine if t.applies_to_age(age)]
            upper = applying and all(t.comparison in (">=", ">") and not t.relative_to_baseline for t, _ in applying)
            bands[(kind, band)] = (applying, min(t.value for t, _ in applying) if upper else None)
    return _BpIndex(found, bounds, bands)


def _bp_crossed(r: LabResult, index: _BpIndex, age: float, sex: str) -> _BpFound:
    """Thresholds for this reading's pressure (systolic or diastolic) that it meets at this age; with the
    sex unknown, a sex-specific threshold counts only if it is met for both sexes' values (no guess)."""
    if r.value is None:
        return []
    applying, floor = index.applying(r.kind.id, age)
    if floor is not None and r.value < floor:
        return []
    known_sex = sex in ("male", "female")
    out = [(t, c) for t, c in applying if t.crossed(r.value) and (t.sex is None or not known_sex or t.sex == sex)]
    if not known_sex:
        by_sex = {s: [t for t, _ in out if t.sex == s] for s in ("male", "female")}
        if not (by_sex["male"] and by_sex["female"]):
            out = [(t, c) for t, c in out if t.sex is None]
    return out


def blood_pressure(ctx: Ctx) -> list[Alert]:
    """Latest systolic / diastolic pressure on a drug whose label asks for blood-pressure monitoring
    (calcineurin inhibitors) against the AAP 2017 screening values (1-12 years) or the stage thresholds
    (13 years and older, adults included). Missing age -> cannot judge; missing reading -> monitoring_due."""
    meds = [m for m in ctx.current_and_planned if m.drug_id and m.systemic and any(
        mon.parameter is LabParameter.BLOOD_PRESSURE for mon in ctx.drug(m.drug_id).safety.monitoring)]
    if not meds:
        return []
    latest = (ctx.latest((k,)) for k in kinds_for_parameter(LabParameter.BLOOD_PRESSURE))
    readings = [r for r in latest if r is not None]
    if not readings:
        return []
    index = _bp_thresholds(ctx, meds)
    thresholds = index.found
    age, sex = ctx.patient.age_years, ctx.patient.sex
    # Judged first, worded after: most charts on a calcineurin inhibitor have a reading below every threshold.
    crossed = [] if age is None or age < 1 else [
        (r, t, c) for r in readings for t, c in _bp_crossed(r, index, age, sex)]
    if age is not None and age >= 1 and not crossed:
        return []
    names = ", ".join(ctx.label(m.drug_id or "") for m in meds)
    basis = [mon.statement for m in meds for mon in ctx.drug(m.drug_id or "").safety.monitoring
             if mon.parameter is LabParameter.BLOOD_PRESSURE]
    shown = " and ".join(r.show() for r in readings)
    triggers = [*(drug_trigger(ctx, m) for m in meds), *(lab_trigger(ctx, r) for r in readings)]
    contexts = list({id(c): c for _, c in thresholds if c is not None}.values())
    if age is None or age < 1:
        why = ("the record gives no age, and every threshold depends on it" if age is None else
               "the guideline's tables start at 1 year")
        return [Alert(
            id="result:blood-pressure:cannot-judge", rule="results.blood_pressure", family="result",
            severity=Severity.INFO, summary=f"Blood pressure on {names}: cannot judge ({why})",
            reasoning=f"Latest {shown}. " + " ".join(s.text for s in [*basis, *contexts]),
            action="Consider judging the reading against age-appropriate norms"
                   + (" and recording the age or birth date." if age is None else "."),
            triggers=triggers, sources=ctx.refs(*basis, *contexts),
        )]
    sev = min((Severity(t.severity) for _, t, _ in crossed), key=lambda s: s.rank)
    # Per pressure, the highest threshold met; the summary shows the worst band.
    top: dict[str, tuple[LabResult, ResultThreshold]] = {}
    for r, t, _ in crossed:
        if r.kind.id not in top or t.value > top[r.kind.id][1].value:
            top[r.kind.id] = (r, t)
    worst = min(top.values(), key=lambda rt: (Severity(rt[1].severity).rank, -rt[1].value))
    parts = [f"{r.kind.label.capitalize()} {fmt_number(r.value or 0)} mmHg >= {fmt_number(t.value)} ({t.grade})"
             for r, t in top.values()]
    child = age < 13
    sex_note = ("" if sex in ("male", "female") or not child else
                " The record gives no sex: only a value above both the boys' and the girls' screening values counts.")
    # The statements of the band shown for each pressure, then the limits of the thresholds.
    shown_t = [t for _, t in sorted(top.values(), key=lambda rt: Severity(rt[1].severity).rank)]
    statements = list({id(s): s for s in [*(t.statement for t in shown_t), *(c for _, _, c in crossed)]
                       if s is not None}.values())
    reasoning = (f"Latest {shown} (age {age:.0f}). " + ". ".join(parts) + ". "
                 + " ".join(dict.fromkeys(s.text for s in [*statements, *basis]))
                 + (" ipexrx does not encode the full percentile tables, so a screening value is not a stage."
                    if child else "") + sex_note
                 + _stale_note(ctx, worst[0], meds, LabParameter.BLOOD_PRESSURE))
    action = ("Consider repeating the measurement and, if it stays high, checking it against the AAP percentile "
              "tables for sex, age and height" if child else
              "Consider confirming the reading with repeated measurements") + \
             f"; label: blood pressure is to be watched on {names}."
    what = "above the AAP screening value for age" if child else f"in the {worst[1].grade}"
    return [Alert(
        id="result:blood-pressure", rule="results.blood_pressure", family="result", severity=sev,
        summary=f"Blood pressure {fmt_number(worst[0].value or 0)} mmHg {worst[0].kind.label.split()[0]} "
                f"({worst[0].date}) is {what} on {names}",
        reasoning=reasoning, action=action, triggers=triggers, sources=ctx.refs(*statements, *basis),
    )]
