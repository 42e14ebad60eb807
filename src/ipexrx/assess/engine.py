"""``assess``: from a patient (any supported input) to an :class:`Assessment`.

Why pure and explicit: the result depends only on the input, the knowledge base and ``as_of`` (the
date the monitoring intervals are measured to), so an assessment can be reproduced exactly in a
test, an audit or a batch re-run. Nothing here touches the terminal, the network or the clock
except ``as_of``'s default (today).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from ..knowledge.loader import KnowledgeBase, get_kb
from ..knowledge.schema import Manifestation, Statement, TherapyOption
from ..memo import remembered
from ..patient.hsct import format_date
from ..patient.normalize import InputWarning, PatientData
from ..patient.reader import read_patient
from .context import Ctx, assess_index
from .models import (
    Alert,
    Assessment,
    CitedStatement,
    EvidenceFigure,
    HsctStatus,
    ManifestationPlan,
    MedicationView,
    Mode,
    OptionView,
    PatientSummary,
    PlanChoice,
)
from .rules import RULES

_HSCT_FINDING = re.compile(r"HSCT|transplant", re.I)
_HSCT_FIGURE = re.compile(r"HSCT|transplant|immunosuppression|survival|\bOS\b|mortality|^P value", re.I)
FAMILY_ORDER = ["duplication", "interaction", "vaccine", "screening", "result", "infection", "monitoring", "dosing",
                "record"]


# Rules whose alerts belong to the IPEX plan, not to drug safety: skipped when the plan is not shown.
# ("Optimal dosing in IPEX has not been established" says nothing useful about a Crohn's chart.)
IPEX_PLAN_RULES = frozenset({"dosing.dosing_not_established"})
PLAN_CHOICES: tuple[PlanChoice, ...] = ("auto", "always", "never")
_SAFETY = "drug-safety checks ran (interactions, duplicates, doses, labs, monitoring, screening, vaccines, records)"


def plan_mode(diagnosis: str, ipex_plan: PlanChoice = "auto", disorder: str | None = None) -> tuple[Mode, str]:
    """The report's mode and the one sentence saying why, from the chart's diagnosis and the user's choice.

    ``diagnosis`` is PatientData.diagnosis: 'ipex', 'ipex-like', 'unconfirmed' (our record: IPEX suspected,
    not genetically confirmed) or 'none' (no IPEX or IPEX-like diagnosis: a FHIR chart without such a
    Condition, or a record saying so). ``ipex_plan``: 'auto' shows the IPEX plan when the chart has IPEX or an
    IPEX-like disorder; 'always' shows it for any chart; 'never' never shows it. Drug safety runs in every mode.
    """
    if ipex_plan not in PLAN_CHOICES:
        raise ValueError(f"ipex_plan must be one of {', '.join(PLAN_CHOICES)}, got {ipex_plan!r}")
    if ipex_plan == "never":
        return "drug-safety-only", (f"IPEX plan turned off on request (ipex_plan 'never'; chart diagnosis: "
                                    f"{diagnosis}); HSCT and options per manifestation not shown; {_SAFETY}.")
    if diagnosis == "ipex":
        return "ipex", f"IPEX (FOXP3) in the chart: IPEX plan shown (HSCT, options per manifestation); {_SAFETY}."
    if diagnosis == "ipex-like":
        what = f" ({disorder})" if disorder else ""
        return "ipex-like", (f"IPEX-like disorder in the chart{what}: IPEX plan shown, its IPEX evidence may not "
                             f"transfer; {_SAFETY}.")
    if diagnosis == "unconfirmed":
        return "ipex-unconfirmed", ("IPEX suspected, not genetically confirmed (diagnosis 'unconfirmed'): IPEX plan "
                                    f"shown, its evidence comes from proven IPEX; {_SAFETY}.")
    if ipex_plan == "always":
        return "ipex-plan-on-request", ("No IPEX or IPEX-like diagnosis in the chart; IPEX plan shown because it was "
                                        f"asked for (ipex_plan 'always'), for reference only; {_SAFETY}.")
    return "drug-safety-only", f"No IPEX or IPEX-like diagnosis in the chart; IPEX plan not shown; {_SAFETY}."


def assess(source: str | bytes | dict[str, Any] | PatientData, *, as_of: dt.date | None = None,
           kb: KnowledgeBase | None = None, dose_suggestions: bool = True,
           ipex_plan: PlanChoice = "auto", strict: bool = False) -> Assessment:
    """Assess one patient. Raises only :class:`~ipexrx.patient.PatientInputError` (and subclasses), and
    ValueError for an ``ipex_plan`` that is not one of auto | always | never.

    ``dose_suggestions``: attach a model-based regimen to trough alerts of modelled drugs (about 0.1 s
    per such alert; the dosing stack is imported only then). Throughput-bound callers may turn it off.
    ``ipex_plan``: whether the IPEX plan (HSCT section, options per manifestation) is shown -- 'auto' (when
    the chart has IPEX or an IPEX-like disorder), 'always' or 'never' (see :func:`plan_mode`). Every
    drug-safety rule runs whatever it says; ``Assessment.mode`` / ``mode_reason`` say which mode applied.
    ``strict``: a FHIR Bundle's entries are validated in full (fhir.resources) before they are read.
    """
    kb = kb or get_kb()
    as_of = as_of or dt.date.today()
    if ipex_plan not in PLAN_CHOICES:
        raise ValueError(f"ipex_plan must be one of {', '.join(PLAN_CHOICES)}, got {ipex_plan!r}")
    patient = source if isinstance(source, PatientData) else read_patient(source, kb, as_of, strict)
    mode, reason = plan_mode(patient.diagnosis, ipex_plan, patient.ipex_like_id or patient.ipex_like_text)
    show_plan = mode != "drug-safety-only"
    ctx = Ctx(kb=kb, index=assess_index(kb), patient=patient, as_of=as_of, dose_suggestions=dose_suggestions)
    ordered = _run_rules(ctx, show_plan)
    hsct = hsct_status(ctx) if show_plan else None
    if hsct is not None and mode == "ipex-plan-on-request":
        hsct = hsct.model_copy(update={"applies_to_diagnosis": (
            "No IPEX or IPEX-like diagnosis in the chart: shown on request; the statements and figures below "
            "come from FOXP3 IPEX and do not apply to other conditions.")})
    return Assessment(
        as_of=as_of, kb_version=kb.meta.content_version, mode=mode, mode_reason=reason, ipex_plan=show_plan,
        patient=PatientSummary(id=patient.id, age_years=round(patient.age_years, 2) if patient.age_years is not None
                               else None, sex=patient.sex, weight_kg=patient.weight_kg, diagnosis=patient.diagnosis,
                               foxp3_variant=patient.foxp3_variant,
                               ipex_like=patient.ipex_like_id or patient.ipex_like_text),
        alerts=ordered, hsct=hsct, manifestations=manifestation_plans(ctx) if show_plan else [],
        medications=medication_views(ctx, show_plan),
        warnings=list(patient.warnings) if show_plan else [_without_plan(w) for w in patient.warnings],
        disclaimer=kb.meta.disclaimer,
    )


def _run_rules(ctx: Ctx, show_plan: bool) -> list[Alert]:
    """Every alert rule's alerts, each alert once, most severe first."""
    alerts: dict[str, Alert] = {}
    for name, rule in RULES.items():
        if not show_plan and name in IPEX_PLAN_RULES:
            continue
        for alert in rule(ctx):
            alerts.setdefault(alert.id, alert)
    return sorted(alerts.values(), key=lambda a: (a.severity.rank, FAMILY_ORDER.index(a.family), a.id))


def assess_alerts(patient: PatientData, *, as_of: dt.date, kb: KnowledgeBase | None = None,
                  dose_suggestions: bool = True, ipex_plan: PlanChoice = "auto") -> tuple[Mode, list[Alert]]:
    """The mode and the alerts of :func:`assess`, without the IPEX plan's sections.

    Why: a face that shows only alerts (CDS cards are alerts; the plan never becomes a card) would
    otherwise build the HSCT section, the options per manifestation and the medication views for
    nothing -- about a quarter of an assessment's time on a CDS server answering every chart an EHR
    opens. The alerts are exactly those :func:`assess` gives for the same arguments (the same rules,
    the same mode, the same order; a test compares them)."""
    kb = kb or get_kb()
    mode, _reason = plan_mode(patient.diagnosis, ipex_plan, patient.ipex_like_id or patient.ipex_like_text)
    ctx = Ctx(kb=kb, index=assess_index(kb), patient=patient, as_of=as_of, dose_suggestions=dose_suggestions)
    return mode, _run_rules(ctx, mode != "drug-safety-only")


_NO_OPTIONS = "; no options shown for it"


def _without_plan(w: InputWarning) -> InputWarning:
    """Without the IPEX plan a condition that is not an IPEX manifestation is simply not used for options:
    say that, rather than suggest that options are missing (Crohn's disease is not an IPEX manifestation)."""
    if w.code == "unknown-manifestation" and w.message.endswith(_NO_OPTIONS):
        return w.model_copy(update={"message": w.message[: -len(_NO_OPTIONS)]
                                    + "; not used (no IPEX plan in this report; drug-safety checks do not need it)"})
    return w


_FIGURES: dict[int, tuple[object, list[EvidenceFigure]]] = {}
_OPTION_DRUGS: dict[tuple[int, str], tuple[object, frozenset[str]]] = {}


def _hsct_figures(ctx: Ctx) -> list[EvidenceFigure]:
    """The HSCT outcome figures of the evidence records, built once per knowledge base (they do not
    depend on the patient, and building them was a fifth of an assessment's time)."""
    return remembered(_FIGURES, id(ctx.kb), ctx.kb, lambda: _new_hsct_figures(ctx), limit=8)


def _new_hsct_figures(ctx: Ctx) -> list[EvidenceFigure]:
    kb = ctx.kb
    figures: list[EvidenceFigure] = []
    wanted = {f"statement:{s.id}" for s in (kb.disease.cure, *kb.disease.hsct_evidence) if s.id}
    for ev in kb.evidence.values():
        if not wanted & set(ev.supports):
            continue
        ref = ctx.index.ref(_citation(ev.source))
        for f in ev.findings:
            if not _HSCT_FINDING.search(f.text):
                continue
            for fig in f.figures:
                if fig.unit in ("%", "p-value") and _HSCT_FIGURE.search(fig.name):
                    figures.append(EvidenceFigure(finding=f.text, name=fig.name, value=fig.value, unit=fig.unit,
                                                  ci_low=fig.ci_low, ci_high=fig.ci_high, source=ref))
    return figures


def hsct_status(ctx: Ctx) -> HsctStatus:
    """Curative-therapy status; when not transplanted, the suggestion to evaluate, with outcome figures."""
    kb, p = ctx.kb, ctx.patient
    cure = kb.disease.cure
    statements: list[Statement | None] = [cure, *kb.disease.hsct_evidence]
    figures = list(_hsct_figures(ctx))  # frozen models: shared between assessments as they are
    notes: list[str] = [s.text for s in kb.disease.hsct_evidence]
    if p.diagnosis == "ipex-like":
        applies = ("IPEX-like disorder: the statements and figures below come from FOXP3 IPEX and may not transfer; "
                   "HSCT decisions depend on the specific disorder.")
    elif p.diagnosis == "unconfirmed":
        applies = "Diagnosis not genetically confirmed: the figures below come from genetically proven IPEX."
    else:
        applies = "IPEX (FOXP3)" + (f", variant {p.foxp3_variant}" if p.foxp3_variant else "")
    when = format_date(p.hsct_date, p.hsct_date_precision)
    followup: list[CitedStatement] = []
    gvhd_drugs: list[str] = []
    if p.hsct_status == "done":
        rec = None
        followup = [CitedStatement(id=s.id, text=s.text, evidence=s.evidence.value if s.evidence else None,
                                   sources=ctx.refs(s)) for s in kb.disease.post_hsct]
        statements.extend(kb.disease.post_hsct)
        kind = f" ({p.hsct_kind})" if p.hsct_kind else ""
        notes[:0] = [f"HSCT performed{kind}{f' on {when}' if when else ' (date not recorded)'}: curative therapy "
                     "given; post-transplant follow-up below (chimerism, immune reconstitution and revaccination, "
                     "GvHD prophylaxis), each statement with its source.", *_since_hsct(p.hsct_date, ctx.as_of)]
        if p.hsct_kind == "autologous":
            notes.insert(1, "Recorded as an autologous transplant: donor chimerism and GvHD concern allogeneic "
                         "transplants - check the transplant record.")
        gvhd_drugs = sorted({m.drug_id for m in (*ctx.active, *ctx.planned)  # type: ignore[misc]
                             if m.drug_id in GVHD_PROPHYLAXIS_DRUGS and m.drug_id in kb.drugs})
        if gvhd_drugs:
            notes.append(f"GvHD-prophylaxis drugs on record: {', '.join(gvhd_drugs)}; their interactions, levels "
                         "and monitoring are checked by the alert rules (see the alerts).")
        else:
            notes.append("No GvHD-prophylaxis drug (" + ", ".join(sorted(GVHD_PROPHYLAXIS_DRUGS)) + ") is on "
                         "record as current or planned: if the patient takes one, add it so that its interactions "
                         "are checked.")
    elif p.hsct_status == "planned":
        rec = (f"HSCT is planned{f' for {when}' if when else ''}; drug therapy is the bridge to "
               "transplant.")
    else:
        rec = ("Consider referral to a transplant centre for HSCT evaluation: it is the only curative therapy "
               "(statement and outcome figures below, with their sources).")
        if p.diagnosis != "ipex":
            rec = "Consider HSCT evaluation once the diagnosis is settled; " + rec[len("Consider "):]
        if p.hsct_status_basis == "unclear":  # named without a status: a transplanted child must not be referred
            rec = ("Confirm the transplant history first: the record mentions HSCT but not whether it was done "
                   "or planned. If the patient has not been transplanted: " + rec[0].lower() + rec[1:])
        elif p.hsct_status_basis == "not-recorded":
            rec = ("No transplant is recorded; if the patient has not been transplanted: " + rec[0].lower()
                   + rec[1:])
    refs = ctx.refs(*statements)
    for fig_view in figures:
        if all(r.citation != fig_view.source.citation for r in refs):
            refs.append(fig_view.source)
    notes.extend(f"Record: {n}" for n in p.hsct_notes)
    return HsctStatus(status=p.hsct_status, status_basis=p.hsct_status_basis,  # type: ignore[arg-type]
                      date=p.hsct_date,  # type: ignore[arg-type]
                      date_precision=p.hsct_date_precision, kind=p.hsct_kind,  # type: ignore[arg-type]
                      curative_statement=cure.text, recommendation=rec, applies_to_diagnosis=applies,
                      figures=figures, notes=notes, read_from=list(p.hsct_basis), followup=followup,
                      gvhd_prophylaxis_drugs=gvhd_drugs, sources=refs)


# Drugs the knowledge base has that are used for GvHD prophylaxis (the IPEX cohort used cyclosporine with
# mycophenolate or steroids; statement bz-gvhd-prophylaxis); listing them only says the record has them.
GVHD_PROPHYLAXIS_DRUGS = frozenset({"tacrolimus", "cyclosporine", "sirolimus", "mycophenolate", "methotrexate"})


def _since_hsct(date: dt.date | None, as_of: dt.date) -> list[str]:
    """Months since the transplant, set against the 6- and 24-month marks of the revaccination statements."""
    if date is None:
        return ["Transplant date not recorded: the time since HSCT (which the revaccination statements below "
                "depend on) cannot be judged."]
    months = (as_of.year - date.year) * 12 + as_of.month - date.month - (1 if as_of.day < date.day else 0)
    text = f"About {months} months since HSCT as of {as_of}."
    if months < 6:
        text += " Under 6 months: before the start of inactivated revaccination named below."
    elif months < 24:
        text += " Under 24 months: before the window for live vaccines named below."
    return [text]


def _citation(source_id: str) -> Any:
    from ..knowledge.schema import Citation

    return Citation(source=source_id)


def _option_drugs(ctx: Ctx, opt: TherapyOption) -> frozenset[str]:
    return remembered(_OPTION_DRUGS, (id(ctx.kb), opt.id), ctx.kb, lambda: _new_option_drugs(ctx, opt), limit=5000)


def _new_option_drugs(ctx: Ctx, opt: TherapyOption) -> frozenset[str]:
    ids = set(opt.drugs)
    if opt.drug_classes and not ids:
        wanted = set(opt.drug_classes)
        ids |= {d.id for d in ctx.kb.drugs.values() if wanted & set(d.classes)}
    return frozenset(ids)


_OPTION_VIEWS: dict[tuple[int, int, tuple[str, ...], tuple[str, ...]], tuple[object, OptionView]] = {}


def _option_view(ctx: Ctx, opt: TherapyOption) -> OptionView:
    """An option as shown to this patient. It depends on the option and on which of its drugs the patient
    receives or has planned, nothing else, so one view per such combination is built and shared between
    assessments (a frozen model; nothing appends to its lists)."""
    members = _option_drugs(ctx, opt)
    receives = sorted({m.drug_id for m in ctx.active if m.drug_id in members})  # type: ignore[type-var]
    planned = sorted({m.drug_id for m in ctx.planned if m.drug_id in members})  # type: ignore[type-var]
    # the option object is the owner: it belongs to one knowledge base, so it also stands for that one
    return remembered(_OPTION_VIEWS, (id(ctx.kb), id(opt), tuple(receives), tuple(planned)), opt,
                      lambda: _new_option_view(ctx, opt, receives, planned), limit=20_000)


def _new_option_view(ctx: Ctx, opt: TherapyOption, receives: list[str], planned: list[str]) -> OptionView:
    caveats: list[str] = []
    if not opt.on_source_page:
        caveats.append("Beyond the source page (from the literature).")
    for d in receives + planned:
        cav = ctx.dosing_caveat(d)
        if cav is not None and cav.text not in caveats:
            caveats.append(cav.text)
    return OptionView(option_id=opt.id, label=opt.label, role=opt.role, drugs=list(opt.drugs),
                      drug_classes=list(opt.drug_classes), condition=opt.condition,
                      evidence_level=opt.evidence_level.value, statement=opt.statement.text,
                      evidence=[e.text for e in opt.evidence], on_source_page=opt.on_source_page,
                      patient_receives=receives, patient_planned=planned, caveats=caveats,
                      sources=ctx.refs(opt.statement, *opt.evidence))


def _ordered(options: list[TherapyOption]) -> list[TherapyOption]:
    return sorted(options, key=lambda o: o.sort_key)


def manifestation_plans(ctx: Ctx) -> list[ManifestationPlan]:
    plans: list[ManifestationPlan] = []
    seen: set[str] = set()
    for pm in ctx.patient.manifestations:
        if pm.manifestation_id is None:
            plans.append(ManifestationPlan(manifestation_id=None, name=pm.text, input=pm.text, path=pm.path,
                                           hpo=[pm.hpo] if pm.hpo else [],
                                           note="Not in the knowledge base: no options shown."))
            continue
        if pm.manifestation_id in seen:
            continue
        seen.add(pm.manifestation_id)
        man: Manifestation = ctx.kb.manifestations[pm.manifestation_id]
        plans.append(ManifestationPlan(
            manifestation_id=man.id, name=man.name, input=pm.text, path=pm.path, hpo=[c.code for c in man.hpo],
            options=[_option_view(ctx, o) for o in _ordered(list(man.therapy))],
            caveats=[c.text for c in man.caveats], sources=ctx.refs(*man.caveats),
            note=None if man.therapy else "The knowledge base lists no drug options for this manifestation.",
        ))
    like_id = ctx.patient.ipex_like_id
    if like_id and like_id in ctx.kb.ipex_like:
        dis = ctx.kb.ipex_like[like_id]
        plans.append(ManifestationPlan(
            manifestation_id=None, name=f"{dis.name} ({dis.gene.symbol}): disorder-directed options",
            input=ctx.patient.ipex_like_text or dis.id,
            options=[_option_view(ctx, o) for o in _ordered(list(dis.therapies))],
            caveats=[f.text for f in dis.features[:1]], sources=ctx.refs(dis.inheritance, *dis.features),
            note="IPEX-like disorder: beyond the source page; options come from the literature.",
        ))
    return plans


def medication_views(ctx: Ctx, ipex_plan: bool = True) -> list[MedicationView]:
    """The records as read. The IPEX dosing caveat is part of the IPEX plan: not shown without it."""
    out = []
    for m in ctx.patient.meds:
        cav = ctx.dosing_caveat(m.drug_id) if ipex_plan and m.drug_id and m.dose else None
        out.append(MedicationView(input=m.text, path=m.path, drug_id=m.drug_id, status=m.status,
                                  dose=str(m.dose) if m.dose else None, route=m.route, frequency=m.frequency,
                                  start_date=m.start, in_knowledge_base=m.drug_id is not None,
                                  drug_name=ctx.kb.drugs[m.drug_id].name if m.drug_id in ctx.kb.drugs else None,
                                  dosing_caveat=cav.text if cav else None, brand=m.brand, product=m.product_id,
                                  formulation=m.formulation, identified_by=m.identified_by,
                                  route_basis=m.route_basis, did_you_mean=list(m.suggestions),
                                  known_outside_kb=m.outside_name))
    return out
