"""Live vaccines planned or given under immunosuppression.

Why: a live attenuated vaccine can cause disease in an immunosuppressed child; the labels of the
IPEX immunosuppressants say to avoid them (KB ``safety.vaccines.live_vaccines``: avoid /
contraindicated / dose-dependent). Severity is critical when the KB advice is avoid or
contraindicated. For corticosteroids the advice is dose-dependent: ipexrx applies the KB's
machine-readable threshold (``safety.vaccines.threshold``, a :class:`SteroidThreshold` in
prednisone-equivalent doses; on prednisone: >= 2 mg/kg/day, or >= 20 mg/day from 10 kg, for 14 days
or more) to the recorded dose. Another corticosteroid is judged against the prednisone threshold only
when the KB gives its ``prednisone_equivalence`` factor (methylprednisolone 1.25, sourced); without
one the dose is left unjudged, and the alert says so. Which vaccines are live comes from the KB too
(``vaccines.yaml``), and the alert cites the vaccine's statement.

A given vaccine counts as "under immunosuppression" when its date falls inside the drug's
recorded period (start to end, or to the assessment date for a current drug).
"""

from __future__ import annotations

import datetime as dt

from ...knowledge.schema import Drug, Statement, SteroidEquivalence, SteroidThreshold
from ...patient.normalize import Med, Vaccination
from ...patient.units import fmt_number
from ..context import Ctx, doses_per_day, drug_trigger
from ..models import Alert, Severity, Trigger

REFERENCE_STEROID = "prednisone"  # thresholds are in prednisone-equivalent doses (ACIP wording)


def _vacc_trigger(v: Vaccination) -> Trigger:
    when = f" on {v.date}" if v.date else ""
    return Trigger(kind="vaccine", ref=v.name, path=v.path, detail=f"{v.status}{when}")


def _during(m: Med, date: dt.date | None, as_of: dt.date) -> bool | None:
    """Whether a given vaccine date falls in the medication period (None: cannot tell)."""
    if date is None or (m.start is None and m.status == "stopped"):
        return None
    if m.start is not None and date < m.start:
        return False
    end = m.end or (as_of if m.status == "active" else None)
    if end is not None and date > end:
        return False
    return True if m.start is not None else None


def prednisone_mg_per_day(ctx: Ctx, m: Med) -> tuple[float | None, float | None]:
    """(mg/day, mg/kg/day) from the recorded dose, frequency and weight; None where not computable."""
    if m.dose is None:
        return None, None
    per_day = doses_per_day(m.frequency)
    if per_day is None:
        return None, None
    w = ctx.patient.weight_kg
    if m.dose.unit == "mg":
        mg = m.dose.value * per_day
        return mg, (mg / w if w else None)
    if m.dose.unit == "mg/kg":
        mgkg = m.dose.value * per_day
        return (mgkg * w if w else None), mgkg
    return None, None


def steroid_threshold(ctx: Ctx, drug: Drug) -> tuple[SteroidThreshold | None, SteroidEquivalence | None]:
    """The prednisone-equivalent threshold that applies to ``drug`` and the drug's conversion factor.

    A drug's own ``threshold`` applies with factor 1 (it is written for that drug); otherwise, with a
    sourced ``prednisone_equivalence``, the reference steroid's threshold applies to the converted dose.
    """
    advice = drug.safety.vaccines
    if advice is None:
        return None, None
    if advice.threshold is not None:
        return advice.threshold, advice.prednisone_equivalence
    ref = ctx.kb.drugs.get(REFERENCE_STEROID)
    ref_threshold = ref.safety.vaccines.threshold if ref and ref.safety.vaccines else None
    if advice.prednisone_equivalence is None or ref_threshold is None:
        return None, advice.prednisone_equivalence
    return ref_threshold, advice.prednisone_equivalence


def _dose_dependent(ctx: Ctx, m: Med) -> tuple[Severity, str, list[Statement | None]]:
    drug = ctx.drug(m.drug_id or "")
    threshold, equiv = steroid_threshold(ctx, drug)
    if threshold is None:
        return (Severity.WARNING, "The KB advice is dose-dependent, but the KB gives no dose threshold (or prednisone "
                "equivalence) for this drug, so ipexrx cannot judge its dose.", [])
    stmts: list[Statement | None] = [threshold.statement, equiv.statement if equiv else None]
    factor = equiv.factor if equiv and drug.safety.vaccines and drug.safety.vaccines.threshold is None else 1.0
    name = drug.name.capitalize()
    mg, mgkg = prednisone_mg_per_day(ctx, m)
    w = ctx.patient.weight_kg
    if mg is None and mgkg is None:
        return (Severity.WARNING, f"The daily {drug.name} dose cannot be computed from the record (dose, frequency).",
                stmts)
    eq_mg = mg * factor if mg is not None else None
    eq_mgkg = mgkg * factor if mgkg is not None else None
    high = (eq_mgkg is not None and eq_mgkg >= threshold.mg_per_kg_day) or (
        eq_mg is not None and w is not None and w >= threshold.weight_cutoff_kg and eq_mg >= threshold.mg_per_day)
    unsure = eq_mgkg is None and w is None and eq_mg is not None and eq_mg < threshold.mg_per_day
    dose_txt = " / ".join(t for t in (f"{fmt_number(mg)} mg/day" if mg is not None else "",
                                      f"{fmt_number(mgkg)} mg/kg/day" if mgkg is not None else "") if t)
    if factor != 1.0:
        eq = " / ".join(t for t in (f"{fmt_number(eq_mg)} mg/day" if eq_mg is not None else "",
                                    f"{fmt_number(eq_mgkg)} mg/kg/day" if eq_mgkg is not None else "") if t)
        dose_txt += f" (prednisone-equivalent {eq}, factor {fmt_number(factor)})"
    limits = (f"{fmt_number(threshold.mg_per_kg_day)} mg/kg/day, or {fmt_number(threshold.mg_per_day)} mg/day from "
              f"{fmt_number(threshold.weight_cutoff_kg)} kg, for {threshold.min_days} days or more")
    if unsure:
        return (Severity.WARNING, f"{name} {dose_txt}; without a weight ipexrx cannot apply the mg/kg threshold "
                f"({limits}).", stmts)
    if not high:
        return Severity.INFO, f"{name} {dose_txt} is below the KB's immunosuppressive threshold ({limits}).", stmts
    days = (ctx.as_of - m.start).days if m.start else None
    if days is not None and days < threshold.min_days:
        return (Severity.WARNING, f"{name} {dose_txt}, given for {days} days so far "
                f"(threshold: {threshold.min_days} days).", stmts)
    return (Severity.CRITICAL, f"{name} {dose_txt} is at or above the KB's immunosuppressive threshold ({limits}).",
            stmts)


def live_vaccine_under_immunosuppression(ctx: Ctx) -> list[Alert]:
    """Live vaccine planned while immunosuppressed, or given during an immunosuppressive drug's period."""
    alerts: list[Alert] = []
    for v in ctx.patient.vaccinations:
        if v.live is not True:
            continue
        if v.status == "planned":
            candidates = [(m, True) for m in ctx.immunosuppressive(ctx.current_and_planned)]
        else:
            candidates = []
            for m in ctx.immunosuppressive([m for m in ctx.patient.meds if m.drug_id and m.status != "planned"]):
                during = _during(m, v.date, ctx.as_of)
                if during is not False:
                    candidates.append((m, during is True))
        parts: list[tuple[Med, Severity, str, list[Statement | None]]] = []
        for m, certain in candidates:
            drug = ctx.drug(m.drug_id or "")
            advice = drug.safety.vaccines
            if advice is not None and advice.live_vaccines == "no-restriction":
                continue
            extra: list[Statement | None] = []
            if advice is None:
                sev = Severity.WARNING
                note = "the KB has no vaccine advice for this drug; it is flagged immunosuppressive."
            elif advice.live_vaccines == "dose-dependent":
                sev, note, extra = _dose_dependent(ctx, m)
            else:
                sev, note = Severity.CRITICAL, advice.statement.text
            if not certain and sev is Severity.CRITICAL:
                sev = Severity.WARNING
                note += " The record's dates do not show whether the vaccine fell inside the treatment period."
            stmts: list[Statement | None] = [advice.statement] if advice else list(drug.safety.boxed_warnings[:1])
            stmts += extra
            parts.append((m, sev, f"{drug.name}: {note}", stmts))
        if not parts:
            continue
        sev = min((p[1] for p in parts), key=lambda x: x.rank)
        vaccine = ctx.kb.vaccines.get(v.vaccine_id) if v.vaccine_id else None
        why_live = (vaccine.statement.text if vaccine else
                    f"{v.name} is recorded as a live vaccine (\"live\": true in the record).")
        names = ", ".join(ctx.label(p[0].drug_id or "") for p in parts)
        verb = "planned" if v.status == "planned" else f"given{f' on {v.date}' if v.date else ''}"
        alerts.append(Alert(
            id=f"vaccine:live:{v.path}", rule="vaccines.live_vaccine_under_immunosuppression",
            family="vaccine", severity=sev,
            summary=(f"Live vaccine {v.name} {verb} under immunosuppression ({names})" if sev is not Severity.INFO
                     else f"Live vaccine {v.name} {verb} while on {names} (below the immunosuppressive dose)"),
            reasoning=f"{v.name}: {why_live} " + " ".join(p[2] for p in parts),
            action=("Consider deferring the live vaccine and discussing timing with the immunology team."
                    if v.status == "planned" else
                    "Consider watching for vaccine-strain infection and discussing with the immunology team."),
            triggers=[_vacc_trigger(v), *(drug_trigger(ctx, p[0]) for p in parts)],
            sources=ctx.refs(vaccine.statement if vaccine else None, *(st for p in parts for st in p[3])),
        ))
    return alerts
