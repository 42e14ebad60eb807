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
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..knowledge.loader import KnowledgeBase
from ..knowledge.schema import SYSTEMIC_ROUTES as KB_SYSTEMIC_ROUTES
from ..knowledge.schema import Formulation, Product
from ..memo import remembered
from .errors import InputIssue, PatientInputError, UnitError, plain_location
from .hsct import HsctEvidence, HsctReading, combine, donor_kind, evidence_from_text, mentions_hsct, status_words
from .labs import QUALITATIVE, LabKind, lab_by_loinc, lab_by_name, parse_qualitative
from .medtext import read_product_text
from .model import Medication, PatientRecord
from .resolve import DrugIndex, Identification, kb_index, name_key
from .units import QUANTITIES, NormDose, convert, fmt_number, normalize_dose, volume_ml
from .vaccines import VaccineMedication, classify_vaccine, vaccine_in_medication

# A record counts as systemic unless its route says the drug acts locally. An unknown route counts as
# systemic: the safe reading for interaction and immunosuppression rules (and it is named back).
SYSTEMIC_ROUTES = frozenset({None, "other"}) | KB_SYSTEMIC_ROUTES
# Every check a medication record takes part in; named back when a record cannot be identified.
MED_CHECKS = "interactions, duplication, dose range, monitoring, screening and vaccine checks"


class InputWarning(BaseModel):
    """Something in the input that was skipped or could not be checked, located by JSON path."""

    model_config = ConfigDict(frozen=True)

    path: str
    code: Literal["unknown-drug", "outside-kb-drug", "ambiguous-drug", "unknown-manifestation", "unknown-lab",
                  "unknown-vaccine", "skipped", "unknown-disorder", "incomplete", "hsct"]
    message: str


@dataclass(frozen=True, slots=True)
class Med:
    """One medication record as written, and what it was identified as.

    Each record stays its own record: a topical and an oral tacrolimus in one chart are two ``Med`` s,
    and rules read the one whose route they are about.
    """

    path: str
    text: str
    drug_id: str | None
    status: str  # active | planned | stopped
    dose: NormDose | None
    route: str | None
    frequency: str | None
    start: dt.date | None
    end: dt.date | None
    brand: str | None = None  # the brand the record names (KB spelling)
    product_id: str | None = None  # the KB product its code or text names
    formulation: str | None = None  # the KB formulation (non-interchangeable family) it belongs to
    identified_by: str | None = None  # rxnorm-product | rxnorm-brand | rxnorm-ingredient | atc | name | brand | text
    route_basis: str | None = None  # where the route came from when the record gave none
    suggestions: tuple[str, ...] = ()  # KB drug ids the unidentified text may mean (a question, never an identity)
    outside_name: str | None = None  # the drug dictionary's name of a known drug without IPEX content
    absorbed: bool = False  # a usually-local route by which this drug reaches the blood (Drug.absorbed_routes)

    @property
    def systemic(self) -> bool:
        return self.absorbed or self.route in SYSTEMIC_ROUTES

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
    upper_limit: float | None = None  # the laboratory's upper reference limit, canonical unit (when given)

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
    height_cm: float | None = None
    hsct_date_precision: str = "day"  # day | month | year
    hsct_kind: str | None = None  # allogeneic | autologous
    hsct_basis: list[str] = field(default_factory=list)  # what the HSCT status was read from
    hsct_notes: list[str] = field(default_factory=list)  # what about it is unclear or contradictory
    # What hsct_status rests on: recorded (read from the record) | not-recorded (nothing about HSCT: not-done is
    # assumed) | unclear (HSCT named, no status readable: not-done is assumed). See patient.hsct.status_words.
    hsct_status_basis: str = "recorded"

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


_IDENTIFIED: dict[Any, tuple[object, Identification]] = {}


def _identify(med: Medication, drugs: DrugIndex) -> Identification:
    """The record's identification, remembered per drug text, RxCUI and ATC code for each knowledge base's
    index (a pure function of the four; charts name the same few products again and again)."""
    return remembered(_IDENTIFIED, (id(drugs), med.drug, med.rxcui, med.atc), drugs, lambda: _identify_now(med, drugs))


def _identify_now(med: Medication, drugs: DrugIndex) -> Identification:
    codes = [c for c in (med.rxcui, med.drug.strip() if med.drug.strip().isdigit() else None) if c]
    return drugs.identify(med.drug, codes, [med.atc] if med.atc else [])


def _unidentified(med: Medication, path: str, found: Identification, drugs: DrugIndex, kb: KnowledgeBase,
                  warnings: list[InputWarning]) -> tuple[tuple[str, ...], str | None]:
    """Name an unidentified record back: ambiguous, a known drug outside the KB, or a probable typo."""
    from . import lexicon

    if found.candidates:
        names = ", ".join(kb.drugs[d].name for d in found.candidates)
        warnings.append(InputWarning(path=f"{path}.drug", code="ambiguous-drug", message=(
            f"'{med.drug}' names more than one drug ({names}); it was not identified, so {MED_CHECKS} did not run "
            "for it. Give one drug per medication record.")))
        return found.candidates, None
    words = lexicon.words(med.drug)
    group = drugs.containing(words[0]) if len(words) == 1 else ()
    if group:
        names = " or ".join(kb.drugs[d].name for d in group)
        warnings.append(InputWarning(path=f"{path}.drug", code="ambiguous-drug", message=(
            f"'{med.drug}' does not name one product - did you mean {names}? It was not identified, so {MED_CHECKS} "
            "did not run for it. Name the product.")))
        return group, None
    outside = lexicon.known_name(med.drug)
    if outside is not None:
        kb_id = drugs.resolve(outside)
        if kb_id is None:
            warnings.append(InputWarning(path=f"{path}.drug", code="outside-kb-drug", message=(
                f"'{med.drug}': {outside} is a known drug without IPEX content in the knowledge base; its "
                f"interactions, dose range and monitoring were not checked.")))
            return (), outside
        # The dictionary knows the name as a knowledge-base drug under a name the KB does not list (a brand):
        # a strong hint, still offered as a question rather than taken as the identity.
        warnings.append(InputWarning(path=f"{path}.drug", code="unknown-drug", message=(
            f"'{med.drug}' is not a name the knowledge base lists; the open drug dictionary reads it as "
            f"{kb.drugs[kb_id].name} - did you mean {kb.drugs[kb_id].name}? Until the record is corrected, "
            f"{MED_CHECKS} did not run for it.")))
        return (kb_id,), None
    suggestions = lexicon.suggest(med.drug, drugs.kb_names())
    kb_ids = tuple(dict.fromkeys(s.drug_id for s in suggestions if s.drug_id))
    if kb_ids:
        ask = " or ".join(dict.fromkeys(s.name for s in suggestions if s.drug_id))
        warnings.append(InputWarning(path=f"{path}.drug", code="unknown-drug", message=(
            f"'{med.drug}' was not recognised - did you mean {ask}? Until the record is corrected, {MED_CHECKS} "
            "did not run for it.")))
    else:
        near = [s.name for s in suggestions]
        hint = f" (closest known names: {', '.join(near)})" if near else ""
        warnings.append(InputWarning(path=f"{path}.drug", code="unknown-drug", message=(
            f"'{med.drug}' was not recognised as a drug{hint}; {MED_CHECKS} did not run for it.")))
    return kb_ids, None


def _medication(med: Medication, path: str, kb: KnowledgeBase, drugs: DrugIndex, as_of: dt.date,
                issues: list[InputIssue], unit_issues: list[InputIssue], warnings: list[InputWarning]) -> Med:
    found = _identify(med, drugs)
    drug_id = found.drug_id
    suggestions: tuple[str, ...] = ()
    outside = None
    if drug_id is None:
        suggestions, outside = _unidentified(med, path, found, drugs, kb, warnings)
    text = read_product_text(med.drug)
    drug = kb.drugs[drug_id] if drug_id else None
    product = drugs.products[found.product_id][1] if found.product_id in drugs.products else None
    brand = next((b for b in drug.brands if b.name == found.brand), None) if drug and found.brand else None
    formulation = (brand.formulation if brand else None) or (product.formulation if product else None)
    if formulation is None and drug is not None and drug.formulations:
        formulation = _formulation_in_text(med.drug, drug.formulations)

    route: str | None = med.route
    basis: str | None = None
    if route is None and drug is not None:
        if found.route:
            route, basis = found.route, ("the product code" if found.via and "product" in found.via else
                                         "the brand code" if found.via and "brand" in found.via else "the ATC code")
        elif text.route and text.route != "injection":
            route, basis = text.route, f"the dose form in the text ('{text.form}')"
        elif brand is not None and brand.route:
            route, basis = brand.route, f"the brand ({brand.name} exists only as {brand.route})"
        elif drug.routes and len(set(drug.routes)) == 1:
            route, basis = drug.routes[0], f"the drug is only used by the {drug.routes[0]} route"
        if route is not None and route not in SYSTEMIC_ROUTES and route not in drug.absorbed_routes:
            # Said out loud because it takes the record out of every systemic check; a systemic reading
            # changes nothing the rules do and is shown with the medication (route_basis).
            warnings.append(InputWarning(path=f"{path}.route", code="incomplete", message=(
                f"no route given for '{med.drug}'; read as {route} from {basis} (not counted as systemic)")))
    elif route is not None and drug is not None and text.route and text.route != "injection":
        local_text = text.route not in SYSTEMIC_ROUTES
        if local_text != (route not in SYSTEMIC_ROUTES):
            warnings.append(InputWarning(path=f"{path}.route", code="incomplete", message=(
                f"the route '{route}' and the dose form in '{med.drug}' ('{text.form}') disagree; the record's route "
                "is used")))

    dose = None
    if med.dose is not None:
        dose = _dose(med, path, text.mg_per_ml, text.concentration_text, product, unit_issues)
    if med.status != "planned":
        _future(med.start_date, as_of, f"{path}.start_date", issues, "a start date")
    return Med(path, med.drug, drug_id, med.status, dose, route, med.frequency, med.start_date, med.end_date,
               brand=brand.name if brand else None, product_id=product.id if product else None,
               formulation=formulation, identified_by=found.via, route_basis=basis, suggestions=suggestions,
               outside_name=outside, absorbed=bool(drug and route and route in drug.absorbed_routes))


def _vaccine_order(med: Medication, path: str, vaccine: VaccineMedication,
                   warnings: list[InputWarning]) -> list[Vaccination]:
    """A medication record that orders a vaccine, read as a planned (current or draft order) vaccination.

    A stopped order does not say whether the dose was given, so it is named back and not read.
    """
    if med.status == "stopped":
        warnings.append(InputWarning(path=path, code="skipped", message=(
            f"'{med.drug}' is a vaccine ({vaccine.reason}) in a stopped or completed medication record, which does "
            "not say whether or when it was given; record a given vaccine as an Immunization to have it checked")))
        return []
    if vaccine.live is None:
        warnings.append(InputWarning(path=f"{path}.drug", code="unknown-vaccine", message=(
            f"'{med.drug}' is read as a vaccine order ({vaccine.reason}), but whether it is live is unknown; "
            "record it as an immunization with \"live\" set to have it checked")))
    return [Vaccination(path, med.drug, vaccine.live, "planned", None, vaccine.vaccine_id)]


_FORMULATIONS: dict[Any, tuple[object, str | None]] = {}


def _formulation_in_text(text: str, formulations: list[Formulation]) -> str | None:
    """The one formulation whose marker words the text holds ('amphotericin B liposomal'); none if two match.
    Remembered per text and the drug's (knowledge-base-owned) list of formulations."""
    return remembered(_FORMULATIONS, (id(formulations), text), formulations,
                      lambda: _formulation_in_text_now(text, formulations))


def _formulation_in_text_now(text: str, formulations: list[Formulation]) -> str | None:
    words = f" {name_key(text)} "
    hits = {f.id for f in formulations for m in f.markers if f" {name_key(m)} " in words}
    return hits.pop() if len(hits) == 1 else None


def _dose(med: Medication, path: str, mg_per_ml: float | None, conc_text: str | None, product: Product | None,
          unit_issues: list[InputIssue]) -> NormDose | None:
    """The record's dose in mg (or mg/kg, mg/m2, IU); a volume only with a known concentration."""
    assert med.dose is not None
    value, unit = med.dose.value, med.dose.unit
    ml = volume_ml(value, unit)
    if ml is not None:
        if mg_per_ml is None and product is not None:
            concs = {c for st in product.strengths if (c := st.mg_per_ml()) is not None}
            if len(concs) == 1:
                mg_per_ml = concs.pop()
                conc_text = f"{fmt_number(mg_per_ml)} mg/mL, from the product code"
        if mg_per_ml is None:
            unit_issues.append(InputIssue(f"{path}.dose.unit", (
                "a dose in mg, mcg, g, mg/kg, mg/m2 or IU, or a volume with the concentration written in the drug text "
                "(e.g. 'clarithromycin 250 mg/5 mL suspension')"), f"{fmt_number(value)} {unit} with no concentration"))
            return None
        mg = ml * mg_per_ml
        return NormDose(mg, "mg", f"{fmt_number(value)} {unit} of {conc_text} = {fmt_number(mg)} mg")
    try:
        return normalize_dose(value, unit, f"{path}.dose.unit")
    except UnitError as exc:
        unit_issues.extend(exc.issues)
        return None


_STATED = "the record's HSCT status"  # the reading of hsct.status, in words


def _hsct(record: PatientRecord, lines: list[tuple[str, str]], as_of: dt.date, issues: list[InputIssue],
          warnings: list[InputWarning]) -> HsctReading:
    """HSCT status from ``hsct`` (status, date, note) and HSCT lines in the manifestation list.

    A stated status with a date is one reading; the note and the lines are others (see
    :func:`~ipexrx.patient.hsct.combine`: done wins, and every disagreement is named back)."""
    h = record.hsct
    evidence: list[HsctEvidence] = []
    notes: list[tuple[str, str]] = []
    if h.status is not None:
        if h.status == "done" and h.date is not None:
            _future(h.date, as_of, "$.hsct.date", issues, "a transplant date")
        basis = h.basis[0] if len(h.basis) == 1 else f"{_STATED} ({status_words(h.status)})"
        evidence.append(HsctEvidence(h.status, h.date, h.date_precision, h.kind, basis, "$.hsct.status"))
    for path, text in ([("$.hsct.note", h.note)] if h.note else []) + lines:
        ev, note = evidence_from_text(text, path, "note" if path == "$.hsct.note" else "list")
        if ev is not None:
            where = "the HSCT note" if path == "$.hsct.note" else plain_location(path)
            ev = HsctEvidence(ev.status, ev.date, ev.date_precision, ev.kind, f"{where}: {ev.basis}", ev.path)
            if ev.kind is None and h.kind is not None:
                ev = HsctEvidence(ev.status, ev.date, ev.date_precision, h.kind, ev.basis, ev.path)
            if ev.date is None and h.date is not None and h.status in (None, ev.status):
                ev = HsctEvidence(ev.status, h.date, h.date_precision, ev.kind, ev.basis, ev.path)
            evidence.append(ev)
        elif note is not None:
            notes.append((path, note))
    if not evidence and not notes and (h.date is not None or h.kind or h.donor):
        notes.append(("$.hsct", "the HSCT entry gives a date or donor but no status: HSCT status cannot be "
                      "judged from it; give hsct.status"))
    reading = combine(evidence, as_of)
    reading.status_basis = "recorded" if evidence else "unclear" if notes or h.unclear else "not-recorded"
    if h.basis and len(h.basis) > 1:
        reading.basis = list(h.basis) + [b for b in reading.basis or [] if not b.startswith(_STATED)]
    if reading.kind is None and reading.status != "not-done":
        reading.kind = h.kind or donor_kind(h.donor)
    reading.notes = (reading.notes or []) + notes
    for path, text in lines:
        warnings.append(InputWarning(path=path, code="hsct", message=f"'{text}' read as HSCT information "
                                     "(transplant status), not as a manifestation"))
    for path, msg in reading.notes:
        warnings.append(InputWarning(path=path, code="hsct", message=msg))
    return reading


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
    manifestations: list[PatientManifestation] = []
    hsct_lines: list[tuple[str, str]] = []
    for i, m in enumerate(record.manifestations):
        if m.status != "active":
            continue
        path = f"$.manifestations[{i}]"
        mid = idx.manifestations.resolve(m.hpo, m.name)
        text = m.name or m.hpo or ""
        if mid is None and mentions_hsct(m.name):
            hsct_lines.append((path, text))  # "s/p BMT": transplant history, not a manifestation
            continue
        if mid is None:
            warnings.append(InputWarning(path=path, code="unknown-manifestation",
                                         message=f"manifestation '{text}' is not in the knowledge base; "
                                         "no options shown for it"))
        manifestations.append(PatientManifestation(path, text, mid, m.hpo))

    hsct = _hsct(record, hsct_lines, as_of, issues, warnings)

    meds: list[Med] = []
    ordered_vaccines: list[Vaccination] = []
    for i, med in enumerate(record.medications):
        path = f"$.medications[{i}]"
        vaccine = vaccine_in_medication(med.drug, med.atc, kb=kb)
        if vaccine is not None:  # a vaccine ordered as a medication: a vaccination for the vaccine rules
            ordered_vaccines.extend(_vaccine_order(med, path, vaccine, warnings))
            continue
        meds.append(_medication(med, path, kb, idx.drugs, as_of, issues, unit_issues, warnings))

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
            molar = kb.drugs[kind.drug].molar_mass if kind.drug and kind.drug in kb.drugs else None
            value = convert(kind.quantity, float(lab.value), lab.unit, f"{path}.unit", molar_mass=molar)
        except UnitError as exc:
            unit_issues.extend(exc.issues)
            continue
        if kind.plausible and not (kind.plausible[0] <= value <= kind.plausible[1]):
            lo, hi = kind.plausible
            unit = QUANTITIES[kind.quantity].canonical
            issues.append(InputIssue(f"{path}.value", f"a plausible {kind.label} ({fmt_number(lo)}-{fmt_number(hi)} "
                                     f"{unit}; check value and unit)", f"{fmt_number(lab.value)} {lab.unit}"))
            continue
        upper: float | None = None
        if lab.upper_limit is not None:
            try:
                upper = convert(kind.quantity, lab.upper_limit, lab.unit, f"{path}.unit", molar_mass=molar)
            except UnitError as exc:  # the value's unit converted, so this cannot fail; kept for safety
                unit_issues.extend(exc.issues)
                continue
        labs.append(LabResult(path, kind, lab.date, value, None, f"{fmt_number(lab.value)} {lab.unit}", upper))
    labs.sort(key=lambda r: r.date)

    vaccinations: list[Vaccination] = list(ordered_vaccines)
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
        hsct_status=hsct.status, hsct_date=hsct.date, manifestations=manifestations, meds=meds,
        labs=labs, vaccinations=vaccinations, infections=infections, warnings=warnings,
        height_cm=record.demographics.height_cm, hsct_date_precision=hsct.date_precision, hsct_kind=hsct.kind,
        hsct_basis=list(hsct.basis or []),
        hsct_notes=[msg for _, msg in hsct.notes or []] + [
            f"{u}: names HSCT but gives no status that can be read" for u in record.hsct.unclear
            if hsct.status_basis == "unclear"],
        hsct_status_basis=hsct.status_basis,
    )
