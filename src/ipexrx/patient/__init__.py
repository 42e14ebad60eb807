"""Patient input: our JSON format and FHIR R4 Bundles, resolved against the knowledge base.

Knows the knowledge layer only (no terminal, no web). Public API:

* :func:`read_patient` -- any input (JSON text/bytes/object, ours or FHIR) -> :class:`PatientData`;
* :class:`PatientRecord` and :func:`patient_json_schema` -- the documented input format;
* the error hierarchy :class:`PatientInputError` > :class:`MalformedInputError`, :class:`UnitError`.
"""

from .errors import InputIssue, MalformedInputError, PatientInputError, UnitError
from .model import FORMAT_ID, PatientRecord, patient_json_schema
from .normalize import InputWarning, PatientData
from .reader import load_record, read_patient

__all__ = [
    "FORMAT_ID", "InputIssue", "InputWarning", "MalformedInputError", "PatientData", "PatientInputError",
    "PatientRecord", "UnitError", "load_record", "patient_json_schema", "read_patient",
]
