"""Generate realistic-looking synthetic IPEX patients (ipexrx JSON) and their FHIR R4 Bundle twins.

Used by benchmarks/assess_bench.py (10,000-patient batch) and to draft the FHIR examples. The
patients are random combinations of the drugs, labs (in varied units), vaccines and infections
the rules read; they are not clinical cases.

    python benchmarks/assess_gen.py 10000 > /tmp/patients.ndjson          # JSON records
    python benchmarks/assess_gen.py 10000 --fhir > /tmp/bundles.ndjson    # FHIR Bundles
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sys
from typing import Any

AS_OF = dt.date(2026, 11, 25)
DRUGS = [("sirolimus", "Rapamune", "35302"), ("tacrolimus", "Prograf", "42316"), ("cyclosporine", "Neoral", "3008"),
         ("prednisone", None, "8640"), ("methylprednisolone", None, "6902"), ("rituximab", "Rituxan", "121191"),
         ("infliximab", "Remicade", None), ("voriconazole", "Vfend", "121243"), ("posaconazole", "Noxafil", None),
         ("fluconazole", None, None), ("rifampin", None, None), ("clarithromycin", None, None),
         ("abatacept", None, None), ("levothyroxine", None, None), ("insulin human", None, None),
         ("filgrastim", None, None), ("mycophenolate mofetil", "CellCept", None)]
LABS = [("sirolimus trough", "29247-4", [(4, 22, "ng/mL"), (4, 22, "ug/L")]),
        ("tacrolimus trough", "11253-2", [(3, 18, "ng/mL")]),
        ("cyclosporine trough", "3520-4", [(60, 300, "ng/mL")]),
        ("creatinine", "2160-0", [(0.2, 1.2, "mg/dL")]), ("creatinine", "14682-9", [(18, 110, "umol/L")]),
        ("glucose", "2345-7", [(60, 250, "mg/dL")]), ("HbA1c", "4548-4", [(4.5, 11, "%")]),
        ("TSH", "3016-3", [(0.2, 12, "mIU/L")]), ("cholesterol", "2093-3", [(110, 280, "mg/dL")]),
        ("triglycerides", "2571-8", [(0.5, 4, "mmol/L")]), ("neutrophils", "751-8", [(0.3, 7, "10*3/uL")]),
        ("platelets", "777-3", [(20, 450, "10*3/uL")]), ("potassium", "2823-3", [(3.2, 5.9, "mmol/L")]),
        ("systolic blood pressure", "8480-6", [(85, 140, "mm[Hg]")])]
QUAL = [("HBsAg", "5196-1"), ("anti-HBc", "16933-4"), ("QuantiFERON", "71773-6")]
MANIF = ["HP:0002028", "HP:0100651", "HP:0000964", "HP:0001890", "HP:0000821", "HP:0001873", "failure to thrive",
         "eczema"]
VACCINES = [("MMR", "03"), ("varicella", "21"), ("rotavirus", "116"), ("DTaP", "20"), ("hepatitis B", "08")]


def _date(rng: random.Random, back_days: int) -> str:
    return (AS_OF - dt.timedelta(days=rng.randint(0, back_days))).isoformat()


def patient(rng: random.Random, i: int) -> dict[str, Any]:
    age = round(rng.uniform(0.1, 17), 1)
    weight = round(max(3.0, min(70.0, 3.5 + age * 3.2 + rng.uniform(-2, 2))), 1)
    dx = rng.choices(["ipex", "ipex-like", "unconfirmed"], [8, 1, 1])[0]
    diagnosis: dict[str, Any] = {"type": dx}
    if dx == "ipex":
        diagnosis["foxp3_variant"] = rng.choice(["c.1150G>A", "c.1189C>T", "c.227delT", "c.1040G>A"])
    elif dx == "ipex-like":
        diagnosis["disorder"] = rng.choice(["LRBA", "CTLA4", "CD25 deficiency", "STAT1"])
    meds = []
    for name, brand, _ in rng.sample(DRUGS, rng.randint(1, 5)):
        med: dict[str, Any] = {"drug": brand if brand and rng.random() < 0.4 else name,
                               "status": rng.choices(["active", "planned", "stopped"], [6, 2, 1])[0],
                               "dose": {"value": round(rng.uniform(0.2, 40), 2),
                                        "unit": rng.choice(["mg", "mcg", "mg/kg"])},
                               "route": "oral", "frequency": rng.choice(["once daily", "twice daily", "q8h", "weekly"])}
        if med["status"] != "planned":
            med["start_date"] = _date(rng, 900)
        meds.append(med)
    labs = []
    for name, _loinc, choices in rng.sample(LABS, rng.randint(0, 8)):
        lo, hi, unit = rng.choice(choices)
        labs.append({"test": name, "value": round(rng.uniform(lo, hi), 2), "unit": unit, "date": _date(rng, 400)})
    for name, _loinc in rng.sample(QUAL, rng.randint(0, 2)):
        labs.append({"test": name, "value": rng.choice(["negative", "negative", "positive"]), "date": _date(rng, 700)})
    imms = [{"vaccine": v, "status": rng.choice(["given", "planned"]), "date": _date(rng, 300)}
            for v, _ in rng.sample(VACCINES, rng.randint(0, 2))]
    for imm in imms:
        if imm["status"] == "planned":
            del imm["date"]
    rec: dict[str, Any] = {
        "id": f"gen-{i:06d}", "demographics": {"age_years": age, "sex": "male", "weight_kg": weight},
        "diagnosis": diagnosis, "hsct": {"status": rng.choices(["not-done", "planned", "done"], [6, 2, 2])[0]},
        "manifestations": rng.sample(MANIF, rng.randint(1, 3)), "medications": meds, "labs": labs,
        "immunizations": imms,
    }
    if rec["hsct"]["status"] == "done":
        rec["hsct"]["date"] = _date(rng, 1500)
    if rng.random() < 0.2:
        rec["infections"] = [{"name": "CMV viremia", "pathogen": "cytomegalovirus"}]
    return rec


def to_fhir(rec: dict[str, Any]) -> dict[str, Any]:
    """FHIR R4 Bundle twin of an ipexrx record (the subset the generator produces)."""
    pid = rec.get("id") or "p"
    subj = {"reference": f"Patient/{pid}"}
    demo = rec.get("demographics", {})
    entries: list[dict[str, Any]] = []
    p: dict[str, Any] = {"resourceType": "Patient", "id": pid, "gender": demo.get("sex", "unknown")}
    if "birth_date" in demo:
        p["birthDate"] = demo["birth_date"]
    elif "age_years" in demo:
        p["birthDate"] = (AS_OF - dt.timedelta(days=int(demo["age_years"] * 365.25))).isoformat()
    entries.append(p)
    if "weight_kg" in demo:
        entries.append({"resourceType": "Observation", "status": "final", "subject": subj,
                        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7",
                                             "display": "Body weight"}]},
                        "effectiveDateTime": AS_OF.isoformat(),
                        "valueQuantity": {"value": demo["weight_kg"], "unit": "kg", "system": "http://unitsofmeasure.org",
                                          "code": "kg"}})
    dx = rec["diagnosis"]
    if dx["type"] == "ipex":
        entries.append({"resourceType": "Condition", "subject": subj,
                        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "724276006"}],
                                 "text": "IPEX syndrome"},
                        "note": [{"text": f"FOXP3 {dx.get('foxp3_variant', '')}"}]})
    elif dx["type"] == "ipex-like":
        entries.append({"resourceType": "Condition", "subject": subj,
                        "code": {"text": f"IPEX-like syndrome ({dx.get('disorder', '')})"}})
    for m in rec.get("manifestations", []):
        m = m if isinstance(m, str) else (m.get("hpo") or m.get("name"))
        code = {"coding": [{"system": "http://purl.obolibrary.org/obo/hp.owl", "code": m}]} if m.startswith("HP:") \
            else {"text": m}
        entries.append({"resourceType": "Condition", "subject": subj, "code": code,
                        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                       "condition-clinical", "code": "active"}]}})
    for inf in rec.get("infections", []):
        entries.append({"resourceType": "Condition", "subject": subj,
                        "code": {"text": f"{inf['name']}"}, "note": [{"text": inf.get("pathogen") or ""}]})
    hsct = rec.get("hsct", {})
    if hsct.get("status") in ("done", "planned"):
        proc: dict[str, Any] = {"resourceType": "Procedure", "subject": subj,
                                "status": "completed" if hsct["status"] == "done" else "preparation",
                                "code": {"text": "Allogeneic haematopoietic stem cell transplant (HSCT)"}}
        if hsct.get("date"):
            proc["performedDateTime"] = hsct["date"]
        entries.append(proc)
    for med in rec.get("medications", []):
        status = med.get("status", "active")
        res: dict[str, Any] = {"resourceType": "MedicationStatement", "subject": subj,
                               "status": {"active": "active", "planned": "intended", "stopped": "stopped"}[status],
                               "medicationCodeableConcept": {"text": med["drug"]}}
        if med.get("dose"):
            dose = med["dose"]
            if isinstance(dose, str):
                value, _, unit = dose.partition(" ")
                dose = {"value": float(value), "unit": unit}
            if dose:
                res["dosage"] = [{"text": med.get("frequency"), "doseAndRate": [{"doseQuantity": {
                    "value": dose["value"], "unit": dose["unit"]}}]}]
                if med.get("route") == "oral":
                    res["dosage"][0]["route"] = {"coding": [{"system": "http://snomed.info/sct", "code": "26643006"}]}
        if med.get("start_date") or med.get("end_date"):
            res["effectivePeriod"] = {k: v for k, v in (("start", med.get("start_date")), ("end", med.get("end_date")))
                                      if v}
        entries.append(res)
    loinc = {name: code for name, code, _ in LABS} | dict(QUAL)
    for lab in rec.get("labs", []):
        code = loinc.get(lab["test"])
        obs: dict[str, Any] = {"resourceType": "Observation", "status": "final", "subject": subj,
                               "code": {"coding": [{"system": "http://loinc.org", "code": code}]} if code
                               else {"text": lab["test"]},
                               "effectiveDateTime": lab["date"]}
        if lab["test"] == "creatinine" and lab.get("unit") == "umol/L":
            obs["code"] = {"coding": [{"system": "http://loinc.org", "code": "14682-9"}]}
        if isinstance(lab["value"], str):
            obs["valueCodeableConcept"] = {"text": lab["value"]}
        else:
            obs["valueQuantity"] = {"value": lab["value"], "unit": lab["unit"], "system": "http://unitsofmeasure.org",
                                    "code": lab["unit"]}
        entries.append(obs)
    for imm in rec.get("immunizations", []):
        if imm.get("status") != "given":
            continue
        res = {"resourceType": "Immunization", "status": "completed", "patient": subj,
               "vaccineCode": {"text": imm["vaccine"]}, "occurrenceDateTime": imm.get("date") or AS_OF.isoformat()}
        entries.append(res)
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:{pid}-{k}", "resource": r} for k, r in enumerate(entries)]}


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 100
    fhir = "--fhir" in argv
    rng = random.Random(20261125)
    out = sys.stdout
    for i in range(n):
        rec = patient(rng, i)
        out.write(json.dumps(to_fhir(rec) if fhir else rec) + "\n")


if __name__ == "__main__":
    main(sys.argv)
