"""Input errors: the only exceptions that reading or assessing a patient may raise.

Why a hierarchy with located issues: the people who hit these errors are integrators feeding us
EHR exports and clinicians typing a JSON file. Both need to know *where* the problem is (a JSON
path such as ``$.medications[2].dose.unit``), *what we expected* and *what arrived*, all at
once rather than one per run. Anything else escaping ``assess`` is a bug (the property tests pin
that).

Hierarchy::

    PatientInputError            the input cannot be assessed safely (has ``issues``)
      MalformedInputError        not parseable at all (broken JSON / NDJSON line, not an object)
      UnitError                  a value a rule needs has a missing, unknown or ambiguous unit
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MISSING = "this required field"  # InputIssue.expected of a required field that is absent
UNKNOWN_FIELD = "no such field (check spelling; see docs/patient-format.md)"  # ... of a key the format lacks


@dataclass(frozen=True)
class InputIssue:
    """One located problem: ``path`` is a JSON path (``$`` is the document root)."""

    path: str
    expected: str
    got: str

    def __str__(self) -> str:
        return f"{self.path}: expected {self.expected}, got {self.got}"

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "expected": self.expected, "got": self.got}


class PatientInputError(ValueError):
    """The patient record cannot be assessed safely; ``issues`` lists every located problem."""

    def __init__(self, issues: list[InputIssue] | InputIssue, summary: str | None = None):
        self.issues: list[InputIssue] = [issues] if isinstance(issues, InputIssue) else list(issues)
        if not self.issues:
            self.issues = [InputIssue("$", "a usable patient record", "an unusable one")]
        head = summary or f"patient input has {len(self.issues)} problem(s)"
        lines = "\n".join(f"  - {i}" for i in self.issues[:50])
        more = f"\n  ... and {len(self.issues) - 50} more" if len(self.issues) > 50 else ""
        super().__init__(f"{head}:\n{lines}{more}")
        self.summary = head

    def to_dict(self) -> dict[str, object]:
        return {"error": type(self).__name__, "message": self.summary,
                "issues": [i.to_dict() for i in self.issues]}


class MalformedInputError(PatientInputError):
    """The input is not parseable (broken JSON, not an object, unknown document kind)."""


class UnitError(PatientInputError):
    """A value that a rule needs has a missing, unknown or ambiguous unit; we never guess units."""


def _short(value: object, limit: int = 60) -> str:
    """A short printable rendering of an offending value for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_PLACE = {"medications": "medication", "labs": "lab result", "immunizations": "immunization",
          "infections": "infection", "manifestations": "manifestation", "entry": "FHIR Bundle entry",
          "procedures": "procedure", "vitals": "vital sign", "records": "record"}
_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]")


def plain_location(path: str | None) -> str:
    """Where a datum sits in the input, in words for a reader: ``$.medications[11].drug`` ->
    ``medication 12 (drug)``, ``$.entry[3].resource`` -> ``FHIR Bundle entry 4``. (The JSON path itself
    stays in the JSON output for editors and integrators.)"""
    if not path:
        return ""
    parts: list[str] = []
    names: list[str] = []  # field names since the last list index
    for m in _STEP.finditer(path):
        if m.group(1) is not None:
            names.append(m.group(1))
        else:
            name = names.pop() if names else "item"
            parts += [n.replace("_", " ") for n in names]
            parts.append(f"{_PLACE.get(name, name.replace('_', ' '))} {int(m.group(2)) + 1}")
            names = []
    fields = [n.replace("_", " ") for n in names if n != "resource"]
    if not parts:
        return ", ".join(fields) or "the record"
    where = ", ".join(parts)
    return where + (f" ({', '.join(fields)})" if fields else "")


_ITEM = {**_PLACE, "entry": "entry"}  # a list's items, in words (the record's lists; FHIR lists keep their name)
_SEE_THROUGH = {"resource"}  # a Bundle entry's resource is the entry, for a reader


def _entry_label(entry: object) -> str:
    """'Observation, id "o1"' for a Bundle entry whose resource is known, else ''."""
    res = entry.get("resource") if isinstance(entry, dict) else None
    if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
        return ""
    rid = res.get("id")
    return res["resourceType"] + (f', id "{rid}"' if isinstance(rid, str) and rid else "")


def describe_path(path: str | None, document: Any = None, numbered_entries: bool = True) -> str:
    """An issue's JSON path in words, for every human face (the JSON output keeps the path itself):

    ``$.diagnosis`` -> ``field "diagnosis"``; ``$.demographics.weight_kg`` -> ``demographics, field
    "weight_kg"``; ``$.medications[0].dose`` -> ``medication 1, field "dose"`` (items counted from 1);
    ``$.entry[3].resource.valueQuantity.value`` -> ``entry 4 (Observation, id "o1"), element
    "valueQuantity.value"`` (type and id read from ``document``, the decoded input, when given);
    ``$`` -> ``the whole document``. A FHIR reader's note ``$.entry[3].resource (field dose.unit)``
    becomes ``..., field "dose.unit"``. Anything that is not a JSON path is returned as it is.
    ``numbered_entries=False``: an entry is named by its resource alone (``Observation, id "o1"``), for a
    Bundle the reader never saw (assembled from other files)."""
    from .jsonpos import path_steps

    if not path:
        return "the whole document"
    steps = path_steps(path)
    if steps is None:
        return path
    note = path.partition(" (field ")[2].rstrip(")")
    phrases: list[str] = []
    names: list[str] = []  # member names since the last list item
    node = document
    fhir = False
    for step in steps:
        if isinstance(step, str):
            node = node.get(step) if isinstance(node, dict) else None
            if not (names == [] and phrases and step in _SEE_THROUGH):
                names.append(step)
            continue
        node = node[step] if isinstance(node, list) and 0 <= step < len(node) else None
        name = names.pop() if names else "item"
        phrases += names
        names = []
        label = _entry_label(node) if name == "entry" else ""
        fhir = fhir or name == "entry"
        if name == "entry" and label and not numbered_entries:
            phrases.append(label)
        else:
            phrases.append(f"{_ITEM.get(name, name)} {step + 1}" + (f" ({label})" if label else ""))
    if names and not phrases and len(names) > 1:
        phrases.append(names.pop(0))
    if note and fhir and names:  # a reader's note inside a FHIR element: doseQuantity + value
        names, note = names + note.split("."), ""
    if names:
        phrases.append(f'{"element" if fhir else "field"} "{".".join(names)}"')
    if note:
        phrases.append(f'field "{note}"')
    return ", ".join(phrases) or "the whole document"


def element_words(path: str, resource_path: str) -> str:
    """An element of one FHIR resource in words, relative to the resource at ``resource_path`` (a warning that
    names the resource already): ``$.entry[3].resource.dosage[0].timing`` -> ``dosage 1, element "timing"``."""
    if not path.startswith(resource_path):
        return describe_path(path)
    words = describe_path("$.entry[0].resource" + path[len(resource_path):])
    return words.removeprefix("entry 1").removeprefix(", ") or "the resource"


# A FHIR resource in clinical words, for a card a clinician reads in the EHR: resourceType -> (noun, the word
# before the drug's or test's name). A MedicationRequest whose status is "draft" is "the draft order".
RESOURCE_WORDS: dict[str, tuple[str, str]] = {
    "MedicationRequest": ("medication order", "for"), "MedicationStatement": ("medication", ""),
    "MedicationAdministration": ("medication given", ""), "Medication": ("medicine", ""),
    "Observation": ("lab result", "for"), "Immunization": ("vaccination", "with"), "Condition": ("diagnosis", ""),
    "Procedure": ("procedure", ""), "AllergyIntolerance": ("allergy", "to"), "Patient": ("patient", ""),
}
_NAME_ELEMENT = {"MedicationRequest": "medicationCodeableConcept", "MedicationStatement": "medicationCodeableConcept",
                 "MedicationAdministration": "medicationCodeableConcept", "Medication": "code",
                 "Observation": "code", "Immunization": "vaccineCode", "Condition": "code", "Procedure": "code",
                 "AllergyIntolerance": "code"}
# A FHIR element (its path inside the resource, list positions left out), or a field of the ipexrx patient
# format that a reader's note names (" (field dose.unit)"), in words. The longest matching tail wins:
# "dosageInstruction.doseAndRate.doseQuantity.value" is a "dose" by its tail "doseQuantity.value".
ELEMENT_WORDS: dict[str, str] = {
    # medication orders and statements
    "doseQuantity.value": "dose", "doseQuantity.unit": "dose unit", "doseQuantity.code": "dose unit",
    "doseQuantity.system": "dose unit system", "doseQuantity": "dose", "doseRange": "dose range",
    "rateQuantity": "rate", "route": "route", "timing": "timing", "timing.repeat": "dosing frequency",
    "timing.repeat.frequency": "dosing frequency", "timing.repeat.period": "dosing interval",
    "timing.repeat.periodUnit": "dosing interval unit", "boundsPeriod.start": "start date",
    "boundsPeriod.end": "end date", "dosageInstruction": "dosage", "dosage": "dosage", "text": "text",
    "medicationCodeableConcept": "medicine", "medicationReference": "medicine", "authoredOn": "date ordered",
    "effectivePeriod.start": "start date", "effectivePeriod.end": "end date", "intent": "intent",
    # results, vaccinations, diagnoses, procedures
    "valueQuantity.value": "value", "valueQuantity.unit": "unit", "valueQuantity.code": "unit",
    "valueQuantity.system": "unit system", "valueQuantity": "value", "valueString": "value",
    "valueCodeableConcept": "value", "referenceRange.high.value": "upper reference limit",
    "referenceRange.low.value": "lower reference limit", "referenceRange.high.unit": "upper reference limit unit",
    "referenceRange.low.unit": "lower reference limit unit", "referenceRange.high.code": "upper reference limit unit",
    "referenceRange.low.code": "lower reference limit unit", "referenceRange": "reference range",
    "component": "component",
    "effectiveDateTime": "date", "issued": "date reported", "occurrenceDateTime": "date", "onsetDateTime": "onset date",
    "recordedDate": "date recorded", "performedDateTime": "date", "performedPeriod.start": "date",
    "code": "code", "code.coding": "code", "vaccineCode": "vaccine code", "category": "category",
    "status": "status", "clinicalStatus": "clinical status", "verificationStatus": "verification status",
    "subject": "patient reference", "patient": "patient reference",
    # the patient
    "birthDate": "date of birth", "gender": "sex", "deceasedDateTime": "date of death",
    # fields of the ipexrx patient format (a FHIR reader's note)
    "value": "value", "unit": "unit", "date": "date", "dose": "dose", "dose.value": "dose", "dose.unit": "dose unit",
    "start_date": "start date", "end_date": "end date", "birth_date": "date of birth", "weight_kg": "weight",
    "height_cm": "height", "sex": "sex", "drug": "medicine", "test": "test", "upper_limit": "upper reference limit",
    "frequency": "dosing frequency",
}
# A field of the ipexrx patient format that a reader's note names, as the FHIR element it was read from, where
# that is one element: the note " (field value)" on an Observation is its valueQuantity.value.
NOTE_ELEMENTS: dict[tuple[str, str], str] = {
    ("Observation", "value"): "valueQuantity.value", ("Observation", "unit"): "valueQuantity.unit",
    ("Observation", "upper_limit"): "referenceRange.high.value",
}
_COMPARISON = {">=": "at least", "<=": "at most", ">": "more than", "<": "less than"}


def element_in_words(names: list[str]) -> str:
    """An element (its member names, list positions left out) in words, or '' when the table lacks it."""
    for start in range(len(names)):
        words = ELEMENT_WORDS.get(".".join(names[start:]))
        if words:
            return words
    return ""


def _clean(text: object, limit: int = 60) -> str:
    out = " ".join(str(text).split())
    return out if len(out) <= limit else out[: limit - 1].rstrip() + "…"


def _concept_name(concept: object) -> str:
    if not isinstance(concept, dict):
        return ""
    if isinstance(concept.get("text"), str) and concept["text"].strip():
        return _clean(concept["text"])
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and isinstance(coding.get("display"), str) and coding["display"].strip():
            return _clean(coding["display"])
    return ""


def resource_in_words(resource: object) -> str:
    """A FHIR resource as a clinician would name it, its type and id after it for the EHR integrator:
    ``the draft order for cycloSPORINE 25 MG (MedicationRequest draft-csa)``, ``the lab result for Tacrolimus
    trough (Observation obs-2)``, ``the patient (Patient p1)``; '' when ``resource`` is not a resource."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return ""
    rtype = resource["resourceType"]
    noun, joint = RESOURCE_WORDS.get(rtype, (f"{rtype} resource", ""))
    if rtype == "MedicationRequest" and resource.get("status") == "draft":
        noun = "draft order"
    if rtype == "Observation" and "vital-signs" in json_text(resource.get("category")):
        noun, joint = "vital sign", ""
    name = _concept_name(resource.get(_NAME_ELEMENT.get(rtype, "")))
    rid = resource.get("id")
    tag = f"{rtype} {_clean(rid, 64)}" if isinstance(rid, str) and rid else rtype
    return f"the {noun}" + (f" {joint}" if joint and name else "") + (f" {name}" if name else "") + f" ({tag})"


def json_text(value: object) -> str:
    """Every string inside a decoded JSON value, joined (to look for a code without walking the shape)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(json_text(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(json_text(v) for v in value)
    return ""


def _quoted(got: str) -> str:
    """An offending value as a reader sees it: a Python-quoted text ``'ten'`` in double quotes."""
    if len(got) >= 2 and got[0] == got[-1] == "'" and '"' not in got:
        return f'"{got[1:-1]}"'
    return got


def _expected_words(expected: str) -> str:
    """``a number > 0.0`` -> ``a number more than 0``."""
    return re.sub(r"(>=|<=|>|<) ?(-?\d+(?:\.\d+)?)",
                  lambda m: f"{_COMPARISON[m.group(1)]} {m.group(2).removesuffix('.0')}", expected)


def problem_sentence(issue: InputIssue, subject: str = "it") -> str:
    """What is wrong as a sentence about ``subject``: ``its dose (doseQuantity.value) should be a number; it is
    "ten"``; ``... is missing; it is required``."""
    if issue.expected == MISSING:
        return f"{subject} is missing; it is required"
    if issue.expected == UNKNOWN_FIELD:
        return f"{subject} is not a field of the ipexrx patient format (check the spelling; see docs/patient-format.md)"
    return f"{subject} should be {_expected_words(issue.expected)}; it is {_quoted(issue.got)}"


def issue_in_words(issue: InputIssue, document: Any = None, named: bool = True) -> str:
    """One problem of a FHIR record in clinical words, for a clinician reading a card in the EHR: the resource
    first (see :func:`resource_in_words`), then the element in words with its FHIR name in parentheses, then
    what it should be and what it is::

        the draft order for cycloSPORINE 25 MG (MedicationRequest draft-csa): its dose (doseQuantity.value)
        should be a number more than 0; it is -50.0

    ``document``: the decoded Bundle the path points into; ``named=False``: the resource is not named (a card
    about it named it already): ``its dose (doseQuantity.value) should be ...``. A record without a Patient
    reads ``the record has no Patient resource``. No JSON path is shown (the JSON output keeps the path)."""
    from .jsonpos import path_steps

    if issue.path == "$.entry" and issue.expected == "one Patient resource":
        return _no_patient(document)
    steps = path_steps(issue.path) or []
    note = issue.path.partition(" (field ")[2].rstrip(")")
    node, resource, inside = document, None, None
    for i, step in enumerate(steps):
        if isinstance(step, str):
            node = node.get(step) if isinstance(node, dict) else None
        else:
            node = node[step] if isinstance(node, list) and 0 <= step < len(node) else None
        if step == "resource" and i >= 2 and steps[i - 2] == "entry" and isinstance(steps[i - 1], int):
            resource, inside = node, steps[i + 1:]
    place = resource_in_words(resource) if inside is not None else ""
    if not place:
        return f"{describe_path(issue.path, document)}: {problem_sentence(issue)}"
    inside = inside or []
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    note = NOTE_ELEMENTS.get((str(rtype), note), note) if not inside or isinstance(inside[-1], int) else note
    noted = note.split(".") if note else []
    names = [s for s in inside if isinstance(s, str)] + noted
    if not names:
        return f"{place}: {problem_sentence(issue)}" if named else problem_sentence(issue)
    last = max((k for k, s in enumerate(inside) if isinstance(s, int)), default=-1)
    # the element's own name: its members after its last list position
    fhir_name = ".".join([str(s) for s in inside[last + 1:]] + noted) or ".".join(names)
    words = element_in_words(names)
    subject = (f"its {words} ({fhir_name})" if words and words != fhir_name.replace("_", " ")
               else f"its {words}" if words else f'its element "{fhir_name}"')
    # a second dosage instruction, ...; a component or reference range is always numbered (its value is not
    # the result's own value)
    later = [f"{ELEMENT_WORDS.get(str(inside[k - 1]), inside[k - 1])} {s + 1}" for k, s in enumerate(inside)
             if isinstance(s, int) and k > 0 and (s > 0 or inside[k - 1] in _ALWAYS_NUMBERED)]
    if later:
        subject += " in " + ", ".join(later)
    return f"{place}: {problem_sentence(issue, subject)}" if named else problem_sentence(issue, subject)


_ALWAYS_NUMBERED = frozenset({"component", "referenceRange"})


def _no_patient(document: Any) -> str:
    """A record without a usable Patient, in words: none at all, or one that is not valid FHIR R4 (and why)."""
    entries = document.get("entry") if isinstance(document, dict) else None
    patients = [(i, e["resource"]) for i, e in enumerate(entries or []) if isinstance(e, dict)
                and isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == "Patient"]
    if not patients:
        return "the record has no Patient resource"
    from .fhir_types import InvalidResource, parse

    i, raw = patients[0]
    try:
        parse(raw, f"$.entry[{i}].resource")
    except InvalidResource as exc:
        return f"the record has no Patient resource that can be read: {issue_in_words(exc.issue, document)}"
    except (KeyError, TypeError, ValueError):
        pass
    return "the record has no Patient resource that can be read"


def issue_problem(issue: InputIssue) -> str:
    """What is wrong, in words: ``required but missing``, or ``expected ..., got ...``."""
    if issue.expected == MISSING:
        return "required but missing"
    if issue.expected == UNKNOWN_FIELD:
        return "not a field of the ipexrx patient format (check the spelling; see docs/patient-format.md)"
    return f"expected {issue.expected}, got {issue.got}"


def issue_places(exc: PatientInputError, source: str | None = None, text: str | bytes | None = None,
                 document: Any = None, line: int | None = None, limit: int = 50,
                 numbered_entries: bool = True) -> list[str]:
    """Where each of the first ``limit`` issues of ``exc`` is, in words: ``bad.json, line 3, demographics,
    field "weight_kg"`` (no JSON path; the JSON outputs keep it).

    ``source``: the file's name (left out when None); ``text``: the input as read, to find each issue's
    line (a JSON or FHIR document); ``line``: the line when it is known already (an NDJSON batch line);
    ``document``: the decoded input (read from ``text`` when not given), for a Bundle entry's type and id;
    ``numbered_entries``: see :func:`describe_path`."""
    from .jsonpos import JsonLines

    issues = exc.issues[:limit]
    lines = JsonLines(text) if text is not None and line is None else None
    if document is None and text is not None and any(".entry[" in i.path for i in issues):
        import json

        try:
            raw = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
            document = json.loads(raw.removeprefix("\ufeff"))
        except (ValueError, RecursionError):
            document = None
    out = []
    for issue in issues:
        at = line if lines is None else lines.line(issue.path)
        out.append(", ".join(x for x in (source, f"line {at}" if at is not None else None,
                                         describe_path(issue.path, document, numbered_entries)) if x))
    return out


def issue_lines(exc: PatientInputError, source: str | None = None, text: str | bytes | None = None,
                document: Any = None, line: int | None = None, limit: int = 50) -> list[str]:
    """Each issue of ``exc`` as one sentence naming the file, the line and the field (no JSON path):
    ``bad.json, line 3, demographics, field "weight_kg": expected a number <= 250.0, got 400.0.``
    (arguments as for :func:`issue_places`)."""
    out = []
    for issue, where in zip(exc.issues, issue_places(exc, source, text, document, line, limit), strict=False):
        sentence = f"{where}: {issue_problem(issue)}"
        out.append(sentence if sentence.endswith(".") else sentence + ".")
    if len(exc.issues) > limit:
        out.append(f"... and {len(exc.issues) - limit} more problems (the JSON output lists them all).")
    return out


def json_path(loc: tuple[int | str, ...] | list[int | str], root: str = "$") -> str:
    """Render a pydantic/JSON location tuple as ``$.a.b[2].c``."""
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}"
    return out
