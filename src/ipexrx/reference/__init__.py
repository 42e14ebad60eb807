"""Reference views over the knowledge base, as typed Python (no terminal, no web).

Lookups resolve names the way a clinician types them (``Neoral``, ``rapamycin``, ``CsA``,
``HP:0100651``); views return pydantic models whose every statement carries resolved citations.
``search`` is a ranked, typo-tolerant full-text search. Unknown names raise
:class:`NotFoundError` with the closest matches; nothing is ever guessed.

>>> from ipexrx.reference import drug_monograph
>>> drug_monograph("Rapamune").name
'sirolimus'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import AmbiguousQueryError, NotFoundError, ReferenceQueryError
from .lookup import find_class, find_drug, find_manifestation, normalise
from .models import (
    ClassView,
    DrugMonograph,
    ManifestationView,
    SearchHit,
    SearchResults,
    SourcesView,
    SummaryView,
)
from .views import class_view, drug_monograph, list_sources, manifestation_view, summary

if TYPE_CHECKING:
    from ..knowledge import KnowledgeBase


def search(text: str, limit: int = 10, kb: KnowledgeBase | None = None) -> SearchResults:
    """Ranked, typo-tolerant full-text search over the whole knowledge base (best first).

    See :mod:`ipexrx.reference.fulltext`; imported on first use so that lookups do not pay for
    the search index or rapidfuzz.
    """
    from .fulltext import search as _search

    return _search(text, limit=limit, kb=kb)

__all__ = [
    "AmbiguousQueryError",
    "ClassView",
    "DrugMonograph",
    "ManifestationView",
    "NotFoundError",
    "ReferenceQueryError",
    "SearchHit",
    "SearchResults",
    "SourcesView",
    "SummaryView",
    "class_view",
    "drug_monograph",
    "find_class",
    "find_drug",
    "find_manifestation",
    "list_sources",
    "manifestation_view",
    "normalise",
    "search",
    "summary",
]
