"""The 'optimal dosing not established' caveat wherever a dose is shown.

Why: the source page and the literature agree that no dose of any of these drugs has been
established for IPEX (no comparative studies); a dose printed by ipexrx -- the patient's own or
a label-fraction arithmetic -- must never read as a recommendation. One info alert lists every
dosed drug in the knowledge base, citing each drug's ``dosing_caveat`` (or the disease-level caveat).
"""

from __future__ import annotations

from ...knowledge.schema import Statement
from ...patient.medtext import read_product_text
from ...patient.units import fmt_number
from ..context import Ctx, drug_trigger
from ..models import Alert, Severity


def dosing_not_established(ctx: Ctx) -> list[Alert]:
    """Info alert when any current/planned knowledge base drug has a recorded dose."""
    dosed = [m for m in ctx.current_and_planned if m.drug_id and m.dose is not None]
    if not dosed:
        return []
    caveats: list[Statement | None] = [ctx.dosing_caveat(m.drug_id or "") for m in dosed]
    first = next((c for c in caveats if c is not None), None)
    return [Alert(
        id="dosing:not-established", rule="dosing.dosing_not_established", family="dosing", severity=Severity.INFO,
        summary="Optimal dosing in IPEX has not been established for the doses shown",
        reasoning=(first.text if first else "No dose has been established for IPEX.")
        + " The doses shown are the record's own, listed for checking, not recommended.",
        action="Consider dosing by response, tolerance and (where measured) drug levels, with specialist input.",
        triggers=[drug_trigger(ctx, m) for m in dosed], sources=ctx.refs(*caveats),
    )]


def topical_cni_age(ctx: Ctx) -> list[Alert]:
    """Topical calcineurin inhibitors (Elidel, Protopic) against their labelled minimum ages and use.

    Per current/planned record applied to the skin of a drug with ``Safety.topical_limits``: the
    patient's age below a limit that applies to the record's strength (read from the record text, "0.1%")
    -> warning citing the label; a strength-specific limit (tacrolimus 0.1% from 16 years) with the
    strength not stated and the patient below that age -> info "cannot judge: strength not stated"; age
    missing -> info "cannot judge". The label's "not for immunocompromised patients": when the patient also
    has a current/planned systemic immunosuppressive drug it is added to the reasoning (info on its own).
    """
    alerts: list[Alert] = []
    age = ctx.patient.age_years
    for m in ctx.current_and_planned:
        if not m.drug_id or m.systemic or m.route != "topical":
            continue
        safety = ctx.drug(m.drug_id).safety
        if not safety.topical_limits:
            continue
        name = ctx.label(m.drug_id)
        pct = read_product_text(m.text).percent
        pct_txt = f"{fmt_number(pct)}%" if pct is not None else "strength not stated"
        stmts: list[Statement | None] = []
        problems: list[str] = []
        unsure: list[str] = []
        for lim in safety.topical_limits:
            if age is not None and age >= lim.age_min_years:
                continue
            if lim.strength_percent is not None and pct is not None and abs(pct - lim.strength_percent) > 1e-9:
                continue  # a limit for another strength
            stmts.append(lim.statement)
            limit = f"not below {fmt_number(lim.age_min_years)} years" + (
                f" for the {fmt_number(lim.strength_percent)}% strength" if lim.strength_percent else "")
            if age is None:
                unsure.append(f"cannot judge: age missing (label: {limit})")
            elif lim.strength_percent is not None and pct is None:
                unsure.append(f"cannot judge: strength not stated, and the patient is {fmt_number(age)} years old "
                              f"(label: {limit})")
            else:
                problems.append(f"the patient is {fmt_number(age)} years old (label: {limit})")
        immuno = ctx.immunosuppressive(ctx.current_and_planned)
        extra = ""
        if safety.topical_immunocompromised is not None and immuno:
            stmts.append(safety.topical_immunocompromised)
            extra = (f" The patient also has systemic {', '.join(ctx.label(x.drug_id or '') for x in immuno)}: "
                     f"{safety.topical_immunocompromised.text}")
            if not problems and not unsure:
                unsure.append("outside the labelled use while systemically immunosuppressed")
        if not problems and not unsure:
            continue
        sev = Severity.WARNING if problems else Severity.INFO
        findings = "; ".join(problems + unsure)
        alerts.append(Alert(
            id=f"dosing:topical-age:{m.path}", rule="dosing.topical_cni_age", family="dosing", severity=sev,
            summary=f"Topical {name} ({pct_txt}): {findings}",
            reasoning=" ".join(s.text for s in stmts if s is not None and s is not safety.topical_immunocompromised)
            + f" Record: {m.describe()}; age {fmt_number(age) + ' years' if age is not None else 'not recorded'}."
            + extra,
            action=(f"Consider whether topical {name} is appropriate at this age, or another treatment (label "
                    "instruction)." if problems else
                    "Consider recording the patient's age and the product strength so the label limits can be "
                    "checked."),
            triggers=[drug_trigger(ctx, m)], sources=ctx.refs(*stmts),
        ))
    return alerts
