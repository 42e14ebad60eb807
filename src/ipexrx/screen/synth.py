"""A synthetic FHIR Bulk Data population for screening tests and benchmarks (clearly synthetic).

Why a generator of our own rather than Synthea: Synthea has no IPEX module, and the point is to know
the truth -- which patients are IPEX, IPEX-like, look-alikes that must *not* rank high, or on an
unsafe regimen -- so that precision-at-k can be measured. The mix:

* **IPEX** (undiagnosed): boys with onset in the first months -- intractable diarrhoea / autoimmune
  enteropathy, type 1 diabetes in infancy, eczema, autoimmune cytopenia, thyroiditis, raised IgE,
  eosinophilia, failure to thrive, food allergy, nephropathy -- drawn with frequencies close to the
  large cohorts (Gambineri 2018, doi:10.3389/fimmu.2018.02411; Barzaghi 2018, doi:10.1016/j.jaci.2017.10.041);
* **IPEX known**: the same picture with an IPEX diagnosis Condition (SNOMED CT 724276006), on sirolimus
  or tacrolimus;
* **IPEX-like** (undiagnosed): girls or later onset, with the features the knowledge base gives for
  CD25 (IL2RA), STAT5B, STAT1 GOF, STAT3 GOF, CTLA4 and LRBA;
* **look-alikes**: isolated coeliac disease, isolated type 1 diabetes in a teenager, infectious
  gastroenteritis in an infant, atopic dermatitis alone, inflammatory bowel disease from 14 years;
* **unsafe regimens**: tacrolimus + voriconazole, sirolimus + posaconazole, a live vaccine given on
  cyclosporine, tacrolimus without any trough level;
* **background**: everyone else, with common conditions and medications at any age.

Codes: SNOMED CT, ICD-10(-CM), LOINC, RxNorm and CVX codes come from the knowledge base and the
project's reference notes; where a code was not certain, the record carries text only (as many real
records do), so the reader's free-text matching is exercised too.

Deterministic for a seed: the same ``(patients, seed, as_of)`` writes byte-identical files. The truth
goes to ``synth-truth.csv`` beside the NDJSON files (the screen never reads it).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

RESOURCE_TYPES = ("Patient", "Condition", "Observation", "MedicationRequest", "MedicationStatement", "Procedure",
                  "Immunization")
DEFAULT_AS_OF = dt.date(2026, 6, 30)

# feature -> (codings, text). Codings: (system, code, display). Empty codings = text only (code not certain).
CONDITIONS: dict[str, tuple[tuple[tuple[str, str, str], ...], str]] = {
    "autoimmune-enteropathy": ((), "Autoimmune enteropathy"),
    "intractable-diarrhea": ((), "Intractable diarrhea of infancy"),
    "chronic-diarrhea": (((ICD10CM, "R19.7", "Diarrhea, unspecified"),), "Chronic diarrhoea"),
    "diarrhea": (((SNOMED, "62315008", "Diarrhea"), (ICD10CM, "R19.7", "Diarrhea, unspecified")), "Diarrhea"),
    "villous-atrophy": ((), "Villous atrophy on duodenal biopsy"),
    "t1d": (((SNOMED, "46635009", "Diabetes mellitus type 1"),
             (ICD10CM, "E10.9", "Type 1 diabetes mellitus without complications")), "Type 1 diabetes mellitus"),
    "eczema": (((SNOMED, "43116000", "Eczema"),), "Eczema"),
    "atopic-dermatitis": (((SNOMED, "24079001", "Atopic dermatitis"),
                           (ICD10CM, "L20.9", "Atopic dermatitis, unspecified")), "Atopic dermatitis"),
    "aiha": (((ICD10, "D59.1", "Other autoimmune haemolytic anaemias"),), "Autoimmune hemolytic anemia"),
    "itp": (((ICD10CM, "D69.3", "Immune thrombocytopenic purpura"),), "Immune thrombocytopenia"),
    "autoimmune-neutropenia": (((ICD10CM, "D70.9", "Neutropenia, unspecified"),), "Autoimmune neutropenia"),
    "hypothyroidism": (((SNOMED, "40930008", "Hypothyroidism"), (ICD10CM, "E03.9", "Hypothyroidism, unspecified")),
                       "Hypothyroidism"),
    "thyroiditis": (((ICD10CM, "E06.3", "Autoimmune thyroiditis"),), "Autoimmune thyroiditis"),
    "ftt": (((ICD10CM, "R62.51", "Failure to thrive (child)"),), "Failure to thrive"),
    "food-allergy": ((), "Food allergy (cow's milk protein)"),
    "nephropathy": ((), "Membranous nephropathy"),
    "autoimmune-hepatitis": (((ICD10CM, "K75.4", "Autoimmune hepatitis"),), "Autoimmune hepatitis"),
    "cmc": ((), "Chronic mucocutaneous candidiasis"),
    "short-stature": (((ICD10CM, "R62.52", "Short stature (child)"),), "Short stature"),
    "severe-short-stature": ((), "Severe short stature, growth hormone insensitivity"),
    "hypogammaglobulinemia": (((ICD10CM, "D80.1", "Nonfamilial hypogammaglobulinemia"),), "Hypogammaglobulinemia"),
    "lymphadenopathy": (((ICD10CM, "R59.1", "Generalized enlarged lymph nodes"),), "Generalized lymphadenopathy"),
    "splenomegaly": (((ICD10CM, "R16.1", "Splenomegaly, not elsewhere classified"),), "Splenomegaly"),
    "lip": (((ICD10CM, "J84.2", "Lymphoid interstitial pneumonia"),), "Lymphocytic interstitial pneumonitis"),
    "cmv": (((ICD10CM, "B25.9", "Cytomegaloviral disease, unspecified"),), "Cytomegalovirus disease"),
    "celiac": (((SNOMED, "396331005", "Celiac disease"), (ICD10CM, "K90.0", "Celiac disease")), "Coeliac disease"),
    "gastroenteritis": (((ICD10CM, "A08.4", "Viral intestinal infection, unspecified"),), "Viral gastroenteritis"),
    "crohn": (((SNOMED, "34000006", "Crohn's disease"), (ICD10CM, "K50.90", "Crohn's disease, unspecified, without "
                                                           "complications")), "Crohn disease"),
    "ipex": (((SNOMED, "724276006", "Immune dysregulation, polyendocrinopathy, enteropathy, X-linked syndrome"),),
             "IPEX syndrome (FOXP3 variant)"),
    "ipex-like-lrba": ((), "IPEX-like disorder: LRBA deficiency"),
    # background
    "otitis": (((ICD10CM, "H66.90", "Otitis media, unspecified, unspecified ear"),), "Otitis media"),
    "asthma": (((ICD10CM, "J45.909", "Unspecified asthma, uncomplicated"),), "Asthma"),
    "hypertension": (((SNOMED, "38341003", "Hypertensive disorder"), (ICD10CM, "I10", "Essential (primary) "
                                                                                      "hypertension")),
                     "Hypertension"),
    "t2d": (((ICD10CM, "E11.9", "Type 2 diabetes mellitus without complications"),), "Type 2 diabetes mellitus"),
    "uri": (((ICD10CM, "J06.9", "Acute upper respiratory infection, unspecified"),), "Upper respiratory infection"),
    "obesity": (((ICD10CM, "E66.9", "Obesity, unspecified"),), "Obesity"),
    "kidney-transplant": (((ICD10CM, "Z94.0", "Kidney transplant status"),), "Kidney transplant recipient"),
    "nephrotic": (((ICD10CM, "N04.9", "Nephrotic syndrome with unspecified morphologic changes"),),
                  "Nephrotic syndrome"),
    "aml": (((ICD10CM, "C92.00", "Acute myeloblastic leukemia, not having achieved remission"),),
            "Acute myeloid leukaemia"),
}
BACKGROUND_CONDITIONS = ("otitis", "asthma", "uri", "obesity", "hypertension", "t2d")
# Common conditions that are also IPEX features: background noise the score must not rank high.
NOISE_CONDITIONS = ("eczema", "atopic-dermatitis", "hypothyroidism", "thyroiditis", "food-allergy", "t1d", "celiac",
                    "itp", "diarrhea", "short-stature", "lymphadenopathy", "ftt", "crohn")

# LOINC lab -> (code, display, UCUM unit)
LABS: dict[str, tuple[str, str, str]] = {
    "ige": ("19113-0", "IgE [Units/volume] in Serum", "[IU]/mL"),
    "eos": ("711-2", "Eosinophils [#/volume] in Blood by Automated count", "10*3/uL"),
    "hba1c": ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%"),
    "glucose": ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL"),
    "tsh": ("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L"),
    "platelets": ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL"),
    "tac-trough": ("11253-2", "Tacrolimus [Mass/volume] in Blood", "ng/mL"),
    "srl-trough": ("29247-4", "Sirolimus [Mass/volume] in Blood", "ng/mL"),
    "csa-trough": ("3520-4", "Cyclosporine [Mass/volume] in Blood", "ng/mL"),
    "creatinine": ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL"),
    "weight": ("29463-7", "Body weight", "kg"),
    "heart-rate": ("8867-4", "Heart rate", "/min"),
    "body-height": ("8302-2", "Body height", "cm"),
    "hemoglobin": ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL"),
}
ROUTINE = (("heart-rate", 60.0, 120.0), ("body-height", 50.0, 190.0), ("hemoglobin", 10.5, 16.0),
           ("platelets", 150.0, 420.0))

# drug -> (RxNorm code (ingredient), text, dose mg, frequency text)
DRUGS: dict[str, tuple[str, str, float, str]] = {
    "tacrolimus": ("42316", "tacrolimus", 1.0, "twice daily"),
    "sirolimus": ("35302", "sirolimus", 1.0, "once daily"),
    "cyclosporine": ("3008", "cyclosporine", 75.0, "twice daily"),
    "voriconazole": ("121243", "voriconazole", 150.0, "twice daily"),
    "posaconazole": ("282446", "posaconazole", 200.0, "three times daily"),
    # background medicines not in the knowledge base (text only: their codes are not needed here)
    "paracetamol": ("", "paracetamol 250 mg/5 mL oral suspension", 0.0, "as needed"),
    "salbutamol": ("", "salbutamol inhaler 100 micrograms per dose", 0.0, "as needed"),
    "amoxicillin": ("", "amoxicillin 250 mg/5 mL oral suspension", 0.0, "three times daily"),
    "insulin": ("", "insulin (basal-bolus)", 0.0, "as directed"),
    "levothyroxine": ("10582", "levothyroxine", 0.025, "once daily"),
    "amlodipine": ("", "amlodipine 5 mg tablet", 0.0, "once daily"),
}
VACCINES = {"mmr": ("03", "MMR (measles, mumps, rubella) live"), "dtap": ("20", "DTaP"),
            "influenza-inactivated": ("141", "Influenza, seasonal, injectable")}


@dataclass
class _Patient:
    pid: str
    group: str
    sex: str
    birth: dt.date
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {t: [] for t in RESOURCE_TYPES})
    n: int = 0

    def rid(self, prefix: str) -> str:
        self.n += 1
        return f"{self.pid}-{prefix}{self.n}"


class _Builder:
    def __init__(self, rng: random.Random, as_of: dt.date):
        self.rng = rng
        self.as_of = as_of

    def at_age(self, p: _Patient, years: float) -> dt.date:
        day = p.birth + dt.timedelta(days=max(1, int(years * 365.25)))
        return min(day, self.as_of - dt.timedelta(days=1))

    def condition(self, p: _Patient, key: str, onset_years: float, *, status: str = "active",
                  verification: str = "confirmed") -> None:
        codings, text = CONDITIONS[key]
        onset = self.at_age(p, onset_years)
        res: dict[str, Any] = {
            "resourceType": "Condition", "id": p.rid("c"),
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": status}]},
            "verificationStatus": {"coding": [{"system": VERIFICATION, "code": verification}]},
            "code": {"coding": [{"system": s, "code": c, "display": d} for s, c, d in codings], "text": text}
            if codings else {"text": text},
            "subject": {"reference": f"Patient/{p.pid}"},
            "onsetDateTime": onset.isoformat(),
            "recordedDate": onset.isoformat(),
        }
        p.rows["Condition"].append(res)

    def lab(self, p: _Patient, key: str, value: float, at_years: float | None = None,
            date: dt.date | None = None) -> None:
        code, display, unit = LABS[key]
        when = date or self.at_age(p, at_years if at_years is not None else 0.5)
        p.rows["Observation"].append({
            "resourceType": "Observation", "id": p.rid("o"), "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs" if key == "weight" else "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
            "subject": {"reference": f"Patient/{p.pid}"},
            "effectiveDateTime": when.isoformat(),
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        })

    def med(self, p: _Patient, drug: str, start: dt.date, *, kind: str = "MedicationRequest",
            dose_mg: float | None = None) -> None:
        rxcui, text, dose, freq = DRUGS[drug]
        concept: dict[str, Any] = {"text": text}
        if rxcui:
            concept["coding"] = [{"system": RXNORM, "code": rxcui, "display": text}]
        dosage: dict[str, Any] = {"text": freq}
        per_day = {"once daily": 1, "twice daily": 2, "three times daily": 3}.get(freq)
        if per_day:
            dosage["timing"] = {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}}
        if dose or dose_mg:
            dosage["doseAndRate"] = [{"doseQuantity": {"value": dose_mg or dose, "unit": "mg", "system": UCUM,
                                                        "code": "mg"}}]
        res: dict[str, Any] = {"resourceType": kind, "id": p.rid("m"), "status": "active",
                               "medicationCodeableConcept": concept, "subject": {"reference": f"Patient/{p.pid}"}}
        if kind == "MedicationRequest":
            res["intent"] = "order"
            res["authoredOn"] = start.isoformat()
            res["dosageInstruction"] = [dosage]
        else:
            res["effectivePeriod"] = {"start": start.isoformat()}
            res["dosage"] = [dosage]
        p.rows[kind].append(res)

    def vaccine(self, p: _Patient, key: str, date: dt.date) -> None:
        cvx, text = VACCINES[key]
        p.rows["Immunization"].append({
            "resourceType": "Immunization", "id": p.rid("i"), "status": "completed",
            "vaccineCode": {"coding": [{"system": CVX, "code": cvx, "display": text}], "text": text},
            "patient": {"reference": f"Patient/{p.pid}"}, "occurrenceDateTime": date.isoformat()})

    def procedure(self, p: _Patient, text: str, date: dt.date, code: tuple[str, str] | None = None) -> None:
        cc: dict[str, Any] = {"text": text}
        if code:
            cc["coding"] = [{"system": code[0], "code": code[1], "display": text}]
        p.rows["Procedure"].append({"resourceType": "Procedure", "id": p.rid("p"), "status": "completed", "code": cc,
                                    "subject": {"reference": f"Patient/{p.pid}"},
                                    "performedDateTime": date.isoformat()})

    def weight(self, p: _Patient) -> None:
        age = (self.as_of - p.birth).days / 365.25
        kg = round(3.5 + 2.6 * min(age, 16) + (max(0.0, age - 16) * 0.5 if age > 16 else 0), 1)
        self.lab(p, "weight", min(kg, 95.0), date=self.as_of - dt.timedelta(days=self.rng.randint(5, 60)))


# --- groups -------------------------------------------------------------------------------------------------


def _ipex_features(b: _Builder, p: _Patient, rng: random.Random, onset: float) -> None:
    """IPEX picture; frequencies roughly those of Gambineri 2018 (enteropathy 97 %, eczema 85 %, T1DM 49 %,
    FTT 75 %, raised IgE 92 %, thyroid 26 %, cytopenias 42 %, food allergy 36 %, renal 28 %)."""
    gut = rng.choice(["autoimmune-enteropathy", "intractable-diarrhea", "chronic-diarrhea"])
    if rng.random() < 0.97:
        b.condition(p, gut, onset)
    if rng.random() < 0.2:
        b.condition(p, "villous-atrophy", onset + 0.1)
    if rng.random() < 0.85:
        b.condition(p, rng.choice(["eczema", "atopic-dermatitis"]), onset + rng.uniform(0, 0.2))
    if rng.random() < 0.5:
        b.condition(p, "t1d", onset + rng.uniform(0, 0.6))
        b.lab(p, "hba1c", round(rng.uniform(7.5, 11.0), 1), onset + 0.7)
    if rng.random() < 0.75:
        b.condition(p, "ftt", onset + rng.uniform(0.1, 0.5))
    if rng.random() < 0.9:
        b.lab(p, "ige", float(rng.randint(600, 9000)), onset + 0.3)
    if rng.random() < 0.5:
        b.lab(p, "eos", round(rng.uniform(0.9, 4.0), 2), onset + 0.3)
    if rng.random() < 0.3:
        b.condition(p, rng.choice(["thyroiditis", "hypothyroidism"]), onset + rng.uniform(0.3, 2.0))
    if rng.random() < 0.42:
        b.condition(p, rng.choice(["aiha", "itp", "autoimmune-neutropenia"]), onset + rng.uniform(0.2, 3.0))
    if rng.random() < 0.36:
        b.condition(p, "food-allergy", onset + rng.uniform(0.2, 1.0))
    if rng.random() < 0.25:
        b.condition(p, "nephropathy", onset + rng.uniform(0.5, 4.0))


def _ipex(b: _Builder, p: _Patient, rng: random.Random, *, known: bool) -> None:
    onset = rng.uniform(0.0, 0.5)
    _ipex_features(b, p, rng, onset)
    b.weight(p)
    if known:
        b.condition(p, "ipex", onset + rng.uniform(0.3, 2.0))
        drug = rng.choice(["sirolimus", "tacrolimus"])
        start = b.at_age(p, onset + 1.0)
        b.med(p, drug, start)
        b.lab(p, "tac-trough" if drug == "tacrolimus" else "srl-trough", round(rng.uniform(5, 10), 1),
              date=b.as_of - dt.timedelta(days=rng.randint(10, 40)))
        b.lab(p, "creatinine", 0.3, date=b.as_of - dt.timedelta(days=rng.randint(10, 40)))


IPEX_LIKE_GENES = ("IL2RA", "STAT5B", "STAT1", "STAT3", "CTLA4", "LRBA")


def _ipex_like(b: _Builder, p: _Patient, rng: random.Random, gene: str) -> None:
    """Pictures from the knowledge base's IPEX-like entries (ipex_like.yaml) and the reference notes."""
    if gene == "IL2RA":
        onset = rng.uniform(0.1, 1.0)
        b.condition(p, "chronic-diarrhea", onset)
        b.condition(p, "eczema", onset + 0.1)
        b.condition(p, rng.choice(["t1d", "thyroiditis"]), onset + rng.uniform(0.2, 1.5))
        b.condition(p, "cmv", onset + 0.5)
        b.condition(p, "lymphadenopathy", onset + 1.0)
        if rng.random() < 0.6:
            b.condition(p, "aiha", onset + 1.5)
    elif gene == "STAT5B":
        onset = rng.uniform(1.0, 3.0)
        b.condition(p, "severe-short-stature", onset)
        b.condition(p, "eczema", onset - 0.5)
        b.condition(p, "lip", onset + 2.0)
        if rng.random() < 0.6:
            b.condition(p, "itp", onset + 1.0)
        if rng.random() < 0.5:
            b.condition(p, "thyroiditis", onset + 3.0)
    elif gene == "STAT1":
        onset = rng.uniform(1.0, 6.0)
        b.condition(p, "cmc", onset)
        b.condition(p, "hypothyroidism", onset + rng.uniform(0.5, 3.0))
        b.condition(p, "diarrhea", onset + 1.0)
        if rng.random() < 0.7:
            b.condition(p, "aiha", onset + 2.0)
        if rng.random() < 0.5:
            b.condition(p, "t1d", onset + 2.5)
    elif gene == "STAT3":
        onset = rng.uniform(0.3, 3.0)
        b.condition(p, "t1d", onset)
        b.condition(p, "short-stature", onset + 1.0)
        b.condition(p, rng.choice(["aiha", "itp"]), onset + 0.5)
        b.condition(p, "lymphadenopathy", onset + 1.5)
        if rng.random() < 0.6:
            b.condition(p, "celiac", onset + 1.0)
        if rng.random() < 0.5:
            b.condition(p, "thyroiditis", onset + 2.0)
    elif gene == "CTLA4":
        onset = rng.uniform(4.0, 12.0)
        b.condition(p, "hypogammaglobulinemia", onset)
        b.condition(p, "aiha", onset + 0.5)
        b.condition(p, "itp", onset + 1.0)
        b.condition(p, "chronic-diarrhea", onset + 1.0)
        b.condition(p, rng.choice(["lymphadenopathy", "splenomegaly"]), onset + 0.2)
    else:  # LRBA
        onset = rng.uniform(1.0, 6.0)
        b.condition(p, "chronic-diarrhea", onset)
        b.condition(p, "aiha", onset + 1.0)
        b.condition(p, "itp", onset + 1.2)
        b.condition(p, "hypogammaglobulinemia", onset + 0.5)
        b.condition(p, "splenomegaly", onset + 2.0)
        if rng.random() < 0.4:
            b.condition(p, "t1d", onset + 2.0)
    b.weight(p)


LOOKALIKES = ("celiac", "t1d-teen", "gastroenteritis", "atopic-dermatitis", "ibd-teen")


def _lookalike(b: _Builder, p: _Patient, rng: random.Random, kind: str) -> None:
    if kind == "celiac":
        b.condition(p, "celiac", rng.uniform(2.0, 12.0))
    elif kind == "t1d-teen":
        onset = rng.uniform(12.0, 17.0)
        b.condition(p, "t1d", onset)
        b.lab(p, "hba1c", round(rng.uniform(7.0, 10.0), 1), onset + 0.1)
        b.med(p, "insulin", b.at_age(p, onset + 0.05), kind="MedicationStatement")
    elif kind == "gastroenteritis":
        onset = rng.uniform(0.3, 2.0)
        b.condition(p, "gastroenteritis", onset, status="resolved")
        b.condition(p, "diarrhea", onset, status="resolved")
    elif kind == "atopic-dermatitis":
        b.condition(p, "atopic-dermatitis", rng.uniform(0.2, 2.0))
    else:  # ibd-teen
        onset = rng.uniform(14.0, 16.5)
        b.condition(p, "crohn", onset)
        b.condition(p, "diarrhea", onset - 0.2)
    b.weight(p)


UNSAFE = ("tacrolimus+voriconazole", "sirolimus+posaconazole", "live-vaccine-on-cni", "tacrolimus-no-trough")


def _unsafe(b: _Builder, p: _Patient, rng: random.Random, kind: str) -> None:
    reason = rng.choice(["kidney-transplant", "nephrotic", "aml"])
    b.condition(p, reason, max(0.5, ((b.as_of - p.birth).days / 365.25) - 2))
    start = b.as_of - dt.timedelta(days=rng.randint(90, 400))
    recent = b.as_of - dt.timedelta(days=rng.randint(5, 30))
    b.weight(p)
    if kind == "tacrolimus+voriconazole":
        b.med(p, "tacrolimus", start)
        b.med(p, "voriconazole", recent)
        b.lab(p, "tac-trough", round(rng.uniform(6, 12), 1), date=recent)
    elif kind == "sirolimus+posaconazole":
        b.med(p, "sirolimus", start)
        b.med(p, "posaconazole", recent)
        b.lab(p, "srl-trough", round(rng.uniform(6, 12), 1), date=recent)
    elif kind == "live-vaccine-on-cni":
        b.med(p, "cyclosporine", start, kind="MedicationStatement")
        b.vaccine(p, "mmr", recent)
        b.lab(p, "csa-trough", round(rng.uniform(100, 200), 0), date=recent)
    else:
        b.med(p, "tacrolimus", start)
    b.lab(p, "creatinine", round(rng.uniform(0.3, 1.2), 2), date=recent)


def _routine(b: _Builder, p: _Patient, rng: random.Random, mean: int) -> None:
    """Unremarkable routine observations (vital signs, blood counts), ``mean`` per patient on average:
    Bulk Data exports are mostly Observations, and the reader must wade through them."""
    for _ in range(rng.randint(0, 2 * mean) if mean else 0):
        key, low, high = rng.choice(ROUTINE)
        b.lab(p, key, round(rng.uniform(low, high), 1),
              date=b.as_of - dt.timedelta(days=rng.randint(1, max(2, (b.as_of - p.birth).days))))


def _background(b: _Builder, p: _Patient, rng: random.Random) -> None:
    age = (b.as_of - p.birth).days / 365.25
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        key = rng.choice(BACKGROUND_CONDITIONS)
        if key in ("hypertension", "t2d") and age < 30:
            key = "uri"
        b.condition(p, key, rng.uniform(0.0, age))
    noise = rng.random()
    if noise < 0.2:  # one common condition that is also an IPEX feature, at any age
        b.condition(p, rng.choice(NOISE_CONDITIONS), rng.uniform(0.0, age))
    if noise < 0.02:  # two of them (autoimmune thyroid disease with type 1 diabetes, eczema with food allergy...)
        b.condition(p, rng.choice(NOISE_CONDITIONS), rng.uniform(0.0, age))
    if rng.random() < 0.3:
        b.med(p, rng.choice(["paracetamol", "salbutamol", "amoxicillin", "amlodipine"]),
              b.as_of - dt.timedelta(days=rng.randint(1, 300)), kind=rng.choice(["MedicationRequest",
                                                                                  "MedicationStatement"]))
    if rng.random() < 0.3:
        b.lab(p, "platelets", float(rng.randint(160, 420)), date=b.as_of - dt.timedelta(days=rng.randint(1, 900)))
    if rng.random() < 0.15:
        b.lab(p, "glucose", float(rng.randint(70, 115)), date=b.as_of - dt.timedelta(days=rng.randint(1, 900)))
    if age < 6 and rng.random() < 0.5:
        b.vaccine(p, "dtap", b.at_age(p, 0.2))
    if rng.random() < 0.2:
        b.vaccine(p, "influenza-inactivated", b.as_of - dt.timedelta(days=rng.randint(1, 300)))
    if rng.random() < 0.1:
        b.procedure(p, "Appendectomy", b.at_age(p, rng.uniform(0, age)), (SNOMED, "80146002"))
    if rng.random() < 0.5:
        b.weight(p)


# --- plan ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthPlan:
    """How many patients of each group; the rest are background."""

    ipex: int
    ipex_known: int
    ipex_like: int
    lookalikes: int
    unsafe: int

    @classmethod
    def for_size(cls, n: int) -> SynthPlan:
        if n < 60:
            raise ValueError(f"a synthetic population needs at least 60 patients, got {n}")
        scale = n / 1000
        return cls(ipex=max(8, round(4 * scale)), ipex_known=max(3, round(1 * scale)),
                   ipex_like=max(6, round(4 * scale)), lookalikes=max(15, round(30 * scale)),
                   unsafe=max(8, round(4 * scale)))


@dataclass(frozen=True)
class SynthTruth:
    patient: str
    # ipex | ipex-known | ipex-like:<GENE> | ipex-like-known:<GENE> | lookalike:<kind> | unsafe:<kind> | background
    group: str
    sex: str
    birth_date: str


def _groups(plan: SynthPlan, n: int) -> list[str]:
    groups = (["ipex"] * plan.ipex + ["ipex-known"] * plan.ipex_known
              + [f"ipex-like:{IPEX_LIKE_GENES[i % len(IPEX_LIKE_GENES)]}" for i in range(plan.ipex_like)]
              + ["ipex-like-known:LRBA"]
              + [f"lookalike:{LOOKALIKES[i % len(LOOKALIKES)]}" for i in range(plan.lookalikes)]
              + [f"unsafe:{UNSAFE[i % len(UNSAFE)]}" for i in range(plan.unsafe)])
    if len(groups) > n:
        raise ValueError(f"{n} patients cannot hold the {len(groups)} planned cases")
    return groups + ["background"] * (n - len(groups))


def _age_and_sex(group: str, rng: random.Random) -> tuple[float, str]:
    if group in ("ipex", "ipex-known"):
        return rng.uniform(0.8, 14.0), "male"
    if group.startswith("ipex-like"):
        gene = group.split(":")[1]
        sex = "female" if rng.random() < 0.6 else "male"
        low = 14.0 if gene == "CTLA4" else 4.0
        return rng.uniform(low, low + 12.0), sex
    if group.startswith("lookalike:"):
        kind = group.split(":")[1]
        low = {"celiac": 12.5, "t1d-teen": 17.5, "gastroenteritis": 2.5, "atopic-dermatitis": 2.5,
               "ibd-teen": 17.0}[kind]
        sex = "male" if kind in ("atopic-dermatitis", "gastroenteritis") else rng.choice(["male", "female"])
        return rng.uniform(low, low + 8.0), sex
    if group.startswith("unsafe:"):
        return rng.uniform(3.0, 70.0), rng.choice(["male", "female"])
    return rng.uniform(0.1, 90.0), rng.choice(["male", "female"])


def _build(group: str, pid: str, rng: random.Random, as_of: dt.date, routine: int) -> _Patient:
    age, sex = _age_and_sex(group, rng)
    birth = as_of - dt.timedelta(days=int(age * 365.25))
    p = _Patient(pid=pid, group=group, sex=sex, birth=birth)
    p.rows["Patient"].append({"resourceType": "Patient", "id": pid, "gender": sex, "birthDate": birth.isoformat(),
                              "meta": {"tag": [{"system": "urn:ipexrx:synthetic", "code": "synthetic",
                                                "display": "synthetic test patient (not a real person)"}]}})
    b = _Builder(rng, as_of)
    kind = group.split(":", 1)[1] if ":" in group else ""
    if group == "ipex":
        _ipex(b, p, rng, known=False)
    elif group == "ipex-known":
        _ipex(b, p, rng, known=True)
    elif group.startswith("ipex-like-known:"):
        _ipex_like(b, p, rng, kind)
        b.condition(p, "ipex-like-lrba", (age - 1.0))
    elif group.startswith("ipex-like:"):
        _ipex_like(b, p, rng, kind)
    elif group.startswith("lookalike:"):
        _lookalike(b, p, rng, kind)
    elif group.startswith("unsafe:"):
        _unsafe(b, p, rng, kind)
    else:
        _background(b, p, rng)
    _routine(b, p, rng, routine)
    return p


def generate(out_dir: Path | str, patients: int, seed: int = 1, *, as_of: dt.date = DEFAULT_AS_OF,
             gzip_types: tuple[str, ...] = (), bad_lines: int = 0, routine_observations: int = 4,
             progress: Callable[[int], None] | None = None) -> list[SynthTruth]:
    """Write a population to ``out_dir`` (one ``<Type>.ndjson`` per resource type, ``.ndjson.gz`` for the
    types in ``gzip_types``) and ``synth-truth.csv``; returns the truth table.

    ``bad_lines`` malformed lines (a truncated JSON object, a line that is not JSON) are inserted at
    seeded positions of the Condition and Observation files, to exercise the reader's reporting.
    ``routine_observations``: mean number of unremarkable Observations per patient (vital signs, counts).
    """
    unknown = [t for t in gzip_types if t not in RESOURCE_TYPES]
    if unknown:
        raise ValueError(f"gzip_types: unknown resource type(s) {', '.join(unknown)}; expected some of "
                         f"{', '.join(RESOURCE_TYPES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    groups = _groups(SynthPlan.for_size(patients), patients)
    rng.shuffle(groups)
    handles: dict[str, IO[bytes]] = {}
    for t in RESOURCE_TYPES:
        for stale in (out / f"{t}.ndjson", out / f"{t}.ndjson.gz"):
            stale.unlink(missing_ok=True)
        path = out / (f"{t}.ndjson.gz" if t in gzip_types else f"{t}.ndjson")
        handles[t] = gzip.GzipFile(path, "wb", mtime=0) if t in gzip_types else path.open("wb")  # type: ignore[assignment]
    bad_types = ("Condition", "Observation")
    bad_at = {idx: bad_types[k % 2] for k, idx in enumerate(rng.sample(range(patients), min(bad_lines, patients)))}
    truth: list[SynthTruth] = []
    try:
        for i, group in enumerate(groups):
            pid = f"p{i + 1:06d}"
            p = _build(group, pid, random.Random(rng.getrandbits(64)), as_of, routine_observations)
            truth.append(SynthTruth(pid, group, p.sex, p.birth.isoformat()))
            for t in RESOURCE_TYPES:
                for res in p.rows[t]:
                    handles[t].write(orjson.dumps(res) + b"\n")
            if i in bad_at:
                t = bad_at[i]
                if t == "Condition":  # a truncated object (an export cut short)
                    handles[t].write(b'{"resourceType": "Condition", "id": "broken-' + pid.encode()
                                     + b'", "subject": {"reference": "Patient/' + pid.encode() + b'"\n')
                else:  # not JSON at all
                    handles[t].write(b"<html>502 Bad Gateway</html>\n")
            if progress is not None and (i + 1) % 1000 == 0:
                progress(i + 1)
    finally:
        for h in handles.values():
            h.close()
    with (out / "synth-truth.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["patient", "group", "sex", "birth_date"])
        for row in truth:
            w.writerow([row.patient, row.group, row.sex, row.birth_date])
    return truth


def read_truth(directory: Path | str) -> dict[str, str]:
    """Patient id -> group, from ``synth-truth.csv``."""
    with (Path(directory) / "synth-truth.csv").open(encoding="utf-8") as fh:
        return {row["patient"]: row["group"] for row in csv.DictReader(fh)}
