"""One entry point for every input: JSON text, bytes or an already-decoded object, ours or FHIR.

Why auto-detection: hospitals send FHIR Bundles, clinicians write our JSON; both end up as the same
:class:`PatientData` so the rules (and tests) see one shape. A document with ``resourceType`` is
FHIR; anything else must be an ipexrx patient record.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..knowledge.loader import KnowledgeBase
from .errors import InputIssue, PatientInputError
from .model import PatientRecord, decode_json, parse_record
from .normalize import InputWarning, PatientData, normalize


def load_record(source: str | bytes | dict[str, Any] | Any, kb: KnowledgeBase | None = None,
                strict: bool = False) -> tuple[PatientRecord, list[InputWarning], dict[str, str]]:
    """Decode and validate; returns the record, reader warnings (FHIR) and the FHIR location map.

    ``kb`` is used for FHIR condition codes (SNOMED CT / ICD-10 -> manifestation); default: standard KB.
    ``strict``: validate every element of a FHIR Bundle with fhir.resources (see ``patient.fhir``).
    """
    data = decode_json(bytes(source) if isinstance(source, bytearray) else source) \
        if isinstance(source, str | bytes | bytearray) else source
    if isinstance(data, dict) and "resourceType" in data:
        from .fhir import read_bundle, relocate, strip_private

        record_dict, warnings, locations = read_bundle(data, kb, strict=strict)
        try:
            record = parse_record(strip_private(record_dict))
        except PatientInputError as exc:
            raise type(exc)([InputIssue(relocate(i.path, locations), i.expected, i.got) for i in exc.issues],
                            exc.summary) from None
        return record, warnings, locations
    return parse_record(data), [], {}


def read_patient(source: str | bytes | dict[str, Any] | Any, kb: KnowledgeBase, as_of: dt.date,
                 strict: bool = False) -> PatientData:
    """Read any supported input into resolved, unit-normalised :class:`PatientData` (or raise PatientInputError)."""
    record, warnings, locations = load_record(source, kb, strict)
    try:
        data = normalize(record, kb, as_of)
    except PatientInputError as exc:
        if not locations:
            raise
        from .fhir import relocate

        raise type(exc)([InputIssue(relocate(i.path, locations), i.expected, i.got) for i in exc.issues],
                        exc.summary) from None
    if locations:
        from .fhir import relocate

        data.warnings = [w.model_copy(update={"path": relocate(w.path, locations)}) for w in data.warnings]
    data.warnings = warnings + data.warnings
    return data
