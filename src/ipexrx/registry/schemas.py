"""Input models: everything entered into the registry passes through these before any write.

Single-record rules (ranges, formats, vocabularies, order of dates within a record) live here as
pydantic validators; rules that need the knowledge base (drug ids, HPO codes, IPEX-like disorders)
and rules across records (an event before the patient's birth month or after death) are checked by
:func:`check_bundle`, so that a bundle is accepted or rejected as a whole.

Decisions (see docs/registry.md):

* HPO codes must be well formed *and* be one of the HPO codings of a knowledge-base manifestation.
  A registry is only comparable when centres code the same thing the same way; a code the KB does
  not know is rejected with the list of accepted codes, and adding one is a KB change, reviewed.
* Drugs must be knowledge-base drug ids (``ipexrx drug <name>`` resolves synonyms for the user).
* Ranges are plausibility limits chosen by ipexrx (a convention, not a clinical reference): they
  catch unit slips (g vs mg, mL vs L) rather than judge the value.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .models import AdverseEvent, Centre, Course, ManifestationEpisode, Patient, User
from .security import MAX_PASSWORD_LENGTH

SEX = ("male", "female", "unknown")
CONSENT_SCOPES = ("registry", "registry-research", "registry-research-sharing")
VITAL = ("alive", "dead", "lost")
REASONS_STOPPED = ("inefficacy", "toxicity", "remission", "hsct", "other")
DOSE_UNITS = ("mg/kg/day", "mg/m2/day", "mg/day", "mg/kg/dose", "mg/m2/dose", "mg/dose", "units/kg/day")
SKIN = ("none", "mild", "moderate", "severe")
ORGANS = ("gut", "skin", "endocrine", "kidney", "liver", "blood", "lung", "nervous-system", "other")
DONORS = ("matched-sibling", "matched-family", "matched-unrelated", "mismatched-unrelated", "haploidentical",
          "cord-blood")
CONDITIONING = ("myeloablative", "reduced-toxicity", "reduced-intensity", "non-myeloablative", "none")
CHRONIC_GVHD = ("none", "limited", "extensive")
HPO_RE = re.compile(r"^HP:\d{7}$")
# HGVS for a sequence variant, optionally on a named reference (NM_/NC_/NG_/NP_ accession). The
# description after the prefix must be a c./g./p./n./m. change; we check the shape, not the sequence.
HGVS_RE = re.compile(
    r"^(?:(?:NM|NC|NG|NP|NR|LRG)_\d+(?:\.\d+)?(?:\([A-Z0-9]+\))?:)?"
    r"(?:[cgnm]\.[-*]?\d+(?:[+-]\d+)?(?:_[-*]?\d+(?:[+-]\d+)?)?"
    r"(?:[ACGT]>[ACGT]|del[ACGT]*|dup[ACGT]*|ins[ACGT]+|delins[ACGT]+|inv|=)"
    r"|p\.(?:\(?[A-Z][a-z]{2}\d+(?:[A-Z][a-z]{2}|Ter|\*|=|fs(?:Ter|\*)?\d*|del|dup)\)?|\?|0|\(\?\)))$"
)
RANGES: dict[str, tuple[float, float, str]] = {
    "stool_ml_kg_day": (0, 300, "mL/kg/day"),
    "weight_z": (-8, 8, "SD"),
    "insulin_u_kg_day": (0, 5, "units/kg/day"),
    "oi_score": (0, 10, "points"),
    "trough_ng_ml": (0, 1000, "ng/mL"),
    "chimerism_donor_pct": (0, 100, "%"),
}
EARLIEST_BIRTH_YEAR = 1950


def column_length(model: Any, column: str) -> int:
    """The length of a ``String(n)`` column: input models take their ``max_length`` from here, so a
    value the database would refuse (PostgreSQL) is a 422 naming the field, never a 500."""
    length = getattr(model.__table__.c[column].type, "length", None)
    if not isinstance(length, int):
        raise TypeError(f"{model.__tablename__}.{column} is not a String(n) column")
    return length


CENTRE_CODE_MAX = column_length(Centre, "code")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _range(name: str, v: float | None) -> float | None:
    if v is None:
        return v
    lo, hi, unit = RANGES[name]
    if not lo <= v <= hi:
        raise ValueError(f"expected {lo}..{hi} {unit}, got {v}")
    return v


class CentreIn(_In):
    code: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$", max_length=CENTRE_CODE_MAX,
                      description="Short upper-case code, e.g. 'MIL-TIGET'.")
    name: str = Field(min_length=2, max_length=column_length(Centre, "name"))
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$", max_length=column_length(Centre, "country"),
                                description="ISO 3166-1 alpha-2.")
    synthetic: bool = False


Role = Literal["clinician", "data_manager", "analyst", "admin"]


class UserIn(_In):
    username: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{2,99}$", max_length=column_length(User, "username"))
    password: str = Field(max_length=MAX_PASSWORD_LENGTH)
    role: Role
    centre_code: str | None = Field(None, max_length=CENTRE_CODE_MAX)

    @model_validator(mode="after")
    def _centre_for_centre_roles(self) -> UserIn:
        if self.role in ("clinician", "data_manager") and not self.centre_code:
            raise ValueError(f"a {self.role} belongs to a centre: expected centre_code, got none")
        if self.role in ("analyst", "admin") and self.centre_code:
            raise ValueError(f"an {self.role} sees no centre's identifiable data: expected no centre_code, "
                             f"got '{self.centre_code}'")
        return self


class PatientIn(_In):
    """Core data on every patient (ESID-style). No name, no record number: the registry assigns a pseudonym."""

    centre_code: str | None = Field(None, max_length=CENTRE_CODE_MAX,
                                    description="Defaults to the acting user's centre.")
    birth_year: int
    birth_month: int = Field(ge=1, le=12)
    sex: Literal["male", "female", "unknown"]
    diagnosis: Literal["ipex", "ipex-like"]
    gene: str = Field(pattern=r"^[A-Z0-9]{2,20}$", max_length=column_length(Patient, "gene"))
    variant_hgvs: str | None = Field(None, max_length=column_length(Patient, "variant_hgvs"))
    ipex_like_id: str | None = Field(None, max_length=column_length(Patient, "ipex_like_id"))
    onset_date: dt.date | None = None
    diagnosis_date: dt.date
    consent_date: dt.date
    consent_scope: Literal["registry", "registry-research", "registry-research-sharing"]
    consent_withdrawn_date: dt.date | None = None
    vital_status: Literal["alive", "dead", "lost"] = "alive"
    death_date: dt.date | None = None
    last_followup_date: dt.date | None = None
    synthetic: bool = False

    @field_validator("birth_year")
    @classmethod
    def _year(cls, v: int) -> int:
        this_year = dt.date.today().year
        if not EARLIEST_BIRTH_YEAR <= v <= this_year:
            raise ValueError(f"expected a year {EARLIEST_BIRTH_YEAR}..{this_year}, got {v}")
        return v

    @field_validator("variant_hgvs")
    @classmethod
    def _hgvs(cls, v: str | None) -> str | None:
        if v is not None and not HGVS_RE.match(v):
            raise ValueError(f"expected an HGVS variant such as 'NM_014009.4:c.1150G>A' or 'c.1150G>A', got '{v}'")
        return v

    @property
    def birth_month_start(self) -> dt.date:
        return dt.date(self.birth_year, self.birth_month, 1)

    @model_validator(mode="after")
    def _consistency(self) -> PatientIn:
        p: list[str] = []
        if self.diagnosis == "ipex":
            if self.gene != "FOXP3":
                p.append(f"gene: IPEX is FOXP3 disease, expected 'FOXP3', got '{self.gene}'")
            if not self.variant_hgvs:
                p.append("variant_hgvs: IPEX needs the FOXP3 variant in HGVS notation, got none")
            if self.ipex_like_id:
                p.append(f"ipex_like_id: only for an IPEX-like disorder, got '{self.ipex_like_id}' with diagnosis ipex")
        elif not self.ipex_like_id:
            p.append("ipex_like_id: an IPEX-like diagnosis names the disorder (a knowledge-base id), got none")
        born = self.birth_month_start
        today = dt.date.today()
        if born > today:
            p.append(f"birth: {born:%Y-%m} is in the future")
        for name in ("onset_date", "diagnosis_date", "consent_date", "consent_withdrawn_date", "death_date",
                     "last_followup_date"):
            d = getattr(self, name)
            if d is None:
                continue
            if d > today:
                p.append(f"{name}: {d} is in the future")
            if d < born:
                p.append(f"{name}: {d} is before the birth month {born:%Y-%m}")
        if self.consent_withdrawn_date and self.consent_withdrawn_date < self.consent_date:
            p.append(f"consent_withdrawn_date: {self.consent_withdrawn_date} is before consent_date "
                     f"{self.consent_date}")
        if self.vital_status == "dead" and not self.death_date:
            p.append("death_date: vital_status is 'dead', expected a death date, got none")
        if self.vital_status != "dead" and self.death_date:
            p.append(f"death_date: given ({self.death_date}) but vital_status is '{self.vital_status}'")
        if self.death_date:  # a genetic diagnosis may be made post mortem; onset and follow-up may not
            for name in ("last_followup_date", "onset_date"):
                d = getattr(self, name)
                if d and d > self.death_date:
                    p.append(f"{name}: {d} is after death ({self.death_date})")
        if p:
            raise ValueError("; ".join(p))
        return self


class ManifestationIn(_In):
    hpo_code: str = Field(max_length=column_length(ManifestationEpisode, "hpo_code"))
    onset_date: dt.date
    resolution_date: dt.date | None = None

    @field_validator("hpo_code")
    @classmethod
    def _hpo(cls, v: str) -> str:
        if not HPO_RE.match(v):
            raise ValueError(f"expected an HPO id 'HP:' + 7 digits, got '{v}'")
        return v

    @model_validator(mode="after")
    def _order(self) -> ManifestationIn:
        if self.resolution_date and self.resolution_date < self.onset_date:
            raise ValueError(f"resolution_date {self.resolution_date} is before onset_date {self.onset_date}")
        return self


class TroughIn(_In):
    date: dt.date
    value_ng_ml: float

    @field_validator("value_ng_ml")
    @classmethod
    def _value(cls, v: float) -> float:
        _range("trough_ng_ml", v)
        return v


class CourseIn(_In):
    drug_id: str = Field(max_length=column_length(Course, "drug_id"))
    start_date: dt.date
    stop_date: dt.date | None = None
    dose: float | None = Field(None, gt=0)
    dose_unit: Literal["mg/kg/day", "mg/m2/day", "mg/day", "mg/kg/dose", "mg/m2/dose", "mg/dose",
                       "units/kg/day"] | None = None
    reason_stopped: Literal["inefficacy", "toxicity", "remission", "hsct", "other"] | None = None
    reason_other: str | None = Field(None, max_length=column_length(Course, "reason_other"))
    troughs: list[TroughIn] = Field(default_factory=list)

    @model_validator(mode="after")
    def _rules(self) -> CourseIn:
        p: list[str] = []
        if self.stop_date and self.stop_date < self.start_date:
            p.append(f"stop_date {self.stop_date} is before start_date {self.start_date}")
        if (self.dose is None) != (self.dose_unit is None):
            p.append(f"dose and dose_unit go together: got dose={self.dose}, dose_unit={self.dose_unit}")
        if self.stop_date and not self.reason_stopped:
            p.append("reason_stopped: the course has a stop_date, expected one of " + ", ".join(REASONS_STOPPED))
        if self.reason_stopped and not self.stop_date:
            p.append(f"reason_stopped '{self.reason_stopped}' given but no stop_date")
        if (self.reason_stopped == "other") != bool(self.reason_other):
            p.append("reason_other: required exactly when reason_stopped is 'other'")
        for t in self.troughs:
            if t.date < self.start_date or (self.stop_date and t.date > self.stop_date):
                p.append(f"troughs: {t.date} lies outside the course "
                         f"({self.start_date}..{self.stop_date or 'ongoing'})")
        if p:
            raise ValueError("; ".join(p))
        return self


class VisitIn(_In):
    date: dt.date
    stool_ml_kg_day: float | None = None
    weight_z: float | None = None
    insulin_u_kg_day: float | None = None
    skin_severity: Literal["none", "mild", "moderate", "severe"] | None = None
    organs: list[Literal["gut", "skin", "endocrine", "kidney", "liver", "blood", "lung", "nervous-system",
                         "other"]] = Field(default_factory=list)
    oi_score: int | None = Field(None, description="Organ-involvement score as defined by Barzaghi 2018, "
                                 "computed by the centre.")

    @model_validator(mode="after")
    def _ranges(self) -> VisitIn:
        p = []
        for name in ("stool_ml_kg_day", "weight_z", "insulin_u_kg_day", "oi_score"):
            try:
                _range(name, getattr(self, name))
            except ValueError as exc:
                p.append(f"{name}: {exc}")
        if len(set(self.organs)) != len(self.organs):
            p.append(f"organs: listed twice in {self.organs}")
        if p:
            raise ValueError("; ".join(p))
        return self


class AdverseEventIn(_In):
    date: dt.date
    term: str = Field(min_length=2, max_length=column_length(AdverseEvent, "term"), description="CTCAE term.")
    grade: int = Field(ge=1, le=5, description="CTCAE grade 1-5.")
    serious: bool = False
    course_index: int | None = Field(None, ge=0, description="In a bundle: index of the related course.")


class HsctIn(_In):
    date: dt.date
    donor: Literal["matched-sibling", "matched-family", "matched-unrelated", "mismatched-unrelated",
                   "haploidentical", "cord-blood"]
    conditioning: Literal["myeloablative", "reduced-toxicity", "reduced-intensity", "non-myeloablative", "none"]
    chimerism_donor_pct: float | None = None
    chimerism_date: dt.date | None = None
    acute_gvhd_grade: int | None = Field(None, ge=0, le=4)
    chronic_gvhd: Literal["none", "limited", "extensive"] | None = None
    pre_hsct_oi_score: int | None = None

    @model_validator(mode="after")
    def _rules(self) -> HsctIn:
        p = []
        for name, key in (("chimerism_donor_pct", "chimerism_donor_pct"), ("pre_hsct_oi_score", "oi_score")):
            try:
                _range(key, getattr(self, name))
            except ValueError as exc:
                p.append(f"{name}: {exc}")
        if (self.chimerism_donor_pct is None) != (self.chimerism_date is None):
            p.append("chimerism_donor_pct and chimerism_date go together")
        if self.chimerism_date and self.chimerism_date < self.date:
            p.append(f"chimerism_date {self.chimerism_date} is before the HSCT ({self.date})")
        if p:
            raise ValueError("; ".join(p))
        return self


class PatientBundle(_In):
    """A patient with their whole follow-up: the unit of import, demo loading and export."""

    patient: PatientIn
    manifestations: list[ManifestationIn] = Field(default_factory=list)
    courses: list[CourseIn] = Field(default_factory=list)
    visits: list[VisitIn] = Field(default_factory=list)
    adverse_events: list[AdverseEventIn] = Field(default_factory=list)
    hsct: list[HsctIn] = Field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# Messages and checks that need the knowledge base or several records
# ----------------------------------------------------------------------------------------------
def describe_errors(exc: ValidationError) -> list[str]:
    """One line per problem: where, what was expected, what arrived."""
    return [f"{'.'.join(str(x) for x in e['loc']) or 'record'}: {describe_error(e)}" for e in exc.errors()]


def describe_error(e: Any) -> str:
    """What is wrong with one pydantic error, in words (without where): 'required, got nothing'."""
    msg = e["msg"].removeprefix("Value error, ")
    got = e.get("input")
    if e["type"] in ("missing",):
        return "required, got nothing"
    if e["type"] == "extra_forbidden":
        return "unknown field (no such field in the data dictionary)"
    if e["type"] == "string_too_long":
        limit = (e.get("ctx") or {}).get("max_length")
        return f"expected at most {limit} characters, got {len(got) if isinstance(got, str) else '?'}"
    if e["type"].startswith(("literal_error", "string_pattern", "greater", "less", "int_", "float_", "date_",
                             "bool_")):
        return f"{msg}, got {got!r}"
    return msg


def kb_hpo_index() -> dict[str, tuple[str, str]]:
    """HPO code -> (KB manifestation id, label)."""
    from ..knowledge import get_kb

    idx: dict[str, tuple[str, str]] = {}
    for m in get_kb().manifestations.values():
        for c in m.hpo:
            idx.setdefault(c.code, (m.id, c.label or m.name))
    return idx


def check_references(bundle: PatientBundle) -> list[str]:
    """Rules that need the knowledge base or span records; [] when the bundle may be written."""
    from ..knowledge import get_kb

    kb = get_kb()
    p: list[str] = []
    pt = bundle.patient
    if pt.diagnosis == "ipex-like" and pt.ipex_like_id:
        dis = kb.ipex_like.get(pt.ipex_like_id)
        if dis is None:
            p.append(f"patient.ipex_like_id: expected one of {', '.join(sorted(kb.ipex_like))}, "
                     f"got '{pt.ipex_like_id}'")
        elif dis.gene.symbol != pt.gene:
            p.append(f"patient.gene: {dis.name} is {dis.gene.symbol} disease, got '{pt.gene}'")
    hpo = kb_hpo_index()
    born = pt.birth_month_start
    end = pt.death_date

    def when(label: str, d: dt.date | None) -> None:
        if d is None:
            return
        if d < born:
            p.append(f"{label}: {d} is before the birth month {born:%Y-%m}")
        if d > dt.date.today():
            p.append(f"{label}: {d} is in the future")
        if end and d > end:
            p.append(f"{label}: {d} is after death ({end})")

    for i, m in enumerate(bundle.manifestations):
        if m.hpo_code not in hpo:
            p.append(f"manifestations.{i}.hpo_code: '{m.hpo_code}' is not an HPO code of a knowledge-base "
                     f"manifestation; accepted: {', '.join(sorted(hpo))}")
        when(f"manifestations.{i}.onset_date", m.onset_date)
        when(f"manifestations.{i}.resolution_date", m.resolution_date)
    for i, c in enumerate(bundle.courses):
        if c.drug_id not in kb.drugs:
            p.append(f"courses.{i}.drug_id: '{c.drug_id}' is not a knowledge-base drug id "
                     f"(try `ipexrx drug {c.drug_id}`); accepted: {', '.join(sorted(kb.drugs))}")
        when(f"courses.{i}.start_date", c.start_date)
        when(f"courses.{i}.stop_date", c.stop_date)
    for i, v in enumerate(bundle.visits):
        when(f"visits.{i}.date", v.date)
    for i, a in enumerate(bundle.adverse_events):
        when(f"adverse_events.{i}.date", a.date)
        if a.course_index is not None and a.course_index >= len(bundle.courses):
            p.append(f"adverse_events.{i}.course_index: {a.course_index} but the bundle has "
                     f"{len(bundle.courses)} course(s)")
    for i, h in enumerate(bundle.hsct):
        when(f"hsct.{i}.date", h.date)
        when(f"hsct.{i}.chimerism_date", h.chimerism_date)
    return p


def parse(model: type[_In], data: Any, what: str) -> Any:
    """Validate ``data`` into ``model`` or raise :class:`ValidationFailed` with every problem listed."""
    from .errors import ValidationFailed

    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(describe_errors(exc), what) from None
