"""Concentration units for dosing inputs: one conversion path for the CLI, NM-TRAN CSV, FHIR and the API.

A level arrives with a unit string; it is compared case-insensitively after the same light normalisation the
patient layer uses (micro sign, ``mcg``, UCUM brackets), so ``ng/mL`` = ``ng/ml`` = ``ug/L`` = ``µg/L`` =
``mcg/L`` and ``mg/L`` = 1000 ng/mL. Molar units (nmol/L, pmol/mL, pmol/L, umol/L) are converted with the
drug's molar mass from the knowledge base (``Drug.molar_mass``: tacrolimus 804.0, sirolimus 914.2,
cyclosporine 1202.6 g/mol; ng/mL = nmol/L x M / 1000). A unit outside these tables, or a molar unit for a drug
without a molar mass, is a :class:`DataError` naming what was expected and what arrived. Nothing is guessed.
"""

from __future__ import annotations

from functools import lru_cache

from ..patient.units import MOLAR_UNITS, QUANTITIES, norm_unit
from .data import Subject
from .errors import DataError
from .model import CompiledModel

# mass-concentration units -> ng/mL (the same table as the patient layer's "drug-concentration" quantity)
_MASS_TO_NGML: dict[str, float] = {u: QUANTITIES["drug-concentration"].convert[u](1.0)
                                   for u in QUANTITIES["drug-concentration"].convert}
ACCEPTED_TEXT = "ng/mL (= ng/ml, ug/L, µg/L, mcg/L) or mg/L"
MOLAR_TEXT = "nmol/L, pmol/mL, pmol/L or umol/L"


@lru_cache(maxsize=32)
def molar_mass(drug: str) -> float | None:
    """g/mol of ``drug`` from the knowledge base (``drugs/<id>.yaml`` ``molar_mass``), or None."""
    key = drug.strip().lower()
    try:
        from ..knowledge import get_kb

        kb = get_kb()
    except Exception:  # a KB that fails to load must not hide a unit error behind another error
        return None
    d = kb.drugs.get(key)
    return d.molar_mass if d is not None else None


def factor_to(unit: str, target_unit: str, drug: str, where: str = "level") -> float:
    """Multiplier taking a concentration in ``unit`` to ``target_unit`` (a model's output unit)."""
    if unit is None or not str(unit).strip():
        raise DataError(f"{where}: no unit given; expected {ACCEPTED_TEXT}, or {MOLAR_TEXT}")
    tgt = norm_unit(target_unit)
    if tgt not in _MASS_TO_NGML:
        raise DataError(f"{where}: the model predicts in {target_unit!r}, which is not a mass concentration "
                        f"ipexrx can convert to; expected {ACCEPTED_TEXT}")
    u = norm_unit(str(unit))
    if u in _MASS_TO_NGML:
        return _MASS_TO_NGML[u] / _MASS_TO_NGML[tgt]
    if u in MOLAR_UNITS:
        mm = molar_mass(drug)
        if mm is None:
            raise DataError(f"{where}: unit {unit!r} is molar and the knowledge base holds no molar mass for "
                            f"{drug!r}; expected a mass unit: {ACCEPTED_TEXT}")
        return MOLAR_UNITS[u] * mm / _MASS_TO_NGML[tgt]
    mm = molar_mass(drug)
    expected = ACCEPTED_TEXT + (f", or {MOLAR_TEXT} (converted with {mm:g} g/mol)" if mm else "")
    raise DataError(f"{where}: unit {unit!r} not understood; expected {expected}")


def to_model_unit(value: float, unit: str, model: CompiledModel, where: str = "level", output: int = 0) -> float:
    """``value`` in ``unit`` expressed in the unit of the model's output ``output``."""
    return float(value) * factor_to(unit, model.spec.outputs[output].unit, model.spec.drug, where)


def convert_subject(subject: Subject, unit: str, model: CompiledModel) -> Subject:
    """Scale every DV and LLOQ of ``subject`` from ``unit`` to the model's output unit, in place; a note is added
    to the subject's warnings when a conversion happened (so the output can say so)."""
    f = factor_to(unit, model.spec.outputs[0].unit, model.spec.drug, f"subject {subject.id} DV")
    if f != 1.0:
        for r in subject.records:
            if r.dv is not None and r.is_obs:
                r.dv = r.dv * f
            if r.lloq is not None:
                r.lloq = r.lloq * f
        subject.warnings.append(f"levels converted from {unit} to {model.spec.outputs[0].unit} "
                                f"(x {f:.6g})")
    return subject
