"""Output models of an assessment (pydantic, with a JSON Schema: ``ipexrx schema assessment``).

Why every element carries ``sources``: users must be able to trace each line to a label section,
the seed page or a paper. Citations are resolved against the knowledge base's source registry
(:class:`SourceRef`), so the JSON and HTML reports can print titles, sections, DOIs and PMIDs
without another lookup.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..patient.normalize import InputWarning

SCHEMA_VERSION: Literal["ipexrx-assessment/1"] = "ipexrx-assessment/1"


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"critical": 0, "warning": 1, "info": 2}[self.value]


class SourceRef(_Out):
    """A resolved citation: ``citation`` as written in the knowledge base plus what the registry says about it."""

    citation: str
    source: str
    locator: str | None = None
    title: str | None = None
    section: str | None = None
    kind: str | None = None
    doi: str | None = None
    pmid: str | None = None
    url: str | None = None

    def short(self) -> str:
        text = self.title or self.source
        if self.section:
            text += f", {self.section}"
        elif self.locator:
            text += f" #{self.locator}"
        if self.doi:
            text += f", doi:{self.doi}"
        elif self.pmid:
            text += f", PMID {self.pmid}"
        return text


class Trigger(_Out):
    """What in the record set off an alert: a drug, a lab result, a vaccine, an infection..."""

    kind: Literal["drug", "lab", "vaccine", "infection", "manifestation", "record"]
    ref: str = Field(description="Knowledge base id (drug) or a label of the datum.")
    path: str | None = Field(None, description="JSON path of the datum in the input.")
    detail: str | None = None
    name: str | None = Field(None, description="A drug's name in the knowledge base (drug triggers), as shown to "
                             "readers; ref keeps the id.")

    @property
    def label(self) -> str:
        """What a reader is shown for the trigger: a drug's name, a lab kind in words, else the datum's label."""
        if self.name:
            return self.name
        return self.ref.replace("-", " ") if self.kind == "lab" else self.ref


class DoseSuggestion(_Out):
    """A model-based regimen for an out-of-range trough: a suggestion to check, never an order.

    Computed by :mod:`ipexrx.dosing` (population PK model of another paediatric population, MAP fit of
    the patient's level at steady state on the recorded regimen). ``not_computed`` says why no numbers
    are given (no model, dose not in mg, a covariate the model needs is missing...).
    """

    drug: str
    model_id: str | None = None
    model_citation: str | None = None
    model_doi: str | None = None
    basis: str | None = None
    dose_mg: float | None = None
    interval_h: float | None = None
    daily_dose_mg: float | None = None
    form: str | None = None
    administration: str | None = None
    target_low: float | None = None
    target_high: float | None = None
    target_unit: str | None = None
    target_context: str | None = None
    predicted_trough: float | None = None
    predicted_low: float | None = Field(None, description="5th percentile of the predicted steady-state trough.")
    predicted_high: float | None = Field(None, description="95th percentile of the predicted steady-state trough.")
    probability_in_target: float | None = None
    caveats: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    not_computed: str | None = None
    model_choice: str | None = Field(None, description="Why this model among the drug's clinical models.")


class Alert(_Out):
    id: str = Field(description="Stable id: rule name + the ids involved.")
    rule: str = Field(description="Rule that produced it (e.g. 'interactions.label-instruction').")
    family: Literal["interaction", "duplication", "screening", "monitoring", "result", "vaccine", "infection",
                    "dosing", "record"]
    severity: Severity
    summary: str
    reasoning: str
    action: str
    triggers: list[Trigger]
    sources: list[SourceRef]
    evidence: str | None = None
    dose_suggestion: DoseSuggestion | None = Field(
        None, description="Trough alerts on a modelled drug: the model-based regimen (or why none was computed).")


class OptionView(_Out):
    option_id: str
    label: str
    role: str
    drugs: list[str]
    drug_classes: list[str]
    condition: str | None = None
    evidence_level: str
    statement: str
    evidence: list[str] = Field(default_factory=list)
    on_source_page: bool
    patient_receives: list[str] = Field(default_factory=list,
                                        description="Knowledge base drug ids the patient has (active).")
    patient_planned: list[str] = Field(default_factory=list)
    caveats: list[str] = Field(default_factory=list)
    sources: list[SourceRef]


class ManifestationPlan(_Out):
    manifestation_id: str | None
    name: str
    input: str
    path: str | None = None
    hpo: list[str] = Field(default_factory=list)
    options: list[OptionView] = Field(default_factory=list)
    caveats: list[str] = Field(default_factory=list)
    note: str | None = None
    sources: list[SourceRef] = Field(default_factory=list)


class EvidenceFigure(_Out):
    finding: str
    name: str
    value: float
    unit: str
    ci_low: float | None = None
    ci_high: float | None = None
    source: SourceRef


class CitedStatement(_Out):
    """One knowledge-base statement as shown to the user, with its evidence level and resolved sources."""

    id: str | None = None
    text: str
    evidence: str | None = None
    sources: list[SourceRef]


class HsctStatus(_Out):
    status: Literal["not-done", "planned", "done"]
    status_basis: Literal["recorded", "not-recorded", "unclear"] = Field(
        "recorded", description="What `status` rests on: `recorded` (read from the record, see read_from); "
        "`not-recorded` (the record says nothing about HSCT: not-done is assumed, shown as 'no transplant "
        "recorded'); `unclear` (the record names HSCT without a status that can be read: not-done is assumed, "
        "shown as 'HSCT mentioned, status unclear'). Absent in assessments saved before it existed: read from "
        "read_from (empty: not-recorded).")
    date: dt.date | None = None
    date_precision: Literal["day", "month", "year"] = Field(
        "day", description="How precise the date is: a month-precision date is shown as YYYY-MM.")
    kind: Literal["allogeneic", "autologous"] | None = None
    curative_statement: str
    recommendation: str | None = None
    applies_to_diagnosis: str
    figures: list[EvidenceFigure] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    read_from: list[str] = Field(default_factory=list, description="Where in the record the status was read: "
                                 "coded Procedures/Conditions (SNOMED CT, ICD-10-PCS, CPT, ICD-10-CM) and free text.")
    followup: list[CitedStatement] = Field(
        default_factory=list, description="Transplanted patients: post-HSCT follow-up (chimerism, immune "
        "reconstitution and revaccination, GvHD prophylaxis), each statement with its sources.")
    gvhd_prophylaxis_drugs: list[str] = Field(
        default_factory=list, description="Knowledge base drugs used for GvHD prophylaxis that the record lists as "
        "current or planned (their interactions, levels and monitoring are checked by the alert rules).")
    sources: list[SourceRef]

    @model_validator(mode="before")
    @classmethod
    def _basis_of_old_assessments(cls, data: Any) -> Any:
        """A saved assessment from before ``status_basis``: nothing read -> not-recorded, never 'not transplanted'."""
        if isinstance(data, dict) and "status_basis" not in data and "status" in data:
            data = {**data, "status_basis": "recorded" if data.get("read_from") else "not-recorded"}
        return data

    @property
    def status_text(self) -> str:
        """The status in plain words for every face ('not transplanted', 'no transplant recorded', 'HSCT mentioned,
        status unclear', 'transplant planned', 'transplanted'); ``status`` keeps the value for programs."""
        from ..patient.hsct import status_words

        return status_words(self.status, self.status_basis)

    def when(self) -> str | None:
        """The date as precise as the record gave it ('2024-03' for a month)."""
        from ..patient.hsct import format_date

        return format_date(self.date, self.date_precision)


class MedicationView(_Out):
    input: str
    path: str
    drug_id: str | None
    status: str
    dose: str | None = None
    route: str | None = None
    frequency: str | None = None
    start_date: dt.date | None = None
    in_knowledge_base: bool
    drug_name: str | None = Field(None, description="The knowledge base drug's name, as shown to readers "
                                  "(drug_id keeps the id).")
    dosing_caveat: str | None = None
    brand: str | None = None
    product: str | None = Field(None, description="Knowledge base product (dosage form) the record's code or text "
                                "names.")
    formulation: str | None = None
    identified_by: str | None = Field(
        None, description="rxnorm-product | rxnorm-brand | rxnorm-ingredient | atc | name | brand | text")
    route_basis: str | None = Field(None, description="Where the route came from when the record gave none.")
    did_you_mean: list[str] = Field(default_factory=list,
                                    description="Knowledge base drugs an unrecognised name may mean.")
    known_outside_kb: str | None = Field(None, description="Dictionary name of a known drug without IPEX content.")


class PatientSummary(_Out):
    id: str | None
    age_years: float | None
    sex: str
    weight_kg: float | None
    diagnosis: str
    foxp3_variant: str | None = None
    ipex_like: str | None = None


Mode = Literal["ipex", "ipex-like", "ipex-unconfirmed", "ipex-plan-on-request", "drug-safety-only"]
PlanChoice = Literal["auto", "always", "never"]


class Assessment(_Out):
    """One patient's assessment. Field order is the reading order of every face (JSON, terminal, HTML,
    CDS cards): what the report is (``mode``), who, the alerts (critical and warning first), then the
    IPEX plan (HSCT and options per manifestation, with their evidence), then what was read."""

    schema_version: Literal["ipexrx-assessment/1"] = SCHEMA_VERSION
    as_of: dt.date
    kb_version: str
    mode: Mode = Field(
        "ipex", description="ipex | ipex-like | ipex-unconfirmed: the chart has (or, for unconfirmed, the record "
        "suspects) IPEX or an IPEX-like disorder and the IPEX plan is shown; ipex-plan-on-request: no such "
        "diagnosis, but the plan was asked for (ipex_plan='always'); drug-safety-only: no IPEX plan. Every "
        "drug-safety rule runs in every mode.")
    mode_reason: str = Field(
        "Saved before ipexrx reported a mode: the IPEX plan was then shown for every chart.",
        description="Why the report is in this mode, in one plain sentence (the default is what an assessment "
        "saved before modes existed gets).")
    ipex_plan: bool = Field(True, description="Whether the IPEX plan (hsct, manifestations) is part of the report.")
    patient: PatientSummary
    alerts: list[Alert]
    hsct: HsctStatus | None = Field(
        None, description="Curative-therapy status and HSCT evidence; null when the IPEX plan is not shown.")
    manifestations: list[ManifestationPlan] = Field(
        default_factory=list, description="Options per manifestation; empty when the IPEX plan is not shown.")
    medications: list[MedicationView]
    warnings: list[InputWarning]
    disclaimer: str

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in Severity}
        for a in self.alerts:
            out[a.severity.value] += 1
        return out

    def to_fhir(self, patient_reference: str | None = None) -> dict[str, Any]:
        """FHIR R4 (R4B models) Bundle: DetectedIssue per alert and a RequestGroup of suggestions."""
        from .fhir import assessment_to_fhir

        return assessment_to_fhir(self, patient_reference)


def assessment_json(a: Assessment) -> bytes:
    """``a.model_dump_json()`` as UTF-8 bytes (the same bytes, without decoding them to a str)."""
    return Assessment.__pydantic_serializer__.to_json(a)


def assessment_json_schema() -> dict[str, Any]:
    schema = Assessment.model_json_schema()
    schema["$id"] = "https://ipexrx.org/schema/assessment-1.json"
    schema["title"] = "ipexrx assessment (ipexrx-assessment/1)"
    return schema
