"""Pydantic models for the ipexrx knowledge base.

The knowledge base is clinical content: every sentence a user can read must be traceable to a
source, so the smallest unit here is a :class:`Statement` (our own words + citations). Records
(drugs, manifestations, interactions...) are made of statements plus coded identifiers. The
models are strict (``extra="forbid"``) so that a typo in a YAML key is an error, not a silently
ignored field.

Structural rules live here (types, code patterns, required fields); rules that need the whole
knowledge base (a cited source exists, a referenced drug exists, ids are unique) live in
:mod:`ipexrx.knowledge.validate`.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator, model_validator

_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}  # ResultThreshold.crossed

# --------------------------------------------------------------------------------------------
# Code patterns. Kept as module constants so validation messages and tests can name them.
# --------------------------------------------------------------------------------------------
HPO_PATTERN = r"^HP:\d{7}$"
RXCUI_PATTERN = r"^\d{1,8}$"
# WHO ATC: level 5 e.g. L04AH01; shorter levels (L04AH, L04A) allowed for class codes.
ATC_PATTERN = r"^[A-Z](\d{2}([A-Z]([A-Z](\d{2})?)?)?)?$"
OMIM_PATTERN = r"^\d{6}$"
ORPHA_PATTERN = r"^ORPHA:\d{1,7}$"
MONDO_PATTERN = r"^MONDO:\d{7}$"
HGNC_PATTERN = r"^HGNC:\d{1,6}$"
LOINC_PATTERN = r"^\d{1,6}-\d$"
ID_PATTERN = r"^[a-z0-9][a-z0-9\-]*[a-z0-9]$"
DOI_PATTERN = r"^10\.\d{4,9}/\S+$"
PMID_PATTERN = r"^\d{1,9}$"
SNOMED_PATTERN = r"^\d{6,18}$"
ICD10_PATTERN = r"^[A-Z]\d{2}(\.\d{1,4})?$"
CVX_PATTERN = r"^\d{1,3}$"
SETID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

RecordId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
HpoId = Annotated[str, StringConstraints(pattern=HPO_PATTERN)]
Rxcui = Annotated[str, StringConstraints(pattern=RXCUI_PATTERN)]
AtcCode = Annotated[str, StringConstraints(pattern=ATC_PATTERN)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]


class Strict(BaseModel):
    """Base: unknown keys are errors, models are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# --------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------
class SourceKind(StrEnum):
    SEED = "seed"  # the source page (ipex-medication-reference.txt), cited by section
    LABEL = "label"  # a regulatory product label (US PI / EU SmPC), cited by section
    PAPER = "paper"  # journal article or book chapter with DOI and/or PMID
    DATABASE = "database"  # ontology / terminology / curated database (HPO, OMIM, RxNorm, ATC...)
    GUIDELINE = "guideline"  # formal recommendation (e.g. ACIP)


class Source(Strict):
    """A citable source. Labels and the seed page are cited per section via ``Citation.locator``."""

    id: RecordId
    kind: SourceKind
    title: NonEmpty
    citation: NonEmpty = Field(description="Human-readable bibliographic citation.")
    doi: Annotated[str, StringConstraints(pattern=DOI_PATTERN)] | None = None
    pmid: Annotated[str, StringConstraints(pattern=PMID_PATTERN)] | None = None
    url: str | None = None
    product: str | None = Field(None, description="For labels: the product the label belongs to.")
    sections: dict[str, NonEmpty] = Field(
        default_factory=dict,
        description="Named sections that citations may point at (locator -> heading).",
    )
    accessed: dt.date | None = None
    setid: Annotated[str, StringConstraints(pattern=SETID_PATTERN)] | None = Field(
        None, description="For US labels: the DailyMed SPL set id (a UUID), stable across label versions.")
    version: str | None = Field(
        None, description="For labels: the SPL version number or revision date that was read (e.g. '2024-08').")
    verification: Literal["primary", "secondary", "curated"] = Field(
        "primary",
        description="primary: read in the source itself; curated: via a curated database; "
        "secondary: via a secondary source that quotes it.",
    )
    note: str | None = None

    @model_validator(mode="after")
    def _paper_needs_identifier(self) -> Source:
        if self.kind is SourceKind.PAPER and not (self.doi or self.pmid):
            raise ValueError(f"paper source '{self.id}' needs a doi or a pmid")
        return self


class Citation(Strict):
    """A pointer to a source, optionally to one of its sections (``source#locator`` in YAML)."""

    source: RecordId
    locator: str | None = None

    def __str__(self) -> str:
        return f"{self.source}#{self.locator}" if self.locator else self.source


def _parse_citation(value: object) -> object:
    if isinstance(value, str):
        src, _, loc = value.partition("#")
        return {"source": src.strip(), "locator": loc.strip() or None}
    return value


def _parse_citations(value: object) -> object:
    if isinstance(value, list):
        return [_parse_citation(x) for x in value]
    return value


Citations = Annotated[list[Citation], BeforeValidator(_parse_citations)]


class EvidenceLevel(StrEnum):
    """How strong the support for a statement is, strongest first.

    The ordering is used to rank therapy options; ``rank`` gives a sortable number.
    """

    REGULATORY = "regulatory"  # product label / regulatory decision
    GUIDELINE = "guideline"
    COHORT = "cohort"  # multi-centre retrospective cohort in IPEX (largest evidence that exists)
    CASE_SERIES = "case-series"
    CASE_REPORT = "case-report"
    REVIEW = "review"  # narrative review / reference text (GeneReviews, the seed page)
    EXPERT_OPINION = "expert-opinion"
    EXTRAPOLATED = "extrapolated"  # from another disease / mechanism only

    @property
    def rank(self) -> int:
        return list(EvidenceLevel).index(self)


class Statement(Strict):
    """One fact in our own words, with at least one citation."""

    id: RecordId | None = None
    text: NonEmpty
    sources: Citations = Field(default_factory=list)
    evidence: EvidenceLevel | None = None


class Review(Strict):
    date: dt.date
    reviewer: NonEmpty


class Coding(Strict):
    system: Literal["HPO", "SNOMED", "ICD-10", "ICD-10-CM", "ICD-11", "UMLS", "LOINC", "OMIM", "ORPHA", "MONDO"]
    code: NonEmpty
    label: str | None = None
    sources: Citations = Field(default_factory=list, description="Where the code was checked (terminology source).")

    @model_validator(mode="after")
    def _pattern(self) -> Coding:
        patterns = {"HPO": HPO_PATTERN, "OMIM": OMIM_PATTERN, "ORPHA": ORPHA_PATTERN,
                    "MONDO": MONDO_PATTERN, "LOINC": LOINC_PATTERN}
        pat = patterns.get(self.system)
        if pat and not re.match(pat, self.code):
            raise ValueError(f"malformed {self.system} code '{self.code}' (expected pattern {pat})")
        return self


class Record(Strict):
    """Common fields of every top-level record."""

    id: RecordId
    review: Review


# --------------------------------------------------------------------------------------------
# Disease
# --------------------------------------------------------------------------------------------
class Gene(Strict):
    symbol: NonEmpty
    hgnc: Annotated[str, StringConstraints(pattern=HGNC_PATTERN)] | None = None
    location: str | None = None
    sources: Citations = Field(default_factory=list)


class DiseaseIdentifiers(Strict):
    omim: Annotated[str, StringConstraints(pattern=OMIM_PATTERN)] | None = None
    orpha: Annotated[str, StringConstraints(pattern=ORPHA_PATTERN)] | None = None
    mondo: Annotated[str, StringConstraints(pattern=MONDO_PATTERN)] | None = None
    umls: str | None = None
    snomed: str | None = None
    icd10: list[str] = Field(default_factory=list)
    sources: Citations = Field(default_factory=list)


class Disease(Record):
    name: NonEmpty
    abbreviation: str | None = None
    synonyms: list[str] = Field(default_factory=list)
    gene: Gene
    inheritance: Statement
    inheritance_hpo: HpoId | None = None
    identifiers: DiseaseIdentifiers
    cure: Statement = Field(description="The curative therapy statement (HSCT).")
    principles: list[Statement] = Field(default_factory=list)
    caveats: list[Statement] = Field(
        default_factory=list, description="Caveats that apply to drug therapy as a whole."
    )
    hsct_evidence: list[Statement] = Field(default_factory=list)
    post_hsct: list[Statement] = Field(
        default_factory=list, description="Follow-up after HSCT (chimerism, immune reconstitution and "
        "revaccination, GvHD prophylaxis), shown to transplanted patients instead of the referral.")
    surveillance: list[Statement] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Manifestations and therapy options
# --------------------------------------------------------------------------------------------
ROLE_ORDER = {"mainstay": 0, "first-line": 1, "targeted": 2, "option": 3, "severe-cases": 4, "supportive": 5}


class TherapyOption(Strict):
    """One therapy the sources assign to a manifestation.

    ``drugs`` and ``drug_classes`` reference records; ``condition`` narrows when it applies
    (e.g. "hypothyroid"); ``role`` says where it sits (mainstay, supportive, severe cases...).
    """

    id: RecordId
    label: NonEmpty
    drugs: list[RecordId] = Field(default_factory=list)
    drug_classes: list[RecordId] = Field(default_factory=list)
    role: Literal["mainstay", "first-line", "option", "supportive", "severe-cases", "targeted"] = "option"
    condition: str | None = None
    statement: Statement
    evidence: list[Statement] = Field(default_factory=list)
    evidence_level: EvidenceLevel
    preference: int | None = Field(
        None, ge=1, description="Order of preference the sources state among options of equal evidence "
        "(1 first); cite the statement of preference in `evidence`.")
    on_source_page: bool = True

    @property
    def sort_key(self) -> tuple[int, int, int, str]:
        """Strongest evidence first, then the preference the sources state, then role; the label breaks
        remaining ties, so the order of options in a content file never decides what is shown first."""
        return (self.evidence_level.rank, self.preference or 99, ROLE_ORDER.get(self.role, 9), self.label.casefold())

    @model_validator(mode="after")
    def _has_target(self) -> TherapyOption:
        if not self.drugs and not self.drug_classes:
            raise ValueError(f"therapy option '{self.id}' names no drug and no drug class")
        return self


class Manifestation(Record):
    name: NonEmpty
    synonyms: list[str] = Field(default_factory=list)
    hpo: list[Coding] = Field(min_length=1)
    codings: list[Coding] = Field(
        default_factory=list,
        description="EHR codes (SNOMED CT, ICD-10) that map a coded condition onto this manifestation; ICD-10 "
        "codes also match their subcodes (E10 covers E10.9). Each with its terminology source.",
    )
    description: Statement | None = None
    frequency: list[Statement] = Field(default_factory=list)
    therapy: list[TherapyOption] = Field(default_factory=list)
    caveats: list[Statement] = Field(default_factory=list)
    on_source_page: bool = True

    @field_validator("hpo")
    @classmethod
    def _hpo_only(cls, v: list[Coding]) -> list[Coding]:
        for c in v:
            if c.system != "HPO":
                raise ValueError(f"manifestation codes must be HPO, got {c.system}")
        return v

    @field_validator("codings")
    @classmethod
    def _ehr_codes(cls, v: list[Coding]) -> list[Coding]:
        errors: list[str] = []
        for c in v:
            if c.system not in ("SNOMED", "ICD-10", "ICD-10-CM"):
                errors.append(f"manifestation codings must be SNOMED, ICD-10 (WHO) or ICD-10-CM (HPO goes in 'hpo'), "
                              f"got {c.system}")
            elif c.system == "SNOMED" and not re.match(SNOMED_PATTERN, c.code):
                errors.append(f"malformed SNOMED CT code '{c.code}' (expected pattern {SNOMED_PATTERN})")
            elif c.system in ("ICD-10", "ICD-10-CM") and not re.match(ICD10_PATTERN, c.code):
                errors.append(f"malformed {c.system} code '{c.code}' (expected pattern {ICD10_PATTERN})")
            if not c.sources:
                errors.append(f"{c.system} code '{c.code}' needs a source (where it was checked)")
        if errors:
            raise ValueError("; ".join(errors))
        return v


# --------------------------------------------------------------------------------------------
# Drugs and classes
# --------------------------------------------------------------------------------------------
class DrugClass(Record):
    name: NonEmpty
    synonyms: list[str] = Field(default_factory=list)
    parent: RecordId | None = None
    atc: list[AtcCode] = Field(default_factory=list)
    summary: list[Statement] = Field(default_factory=list)
    on_source_page: bool = True


Route = Literal["oral", "iv", "sc", "im", "topical", "inhaled", "rectal", "ophthalmic", "nasal", "transdermal",
                "enteral", "intrathecal"]
# Routes by which a drug reaches the blood in amounts the labels' systemic warnings and interactions are about.
# Inhaled, topical, eye and nose products act locally (an inhaled or topical steroid is not systemic therapy).
SYSTEMIC_ROUTES: frozenset[str] = frozenset({"oral", "iv", "sc", "im", "rectal", "transdermal", "enteral",
                                             "intrathecal"})


class Brand(Strict):
    """A proprietary name. ``formulation`` ties it to one of the drug's formulations (products that
    are not interchangeable mg for mg); ``route`` is set when the brand exists for one route only
    (Protopic is an ointment), so that a record naming only the brand gets its route."""

    name: NonEmpty
    note: str | None = None
    rxcui: Rxcui | None = Field(None, description="RxNorm brand-name (BN) concept.")
    formulation: RecordId | None = None
    route: Route | None = None
    sources: Citations = Field(default_factory=list)


class RxNormCode(Strict):
    """One RxNorm concept for a product: a clinical (SCD) or branded (SBD) drug, a dose-form group or pack."""

    code: Rxcui
    tty: Literal["SCD", "SBD", "SCDF", "SBDF", "GPCK", "BPCK", "SCDG", "SBDG"]
    name: NonEmpty = Field(description="RxNorm's normalised name, e.g. 'tacrolimus 0.5 MG Oral Capsule'.")


class Strength(Strict):
    """An amount of drug per unit of product: per capsule, per mL (``per_ml``), or a % for skin products."""

    value: float = Field(gt=0)
    unit: Literal["mg", "mcg", "g", "IU", "%", "mmol"]
    per_ml: float | None = Field(None, gt=0,
                                 description="For liquids: the volume the amount is in (250 mg / 5 mL -> 5).")

    def mg_per_ml(self) -> float | None:
        """Concentration in mg/mL for a liquid strength in a mass unit, else None."""
        if self.per_ml is None or self.unit not in ("mg", "mcg", "g"):
            return None
        return self.value * {"mg": 1.0, "mcg": 0.001, "g": 1000.0}[self.unit] / self.per_ml


class Product(Strict):
    """A dosage form as an EHR orders it, with its RxNorm SCD/SBD codes and the route it implies."""

    id: RecordId
    form: NonEmpty = Field(description="Dose form in words: 'capsule', 'extended-release tablet', 'ointment'...")
    route: Route
    strengths: list[Strength] = Field(default_factory=list)
    brands: list[NonEmpty] = Field(default_factory=list, description="Brand names (from `brands`) sold in this form.")
    formulation: RecordId | None = None
    rxnorm: list[RxNormCode] = Field(default_factory=list)
    sources: Citations = Field(min_length=1)


class Formulation(Strict):
    """A family of products that can be exchanged for one another (Prograf capsules and generic
    immediate-release tacrolimus) but not mg for mg with another family (Envarsus XR)."""

    id: RecordId
    name: NonEmpty
    switch: Statement = Field(description="What the label says about switching to or from this formulation.")
    markers: list[NonEmpty] = Field(
        default_factory=list,
        description="Words in a free-text order that name this formulation and no other of the drug "
        "('liposomal', 'modified'); read only when no code or brand says which formulation it is.",
    )


class DoseRange(Strict):
    """The labelled usual dose for a route and age band, and the largest dose the label allows.

    ``basis`` is the unit the range is written in: an amount (mg, or IU for insulin) per day, per week
    or per dose, optionally per kg of body weight or per m2 of body surface. ``high`` is the top of the
    usual range; ``maximum`` (same basis) the label's ceiling, when it states one; ``absolute_max`` a cap
    in plain mg or IU per the same period whatever the weight (e.g. 'not more than 1 g per day').
    """

    id: RecordId
    routes: list[Route] = Field(min_length=1)
    formulation: RecordId | None = Field(None, description="Only for this formulation (e.g. Envarsus XR).")
    age_min_years: float | None = Field(None, ge=0)
    age_max_years: float | None = Field(None, gt=0, description="Upper bound, exclusive.")
    context: NonEmpty = Field(description="Indication or phase, e.g. 'kidney transplant, maintenance'.")
    basis: Literal["mg/kg/day", "mg/m2/day", "mg/day", "mg/kg/week", "mg/m2/week", "mg/week",
                   "mg/kg/dose", "mg/m2/dose", "mg/dose", "IU/kg/day", "IU/day"]
    low: float | None = Field(None, ge=0)
    high: float = Field(gt=0)
    maximum: float | None = Field(None, gt=0)
    absolute_max: float | None = Field(None, gt=0)
    critical_above_maximum: bool = Field(
        False, description="The label warns that a dose above its maximum can be fatal (conventional "
        "amphotericin B): any dose above it is critical, not only ten times it.")
    statement: Statement

    @model_validator(mode="after")
    def _ordered(self) -> DoseRange:
        if self.low is not None and self.low > self.high:
            raise ValueError(f"dose range '{self.id}': low {self.low} is above high {self.high}")
        if self.maximum is not None and self.maximum < self.high:
            raise ValueError(f"dose range '{self.id}': maximum {self.maximum} is below the usual high {self.high}")
        if (self.age_min_years is not None and self.age_max_years is not None
                and self.age_min_years >= self.age_max_years):
            raise ValueError(f"dose range '{self.id}': age band {self.age_min_years}-{self.age_max_years} is empty")
        return self

    # Cached: the dose rule compares each dose with several ranges, asking these of each (the model is frozen).
    @cached_property
    def amount_unit(self) -> str:
        return self.basis.split("/")[0]

    @cached_property
    def per_size(self) -> str | None:
        parts = self.basis.split("/")
        return parts[1] if len(parts) == 3 else None

    @cached_property
    def period(self) -> str:
        return self.basis.split("/")[-1]


class AdverseReactions(Strict):
    common: list[Statement] = Field(default_factory=list, description="The most frequent reactions in the label.")
    serious: list[Statement] = Field(default_factory=list, description="Serious or fatal reactions.")


class VictimRule(Strict):
    """How this drug (the victim) is affected by every drug of one interaction mechanism, in its label's words.

    A pair-specific :class:`Interaction` record between this drug and a member of the mechanism
    overrides the rule for that pair (e.g. voriconazole + sirolimus: contraindicated, where the
    class rule says avoid).
    """

    id: RecordId
    mechanism: RecordId
    severity: InteractionSeverity
    effect: Statement
    instructions: list[Instruction] = Field(min_length=1)


class AtcEntry(Strict):
    code: AtcCode
    scope: str | None = Field(None, description="e.g. 'systemic', 'topical', 'ophthalmic'")
    current: bool = True
    verified: bool = Field(True, description="False when only partly checked (shown as such).")
    note: str | None = None


class DrugCodes(Strict):
    rxcui: Rxcui | None = Field(None, description="RxNorm ingredient (IN) concept.")
    rxcui_note: str | None = None
    rxcui_other: list[Rxcui] = Field(
        default_factory=list, description="Other RxNorm ingredient concepts that mean this drug (salts as PIN, "
        "a multi-ingredient MIN, the pro-drug an EHR codes instead).")
    atc: list[AtcEntry] = Field(default_factory=list)
    atc_note: str | None = Field(None, description="Why there is no ATC code (a food, a herbal product).")
    sources: Citations = Field(default_factory=list)


class LabParameter(StrEnum):
    """Things we monitor or screen for. Patient labs map onto these (see ipexrx.patient)."""

    TROUGH = "trough"
    CREATININE = "creatinine"
    BUN = "bun"
    BLOOD_PRESSURE = "blood-pressure"
    LIPIDS = "lipids"
    GLUCOSE = "glucose"
    HBA1C = "hba1c"
    CBC = "cbc"
    NEUTROPHILS = "neutrophils"
    PLATELETS = "platelets"
    POTASSIUM = "potassium"
    MAGNESIUM = "magnesium"
    LIVER = "liver-function"
    URINE_PROTEIN = "urine-protein"
    THYROID = "thyroid"
    HBV = "hbv-serology"
    TB = "latent-tb"
    IMMUNOGLOBULINS = "immunoglobulins"
    INFECTION_SIGNS = "infection-signs"
    INFUSION = "infusion-reaction"
    GROWTH = "growth"


class Screening(Strict):
    """A test required before the first dose (label-based)."""

    id: RecordId
    parameter: LabParameter
    tests: list[str] = Field(description="What is tested, e.g. ['HBsAg', 'anti-HBc'].")
    when: str = "before first dose"
    applies_to: str | None = Field(
        None, description="Patient group the screening is labelled for, when narrower than all patients."
    )
    action_if_positive: Statement | None = None
    statement: Statement


class Monitoring(Strict):
    """A parameter to monitor while on the drug, with the interval used by the monitoring rule."""

    id: RecordId
    parameter: LabParameter
    interval_days: int | None = Field(None, gt=0, description="Maximum days between results.")
    interval_origin: Literal["label", "guideline", "surveillance", "convention"] | None = Field(
        None,
        description="Where interval_days comes from: the product label, a guideline, a disease "
        "surveillance schedule (e.g. GeneReviews), or an ipexrx convention (shown as such to users).",
    )
    interval_basis: Statement | None = Field(
        None, description="Where the interval comes from (label or surveillance guidance)."
    )
    statement: Statement


class TargetRange(Strict):
    """A concentration range used in practice; always with its source and context."""

    parameter: Literal["trough"] = "trough"
    low: float = Field(ge=0)
    high: float = Field(gt=0)
    unit: Literal["ng/mL", "mcg/L"]
    matrix: Literal["whole blood", "plasma", "serum"] = "whole blood"
    context: NonEmpty
    statement: Statement

    @model_validator(mode="after")
    def _ordered(self) -> TargetRange:
        if self.low >= self.high:
            raise ValueError(f"target range low {self.low} must be below high {self.high}")
        return self


class ResultThreshold(Strict):
    """A sourced lab threshold a rule acts on: ``parameter comparison value unit``.

    ``relative_to_baseline``: the value is a percentage change from the patient's baseline (e.g. serum
    creatinine >= 25% above the pre-treatment level) rather than an absolute level. ``origin`` says
    whether the number is a label's, a guideline's, a reference definition's or an ipexrx convention
    (shown as such to users). ``action`` is what the source says to do when it is crossed.
    """

    id: RecordId
    parameter: LabParameter
    lab: str | None = Field(
        None, pattern=ID_PATTERN,
        description="The one patient lab this applies to (an id of the ipexrx lab catalogue: 'triglycerides', "
        "'fasting-glucose', 'systolic-bp', 'lymphocytes'); none: every lab counting for the parameter.")
    comparison: Literal["<", "<=", ">", ">="]
    value: float
    unit: Literal["%", "10^9/L", "umol/L", "mg/dL", "ng/mL", "mmol/L", "g/dL", "mmHg", "mg/g", "x ULN"] = Field(
        description="'x ULN': a multiple of the laboratory's upper reference limit given with the result.")
    relative_to_baseline: bool = False
    severity: Literal["critical", "warning", "info"] = "warning"
    grade: str | None = Field(None, description="Short name of the band, e.g. 'severe'.")
    min_age_years: float | None = Field(None, ge=0, description="Applies from this age (inclusive).")
    max_age_years: float | None = Field(None, gt=0, description="Applies below this age (exclusive).")
    sex: Literal["male", "female"] | None = Field(None, description="Applies to this sex only (paediatric BP tables).")
    when: Literal["start", "treatment"] | None = Field(
        None, description="A label threshold for starting the drug only, or for patients already on it; none: both.")
    origin: Literal["label", "guideline", "reference", "convention"]
    statement: Statement
    action: Statement | None = None

    @model_validator(mode="after")
    def _units(self) -> ResultThreshold:
        if self.unit == "x ULN" and self.relative_to_baseline:
            raise ValueError(f"threshold '{self.id}': a multiple of the upper limit is not a change from baseline")
        if self.relative_to_baseline and self.unit != "%":
            raise ValueError(f"threshold '{self.id}': a change from baseline is expressed in %, got {self.unit}")
        if not self.relative_to_baseline and self.unit == "%" and self.lab != "hba1c":
            raise ValueError(f"threshold '{self.id}': unit % needs relative_to_baseline: true (or lab hba1c)")
        if self.min_age_years is not None and self.max_age_years is not None \
                and self.min_age_years >= self.max_age_years:
            raise ValueError(f"threshold '{self.id}': min_age_years must be below max_age_years")
        return self

    def applies_to_age(self, age: float | None) -> bool | None:
        """True/False for a known age; None when the threshold has an age band and the age is unknown."""
        if self.min_age_years is None and self.max_age_years is None:
            return True
        if age is None:
            return None
        return (self.min_age_years is None or age >= self.min_age_years) and (
            self.max_age_years is None or age < self.max_age_years)

    def crossed(self, value: float, limit: float | None = None) -> bool:
        """Whether ``value`` meets the threshold: against ``self.value`` (in ``unit``; a % change when
        relative), or against ``limit`` when the caller converted the threshold to another unit."""
        lim = self.value if limit is None else limit
        return bool(_COMPARE[self.comparison](value, lim))


class SteroidEquivalence(Strict):
    """How many mg of prednisone one mg of this corticosteroid counts as (prednisone itself: 1)."""

    factor: float = Field(gt=0, description="Prednisone-equivalent mg per mg of this drug (methylprednisolone 1.25).")
    statement: Statement


class SteroidThreshold(Strict):
    """Dose above which a corticosteroid counts as immunosuppressive for live vaccines (ACIP style)."""

    mg_per_day: float = Field(gt=0, description="Prednisone-equivalent mg/day at or above which it applies.")
    mg_per_kg_day: float = Field(gt=0, description="mg/kg/day at or above which it applies (children).")
    weight_cutoff_kg: float = Field(gt=0, description="Body weight below which the mg/kg/day threshold is used.")
    min_days: int = Field(gt=0, description="Minimum duration in days.")
    statement: Statement


class LiveVaccineWait(Strict):
    """How long after the last dose a live vaccine stays deferred, as the label or guideline says.

    ``days`` None: the source names no fixed interval (rituximab: B-cell recovery decides), so a
    stopped drug with an end date stays "cannot judge" rather than cleared. ``after_high_dose_only``:
    the wait applies only after a course at or above the drug's immunosuppressive threshold
    (corticosteroids: ACIP's 1 month after >= 14 days at high dose).
    """

    days: int | None = Field(None, gt=0, description="Days after the last dose (None: no fixed interval).")
    after_high_dose_only: bool = False
    origin: Literal["label", "guideline", "convention"] = Field(
        description="Where the interval comes from; a convention (an ipexrx reading of a label fact) never "
        "raises a critical alert and is shown as such.")
    statement: Statement


class InUteroAdvice(Strict):
    """Live vaccines for an infant exposed to the drug in utero: deferred until this age (label).

    ``longer_months``: a stricter interval another regulator gives (EU: 12 months for infliximab);
    between the two the rule warns instead of raising a critical alert.
    """

    months_after_birth: int = Field(gt=0)
    statement: Statement
    longer_months: int | None = Field(None, gt=0)
    longer_statement: Statement | None = None


class VaccineAdvice(Strict):
    live_vaccines: Literal["avoid", "contraindicated", "dose-dependent", "no-restriction"]
    statement: Statement
    threshold: SteroidThreshold | None = Field(
        None, description="For 'dose-dependent' advice: the machine-readable dose threshold."
    )
    prednisone_equivalence: SteroidEquivalence | None = Field(
        None, description="For corticosteroids judged against a prednisone threshold: the dose conversion factor."
    )
    after_stop: LiveVaccineWait | None = Field(
        None, description="How long live vaccines stay deferred after the last dose (label or guideline).")
    in_utero: InUteroAdvice | None = Field(
        None, description="Live vaccines for infants exposed in utero (label).")
    no_conversion: Statement | None = Field(
        None, description="Why a dose of this drug is not converted to prednisone-equivalents (oral budesonide: "
        "low systemic exposure); the vaccine rule cites it instead of judging the dose.")


class TopicalLimit(Strict):
    """A labelled limit on local (skin) use: minimum age, for one strength or every strength."""

    id: RecordId
    routes: list[Literal["topical"]] = ["topical"]  # pydantic copies mutable defaults per instance
    strength_percent: float | None = Field(
        None, gt=0, description="The strength (%) the limit is for; None: every strength.")
    age_min_years: float = Field(gt=0)
    statement: Statement


MonographSection = Literal["boxed_warnings", "contraindications", "warnings", "adverse_reactions.common",
                           "adverse_reactions.serious", "pregnancy", "lactation", "monitoring"]


class NoneInLabel(Strict):
    """A monograph section the label was read for and has nothing in (no boxed warning), with where it was read.

    Why: an empty section must never read as 'nothing to worry about'. Views show an empty section
    as 'not encoded in this release' unless the label was read and has none, which is said with its
    source."""

    section: MonographSection
    sources: Citations = Field(min_length=1)


class Safety(Strict):
    boxed_warnings: list[Statement] = Field(default_factory=list)
    contraindications: list[Statement] = Field(default_factory=list)
    warnings: list[Statement] = Field(default_factory=list)
    adverse_reactions: AdverseReactions = Field(default_factory=AdverseReactions)
    pregnancy: list[Statement] = Field(default_factory=list)
    lactation: list[Statement] = Field(default_factory=list)
    screening: list[Screening] = Field(default_factory=list)
    monitoring: list[Monitoring] = Field(default_factory=list)
    vaccines: VaccineAdvice | None = None
    target_ranges: list[TargetRange] = Field(default_factory=list)
    result_thresholds: list[ResultThreshold] = Field(
        default_factory=list, description="Sourced lab thresholds for results on this drug (e.g. creatinine rise)."
    )
    no_start_in_active_infection: Statement | None = Field(
        None, description="The label says not to start the drug during an active serious infection.")
    topical_limits: list[TopicalLimit] = Field(
        default_factory=list, description="Labelled minimum ages for skin use (by strength).")
    topical_immunocompromised: Statement | None = Field(
        None, description="The label says the skin product is not for immunocompromised patients.")
    none_in_label: list[NoneInLabel] = Field(
        default_factory=list, description="Sections the label was read for and has none of (no boxed warning).")


class Drug(Record):
    name: NonEmpty = Field(description="Generic (INN/USAN) name, lower case.")
    synonyms: list[str] = Field(default_factory=list, description="Abbreviations, old names, INN variants.")
    brands: list[Brand] = Field(default_factory=list)
    classes: list[RecordId] = Field(min_length=1)
    role: Literal["monograph", "supportive", "interacting", "ipex-like-targeted", "related"] = Field(
        description="monograph: has a monograph on the source page; supportive: named by role on "
        "the page; interacting: in the KB because of interactions; ipex-like-targeted: beyond the page; "
        "related: another member of a class the page uses (prednisolone, mycophenolate), because charts hold it."
    )
    on_source_page: bool
    routes: list[Route] = Field(default_factory=list)
    absorbed_routes: list[Route] = Field(
        default_factory=list,
        description="Routes that usually act locally but by which this drug reaches the blood in "
        "amounts that matter (ketorolac nasal spray): records by them count as systemic.",
    )
    immunosuppressive: bool = Field(
        False, description="Drives infection / live-vaccine rules in the assessment."
    )
    calcineurin_inhibitor: bool = False
    identity: Statement | None = Field(None, description="What the substance is.")
    mechanism: list[Statement] = Field(default_factory=list)
    targets: list[str] = Field(default_factory=list, description="Molecular targets, e.g. 'CD20', 'FKBP12'.")
    pharmacology: list[Statement] = Field(default_factory=list)
    approvals: list[Statement] = Field(default_factory=list)
    uses: list[Statement] = Field(default_factory=list)
    evidence_in_ipex: list[Statement] = Field(default_factory=list)
    codes: DrugCodes = Field(default_factory=DrugCodes)
    formulations: list[Formulation] = Field(default_factory=list)
    products: list[Product] = Field(default_factory=list, description="Dosage forms and strengths, with codes.")
    dosing: list[Statement] = Field(default_factory=list, description="Usual paediatric and adult dosing, in words.")
    dose_ranges: list[DoseRange] = Field(default_factory=list, description="Machine-readable usual and maximum doses.")
    safety: Safety = Field(default_factory=Safety)
    interaction_rules: list[VictimRule] = Field(
        default_factory=list, description="This drug's label instruction per interaction mechanism.")
    molar_mass: float | None = Field(None, gt=0, description="g/mol, for molar concentration units.")
    dosing_caveat: Statement | None = None

    @model_validator(mode="after")
    def _internal_refs(self) -> Drug:
        forms = {f.id for f in self.formulations}
        brands = {b.name for b in self.brands}
        errors: list[str] = []
        for b in self.brands:
            if b.formulation and b.formulation not in forms:
                errors.append(f"brand '{b.name}' names unknown formulation '{b.formulation}'")
        for p in self.products:
            if p.formulation and p.formulation not in forms:
                errors.append(f"product '{p.id}' names unknown formulation '{p.formulation}'")
            errors += [f"product '{p.id}' names brand '{n}' that is not in brands" for n in p.brands if n not in brands]
        for r in self.dose_ranges:
            if r.formulation and r.formulation not in forms:
                errors.append(f"dose range '{r.id}' names unknown formulation '{r.formulation}'")
        for v in self.interaction_rules:
            for ins in v.instructions:
                if ins.applies_to not in (None, self.id):
                    errors.append(f"interaction rule '{v.id}': an instruction can only change this drug "
                                  f"('{self.id}'), not '{ins.applies_to}'")
        if errors:
            raise ValueError("; ".join(errors))
        return self


# --------------------------------------------------------------------------------------------
# Interactions
# --------------------------------------------------------------------------------------------
class InteractionSeverity(StrEnum):
    CONTRAINDICATED = "contraindicated"
    MAJOR = "major"
    MODERATE = "moderate"


class Instruction(Strict):
    """The label's concrete instruction, machine-readable where possible."""

    kind: Literal["contraindicated", "avoid", "do-not-combine", "dose-fraction", "timing", "monitor",
                  "increase-dose"]
    applies_to: RecordId | None = Field(None, description="The drug whose dose/timing changes.")
    dose_fraction: float | None = Field(None, gt=0, le=1, description="New dose = fraction x current dose.")
    separation_hours: float | None = Field(None, gt=0)
    trigger: Literal["while-combined", "on-start", "on-stop"] = Field(
        "while-combined",
        description="When the instruction applies: whenever both are taken, when the other drug is "
        "started, or when it is stopped (e.g. voriconazole: cut tacrolimus on start, raise on stop).",
    )
    text: Statement

    @model_validator(mode="after")
    def _consistent(self) -> Instruction:
        if self.kind == "dose-fraction" and (self.dose_fraction is None or self.applies_to is None):
            raise ValueError("a dose-fraction instruction needs dose_fraction and applies_to")
        if self.kind == "timing" and self.separation_hours is None:
            raise ValueError("a timing instruction needs separation_hours")
        return self


class MechanismMember(Strict):
    """A drug that acts through a mechanism; ``routes`` narrows it (aminoglycosides: not when inhaled or topical)."""

    drug: RecordId
    routes: list[Route] = Field(default_factory=list, description="Only by these routes (empty: every systemic route).")
    note: str | None = None
    sources: Citations = Field(min_length=1)


class Mechanism(Record):
    """A group of perpetrators that act the same way on other drugs, as labels reason about them
    ('strong CYP3A4 inhibitors', 'nephrotoxic drugs'). Victims say what it does to them
    (:class:`VictimRule`); the group says who is in it, each membership with its source."""

    name: NonEmpty
    kind: Literal["enzyme-inhibitor", "enzyme-inducer", "transporter-inhibitor", "additive-toxicity",
                  "immunosuppression", "food"]
    description: Statement
    members: list[MechanismMember] = Field(min_length=1)
    offset_days: int | None = Field(
        None, gt=0, description="How long the effect outlasts the perpetrator's last dose (induction "
        "wears off over about two weeks): a member stopped within this many days still counts.")
    offset: Statement | None = Field(None, description="The cited statement behind offset_days.")

    @model_validator(mode="after")
    def _offset_is_cited(self) -> Mechanism:
        if (self.offset_days is None) != (self.offset is None):
            raise ValueError("offset_days and offset (its cited statement) go together")
        return self


class Interaction(Record):
    drugs: list[RecordId] = Field(min_length=2, max_length=2)
    severity: InteractionSeverity
    mechanism: Statement
    effect: Statement | None = None
    instructions: list[Instruction] = Field(min_length=1)


# --------------------------------------------------------------------------------------------
# Literature evidence and IPEX-like disorders
# --------------------------------------------------------------------------------------------
class Figure(Strict):
    """A number from a paper, with its unit and interval, so that views never re-type it."""

    name: NonEmpty
    value: float
    unit: Literal["%", "patients", "centres", "years", "months", "p-value", "ratio", "count"]
    ci_low: float | None = None
    ci_high: float | None = None
    note: str | None = None


class Finding(Strict):
    id: RecordId
    text: NonEmpty
    figures: list[Figure] = Field(default_factory=list)
    evidence: EvidenceLevel


class EvidenceRecord(Record):
    source: RecordId
    title: NonEmpty
    design: NonEmpty
    population: NonEmpty
    findings: list[Finding] = Field(min_length=1)
    supports: list[str] = Field(
        default_factory=list,
        description="Ids of records or statements this evidence supports ('drug:sirolimus', "
        "'statement:sirolimus-sustained-response').",
    )


class IpexLikeDisorder(Record):
    name: NonEmpty
    synonyms: list[str] = Field(default_factory=list)
    gene: Gene
    inheritance: Statement
    identifiers: list[Coding] = Field(default_factory=list)
    features: list[Statement] = Field(min_length=1)
    therapies: list[TherapyOption] = Field(default_factory=list)
    beyond_source_page: Literal[True] = True


# --------------------------------------------------------------------------------------------
# Vaccines and drug-independent lab thresholds
# --------------------------------------------------------------------------------------------
class Vaccine(Record):
    """A vaccine (or group of products) and whether it is live, with the source that says so.

    ``names`` are matched as whole words in a record's vaccine text (lower case); ``cvx`` are CDC CVX
    codes. The live-vaccine rule cites ``statement`` when it flags the vaccine.
    """

    name: NonEmpty
    live: bool
    kind: Literal["live-viral", "live-bacterial", "non-live"]
    names: list[Annotated[str, StringConstraints(min_length=2, strip_whitespace=True, to_lower=True)]] = Field(
        min_length=1)
    cvx: list[Annotated[str, StringConstraints(pattern=CVX_PATTERN)]] = Field(default_factory=list)
    cvx_sources: Citations = Field(default_factory=list)
    statement: Statement

    @model_validator(mode="after")
    def _consistent(self) -> Vaccine:
        if self.live != (self.kind != "non-live"):
            raise ValueError(f"vaccine '{self.id}': live={self.live} contradicts kind '{self.kind}'")
        if self.cvx and not self.cvx_sources:
            raise ValueError(f"vaccine '{self.id}': CVX codes need cvx_sources")
        return self


class LabThreshold(Record):
    """Thresholds that do not belong to one drug (e.g. the definition of neutropenia), used by the rules."""

    name: NonEmpty
    parameter: LabParameter
    thresholds: list[ResultThreshold] = Field(min_length=1)
    context: Statement | None = Field(None, description="Limits of the definition (age, ancestry...).")

    @model_validator(mode="after")
    def _same_parameter(self) -> LabThreshold:
        for t in self.thresholds:
            if t.parameter is not self.parameter:
                raise ValueError(f"threshold '{t.id}' is for {t.parameter.value}, record is for {self.parameter.value}")
        return self


class ContentMeta(Strict):
    content_version: NonEmpty
    released: dt.date
    source_page: NonEmpty
    disclaimer: NonEmpty
