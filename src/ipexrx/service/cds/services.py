"""The three CDS services we offer and the FHIR data each one asks the EHR to prefetch.

Every service judges every chart (drug safety); whether the chart has IPEX or an IPEX-like disorder
only decides what the cards say about the mode, never whether the checks run.
"""

from __future__ import annotations

from dataclasses import dataclass

# One template per key; every key is also what we fetch ourselves when the EHR did not prefetch it.
# Each asks for what the rules read (docs/cds-hooks.md gives the reason for each). Only what CDS Hooks
# 2.0 allows in a template: {{context.patientId}}, type searches with token equality, _sort, _count
# (no computed dates: there is no "today - 90 days" token; the reader dates every result instead).
PREFETCH: dict[str, str] = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    # Every status: stopped and completed orders matter too (switch intervals, washout before live vaccines).
    "medications": "MedicationRequest?patient={{context.patientId}}",
    "medication_statements": "MedicationStatement?patient={{context.patientId}}",
    "observations": "Observation?patient={{context.patientId}}&category=laboratory&_sort=-date&_count=200",
    "vital_signs": "Observation?patient={{context.patientId}}&category=vital-signs&_sort=-date&_count=100",
    "procedures": "Procedure?patient={{context.patientId}}",
    "immunizations": "Immunization?patient={{context.patientId}}",
    "allergies": "AllergyIntolerance?patient={{context.patientId}}",
}
# Keys the rules do not read yet (AllergyIntolerance is accepted and named as not used): when absent they
# are fetched only alongside keys that must be fetched anyway, and failing to get them is not a 412.
OPTIONAL_KEYS: frozenset[str] = frozenset({"allergies"})


@dataclass(frozen=True)
class ServiceDef:
    id: str
    hook: str
    title: str
    description: str


SERVICES: dict[str, ServiceDef] = {
    s.id: s
    for s in (
        ServiceDef(
            id="ipexrx-patient-view",
            hook="patient-view",
            title="Medication safety review (IPEX reference)",
            description="For every patient: reviews current medications for label interactions, duplicate "
            "calcineurin inhibitors, dose ranges, out-of-range results, overdue monitoring and screening, and "
            "live-vaccine conflicts, each card citing its sources and saying whether the chart has IPEX "
            "(FOXP3) or an IPEX-like disorder. The IPEX plan (HSCT, options) is never a card.",
        ),
        ServiceDef(
            id="ipexrx-order-select",
            hook="order-select",
            title="Medication order check (on selection)",
            description="Judges the selected draft medication orders of any patient against what the patient "
            "already takes (interactions, duplicate calcineurin inhibitors, dose ranges, screening before "
            "biologics, live vaccines under immunosuppression).",
        ),
        ServiceDef(
            id="ipexrx-order-sign",
            hook="order-sign",
            title="Medication order check (before signing)",
            description="Judges all draft medication orders of any patient against what the patient already "
            "takes, before they are signed.",
        ),
    )
}
