"""Assessment -> FHIR R4 (validated with fhir.resources' R4B models) for the service that comes next.

Why these resources: ``DetectedIssue`` is FHIR's resource for "a clinical problem with an action"
(interactions, duplicate therapy, missing monitoring), with severity high / moderate / low; a
``RequestGroup`` with ``intent = proposal`` and ``status = draft`` holds suggestions that nobody has
ordered -- which is exactly what ipexrx offers (HSCT evaluation, options per manifestation).
Sources travel as ``RelatedArtifact`` citations so a receiving system can show them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .models import Alert, Assessment, SourceRef

ALERT_SYSTEM = "https://ipexrx.org/fhir/CodeSystem/alert-family"
RULE_SYSTEM = "https://ipexrx.org/fhir/CodeSystem/rule"
SEVERITY = {"critical": "high", "warning": "moderate", "info": "low"}


def _uuid(*parts: str) -> str:
    h = hashlib.sha1("|".join(parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _artifact(ref: SourceRef) -> dict[str, Any]:
    art: dict[str, Any] = {"type": "citation", "label": ref.citation, "display": ref.short()}
    if ref.url:
        art["url"] = ref.url
    return art


def _detected_issue(a: Alert, subject: dict[str, Any], as_of: dt.date, uid: str) -> dict[str, Any]:
    detail = a.reasoning
    if a.sources:
        detail += "\nSources: " + "; ".join(s.short() for s in a.sources)
    issue: dict[str, Any] = {
        "resourceType": "DetectedIssue", "id": uid, "status": "preliminary",
        "code": {"coding": [{"system": ALERT_SYSTEM, "code": a.family},
                            {"system": RULE_SYSTEM, "code": a.rule}], "text": a.summary},
        "severity": SEVERITY[a.severity.value], "patient": subject, "identifiedDateTime": as_of.isoformat(),
        "detail": detail,
        "mitigation": [{"action": {"text": a.action}}],
    }
    implicated = [{"display": f"{t.kind}: {t.label}" + (f" ({t.detail})" if t.detail else "")} for t in a.triggers]
    if implicated:
        issue["implicated"] = implicated
    url = next((s.url for s in a.sources if s.url), None)
    if url:
        issue["reference"] = url
    return issue


def _request_group(asm: Assessment, subject: dict[str, Any], uid: str) -> dict[str, Any]:
    actions: list[dict[str, Any]] = []
    h = asm.hsct
    if h is not None and h.recommendation:
        actions.append({"title": "HSCT evaluation", "description": h.recommendation,
                        "textEquivalent": h.curative_statement,
                        "documentation": [_artifact(s) for s in h.sources] or None})
    if h is not None and h.followup:
        actions.append({"title": "Follow-up after HSCT", "description": h.notes[0] if h.notes else "HSCT performed.",
                        "selectionBehavior": "any",
                        "action": [{"title": st.id or f"post-hsct-{i}", "description": st.text
                                    + (f" (evidence: {st.evidence})" if st.evidence else ""),
                                    "documentation": [_artifact(r) for r in st.sources] or None}
                                   for i, st in enumerate(h.followup)]})
    for plan in asm.manifestations:
        if not plan.options:
            continue
        sub = []
        for o in plan.options:
            mark = " [patient receives]" if o.patient_receives else " [planned]" if o.patient_planned else ""
            sub.append({"title": f"{o.label}{mark}",
                        "description": f"{o.statement} (evidence: {o.evidence_level}; role: {o.role})",
                        "documentation": [_artifact(s) for s in o.sources] or None})
        actions.append({"title": f"Options for {plan.name}", "description": "Ordered by strength of evidence.",
                        "selectionBehavior": "any", "action": sub})
    rg: dict[str, Any] = {
        "resourceType": "RequestGroup", "id": uid, "status": "draft", "intent": "proposal", "subject": subject,
        "authoredOn": asm.as_of.isoformat(),
        "note": [{"text": f"Mode: {asm.mode}. {asm.mode_reason}"}, {"text": asm.disclaimer}],
    }
    if actions:
        rg["action"] = actions
    return _drop_none(rg)


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj


def assessment_to_fhir(asm: Assessment, patient_reference: str | None = None) -> dict[str, Any]:
    """A ``collection`` Bundle of DetectedIssue (one per alert) and one RequestGroup; validated as R4B."""
    from fhir.resources.R4B.bundle import Bundle

    pid = patient_reference or (f"Patient/{asm.patient.id}" if asm.patient.id else None)
    subject: dict[str, Any] = {"reference": pid} if pid else {"display": "assessed patient"}
    seed = f"{asm.patient.id}|{asm.as_of}|{asm.kb_version}"
    entries = []
    for a in asm.alerts:
        uid = _uuid(seed, a.id)
        entries.append({"fullUrl": f"urn:uuid:{uid}", "resource": _detected_issue(a, subject, asm.as_of, uid)})
    rg_id = _uuid(seed, "requestgroup")
    entries.append({"fullUrl": f"urn:uuid:{rg_id}", "resource": _request_group(asm, subject, rg_id)})
    bundle = {"resourceType": "Bundle", "type": "collection", "timestamp": f"{asm.as_of.isoformat()}T00:00:00Z",
              "entry": entries}
    Bundle.model_validate(bundle)  # raises if we ever build invalid FHIR (a bug, caught by the tests)
    return bundle
