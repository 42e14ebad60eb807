"""Typed plain views of the FHIR R4 resources ipexrx reads, holding only the elements the rules use.

Why not the full FHIR models for every read: a chart of a few dozen resources took ~1.5 ms to
validate with fhir.resources (every element of every resource, with Python validators), which made
the validation cost more than the assessment itself; a CDS service hears of every chart an EHR opens,
and a population screen reads hundreds of thousands. These models declare the elements our readers
look at -- with FHIR's JSON types (text is a JSON string, a decimal a JSON number, a date FHIR's date
pattern) -- and ignore everything else, so a resource is checked exactly as far as it is read, in
pydantic-core, in a few microseconds. A resource whose read elements have the wrong shape is
rejected with the same located "expected ..., got ..." issue as before.

Full validation of every element is still available: :func:`strict_issue` runs fhir.resources' R4B
model (the ``--strict`` option of the commands).

Two libraries, one declaration: the pydantic models below declare what is read and word the located
issue when a resource is refused; :func:`parse` reads with msgspec Structs derived from them when this
module is imported (:func:`_struct`): about half the time across a chart (the benchmark's 21 resources:
~113 us -> ~55 us; up to five times faster on a resource read again and again, when caches are warm).
A resource the Struct refuses goes to its pydantic model, which words the
issue -- or, should the two ever disagree, accepts it and is used instead. A property test holds them
to the same answers (``tests/patient/test_fhir_views.py``).

This is the one place FHIR JSON becomes Python objects: the patient reader (``patient.fhir``, used by
assess, the CDS service and the population screen's safety check) and the dosing reader
(``dosing.fhir_input``) both parse with :func:`parse`.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any, ClassVar

import msgspec
from pydantic import (
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
)
from pydantic.types import Strict

from .errors import InputIssue
from .model import issues_from_validation

# FHIR R4 primitive patterns (https://hl7.org/fhir/R4/datatypes.html), for the elements we read.
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
DATE_PATTERN = _YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?"
_TIME = r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
DATETIME_PATTERN = _YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(" + _TIME + r")?)?)?"
INSTANT_PATTERN = _YEAR + r"-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])" + _TIME
_PATTERN_NAMES = {f"^{DATE_PATTERN}$": "a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)",
                  f"^{DATETIME_PATTERN}$": "a FHIR dateTime (YYYY-MM-DD, optionally with a time and zone)",
                  f"^{INSTANT_PATTERN}$": "a FHIR instant (YYYY-MM-DDThh:mm:ss with zone)"}

Str = StrictStr
Num = StrictFloat  # a JSON number (an integer too); never a string or true/false
Date = Annotated[str, StringConstraints(strict=True, pattern=f"^{DATE_PATTERN}$")]
DateTime = Annotated[str, StringConstraints(strict=True, pattern=f"^{DATETIME_PATTERN}$")]
Instant = Annotated[str, StringConstraints(strict=True, pattern=f"^{INSTANT_PATTERN}$")]


class Element(BaseModel):
    """A FHIR element: unknown members are ignored (we check what we read, not what we do not)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Coding(Element):
    system: Str | None = None
    code: Str | None = None
    display: Str | None = None


class CodeableConcept(Element):
    coding: list[Coding] | None = None
    text: Str | None = None


class Quantity(Element):
    value: Num | None = None
    unit: Str | None = None
    system: Str | None = None
    code: Str | None = None


class Period(Element):
    start: DateTime | None = None
    end: DateTime | None = None


class Reference(Element):
    reference: Str | None = None
    display: Str | None = None


class Annotation(Element):
    text: Str | None = None


class ReferenceRange(Element):
    low: Quantity | None = None
    high: Quantity | None = None


class TimingRepeat(Element):
    frequency: StrictInt | None = None
    period: Num | None = None
    periodUnit: Str | None = None
    boundsPeriod: Period | None = None


class Timing(Element):
    code: CodeableConcept | None = None
    repeat: TimingRepeat | None = None


class DoseAndRate(Element):
    doseQuantity: Quantity | None = None


class Dosage(Element):
    text: Str | None = None
    route: CodeableConcept | None = None
    timing: Timing | None = None
    doseAndRate: list[DoseAndRate] | None = None


class AdministrationDosage(Element):
    dose: Quantity | None = None
    route: CodeableConcept | None = None


class Resource(Element):
    resourceType: ClassVar[str] = ""
    id: Str | None = None

    def get_resource_type(self) -> str:
        """The FHIR resource type (the same call fhir.resources models answer)."""
        return self.resourceType


class Patient(Resource):
    resourceType: ClassVar[str] = "Patient"
    gender: Str | None = None
    birthDate: Date | None = None


class Condition(Resource):
    resourceType: ClassVar[str] = "Condition"
    clinicalStatus: CodeableConcept | None = None
    verificationStatus: CodeableConcept | None = None
    code: CodeableConcept | None = None
    note: list[Annotation] | None = None
    onsetDateTime: DateTime | None = None
    onsetPeriod: Period | None = None
    onsetString: Str | None = None


class Medication(Resource):
    resourceType: ClassVar[str] = "Medication"
    code: CodeableConcept | None = None


class _MedicationUse(Resource):
    status: Str | None = None
    medicationCodeableConcept: CodeableConcept | None = None
    medicationReference: Reference | None = None
    # Contained resources are kept raw here and parsed on use (only a contained Medication is read).
    contained: list[dict[str, Any]] | None = None


class MedicationStatement(_MedicationUse):
    resourceType: ClassVar[str] = "MedicationStatement"
    dosage: list[Dosage] | None = None
    effectiveDateTime: DateTime | None = None
    effectivePeriod: Period | None = None


class MedicationRequest(_MedicationUse):
    resourceType: ClassVar[str] = "MedicationRequest"
    intent: Str | None = None
    dosageInstruction: list[Dosage] | None = None
    authoredOn: DateTime | None = None


class MedicationAdministration(_MedicationUse):
    resourceType: ClassVar[str] = "MedicationAdministration"
    dosage: AdministrationDosage | None = None
    effectiveDateTime: DateTime | None = None
    effectivePeriod: Period | None = None


class ObservationComponent(Element):
    """What an Observation and each of its components share: a code and a result."""

    code: CodeableConcept | None = None
    valueQuantity: Quantity | None = None
    valueString: Str | None = None
    valueCodeableConcept: CodeableConcept | None = None
    valueBoolean: StrictBool | None = None
    interpretation: list[CodeableConcept] | None = None
    referenceRange: list[ReferenceRange] | None = None


class Observation(ObservationComponent, Resource):
    resourceType: ClassVar[str] = "Observation"
    status: Str | None = None
    effectiveDateTime: DateTime | None = None
    effectivePeriod: Period | None = None
    issued: Instant | None = None
    component: list[ObservationComponent] | None = None


class Procedure(Resource):
    resourceType: ClassVar[str] = "Procedure"
    status: Str | None = None
    code: CodeableConcept | None = None
    performedDateTime: DateTime | None = None
    performedPeriod: Period | None = None
    performedString: Str | None = None


class Immunization(Resource):
    resourceType: ClassVar[str] = "Immunization"
    status: Str | None = None
    vaccineCode: CodeableConcept | None = None
    occurrenceDateTime: DateTime | None = None
    occurrenceString: Str | None = None


MODELS: dict[str, type[Resource]] = {m.resourceType: m for m in (
    Patient, Condition, Medication, MedicationStatement, MedicationRequest, MedicationAdministration, Observation,
    Procedure, Immunization)}


class InvalidResource(Exception):
    """A resource whose elements we read do not have FHIR's shape; ``issue`` says where and how."""

    def __init__(self, issue: InputIssue):
        super().__init__(f"{issue.path}: expected {issue.expected}, got {issue.got}")
        self.issue = issue


def _named(issue: InputIssue) -> InputIssue:
    name = _PATTERN_NAMES.get(issue.expected.removeprefix("text matching "))
    return InputIssue(issue.path, name, issue.got) if name else issue


class View(msgspec.Struct, frozen=True):
    """Base of the derived views: answers what a :class:`Resource` answers beyond its elements."""

    resourceType: ClassVar[str] = ""

    def get_resource_type(self) -> str:
        """The FHIR resource type (the same call fhir.resources models answer)."""
        return self.resourceType


_STRUCTS: dict[type[BaseModel], type[msgspec.Struct]] = {}


def _struct(model: type[BaseModel]) -> type[msgspec.Struct]:
    """The msgspec Struct accepting exactly what ``model`` accepts, with the same attributes.

    Every field must be optional with a None default (a view reads what is there); a type this
    translation does not know stops the import rather than being read loosely."""
    if model in _STRUCTS:
        return _STRUCTS[model]
    fields = []
    for name, info in model.model_fields.items():
        if info.default is not None or info.alias not in (None, name):
            raise TypeError(f"{model.__name__}.{name}: a view field must default to None, without an alias")
        fields.append((name, _msgspec_type(info.annotation, info.metadata), None))
    namespace: dict[str, Any] = {"__doc__": f"Fast view of {model.__name__} (derived from it; see the module)."}
    if issubclass(model, Resource):
        namespace["resourceType"] = model.resourceType
    struct = msgspec.defstruct(model.__name__, fields, bases=(View,), namespace=namespace, frozen=True,
                               module=__name__)
    _STRUCTS[model] = struct
    return struct


def _msgspec_type(tp: Any, metadata: list[Any] | tuple[Any, ...] = ()) -> Any:
    """A pydantic annotation (with its constraint metadata) as the msgspec type with the same checks."""
    pattern = None
    for m in metadata:
        if isinstance(m, StringConstraints) and m.pattern is not None:
            pattern = m.pattern
        elif not isinstance(m, Strict) and not (isinstance(m, StringConstraints) and m.strict and m.pattern is None):
            raise TypeError(f"a view constraint this translation does not know: {m!r}")
    if pattern is not None and not isinstance(pattern, str):
        pattern = pattern.pattern
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *meta = typing.get_args(tp)
        return _msgspec_type(base, [*metadata, *meta])
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_msgspec_type(a, metadata) for a in typing.get_args(tp))]  # noqa: UP007
    if tp is type(None):
        return None
    if origin is list:
        (item,) = typing.get_args(tp)
        return list[_msgspec_type(item)]  # type: ignore[misc]
    if tp == dict[str, Any]:
        return dict[str, Any]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _struct(tp)
    if tp is str and pattern is not None:
        # pydantic-core's regex ends at '$' only at the very end; Python's re also before a final newline
        return Annotated[str, msgspec.Meta(pattern=re.sub(r"\$$", r"\\Z", pattern))]
    if tp in (str, float, int, bool):
        return tp  # pydantic's Strict: msgspec never coerces text to numbers, nor bool to int
    raise TypeError(f"a view type this translation does not know: {tp!r}")


VIEWS: dict[str, type[msgspec.Struct]] = {name: _struct(model) for name, model in MODELS.items()}


def parse(raw: dict[str, Any], path: str = "$") -> Any:
    """The typed view of one resource (a derived Struct; the pydantic model's instance in the one case
    where the model accepts what the Struct refused); raises :class:`InvalidResource` (first located
    issue) or ``KeyError`` for a resource type no reader uses (callers check :data:`MODELS` first)."""
    rtype = raw["resourceType"]
    view = VIEWS[rtype]
    try:
        return msgspec.convert(raw, view)
    except msgspec.ValidationError:
        pass
    try:
        return MODELS[rtype].model_validate(raw)
    except ValidationError as exc:
        raise InvalidResource(_named(issues_from_validation(exc, path)[0])) from None


def strict_issue(raw: dict[str, Any], path: str = "$") -> InputIssue | None:
    """Full FHIR R4 validation of every element with fhir.resources' R4B model (``--strict``): the
    first located issue, or None when the resource is valid."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(raw["resourceType"]).model_validate(raw)
    except ValidationError as exc:
        return issues_from_validation(exc, path)[0]
    except (TypeError, ValueError, KeyError) as exc:  # fhir.resources may raise these for odd input
        return InputIssue(path, "a valid FHIR R4 resource", type(exc).__name__)
    return None
