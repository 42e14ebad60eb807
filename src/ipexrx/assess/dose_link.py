"""Model-based dose suggestions for trough alerts (issue 5): the glue between assessment and dosing.

Why here and lazy: the dosing stack (numpy, scipy, the PK models) costs far more to import than a
whole assessment, and only an out-of-range trough on a modelled drug with a recorded regimen needs
it, so :mod:`ipexrx.dosing` is imported inside :func:`suggest_dose` only. The suggestion carries the
model's citation, the model's own caveats and the drug's "optimal dosing in IPEX not established"
caveat from the knowledge base; it aims at the knowledge base's range for the drug when there is
exactly one (shown with its context), else at the model's own target. Anything that stops the
computation (no model, a dose not in mg, a frequency that cannot be read, a covariate the model
needs and the record lacks) is reported in ``not_computed``, never guessed.
"""

from __future__ import annotations

from ..knowledge.schema import Citation, Statement, TargetRange
from ..patient.normalize import LabResult, Med
from .context import Ctx
from .models import DoseSuggestion

# Model covariates the record can supply from lab results (model name -> lab kind id, canonical unit).
LAB_COVARIATES = {"TBIL": "bilirubin"}


def _lab_covariates(ctx: Ctx) -> dict[str, float]:
    out: dict[str, float] = {}
    for cov, lab_id in LAB_COVARIATES.items():
        for r in reversed(ctx.patient.labs):
            if r.kind.id == lab_id and r.value is not None:
                out[cov] = r.value
                break
    return out


def _sources_text(ctx: Ctx, target: TargetRange) -> str:
    """The knowledge base's sources of ``target``, by title (never their ids)."""
    titles = [ctx.kb.sources[c.source].title for c in target.statement.sources if c.source in ctx.kb.sources]
    return "; ".join(dict.fromkeys(titles)) or "the knowledge base"


def suggest_dose(ctx: Ctx, med: Med, trough: LabResult, ranges: list[TargetRange]) -> DoseSuggestion | None:
    """A regimen for ``med`` from its latest ``trough``; None when the drug has no dosing model."""
    from ..dosing.errors import DosingError, NoUsableModelError
    from ..dosing.patient_input import interval_from_frequency
    from ..dosing.recommend import DEFAULT_MODELS, IPEX_CAVEAT
    from ..dosing.select import recommend_for_drug

    drug_id = med.drug_id or ""
    if drug_id not in DEFAULT_MODELS:
        return None
    caveat = ctx.dosing_caveat(drug_id)
    caveats = [caveat.text if caveat else IPEX_CAVEAT]
    if med.dose is None or med.dose.unit != "mg" or trough.value is None:
        got = "no dose" if med.dose is None else med.dose.original
        return DoseSuggestion(drug=drug_id, caveats=caveats,
                              not_computed=f"a dose in mg per administration is needed to fit the level; got {got}")
    single = [r for r in ranges if r.unit in ("ng/mL", "mcg/L")]
    target = single[0] if len(single) == 1 else None
    covariates: dict[str, float] = {"WT": ctx.patient.weight_kg} if ctx.patient.weight_kg else {}
    covariates.update(_lab_covariates(ctx))
    # the chart's active medications are the co-medication list: a model's co-medication indicator (e.g.
    # posaconazole) is 1 when the drug is on it and 0 when not; drugs outside the knowledge base count by their
    # recognised generic name (omeprazole); an unrecognised entry makes the list incomplete, so nothing is set
    current = [m for m in ctx.patient.meds if m.status == "active"]
    names = [m.drug_id or (m.outside_name or "").strip().lower() for m in current]
    comeds = None if "" in names else sorted({n for n in names if n != drug_id})
    try:
        rec = recommend_for_drug(
            drug_id, covariates, age_years=ctx.patient.age_years, level=trough.value, level_unit="ng/mL",
            dose_mg=med.dose.value, interval_h=interval_from_frequency(med.frequency),
            target_low=target.low if target else None, target_high=target.high if target else None,
            target_unit="ng/mL" if target else None, co_medications=comeds,
            target_basis=(target.context, _sources_text(ctx, target)) if target else None)
    except NoUsableModelError as exc:  # said in words: the models as citations, what each lacks
        why = f"no {ctx.label(drug_id)} model could be used: " + "; ".join(exc.reasons)
        if comeds is None and exc.needs_comedications:
            why += (" (a medication on the chart could not be identified, so no other drug can be ruled out: "
                    "co-medications are never assumed)")
        return DoseSuggestion(drug=drug_id, caveats=caveats, not_computed=why)
    except DosingError as exc:
        return DoseSuggestion(drug=drug_id, caveats=caveats, not_computed=str(exc))
    partners = sorted({ctx.label(m.drug_id) for m in ctx.active if m.drug_id and m.drug_id != drug_id
                       and ctx.index.interactions.get(frozenset((drug_id, m.drug_id)))})
    if partners:
        caveats.append(f"The level was fitted on the current regimen, which includes {', '.join(partners)} "
                       f"(interacting with {ctx.label(drug_id)} in the knowledge base): the suggestion holds only "
                       "while that combination is unchanged.")
    for c in rec.caveats:
        if target is not None and c.startswith("Target range ") and "knowledge base's range" in c:
            continue  # the target is the KB's range, cited on the alert with its context
        if c not in caveats:
            caveats.append(c)
    return DoseSuggestion(
        drug=drug_id, model_id=rec.model_id, model_citation=rec.citation, model_doi=rec.doi, basis=rec.basis,
        dose_mg=rec.dose_mg, interval_h=rec.interval_h, daily_dose_mg=rec.daily_dose_mg, form=rec.form,
        administration=rec.administration, target_low=rec.target_low, target_high=rec.target_high,
        target_unit=rec.target_unit, target_context=target.context if target else rec.target_context,
        predicted_trough=rec.predicted, predicted_low=rec.predicted_low, predicted_high=rec.predicted_high,
        probability_in_target=rec.probability_in_target, caveats=caveats, warnings=list(rec.warnings),
        model_choice=rec.model_choice.reason if rec.model_choice is not None else None,
    )


def suggestion_statements(ctx: Ctx, s: DoseSuggestion) -> list[Statement | None]:
    """The KB statements to cite with a suggestion: the dosing caveat and the model's paper (by DOI)."""
    out: list[Statement | None] = [ctx.dosing_caveat(s.drug)]
    if s.model_doi:
        for src in ctx.kb.sources.values():
            if src.doi and src.doi.lower() == s.model_doi.lower():
                out.append(Statement(text=s.model_citation or src.citation, sources=[Citation(source=src.id)]))
                break
    return out
