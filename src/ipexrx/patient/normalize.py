"""From a validated record to :class:`PatientData`: KB ids, canonical units, located warnings.

Why a separate step: the structural model cannot know that "Prograf" is tacrolimus or that a
creatinine of 0.6 mg/dL is 53 umol/L. This step resolves names against the knowledge base and
converts units with :mod:`ipexrx.patient.units`. Policy (docs/patient-format.md):

* a value a rule needs whose unit is missing or unknown -> ``UnitError`` (never a guess);
* an implausible value (negative, or outside wide physiological bounds) -> ``PatientInputError``;
* something we do not know (a drug not in the KB, an unrecognised lab or vaccine) -> an
  :class:`InputWarning` in the output ("not checked"), never silently dropped.

All problems are collected and raised together, each located by JSON path.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..knowledge.loader import KnowledgeBase
from .errors import InputIssue, PatientInputError, UnitError
from .labs import QUALITATIVE, LabKind, lab_by_loinc, lab_by_name, parse_qualitative
from .model import PatientRecord
from .resolve import kb_index, name_key
from .units import QUANTITIES, NormDose, convert, fmt_number, normalize_dose
from .vaccines import classify_vaccine

SYSTEMIC_ROUTES = frozenset({None, "oral", "iv", "sc", "im", "rectal", "other", "inhaled"})
# Dosage-form words that make a product topical when the record gives no route ("tacrolimus
# ointment 0.1%"): without this, a skin product would count as a systemic calcineurin inhibitor.
TOPICAL_FORMS = re.compile(r"\b(ointment|cream|lotion|topical|cutaneous|dermal)\b", re.I)


class InputWarning(BaseModel):
    """Something in the input that was skipped or could not be checked, located by JSON path."""

    model_config = ConfigDict(frozen=True)

    path: str
    code: Literal["unknown-drug", "unknown-manifestation", "unknown-lab", "unknown-vaccine", "skipped",
                  "unknown-disorder", "incomplete"]
    message: str


@dataclass(frozen=True, slots=True)
class Med:
    path: str
    text: str
    drug_id: str | None
    status: str  # active | planned | stopped
    dose: NormDose | None
    route: str | None
    frequency: str | None
    start: dt.date | None
    end: dt.date | None

    @property
    def systemic(self) -> bool:
        return self.route in SYSTEMIC_ROUTES

    def describe(self) -> str:
        parts = [self.text]
        if self.dose:
            parts.append(self.dose.original)
        if self.route:
            parts.append(self.route)
        if self.frequency:
            parts.append(self.frequency)
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class LabResult:
    path: str
    kind: LabKind
    date: dt.date
    value: float | None  # canonical unit of the kind's quantity
    qualitative: str | None  # positive / negative / indeterminate
    original: str

    @property
    def unit(self) -> str:
        return "" if self.kind.quantity == QUALITATIVE else QUANTITIES[self.kind.quantity].canonical

    def show(self) -> str:
        if self.qualitative:
            return f"{self.kind.label} {self.qualitative} ({self.date})"
        assert self.value is not None
        conv = f"{fmt_number(self.value)} {self.unit}"
        extra = "" if conv == self.original else f" = {conv}"
        return f"{self.kind.label} {self.original}{extra} ({self.date})"


@dataclass(frozen=True, slots=True)
class Vaccination:
    path: str
    name: str
    live: bool | None
    status: str  # given | planned
    date: dt.date | None
    vaccine_id: str | None = None  # KB vaccine record that decided ``live`` (None: record override or unknown)


@dataclass(frozen=True, slots=True)
class ActiveInfection:
    path: str
    name: str
    pathogen: str | None
    since: dt.date | None


@dataclass(frozen=True, slots=True)
class PatientManifestation:
    path: str
    text: str
    manifestation_id: str | None
    hpo: str | None


@dataclass
class PatientData:
    """Everything the rules read, resolved and in canonical units."""

    id: str | None
    age_years: float | None
    sex: str
    weight_kg: float | None
    diagnosis: str  # ipex | ipex-like | unconfirmed
    foxp3_variant: str | None
    ipex_like_id: str | None
    ipex_like_text: str | None
    hsct_status: str
    hsct_date: dt.date | None
    manifestations: list[PatientManifestation]
    meds: list[Med]
    labs: list[LabResult]
    vaccinations: list[Vaccination]
    infections: list[ActiveInfection]
    warnings: list[InputWarning] = field(default_factory=list)

    def meds_with(self, *statuses: str) -> list[Med]:
        return [m for m in self.meds if m.status in statuses and m.drug_id]

    def labs_of(self, kinds: tuple[LabKind, ...] | set[str]) -> list[LabResult]:
        ids = kinds if isinstance(kinds, set) else {k.id for k in kinds}
        return [r for r in self.labs if r.kind.id in ids]


def _age(record: PatientRecord, as_of: dt.date, issues: list[InputIssue]) -> float | None:
    d = record.demographics
    if d.birth_date is not None:
        if d.birth_date > as_of:
            issues.append(InputIssue("$.demographics.birth_date", f"a date on or before {as_of}", str(d.birth_date)))
            return None
        age = (as_of - d.birth_date).days / 365.25
        if age > 120:
            issues.append(InputIssue("$.demographics.birth_date", "a birth date within 120 years", str(d.birth_date)))
            return None
        return age
    return d.age_years


def _future(date: dt.date | None, as_of: dt.date, path: str, issues: list[InputIssue], what: str) -> None:
    if date is not None and date > as_of:
        issues.append(InputIssue(path, f"{what} on or before the assessment date {as_of}", str(date)))


def _lab_kind(test: str, loinc: str | None) -> LabKind | None:
    if loinc:
        k = lab_by_loinc(loinc)
        if k:
            return k
    k = lab_by_name(test)
    if k is None and "-" in test:
        k = lab_by_loinc(test)
    return k


def normalize(record: PatientRecord, kb: KnowledgeBase, as_of: dt.date) -> PatientData:
    """Resolve and convert a record; raise with *all* located problems, or return data + warnings."""
    idx = kb_index(kb)
    issues: list[InputIssue] = []
    unit_issues: list[InputIssue] = []
    warnings: list[InputWarning] = []

    age = _age(record, as_of, issues)
    dx = record.diagnosis
    like_id = None
    like_text = dx.disorder or dx.gene
    if dx.type == "ipex-like" and like_text:
        like_id = idx.ipex_like.get(name_key(like_text)) or (idx.ipex_like.get(name_key(dx.gene)) if dx.gene else None)
        if like_id is None:
            warnings.append(InputWarning(path="$.diagnosis.disorder", code="unknown-disorder",
                                         message=f"IPEX-like disorder '{like_text}' is not in the knowledge base; "
                                         "its targeted options are not shown"))
    if record.hsct.status == "done" and record.hsct.date is not None:
        _future(record.hsct.date, as_of, "$.hsct.date", issues, "a transplant date")

    manifestations: list[PatientManifestation] = []
    for i, m in enumerate(record.manifestations):
        if m.status != "active":
            continue
        path = f"$.manifestations[{i}]"
        mid = idx.manifestations.resolve(m.hpo, m.name)
        text = m.name or m.hpo or ""
        if mid is None:
            warnings.append(InputWarning(path=path, code="unknown-manifestation",
                                         message=f"manifestation '{text}' is not in the knowledge base; "
                                         "no options shown for it"))
        manifestations.append(PatientManifestation(path, text, mid, m.hpo))

    meds: list[Med] = []
    for i, med in enumerate(record.medications):
        path = f"$.medications[{i}]"
        drug_id = idx.drugs.resolve(med.drug, med.rxcui) or idx.drugs.resolve_text(med.drug)
        if drug_id is None:
            warnings.append(InputWarning(path=f"{path}.drug", code="unknown-drug",
                                         message=f"'{med.drug}' is not in the knowledge base; not checked"))
        dose = None
        if med.dose is not None:
            try:
                dose = normalize_dose(med.dose.value, med.dose.unit, f"{path}.dose.unit")
            except UnitError as exc:
                unit_issues.extend(exc.issues)
        if med.status != "planned":
            _future(med.start_date, as_of, f"{path}.start_date", issues, "a start date")
        route = med.route
        if route is None and drug_id is not None:
            kb_routes = kb.drugs[drug_id].routes
            form = TOPICAL_FORMS.search(med.drug)
            if form or kb_routes == ["topical"]:
                route = "topical"
                why = f"the name says '{form.group(1)}'" if form else "the drug is only used topically"
                warnings.append(InputWarning(path=f"{path}.route", code="incomplete",
                                             message=f"no route given for '{med.drug}'; read as topical because "
                                             f"{why} (not counted as systemic)"))
        meds.append(Med(path, med.drug, drug_id, med.status, dose, route, med.frequency, med.start_date,
                        med.end_date))

    labs: list[LabResult] = []
    for i, lab in enumerate(record.labs):
        path = f"$.labs[{i}]"
        kind = _lab_kind(lab.test, lab.loinc)
        if kind is None:
            warnings.append(InputWarning(path=f"{path}.test", code="unknown-lab",
                                         message=f"lab test '{lab.test}' is not recognised; not used by any rule"))
            continue
        _future(lab.date, as_of, f"{path}.date", issues, "a result date")
        if kind.quantity == QUALITATIVE:
            q = parse_qualitative(lab.value)
            if q is None:
                issues.append(InputIssue(f"{path}.value", "positive, negative or indeterminate", repr(lab.value)))
                continue
            labs.append(LabResult(path, kind, lab.date, None, q, str(lab.value)))
            continue
        if isinstance(lab.value, bool) or not isinstance(lab.value, int | float):
            issues.append(InputIssue(f"{path}.value", f"a number for {kind.label}", repr(lab.value)))
            continue
        try:
            value = convert(kind.quantity, float(lab.value), lab.unit, f"{path}.unit")
        except UnitError as exc:
            unit_issues.extend(exc.issues)
            continue
        if kind.plausible and not (kind.plausible[0] <= value <= kind.plausible[1]):
            lo, hi = kind.plausible
            unit = QUANTITIES[kind.quantity].canonical
            issues.append(InputIssue(f"{path}.value", f"a plausible {kind.label} ({fmt_number(lo)}-{fmt_number(hi)} "
                                     f"{unit}; check value and unit)", f"{fmt_number(lab.value)} {lab.unit}"))
            continue
        labs.append(LabResult(path, kind, lab.date, value, None, f"{fmt_number(lab.value)} {lab.unit}"))
    labs.sort(key=lambda r: r.date)

    vaccinations: list[Vaccination] = []
    for i, imm in enumerate(record.immunizations):
        path = f"$.immunizations[{i}]"
        live, vaccine_id = classify_vaccine(imm.vaccine, imm.cvx, kb)
        if imm.live is not None:
            live, vaccine_id = imm.live, (vaccine_id if live == imm.live else None)
        if live is None:
            warnings.append(InputWarning(path=f"{path}.vaccine", code="unknown-vaccine",
                                         message=f"vaccine '{imm.vaccine}' not recognised: whether it is live is "
                                         "unknown; set \"live\" to have it checked"))
        if imm.status == "given":
            _future(imm.date, as_of, f"{path}.date", issues, "a vaccination date")
        vaccinations.append(Vaccination(path, imm.vaccine, live, imm.status, imm.date, vaccine_id))

    infections = [ActiveInfection(f"$.infections[{i}]", inf.name, inf.pathogen, inf.since)
                  for i, inf in enumerate(record.infections) if inf.active]

    if issues or unit_issues:
        all_issues = issues + unit_issues
        if unit_issues and not issues:
            raise UnitError(all_issues, "a value needed by the assessment has a missing or unknown unit")
        raise PatientInputError(all_issues, "the patient record has implausible or unusable values")

    return PatientData(
        id=record.id, age_years=age, sex=record.demographics.sex, weight_kg=record.demographics.weight_kg,
        diagnosis=dx.type, foxp3_variant=dx.foxp3_variant, ipex_like_id=like_id, ipex_like_text=like_text,
        hsct_status=record.hsct.status, hsct_date=record.hsct.date, manifestations=manifestations, meds=meds,
        labs=labs, vaccinations=vaccinations, infections=infections, warnings=warnings,
    )
