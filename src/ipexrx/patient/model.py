"""The ipexrx patient JSON format (``ipexrx-patient/1``), as strict pydantic models.

Why strict (``extra="forbid"``): a misspelt key in a clinical record ("medicatons") silently
ignored would mean drugs never checked. Every structural problem becomes a located
:class:`~ipexrx.patient.errors.InputIssue`. Semantic checks that need the knowledge base or units
(drug names, lab units, plausibility of lab values) happen in :mod:`ipexrx.patient.normalize`.

The format is documented in ``docs/patient-format.md``; ``ipexrx schema patient`` prints the JSON
Schema generated from these models.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from .errors import MISSING, UNKNOWN_FIELD, InputIssue, MalformedInputError, PatientInputError, _short, json_path

FORMAT_ID: Literal["ipexrx-patient/1"] = "ipexrx-patient/1"
MAX_WEIGHT_KG = 250.0  # heavier than any paediatric or adult IPEX patient; above it the datum is corrupt
MIN_WEIGHT_KG = 0.3
MAX_AGE_YEARS = 120.0

Text = Annotated[str, Field(min_length=1, max_length=500)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Demographics(_In):
    age_years: float | None = Field(None, ge=0, le=MAX_AGE_YEARS, description="Age in years (or give birth_date).")
    birth_date: dt.date | None = None
    sex: Literal["male", "female", "other", "unknown"] = "unknown"
    weight_kg: float | None = Field(None, ge=MIN_WEIGHT_KG, le=MAX_WEIGHT_KG, description="Body weight in kg.")
    weight_date: dt.date | None = None
    height_cm: float | None = Field(None, ge=20, le=250)


class Diagnosis(_In):
    type: Literal["ipex", "ipex-like", "unconfirmed", "none"] = Field(
        description="ipex: FOXP3 variant found; ipex-like: FOXP3 wild-type with another gene; unconfirmed: IPEX "
        "suspected, not genetically confirmed; none: no IPEX or IPEX-like diagnosis (drug-safety checks only, no "
        "IPEX plan unless asked for).")
    foxp3_variant: Text | None = Field(None, description="HGVS description of the FOXP3 variant, e.g. c.1150G>A.")
    disorder: Text | None = Field(None, description="For ipex-like: the disorder id, name or gene (e.g. 'LRBA').")
    gene: Text | None = None
    diagnosed_on: dt.date | None = None


_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?$")


class Hsct(_In):
    """Transplant status. ``status`` may be left out: it is then read from ``note`` (free text such as
    "s/p BMT 2023-05") and from HSCT lines elsewhere in the record; with nothing said it is not-done, and the
    assessment says that nothing was recorded (or that the mention is unclear), never "not transplanted"."""

    status: Literal["not-done", "planned", "done"] | None = Field(
        None, description="not-done, planned or done; when absent, read from the note and the rest of the record.")
    date: dt.date | None = Field(None, description="Date of transplant (done) or planned date; YYYY-MM or YYYY "
                                 "when only the month or year is known.")
    date_precision: Literal["day", "month", "year"] = Field(
        "day", description="How precise the date is (set from a YYYY-MM or YYYY date).")
    kind: Literal["allogeneic", "autologous"] | None = Field(None, description="Donor type, when known.")
    donor: Text | None = None
    note: Text | None = Field(None, description="Free text, e.g. 'allogeneic HSCT 2024-03' or 's/p BMT'.")
    basis: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list, max_length=50,
        description="What the status was read from (filled by the FHIR reader: resource, code, status, date).")
    unclear: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list, max_length=50,
        description="Mentions of HSCT that say no status that can be read (filled by the FHIR reader: an HSCT "
        "Procedure entered in error or stopped, a donor lymphocyte infusion); with no status read, the status "
        "is shown as unclear, not as 'not transplanted'.")

    @model_validator(mode="before")
    @classmethod
    def _partial_date(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("date"), str):
            m = _PARTIAL_DATE.match(data["date"].strip())
            if m:
                data = dict(data)
                data["date"] = f"{m.group(1)}-{m.group(2) or '01'}-01"
                data.setdefault("date_precision", "month" if m.group(2) else "year")
        return data


def _parse_hsct(value: object) -> object:
    """Accept ``"hsct": "allogeneic HSCT 2024-03"`` as shorthand for ``{"note": ...}``."""
    if isinstance(value, str):
        return {"note": value}
    return value


_DOSE_RE = re.compile(r"^\s*(-?\d+(?:[.,]\d+)?)\s*([^\d\s].*?)?\s*$")


def _parse_dose(value: object) -> object:
    """Accept ``"0.5 mg"`` as shorthand for ``{"value": 0.5, "unit": "mg"}``."""
    if isinstance(value, str):
        m = _DOSE_RE.match(value)
        if not m:
            raise ValueError(f"a dose like '0.5 mg' or {{'value': 0.5, 'unit': 'mg'}}, got {value!r}")
        return {"value": float(m.group(1).replace(",", ".")), "unit": m.group(2)}
    return value


class Dose(_In):
    value: float = Field(gt=0, le=1e6, description="Amount per administration; must be positive.")
    unit: str | None = Field(None, description="mg, mcg, g, mg/kg, mcg/kg, mg/m2 or IU; mL only when the drug text "
                             "gives the concentration ('250 mg/5 mL').")


ROUTES = ("oral", "iv", "sc", "im", "topical", "inhaled", "rectal", "ophthalmic", "nasal", "transdermal", "enteral",
          "intrathecal", "other")


class Medication(_In):
    drug: Text = Field(description="Generic name, brand, synonym, RxCUI, or a product text such as "
                       "'Prograf 0.5 mg capsule' or 'clarithromycin 250 mg/5 mL suspension'.")
    rxcui: Annotated[str, Field(pattern=r"^\d{1,8}$")] | None = Field(
        None, description="RxNorm code: ingredient, brand, or clinical/branded drug (SCD/SBD).")
    atc: Annotated[str, Field(pattern=r"^[A-Z]\d{2}[A-Z]{2}\d{2}$")] | None = Field(None, description="WHO ATC code.")
    status: Literal["active", "planned", "stopped"] = "active"
    dose: Annotated[Dose | None, BeforeValidator(_parse_dose)] = None
    route: Literal["oral", "iv", "sc", "im", "topical", "inhaled", "rectal", "ophthalmic", "nasal", "transdermal",
                   "enteral", "intrathecal", "other"] | None = None
    frequency: Text | None = Field(None, description="e.g. 'once daily', 'q12h', 'BID'.")
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    indication: Text | None = None

    @model_validator(mode="after")
    def _dates(self) -> Medication:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError(f"end_date {self.end_date} is before start_date {self.start_date}")
        return self


class Lab(_In):
    test: Text = Field(description="Test name (e.g. 'tacrolimus trough', 'creatinine', 'HBsAg') or LOINC code.")
    loinc: Annotated[str, Field(pattern=r"^\d{1,6}-\d$")] | None = None
    value: float | bool | Annotated[str, Field(min_length=1, max_length=60)] = Field(
        description="Number, or a qualitative result ('positive', 'negative', 'indeterminate').")
    unit: str | None = None
    date: dt.date
    upper_limit: float | None = Field(
        None, gt=0, description="The laboratory's upper reference limit for this result, in the result's unit "
        "(read for thresholds given as multiples of it: ALT above 3 x ULN).")


class ManifestationEntry(_In):
    hpo: Annotated[str, Field(pattern=r"^HP:\d{7}$")] | None = None
    name: Text | None = None
    status: Literal["active", "resolved"] = "active"

    @model_validator(mode="after")
    def _some_id(self) -> ManifestationEntry:
        if not self.hpo and not self.name:
            raise ValueError("a manifestation needs an 'hpo' id or a 'name'")
        return self


def _parse_manifestation(value: object) -> object:
    if isinstance(value, str):
        v = value.strip()
        return {"hpo": v} if re.match(r"^HP:\d{7}$", v) else {"name": v}
    return value


class Immunization(_In):
    vaccine: Text = Field(description="Vaccine name (e.g. 'MMR', 'rotavirus') or CVX code.")
    cvx: Annotated[str, Field(pattern=r"^\d{1,3}$")] | None = None
    status: Literal["given", "planned"] = "given"
    date: dt.date | None = None
    live: bool | None = Field(None, description="Override: whether the vaccine is live attenuated.")


class Infection(_In):
    name: Text
    pathogen: Text | None = None
    active: bool = True
    since: dt.date | None = None


class PatientRecord(_In):
    """One patient, as ipexrx reads it. Only ``diagnosis`` is required."""

    format: Literal["ipexrx-patient/1"] = FORMAT_ID
    id: Text | None = None
    demographics: Demographics = Field(default_factory=Demographics)
    diagnosis: Diagnosis
    hsct: Annotated[Hsct, BeforeValidator(_parse_hsct)] = Field(default_factory=Hsct)
    manifestations: list[Annotated[ManifestationEntry, BeforeValidator(_parse_manifestation)]] = Field(
        default_factory=list, max_length=200)
    medications: list[Medication] = Field(default_factory=list, max_length=200)
    labs: list[Lab] = Field(default_factory=list, max_length=5000)
    immunizations: list[Immunization] = Field(default_factory=list, max_length=500)
    infections: list[Infection] = Field(default_factory=list, max_length=200)


_SIMPLE = {"float_parsing": "a number", "float_type": "a number", "int_type": "a whole number",
           "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "text",
           "list_type": "a list", "dict_type": "an object", "model_type": "an object", "model_attributes_type":
           "an object", "date_type": "a date (YYYY-MM-DD)", "date_parsing": "a date (YYYY-MM-DD)",
           "date_from_datetime_parsing": "a date (YYYY-MM-DD)", "date_from_datetime_inexact": "a date (YYYY-MM-DD)",
           "finite_number": "a finite number", "string_too_short": "non-empty text",
           "string_too_long": "shorter text"}
_BOUNDS = {"less_than_equal": ("le", "<="), "greater_than_equal": ("ge", ">="), "greater_than": ("gt", ">"),
           "less_than": ("lt", "<")}


def _expected(err: Any) -> str:
    t = err["type"]
    ctx = err.get("ctx") or {}
    if t == "missing":
        return MISSING
    if t == "extra_forbidden":
        return UNKNOWN_FIELD
    if t == "literal_error":
        return "one of " + str(ctx.get("expected", ""))
    if t in _BOUNDS:
        key, sign = _BOUNDS[t]
        return f"a number {sign} {ctx.get(key)}"
    if t == "string_pattern_mismatch":
        return f"text matching {ctx.get('pattern')}"
    if t == "too_long":
        return f"at most {ctx.get('max_length')} items"
    if t in _SIMPLE:
        return _SIMPLE[t]
    return str(err["msg"]).removeprefix("Value error, ")


def _got(err: Any) -> str:
    if err["type"] == "missing":
        return "nothing"
    return _short(err.get("input"))


def issues_from_validation(exc: ValidationError, root: str = "$") -> list[InputIssue]:
    """Turn pydantic errors into located issues (union branches collapsed to the first useful one)."""
    seen: set[str] = set()
    out: list[InputIssue] = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in {
            "Dose", "str", "float", "bool", "int", "function-before", "constrained-str", "none"}))]
        path = json_path(loc, root)
        if path in seen:
            continue
        seen.add(path)
        out.append(InputIssue(path, _expected(err), _got(err)))
    return out


def parse_record(data: object) -> PatientRecord:
    """Validate a decoded JSON object as a :class:`PatientRecord`, or raise ``PatientInputError``."""
    if not isinstance(data, dict):
        raise MalformedInputError(InputIssue("$", "a JSON object (patient record or FHIR Bundle)",
                                             type(data).__name__), "not a patient record")
    try:
        return PatientRecord.model_validate(data)
    except ValidationError as exc:
        raise PatientInputError(issues_from_validation(exc), "the patient record is not valid") from None


UTF8_BOM = b"\xef\xbb\xbf"


def decode_json(text: str | bytes, where: str = "input") -> Any:
    """Decode JSON text (orjson: strict RFC 8259, several times faster than the standard library);
    a syntax error becomes ``MalformedInputError`` with line and column. A UTF-8 byte-order mark opening the
    document is skipped (Windows editors write one); bytes in another encoding (UTF-16, Latin-1) are refused
    saying what they look like (:mod:`ipexrx.textio`, the decoder of every text input)."""
    if isinstance(text, bytes):
        if text.startswith(UTF8_BOM):
            text = text[3:]
    elif isinstance(text, str) and text.startswith("\ufeff"):
        text = text[1:]

    try:
        return orjson.loads(text)
    except json.JSONDecodeError as exc:  # orjson.JSONDecodeError is a subclass
        if isinstance(text, bytes):
            _refuse_other_encodings(text, where)
        # orjson counts the position in characters, also for bytes
        shown = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
        ends = len(shown.rstrip()) if isinstance(shown, str) else None
        got = f"{exc.msg}: the text ends before the JSON is complete" if ends is not None and exc.pos >= ends \
            else f"{exc.msg} at line {exc.lineno}, column {exc.colno}" if exc.lineno > 1 \
            else f"{exc.msg} at column {exc.colno}"
        raise MalformedInputError(InputIssue("$", "valid JSON", got),
                                  f"{where} is not valid JSON") from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise MalformedInputError(InputIssue("$", "UTF-8 JSON text", type(exc).__name__),
                                  f"{where} is not readable JSON") from None


def _refuse_other_encodings(data: bytes, where: str) -> None:
    """Raise ``MalformedInputError`` naming the encoding when JSON bytes that failed to parse are not UTF-8 text."""
    from ..textio import TextEncodingError, decode_text

    try:
        decode_text(data, where, legacy=False)
    except TextEncodingError as exc:
        if exc.got.startswith("binary data (control character"):
            return  # a raw control character in valid UTF-8: the JSON syntax error says where
        what, sep, advice = exc.got.partition("; save the file")
        got = what + (f" on line {exc.line}" if exc.line and exc.line > 1 else "") + sep + advice
        raise MalformedInputError(InputIssue("$", exc.expected, got), f"{where} is not UTF-8 text") from None


def patient_json_schema() -> dict[str, Any]:
    """JSON Schema of the patient format (served by ``ipexrx schema patient``)."""
    schema = PatientRecord.model_json_schema()
    schema["$id"] = "https://ipexrx.org/schema/patient-1.json"
    schema["title"] = "ipexrx patient record (ipexrx-patient/1)"
    return schema
