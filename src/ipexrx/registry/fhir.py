"""FHIR R4 export of registry records: Patient, Condition (diagnosis and manifestation episodes),
MedicationStatement (treatment courses), Observation (visit measurements, trough levels) and
Procedure (HSCT), in one ``collection`` Bundle validated with fhir.resources' R4B models.

Codes: the diagnosis carries the knowledge base's ORPHA / OMIM / SNOMED CT codes for the disease,
manifestations their HPO code, drugs their RxNorm code when the KB has one. Registry quantities
without an established LOINC code (weight z-score, stool output, OI score...) and the HSCT
procedure use the registry's own code system ``CODE_SYSTEM`` rather than a guessed standard code.
Patient identity is the registry pseudonym only; birth date is year-month.
"""

from __future__ import annotations

from typing import Any

CODE_SYSTEM = "https://ipexrx.org/fhir/CodeSystem/registry"
PSEUDONYM_SYSTEM = "https://ipexrx.org/fhir/NamingSystem/registry-pseudonym"
HPO_SYSTEM = "http://human-phenotype-ontology.org"
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED_SYSTEM = "http://snomed.info/sct"
ORPHA_SYSTEM = "http://www.orpha.net"
OMIM_SYSTEM = "http://www.omim.org"
UCUM = "http://unitsofmeasure.org"
HGVS_SYSTEM = "http://varnomen.hgvs.org"

VISIT_OBS = {  # field -> (display, UCUM unit or None)
    "stool_ml_kg_day": ("Stool output", "mL/kg/d"),
    "weight_z": ("Weight-for-age z-score", "{SD}"),
    "insulin_u_kg_day": ("Insulin requirement", "[iU]/kg/d"),
    "oi_score": ("Organ-involvement score (Barzaghi 2018)", "{score}"),
}
DOSE_UCUM = {"mg/kg/day": "mg/kg/d", "mg/m2/day": "mg/m2/d", "mg/day": "mg/d", "mg/kg/dose": "mg/kg",
             "mg/m2/dose": "mg/m2", "mg/dose": "mg", "units/kg/day": "[iU]/kg/d"}


def _local(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": CODE_SYSTEM, "code": code, "display": display}], "text": display}


def _ref(kind: str, rid: str) -> dict[str, str]:
    return {"reference": f"{kind}/{rid}"}


def patient_resources(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """FHIR resources (as dicts) for one patient record from :func:`ipexrx.registry.core.patient_record`."""
    from ..knowledge import get_kb

    kb = get_kb()
    p = rec["patient"]
    pid = p["pseudonym"]
    subj = _ref("Patient", pid)
    out: list[dict[str, Any]] = [{
        "resourceType": "Patient", "id": pid,
        "identifier": [{"system": PSEUDONYM_SYSTEM, "value": pid}],
        "gender": {"male": "male", "female": "female"}.get(p["sex"], "unknown"),
        "birthDate": f"{p['birth_year']:04d}-{p['birth_month']:02d}",
        **({"deceasedDateTime": p["death_date"]} if p.get("death_date") else {"deceasedBoolean": False}
           if p["vital_status"] == "alive" else {}),
    }]
    if p["diagnosis"] == "ipex":
        ids = kb.disease.identifiers
        codings = [{"system": ORPHA_SYSTEM, "code": ids.orpha.removeprefix("ORPHA:"), "display": kb.disease.name}] \
            if ids.orpha else []
        codings += [{"system": OMIM_SYSTEM, "code": ids.omim}] if ids.omim else []
        codings += [{"system": SNOMED_SYSTEM, "code": ids.snomed}] if ids.snomed else []
        text = f"{kb.disease.name} (FOXP3 {p.get('variant_hgvs') or 'variant not recorded'})"
    else:
        dis = kb.ipex_like[p["ipex_like_id"]]
        codings = [{"system": OMIM_SYSTEM, "code": c.code, "display": c.label or dis.name}
                   for c in dis.identifiers if c.system == "OMIM"]
        codings += [_local(f"ipex-like:{dis.id}", dis.name)["coding"][0]]
        text = f"{dis.name} ({p['gene']})"
    out.append({"resourceType": "Condition", "id": f"{pid}-dx", "subject": subj, "code": {"coding": codings,
                                                                                          "text": text},
                "category": [_local("diagnosis", "Registry diagnosis")],
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                               "code": "active"}]},
                **({"onsetDateTime": p["onset_date"]} if p.get("onset_date") else {}),
                "recordedDate": p["diagnosis_date"]})
    for m in rec["manifestations"]:
        label = kb.manifestations[m["manifestation_id"]].name
        out.append({"resourceType": "Condition", "id": f"{pid}-m{m['id']}", "subject": subj,
                    "code": {"coding": [{"system": HPO_SYSTEM, "code": m["hpo_code"]}], "text": label},
                    "clinicalStatus": {"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "resolved" if m["resolution_date"] else "active"}]},
                    "onsetDateTime": m["onset_date"],
                    **({"abatementDateTime": m["resolution_date"]} if m["resolution_date"] else {})})
    for c in rec["courses"]:
        drug = kb.drugs[c["drug_id"]]
        coding = [{"system": RXNORM_SYSTEM, "code": drug.codes.rxcui, "display": drug.name}] if drug.codes.rxcui \
            else [_local(f"drug:{drug.id}", drug.name)["coding"][0]]
        ms: dict[str, Any] = {
            "resourceType": "MedicationStatement", "id": f"{pid}-c{c['id']}", "subject": subj,
            "status": "completed" if c["stop_date"] else "active",
            "medicationCodeableConcept": {"coding": coding, "text": drug.name},
            "effectivePeriod": {"start": c["start_date"], **({"end": c["stop_date"]} if c["stop_date"] else {})},
        }
        if c["reason_stopped"]:
            ms["statusReason"] = [_local(f"stopped:{c['reason_stopped']}", f"Stopped: {c['reason_stopped']}"
                                         + (f" ({c['reason_other']})" if c.get("reason_other") else ""))]
        if c["dose"] is not None:
            ms["dosage"] = [{"text": f"{c['dose']:g} {c['dose_unit']}", "doseAndRate": [{"doseQuantity": {
                "value": c["dose"], "unit": c["dose_unit"], "system": UCUM, "code": DOSE_UCUM[c["dose_unit"]]}}]}]
        out.append(ms)
        for t in c.get("troughs", []):
            out.append({"resourceType": "Observation", "id": f"{pid}-t{t['id']}", "status": "final", "subject": subj,
                        "code": _local(f"trough:{drug.id}", f"{drug.name} trough concentration"),
                        "effectiveDateTime": t["date"], "derivedFrom": [_ref("MedicationStatement",
                                                                             f"{pid}-c{c['id']}")],
                        "valueQuantity": {"value": t["value_ng_ml"], "unit": "ng/mL", "system": UCUM,
                                          "code": "ng/mL"}})
    for v in rec["visits"]:
        for f, (display, unit) in VISIT_OBS.items():
            if v.get(f) is None:
                continue
            out.append({"resourceType": "Observation", "id": f"{pid}-v{v['id']}-{f.replace('_', '-')}",
                        "status": "final", "subject": subj, "code": _local(f, display),
                        "effectiveDateTime": v["date"],
                        "valueQuantity": {"value": v[f], "unit": unit, "system": UCUM, "code": unit}})
        if v.get("skin_severity"):
            out.append({"resourceType": "Observation", "id": f"{pid}-v{v['id']}-skin", "status": "final",
                        "subject": subj, "code": _local("skin_severity", "Skin involvement"),
                        "effectiveDateTime": v["date"], "valueCodeableConcept": _local(
                            f"skin:{v['skin_severity']}", v["skin_severity"])})
    for h in rec["hsct"]:
        out.append({"resourceType": "Procedure", "id": f"{pid}-h{h['id']}", "status": "completed", "subject": subj,
                    "code": _local("hsct", "Haematopoietic stem cell transplantation"),
                    "performedDateTime": h["date"],
                    "note": [{"text": f"donor {h['donor']}; conditioning {h['conditioning']}"
                              + (f"; donor chimerism {h['chimerism_donor_pct']:g}% on {h['chimerism_date']}"
                                 if h["chimerism_donor_pct"] is not None else "")
                              + (f"; acute GvHD grade {h['acute_gvhd_grade']}" if h["acute_gvhd_grade"] is not None
                                 else "")
                              + (f"; chronic GvHD {h['chronic_gvhd']}" if h["chronic_gvhd"] else "")}]})
    return out


def bundle(records: list[dict[str, Any]]) -> dict[str, Any]:
    """A validated FHIR collection Bundle (dict) for these patient records."""
    from fhir.resources.R4B import get_fhir_model_class

    entries = [{"fullUrl": f"urn:ipexrx:{r['resourceType']}/{r['id']}", "resource": r}
               for rec in records for r in patient_resources(rec)]
    doc = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    model = get_fhir_model_class("Bundle").model_validate(doc)
    return dict(model.model_dump(mode="json", exclude_none=True))
