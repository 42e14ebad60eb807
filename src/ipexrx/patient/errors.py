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


def json_path(loc: tuple[int | str, ...] | list[int | str], root: str = "$") -> str:
    """Render a pydantic/JSON location tuple as ``$.a.b[2].c``."""
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}"
    return out
