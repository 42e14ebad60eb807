"""The lab catalogue: which tests we recognise, their units, and which monitoring parameter they satisfy.

Why a catalogue: a patient's "TAC C0", a LOINC 11253-2 Observation and "tacrolimus trough" are the
same thing to the monitoring rule, and the knowledge base speaks in ``LabParameter`` terms
(``trough``, ``creatinine``, ``thyroid``...). Each test maps to exactly one quantity (for its
units) and to the parameters it counts for. LOINC codes listed here were checked against LOINC
tables; tests without a confidently known code are matched by name only.

Plausibility limits (``plausible``) are wide physiological bounds in the canonical unit. They
exist only to catch corrupted data (a creatinine of 90,000 umol/L is a unit or typing error),
never to judge a result clinically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from ..knowledge.schema import LabParameter as P

QUALITATIVE = "qualitative"
POSITIVE_WORDS = {"positive", "pos", "reactive", "detected", "present", "+"}
NEGATIVE_WORDS = {"negative", "neg", "non-reactive", "nonreactive", "not detected", "absent", "-"}
INDETERMINATE_WORDS = {"indeterminate", "equivocal", "borderline", "inconclusive"}


@dataclass(frozen=True)
class LabKind:
    id: str
    label: str
    quantity: str  # a key of units.QUANTITIES, or "qualitative"
    parameters: tuple[P, ...]
    names: tuple[str, ...] = ()
    loinc: tuple[str, ...] = ()
    drug: str | None = None  # for drug concentrations: the KB drug id
    plausible: tuple[float, float] | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _trough(drug: str, loinc: tuple[str, ...], extra_names: tuple[str, ...] = ()) -> LabKind:
    return LabKind(
        id=f"{drug}-trough", label=f"{drug} trough (whole blood)", quantity="drug-concentration",
        parameters=(P.TROUGH,), drug=drug, loinc=loinc, plausible=(0.0, 5000.0),
        names=(f"{drug} trough", f"{drug} level", f"{drug} concentration", f"{drug} c0", drug) + extra_names,
    )


# Whole-blood drug-level LOINC codes (checked on loinc.org pages or LOINC-table mirrors, 2026-12-05):
#   tacrolimus 11253-2 [Mass/volume] in Blood; 77348-1 in Blood, trough (LC-MS/MS: Mayo Clinic
#   Laboratories report their LC-MS/MS tacrolimus under it); 74096-9 in Blood by Immunoassay;
#   80550-7 in dried blood spot (capillary whole blood on filter paper).
#   cyclosporine 3520-4 [Mass/volume] in Blood; 14978-1 in Blood by Immunoassay; 78920-6
#   [Moles/volume] in Blood by Immunoassay (nmol/L: needs the molar mass). Not mapped: 53573-2
#   (post-dose C2, not a trough) and 3521-2 / 15103-5 (serum, a matrix the ranges do not use).
#   sirolimus 29247-4 [Mass/volume] in Blood. everolimus 77349-9 in Blood by LC/MS/MS, trough.
# A code a lab labels "trough" and a code for a random draw both land here: the rules compare
# the latest level with trough ranges, and the alert shows the LOINC-coded result as read.
LAB_KINDS: tuple[LabKind, ...] = (
    _trough("tacrolimus", ("11253-2", "77348-1", "74096-9", "80550-7"), ("tac trough", "fk506 level", "tac c0")),
    _trough("cyclosporine", ("3520-4", "14978-1", "78920-6"),
            ("csa trough", "ciclosporin trough", "ciclosporin level", "csa c0")),
    _trough("sirolimus", ("29247-4",), ("srl trough", "rapamycin level", "srl c0")),
    _trough("everolimus", ("77349-9",), ("evl trough", "certican level", "evl c0")),
    LabKind("creatinine", "creatinine (serum/plasma)", "creatinine", (P.CREATININE,),
            ("creatinine", "serum creatinine", "creat", "scr"), ("2160-0", "14682-9", "38483-4"), plausible=(1, 3000)),
    # Estimated GFR reported by the laboratory (MDRD 33914-3, CKD-EPI 62238-1, CKD-EPI 2021 98979-8); it
    # counts for creatinine monitoring and its fall from baseline is judged when creatinine cannot be.
    LabKind("egfr", "estimated GFR", "gfr", (P.CREATININE,), ("egfr", "estimated gfr", "gfr", "estimated glomerular "
            "filtration rate"), ("33914-3", "62238-1", "98979-8"), plausible=(1, 250)),
    LabKind("bun", "urea nitrogen", "bun", (P.BUN,), ("bun", "urea nitrogen", "blood urea nitrogen"), ("3094-0",),
            plausible=(0, 300)),
    LabKind("glucose", "glucose", "glucose", (P.GLUCOSE,),
            ("glucose", "blood glucose", "plasma glucose", "random glucose"),
            ("2345-7", "2339-0", "14749-6", "15074-8"),
            plausible=(0.1, 100)),
    # Fasting glucose is its own kind: the diabetes criterion (>= 7.0 mmol/L) holds only for a fasting sample.
    LabKind("fasting-glucose", "fasting glucose", "glucose", (P.GLUCOSE,),
            ("fasting glucose", "fasting blood glucose", "fasting plasma glucose", "fpg", "fbg"),
            ("1558-6", "77145-1"), plausible=(0.1, 100)),
    LabKind("hba1c", "HbA1c", "hba1c", (P.HBA1C, P.GLUCOSE), ("hba1c", "a1c", "hemoglobin a1c", "glycated hemoglobin"),
            ("4548-4", "17856-6", "59261-8"), plausible=(2, 25)),
    LabKind("tsh", "TSH", "tsh", (P.THYROID,), ("tsh", "thyrotropin", "thyroid stimulating hormone"),
            ("3016-3", "11580-8"), plausible=(0, 1000)),
    LabKind("free-t4", "free T4", "free-t4", (P.THYROID,), ("free t4", "ft4", "free thyroxine", "thyroxine free"),
            ("3024-7", "14920-3"), plausible=(0, 500)),
    LabKind("cholesterol", "total cholesterol", "cholesterol", (P.LIPIDS,),
            ("cholesterol", "total cholesterol", "chol"), ("2093-3", "14647-2"), plausible=(0.1, 50)),
    LabKind("triglycerides", "triglycerides", "triglycerides", (P.LIPIDS,), ("triglycerides", "tg", "triglyceride"),
            ("2571-8", "14927-8"), plausible=(0.01, 200)),
    LabKind("neutrophils", "absolute neutrophil count", "cell-count", (P.NEUTROPHILS, P.CBC),
            ("neutrophils", "anc", "absolute neutrophil count", "neutrophil count"), ("751-8", "26499-4", "753-4"),
            plausible=(0, 200)),
    LabKind("platelets", "platelet count", "cell-count", (P.PLATELETS, P.CBC), ("platelets", "plt", "platelet count"),
            ("777-3", "26515-7"), plausible=(0, 5000)),
    LabKind("lymphocytes", "absolute lymphocyte count", "cell-count", (P.CBC,),
            ("lymphocytes", "alc", "absolute lymphocyte count", "lymphocyte count"), ("731-0", "30364-4"),
            plausible=(0, 500)),
    LabKind("wbc", "white cell count", "cell-count", (P.CBC,), ("wbc", "white blood cells", "leukocytes",
            "white cell count"), ("6690-2", "26464-8"), plausible=(0, 1000)),
    LabKind("hemoglobin", "hemoglobin", "hemoglobin", (P.CBC,), ("hemoglobin", "haemoglobin", "hb", "hgb"),
            ("718-7",), plausible=(1, 30)),
    LabKind("potassium", "potassium", "electrolyte", (P.POTASSIUM,), ("potassium", "serum potassium"),
            ("2823-3", "6298-4"),
            plausible=(0.5, 15)),
    LabKind("magnesium", "magnesium", "magnesium", (P.MAGNESIUM,), ("magnesium", "serum magnesium"),
            ("19123-9", "2601-3"),
            plausible=(0.05, 10)),
    LabKind("alt", "ALT", "enzyme", (P.LIVER,), ("alt", "alanine aminotransferase", "sgpt"), ("1742-6",),
            plausible=(0, 50000)),
    LabKind("ast", "AST", "enzyme", (P.LIVER,), ("ast", "aspartate aminotransferase", "sgot"), ("1920-8",),
            plausible=(0, 50000)),
    LabKind("bilirubin", "total bilirubin", "bilirubin", (P.LIVER,), ("bilirubin", "total bilirubin"), ("1975-2",),
            plausible=(0, 2000)),
    LabKind("urine-protein", "urine protein", "urine-protein", (P.URINE_PROTEIN,), ("urine protein", "proteinuria"),
            ("2888-6",), plausible=(0, 10000)),
    LabKind("urine-pcr", "urine protein/creatinine ratio", "protein-creatinine-ratio", (P.URINE_PROTEIN,),
            ("urine protein/creatinine ratio", "upcr", "uprot/cr", "protein creatinine ratio", "urine pcr"),
            ("2890-2",), plausible=(0, 50000)),
    LabKind("igg", "IgG", "immunoglobulin", (P.IMMUNOGLOBULINS,), ("igg", "immunoglobulin g"), ("2465-3",),
            plausible=(0, 100)),
    LabKind("systolic-bp", "systolic blood pressure", "pressure", (P.BLOOD_PRESSURE,),
            ("systolic blood pressure", "systolic bp", "sbp", "blood pressure systolic"), ("8480-6",),
            plausible=(30, 300)),
    LabKind("diastolic-bp", "diastolic blood pressure", "pressure", (P.BLOOD_PRESSURE,),
            ("diastolic blood pressure", "diastolic bp", "dbp", "blood pressure diastolic"), ("8462-4",),
            plausible=(10, 250)),
    LabKind("hbsag", "HBsAg", QUALITATIVE, (P.HBV,), ("hbsag", "hepatitis b surface antigen", "hbs ag"), ("5196-1",)),
    LabKind("anti-hbc", "anti-HBc", QUALITATIVE, (P.HBV,),
            ("anti-hbc", "anti hbc", "hbcab", "hepatitis b core antibody", "hbc ab"), ("16933-4", "13952-7")),
    LabKind("anti-hbs", "anti-HBs", QUALITATIVE, (), ("anti-hbs", "hbsab", "hepatitis b surface antibody"), ()),
    LabKind("igra", "interferon-gamma release assay (TB)", QUALITATIVE, (P.TB,),
            ("igra", "quantiferon", "quantiferon-tb", "t-spot", "t-spot.tb", "interferon gamma release assay"),
            ("71773-6",)),
    LabKind("tst", "tuberculin skin test", QUALITATIVE, (P.TB,),
            ("tst", "tuberculin skin test", "mantoux", "ppd"), ()),
)

_BY_ID = {k.id: k for k in LAB_KINDS}
_BY_LOINC = {code: k for k in LAB_KINDS for code in k.loinc}
_BY_NAME: dict[str, LabKind] = {}
for _k in LAB_KINDS:
    for _n in (_k.id, _k.label, *_k.names):
        _BY_NAME.setdefault(_n.lower(), _k)

# Screening test names in the knowledge base (Screening.tests) -> lab kinds that satisfy them.
SCREENING_TESTS: dict[str, tuple[str, ...]] = {
    "hbsag": ("hbsag",),
    "anti-hbc": ("anti-hbc",),
    "hbcab": ("anti-hbc",),
    "anti-hbs": ("anti-hbs",),
    "igra": ("igra",),
    "interferon-gamma release assay": ("igra",),
    "tuberculin skin test": ("tst",),
    "tst": ("tst",),
    "igra or tst": ("igra", "tst"),
    "tst or igra": ("igra", "tst"),
}


def _key(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower().replace("_", " "))


def lab_by_id(lab_id: str) -> LabKind | None:
    return _BY_ID.get(lab_id)


def lab_by_loinc(code: str) -> LabKind | None:
    return _BY_LOINC.get(code.strip())


def lab_by_name(name: str) -> LabKind | None:
    """Exact (case/space-insensitive) name or synonym; no fuzzy matching for lab identity."""
    return _BY_NAME.get(_key(name))


@lru_cache(maxsize=1024)
def kinds_for_parameter(param: P, drug: str | None = None) -> tuple[LabKind, ...]:
    """The lab kinds whose results count for a monitoring parameter (troughs: of that drug only).
    Cached: the lab kinds are fixed at import, and the rules ask this dozens of times per chart."""
    return tuple(k for k in LAB_KINDS if param in k.parameters and (param is not P.TROUGH or k.drug == drug))


def kinds_for_screening_test(test: str) -> tuple[LabKind, ...] | None:
    """Lab kinds satisfying a KB screening test name; None when the name is not recognised."""
    key = _key(test)
    ids = SCREENING_TESTS.get(key)
    if ids is None:
        k = lab_by_name(key)
        return (k,) if k else None
    return tuple(_BY_ID[i] for i in ids)


def parse_qualitative(value: object) -> str | None:
    """'positive' / 'negative' / 'indeterminate' from common spellings; None if not recognisable."""
    if isinstance(value, bool):
        return "positive" if value else "negative"
    if not isinstance(value, str):
        return None
    v = _key(value)
    if v in POSITIVE_WORDS:
        return "positive"
    if v in NEGATIVE_WORDS:
        return "negative"
    if v in INDETERMINATE_WORDS:
        return "indeterminate"
    return None
