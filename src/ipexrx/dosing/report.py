"""The TDM report: everything a clinician needs to judge one dose suggestion, as data.

``build_report`` gathers, for one patient and one :class:`~ipexrx.dosing.recommend.Recommendation`:

* alerts first (a level the model cannot explain, the models disagreeing, input-check warnings...),
* the suggested regimen (a suggestion, never an order) with the alternatives already computed, the predicted
  exposure with its 90 % interval and the probability of target attainment,
* the patient's inputs (covariates with units and the model's cohort range, doses, levels),
* the fitted / predicted concentration curve with two bands (parameter uncertainty; parameter uncertainty plus
  residual error) and the target band,
* fit diagnostics (IWRES, ETA z-score and shrinkage, prior-data conflict), the model with its citation,
  validity-domain notes, the model choice when several models were weighed, caveats in plain words,
* numbered sources; text items refer to them by number (``refs``).

This module builds data only (pydantic models, ``as_dict()`` for JSON); the printable page is rendered by
:mod:`ipexrx.report.tdm_html`. Every user-facing string goes through :func:`plain`, which rewrites the working
notes of model files ("not re-checked in this session", "transcription") into plain words and replaces model
ids by the author-year label of their paper; a report never shows internal ids.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..reference.citations import CitationNumbers
from .checks import Problem, check_inputs
from .data import Record, Subject
from .errors import DosingError
from .estimate import FitResult
from .model import CompiledModel, all_models
from .recommend import IPEX_CAVEAT, Recommendation, dose_compartment, prediction_band

DISCLAIMER = ("A suggestion for the treating clinician to weigh against the whole clinical picture, not an order. "
              "Check the dose, the sample timing and the target before acting on it.")
BOX_1980 = ("Box GEP. Sampling and Bayes' inference in scientific modelling and robustness. J R Stat Soc A "
            "1980;143:383-430 (prior-predictive check used for the prior-data conflict).")
BOX_1980_DOI = "10.2307/2982063"
SAVIC_2009 = ("Savic RM, Karlsson MO. Importance of shrinkage in empirical Bayes estimates for diagnostics: "
              "problems and solutions. AAPS J 2009;11:558-569 (shrinkage).")
SAVIC_2009_DOI = "10.1208/s12248-009-9133-0"
PARAMETER_WORDS = {"CL": "clearance", "V": "volume of distribution", "V1": "central volume", "V2": "peripheral volume",
                   "KA": "absorption rate", "Q": "inter-compartmental clearance", "F": "bioavailability",
                   "ALAG": "absorption lag", "LAG": "absorption lag"}


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceRef(_Out):
    number: int
    text: str
    doi: str | None = None
    url: str | None = None


class Notice(_Out):
    """One alert or warning. ``severity``: alert (the model cannot explain a level; a dose based on it may be
    unreliable), warning (check before acting), note (for information)."""

    severity: Literal["alert", "warning", "note"]
    topic: str
    text: str
    refs: list[int] = Field(default_factory=list)


class Alternative(_Out):
    dose_mg: float
    interval_h: float
    daily_dose_mg: float
    administration: str
    predicted: float
    unit: str
    probability_in_target: float
    note: str | None = None


class Suggestion(_Out):
    decision: Literal["keep", "change", "start"]
    headline: str = Field(description="One line: keep / consider ..., dose with unit, interval, form.")
    drug: str
    dose_mg: float
    interval_h: float
    daily_dose_mg: float
    form: str
    administration: str
    reason: str
    metric: str
    unit: str
    predicted: float
    predicted_low: float
    predicted_high: float
    interval_includes: str
    parameter_low: float
    parameter_high: float
    probability_in_target: float = Field(description="Share of parameter draws whose true exposure is in range.")
    probability_measured_in_target: float = Field(description="The same with residual error: a measured level.")
    exact_dose_mg: float
    in_target: bool
    current_dose_mg: float | None = None
    current_interval_h: float | None = None
    current_predicted: float | None = None
    basis: str
    refs: list[int] = Field(default_factory=list)


class TargetBand(_Out):
    metric: str
    low: float
    high: float
    unit: str
    context: str
    verified: bool
    source: str
    on_plot: bool = Field(description="False for an AUC24 target, which is not a concentration.")
    refs: list[int] = Field(default_factory=list)


class CovariateRow(_Out):
    name: str
    description: str
    value: float | None
    unit: str
    origin: Literal["entered", "model default", "missing"]
    cohort_low: float | None = None
    cohort_high: float | None = None
    inside_cohort: bool | None = Field(None, description="None when the value or the cohort range is unknown.")


class DoseRow(_Out):
    time_h: float
    amount_mg: float
    route: str
    interval_h: float | None = None
    additional_doses: int = 0
    steady_state: bool = False
    infusion_h: float | None = None


class LevelRow(_Out):
    time_h: float
    value: float | None = Field(description="None when below the limit of quantification.")
    unit: str
    below_lloq: bool = False
    lloq: float | None = None
    individual_prediction: float | None = None
    iwres: float | None = None
    flagged: bool = False


class PatientData(_Out):
    covariates: list[CovariateRow]
    doses: list[DoseRow]
    levels: list[LevelRow]
    time_note: str


class Curve(_Out):
    """The concentration curve over the dose history and the suggested regimen (columns of equal length)."""

    unit: str
    times_h: list[float]
    prediction: list[float]
    parameter_low: list[float]
    parameter_high: list[float]
    predictive_low: list[float]
    predictive_high: list[float]
    regimen_change_h: float | None = Field(None, description="Time the suggested regimen starts on the plot.")
    what: str = Field(description="What the line is (individual fit or population prediction).")
    band_note: str = Field(description="Which band shows what.")


class LevelDiagnostic(_Out):
    time_h: float
    value: float
    unit: str
    individual_prediction: float
    population_prediction: float
    iwres: float
    flagged: bool


class EtaRow(_Out):
    parameter: str
    meaning: str
    z: float
    shrinkage_percent: float | None
    flagged: bool
    weakly_informed: bool


class ConflictRow(_Out):
    statistic: float
    df: int
    limit: float
    p_value: float
    flagged: bool


class Diagnostics(_Out):
    available: bool
    explained: bool | None = None
    summary: str
    levels: list[LevelDiagnostic] = Field(default_factory=list)
    etas: list[EtaRow] = Field(default_factory=list)
    conflict: ConflictRow | None = None
    iwres_limit: float = 3.0
    eta_z_limit: float = 3.0
    limits: str = ""
    refs: list[int] = Field(default_factory=list)


class ModelInfo(_Out):
    id: str = Field(description="Library id (machine use; not shown on the printed page).")
    label: str
    title: str
    citation: str
    doi: str | None
    pmid: str | None = None
    population: str
    assay: str | None
    parameters_checked: str
    refs: list[int] = Field(default_factory=list)


class ValidityNote(_Out):
    text: str
    inside: bool | None
    refs: list[int] = Field(default_factory=list)


class ChoiceModel(_Out):
    label: str
    citation: str
    doi: str | None = None
    chosen: bool
    usable: bool
    weight: float | None = None
    suggested_dose_mg: float | None = None
    suggested_interval_h: float | None = None
    suggested_daily_dose_mg: float | None = None
    predicted_for_chosen: float | None = None
    excluded_because: str | None = None
    matches: list[str] = Field(default_factory=list)
    mismatches: list[str] = Field(default_factory=list)
    refs: list[int] = Field(default_factory=list)


class ModelChoice(_Out):
    method: str
    chosen: str
    reason: str
    models: list[ChoiceModel]
    metric: str = ""
    unit: str = ""
    averaged_prediction: float | None = None
    prediction_range: tuple[float, float] | None = None
    daily_dose_range_mg: tuple[float, float] | None = None
    refs: list[int] = Field(default_factory=list)


class TDMReport(_Out):
    """One patient's TDM report. ``as_dict()`` is the JSON form (``POST /api/v1/dosing/report``)."""

    title: str
    drug: str
    as_of: str = Field(description="Date the report was produced (ISO 8601), given or today.")
    produced_by: str
    disclaimer: str
    individualised: bool = Field(description="True when measured levels were fitted (a posteriori).")
    notices: list[Notice]
    suggestion: Suggestion
    alternatives: list[Alternative]
    target: TargetBand
    patient: PatientData
    curve: Curve | None
    diagnostics: Diagnostics
    model: ModelInfo
    validity: list[ValidityNote]
    model_choice: ModelChoice | None = None
    caveats: list[str]
    sources: list[SourceRef]

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# ----------------------------------------------------------------------------------------------------------
# plain words


_PLAIN = [
    (re.compile(r";?\s*not re-checked in this session", re.I), " (not re-checked against the current label)"),
    (re.compile(r"\bnot opened in this session", re.I), "not opened"),
    (re.compile(r"\s*\bin this session\b", re.I), ""),
    (re.compile(r"\bthis session\b", re.I), "this review"),
    (re.compile(r"\bvia (the )?nlmixr2lib transcription\b", re.I), "as coded in the nlmixr2lib model library"),
    (re.compile(r"\btranscriptions?\b", re.I), "copy"),
    (re.compile(r"\bKB\b"), "knowledge base"),
    (re.compile(r"\ban ETA sits on its bound\b"), "an individual parameter estimate sits on its limit"),
    (re.compile(r"\bthe page\b", re.I), "the source"),
]


@lru_cache(maxsize=1)
def _model_labels() -> dict[str, str]:
    """Model id -> the author-year label of its paper (from the title's closing parenthesis)."""
    out: dict[str, str] = {}
    for m in all_models():
        hit = re.search(r"\(([^()]*\d{4}[a-z]?)\)\s*$", m.spec.title)
        out[m.id] = hit.group(1) if hit else m.spec.title
    return out


def model_label(model: CompiledModel | str) -> str:
    mid = model if isinstance(model, str) else model.id
    labels = _model_labels()
    if mid in labels:
        return labels[mid]
    if isinstance(model, str):
        return model
    hit = re.search(r"\(([^()]*\d{4}[a-z]?)\)\s*$", model.spec.title)
    return hit.group(1) if hit else model.spec.title


def plain(text: str) -> str:
    """User-facing text without working notes or internal ids (model ids become the paper's author-year)."""
    out = text
    for pat, rep in _PLAIN:
        out = pat.sub(rep, out)
    for mid, label in sorted(_model_labels().items(), key=lambda kv: -len(kv[0])):
        out = re.sub(rf"\bmodel {re.escape(mid)}\b", f"the {label} model", out)
        out = re.sub(rf"(?<![\w-]){re.escape(mid)}(?![\w-])", f"the {label} model", out)
    out = re.sub(r"\bthe the\b", "the", out)
    return re.sub(r"\s{2,}", " ", out).strip()


# ----------------------------------------------------------------------------------------------------------
# sources


@dataclass(frozen=True)
class _Cited:
    """One source as the report cites it. ``source`` and ``locator`` make it one entry of the numbered list (shared
    rule, :mod:`ipexrx.reference.citations`): a knowledge-base source and its section, else the paper's DOI or text."""

    source: str
    locator: str | None
    text: str
    doi: str | None = None
    url: str | None = None


def _cited(text: str, doi: str | None = None, url: str | None = None, key: str | None = None) -> _Cited:
    """A source by its text; ``key`` (``label-prograf#2``: a knowledge-base source and section) or the DOI names it."""
    source, _, locator = key.partition("#") if key else (doi or text, "", "")
    return _Cited(source, locator or None, text, doi, url)


class _Sources:
    """The report's numbered sources, numbered by the shared rule in the order the report is built (its reading
    order); :meth:`cite` gives the number of one source, :meth:`items` the numbered list."""

    def __init__(self) -> None:
        self.numbers: CitationNumbers[_Cited] = CitationNumbers()

    def cite(self, text: str, doi: str | None = None, url: str | None = None, key: str | None = None) -> int:
        return self.number(_cited(text, doi, url, key))

    def number(self, c: _Cited) -> int:
        (n,) = self.numbers.cite([c])
        return n

    def items(self) -> list[SourceRef]:
        return [SourceRef(number=n, text=plain(c.text), doi=c.doi, url=c.url) for n, c in self.numbers.items()]


def _kb_source(ref: str) -> tuple[str, str | None, str | None] | None:
    """``label-prograf#2`` -> (citation with section heading, doi, url) from the knowledge base; None if unknown."""
    sid, _, loc = ref.partition("#")
    try:
        from ..knowledge.loader import get_kb

        src = get_kb().sources.get(sid)
    except Exception:  # a broken knowledge base must not hide the report; the source text is shown as given
        return None
    if src is None:
        return None
    text = src.citation
    if loc:
        heading = src.sections.get(loc)
        text += f" Section {loc}" + (f" ({heading})" if heading else "") + "."
    return text, src.doi, src.url


def _problem_refs(p: Problem, model: CompiledModel, model_cite: _Cited) -> tuple[list[_Cited], str]:
    """Sources of an input-check problem, and its basis in words when it has no published source."""
    src = p.source
    hit = re.match(r"^([a-z0-9][a-z0-9.-]*#[\w.-]+)\s*(?:\((.*)\))?$", src)
    if hit:
        found = _kb_source(hit.group(1))
        if found is not None:
            note = hit.group(2) or ""
            return [_cited(found[0], found[1], found[2], key=hit.group(1))], plain(note)
    if model.id in src:
        return [model_cite], "the source study's cohort" if "cohort" in src else "the model's declared covariates"
    if src == "input check":
        return [], "consistency of the records"
    return [], plain(src)


# ----------------------------------------------------------------------------------------------------------
# building blocks


def _as_of(as_of: dt.date | dt.datetime | str | None) -> str:
    if as_of is None:
        return dt.date.today().isoformat()
    if isinstance(as_of, dt.datetime):
        return as_of.date().isoformat()
    if isinstance(as_of, dt.date):
        return as_of.isoformat()
    try:
        return dt.date.fromisoformat(str(as_of).strip()).isoformat()
    except ValueError:
        raise DosingError(f"as_of: expected a date YYYY-MM-DD, got {as_of!r}") from None


def _unit_text(unit: str) -> str:
    return "" if unit == "1" else unit


def _route(model: CompiledModel, cmt: int, rate: float, amt: float) -> tuple[str, float | None]:
    names = model.spec.compartments
    name = names[cmt - 1] if 0 < cmt <= len(names) else None
    d = model.spec.dosing.get(name) if name else None
    route = d.route if d is not None else f"into compartment {name or cmt}"
    dur = amt / rate if rate > 0 else None
    if dur is not None:
        route += " infusion"
    return route, dur


def _covariate_rows(model: CompiledModel, subject: Subject | None,
                    covariates: dict[str, float] | None) -> list[CovariateRow]:
    entered: dict[str, float] = {}
    if subject is not None:
        for r in subject.records:
            entered.update(r.covariates)
    entered.update(covariates or {})
    rows = []
    for name, c in model.spec.covariates.items():
        if name in entered:
            v: float | None = float(entered[name])
            origin: Literal["entered", "model default", "missing"] = "entered"
        elif c.default is not None:
            v, origin = float(c.default), "model default"
        else:
            v, origin = None, "missing"
        inside = None
        if v is not None and (c.min is not None or c.max is not None):
            inside = (c.min is None or v >= c.min) and (c.max is None or v <= c.max)
        rows.append(CovariateRow(name=name, description=c.description, value=v, unit=_unit_text(c.unit), origin=origin,
                                 cohort_low=c.min, cohort_high=c.max, inside_cohort=inside))
    return rows


def _dose_rows(model: CompiledModel, subject: Subject | None) -> list[DoseRow]:
    out = []
    for r in (subject.records if subject is not None else []):
        if not r.is_dose:
            continue
        route, dur = _route(model, r.cmt, r.rate, r.amt)
        out.append(DoseRow(time_h=r.time, amount_mg=r.amt, route=route, interval_h=r.ii or None,
                           additional_doses=r.addl, steady_state=bool(r.ss), infusion_h=dur))
    return out


def _level_rows(model: CompiledModel, subject: Subject | None, rec: Recommendation) -> list[LevelRow]:
    unit = model.spec.outputs[0].unit
    diag = {round(lv.time_h, 9): lv for lv in (rec.diagnostics.levels if rec.diagnostics is not None else [])}
    out = []
    for r in (subject.records if subject is not None else []):
        if not r.is_obs:
            continue
        lv = diag.get(round(r.time, 9)) if not r.blq else None
        out.append(LevelRow(time_h=r.time, value=None if r.blq else r.dv, unit=unit, below_lloq=r.blq, lloq=r.lloq,
                            individual_prediction=lv.ipred if lv else None, iwres=lv.iwres if lv else None,
                            flagged=bool(lv and lv.flagged)))
    return out


def _time_note(subject: Subject | None) -> str:
    if subject is None:
        return "No dose history or levels: the suggestion rests on the covariates only."
    ss = any(r.is_dose and r.ss for r in subject.records)
    note = "Times in hours on the records' own time axis."
    if ss:
        note += " Steady state: the same regimen was given long enough before that levels no longer change."
    return note


def _next_dose_time(subject: Subject, default_tau: float) -> float:
    """When the next dose is due after the recorded history (last implied dose + its interval)."""
    last_t, last_tau = None, None
    doses = [r for r in subject.records if r.is_dose]
    for i, r in enumerate(doses):
        t = r.time + r.addl * r.ii
        tau = r.ii if r.ii > 0 else (r.time - doses[i - 1].time if i > 0 else None)
        if last_t is None or t >= last_t:
            last_t, last_tau = t, tau
    end = max(r.time for r in subject.records)
    if last_t is None:
        return end
    return max(last_t + (last_tau if last_tau and last_tau > 0 else default_tau), end)


def _curve(model: CompiledModel, rec: Recommendation, subject: Subject | None, covs: dict[str, float],
           n_intervals: int = 3) -> tuple[Curve | None, str | None]:
    """The curve over the history (if any) and ``n_intervals`` of the suggested regimen; (None, reason) when the
    bands cannot be computed."""
    c = dose_compartment(model) + 1
    tau = rec.interval_h
    if subject is not None and subject.records:
        last_covs = dict(covs)
        for r in subject.records:
            last_covs.update(r.covariates)
        start = _next_dose_time(subject, tau)
        t0 = min(r.time for r in subject.records)
        # a sorted record list: the new regimen comes after every recorded event
        plan = Subject("plan", [*subject.records, Record(time=start, evid=1, amt=rec.dose_mg, cmt=c, ii=tau,
                                                         addl=n_intervals - 1, covariates=last_covs)])
        change: float | None = start
    else:
        start, t0 = 0.0, 0.0
        plan = Subject("plan", [Record(time=0.0, evid=1, amt=rec.dose_mg, cmt=c, ii=tau, ss=1, addl=n_intervals - 1,
                                       covariates=dict(covs))])
        change = None
    t1 = start + n_intervals * tau
    n_int = (t1 - t0) / max(tau, 1e-9)
    n = int(min(1200, max(300, 60 * n_int)))
    times = np.linspace(t0, t1, n)
    times[0] = t0 + 1e-9 * tau  # just after a dose record at t0 (a point at t0 is evaluated before it)
    if rec.fit is not None:
        eta, cov = np.asarray(rec.fit.eta), np.asarray(rec.fit.etc)
        what = "individual prediction (fitted to the measured levels)"
    else:
        eta, cov = np.zeros(model.n_eta), np.asarray(model.omega)
        what = "population prediction for the covariates (no levels fitted)"
    try:
        ip, plo, phi, _ = prediction_band(model, plan, eta, cov, times)
        _, mlo, mhi, _ = prediction_band(model, plan, eta, cov, times, residual_error=True)
    except np.linalg.LinAlgError:
        return None, ("the uncertainty of the individual parameters could not be computed (covariance not positive "
                      "definite): no curve is drawn")
    except DosingError as exc:
        return None, f"the curve could not be computed: {exc}"
    unit = model.spec.outputs[0].unit
    basis = "posterior" if rec.fit is not None else "prior (population)"
    note = (f"Inner band: parameter uncertainty only ({basis} distribution of the individual parameters). Outer "
            "band: parameter uncertainty and the model's residual error together, where a measured level would be "
            "expected to fall.")

    def col(a: np.ndarray) -> list[float]:
        return [round(float(x), 6) for x in a]

    return Curve(unit=unit, times_h=col(times), prediction=col(ip), parameter_low=col(plo), parameter_high=col(phi),
                 predictive_low=col(mlo), predictive_high=col(mhi), regimen_change_h=change, what=what,
                 band_note=note), None


def _diagnostics(rec: Recommendation, sources: _Sources) -> Diagnostics:
    dg = rec.diagnostics
    if dg is None:
        return Diagnostics(available=False, summary="No measured level was fitted, so there is nothing to diagnose: "
                           "the suggestion is the population prediction for the covariates (cannot judge how this "
                           "patient differs from the typical patient).")
    refs = [sources.cite(BOX_1980, BOX_1980_DOI), sources.cite(SAVIC_2009, SAVIC_2009_DOI)]
    levels = [LevelDiagnostic(time_h=lv.time_h, value=lv.value, unit=lv.unit, individual_prediction=lv.ipred,
                              population_prediction=lv.pred, iwres=lv.iwres, flagged=lv.flagged) for lv in dg.levels]
    etas = [EtaRow(parameter=e.name, meaning=PARAMETER_WORDS.get(e.name.upper(), e.name), z=e.z,
                   shrinkage_percent=None if e.shrinkage is None else 100 * e.shrinkage, flagged=e.flagged,
                   weakly_informed=e.shrinkage is not None and e.shrinkage > dg.shrinkage_note) for e in dg.etas]
    conflict = None
    if dg.conflict is not None:
        c = dg.conflict
        conflict = ConflictRow(statistic=c.statistic, df=c.df, limit=c.limit, p_value=c.p_value, flagged=c.flagged)
    if dg.explained:
        summary = "The model explains the measured levels: no check exceeds its limit."
    else:
        summary = ("A level the model cannot explain: check sample timing, dose history, adherence, interacting drugs "
                   "and assay before relying on the suggestion.")
    limits = (f"IWRES: observed minus individual prediction in residual SDs (limit {dg.iwres_limit:g}). Parameter: "
              f"distance from the typical value in population SDs (limit {dg.eta_z_limit:g}). Conflict: Q above the "
              f"{100 * (dg.conflict.quantile if dg.conflict else 0.99):g}th percentile of chi-square, one degree of "
              f"freedom per level. Shrinkage above {100 * dg.shrinkage_note:.0f} %: the levels say little about that "
              "parameter.")
    return Diagnostics(available=True, explained=dg.explained, summary=summary, levels=levels, etas=etas,
                       conflict=conflict, iwres_limit=dg.iwres_limit, eta_z_limit=dg.eta_z_limit, limits=limits,
                       refs=refs)


def _model_choice(rec: Recommendation, sources: _Sources) -> ModelChoice | None:
    mc = getattr(rec, "model_choice", None)
    if mc is None:
        return None
    d: dict[str, Any]
    if isinstance(mc, dict):
        d = mc
    elif hasattr(mc, "as_dict"):
        d = mc.as_dict()
    elif hasattr(mc, "model_dump"):
        d = mc.model_dump()
    else:
        return None
    chosen_id = str(d.get("chosen_model_id") or d.get("chosen_model") or d.get("chosen") or "")
    refs = []
    src = d.get("source")
    if isinstance(src, str) and src:
        doi = re.search(r"doi:\s*(\S+?)[.;,]?$", src)
        refs.append(sources.cite(re.sub(r",?\s*doi:\s*\S+$", "", src), doi.group(1) if doi else None))
    models = []
    raw = d.get("candidates") or d.get("models") or []
    weights: dict[str, Any] = d["weights"] if isinstance(d.get("weights"), dict) else {}
    for c in raw if isinstance(raw, list) else []:
        if not isinstance(c, dict):
            c = c.as_dict() if hasattr(c, "as_dict") else dict(getattr(c, "__dict__", {}))
        mid = str(c.get("model_id") or c.get("model") or c.get("id") or "")
        cit = str(c.get("citation") or "")
        cref = [sources.cite(cit, c.get("doi"))] if cit else []

        def num(key: str, _c: dict[str, Any] = c) -> float | None:
            v = _c.get(key)
            return float(v) if isinstance(v, int | float) and math.isfinite(v) else None

        models.append(ChoiceModel(
            label=model_label(mid) if mid else plain(str(c.get("title") or "")), citation=plain(cit),
            doi=c.get("doi"), chosen=mid == chosen_id, usable=bool(c.get("usable", True)),
            weight=num("weight") if num("weight") is not None else weights.get(mid),
            suggested_dose_mg=num("suggested_dose_mg"), suggested_interval_h=num("suggested_interval_h"),
            suggested_daily_dose_mg=num("suggested_daily_dose_mg"), predicted_for_chosen=num("predicted_for_chosen"),
            excluded_because=plain(str(c["excluded_because"])) if c.get("excluded_because") else None,
            matches=[plain(str(x)) for x in c.get("matches") or []],
            mismatches=[plain(str(x)) for x in c.get("mismatches") or []], refs=cref))

    def pair(key: str) -> tuple[float, float] | None:
        v = d.get(key)
        return (float(v[0]), float(v[1])) if isinstance(v, list | tuple) and len(v) == 2 else None

    avg = d.get("averaged_prediction")
    return ModelChoice(method=str(d.get("method") or ""), chosen=model_label(chosen_id) if chosen_id else "",
                       reason=plain(str(d.get("reason") or "")), models=models, metric=str(d.get("metric") or ""),
                       unit=str(d.get("unit") or rec.target_unit),
                       averaged_prediction=float(avg) if isinstance(avg, int | float) else None,
                       prediction_range=pair("prediction_range"), daily_dose_range_mg=pair("daily_dose_range_mg"),
                       refs=refs)


def _where(path: str, subject: Subject | None) -> str:
    """A check's field path in words (records[3] -> 'the dose at 12 h')."""
    hit = re.search(r"records\[(\d+)\][^.]*(?:\.(\w+))?$", path)
    if hit and subject is not None:
        i = int(hit.group(1))
        if i < len(subject.records):
            r = subject.records[i]
            return f"the {'dose' if r.is_dose else 'level'} at {r.time:g} h"
    if path.startswith("covariates.") or re.match(r"^subject .*\.(\w+)$", path):
        return path.rsplit(".", 1)[-1]
    return {"interval_h": "the dosing interval", "dose": "the current dose"}.get(path.split(".")[0], "")


def _notices(model: CompiledModel, rec: Recommendation, problems: list[Problem], subject: Subject | None,
             model_cite: _Cited, sources: _Sources, curve_problem: str | None,
             extra: Iterable[str] = ()) -> list[Notice]:
    """The alerts and warnings, most severe first; their sources are numbered once they are in that order."""
    out: list[tuple[Notice, list[_Cited]]] = []
    diag_w = set(rec.diagnostics.warnings) if rec.diagnostics is not None else set()
    mc = getattr(rec, "model_choice", None)
    mc_w = set(getattr(mc, "warnings", None) or (mc.get("warnings", []) if isinstance(mc, dict) else []))
    diag_cites = [_cited(BOX_1980, BOX_1980_DOI), _cited(SAVIC_2009, SAVIC_2009_DOI)]
    domain = {p.path.rsplit(".", 1)[-1] for p in problems if p.code == "covariate-domain"}
    for w in rec.warnings:
        if w.startswith("input check: "):
            continue  # shown from the structured problems below
        hit = re.match(r"^covariate (\w+) = .* outside the range", w)
        if hit and hit.group(1) in domain:
            continue  # the same fact as the input check's covariate-domain warning
        if w in diag_w:
            out.append((Notice(severity="alert", topic="fit diagnostics", text=plain(w)), diag_cites))
        elif w in mc_w:
            out.append((Notice(severity="warning", topic="model choice", text=plain(w)), []))
        elif re.match(r"^levels? .* (read as|converted from) ", w):
            out.append((Notice(severity="note", topic="units", text=plain(w)), []))
        elif "sits on its bound" in w or "did not converge" in w:
            out.append((Notice(severity="alert", topic="fit", text=plain(w)), []))
        else:
            out.append((Notice(severity="warning", topic="suggestion", text=plain(w)), []))
    for p in problems:
        cites, basis = _problem_refs(p, model, model_cite)
        where = _where(p.path, subject)
        lead = f"{where}: " if where and not p.message.startswith(where) else ""
        text = lead + f"{p.message} (expected {p.expected}; got {p.got})"
        if basis:
            text += f"; basis: {basis}"
        out.append((Notice(severity="alert" if p.severity == "error" else "warning", topic="input check",
                           text=plain(text)), cites))
    if curve_problem:
        out.append((Notice(severity="note", topic="plot", text=curve_problem), []))
    out += [(Notice(severity="warning", topic="input", text=plain(w)), []) for w in extra]
    order = {"alert": 0, "warning": 1, "note": 2}
    # a level the model cannot explain comes first; otherwise the engine's order within a severity (stable sort)
    out.sort(key=lambda nc: (order[nc[0].severity], nc[0].topic != "fit diagnostics"))
    for notice, cites in out:  # numbered in the order the reader meets them
        notice.refs = [sources.number(c) for c in cites]
    return [notice for notice, _ in out]


def _headline(rec: Recommendation) -> str:
    verb = "Keep the current regimen" if rec.decision == "keep" else "Consider"
    return (f"{verb}: {rec.drug} {rec.dose_mg:g} mg every {rec.interval_h:g} h ({rec.daily_dose_mg:g} mg/day) as "
            f"{rec.form}: {rec.administration}")


def _basis(rec: Recommendation, subject: Subject | None) -> str:
    if rec.fit is None:
        return "Population (a priori): the model's typical values for the entered covariates; no level was fitted."
    n = sum(1 for r in (subject.records if subject else []) if r.is_obs) or 1
    return (f"Individualised (Bayesian, maximum a posteriori) from {n} measured level{'s' if n != 1 else ''} and the "
            "dose history.")


def _caveats(model: CompiledModel, rec: Recommendation, diag: Diagnostics, covariates: list[CovariateRow]) -> list[str]:
    # every caveat the recommendation carries (the IPEX caveat, the model's own, the target's worded by where the
    # range came from, an unchecked dosage form, intravenous dosing), then the report's own
    out = [IPEX_CAVEAT]
    for c in [*model.spec.caveats, *rec.caveats]:
        if plain(c) not in out:
            out.append(plain(c))
    if rec.fit is None:
        out.append("Without a measured level the suggestion is the typical patient's: measure a level at steady state "
                   "to individualise it.")
    weak = [e for e in diag.etas if e.weakly_informed]
    if weak:
        out.append("The levels say little about " + ", ".join(f"{e.meaning} (shrinkage {e.shrinkage_percent:.0f} %)"
                                                              for e in weak)
                   + ": the estimate stays near the population value, so the change is smaller than a proportional "
                   "one; repeat the level after the change.")
    if rec.metric == "auc24":
        out.append("An AUC24 target is not a single concentration: its interval shows parameter uncertainty only, and "
                   "no target band is drawn on the concentration plot.")
    else:
        out.append(f"The 90 % predictive interval ({rec.predicted_low:.3g}-{rec.predicted_high:.3g} {rec.target_unit}) "
                   "includes the model's residual error but not day-to-day variation within a patient: real levels "
                   "can spread more.")
    unchecked = [t for t in model.spec.thetas.values() if not t.verified]
    if unchecked:
        out.append(f"{len(unchecked)} of {len(model.spec.thetas)} model parameters were not checked against the "
                   "paper.")
    if model.spec.population.assay and not any("assay" in c.lower() for c in model.spec.caveats):
        out.append(f"Source-study levels were measured by {model.spec.population.assay}; another assay can read "
                   "differently (LC-MS/MS often lower than immunoassays).")
    missing = [c for c in covariates if c.origin == "model default"]
    if missing:
        out.append("Not entered, so the model's default was used: " + ", ".join(
            f"{c.description} ({c.value:g}{(' ' + c.unit) if c.unit else ''})" for c in missing if c.value is not None)
                   + ".")
    return out


def _validity(model: CompiledModel, rows: list[CovariateRow], age_years: float | None,
              model_ref: int) -> list[ValidityNote]:
    out = []
    for c in rows:
        u = f" {c.unit}" if c.unit else ""
        if c.cohort_low is None and c.cohort_high is None:
            continue
        rng = f"{c.cohort_low:g}-{c.cohort_high:g}{u}" if c.cohort_low is not None and c.cohort_high is not None else (
            f"at least {c.cohort_low:g}{u}" if c.cohort_low is not None else f"at most {c.cohort_high:g}{u}")
        what = c.description.capitalize()
        if c.value is None:
            out.append(ValidityNote(text=f"{what}: not entered; cannot judge whether the patient is inside the source "
                                    f"cohort ({rng}).", inside=None, refs=[model_ref]))
        elif c.inside_cohort:
            out.append(ValidityNote(text=f"{what} {c.value:g}{u} is inside the source cohort ({rng}).", inside=True,
                                    refs=[model_ref]))
        else:
            out.append(ValidityNote(text=f"{what} {c.value:g}{u} lies outside the source cohort ({rng}): the "
                                    "prediction is an extrapolation.", inside=False, refs=[model_ref]))
    pop = model.spec.population
    if pop.age_years is not None:
        lo, hi = pop.age_years
        if age_years is None:
            out.append(ValidityNote(text=f"Age: not entered; the source cohort was {lo:g}-{hi:g} years (cannot judge).",
                                    inside=None, refs=[model_ref]))
        else:
            ok = lo <= age_years <= hi
            out.append(ValidityNote(
                text=f"Age {age_years:g} years is {'inside' if ok else 'outside'} the source cohort ({lo:g}-{hi:g} "
                     f"years){'' if ok else ': the prediction is an extrapolation'}.", inside=ok, refs=[model_ref]))
    return out


def build_report(
    model: CompiledModel,
    rec: Recommendation,
    subject: Subject | None = None,
    covariates: dict[str, float] | None = None,
    fit_result: FitResult | None = None,
    *,
    as_of: dt.date | dt.datetime | str | None = None,
    age_years: float | None = None,
    extra_notices: Iterable[str] = (),
) -> TDMReport:
    """The TDM report of ``rec`` (from :func:`recommend`, :func:`recommend_from_trough` or model selection).

    ``subject`` holds the doses and levels (default: the subject the recommendation was computed from), or None
    for an a-priori suggestion from ``covariates``; ``fit_result`` defaults to ``rec.fit``. ``as_of`` is the date
    printed on the report (default today): the same inputs and ``as_of`` give the same report."""
    if rec.model_id != model.id:
        raise DosingError(f"the recommendation was computed with another model ({model_label(rec.model_id)}) than the "
                          f"one given ({model_label(model)})")
    when = _as_of(as_of)
    subject = subject if subject is not None else getattr(rec, "subject", None)
    if fit_result is not None and rec.fit is None:
        rec.fit = fit_result
    covs = {k: float(v) for k, v in (covariates or {}).items() if k in model.spec.covariates}
    sources = _Sources()
    cit = model.spec.citation
    # numbered in reading order: alerts, suggestion, data, diagnostics, model, model choice
    problems = check_inputs(model, subject, covs or None, interval_h=rec.interval_h, dose_mg=rec.current_dose_mg,
                            dose_interval_h=rec.current_interval_h, age_years=age_years)
    curve, curve_problem = _curve(model, rec, subject, _last_covs(subject, covs))
    model_cite = _cited(cit.text, cit.doi, cit.url)
    notices = _notices(model, rec, problems, subject, model_cite, sources, curve_problem, extra_notices)
    model_ref = sources.number(model_cite)
    sugg_refs = [model_ref]
    form = next((f for f in model.spec.dosage_forms if f.form == rec.form), None)
    if form is not None:
        sugg_refs.append(sources.cite(form.source))
    suggestion = Suggestion(
        decision=rec.decision if rec.decision in ("keep", "change", "start") else "change",  # type: ignore[arg-type]
        headline=_headline(rec), drug=rec.drug, dose_mg=rec.dose_mg, interval_h=rec.interval_h,
        daily_dose_mg=rec.daily_dose_mg, form=rec.form, administration=rec.administration,
        reason=plain(rec.decision_reason), metric=rec.metric, unit=rec.target_unit, predicted=rec.predicted,
        predicted_low=rec.predicted_low, predicted_high=rec.predicted_high, interval_includes=rec.interval_includes,
        parameter_low=rec.parameter_low, parameter_high=rec.parameter_high,
        probability_in_target=rec.probability_in_target,
        probability_measured_in_target=rec.probability_measured_in_target, exact_dose_mg=rec.exact_dose_mg,
        in_target=rec.in_target, current_dose_mg=rec.current_dose_mg, current_interval_h=rec.current_interval_h,
        current_predicted=rec.current_predicted, basis=_basis(rec, subject), refs=sugg_refs)
    alternatives = [Alternative(
        dose_mg=float(a["dose_mg"]), interval_h=float(a["interval_h"]),
        daily_dose_mg=float(a["dose_mg"]) * 24.0 / float(a["interval_h"]), administration=str(a["administration"]),
        predicted=float(a["predicted"]), unit=rec.target_unit, probability_in_target=float(a["probability_in_target"]),
        note=plain(str(a["note"])) if a.get("note") else None) for a in rec.alternatives]
    # the range's origin decides its source and citation: typed by the user (none), the knowledge base's range
    # (its sources), or the model's source study (the model's paper)
    origin = rec.target_origin
    target = TargetBand(metric=rec.metric, low=rec.target_low, high=rec.target_high, unit=rec.target_unit,
                        context=plain(rec.target_context), verified=rec.target_verified,
                        source="entered by the user" if origin == "user" else (
                            f"the knowledge base: {plain(rec.target_source)}" if origin == "knowledge base"
                            else plain(rec.target_source)),
                        on_plot=rec.metric != "auc24", refs=[] if origin == "user" else (
                            [sources.cite(rec.target_source)] if origin == "knowledge base" else [model_ref]))
    cov_rows = _covariate_rows(model, subject, covs)
    patient = PatientData(covariates=cov_rows, doses=_dose_rows(model, subject),
                          levels=_level_rows(model, subject, rec), time_note=_time_note(subject))
    diagnostics = _diagnostics(rec, sources)
    n_checked = sum(1 for t in model.spec.thetas.values() if t.verified)
    info = ModelInfo(
        id=model.id, label=model_label(model), title=plain(model.spec.title), citation=plain(cit.text), doi=cit.doi,
        pmid=cit.pmid, population=plain(model.spec.population.description), assay=model.spec.population.assay,
        parameters_checked=(f"{n_checked} of {len(model.spec.thetas)} parameters checked against the paper"
                            + ("; the others were read from a secondary copy of the model (nlmixr2lib)"
                               if cit.transcription and n_checked < len(model.spec.thetas) else "")),
        refs=[model_ref])
    validity = _validity(model, cov_rows, age_years, model_ref)
    choice = _model_choice(rec, sources)
    return TDMReport(
        title=f"Therapeutic drug monitoring report: {rec.drug}", drug=rec.drug, as_of=when,
        produced_by=f"ipexrx {_version()}", disclaimer=DISCLAIMER, individualised=rec.fit is not None,
        notices=notices, suggestion=suggestion, alternatives=alternatives, target=target, patient=patient,
        curve=curve, diagnostics=diagnostics, model=info, validity=validity, model_choice=choice,
        caveats=_caveats(model, rec, diagnostics, cov_rows), sources=sources.items())


def _last_covs(subject: Subject | None, covs: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in (subject.records if subject is not None else []):
        out.update(r.covariates)
    out.update(covs)
    return out


def _version() -> str:
    from .. import __version__

    return __version__
