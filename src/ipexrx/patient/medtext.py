"""Read what a medication's free text says besides the drug: strength, concentration, dose form, route.

Why: EHRs send "Prograf 0.5 mg capsule", "clarithromycin 250 mg/5 mL suspension" or RxNorm names
such as "tacrolimus 1 MG/ML Topical Ointment" where a structured route or strength is missing. The
form decides what a record *is* (an ointment is not systemic tacrolimus) and a liquid's
concentration is what turns a dose in mL into mg. Only unambiguous patterns are read; anything else
stays unknown and the caller says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# Dose-form words -> route. Longest phrases first so "oral suspension" wins over "suspension".
_FORMS: list[tuple[str, str]] = [
    ("ophthalmic ointment", "ophthalmic"), ("eye ointment", "ophthalmic"), ("ophthalmic emulsion", "ophthalmic"),
    ("ophthalmic solution", "ophthalmic"), ("ophthalmic suspension", "ophthalmic"), ("eye drops", "ophthalmic"),
    ("ophthalmic", "ophthalmic"), ("otic", "topical"),
    ("nasal spray", "nasal"), ("nasal", "nasal"),
    ("inhalation powder", "inhaled"), ("inhalation aerosol", "inhaled"), ("inhalation solution", "inhaled"),
    ("inhalation suspension", "inhaled"), ("metered dose inhaler", "inhaled"), ("inhaler", "inhaled"),
    ("nebuliser", "inhaled"), ("nebulizer", "inhaled"), ("inhalation", "inhaled"), ("inhaled", "inhaled"),
    ("rectal foam", "rectal"), ("rectal suspension", "rectal"), ("enema", "rectal"), ("suppository", "rectal"),
    ("rectal", "rectal"),
    ("transdermal patch", "transdermal"), ("transdermal", "transdermal"),
    ("topical ointment", "topical"), ("topical cream", "topical"), ("topical gel", "topical"),
    ("topical solution", "topical"), ("topical lotion", "topical"), ("topical foam", "topical"),
    ("ointment", "topical"), ("cream", "topical"), ("lotion", "topical"), ("cutaneous", "topical"),
    ("dermal", "topical"), ("shampoo", "topical"), ("topical", "topical"),
    ("injectable suspension", "injection"), ("injectable solution", "injection"), ("injection", "injection"),
    ("injectable", "injection"), ("infusion", "iv"), ("intravenous", "iv"), ("iv", "iv"),
    ("subcutaneous", "sc"), ("prefilled syringe", "sc"), ("auto-injector", "sc"), ("autoinjector", "sc"), ("pen", "sc"),
    ("intramuscular", "im"),
    ("oral suspension", "oral"), ("oral solution", "oral"), ("oral granules", "oral"), ("oral capsule", "oral"),
    ("oral tablet", "oral"), ("extended release", "oral"), ("delayed release", "oral"), ("capsule", "oral"),
    ("capsules", "oral"), ("tablet", "oral"), ("tablets", "oral"), ("caplet", "oral"), ("granules", "oral"),
    ("sprinkle", "oral"), ("syrup", "oral"), ("elixir", "oral"), ("suspension", "oral"), ("oral", "oral"),
    ("po", "oral"), ("by mouth", "oral"),
]
_FORM_RE = re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w, _ in _FORMS) + r")(?![\w-])", re.I)
_FORM_ROUTE = {w: r for w, r in _FORMS}

_NUM = r"(\d+(?:[.,]\d+)?)"
_MASS = r"(mg|mcg|µg|ug|g|units?|iu)"
# "250 mg/5 mL", "250 MG in 5 ML", "50 MG/ML", "200 mg-40 mg/5 mL" (first component read), "1 mg per mL"
_CONC_RE = re.compile(_NUM + r"\s*" + _MASS + r"(?:\s*-\s*\d+(?:[.,]\d+)?\s*" + _MASS + r")?\s*(?:/|\bper\b|\bin\b)\s*"
                      + r"(?:" + _NUM + r"\s*)?(ml)\b", re.I)
_STRENGTH_RE = re.compile(_NUM + r"\s*" + _MASS + r"(?![\w/])", re.I)
_PERCENT_RE = re.compile(_NUM + r"\s*%")
_MASS_MG = {"mg": 1.0, "mcg": 0.001, "µg": 0.001, "ug": 0.001, "g": 1000.0}


@dataclass(frozen=True)
class ProductText:
    """What a product description says, each part None when it does not say it unambiguously."""

    form: str | None = None  # the dose-form words as written ("oral suspension")
    route: str | None = None  # oral, iv, sc, im, topical, inhaled, rectal, ophthalmic, nasal, transdermal
    mg_per_ml: float | None = None  # a liquid's concentration
    concentration_text: str | None = None  # as written: "250 mg/5 mL"
    strength_mg: float | None = None  # a solid's strength per unit (capsule, tablet)
    percent: float | None = None  # a skin product's strength


def _f(text: str) -> float:
    return float(text.replace(",", "."))


@lru_cache(maxsize=8192)
def read_product_text(text: str) -> ProductText:
    """Parse a medication's free text; a part said two different ways is left unknown. Cached (the result
    is frozen): a chart names each product in several places, and charts share a formulary."""
    forms = {m.group(1).lower() for m in _FORM_RE.finditer(text)}
    routes = {_FORM_ROUTE[f] for f in forms}
    # "injection" says parenteral without saying which route; a named route beside it decides.
    if "injection" in routes and len(routes) > 1:
        routes.discard("injection")
    route = routes.pop() if len(routes) == 1 else None
    if route == "injection":
        route = None  # IV, IM or SC: the record's own route must say
    form = max(forms, key=len) if forms else None
    mg_per_ml = conc_text = None
    concs = {(m.group(0), _conc(m)) for m in _CONC_RE.finditer(text)}
    stripped = _CONC_RE.sub(" ", text)
    strengths = {_f(m.group(1)) * _MASS_MG[m.group(2).lower()] for m in _STRENGTH_RE.finditer(stripped)
                 if m.group(2).lower() in _MASS_MG}
    values = {c for _, c in concs if c is not None}
    # A combination product ("200 mg-40 mg/5 mL", "sulfamethoxazole 200 MG / trimethoprim 40 MG per 5 ML")
    # names two amounts: which one a dose in mL means is not written, so neither is read.
    combination = any("-" in t for t, _ in concs) or (values and strengths)
    if len(values) == 1 and not combination:
        mg_per_ml = values.pop()
        conc_text = next(t for t, c in concs if c == mg_per_ml)
    percents = {_f(m.group(1)) for m in _PERCENT_RE.finditer(text)}
    return ProductText(form=form, route=route, mg_per_ml=mg_per_ml, concentration_text=conc_text,
                       strength_mg=strengths.pop() if len(strengths) == 1 and not concs else None,
                       percent=percents.pop() if len(percents) == 1 else None)


def _conc(m: re.Match[str]) -> float | None:
    unit = m.group(2).lower()
    if unit not in _MASS_MG:
        return None  # units per mL (insulin) are not a mass concentration
    volume = _f(m.group(4)) if m.group(4) else 1.0
    if volume <= 0:
        return None
    return _f(m.group(1)) * _MASS_MG[unit] / volume
