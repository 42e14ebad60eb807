"""View models: what the reference views return, and the documented shape of their JSON.

The knowledge-base records (``ipexrx.knowledge.schema``) are written for editors: citations are
ids, drugs are referenced by id, interactions live in their own table. A reader needs the opposite:
every line with its sources spelled out, every id resolved to a name, related records gathered in
one place. These models are that reader-facing form. They are plain data (no behaviour), so the
terminal, the web service and other programs all read the same thing; ``ipexrx schema NAME``
prints their JSON Schema.

Conventions: ``id`` fields are knowledge-base record ids; lists are in a stable, documented order;
optional facts are ``null`` when the content does not state them (never guessed).
"""

# No ``from __future__ import annotations`` here: pydantic would then compile and evaluate every
# field annotation from a string at import time, which the CLI pays on every lookup.
import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The knowledge-base enums, as literal types. This module must not import the knowledge schema:
# a lookup served from the compiled view cache never loads it (start-up budget). The values are
# pinned to the enums in ipexrx.knowledge.schema by tests/reference/test_views.py.
EvidenceLevel = Literal["regulatory", "guideline", "cohort", "case-series", "case-report", "review",
                        "expert-opinion", "extrapolated"]
SourceKind = Literal["seed", "label", "paper", "database", "guideline"]
InteractionSeverity = Literal["contraindicated", "major", "moderate"]


class View(BaseModel):
    """Base of every view model: unknown keys are rejected, so the JSON Schema is closed."""

    # defer_build: the core schema is built on first validation/serialisation, not at import,
    # which keeps `ipexrx drug X` inside its start-up budget.
    model_config = ConfigDict(extra="forbid", defer_build=True)


# --------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------
class CitationView(View):
    """One citation resolved against the sources registry."""

    source: str = Field(description="Source id in the registry.")
    locator: str | None = Field(None, description="Section locator within the source, if cited by section.")
    kind: SourceKind
    title: str = Field(description="Title of the source.")
    section: str | None = Field(None, description="Heading of the cited section (resolved from the locator).")
    label: str = Field(description="Human-readable one-line citation: title, then section heading.")
    citation: str = Field(description="Full bibliographic citation of the source.")
    doi: str | None = None
    pmid: str | None = None
    url: str | None = None
    verification: Literal["primary", "secondary", "curated"]


class StatementView(View):
    """One fact in our own words with its resolved citations and (optional) evidence level."""

    id: str | None = None
    text: str
    evidence: EvidenceLevel | None = None
    sources: list[CitationView]


class Ref(View):
    """A resolved reference to another record (id + display name)."""

    id: str
    name: str


class ReviewView(View):
    date: dt.date
    reviewer: str


class CodingView(View):
    system: str
    code: str
    label: str | None = None


# --------------------------------------------------------------------------------------------
# Manifestations and options
# --------------------------------------------------------------------------------------------
class OptionView(View):
    """A therapy option for a manifestation, with the evidence behind it."""

    id: str
    label: str
    role: str = Field(description="mainstay, first-line, option, supportive, severe-cases or targeted.")
    condition: str | None = Field(None, description="When the option applies (e.g. 'hypothyroid').")
    drugs: list[Ref] = Field(description="Drugs named by the option.")
    drug_classes: list[Ref] = Field(description="Drug classes named by the option.")
    evidence_level: EvidenceLevel
    evidence_rank: int = Field(description="0 = strongest (regulatory) ... 7 = weakest (extrapolated).")
    statement: StatementView
    evidence: list[StatementView]
    on_source_page: bool


class ManifestationView(View):
    """A manifestation of IPEX with its options ordered by evidence strength (strongest first)."""

    id: str
    name: str
    synonyms: list[str]
    hpo: list[CodingView]
    description: StatementView | None = None
    frequency: list[StatementView]
    options: list[OptionView] = Field(description="Ordered by evidence_rank, then by the order in the content.")
    caveats: list[StatementView]
    on_source_page: bool
    review: ReviewView


# --------------------------------------------------------------------------------------------
# Disease summary
# --------------------------------------------------------------------------------------------
class GeneView(View):
    symbol: str
    hgnc: str | None = None
    location: str | None = None
    sources: list[CitationView]


class IdentifiersView(View):
    omim: str | None = None
    orpha: str | None = None
    mondo: str | None = None
    umls: str | None = None
    snomed: str | None = None
    icd10: list[str]
    sources: list[CitationView]


class ContentInfo(View):
    """Which content release produced the view, and the disclaimer that goes with it."""

    content_version: str
    released: dt.date
    source_page: str
    disclaimer: str


class IpexLikeView(View):
    """A disorder that resembles IPEX (beyond the source page), with its reported therapies."""

    id: str
    name: str
    synonyms: list[str]
    gene: GeneView
    inheritance: StatementView
    identifiers: list[CodingView]
    features: list[StatementView]
    therapies: list[OptionView] = Field(description="Ordered by evidence_rank.")


class SummaryView(View):
    """The disease medication summary: cure, principles, manifestation -> options, caveats."""

    id: str
    name: str
    abbreviation: str | None = None
    synonyms: list[str]
    gene: GeneView
    inheritance: StatementView
    identifiers: IdentifiersView
    cure: StatementView
    principles: list[StatementView]
    manifestations: list[ManifestationView] = Field(description="In content order.")
    caveats: list[StatementView]
    hsct_evidence: list[StatementView]
    surveillance: list[StatementView]
    ipex_like: list[IpexLikeView] = Field(description="IPEX-like disorders (differential diagnosis; beyond the "
                                                      "source page).")
    content: ContentInfo


# --------------------------------------------------------------------------------------------
# Drug monograph
# --------------------------------------------------------------------------------------------
class BrandView(View):
    name: str
    note: str | None = None
    rxcui: str | None = Field(None, description="RxNorm brand-name concept.")
    formulation: str | None = Field(None, description="Formulation id (products not interchangeable mg for mg).")
    route: str | None = Field(None, description="Set when the brand exists for one route only.")
    sources: list[CitationView]


class RxNormView(View):
    code: str
    tty: str = Field(description="RxNorm term type: SCD (clinical drug), SBD (branded drug), packs and groups.")
    name: str


class ProductView(View):
    """A dosage form and its strengths, as an EHR orders it."""

    id: str
    form: str
    route: str
    strengths: list[str] = Field(description="Strengths as written: '0.5 mg', '250 mg/5 mL', '0.1 %'.")
    brands: list[str]
    formulation: str | None = None
    rxnorm: list[RxNormView]
    sources: list[CitationView]


class FormulationView(View):
    id: str
    name: str
    switch: StatementView


class DoseRangeView(View):
    """A labelled usual dose (and ceiling) for a route, age band and formulation."""

    id: str
    routes: list[str]
    formulation: str | None = None
    age_min_years: float | None = None
    age_max_years: float | None = None
    context: str
    basis: str = Field(description="Unit of the range: mg|IU per day|week|dose, optionally per kg or per m2.")
    low: float | None = None
    high: float
    maximum: float | None = None
    absolute_max: float | None = None
    statement: StatementView


class MechanismRuleView(View):
    """A victim drug's label instruction for every drug of one interaction mechanism group."""

    id: str
    victim: Ref
    mechanism: Ref
    severity: InteractionSeverity
    effect: StatementView
    instructions: list["InstructionView"]
    members: list[Ref] = Field(description="The drugs of the group in the knowledge base.")


class AtcView(View):
    code: str
    scope: str | None = None
    current: bool
    note: str | None = None


class CodesView(View):
    rxcui: str | None = None
    rxcui_note: str | None = None
    rxcui_other: list[str] = Field(default_factory=list)
    atc: list[AtcView]
    atc_note: str | None = None
    sources: list[CitationView]


class ScreeningView(View):
    id: str
    parameter: str
    tests: list[str]
    when: str
    action_if_positive: StatementView | None = None
    statement: StatementView


class MonitoringView(View):
    id: str
    parameter: str
    interval_days: int | None = Field(None, description="Maximum days between results, when one is set.")
    interval_basis: StatementView | None = None
    statement: StatementView


class VaccineView(View):
    live_vaccines: Literal["avoid", "contraindicated", "dose-dependent", "no-restriction"]
    statement: StatementView


class TargetRangeView(View):
    parameter: str
    low: float
    high: float
    unit: str = Field(description="Concentration unit, e.g. 'ng/mL'.")
    matrix: str
    context: str
    statement: StatementView


class SectionNoteView(View):
    """Why a monograph section is empty: the label has none (with where it was read) or it is not encoded."""

    section: str = Field(description="boxed_warnings, contraindications, warnings, adverse_reactions.common, "
                                     "adverse_reactions.serious, pregnancy, lactation, monitoring")
    status: Literal["none-in-label", "not-encoded"]
    text: str
    sources: list[CitationView] = Field(default_factory=list)


class SafetyView(View):
    boxed_warnings: list[StatementView]
    contraindications: list[StatementView] = Field(default_factory=list)
    warnings: list[StatementView]
    adverse_reactions_common: list[StatementView] = Field(default_factory=list)
    adverse_reactions_serious: list[StatementView] = Field(default_factory=list)
    pregnancy: list[StatementView] = Field(default_factory=list)
    lactation: list[StatementView] = Field(default_factory=list)
    screening: list[ScreeningView]
    monitoring: list[MonitoringView]
    vaccines: VaccineView | None = None
    target_ranges: list[TargetRangeView]
    section_notes: list[SectionNoteView] = Field(
        default_factory=list, description="One per empty monograph section: none in the label, or not encoded.")


class InstructionView(View):
    kind: str = Field(description="contraindicated, avoid, do-not-combine, dose-fraction, timing, monitor, "
                                  "increase-dose.")
    applies_to: Ref | None = Field(None, description="The drug whose dose or timing changes.")
    dose_fraction: float | None = None
    separation_hours: float | None = None
    text: StatementView


class InteractionView(View):
    """An interaction seen from one drug: ``drug`` is the drug viewed, ``other`` the partner."""

    id: str
    drug: Ref
    other: Ref
    severity: InteractionSeverity
    mechanism: StatementView
    effect: StatementView | None = None
    instructions: list[InstructionView]


class DrugUseView(View):
    """Where a drug appears as a therapy option (in IPEX or in an IPEX-like disorder)."""

    disorder: Ref = Field(description="IPEX itself or an IPEX-like disorder.")
    manifestation: Ref | None = Field(None, description="The manifestation (IPEX options only).")
    option_id: str
    label: str
    role: str
    condition: str | None = None
    evidence_level: EvidenceLevel
    via_class: Ref | None = Field(None, description="Set when the option names a class the drug belongs to.")


class LiteratureFinding(View):
    id: str
    text: str
    evidence: EvidenceLevel


class LiteratureView(View):
    """A structured literature record that supports the drug (see evidence.yaml)."""

    id: str
    title: str
    design: str
    population: str
    source: CitationView
    findings: list[LiteratureFinding]


class DrugMonograph(View):
    """Everything the knowledge base holds about one drug, every line with its sources."""

    id: str
    name: str
    synonyms: list[str]
    brands: list[BrandView]
    classes: list[Ref] = Field(description="Direct classes, in content order.")
    class_ancestors: list[Ref] = Field(description="Parent classes of the direct classes, nearest first.")
    role: str
    on_source_page: bool
    routes: list[str]
    immunosuppressive: bool
    calcineurin_inhibitor: bool
    identity: StatementView | None = None
    mechanism: list[StatementView]
    targets: list[str]
    pharmacology: list[StatementView]
    approvals: list[StatementView]
    uses: list[StatementView]
    evidence_in_ipex: list[StatementView]
    literature: list[LiteratureView]
    codes: CodesView
    molar_mass: float | None = Field(None, description="g/mol.")
    formulations: list[FormulationView] = Field(default_factory=list)
    products: list[ProductView] = Field(default_factory=list, description="Dosage forms and strengths, with codes.")
    dosing: list[StatementView] = Field(default_factory=list, description="Usual paediatric and adult dosing.")
    dose_ranges: list[DoseRangeView] = Field(default_factory=list)
    safety: SafetyView
    interactions: list[InteractionView] = Field(description="Most severe first, then by the other drug's name.")
    interaction_rules: list[MechanismRuleView] = Field(
        default_factory=list, description="This drug's label instruction per interaction mechanism group.")
    affects: list[MechanismRuleView] = Field(
        default_factory=list, description="Other drugs' mechanism rules this drug triggers (it is in their group).")
    options: list[DrugUseView] = Field(description="Therapy options naming this drug or one of its classes.")
    dosing_caveat: StatementView | None = None
    review: ReviewView
    sources: list[CitationView] = Field(description="Every distinct citation used in this monograph.")


# --------------------------------------------------------------------------------------------
# Classes, sources, search
# --------------------------------------------------------------------------------------------
class ClassMember(View):
    id: str
    name: str
    via: Ref = Field(description="The class through which the drug belongs (this class or a subclass).")


class ClassView(View):
    id: str
    name: str
    synonyms: list[str]
    atc: list[str]
    summary: list[StatementView]
    parent: Ref | None = None
    ancestors: list[Ref] = Field(description="Parent, grandparent... nearest first.")
    subclasses: list[Ref] = Field(description="Direct subclasses.")
    members: list[ClassMember] = Field(description="Drugs in this class or any subclass, by name.")
    on_source_page: bool
    review: ReviewView


class SectionView(View):
    locator: str
    heading: str


class SourceView(View):
    id: str
    kind: SourceKind
    title: str
    citation: str
    doi: str | None = None
    pmid: str | None = None
    url: str | None = None
    product: str | None = None
    setid: str | None = Field(None, description="DailyMed SPL set id (labels).")
    version: str | None = Field(None, description="Label version or revision date that was read.")
    sections: list[SectionView]
    accessed: dt.date | None = None
    verification: Literal["primary", "secondary", "curated"]
    note: str | None = None
    cited: int = Field(description="How many citations in the knowledge base point at this source.")


class SourcesView(View):
    sources: list[SourceView] = Field(description="By kind (seed, label, paper, guideline, database), then id.")


SearchKind = Literal["disease", "drug", "class", "manifestation", "interaction", "ipex-like", "source", "evidence"]


class SearchHit(View):
    kind: SearchKind
    id: str
    title: str
    field: str = Field(description="Where the best match was found (name, brand, synonym, hpo, mechanism...).")
    snippet: str
    score: float = Field(description="0-100; higher is better.")
    command: str = Field(description="The ipexrx command that shows the record.")


class SearchResults(View):
    query: str
    results: list[SearchHit] = Field(description="Best first.")
