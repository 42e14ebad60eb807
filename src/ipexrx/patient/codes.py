"""SNOMED CT and ICD-10 codes of conditions -> knowledge-base manifestation ids.

Why: the knowledge base codes manifestations with HPO only, while EHR Conditions usually carry
SNOMED CT or ICD-10. This small table covers the IPEX manifestations whose codes are unambiguous;
ICD-10 entries match the code and its subcodes (``E10`` covers ``E10.9``). A target id that is not
in the loaded knowledge base is ignored, and a condition no code or name maps is reported as a
warning, never guessed. Codes were checked against published SNOMED/ICD-10 mapping tables.
"""

from __future__ import annotations

ICD10: dict[str, str] = {
    "E10": "type-1-diabetes",          # Type 1 diabetes mellitus
    "E03": "hypothyroidism",           # Other hypothyroidism (E03.9 unspecified)
    "E05": "hyperthyroidism",          # Thyrotoxicosis [hyperthyroidism]
    "E06.3": "autoimmune-thyroiditis",  # Autoimmune thyroiditis
    "D59.1": "autoimmune-hemolytic-anemia",  # Other autoimmune haemolytic anaemias
    "D69.3": "thrombocytopenia",       # Immune thrombocytopenic purpura
    "D69.6": "thrombocytopenia",       # Thrombocytopenia, unspecified
    "D70": "neutropenia",              # Agranulocytosis / neutropenia
    "L20": "dermatitis",               # Atopic dermatitis
    "L30.9": "dermatitis",             # Dermatitis, unspecified
    "R62.51": "failure-to-thrive",     # Failure to thrive (child), ICD-10-CM
}
SNOMED: dict[str, str] = {
    "46635009": "type-1-diabetes",     # Diabetes mellitus type 1
    "40930008": "hypothyroidism",      # Hypothyroidism
    "34486009": "hyperthyroidism",     # Hyperthyroidism
    "43116000": "dermatitis",          # Eczema
    "24079001": "dermatitis",          # Atopic dermatitis
}


def manifestation_for_code(system: str | None, code: str | None) -> str | None:
    """KB manifestation id for a SNOMED CT or ICD-10 code, or None."""
    if not system or not code:
        return None
    code = code.strip().upper()
    if "snomed" in system:
        return SNOMED.get(code)
    if "icd-10" in system or "icd10" in system:
        parts = code.split(".")
        for candidate in (code, parts[0] + "." + parts[1][:1] if len(parts) > 1 else None, parts[0]):
            if candidate and candidate in ICD10:
                return ICD10[candidate]
    return None
