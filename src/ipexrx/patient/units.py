"""Explicit unit conversion: one small table per quantity, never a guess.

Why a hand-written table instead of a general unit library: the set of quantities our rules read
is small and clinically fixed, and every factor here must be reviewable at a glance. A unit that
is not in the table for the quantity at hand is an error for that value (``UnitError``) -- a
creatinine of "1.2" without unit could be mg/dL or umol/L and the difference is a factor of 88.

Unit strings are compared after a light normalisation (case, micro sign, UCUM brackets and
exponent spellings), so ``ug/L``, ``µg/L``, ``mcg/L`` and UCUM ``ug/L`` are the same unit while
``mg/L`` is not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from .errors import InputIssue, UnitError


@lru_cache(maxsize=4096)
def norm_unit(unit: str) -> str:
    """Canonical spelling used as a table key (case-folded, micro sign as 'u', no UCUM brackets).

    Cached: a chart spells its units a few ways, and every dose and lab is normalised through here."""
    u = unit.strip().replace("µ", "u").replace("μ", "u").replace("[", "").replace("]", "")
    u = u.replace("^", "*").replace(" ", "").replace("×", "x").lower()
    if u.startswith("x10*"):
        u = u[1:]
    u = u.replace("mcg", "ug").replace("mm3", "ul")
    u = u.replace("cells/", "/")
    return u


@dataclass(frozen=True)
class Quantity:
    """A measured quantity: its canonical unit and how to convert accepted units to it."""

    name: str
    canonical: str
    convert: dict[str, Callable[[float], float]]

    def accepted(self) -> list[str]:
        return sorted(self.convert)


def _f(factor: float) -> Callable[[float], float]:
    return lambda v: v * factor


_ID = _f(1.0)

_CELLS = {"10*9/l": _ID, "10*3/ul": _ID, "/nl": _ID, "k/ul": _ID, "10*3/mm3": _ID, "giga/l": _ID,
          "/ul": _f(0.001), "10*6/l": _f(0.001)}

QUANTITIES: dict[str, Quantity] = {
    q.name: q
    for q in [
        Quantity("mass", "mg", {"mg": _ID, "g": _f(1000.0), "ug": _f(0.001), "ng": _f(1e-6)}),
        # Whole-blood drug concentrations: ng/mL == ug/L. Molar units (nmol/L) need the drug's molar
        # mass and are converted by ``convert(..., molar_mass=...)`` (MOLAR_UNITS), never here.
        Quantity("drug-concentration", "ng/mL", {"ng/ml": _ID, "ug/l": _ID, "mg/l": _f(1000.0)}),
        Quantity("creatinine", "umol/L", {"umol/l": _ID, "mg/dl": _f(88.42), "mmol/l": _f(1000.0)}),
        Quantity("glucose", "mmol/L", {"mmol/l": _ID, "mg/dl": _f(1 / 18.016)}),
        # HbA1c: NGSP % from IFCC mmol/mol with the IFCC-NGSP master equation.
        Quantity("hba1c", "%", {"%": _ID, "mmol/mol": lambda v: v * 0.09148 + 2.152}),
        Quantity("tsh", "mIU/L", {"miu/l": _ID, "uiu/ml": _ID, "mu/l": _ID, "uu/ml": _ID}),
        Quantity("free-t4", "pmol/L", {"pmol/l": _ID, "ng/dl": _f(12.871)}),
        Quantity("cholesterol", "mmol/L", {"mmol/l": _ID, "mg/dl": _f(1 / 38.67)}),
        Quantity("triglycerides", "mmol/L", {"mmol/l": _ID, "mg/dl": _f(1 / 88.57)}),
        Quantity("cell-count", "10^9/L", dict(_CELLS)),
        Quantity("hemoglobin", "g/dL", {"g/dl": _ID, "g/l": _f(0.1)}),
        # Monovalent ions (potassium): 1 mEq/L == 1 mmol/L.
        Quantity("electrolyte", "mmol/L", {"mmol/l": _ID, "meq/l": _ID}),
        # Magnesium is divalent: 1 mmol/L = 2 mEq/L; 1 mg/dL = 0.4114 mmol/L (molar mass 24.305 g/mol).
        Quantity("magnesium", "mmol/L", {"mmol/l": _ID, "mg/dl": _f(1 / 2.4305), "meq/l": _f(0.5)}),
        Quantity("bun", "mg/dL", {"mg/dl": _ID, "mmol/l": _f(2.801)}),
        Quantity("enzyme", "U/L", {"u/l": _ID, "iu/l": _ID}),
        Quantity("bilirubin", "umol/L", {"umol/l": _ID, "mg/dl": _f(17.1)}),
        Quantity("pressure", "mmHg", {"mmhg": _ID, "mm*hg": _ID}),
        # Estimated GFR, normalised to 1.73 m2 body surface (UCUM writes it mL/min/{1.73_m2}).
        Quantity("gfr", "mL/min/1.73m2", {"ml/min/1.73m2": _ID, "ml/min/{1.73_m2}": _ID, "ml/min/1.73_m2": _ID,
                                           "ml/min/1.73m*2": _ID}),
        Quantity("immunoglobulin", "g/L", {"g/l": _ID, "mg/dl": _f(0.01)}),
        Quantity("urine-protein", "mg/dL", {"mg/dl": _ID, "g/l": _f(100.0), "mg/l": _f(0.1)}),
        # Urine protein/creatinine ratio: 1 mg/mmol = 8.84 mg/g (creatinine 113.12 g/mol); 1 mg/mg = 1000 mg/g.
        Quantity("protein-creatinine-ratio", "mg/g", {"mg/g": _ID, "mg/mmol": _f(8.84), "mg/mg": _f(1000.0),
                                                       "g/g": _f(1000.0), "g/mmol": _f(8840.0)}),
        Quantity("weight", "kg", {"kg": _ID, "g": _f(0.001), "lb": _f(0.45359237), "lb_av": _f(0.45359237)}),
        Quantity("length", "cm", {"cm": _ID, "m": _f(100.0), "mm": _f(0.1)}),
    ]
}


# Molar drug concentrations -> ng/mL, per g/mol of the drug: x nmol/L = x * M / 1000 ng/mL.
MOLAR_UNITS: dict[str, float] = {"nmol/l": 1e-3, "pmol/ml": 1e-3, "umol/l": 1.0, "pmol/l": 1e-6}


def accepts(quantity: str, unit: str | None, molar_mass: float | None = None) -> bool:
    """Whether ``convert`` can read ``unit`` for this quantity (molar units only with a molar mass)."""
    if not unit:
        return False
    u = norm_unit(unit)
    return u in QUANTITIES[quantity].convert or (
        quantity == "drug-concentration" and molar_mass is not None and u in MOLAR_UNITS)


def convert(quantity: str, value: float, unit: str | None, path: str, molar_mass: float | None = None) -> float:
    """``value`` in ``unit`` expressed in the quantity's canonical unit, or ``UnitError`` at ``path``.

    ``molar_mass`` (g/mol, from the knowledge base) lets a drug concentration in nmol/L be read:
    tacrolimus 10 nmol/L x 804.0 g/mol = 8.04 ng/mL. Without it a molar unit is an error."""
    q = QUANTITIES[quantity]
    if unit is None or not str(unit).strip():
        raise UnitError(InputIssue(path, f"a unit for {q.name} (one of {_accepted(q, quantity, molar_mass)})",
                                   "no unit"), "a value needs a unit")
    u = norm_unit(unit)
    fn = q.convert.get(u)
    if fn is not None:
        return fn(value)
    if quantity == "drug-concentration" and u in MOLAR_UNITS:
        if molar_mass is None:
            raise UnitError(InputIssue(path, f"a mass unit for {q.name} (one of {', '.join(q.accepted())}); a molar "
                                       "unit needs the drug's molar mass, which the knowledge base does not hold",
                                       repr(unit)), "molar unit without a molar mass")
        return value * MOLAR_UNITS[u] * molar_mass
    raise UnitError(InputIssue(path, f"a unit for {q.name} (one of {_accepted(q, quantity, molar_mass)})",
                               repr(unit)), "unknown or ambiguous unit")


def _accepted(q: Quantity, quantity: str, molar_mass: float | None) -> str:
    """The units ``convert`` reads for this quantity, for an error message (made only when one is raised)."""
    extra = sorted(MOLAR_UNITS) if quantity == "drug-concentration" and molar_mass else []
    return ", ".join(q.accepted() + extra)


# Dose units: a mass, a mass per kg or per m2, or international units. Volumes are refused: a mL of
# an oral solution means nothing without the concentration.
DOSE_MASS = {"mg": 1.0, "g": 1000.0, "ug": 0.001, "ng": 1e-6}
DOSE_VOLUME = {"ml": 1.0, "l": 1000.0, "cc": 1.0}
DOSE_UNITS = {"iu": "IU", "u": "IU", "unit": "IU", "units": "IU", "[iu]": "IU"}


@dataclass(frozen=True)
class NormDose:
    """A dose in canonical form: ``value`` in ``unit`` (``mg``, ``mg/kg``, ``mg/m2`` or ``IU``)."""

    value: float
    unit: str
    original: str

    def __str__(self) -> str:
        return f"{fmt_number(self.value)} {self.unit}"


def normalize_dose(value: float, unit: str | None, path: str) -> NormDose:
    """Normalise a dose; refuse volumes and unknown units (the dose-fraction rule multiplies it)."""
    expected = "a dose unit: mg, mcg, g, mg/kg, mcg/kg, mg/m2 or IU (a volume needs the concentration)"
    if unit is None or not str(unit).strip():
        raise UnitError(InputIssue(path, expected, "no unit"), "a dose needs a unit")
    u = norm_unit(unit)
    original = f"{fmt_number(value)} {unit}"
    if u in DOSE_MASS:
        return NormDose(value * DOSE_MASS[u], "mg", original)
    if u in DOSE_UNITS:
        return NormDose(value, "IU", original)
    base, _, per = u.partition("/")
    if base in DOSE_MASS and per in ("kg", "m2"):
        return NormDose(value * DOSE_MASS[base], f"mg/{per}", original)
    raise UnitError(InputIssue(path, expected, repr(unit)), "unknown dose unit")


def volume_ml(value: float, unit: str | None) -> float | None:
    """A dose written as a volume, in mL; None when the unit is not a volume."""
    if unit is None:
        return None
    factor = DOSE_VOLUME.get(norm_unit(unit))
    return value * factor if factor is not None else None


def fmt_number(value: float) -> str:
    """Short human rendering: up to 3 significant decimals, no trailing zeros."""
    if value == int(value) and abs(value) < 1e12:
        return str(int(value))
    text = f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return text.rstrip("0").rstrip(".") if "." in text and "e" not in text else text
