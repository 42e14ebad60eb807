"""The numbered sources of an assessment: one numbering for the terminal, the web page and the printout.

The assessment is walked in its reading order (alerts, then the HSCT section with its outcome figures
and follow-up, then the options per manifestation), and each source gets the number of its first use
(:mod:`ipexrx.reference.citations`). Every face looks the numbers up here, so ``[3]`` is the same
source wherever the same assessment is shown, and each face ends with the same numbered list.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..reference.citations import CitationNumbers, number_citations
from .models import Assessment, SourceRef


def cited_groups(a: Assessment) -> Iterator[list[SourceRef]]:
    """The sources of each cited statement of the assessment, in reading order."""
    for al in a.alerts:
        yield al.sources
    if a.hsct is not None:
        yield a.hsct.sources
        for f in a.hsct.figures:
            yield [f.source]
        for st in a.hsct.followup:
            yield st.sources
    for m in a.manifestations:
        for o in m.options:
            yield o.sources


def assessment_citations(a: Assessment) -> CitationNumbers[SourceRef]:
    """The assessment's sources, numbered in order of first use."""
    return number_citations(cited_groups(a))
