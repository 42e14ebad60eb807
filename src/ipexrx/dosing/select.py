"""Which model for this child? Rank the clinical models of a drug by how well their source population matches
the patient, then - when levels exist - weigh them by how well each explains the patient's levels.

Why: no population-PK model was developed in IPEX. Several paediatric models fit an IPEX child about equally
well on paper (a paediatric HSCT cohort, children with immune cytopenia, children with vascular anomalies), and
they can disagree. A single hidden default would hide that disagreement; this module makes the choice visible:

* **a priori** (no levels): the model whose population matches best is chosen, and the reason is shown
  (required covariates available, route, age and weight inside the cohort ranges, clinical setting closest to
  IPEX). Every other usable model's suggestion is shown beside it, so the spread between models is visible.
* **a posteriori** (levels): every usable model is fitted; model weights are proportional to each model's
  marginal likelihood of the levels, approximated by Laplace's method (NONMEM's individual phi objective: the
  MAP objective plus ln|Omega| - ln|ETC|; for log-additive error the Jacobian 2 sum ln y makes it comparable
  with linear-scale models). The model with the largest weight gives the suggestion (model selection); the
  model-averaged prediction of that regimen (sum of weight x prediction) and each model's own suggestion are
  reported (model averaging), with a warning when the models disagree.

Model selection and averaging for precision dosing: Uster DW et al., Clin Pharmacol Ther 2021;109:175-83,
doi:10.1002/cpt.2065 (their weights are computed differently: see docs/dosing.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import DosingError, NoUsableModelError
from .model import CompiledModel, all_models, get_model
from .recommend import Recommendation

# How close a source population's clinical setting is to an IPEX child (higher = closer). Immune dysregulation
# and autoimmunity share the disease biology; HSCT is the curative procedure most IPEX children undergo; the
# enteropathy resembles very-early-onset inflammatory bowel disease. Solid-organ transplant cohorts differ most
# (graft function, donor covariates, early post-operative changes).
CONTEXT_CLOSENESS: dict[str, int] = {
    "immune-dysregulation": 3, "autoimmune": 2, "hsct": 2, "inflammatory-bowel-disease": 2,
    "bone-marrow-failure": 1, "vascular-anomaly": 1, "epilepsy": 1, "oncology": 1,
    "renal-transplant": 0, "liver-transplant": 0, "heart-transplant": 0,
}
CONTEXT_LABELS = {"hsct": "HSCT", "immune-dysregulation": "immune dysregulation",
                  "inflammatory-bowel-disease": "inflammatory bowel disease"}
DISAGREEMENT_RATIO = 2.0  # models whose suggested daily doses differ more than 2-fold: say so
SELECTION_SOURCE = ("Uster DW et al. A model averaging/selection approach improves the predictive performance of "
                    "model-informed precision dosing. Clin Pharmacol Ther 2021;109:175-83, doi:10.1002/cpt.2065")


@dataclass
class Candidate:
    """One clinical model considered for a patient."""

    model_id: str
    title: str
    citation: str
    doi: str | None
    usable: bool
    match_score: int = 0
    matches: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    excluded_because: str | None = None
    missing: list[str] = field(default_factory=list)  # required covariates that were not given
    weight: float | None = None  # a posteriori only
    minus2_log_likelihood: float | None = None
    suggested_dose_mg: float | None = None
    suggested_interval_h: float | None = None
    suggested_daily_dose_mg: float | None = None
    predicted_for_chosen: float | None = None  # this model's prediction of the chosen regimen

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelChoice:
    drug: str
    method: str  # "population match" | "model averaging"
    chosen_model_id: str
    reason: str
    candidates: list[Candidate]
    metric: str = ""
    unit: str = ""
    averaged_prediction: float | None = None
    prediction_range: tuple[float, float] | None = None
    daily_dose_range_mg: tuple[float, float] | None = None
    source: str = SELECTION_SOURCE
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["candidates"] = [c.as_dict() for c in self.candidates]
        return d


def clinical_models(drug: str) -> list[CompiledModel]:
    key = drug.strip().lower()
    out = [m for m in all_models() if m.spec.kind == "clinical" and m.spec.drug == key]
    if not out:
        drugs = sorted({m.spec.drug for m in all_models() if m.spec.kind == "clinical"})
        raise DosingError(f"no dosing model for {drug!r}; modelled drugs: {', '.join(drugs)}")
    return out


def _route(m: CompiledModel) -> str:
    routes = {d.route for d in m.spec.dosing.values()}
    return "intravenous" if routes <= {"iv", "intravenous"} else "oral"


def assess_match(m: CompiledModel, covariates: dict[str, float], age_years: float | None,
                 route: str = "oral") -> Candidate:
    """How well the model's source population matches the patient; unusable when a required covariate is
    missing or the route differs (a model cannot be applied to a patient it has no inputs for)."""
    s = m.spec
    c = Candidate(m.id, s.title, s.citation.text, s.citation.doi, usable=True)
    missing = [f"{n} ({cv.description}" + ("" if cv.unit == "1" else f", {cv.unit}") + ")"
               for n, cv in s.covariates.items() if cv.default is None and n not in covariates]
    if missing:
        c.usable = False
        c.excluded_because = "needs " + "; ".join(missing) + ", not given"
        c.missing = [n for n, cv in s.covariates.items() if cv.default is None and n not in covariates]
        return c
    if _route(m) != route:
        c.usable = False
        c.excluded_because = f"built on {_route(m)} doses; the regimen is {route}"
        return c
    pop = s.population
    _range_match(c, "weight", covariates.get("WT"), pop.weight_kg, "kg")
    _range_match(c, "age", age_years, pop.age_years, "years")
    if pop.contexts:
        best = max(pop.contexts, key=lambda x: CONTEXT_CLOSENESS.get(x, 0))
        close = CONTEXT_CLOSENESS.get(best, 0)
        c.match_score += close
        settings = ", ".join(CONTEXT_LABELS.get(x, x.replace("-", " ")) for x in pop.contexts)
        (c.matches if close >= 2 else c.mismatches).append(
            f"source population: {settings}" + (" (close to IPEX)" if close >= 2 else " (not close to IPEX)"))
    return c


def exclusion_in_words(c: Candidate) -> str:
    """Why a model was not used, for clinical text: the model named as a citation, what it lacks in the words of
    its covariates' labels ("the Andrews 2018 tacrolimus model needs to know whether the kidney donor was
    deceased, the eGFR and the haematocrit"); no model id, no covariate code."""
    spec = get_model(c.model_id).spec
    name = f"the {spec.citation_name}"
    if c.missing:
        words = [spec.covariates[n].in_words() for n in c.missing]
        listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
        return f"{name} needs to know {listed}"
    if c.excluded_because and c.excluded_because.startswith("built on"):
        return f"{name} was {c.excluded_because}"
    return f"{name} {c.excluded_because or 'could not be used'}"


def _range_match(c: Candidate, what: str, value: float | None, cohort: tuple[float, float] | None,
                 unit: str) -> None:
    """3 points for a value inside the source cohort's range; a missing value is 'cannot judge', no points."""
    if cohort is None:
        return
    lo, hi = cohort
    if value is None:
        c.mismatches.append(f"{what} not given: cannot judge against the cohort's {lo:g}-{hi:g} {unit}")
    elif lo <= value <= hi:
        c.match_score += 3
        c.matches.append(f"{what} {value:g} {unit} inside the cohort's {lo:g}-{hi:g} {unit}")
    else:
        c.mismatches.append(f"{what} {value:g} {unit} outside the cohort's {lo:g}-{hi:g} {unit}")


def rank_models(drug: str, covariates: dict[str, float], age_years: float | None = None,
                route: str = "oral") -> list[Candidate]:
    """Usable models first, best population match first; ties keep the larger cohort first."""
    models = clinical_models(drug)
    size = {m.id: m.spec.population.n_subjects or 0 for m in models}
    cands = [assess_match(m, covariates, age_years, route) for m in models]
    return sorted(cands, key=lambda c: (not c.usable, -c.match_score, -size[c.model_id], c.model_id))


def minus2_log_likelihood(rec: Recommendation) -> float | None:
    """Laplace approximation of -2 ln p(levels | model) from the individual fit (constant terms dropped;
    they are equal for every model fitted to the same levels)."""
    fr = rec.fit
    if fr is None or not math.isfinite(fr.obj):
        return None
    m = get_model(fr.model_id)
    val = float(fr.obj)
    quant = ~np.isnan(fr.dv) & ~fr.blq
    log_rows = np.array([m.outputs[0][3].model == "log_additive"] * len(fr.dv), dtype=bool)
    if np.any(log_rows & quant):
        val += 2.0 * float(np.sum(np.log(fr.dv[log_rows & quant])))
    return val


def _own_covariates(m: CompiledModel, covariates: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in covariates.items() if k in m.spec.covariates}


def with_comedications(m: CompiledModel, covariates: dict[str, float],
                       co_medications: list[str] | None) -> tuple[dict[str, float], list[str]]:
    """Fill the model's co-medication indicators (``comedication:`` covariates) from a complete list of the
    patient's other current drugs: 1 if listed, 0 if not. Without a list nothing is filled (never assumed).
    Returns the covariates and a note per filled value."""
    if co_medications is None:
        return covariates, []
    listed = {d.strip().lower() for d in co_medications if d.strip()}
    out, notes = dict(covariates), []
    for name, cv in m.spec.covariates.items():
        if cv.comedication and name not in out:
            out[name] = 1.0 if cv.comedication in listed else 0.0
            notes.append(f"{cv.comedication}: {'yes' if out[name] else 'no'} (from the stated co-medication list)")
    return out, notes


def choose_and_recommend(
    drug: str,
    run: Callable[[str, dict[str, float], dict[str, Any]], Recommendation],
    covariates: dict[str, float],
    age_years: float | None = None,
    route: str = "oral",
    co_medications: list[str] | None = None,
) -> Recommendation:
    """Rank the drug's clinical models, run ``run(model_id, covariates_for_that_model, overrides)`` for every
    usable one, choose, and attach a :class:`ModelChoice` to the returned recommendation.

    ``overrides`` is ``{}`` on the first pass; on the second pass it fixes the chosen model's target
    (``metric``, ``target_low``, ``target_high``, ``target_unit``) and interval (``interval_h``) so every model
    is asked the same question."""
    known = {n for m in clinical_models(drug) for n in m.spec.covariates}
    unknown = sorted(set(covariates) - known)
    if unknown:
        raise DosingError(f"covariate(s) {', '.join(unknown)} belong to no {drug} model; known: "
                          f"{', '.join(sorted(known))}")
    per_model: dict[str, dict[str, float]] = {}
    cands = []
    models = clinical_models(drug)
    size = {m.id: m.spec.population.n_subjects or 0 for m in models}
    for m in models:
        covs, notes = with_comedications(m, _own_covariates(m, covariates), co_medications)
        per_model[m.id] = covs
        c = assess_match(m, covs, age_years, route)
        c.matches.extend(notes)
        cands.append(c)
    cands.sort(key=lambda c: (not c.usable, -c.match_score, -size[c.model_id], c.model_id))
    usable = [c for c in cands if c.usable]
    if not usable:
        raise NoUsableModelError(f"no {drug} model can be used for this patient: " + "; ".join(
            f"{c.model_id} {c.excluded_because}" for c in cands), [exclusion_in_words(c) for c in cands],
            needs_comedications=any(get_model(c.model_id).spec.covariates[n].comedication
                                    for c in cands for n in c.missing))
    recs: dict[str, Recommendation] = {}
    errors: dict[str, DosingError] = {}
    for c in usable:
        try:
            recs[c.model_id] = run(c.model_id, per_model[c.model_id], {})
        except DosingError as exc:
            errors[c.model_id] = exc
    # an input error (impossible dose, level before the first dose...) is the same for every model: raise it
    if not recs:
        raise next(iter(errors.values()))
    for mid, err in errors.items():
        c = next(x for x in cands if x.model_id == mid)
        c.usable, c.excluded_because = False, f"could not be applied: {err}"
    live = [c for c in cands if c.model_id in recs]
    posterior = any(r.fit is not None for r in recs.values())
    if posterior:
        ll = {c.model_id: minus2_log_likelihood(recs[c.model_id]) for c in live}
        finite = {k: v for k, v in ll.items() if v is not None}
        lo = min(finite.values()) if finite else 0.0
        raw = {k: math.exp(-0.5 * (v - lo)) for k, v in finite.items()}
        tot = sum(raw.values()) or 1.0
        for c in live:
            c.minus2_log_likelihood = ll[c.model_id]
            c.weight = raw.get(c.model_id, 0.0) / tot
        chosen = max(live, key=lambda c: (c.weight or 0.0, c.match_score))
        method = "model averaging"
        reason = (f"levels available: every usable model was fitted; {chosen.model_id} explains them best "
                  f"(weight {100 * (chosen.weight or 0):.0f} %, from each model's likelihood of the levels)")
    else:
        chosen = live[0]
        method = "population match"
        why = "; ".join(chosen.matches) or "the only usable model"
        reason = f"no levels: {chosen.model_id} has the source population closest to this patient ({why})"
        if len(live) > 1 and live[1].match_score == chosen.match_score:
            reason += f"; tie with {live[1].model_id} broken by the larger cohort"
    rec = recs[chosen.model_id]
    fixed = {"metric": rec.metric, "target_low": rec.target_low, "target_high": rec.target_high,
             "target_unit": rec.target_unit, "interval_h": rec.interval_h}
    preds: dict[str, float] = {}
    for c in live:
        r = recs[c.model_id]
        c.suggested_dose_mg, c.suggested_interval_h = r.dose_mg, r.interval_h
        c.suggested_daily_dose_mg = r.daily_dose_mg
        same = (r.metric == rec.metric and r.target_unit == rec.target_unit and abs(r.interval_h - rec.interval_h)
                < 1e-9 and r.target_low == rec.target_low and r.target_high == rec.target_high)
        if c is not chosen and not same:
            try:
                r = run(c.model_id, per_model[c.model_id], fixed)
                c.suggested_dose_mg, c.suggested_interval_h = r.dose_mg, r.interval_h
                c.suggested_daily_dose_mg = r.daily_dose_mg
            except DosingError as exc:
                c.mismatches.append(f"cannot predict the chosen regimen: {exc}")
                continue
        if r.dose_mg > 0 and abs(r.interval_h - rec.interval_h) < 1e-9:
            # linear kinetics: steady-state exposure is proportional to the dose
            preds[c.model_id] = r.predicted * rec.dose_mg / r.dose_mg
            c.predicted_for_chosen = preds[c.model_id]
    choice = ModelChoice(drug=drug, method=method, chosen_model_id=chosen.model_id, reason=reason, candidates=cands,
                         metric=rec.metric, unit=rec.target_unit)
    if preds:
        choice.prediction_range = (min(preds.values()), max(preds.values()))
    daily = [c.suggested_daily_dose_mg for c in live if c.suggested_daily_dose_mg]
    if daily:
        choice.daily_dose_range_mg = (min(daily), max(daily))
    if posterior and preds:
        wsum = sum(c.weight or 0.0 for c in live if c.model_id in preds)
        if wsum > 0:
            choice.averaged_prediction = sum((c.weight or 0.0) * preds[c.model_id] for c in live
                                             if c.model_id in preds) / wsum
            avg = choice.averaged_prediction
            if not rec.target_low <= avg <= rec.target_high:
                choice.warnings.append(
                    f"averaged over the models (weighted by how well each explains the levels), the suggested "
                    f"regimen predicts {avg:.3g} {rec.target_unit}, outside {rec.target_low:g}-{rec.target_high:g} "
                    f"{rec.target_unit}; the models do not agree on this patient - recheck the level before relying "
                    "on the suggestion")
    if daily and len(daily) > 1 and max(daily) > DISAGREEMENT_RATIO * min(daily):
        choice.warnings.append(
            f"the {drug} models disagree: their suggested daily doses range {min(daily):.3g}-{max(daily):.3g} "
            f"mg/day (more than {DISAGREEMENT_RATIO:g}-fold); see the model comparison, and prefer a level-guided "
            "adjustment")
    rec.model_choice = choice
    rec.warnings.extend(w for w in choice.warnings if w not in rec.warnings)
    return rec


def recommend_for_drug(
    drug: str,
    covariates: dict[str, float],
    *,
    age_years: float | None = None,
    level: float | None = None,
    level_unit: str | None = None,
    dose_mg: float | None = None,
    interval_h: float | None = None,
    hours_after_dose: float | None = None,
    new_interval_h: float | None = None,
    metric: str | None = None,
    target_low: float | None = None,
    target_high: float | None = None,
    target_unit: str | None = None,
    form: int | str | None = None,
    retarget: bool = False,
    fhir_bundle: str | None = None,
    route: str = "oral",
    co_medications: list[str] | None = None,
    target_basis: tuple[str, str] | None = None,
) -> Recommendation:
    """A suggestion for ``drug`` with the model chosen among the library's clinical models (see module doc).

    Inputs as :func:`~ipexrx.dosing.recommend.recommend_from_trough` (a level on the current regimen), or a FHIR
    Bundle with the dose history and levels (read separately for each model), or covariates only (a priori).
    ``co_medications``: the patient's complete list of other current drugs (knowledge-base ids), which sets the
    models' co-medication indicators; None = not known (models that need one are then not used).
    ``target_basis``: (context, source) when ``target_low``-``target_high`` is the knowledge base's range for the
    drug; None = a range given here was typed by the user (see :func:`~ipexrx.dosing.recommend.choose_target`)."""
    from .recommend import recommend, recommend_from_trough

    def pick(ov: dict[str, Any], key: str, default: Any) -> Any:
        return ov.get(key, default)

    if level is not None:
        if level_unit is None or dose_mg is None or interval_h is None:
            raise DosingError("a level needs its unit, the current dose (mg) and the dosing interval (h)")

        def run(mid: str, covs: dict[str, float], ov: dict[str, Any]) -> Recommendation:
            assert level is not None and level_unit is not None and dose_mg is not None and interval_h is not None
            return recommend_from_trough(
                drug, level, level_unit, dose_mg, interval_h, covs, model_id=mid, hours_after_dose=hours_after_dose,
                target_low=pick(ov, "target_low", target_low), target_high=pick(ov, "target_high", target_high),
                metric=pick(ov, "metric", metric), form_index=form,
                new_interval_h=pick(ov, "interval_h", new_interval_h), retarget=retarget,
                target_unit=pick(ov, "target_unit", target_unit), target_basis=None if ov else target_basis)
    elif fhir_bundle is not None:
        from .fhir_input import subject_from_fhir

        def run(mid: str, covs: dict[str, float], ov: dict[str, Any]) -> Recommendation:
            m = get_model(mid)
            subject = subject_from_fhir(fhir_bundle, m, "patient", covariates=covs)
            return recommend(m, subject, covs, interval_h=pick(ov, "interval_h", interval_h),
                             metric=pick(ov, "metric", metric), target_low=pick(ov, "target_low", target_low),
                             target_high=pick(ov, "target_high", target_high),
                             target_unit=pick(ov, "target_unit", target_unit), form_index=form, retarget=retarget,
                             target_basis=None if ov else target_basis)
    else:
        def run(mid: str, covs: dict[str, float], ov: dict[str, Any]) -> Recommendation:
            return recommend(mid, None, covs, interval_h=pick(ov, "interval_h", interval_h),
                             metric=pick(ov, "metric", metric), target_low=pick(ov, "target_low", target_low),
                             target_high=pick(ov, "target_high", target_high),
                             target_unit=pick(ov, "target_unit", target_unit), form_index=form, retarget=retarget,
                             current_dose_mg=dose_mg, current_interval_h=interval_h if dose_mg else None,
                             target_basis=None if ov else target_basis)

    return choose_and_recommend(drug, run, covariates, age_years=age_years, route=route,
                                co_medications=co_medications)
