"""Dose suggestions from a normalised patient (our patient JSON or a FHIR Bundle, read by ``ipexrx.patient``).

Why duck typing: the dosing layer does not import the patient layer (they are siblings; the assessment
uses both). This module reads only the attributes it needs from a ``PatientData``-like object:
``weight_kg``, ``meds`` (``drug_id``, ``status``, ``dose.value``/``dose.unit``, ``frequency``) and ``labs``
(``kind.id`` such as ``tacrolimus-trough``, ``value`` in ng/mL, ``date``). Assumptions are explicit in the
result: steady state on the current regimen and a level drawn just before the next dose.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import DosingError
from .recommend import DEFAULT_MODELS, Recommendation, recommend, recommend_from_trough

_FREQ = {
    "once daily": 24, "daily": 24, "od": 24, "qd": 24, "q24h": 24, "every 24 hours": 24, "once a day": 24,
    "twice daily": 12, "bid": 12, "b.i.d.": 12, "q12h": 12, "every 12 hours": 12, "twice a day": 12,
    "three times daily": 8, "tid": 8, "q8h": 8, "every 8 hours": 8,
}


def interval_from_frequency(text: str | None) -> float:
    """Dosing interval (h) from a frequency such as 'twice daily', 'BID', 'q12h'; unknown text is an error."""
    if not text:
        raise DosingError("the medication has no frequency; expected e.g. 'twice daily' or 'q12h'")
    t = text.strip().lower()
    if t in _FREQ:
        return float(_FREQ[t])
    m = re.fullmatch(r"(?:every|q)\s*(\d+(?:\.\d+)?)\s*(?:h|hr|hrs|hours?)", t)
    if m:
        return float(m.group(1))
    raise DosingError(f"cannot read the dosing frequency {text!r}; expected e.g. 'twice daily', 'BID', 'q12h'")


def recommend_for_patient(patient: Any, drug_id: str, covariates: dict[str, float] | None = None) -> Recommendation:
    """Suggest a regimen for ``drug_id`` from the patient's current dose, frequency, latest trough and weight.

    Without a trough the suggestion is a priori (covariates only). Extra model covariates (genotype,
    haematocrit, bilirubin...) go in ``covariates`` in the model's units.
    """
    if drug_id not in DEFAULT_MODELS:
        raise DosingError(f"no dosing model for {drug_id!r}; modelled drugs: {', '.join(sorted(DEFAULT_MODELS))}")
    covs: dict[str, float] = {}
    if getattr(patient, "weight_kg", None) is not None:
        covs["WT"] = float(patient.weight_kg)
    covs.update(covariates or {})
    meds = [m for m in getattr(patient, "meds", []) if m.drug_id == drug_id and m.status == "active"]
    troughs = [lab for lab in getattr(patient, "labs", [])
               if getattr(lab.kind, "id", None) == f"{drug_id}-trough" and lab.value is not None]
    if not meds or troughs == []:
        interval = interval_from_frequency(meds[0].frequency) if meds and meds[0].frequency else None
        return recommend(DEFAULT_MODELS[drug_id], None, covs, interval_h=interval)
    med = meds[0]
    if med.dose is None or med.dose.unit != "mg":
        got = "no dose" if med.dose is None else f"{med.dose.value} {med.dose.unit}"
        raise DosingError(f"{drug_id}: the current dose must be in mg per administration to fit a level, got {got}")
    latest = max(troughs, key=lambda lab: lab.date)
    return recommend_from_trough(drug_id, float(latest.value), "ng/mL", float(med.dose.value),
                                 interval_from_frequency(med.frequency), covs)
