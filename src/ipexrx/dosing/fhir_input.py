"""Dosing history and levels from a FHIR R4 Bundle, as an event-level :class:`Subject` for MAP fitting.

Reads MedicationAdministration (one dose at ``effectiveDateTime``), MedicationStatement (a regimen:
``dosage.timing.repeat`` frequency/period from ``effectivePeriod.start``), and Observations coded in LOINC:
drug levels (tacrolimus 11253-2, sirolimus 29247-4, cyclosporine 3520-4) and covariates (body weight 29463-7,
haematocrit 4544-3, total bilirubin 1975-2). Units are converted explicitly; an unknown or missing unit, a
missing time, or an extended-release product for an immediate-release model is an error, never a guess.
Times become hours since the first event.

Each resource is read through the typed FHIR views of ``patient.fhir_types`` (the one place FHIR JSON
becomes objects), so a malformed element is named with its path instead of failing somewhere inside.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from ..patient.errors import describe_path
from ..patient.fhir_types import CodeableConcept, InvalidResource, Quantity, parse
from .data import Record, Subject, validate_subject
from .errors import DataError
from .model import CompiledModel
from .units import to_model_unit

LEVEL_LOINC = {"11253-2": "tacrolimus", "29247-4": "sirolimus", "3520-4": "cyclosporine"}
COVARIATE_LOINC = {"29463-7": "WT", "4544-3": "HCT", "1975-2": "TBIL"}
DRUG_NAMES = {
    "tacrolimus": ("tacrolimus", "prograf", "modigraf", "fk506"),
    "sirolimus": ("sirolimus", "rapamune", "rapamycin"),
    "cyclosporine": ("cyclosporine", "ciclosporin", "neoral", "gengraf", "sandimmune"),
}
EXTENDED_RELEASE = ("advagraf", "envarsus", "astagraf", "extended", "prolonged", " xl", " er")
_DOSE_UNITS = {"mg": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001, "µg": 0.001}
_COV_UNITS = {
    "WT": {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237},
    "HCT": {"l/l": 1.0, "%": 0.01, "1": 1.0},
    "TBIL": {"umol/l": 1.0, "µmol/l": 1.0, "mg/dl": 17.104},
}


def _time(value: str | None, where: str) -> dt.datetime:
    if not value:
        raise DataError(f"{where}: no time (expected effectiveDateTime or effectivePeriod.start with a time)")
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise DataError(f"{where}: time {value!r} is not an ISO 8601 date-time") from None
    if "T" not in value:
        raise DataError(f"{where}: {value!r} has a date but no time of day; level fitting needs clock times")
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _unit(q: Quantity | None, table: dict[str, float], where: str, expected: str) -> float:
    q = q or Quantity()
    unit = (q.code or q.unit or "").strip()
    if not unit:
        raise DataError(f"{where}: the quantity has no unit; expected {expected}")
    factor = table.get(unit.lower())
    if factor is None:
        raise DataError(f"{where}: unit {unit!r} not understood; expected {expected}")
    v = q.value
    if v is None or v < 0:
        raise DataError(f"{where}: expected a non-negative number, got {v!r}")
    return float(v) * factor


def _loinc(code: CodeableConcept | None) -> str | None:
    for c in (code.coding or []) if code is not None else []:
        if "loinc" in (c.system or "") and c.code:
            return str(c.code)
    return None


def _drug_text(cc: CodeableConcept | None) -> str:
    if cc is None:
        return ""
    parts = [cc.text or ""] + [c.display or "" for c in cc.coding or []]
    return " ".join(parts).lower()


def subject_from_fhir(bundle: str | dict[str, Any], model: CompiledModel, subject_id: str = "fhir",
                      covariates: dict[str, float] | None = None, now: dt.datetime | None = None) -> Subject:
    """Event-level subject for ``model`` (its drug's doses and levels, and its covariates) from a Bundle.

    ``covariates`` supplies model covariates the Bundle does not carry (genotype, donor type, eGFR...),
    in the model's units; values found in the Bundle take precedence at their times. ``now`` (default: the clock)
    is recorded as ``Subject.now_h`` so that the input checks can refuse records dated in the future."""
    lines = None
    if isinstance(bundle, str):
        from ..patient.jsonpos import JsonLines

        lines = JsonLines(bundle)  # an entry's line in the text, for the messages
        try:
            bundle = json.loads(bundle)
        except json.JSONDecodeError as exc:
            raise DataError(f"FHIR input is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        got = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        raise DataError(f"expected a FHIR Bundle, got {got!r}")
    drug = model.spec.drug.lower()
    names = DRUG_NAMES.get(drug, (drug,))
    dose_cmt = min(model.dose_f) + 1
    obs_cmt = model.outputs[0][0] + 1
    events: list[tuple[dt.datetime, int, dict[str, Any]]] = []
    covs: list[tuple[dt.datetime, str, float]] = []
    entries = bundle.get("entry", []) or []
    if not isinstance(entries, list):
        raise DataError(f"Bundle.entry: expected a list of entries, got {type(entries).__name__}")
    for i, entry in enumerate(entries):
        raw = entry.get("resource") if isinstance(entry, dict) else None
        rtype = raw.get("resourceType") if isinstance(raw, dict) else None
        if rtype not in ("MedicationAdministration", "MedicationStatement", "Observation"):
            continue
        # 'line 40, entry 4 (Observation, id "o1")': the entry counted from 1, where the file has it
        line = lines.line(f"$.entry[{i}].resource") if lines is not None else None
        where = (f"line {line}, " if line else "") + describe_path(f"$.entry[{i}]", bundle)
        try:
            res: Any = parse(raw, f"$.entry[{i}].resource")  # type: ignore[arg-type]
        except InvalidResource as exc:
            line = lines.line(exc.issue.path) if lines is not None else None
            raise DataError((f"line {line}, " if line else "") + f"{describe_path(exc.issue.path, bundle)} is not "
                            f"valid FHIR R4: expected {exc.issue.expected}, got {exc.issue.got}") from None
        if rtype in ("MedicationAdministration", "MedicationStatement"):
            text = _drug_text(res.medicationCodeableConcept)
            if not any(n in text for n in names):
                continue
            if res.status in ("entered-in-error", "not-done", "stopped", "cancelled", "intended"):
                continue
            if any(x in f" {text}" for x in EXTENDED_RELEASE):
                raise DataError(f"{where}: {text.strip()!r} is an extended-release product; the model {model.id} "
                                "describes immediate-release dosing")
            if rtype == "MedicationAdministration":
                amt = _unit(res.dosage.dose if res.dosage else None, _DOSE_UNITS, f'{where}, element "dosage.dose"',
                            "mg, g or ug")
                t = _time(res.effectiveDateTime or (res.effectivePeriod.start if res.effectivePeriod else None),
                          where)
                events.append((t, 1, {"amt": amt}))
            else:
                dosage = (res.dosage or [None])[0]
                dr = ((dosage.doseAndRate if dosage else None) or [None])[0]
                amt = _unit(dr.doseQuantity if dr else None, _DOSE_UNITS,
                            f'{where}, element "dosage.doseAndRate.doseQuantity"', "mg, g or ug")
                rep = dosage.timing.repeat if dosage is not None and dosage.timing is not None else None
                freq, period, unit = (rep.frequency, rep.period, rep.periodUnit) if rep else (None, None, None)
                hours = {"h": 1.0, "d": 24.0, "wk": 168.0}.get(unit or "")
                if not freq or not period or hours is None:
                    raise DataError(f'{where}, element "dosage.timing.repeat": expected frequency, period and '
                                    "periodUnit h, d or wk")
                ii = period * hours / freq
                per = res.effectivePeriod
                start = _time(per.start if per else None, f'{where}, element "effectivePeriod.start"')
                end = _time(per.end, f'{where}, element "effectivePeriod.end"') if per is not None and per.end else None
                events.append((start, 1, {"amt": amt, "ii": ii, "end": end}))
        else:
            code = _loinc(res.code)
            if res.status in ("entered-in-error", "cancelled"):
                continue
            t_raw = res.effectiveDateTime or (res.effectivePeriod.start if res.effectivePeriod else None)
            if code in LEVEL_LOINC and LEVEL_LOINC[code] == drug:
                q = res.valueQuantity
                v = q.value if q is not None else None
                if v is None or v < 0:
                    raise DataError(f'{where}, element "valueQuantity": expected a non-negative number, got {v!r}')
                # case-insensitive UCUM; molar units with the drug's molar mass (knowledge base)
                val = to_model_unit(float(v), q.code or q.unit or "", model,  # type: ignore[union-attr]
                                    f'{where}, element "valueQuantity"')
                events.append((_time(t_raw, where), 0, {"dv": val}))
            elif code in COVARIATE_LOINC and COVARIATE_LOINC[code] in model.spec.covariates:
                name = COVARIATE_LOINC[code]
                val = _unit(res.valueQuantity, _COV_UNITS[name], f'{where}, element "valueQuantity"',
                            ", ".join(_COV_UNITS[name]))
                covs.append((_time(t_raw, where) if t_raw and "T" in t_raw else _day(t_raw, where), name, val))
    if not any(e[1] == 1 for e in events):
        raise DataError(f"the Bundle has no {drug} MedicationAdministration or MedicationStatement with a dose")
    t0 = min(e[0] for e in events)
    last = max(e[0] for e in events)

    def h(t: dt.datetime) -> float:
        return (t - t0).total_seconds() / 3600.0

    def cov_at(t: dt.datetime) -> dict[str, float]:
        out: dict[str, float] = dict(covariates or {})
        for name in {c[1] for c in covs}:
            vals = sorted((c for c in covs if c[1] == name), key=lambda c: c[0])
            before = [v for v in vals if v[0] <= t]
            out[name] = (before[-1] if before else vals[0])[2]
        return out

    recs: list[Record] = []
    for t, evid, d in sorted(events, key=lambda e: (e[0], -e[1])):
        if evid == 1 and "ii" in d:
            stop = min(d["end"] or last, last)
            n = int((stop - t).total_seconds() / 3600.0 // d["ii"])
            recs.append(Record(time=h(t), evid=1, amt=d["amt"], cmt=dose_cmt, ii=d["ii"], addl=max(n, 0),
                               covariates=cov_at(t)))
        elif evid == 1:
            recs.append(Record(time=h(t), evid=1, amt=d["amt"], cmt=dose_cmt, covariates=cov_at(t)))
        else:
            recs.append(Record(time=h(t), evid=0, cmt=obs_cmt, dv=d["dv"], covariates=cov_at(t)))
    s = Subject(subject_id, recs, now_h=h(now or dt.datetime.now(dt.UTC)))
    validate_subject(s, n_cmt=len(model.spec.compartments))
    return s


def _day(value: str | None, where: str) -> dt.datetime:
    if not value:
        raise DataError(f"{where}: no effective date")
    try:
        d = dt.date.fromisoformat(value[:10])
    except ValueError:
        raise DataError(f"{where}: {value!r} is not an ISO 8601 date") from None
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)
