"""What the sandbox's chart lets a user order: products and vaccines from the knowledge base.

Each choice becomes a draft ``MedicationRequest`` coded as an EHR would code it: a medicine by
the RxNorm concept of its product (the knowledge base's first SCD/SBD code for that product), a
vaccine by its CVX code. The dose is entered with an explicit unit; vaccines take no dose here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
# (drug id, product id) in the order shown; anything missing from the knowledge base is left out.
PRODUCTS = (("tacrolimus", "tacrolimus-ir-capsule"), ("sirolimus", "sirolimus-tablet"),
            ("cyclosporine", "cyclosporine-modified-capsule"), ("mycophenolate", "mycophenolate-mofetil-tablet"),
            ("prednisolone", "prednisolone-tablet"), ("voriconazole", "voriconazole-tablet"),
            ("fluconazole", "fluconazole-tablet"), ("clarithromycin", "clarithromycin-tablet"),
            ("rituximab", "rituximab-iv-vial"))
VACCINES = ("measles-mumps-rubella", "varicella", "rotavirus")
FREQUENCIES = {"1": "once a day", "2": "twice a day", "3": "three times a day"}
DOSE_UNITS = ("mg", "mg/kg")


@dataclass(frozen=True)
class Orderable:
    key: str  # the form value
    label: str  # what the list shows
    coding: dict[str, str]
    vaccine: bool
    route: str


def orderables() -> list[Orderable]:
    from ...knowledge import get_kb

    kb = get_kb()
    out = []
    for drug_id, product_id in PRODUCTS:
        drug = kb.drugs.get(drug_id)
        product = next((p for p in drug.products if p.id == product_id), None) if drug else None
        if drug is None or product is None or not product.rxnorm:
            continue
        code = product.rxnorm[0]
        out.append(Orderable(f"product:{product_id}", code.name,
                             {"system": RXNORM, "code": code.code, "display": code.name}, False, product.route))
    for vid in VACCINES:
        vac = kb.vaccines.get(vid)
        if vac is None or not vac.cvx:
            continue
        out.append(Orderable(f"vaccine:{vid}", f"{vac.name}{' (live vaccine)' if vac.live else ''}",
                             {"system": CVX, "code": vac.cvx[0], "display": vac.name}, True, "im"))
    return out


class OrderInputError(ValueError):
    """The order form held something unusable (the message says what was expected)."""


def draft_order(choice: str, dose: str, unit: str, frequency: str, patient: str, draft_id: str) -> dict[str, Any]:
    """A draft MedicationRequest for the chosen product or vaccine. Raises OrderInputError."""
    found = next((o for o in orderables() if o.key == choice), None)
    if found is None:
        raise OrderInputError("Choose a medicine or vaccine from the list.")
    res: dict[str, Any] = {"resourceType": "MedicationRequest", "id": draft_id, "status": "draft", "intent": "order",
                           "subject": {"reference": f"Patient/{patient}"},
                           "medicationCodeableConcept": {"coding": [found.coding], "text": found.coding["display"]}}
    if found.vaccine:
        res["dosageInstruction"] = [{"text": "one dose"}]
        return res
    try:
        value = float(dose)
    except ValueError:
        raise OrderInputError(f"The dose must be a number (e.g. 0.5); got “{dose[:20]}”.") from None
    if not 0 < value <= 10_000:
        raise OrderInputError(f"The dose must be more than 0 and at most 10000; got {dose[:20]}.")
    if unit not in DOSE_UNITS:
        raise OrderInputError(f"The dose unit must be one of {', '.join(DOSE_UNITS)}; got “{unit[:20]}”.")
    if frequency not in FREQUENCIES:
        raise OrderInputError("Choose how often the dose is given (once, twice or three times a day).")
    quantity = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    res["dosageInstruction"] = [{"text": f"{value:g} {unit} {FREQUENCIES[frequency]}",
                                 "timing": {"repeat": {"frequency": int(frequency), "period": 1, "periodUnit": "d"}},
                                 "doseAndRate": [{"doseQuantity": quantity}]}]
    return res


def describe(resource: dict[str, Any]) -> str:
    """A draft or signed order in words: what, and the dose as written."""
    cc = resource.get("medicationCodeableConcept") or {}
    what = cc.get("text") or next((c.get("display") for c in cc.get("coding") or [] if c.get("display")),
                                  "unnamed medicine")
    doses = [str(d["text"]) for d in resource.get("dosageInstruction") or [] if isinstance(d, dict) and d.get("text")]
    return f"{what}: {'; '.join(doses)}" if doses else str(what)
