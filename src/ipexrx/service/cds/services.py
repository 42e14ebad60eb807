"""The three CDS services we offer and the FHIR data each one asks the EHR to prefetch."""

from __future__ import annotations

from dataclasses import dataclass

# One template per key; every key is also what we fetch ourselves when the EHR did not prefetch it.
PREFETCH: dict[str, str] = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "medications": "MedicationRequest?patient={{context.patientId}}&status=active",
    "observations": "Observation?patient={{context.patientId}}&_sort=-date&_count=200",
    "procedures": "Procedure?patient={{context.patientId}}",
    "immunizations": "Immunization?patient={{context.patientId}}",
}


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
            title="IPEX medication review",
            description="For patients with IPEX syndrome (FOXP3) or an IPEX-like disorder: reviews current "
            "medications for label interactions, duplicate calcineurin inhibitors, overdue monitoring and "
            "screening, and live-vaccine conflicts, each card citing its sources. Other patients get no cards.",
        ),
        ServiceDef(
            id="ipexrx-order-select",
            hook="order-select",
            title="IPEX order check (on selection)",
            description="Judges the selected draft medication orders of a patient with IPEX or an IPEX-like "
            "disorder against what the patient already takes (interactions, duplicate calcineurin inhibitors, "
            "screening before biologics, live vaccines under immunosuppression).",
        ),
        ServiceDef(
            id="ipexrx-order-sign",
            hook="order-sign",
            title="IPEX order check (before signing)",
            description="Judges all draft medication orders of a patient with IPEX or an IPEX-like disorder "
            "against what the patient already takes, before they are signed.",
        ),
    )
}
