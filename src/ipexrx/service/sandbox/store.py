"""The sandbox's patient records: synthetic FHIR R4 resources kept in memory, read and searched.

The records ship with the package (``patients/*.json``, one collection Bundle per patient): the
three example patients of ``examples/*.fhir.json`` and the patient of the CDS Hooks sample
requests. In the shipped copies every resource has an id (the examples leave them out), every
Observation has a category (``vital-signs`` for the LOINC codes of the FHIR vital-signs profile,
``laboratory`` otherwise), and the examples' patients have a made-up name, so a FHIR client can
search them as it would a real server. All are invented; no real data.

Signed orders are added to the store (as active MedicationRequests) while the sandbox runs; a
restart returns to the shipped records.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

# Search parameters understood (FHIR R4 names); any other is an error, never silently ignored.
PATIENT_PARAMS = ("patient", "subject")
KNOWN_PARAMS = frozenset({*PATIENT_PARAMS, "category", "_count", "_sort", "status", "_id"})
# Resource types with a patient reference, and the element holding it.
PATIENT_FIELD = {"Observation": "subject", "Condition": "subject", "MedicationRequest": "subject",
                 "MedicationStatement": "subject", "Procedure": "subject", "Encounter": "subject",
                 "Immunization": "patient", "AllergyIntolerance": "patient"}
SEARCHABLE = ("Patient", *PATIENT_FIELD)


class SearchError(ValueError):
    """A search the sandbox cannot answer: the message says what was expected."""


@dataclass
class Store:
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    order: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, resource: dict[str, Any]) -> None:
        key = (str(resource["resourceType"]), str(resource["id"]))
        with self.lock:
            if key not in self.resources:
                self.order.append(key)
            self.resources[key] = copy.deepcopy(resource)

    def read(self, rtype: str, rid: str) -> dict[str, Any] | None:
        res = self.resources.get((rtype, rid))
        return copy.deepcopy(res) if res is not None else None

    def patients(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(self.resources[k]) for k in self.order if k[0] == "Patient"]

    def search(self, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Resources of ``rtype`` matching every parameter. Raises SearchError for an unknown type or
        parameter, or a search of patient data that names no patient (the sandbox serves one
        patient's compartment at a time, as a SMART token allows)."""
        if rtype not in SEARCHABLE:
            raise SearchError(f"resource type '{rtype}' is not served; expected one of {', '.join(SEARCHABLE)}")
        unknown = sorted({k for k, _ in params} - KNOWN_PARAMS)
        if unknown:
            raise SearchError(f"search parameter(s) {', '.join(unknown)} not supported; expected "
                              f"{', '.join(sorted(KNOWN_PARAMS))}")
        values = dict(params)
        count = values.get("_count")
        if count is not None and not (count.isdigit() and int(count) > 0):
            raise SearchError(f"_count must be a positive whole number, got '{count[:20]}'")
        out = [copy.deepcopy(self.resources[k]) for k in self.order if k[0] == rtype]
        for name, value in params:
            if name in PATIENT_PARAMS:
                out = [r for r in out if patient_of(r) == value.removeprefix("Patient/")]
            elif name == "_id":
                out = [r for r in out if r.get("id") == value]
            elif name == "status":
                out = [r for r in out if r.get("status") in value.split(",")]
            elif name == "category":
                out = [r for r in out if _has_code(r.get("category"), value)]
        if values.get("_sort", "").lstrip("-") == "date":
            out.sort(key=_date_of, reverse=values["_sort"].startswith("-"))
        return out[: int(count)] if count else out


def patient_of(resource: dict[str, Any]) -> str | None:
    """The id of the patient a resource belongs to (a Patient: itself)."""
    if resource.get("resourceType") == "Patient":
        return str(resource.get("id"))
    ref = resource.get(PATIENT_FIELD.get(str(resource.get("resourceType")), ""))
    if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
        return str(ref["reference"]).removeprefix("Patient/")
    return None


def _has_code(concepts: Any, token: str) -> bool:
    system, _, code = token.rpartition("|")
    for cc in concepts or []:
        for c in (cc or {}).get("coding") or []:
            if c.get("code") == code and (not system or c.get("system") == system):
                return True
    return False


def _date_of(resource: dict[str, Any]) -> str:
    for key in ("effectiveDateTime", "issued", "authoredOn", "recordedDate", "onsetDateTime", "performedDateTime",
                "occurrenceDateTime"):
        if isinstance(resource.get(key), str):
            return str(resource[key])
    return ""


def load_store() -> Store:
    """The shipped patients, freshly loaded."""
    store = Store()
    folder = resources.files(__package__).joinpath("patients")
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".json"):
            continue
        bundle = json.loads(item.read_text("utf-8"))
        for entry in bundle["entry"]:
            store.add(entry["resource"])
    return store


def searchset(base: str, rtype: str, query: str, found: list[dict[str, Any]]) -> dict[str, Any]:
    """A FHIR R4 searchset Bundle of ``found``."""
    return {"resourceType": "Bundle", "type": "searchset", "total": len(found),
            "link": [{"relation": "self", "url": f"{base}/{rtype}" + (f"?{query}" if query else "")}],
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in found]}


def outcome(code: str, text: str, severity: str = "error") -> dict[str, Any]:
    """A FHIR OperationOutcome with one issue."""
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code,
                                                           "diagnostics": text}]}


def display_name(patient: dict[str, Any]) -> str:
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    if not names:
        return "Unnamed patient"
    n = names[0]
    return " ".join([*(n.get("given") or []), n.get("family") or ""]).strip() or "Unnamed patient"
