"""Input checks run before any fit: each problem is structured (severity, path, expected, got, source).

Why a separate pass: the engine refuses only what it cannot compute. A 500 mg tacrolimus dose, a 0.01 h
interval, a level drawn before the first dose or a log-transformed DV are all computable, and a MAP fit would
turn them into a confident-looking suggestion. ``check_inputs`` finds them first; ``require_ok`` raises
:class:`InputCheckError` (a :class:`DosingError`: exit 1 in the CLI, 422 in the API) when any problem is an
error, and returns the warnings, which are shown with the result.

Limits come from ``plausibility.yaml`` (labelled figures with their source, widened by stated factors) and
from the model's own covariate declarations (validity domain ``min``/``max`` from the paper's cohort,
``allowed`` codes, physical ``hard_min``/``hard_max``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from .data import Subject
from .errors import DataError
from .model import CompiledModel

Severity = Literal["error", "warning"]
_YAML = Path(__file__).with_name("plausibility.yaml")
MODEL_SOURCE = "model file"


@dataclass(frozen=True)
class Problem:
    """One input problem. ``path`` names the field (``records[3].AMT``, ``covariates.WT``, ``interval_h``)."""

    severity: Severity
    code: str
    path: str
    message: str
    expected: str
    got: str
    source: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.path}: {self.message} (expected {self.expected}; got {self.got}; source: {self.source})"


class InputCheckError(DataError):
    """At least one error-level input problem: nothing is fitted or suggested."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        super().__init__("input check failed: " + "; ".join(str(p) for p in errors))


@lru_cache(maxsize=1)
def limits() -> dict[str, Any]:
    """The plausibility table (``plausibility.yaml``)."""
    data: dict[str, Any] = yaml.safe_load(_YAML.read_text(encoding="utf-8"))
    return data


def _where(subject: Subject, i: int) -> str:
    r = subject.records[i]
    return f"subject {subject.id} records[{i}]" + (f" (row {r.row})" if r.row else "")


def _dose_limit(drug: str, age_years: float | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    d = limits()["drugs"].get(drug.strip().lower())
    if d is None:
        return None
    for band in d["by_age"]:
        lo, hi = band.get("min_age_y"), band.get("max_age_y")
        if age_years is None:
            if lo is None:  # unknown age: the band that starts at birth (the most permissive for children)
                return d, band
            continue
        if (lo is None or age_years >= lo) and (hi is None or age_years < hi):
            return d, band
    return d, d["by_age"][0]


def _check_doses(model: CompiledModel, subject: Subject, weight_kg: float | None,
                 age_years: float | None) -> list[Problem]:
    out: list[Problem] = []
    gen = limits()["general"]
    ivl, inf = gen["interval_h"], gen["infusion_h"]
    found = _dose_limit(model.spec.drug, age_years)
    for i, r in enumerate(subject.records):
        if not r.is_dose:
            continue
        where = _where(subject, i)
        if r.ii > 0 and not (ivl["min"] <= r.ii <= ivl["max"]):
            out.append(Problem("error", "interval-range", f"{where}.II", f"dosing interval {r.ii:g} h is implausible",
                               f"{ivl['min']:g}-{ivl['max']:g} h", f"{r.ii:g} h", ivl["source"]))
        if r.rate > 0:
            dur = r.amt / r.rate
            if not (inf["min"] <= dur <= inf["max"]):
                out.append(Problem("error", "infusion-range", f"{where}.RATE",
                                   f"AMT/RATE gives an infusion of {dur:.3g} h",
                                   f"{inf['min']:g}-{inf['max']:g} h", f"{r.amt:g} mg at {r.rate:g} mg/h",
                                   inf["source"]))
        if found is None:
            continue
        d, band = found
        per_day = r.amt * (24.0 / r.ii if r.ii > 0 else 1.0)  # a single dose counts as that day's dose
        if "mg_per_kg_day" in band:
            if weight_kg is None:
                cap = band["mg_per_kg_day"] * gen["weight_kg"]["max"]  # no weight: the heaviest plausible patient
                wmax = gen["weight_kg"]["max"]
                label = f"{cap:g} mg/day ({band['mg_per_kg_day']:g} mg/kg/day x {wmax:g} kg, weight unknown)"
            else:
                cap = band["mg_per_kg_day"] * weight_kg
                label = f"{band['mg_per_kg_day']:g} mg/kg/day x {weight_kg:g} kg = {cap:.3g} mg/day"
        else:
            cap = float(band["mg_day"])
            label = f"{cap:g} mg/day"
        basis = per_day
        got = f"{r.amt:g} mg" + (f" every {r.ii:g} h = {per_day:.3g} mg/day" if r.ii > 0 else " (single dose)")
        src = f"{band['source']} ({band['text']}; factors: ipexrx convention)"
        if basis > d["error_factor"] * cap:
            out.append(Problem("error", "dose-range", f"{where}.AMT",
                               f"{model.spec.drug} dose far above the labelled maximum for {band['ages']}",
                               f"at most {d['error_factor']:g} x {label}", got, src))
        elif basis > d["warn_factor"] * cap:
            out.append(Problem("warning", "dose-range", f"{where}.AMT",
                               f"{model.spec.drug} dose above the labelled maximum for {band['ages']}; check the dose "
                               "and its unit", f"up to {d['warn_factor']:g} x {label}", got, src))
        sw = d.get("single_dose_warn_mg")
        if sw is not None and r.amt > sw and not basis > d["warn_factor"] * cap:
            out.append(Problem("warning", "dose-range", f"{where}.AMT",
                               f"{model.spec.drug} single dose above {d['single_dose_warn_text']}",
                               f"<= {sw:g} mg", f"{r.amt:g} mg", d["single_dose_warn_source"]))
    return out


def _cov_problems(model: CompiledModel, name: str, values: list[float], path: str) -> list[Problem]:
    out: list[Problem] = []
    c = model.spec.covariates[name]
    u = "" if c.unit == "1" else f" {c.unit}"
    lo, hi = min(values), max(values)
    got = f"{lo:g}{u}" if lo == hi else f"{lo:g}-{hi:g}{u}"
    if c.allowed is not None and not set(values) <= set(c.allowed):
        out.append(Problem("error", "covariate-code", path, f"{name} ({c.description}) is not one of its codes",
                           f"one of {c.allowed}", got, MODEL_SOURCE + f" {model.id}"))
        return out
    if (c.hard_min is not None and lo < c.hard_min) or (c.hard_max is not None and hi > c.hard_max):
        out.append(Problem("error", "covariate-impossible", path,
                           f"{name} ({c.description}) is not a plausible value in {c.unit}; check the unit",
                           f"{c.hard_min}-{c.hard_max}{u}", got, MODEL_SOURCE + f" {model.id}"))
        return out
    if name == "WT":
        w = limits()["general"]["weight_kg"]
        if c.unit == "kg" and not (w["min"] <= lo and hi <= w["max"]):
            out.append(Problem("error", "weight-range", path, "body weight is implausible",
                               f"{w['min']:g}-{w['max']:g} kg", got, w["source"]))
            return out
    if (c.min is not None and lo < c.min) or (c.max is not None and hi > c.max):
        rng = f"{c.min if c.min is not None else '-inf'}-{c.max if c.max is not None else 'inf'}{u}"
        sev: Severity = "error" if c.out_of_range == "refuse" else "warning"
        out.append(Problem(sev, "covariate-domain", path,
                           f"{name} ({c.description}) lies outside the range the model was developed on"
                           + ("; the model refuses extrapolation" if sev == "error" else
                              "; predictions are an extrapolation"),
                           rng, got, f"{model.spec.citation.text.split('.')[0]} (model {model.id}, cohort range)"))
    return out


def _typical_prediction(model: CompiledModel, subject: Subject) -> np.ndarray | None:
    """Population (ETA = 0) prediction at each data observation, or None when it cannot be computed."""
    from .engine import build_design, predict

    try:
        d = build_design(model, subject)
        f = predict(d, np.zeros((1, model.n_eta))).real[0]
    except Exception:  # the fit itself will report structural problems with a precise message
        return None
    return np.asarray(f[d.o_is_data], dtype=float)


def check_inputs(
    model: CompiledModel,
    subject: Subject | None = None,
    covariates: dict[str, float] | None = None,
    *,
    interval_h: float | None = None,
    dose_mg: float | None = None,
    dose_interval_h: float | None = None,
    age_years: float | None = None,
    now_h: float | None = None,
) -> list[Problem]:
    """Every problem with the inputs of a fit or a recommendation, errors first.

    ``covariates`` are values given outside the records (CLI ``--cov``, API); ``interval_h`` and ``dose_mg`` a
    regimen asked for,
    ``dose_mg`` every ``dose_interval_h`` (default ``interval_h``) a current regimen; ``now_h`` the present on the
    subject's time axis (records after it are in the future; FHIR input sets ``subject.now_h``)."""
    out: list[Problem] = []
    known = set(model.spec.covariates)
    gen = limits()["general"]
    # covariate names and values given directly
    for name in sorted(covariates or {}):
        if name not in known:
            out.append(Problem("error", "covariate-unknown", f"covariates.{name}",
                               f"the model {model.id} has no covariate {name!r}",
                               f"one of {sorted(known)}" if known else "no covariates", name,
                               MODEL_SOURCE + f" {model.id}"))
    for name in sorted(set(covariates or {}) & known):
        v = float((covariates or {})[name])
        if not math.isfinite(v):
            out.append(Problem("error", "covariate-value", f"covariates.{name}", f"{name} is not a finite number",
                               "a finite number", repr(v), MODEL_SOURCE + f" {model.id}"))
            continue
        out += _cov_problems(model, name, [v], f"covariates.{name}")
    if interval_h is not None and not (gen["interval_h"]["min"] <= interval_h <= gen["interval_h"]["max"]):
        out.append(Problem("error", "interval-range", "interval_h", f"dosing interval {interval_h:g} h is implausible",
                           f"{gen['interval_h']['min']:g}-{gen['interval_h']['max']:g} h", f"{interval_h:g} h",
                           gen["interval_h"]["source"]))
    weight = (covariates or {}).get("WT")
    if subject is not None:
        wts = [r.covariates["WT"] for r in subject.records if "WT" in r.covariates]
        weight = weight if weight is not None else (wts[-1] if wts else None)
        # covariates carried on the records
        names = sorted({k for r in subject.records for k in r.covariates})
        for name in names:
            if name not in known:
                out.append(Problem("error", "covariate-unknown", f"subject {subject.id}.{name}",
                                   f"the model {model.id} has no covariate {name!r}",
                                   f"one of {sorted(known)}" if known else "no covariates", name,
                                   MODEL_SOURCE + f" {model.id}"))
                continue
            vals = [float(r.covariates[name]) for r in subject.records if name in r.covariates]
            if name in (covariates or {}):
                continue  # already judged above (the directly given value wins)
            out += _cov_problems(model, name, vals, f"subject {subject.id}.{name}")
    if weight is not None and not 0 < weight < math.inf:
        weight = None
    if subject is not None:
        dose_probs = _check_doses(model, subject, weight, age_years)
        out += dose_probs
        # an implausible dose explains a level/prediction mismatch as well as log data would: no log guess then
        out += _check_records(model, subject, now_h if now_h is not None else subject.now_h,
                              log_check=not any(p.severity == "error" for p in dose_probs))
    if dose_mg is not None:
        from .data import Record

        tmp = Subject("regimen", [Record(time=0.0, evid=1, amt=dose_mg, ii=dose_interval_h or interval_h or 0.0)])
        out += [Problem(p.severity, p.code, p.path.replace("subject regimen records[0]", "dose"), p.message,
                        p.expected, p.got, p.source) for p in _check_doses(model, tmp, weight, age_years)
                if p.code != "interval-range"]
    seen: set[tuple[str, str, str]] = set()
    unique = []
    for p in out:  # the same regimen given twice (records and current dose) is reported once
        if (p.code, p.message, p.got) not in seen:
            seen.add((p.code, p.message, p.got))
            unique.append(p)
    unique.sort(key=lambda p: 0 if p.severity == "error" else 1)
    return unique


def _check_records(model: CompiledModel, subject: Subject, now_h: float | None,
                   log_check: bool = True) -> list[Problem]:
    out: list[Problem] = []
    recs = subject.records
    dose_times = [r.time for r in recs if r.is_dose]
    first = min(dose_times) if dose_times else None
    has_ss = any(r.is_dose and r.ss for r in recs)
    unit = model.spec.outputs[0].unit
    drug_limits = limits()["drugs"].get(model.spec.drug.strip().lower()) or {}
    max_level = None
    if "max_level_ng_ml" in drug_limits:
        from .units import factor_to

        max_level = drug_limits["max_level_ng_ml"] * factor_to("ng/mL", unit, model.spec.drug)
    for i, r in enumerate(recs):
        where = _where(subject, i)
        if max_level is not None and r.is_obs and r.dv is not None and r.dv > max_level:
            out.append(Problem("error", "level-range", f"{where}.DV",
                               f"a {model.spec.drug} level this high is implausible; check the unit (mg/L is 1000 "
                               "ng/mL) and the value", f"at most {max_level:g} {unit}", f"{r.dv:g} {unit}",
                               "ipexrx convention (plausibility.yaml: far above the modelled target ranges)"))
        if now_h is not None and r.time > now_h + 1e-9:
            out.append(Problem("error", "future-time", f"{where}.TIME",
                               "a record is dated in the future", f"a time up to now ({now_h:g} h)",
                               f"{r.time:g} h", "input check"))
        if r.is_obs and not r.blq and r.dv is not None:
            if (first is None or (r.time < first and not has_ss)) and r.dv > 0:
                out.append(Problem("error", "sample-before-dose", f"{where}.DV",
                                   "a measurable level before the first recorded dose: the dose history is "
                                   "incomplete and cannot explain it",
                                   "levels after the first dose (or a steady-state dose record, SS=1)",
                                   f"{r.dv:g} {unit} at {r.time:g} h, first dose at "
                                   + (f"{first:g} h" if first is not None else "none"), "input check"))
            if r.dv < 0:
                out.append(Problem("error", "dv-negative", f"{where}.DV",
                                   "a negative concentration: the DV column looks log-transformed, and the model "
                                   f"wants linear concentrations in {unit}", f"DV >= 0 {unit}", f"{r.dv:g}",
                                   "input check"))
    # duplicates
    seen_dose: dict[tuple[Any, ...], int] = {}
    seen_obs: dict[tuple[float, int], int] = {}
    for i, r in enumerate(recs):
        if r.is_dose:
            key = (r.time, r.cmt, r.amt, r.rate, r.ii, r.addl, r.ss)
            if key in seen_dose:
                out.append(Problem("error", "duplicate-record", f"{_where(subject, i)}",
                                   "the same dose is recorded twice (same time, compartment and amount)",
                                   "one record per administration", f"duplicate of records[{seen_dose[key]}]",
                                   "input check"))
            seen_dose.setdefault(key, i)
        elif r.is_obs:
            ok = (r.time, r.cmt)
            if ok in seen_obs:
                j = seen_obs[ok]
                same = recs[j].dv == r.dv
                out.append(Problem("error" if same else "warning", "duplicate-record", f"{_where(subject, i)}",
                                   "the same level is recorded twice" if same else
                                   "two different levels at the same time and compartment (replicates?)",
                                   "one level per sample", f"also records[{j}] (DV {recs[j].dv} and {r.dv})",
                                   "input check"))
            seen_obs.setdefault(ok, i)
    if log_check:
        out += _check_log_scale(model, subject)
    return out


def _check_log_scale(model: CompiledModel, subject: Subject) -> list[Problem]:
    """DVs that match ln(typical prediction) much better than the prediction itself: log-scale data given to a
    model that takes linear concentrations (the engine logs DV itself for log-additive error models)."""
    obs = [r for r in subject.records if r.is_obs and not r.blq and r.dv is not None]
    if not obs or any(r.dv is None or r.dv <= 0 for r in obs):
        return []  # negative values are reported above; zeros are not logs of a plausible level
    f = _typical_prediction(model, subject)
    if f is None or len(f) != len([r for r in subject.records if r.is_obs]):
        return []
    data_mask = [r for r in subject.records if r.is_obs]
    fi = np.array([f[k] for k, r in enumerate(data_mask) if not r.blq and r.dv is not None])
    y = np.array([r.dv for r in obs], dtype=float)
    if np.any(fi <= 1.0):
        return []
    # within 0.5 of ln(prediction) and at least 3x below it: a log-transformed column (a real low level, e.g. missed
    # doses, can look the same, hence a warning and not an error; a negative DV is an error above)
    looks_log = np.all(np.abs(y - np.log(fi)) < 0.5) and np.all(fi / y > 3.0)
    if not looks_log:
        return []
    unit = model.spec.outputs[0].unit
    return [Problem("warning", "dv-log-scale", f"subject {subject.id}.DV",
                    "the levels match the natural log of the typical prediction, not the prediction: the DV column "
                    f"looks log-transformed (or the levels are far below the typical ones); the model wants linear "
                    f"concentrations in {unit}",
                    f"linear concentrations in {unit} (typical prediction {float(np.median(fi)):.3g})",
                    f"DV {', '.join(f'{v:g}' for v in y[:5])}", "input check")]


def require_ok(problems: list[Problem]) -> list[Problem]:
    """Raise :class:`InputCheckError` when any problem is an error; otherwise return the (warning) problems."""
    if any(p.severity == "error" for p in problems):
        raise InputCheckError(problems)
    return problems
