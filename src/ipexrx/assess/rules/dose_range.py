"""Dose plausibility: every recorded dose against the labelled usual range and maximum.

Why: a draft order for 12 g of sirolimus a day (a unit slip: mg typed as g), a daily methotrexate
dose meant weekly, a 500 mg tacrolimus dose -- each is accepted by a medication list and each is
lethal. The knowledge base gives, per drug, route, age band and formulation, the labelled usual range
and ceiling (``Drug.dose_ranges``, each with its label section). This rule converts the recorded dose
to the range's basis (per day, week or dose; per kg or per m2 with the recorded weight and height)
and says:

* inside any matching range: nothing;
* outside every judgeable range: a warning that shows the dose as converted, the range and its source;
* more than ten times the ceiling (the maximum, else the top of the usual range, or the absolute cap):
  critical -- no labelled use comes near it; above the maximum at all when the label warns that an
  overdose can kill (``critical_above_maximum``: conventional amphotericin B);
* in range for one formulation but not for another, when the record does not say which (5 mg/kg/day
  of amphotericin B is a liposomal dose and three times the conventional ceiling): a warning naming
  both -- critical when the other formulation's dose would be critical -- because the product decides
  whether the dose is lethal;
* nothing judgeable (no weight for a per-kg range, no frequency for a per-day range, IU against mg):
  an info alert "cannot judge", naming what is missing. A missing value is never read as "in range".

Topical, inhaled and other local records are skipped: their labels dose them by area or puff, not mg.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ...knowledge.schema import DoseRange
from ...memo import remembered
from ...patient.normalize import Med
from ...patient.units import fmt_number
from ..context import Ctx, doses_per_day, drug_trigger
from ..models import Alert, Severity

TOLERANCE = 0.02  # rounding of tablets and mL: 2% beyond a bound is still "at" the bound
# A per-kg or per-m2 dose is rounded to something measurable (a whole capsule, 0.1 mL, a 250 mg
# suspension dose for a 30 kg child on 7.5 mg/kg): 10% beyond such a bound is still "at" it. A unit
# slip (mg for mcg, g for mg) is 1000-fold and is never hidden by this.
SIZE_TOLERANCE = 0.10
CRITICAL_FACTOR = 10.0


@dataclass(frozen=True)
class Judged:
    rng: DoseRange
    value: float  # the patient's dose in the range's basis
    ceiling: float
    plain_value: float | None  # mg (or IU) per the range's period, for the absolute cap


def bsa_m2(weight_kg: float | None, height_cm: float | None) -> float | None:
    """Body-surface area by Mosteller's formula (sqrt(height cm x weight kg / 3600))."""
    if not weight_kg or not height_cm:
        return None
    return math.sqrt(height_cm * weight_kg / 3600.0)


def _applies(ctx: Ctx, m: Med, r: DoseRange) -> bool:
    if m.route is not None and m.route not in r.routes:
        return False
    if r.formulation and m.formulation and r.formulation != m.formulation:
        return False
    age = ctx.patient.age_years
    if age is not None:
        if r.age_min_years is not None and age < r.age_min_years:
            return False
        if r.age_max_years is not None and age >= r.age_max_years:
            return False
    return True


def _convert(ctx: Ctx, m: Med, r: DoseRange) -> tuple[float, float | None] | str:
    """The record's dose in the range's basis (and in plain amount per period), or why it cannot be."""
    assert m.dose is not None
    weight, bsa = ctx.patient.weight_kg, bsa_m2(ctx.patient.weight_kg, ctx.patient.height_cm)
    unit = m.dose.unit  # mg, mg/kg, mg/m2 or IU
    amount_unit = "IU" if unit == "IU" else "mg"
    if amount_unit != r.amount_unit:
        return f"the dose is in {unit} and the labelled range in {r.amount_unit}"
    per_admin = m.dose.value
    if unit == "mg/kg":
        if not weight:
            return "weight missing (the dose is per kg)"
        per_admin *= weight
    elif unit == "mg/m2":
        if bsa is None:
            return "weight or height missing (the dose is per m2)"
        per_admin *= bsa
    if r.period == "dose":
        plain = per_admin
    else:
        n = doses_per_day(m.frequency)
        if n is None:
            return "frequency missing or not readable" if not m.frequency else f"frequency '{m.frequency}' not readable"
        plain = per_admin * n * (7.0 if r.period == "week" else 1.0)
    value = plain
    if r.per_size == "kg":
        if not weight:
            return "weight missing (the labelled range is per kg)"
        value = plain / weight
    elif r.per_size == "m2":
        if bsa is None:
            return "weight or height missing (the labelled range is per m2)"
        value = plain / bsa
    return value, plain


_RANGE_TEXTS: dict[Any, tuple[object, Any]] = {}


def _range_text(r: DoseRange) -> str:
    """The range as the alerts print it; made once per range of the knowledge base (asked for every
    range a dose is compared with, several per medication)."""
    return remembered(_RANGE_TEXTS, id(r), r, lambda: _new_range_text(r))


def _new_range_text(r: DoseRange) -> str:
    usual = f"{fmt_number(r.low)}-{fmt_number(r.high)}" if r.low is not None else f"up to {fmt_number(r.high)}"
    text = f"{usual} {r.basis}"
    if r.maximum is not None:
        text += f" (maximum {fmt_number(r.maximum)} {r.basis})"
    if r.absolute_max is not None:
        text += f" (not more than {fmt_number(r.absolute_max)} {r.amount_unit}/{r.period})"
    age = ""
    if r.age_min_years is not None or r.age_max_years is not None:
        lo = fmt_number(r.age_min_years or 0)
        age = f", ages {lo}-{fmt_number(r.age_max_years)} y" if r.age_max_years else f", ages {lo} y and over"
    return f"{text} [{r.context}; {', '.join(r.routes)}{age}]"


def _in_range(j: Judged) -> bool:
    low = j.rng.low or 0.0
    tol = SIZE_TOLERANCE if j.rng.per_size else TOLERANCE
    if j.value < low * (1 - tol):
        return False
    if j.value > j.ceiling * (1 + tol):
        return False
    return not (j.rng.absolute_max is not None and j.plain_value is not None
                and j.plain_value > j.rng.absolute_max * (1 + TOLERANCE))


def _far_above(j: Judged) -> bool:
    if j.value > j.ceiling * CRITICAL_FACTOR:
        return True
    if j.rng.critical_above_maximum and j.rng.maximum is not None and j.value > j.rng.maximum * (1 + TOLERANCE):
        return True
    return (j.rng.absolute_max is not None and j.plain_value is not None
            and j.plain_value > j.rng.absolute_max * CRITICAL_FACTOR)


def _single_dose_over(ctx: Ctx, m: Med, ranges: list[DoseRange]) -> tuple[DoseRange, float] | None:
    """Without a frequency: one administration already above ten times a daily/weekly ceiling in plain mg."""
    assert m.dose is not None
    if m.dose.unit != "mg":
        return None
    for r in ranges:
        if r.amount_unit != "mg" or r.period == "dose":
            continue
        cap = r.absolute_max
        if cap is None and r.per_size is None:
            cap = r.maximum or r.high
        if cap is None and r.per_size == "kg" and ctx.patient.weight_kg:
            cap = (r.maximum or r.high) * ctx.patient.weight_kg
        if cap is not None and m.dose.value > cap * CRITICAL_FACTOR:
            return r, cap
    return None


def dose_range(ctx: Ctx) -> list[Alert]:
    """Each current/planned systemic record with a dose, judged against its drug's labelled ranges."""
    alerts: list[Alert] = []
    for m in ctx.patient.meds:
        if m.status not in ("active", "planned") or not m.drug_id or m.dose is None or not m.systemic:
            continue
        drug = ctx.drug(m.drug_id)
        ranges = [r for r in drug.dose_ranges if _applies(ctx, m, r)]
        if not ranges:
            if drug.dose_ranges:
                alerts.append(_cannot(ctx, m, ["no labelled range for this route and age"], drug.dose_ranges))
            continue
        judged: list[Judged] = []
        missing: list[str] = []
        for r in ranges:
            got = _convert(ctx, m, r)
            if isinstance(got, str):
                missing.append(got)
                continue
            value, plain = got
            judged.append(Judged(r, value, r.maximum or r.high, plain))
        if not judged:
            over = _single_dose_over(ctx, m, ranges)
            if over is not None:
                alerts.append(_alert(ctx, m, Severity.CRITICAL, [], single=over))
            else:
                alerts.append(_cannot(ctx, m, missing, ranges))
            continue
        if any(_in_range(j) for j in judged):
            split = _formulation_split(m, judged)
            if split is not None:
                alerts.append(_formulation_alert(ctx, m, *split))
            continue
        severity = Severity.CRITICAL if all(_far_above(j) for j in judged) else Severity.WARNING
        alerts.append(_alert(ctx, m, severity, judged))
    return alerts


def _formulation_split(m: Med, judged: list[Judged]) -> tuple[list[Judged], list[Judged]] | None:
    """(in range, out of range) by formulation, when the record names none and the verdicts differ."""
    if m.formulation is not None:
        return None
    by_form: dict[str, list[Judged]] = {}
    for j in judged:
        if j.rng.formulation:
            by_form.setdefault(j.rng.formulation, []).append(j)
    fits = [j for js in by_form.values() for j in js if any(_in_range(k) for k in js)]
    misses = [j for js in by_form.values() if not any(_in_range(k) for k in js) for j in js]
    return (fits, misses) if fits and misses else None


def _formulation_alert(ctx: Ctx, m: Med, fits: list[Judged], misses: list[Judged]) -> Alert:
    name = ctx.label(m.drug_id or "")
    names = {f.id: f.name.split(",")[0] for f in ctx.drug(m.drug_id or "").formulations}
    ok = sorted({names.get(j.rng.formulation or "", j.rng.formulation or "") for j in fits})
    bad = "; ".join(f"{fmt_number(j.value)} {j.rng.basis} is {'above' if j.value > j.ceiling else 'below'} "
                    f"{_range_text(j.rng)} ({names.get(j.rng.formulation or '', j.rng.formulation)})" for j in misses)
    return Alert(
        id=f"dosing:range:{m.path}", rule="dosing.dose_range", family="dosing",
        severity=Severity.CRITICAL if any(_far_above(j) for j in misses) else Severity.WARNING,
        summary=f"{name} {m.dose.original if m.dose else ''}: in range only for {', '.join(ok)}; "
                f"the record does not say which",
        reasoning=f"The formulations of {name} are dosed differently and the record names none. For the others: "
                  f"{bad}. " + " ".join(dict.fromkeys(j.rng.statement.text for j in misses)),
        action=f"Consider confirming the product (formulation) of this {name} order before it is given; "
               "the dose is only plausible for the formulation named above.",
        triggers=[drug_trigger(ctx, m)], sources=ctx.refs(*(j.rng.statement for j in fits + misses)),
        evidence="Ranges are the label's usual doses; optimal dosing in IPEX has not been established.",
    )


def _alert(ctx: Ctx, m: Med, severity: Severity, judged: list[Judged],
           single: tuple[DoseRange, float] | None = None) -> Alert:
    name = ctx.label(m.drug_id or "")
    if single is not None:
        r, cap = single
        shown = (f"one dose of {m.dose} is more than ten times the most the label allows in a whole {r.period} "
                 f"({fmt_number(cap)} mg)")
        ranges = [r]
    else:
        parts = []
        for j in judged:
            side = "above" if j.value > j.ceiling else "below" if j.value < (j.rng.low or 0) else "beyond the cap of"
            parts.append(f"{fmt_number(j.value)} {j.rng.basis} is {side} {_range_text(j.rng)}")
        shown = "; ".join(parts)
        ranges = [j.rng for j in judged]
    if severity is not Severity.CRITICAL:
        word = "outside the labelled range"
    elif all(j.rng.critical_above_maximum for j in judged) and single is None:
        word = "above a maximum the label warns can be fatal"
    else:
        word = "more than ten times the labelled maximum"
    return Alert(
        id=f"dosing:range:{m.path}", rule="dosing.dose_range", family="dosing", severity=severity,
        summary=f"{name} {m.dose.original if m.dose else ''} ({m.route or 'route not given'}"
                f"{', ' + m.frequency if m.frequency else ''}): {word}",
        reasoning=f"Recorded dose converted to the label's terms: {shown}. "
                  + " ".join(dict.fromkeys(r.statement.text for r in ranges)),
        action=("Consider checking the dose, its unit (mg, mcg, g) and its frequency before this order is signed."
                if severity is Severity.CRITICAL else
                "Consider checking the dose against the label and the indication; a dose outside the labelled range "
                "can be intended, and then deserves a note."),
        triggers=[drug_trigger(ctx, m)], sources=ctx.refs(*(r.statement for r in ranges)),
        evidence="Ranges are the label's usual doses; optimal dosing in IPEX has not been established.",
    )


def _cannot(ctx: Ctx, m: Med, missing: list[str], ranges: list[DoseRange]) -> Alert:
    name = ctx.label(m.drug_id or "")
    why = "; ".join(dict.fromkeys(missing))
    return Alert(
        id=f"dosing:range:{m.path}", rule="dosing.dose_range", family="dosing", severity=Severity.INFO,
        summary=f"{name} {m.dose.original if m.dose else ''}: dose range cannot be judged ({why})",
        reasoning="The dose could not be compared with the labelled range: " + why + ". This is not a finding that "
                  "the dose is in range. Labelled ranges: " + "; ".join(_range_text(r) for r in ranges[:4]) + ".",
        action="Consider recording what is missing (weight, height, frequency) so that the dose can be checked.",
        triggers=[drug_trigger(ctx, m)], sources=ctx.refs(*(r.statement for r in ranges[:4])),
    )
