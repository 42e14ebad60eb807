"""Dosing inputs as a person enters them: a current regimen with levels typed in rows, or an uploaded file
(NM-TRAN CSV or FHIR Bundle), turned into a :class:`Subject`; and the checked recommendation built from them.

Used by the web dosing page and the upload API alike, so both run the same conversions and the same input
checks (:mod:`ipexrx.dosing.checks`) before any fit.

Typed levels are read as drawn at steady state on the current regimen, each a stated number of hours after a
dose (default: just before the next one, a trough). Each level gets its own steady-state dose record (SS=1)
one interval after the previous one, so several levels on the same regimen are separate samples rather than
replicates at one time; with linear kinetics at steady state this is the same as drawing them on different
days. Nothing is stored.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from .checks import Problem, check_inputs, require_ok
from .data import Record, Subject, read_nmtran
from .errors import DataError
from .model import CompiledModel
from .recommend import Recommendation, dose_compartment, recommend
from .units import convert_subject, to_model_unit

MAX_UPLOAD_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class LevelEntry:
    """One typed level: ``value`` in ``unit``, drawn ``hours_after_dose`` after a dose (None: a trough)."""

    value: float
    unit: str
    hours_after_dose: float | None = None


def subject_from_levels(model: CompiledModel, dose_mg: float, interval_h: float, levels: list[LevelEntry],
                        covariates: dict[str, float] | None = None, subject_id: str = "entered") -> Subject:
    """A steady-state subject on ``dose_mg`` every ``interval_h`` h with the typed levels (see the module doc).

    Each level is converted to the model's unit (case-insensitive UCUM, molar units with the drug's molar mass);
    a level drawn outside the dosing interval or a non-positive value is a :class:`DataError` naming its row."""
    for name, v in (("dose", dose_mg), ("dosing interval", interval_h)):
        if not (math.isfinite(v) and v > 0):
            raise DataError(f"current regimen: the {name} must be a number > 0, got {v:g}")
    if not levels:
        raise DataError("no level entered; expected at least one level with its unit")
    covs = dict(covariates or {})
    c_dose, c_obs = dose_compartment(model) + 1, model.outputs[0][0] + 1
    unit = model.spec.outputs[0].unit
    recs: list[Record] = []
    notes: list[str] = []
    for k, lv in enumerate(levels, start=1):
        where = f"level {k}"
        if not (math.isfinite(lv.value) and lv.value > 0):
            raise DataError(f"{where}: expected a concentration > 0, got {lv.value:g}")
        t = interval_h if lv.hours_after_dose is None else lv.hours_after_dose
        if not (math.isfinite(t) and 0 < t <= interval_h):
            raise DataError(f"{where}: expected a time after the dose within the dosing interval (0-{interval_h:g} "
                            f"h), got {t:g} h")
        value = to_model_unit(lv.value, lv.unit, model, where)
        if value != lv.value:
            notes.append(f"{where}: {lv.value:g} {lv.unit} read as {value:.4g} {unit} (the model's unit)")
        start = (k - 1) * interval_h
        recs.append(Record(time=start, evid=1, amt=dose_mg, cmt=c_dose, ii=interval_h, ss=1, covariates=covs))
        recs.append(Record(time=start + t, evid=0, cmt=c_obs, dv=value, covariates=covs))
    return Subject(subject_id, recs, warnings=notes)


def is_fhir(data: bytes, filename: str) -> bool:
    """A JSON document (FHIR Bundle) rather than an NM-TRAN CSV: by the file name, else by the first character."""
    if filename.lower().endswith((".json", ".fhir")):
        return True
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"{")


def subject_from_file(model: CompiledModel, data: bytes, filename: str, covariates: dict[str, float] | None = None,
                      subject_id: str | None = None, dv_unit: str | None = None,
                      now: dt.datetime | None = None) -> Subject:
    """The one subject of an uploaded NM-TRAN CSV (``subject_id`` chooses among several) or FHIR Bundle.

    Text is decoded by :mod:`ipexrx.textio` (UTF-8 with or without BOM; CSV also Windows-1252/Latin-1 with a
    warning); UTF-16 or binary data, a file over :data:`MAX_UPLOAD_BYTES`, or a CSV with several subjects and no
    choice is a :class:`DataError` saying what was expected and what arrived. ``dv_unit`` is the unit of a CSV's
    DV column (default: the model's); a FHIR Bundle carries its own units."""
    from ..textio import TextEncodingError, decode_text

    name = filename or "the uploaded file"
    if len(data) > MAX_UPLOAD_BYTES:
        raise DataError(f"{name}: expected at most {MAX_UPLOAD_BYTES // 2**20} MB, got {len(data) / 2**20:.1f} MB")
    if not data.strip():
        raise DataError(f"{name}: the file is empty; expected an NM-TRAN CSV or a FHIR Bundle (JSON)")
    if is_fhir(data, name):
        from .fhir_input import subject_from_fhir

        if dv_unit is not None:
            raise DataError(f"{name}: a FHIR Bundle states each level's unit; expected no DV unit, got {dv_unit!r}")
        try:
            text = decode_text(data, name, legacy=False).text
        except TextEncodingError as exc:
            raise DataError(str(exc)) from None
        try:
            return subject_from_fhir(text, model, subject_id or "uploaded", covariates=covariates, now=now)
        except DataError as exc:
            raise DataError(f"{name}: {exc}") from None
    subjects = read_nmtran(data, model.covariate_names(), name=name)
    if subject_id:
        chosen = [s for s in subjects if s.id == subject_id]
        if not chosen:
            raise DataError(f"{name}: expected a subject with ID {subject_id!r}, got IDs {_ids(subjects)}")
    elif len(subjects) > 1:
        raise DataError(f"{name}: the file holds {len(subjects)} subjects ({_ids(subjects)}); expected one, or "
                        "the ID of the one to dose")
    else:
        chosen = subjects
    s = chosen[0]
    if dv_unit:
        convert_subject(s, dv_unit, model)
    return s


def _ids(subjects: list[Subject]) -> str:
    ids = [s.id for s in subjects]
    return ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def checked_recommendation(model: CompiledModel, subject: Subject | None, covariates: dict[str, float],
                           **options: Any) -> tuple[Recommendation, list[Problem]]:
    """The input checks, then the recommendation; returns it with the (warning-level) problems found.

    Raises :class:`~ipexrx.dosing.checks.InputCheckError` when any check is an error: nothing is fitted.
    ``options`` are :func:`~ipexrx.dosing.recommend.recommend`'s keyword arguments (interval_h, metric,
    target_low/high/unit, form_index, current_dose_mg, current_interval_h, retarget); the checks see the same
    regimen the recommendation will."""
    problems = require_ok(check_inputs(model, subject, covariates, interval_h=options.get("interval_h"),
                                       dose_mg=options.get("current_dose_mg"),
                                       dose_interval_h=options.get("current_interval_h")))
    rec = recommend(model, subject, covariates, **options)
    return rec, problems
