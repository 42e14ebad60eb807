"""Live vaccines planned or given under immunosuppression, after stopping a drug, or after in utero exposure.

Why: a live attenuated vaccine can cause disease in an immunosuppressed child; the labels of the
IPEX immunosuppressants say to avoid them (knowledge base ``safety.vaccines.live_vaccines``: avoid /
contraindicated / dose-dependent). Severity is critical when the knowledge base advice is avoid or
contraindicated. For corticosteroids the advice is dose-dependent and every one of them takes one
path (:func:`judge_steroid`): the dose is converted with the drug's sourced ``prednisone_equivalence``
factor (prednisone 1, methylprednisolone 1.25, dexamethasone 6.667...) and compared with the knowledge base's
machine-readable threshold (``safety.vaccines.threshold``, ACIP: >= 2 mg/kg/day, or >= 20 mg/day from
10 kg, for 14 days or more). 20 mg/day or more is immunosuppressive whatever the weight; below it a
missing weight is "cannot judge", never "below threshold". Without a factor (or with a
``no_conversion`` statement: oral budesonide) the dose is left unjudged, and the alert says why.
Which vaccines are live comes from the knowledge base too (``vaccines.yaml``), and the alert cites the vaccine's
statement. A vaccine may be an Immunization or a medication record that orders one (read in
:mod:`ipexrx.patient.normalize`).

A given vaccine counts as "under immunosuppression" when its date falls inside the drug's
recorded period (start to end, or to the assessment date for a current drug); after the end date the
wait the knowledge base gives after stopping (``after_stop``) decides (:func:`live_vaccine_after_stopping`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ...knowledge.schema import Drug, LiveVaccineWait, Statement, SteroidEquivalence, SteroidThreshold
from ...patient.normalize import Med, PatientManifestation, Vaccination
from ...patient.units import fmt_number
from ...patient.vaccines import may_state_in_utero_exposure, names_in_utero_exposure
from ..context import Ctx, doses_per_day, drug_trigger
from ..models import Alert, Severity, Trigger

REFERENCE_STEROID = "prednisone"  # thresholds are in prednisone-equivalent doses (ACIP wording)


def vaccine_label(ctx: Ctx, v: Vaccination) -> str:
    """The record's vaccine text; a bare CVX code is shown with the knowledge base vaccine's name."""
    vaccine = ctx.kb.vaccines.get(v.vaccine_id) if v.vaccine_id else None
    if v.name.strip().isdigit():
        return f"{vaccine.name} (CVX {v.name.strip()})" if vaccine else f"CVX {v.name.strip()}"
    return v.name


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

    One path for every corticosteroid: the threshold is the drug's own, else the reference steroid's
    (prednisone, ACIP's unit); the dose is always converted with the drug's sourced
    ``prednisone_equivalence`` (prednisone itself: factor 1). Without a factor nothing is judged.
    """
    advice = drug.safety.vaccines
    if advice is None:
        return None, None
    threshold = advice.threshold
    if threshold is None:
        ref = ctx.kb.drugs.get(REFERENCE_STEROID)
        threshold = ref.safety.vaccines.threshold if ref and ref.safety.vaccines else None
    return threshold, advice.prednisone_equivalence


@dataclass(frozen=True)
class SteroidJudgement:
    """How a corticosteroid record stands against the immunosuppressive threshold.

    ``high``: True at or above the dose for at least ``min_days``; False below the dose; None when it
    cannot be judged (no factor, no dose, weight missing below 20 mg/day, alternate-day regimen).
    ``long_enough``: whether the course reached ``min_days`` (None: duration unknown).
    """

    severity: Severity
    note: str
    statements: list[Statement | None]
    high: bool | None
    long_enough: bool | None = None


def judge_steroid(ctx: Ctx, m: Med, until: dt.date | None = None, until_text: str | None = None) -> SteroidJudgement:
    """Judge a corticosteroid record (dose converted to prednisone-equivalents) against the knowledge base threshold.

    ``until``: the end of the period judged (a stopped course's end date; default the assessment date).
    """
    drug = ctx.drug(m.drug_id or "")
    advice = drug.safety.vaccines
    name = drug.name.capitalize()
    if advice is not None and advice.no_conversion is not None:
        return SteroidJudgement(Severity.WARNING, f"cannot judge the dose: {advice.no_conversion.text}",
                                [advice.no_conversion], None)
    threshold, equiv = steroid_threshold(ctx, drug)
    if threshold is None or equiv is None:
        return SteroidJudgement(Severity.WARNING, "The advice is dose-dependent, but the knowledge base gives "
                                "no dose threshold or no sourced prednisone equivalence for this drug, so ipexrx "
                                "cannot judge its dose.",
                                [], None)
    stmts: list[Statement | None] = [threshold.statement, equiv.statement]
    factor = equiv.factor
    mg, mgkg = prednisone_mg_per_day(ctx, m)
    w = ctx.patient.weight_kg
    if mg is None and mgkg is None:
        return SteroidJudgement(Severity.WARNING, f"cannot judge: the daily {drug.name} dose cannot be computed from "
                                "the record (dose in mg or mg/kg and a readable frequency are needed).", stmts, None)
    eq_mg = mg * factor if mg is not None else None
    eq_mgkg = mgkg * factor if mgkg is not None else None
    dose_txt = " / ".join(t for t in (f"{fmt_number(mg)} mg/day" if mg is not None else "",
                                      f"{fmt_number(mgkg)} mg/kg/day" if mgkg is not None else "") if t)
    eq = " / ".join(t for t in (f"{fmt_number(eq_mg)} mg/day" if eq_mg is not None else "",
                                f"{fmt_number(eq_mgkg)} mg/kg/day" if eq_mgkg is not None else "") if t)
    if drug.id != REFERENCE_STEROID:
        dose_txt += f" = prednisone-equivalent {eq} (factor {fmt_number(factor)} mg prednisone per mg {drug.name})"
    limits = (f"{fmt_number(threshold.mg_per_kg_day)} mg/kg/day, or {fmt_number(threshold.mg_per_day)} mg/day from "
              f"{fmt_number(threshold.weight_cutoff_kg)} kg, for {threshold.min_days} days or more")
    # The mg/day limit implies the mg/kg limit below the weight cut-off (20 mg/day at 10 kg is 2 mg/kg/day), so a
    # dose at or above it is immunosuppressive whatever the weight: a missing weight only matters below it.
    mg_limit_any_weight = threshold.mg_per_day / threshold.weight_cutoff_kg >= threshold.mg_per_kg_day
    if (eq_mgkg is not None and eq_mgkg >= threshold.mg_per_kg_day) or (
            eq_mg is not None and eq_mg >= threshold.mg_per_day
            and (mg_limit_any_weight or (w is not None and w >= threshold.weight_cutoff_kg))):
        high = True
    elif w is None:
        if eq_mg is not None:
            what = (f"{fmt_number(eq_mg)} mg/day prednisone-equivalent is below {fmt_number(threshold.mg_per_day)} "
                    "mg/day, but without a body weight ipexrx cannot apply the mg/kg/day limit")
        else:
            what = (f"{fmt_number(eq_mgkg or 0)} mg/kg/day prednisone-equivalent is below "
                    f"{fmt_number(threshold.mg_per_kg_day)} mg/kg/day, but without a body weight ipexrx cannot "
                    "compute the mg/day dose")
        return SteroidJudgement(Severity.WARNING, f"{name} {dose_txt}: cannot judge: weight missing. {what} "
                                f"({limits}); this is not a finding that the dose is below the threshold.",
                                stmts, None)
    else:
        high = False
    per_day = doses_per_day(m.frequency)
    if per_day == 0.5:  # every other day
        return SteroidJudgement(Severity.WARNING, f"{name} {dose_txt}, given every other day: cannot judge. ACIP does "
                                "not count long-term alternate-day treatment with short-acting preparations as a "
                                f"contraindication, while the averaged dose is {'at or above' if high else 'below'} "
                                f"the daily threshold ({limits}).", stmts, None)
    if not high:
        return SteroidJudgement(Severity.INFO, f"{name} {dose_txt} is below the immunosuppressive threshold "
                                f"of the knowledge base ({limits}).", stmts, False)
    end = until or ctx.as_of
    days = (end - m.start).days if m.start and m.start <= end else None
    if m.status == "planned" and until is None:
        return SteroidJudgement(Severity.WARNING, f"{name} {dose_txt} is at or above the dose threshold; the course is "
                                f"planned, so its duration is not known yet (threshold: {threshold.min_days} days "
                                "or more).", stmts, True, None)
    if days is None:
        return SteroidJudgement(Severity.WARNING, f"{name} {dose_txt} is at or above the dose threshold; duration "
                                f"unknown (no start date recorded), so ipexrx cannot tell whether it reached "
                                f"{threshold.min_days} days ({limits}).", stmts, True, None)
    if days < threshold.min_days:
        so_far = until_text or ("so far" if until is None else "in all")
        return SteroidJudgement(Severity.WARNING, f"{name} {dose_txt}, given for {days} days {so_far} (threshold: "
                                f"{threshold.min_days} days or more; a course shorter than that is not in itself a "
                                "contraindication).", stmts, True, False)
    return SteroidJudgement(Severity.CRITICAL, f"{name} {dose_txt}, given for {days} days, is at or above the "
                            f"immunosuppressive threshold of the knowledge base ({limits}).", stmts, True, True)


def _dose_dependent(ctx: Ctx, m: Med, v: Vaccination) -> tuple[Severity, str, list[Statement | None]]:
    """A given vaccine is judged on the course up to its date; a planned one on the course so far."""
    given_on = v.date if v.status != "planned" and v.date is not None and m.start and v.date >= m.start else None
    j = judge_steroid(ctx, m, until=given_on, until_text="by the vaccine date" if given_on else None)
    return j.severity, j.note, j.statements


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
                note = "the knowledge base has no vaccine advice for this drug; it is flagged immunosuppressive."
            elif advice.live_vaccines == "dose-dependent":
                sev, note, extra = _dose_dependent(ctx, m, v)
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
                    f"{vaccine_label(ctx, v)} is recorded as a live vaccine (\"live\": true in the record).")
        names = ", ".join(ctx.label(p[0].drug_id or "") for p in parts)
        label = vaccine_label(ctx, v)
        verb = "planned" if v.status == "planned" else f"given{f' on {v.date}' if v.date else ''}"
        alerts.append(Alert(
            id=f"vaccine:live:{v.path}", rule="vaccines.live_vaccine_under_immunosuppression",
            family="vaccine", severity=sev,
            summary=(f"Live vaccine {label} {verb} under immunosuppression ({names})" if sev is not Severity.INFO
                     else f"Live vaccine {label} {verb} while on {names} (below the immunosuppressive dose)"),
            reasoning=f"{label}: {why_live} " + " ".join(p[2] for p in parts),
            action=("Consider confirming the recorded dose and weight: below the threshold the corticosteroid is not "
                    "in itself a reason to defer the live vaccine (ACIP)." if sev is Severity.INFO else
                    "Consider deferring the live vaccine and discussing timing with the immunology team."
                    if v.status == "planned" else
                    "Consider watching for vaccine-strain infection and discussing with the immunology team."),
            triggers=[_vacc_trigger(v), *(drug_trigger(ctx, p[0]) for p in parts)],
            sources=ctx.refs(vaccine.statement if vaccine else None, *(st for p in parts for st in p[3])),
        ))
    return alerts


def _after_stop_advice(ctx: Ctx, drug: Drug) -> LiveVaccineWait | None:
    """The drug's own wait after stopping; a dose-dependent corticosteroid without one uses the reference
    steroid's (ACIP's wait is written for every systemic corticosteroid in prednisone-equivalents)."""
    advice = drug.safety.vaccines
    if advice is None:
        return None
    if advice.after_stop is not None or advice.live_vaccines != "dose-dependent":
        return advice.after_stop
    ref = ctx.kb.drugs.get(REFERENCE_STEROID)
    return ref.safety.vaccines.after_stop if ref and ref.safety.vaccines else None


def live_vaccine_after_stopping(ctx: Ctx) -> list[Alert]:
    """Live vaccine planned (or given) inside the wait a label or guideline sets after stopping a drug.

    Reads the end dates of stopped systemic immunosuppressive records whose knowledge base vaccine advice has an
    ``after_stop`` wait (corticosteroids: 1 month after a high-dose course of 14 days or more, ACIP;
    abatacept: 3 months, label; rituximab: no labelled interval, an ipexrx 12-month convention to check
    B-cell recovery). Planned vaccine inside the wait -> critical (warning for a convention); given
    inside it -> warning; an end date or a steroid course that cannot be judged -> warning "cannot judge".
    A drug whose knowledge base advice names no wait after stopping (tacrolimus, infliximab...) stopped less than 12
    months before the vaccine -> info "no sourced wait, cannot judge" (the 12 months only decide what is
    shown: an ipexrx convention).
    """
    stopped = ctx.immunosuppressive([m for m in ctx.patient.meds if m.drug_id and m.status == "stopped"])
    if not stopped:
        return []
    alerts: list[Alert] = []
    for v in ctx.patient.vaccinations:
        if v.live is not True or (v.status != "planned" and v.date is None):
            continue
        ref_date = ctx.as_of if v.status == "planned" else v.date
        assert ref_date is not None
        parts: list[tuple[Med, Severity, str, list[Statement | None]]] = []
        for m in stopped:
            drug = ctx.drug(m.drug_id or "")
            wait = _after_stop_advice(ctx, drug)
            if wait is None:
                part = _no_sourced_wait(ctx, m, drug, ref_date, v)
                if part is not None:
                    parts.append(part)
                continue
            if v.status != "planned" and (m.end is None or v.date is None or v.date <= m.end):
                continue  # a given vaccine during the period is the other rule's (live_vaccine_under_immunosuppression)
            stmts: list[Statement | None] = [wait.statement]
            prefix = ""
            if wait.after_high_dose_only:
                j = judge_steroid(ctx, m, until=m.end or ctx.as_of)
                stmts += j.statements
                if j.high is False or j.long_enough is False:
                    continue  # below the dose, or shorter than 14 days: ACIP sets no wait
                if j.high is None or j.long_enough is None:
                    parts.append((m, Severity.WARNING, f"{drug.name} (stopped): {j.note} Whether the "
                                  f"{_wait_text(wait)} wait after stopping applies cannot be judged.", stmts))
                    continue
                prefix = f"{j.note} "
            if m.end is None:
                parts.append((m, Severity.WARNING, f"{drug.name} (stopped, end date not recorded): {prefix}cannot "
                              f"judge whether the {_wait_text(wait)} wait after stopping has passed. "
                              f"{wait.statement.text}", stmts))
                continue
            gap = (ref_date - m.end).days
            if wait.days is not None and gap >= wait.days:
                continue
            when = "planned now" if v.status == "planned" else f"given on {v.date}"
            sev = Severity.CRITICAL if v.status == "planned" else Severity.WARNING
            if wait.origin == "convention" or wait.days is None:
                sev = Severity.WARNING
            conv = " (an ipexrx convention, not a labelled interval)" if wait.origin == "convention" else ""
            parts.append((m, sev, f"{drug.name} stopped on {m.end}, {gap} days before the vaccine ({when}); the "
                          f"wait after stopping is {_wait_text(wait)}{conv}. {prefix}{wait.statement.text}", stmts))
        if not parts:
            continue
        sev = min((p[1] for p in parts), key=lambda x: x.rank)
        vaccine = ctx.kb.vaccines.get(v.vaccine_id) if v.vaccine_id else None
        names = ", ".join(ctx.label(p[0].drug_id or "") for p in parts)
        verb = "planned" if v.status == "planned" else f"given on {v.date}"
        alerts.append(Alert(
            id=f"vaccine:after-stop:{v.path}", rule="vaccines.live_vaccine_after_stopping", family="vaccine",
            severity=sev,
            summary=(f"Live vaccine {vaccine_label(ctx, v)} {verb} within the wait after stopping {names}"
                     if sev is not Severity.INFO else
                     f"Live vaccine {vaccine_label(ctx, v)} {verb} soon after stopping {names}: no sourced wait, "
                     "cannot judge"),
            reasoning=" ".join(p[2] for p in parts),
            action=("Consider discussing with the immunology team whether the immunosuppressive effect has worn off "
                    "before the live vaccine." if sev is Severity.INFO else
                    "Consider deferring the live vaccine until the wait after stopping has passed, and discussing "
                    "timing with the immunology team." if v.status == "planned" else
                    "Consider watching for vaccine-strain infection and discussing with the immunology team."),
            triggers=[_vacc_trigger(v), *(drug_trigger(ctx, p[0]) for p in parts)],
            sources=ctx.refs(vaccine.statement if vaccine else None, *(st for p in parts for st in p[3])),
        ))
    return alerts


# ipexrx convention (display only, never above info): a stopped immunosuppressive drug whose advice in the
# knowledge base names no wait after the last dose is mentioned when it ended less than this many days before the
# vaccine, so a recent stop is said to be unjudged rather than passed over in silence.
UNSOURCED_WAIT_LOOKBACK_DAYS = 365


def _no_sourced_wait(ctx: Ctx, m: Med, drug: Drug, ref_date: dt.date,
                     v: Vaccination) -> tuple[Med, Severity, str, list[Statement | None]] | None:
    advice = drug.safety.vaccines
    if advice is not None and advice.live_vaccines in ("dose-dependent", "no-restriction"):
        return None
    if m.end is None or ref_date < m.end or (v.status != "planned" and v.date is not None and v.date <= m.end):
        return None
    gap = (ref_date - m.end).days
    if gap >= UNSOURCED_WAIT_LOOKBACK_DAYS:
        return None
    return (m, Severity.INFO, f"{drug.name} stopped on {m.end}, {gap} days before the vaccine: the knowledge base has "
            f"no sourced wait after stopping {drug.name} (its label advice covers the treatment period only), so "
            "ipexrx cannot judge whether its effect has worn off (shown for stops within 12 months, an ipexrx "
            "convention).",
            [advice.statement if advice else None])


def _wait_text(wait: LiveVaccineWait) -> str:
    if wait.days is None:
        return "not fixed by the source"
    if wait.days % 30 == 0 and wait.days < 365:
        n = wait.days // 30
        return f"{n} month{'s' if n > 1 else ''} ({wait.days} days)"
    if wait.days == 365:
        return "12 months (365 days)"
    return f"{wait.days} days"


def live_vaccine_after_in_utero_exposure(ctx: Ctx) -> list[Alert]:
    """Live vaccine for an infant exposed in utero to a drug whose label defers live vaccines after birth.

    The exposure is read from the chart's conditions (manifestation entries, FHIR Condition text) that
    state in utero / maternal / prenatal exposure and name the drug ("in utero exposure to infliximab").
    Infliximab: US label at least 6 months after birth -> critical for a planned vaccine before then
    (warning for one already given); the EU's 12 months -> warning between 6 and 12 months. Age
    missing -> warning "cannot judge". The infant's own medications are not involved.
    """
    stated = [man for man in ctx.patient.manifestations if may_state_in_utero_exposure(man.text)]
    if not stated:
        return []
    drugs = [d for d in ctx.kb.drugs.values() if d.safety.vaccines and d.safety.vaccines.in_utero]
    exposures: list[tuple[PatientManifestation, Drug]] = []
    for man in stated:
        for d in drugs:
            names = [d.name, *d.synonyms, *(b.name for b in d.brands)]
            if names_in_utero_exposure(man.text, names):
                exposures.append((man, d))
    if not exposures:
        return []
    alerts: list[Alert] = []
    age = ctx.patient.age_years
    for v in ctx.patient.vaccinations:
        if v.live is not True or (v.status != "planned" and v.date is None):
            continue
        when = ctx.as_of if v.status == "planned" else v.date
        assert when is not None
        months = (age - (ctx.as_of - when).days / 365.25) * 12 if age is not None else None
        for man, d in exposures:
            advice = d.safety.vaccines.in_utero if d.safety.vaccines else None
            assert advice is not None
            stmts: list[Statement | None] = [advice.statement, advice.longer_statement]
            if months is None:
                sev, why = Severity.WARNING, ("cannot judge: the infant's age (birth date) is missing, so ipexrx "
                                              f"cannot tell whether {advice.months_after_birth} months have passed.")
            elif months < advice.months_after_birth:
                sev = Severity.CRITICAL if v.status == "planned" else Severity.WARNING
                why = (f"the infant is {fmt_number(months)} months old at the vaccine date, below the labelled "
                       f"{advice.months_after_birth} months after birth.")
            elif advice.longer_months is not None and months < advice.longer_months:
                sev = Severity.WARNING
                why = (f"the infant is {fmt_number(months)} months old: past the US label's "
                       f"{advice.months_after_birth} months but inside the {advice.longer_months} months of the EU "
                       "product information.")
            else:
                continue
            verb = "planned" if v.status == "planned" else f"given on {v.date}"
            text = advice.statement.text + (f" {advice.longer_statement.text}" if advice.longer_statement else "")
            alerts.append(Alert(
                id=f"vaccine:in-utero:{d.id}:{v.path}", rule="vaccines.live_vaccine_after_in_utero_exposure",
                family="vaccine", severity=sev,
                summary=f"Live vaccine {vaccine_label(ctx, v)} {verb} for an infant exposed to {d.name} in utero",
                reasoning=f"The chart states in utero exposure to {d.name} ('{man.text}'); {why} {text}",
                action=("Consider deferring the live vaccine and discussing timing (and, where available, the "
                        f"infant's {d.name} level) with the immunology or infectious-diseases team; inactivated "
                        "vaccines stay on schedule." if v.status == "planned" else
                        "Consider watching for vaccine-strain infection and discussing with the infectious-diseases "
                        "team."),
                triggers=[_vacc_trigger(v), Trigger(kind="record", ref=man.text, path=man.path,
                                                    detail=f"in utero exposure to {d.name}")],
                sources=ctx.refs(*stmts),
            ))
    return alerts


HSCT_LIVE_VACCINE_MONTHS = 24  # hct-live-vaccine-conditions (IDSA 2013 table 4)


def live_vaccine_after_hsct(ctx: Ctx) -> list[Alert]:
    """A live vaccine planned (or given) less than 24 months after HSCT.

    Why: after a transplant the recipient's immunity is rebuilt from the graft; live vaccines (MMR,
    varicella) wait until 24 months, and then only without GVHD or immunosuppressive drugs. Inside the
    window the vaccine virus can cause disease: critical for a plan. A transplant without a recorded
    date cannot be placed against the window and is said to be so (warning), never assumed long past.
    """
    p = ctx.patient
    if p.hsct_status != "done":
        return []
    statement = next((s for s in ctx.kb.disease.post_hsct if s.id == "hct-live-vaccine-conditions"), None)
    if statement is None:
        return []
    alerts: list[Alert] = []
    for v in p.vaccinations:
        if v.live is not True:
            continue
        when = ctx.as_of if v.status == "planned" else v.date
        label = vaccine_label(ctx, v)
        verb = "planned" if v.status == "planned" else f"given{f' on {v.date}' if v.date else ''}"
        if p.hsct_date is None or when is None:
            sev = Severity.WARNING
            why = ("the HSCT date is not recorded" if p.hsct_date is None else "the vaccination date is not recorded")
            summary = f"Live vaccine {label} {verb} after HSCT: cannot judge the 24-month window ({why})"
        else:
            months = (when - p.hsct_date).days / 30.44
            if months >= HSCT_LIVE_VACCINE_MONTHS or months < 0:
                continue
            sev = Severity.CRITICAL if v.status == "planned" else Severity.WARNING
            summary = (f"Live vaccine {label} {verb} {months:.0f} months after HSCT "
                       f"(live vaccines wait until {HSCT_LIVE_VACCINE_MONTHS} months)")
        alerts.append(Alert(
            id=f"vaccine:after-hsct:{v.path}", rule="vaccines.live_vaccine_after_hsct", family="vaccine",
            severity=sev, summary=summary,
            reasoning=f"HSCT on {p.hsct_date or 'a date not recorded'}. {statement.text}",
            action=("Consider deferring the live vaccine until 24 months after HSCT, and then giving it only "
                    "without GVHD or immunosuppressive drugs and when seronegative."
                    if v.status == "planned" else
                    "Consider watching for vaccine-strain infection and discussing with the transplant team."),
            triggers=[_vacc_trigger(v)], sources=ctx.refs(statement),
        ))
    return alerts
