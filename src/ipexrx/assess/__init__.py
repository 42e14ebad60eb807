"""Assessment: from a patient record to a cited plan with safety alerts.

Knows the knowledge and patient layers only (no terminal, no web). Public API:

* :func:`assess` -- one patient (any supported input) -> :class:`Assessment`;
* :func:`assess_batch` -- NDJSON lines -> per-line results (errors located by line number);
* the output models and :func:`assessment_json_schema`; ``Assessment.to_fhir()``.
"""

from .batch import BatchLine, BatchResult, assess_batch, assess_batch_lines
from .engine import assess
from .models import (
    Alert,
    Assessment,
    DoseSuggestion,
    HsctStatus,
    ManifestationPlan,
    OptionView,
    Severity,
    SourceRef,
    Trigger,
    assessment_json_schema,
)
from .rules import RULES

__all__ = [
    "RULES", "Alert", "Assessment", "BatchLine", "BatchResult", "DoseSuggestion", "HsctStatus", "ManifestationPlan",
    "OptionView", "Severity", "SourceRef", "Trigger", "assess", "assess_batch", "assess_batch_lines",
    "assessment_json_schema",
]
