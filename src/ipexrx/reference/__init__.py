"""Reference views over the knowledge base, as typed Python (no terminal, no web).

Lookups resolve names the way a clinician types them (``Neoral``, ``rapamycin``, ``CsA``,
``HP:0100651``); views return pydantic models whose every statement carries resolved citations.
``search`` is a ranked, typo-tolerant full-text search. Unknown names raise
:class:`NotFoundError` with the closest matches; nothing is ever guessed.

With the default knowledge base (``kb=None``) the views are served from the compiled view cache
(:mod:`ipexrx.reference._viewcache`), which is why this module imports the knowledge base, the
view builders and the search engine only when they are needed. Pass ``kb=`` to compute a view
from a knowledge base you loaded yourself.

>>> from ipexrx.reference import drug_monograph
>>> drug_monograph("Rapamune").name
'sirolimus'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _viewcache
from .errors import AmbiguousQueryError, NotFoundError, ReferenceQueryError
from .models import (
    ClassView,
    DrugMonograph,
    ManifestationView,
    SearchHit,
    SearchResults,
    SourcesView,
    SummaryView,
)
from .names import normalise

if TYPE_CHECKING:
    from ..knowledge import KnowledgeBase
    from ..knowledge.schema import Drug, DrugClass, Manifestation

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
    "clear_view_cache",
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


def summary(kb: KnowledgeBase | None = None) -> SummaryView:
    """The IPEX medication summary: cure, principles, manifestation -> options, caveats, identifiers."""
    if kb is None:
        view = _viewcache.cached_view("summary")
        if view is not None:
            return view  # type: ignore[no-any-return]
    from . import views

    return views.summary(kb)


def manifestation_view(query: str, kb: KnowledgeBase | None = None) -> ManifestationView:
    """A manifestation (by id, name, synonym or HPO id) with options strongest evidence first."""
    if kb is None:
        view = _viewcache.cached_view("manifestation", query)
        if view is not None:
            return view  # type: ignore[no-any-return]
    from . import views

    return views.manifestation_view(query, kb)


def drug_monograph(query: str, kb: KnowledgeBase | None = None) -> DrugMonograph:
    """The full monograph of a drug named by generic name, brand or synonym (any case)."""
    if kb is None:
        view = _viewcache.cached_view("drug", query)
        if view is not None:
            return view  # type: ignore[no-any-return]
    from . import views

    return views.drug_monograph(query, kb)


def class_view(query: str, kb: KnowledgeBase | None = None) -> ClassView:
    """A drug class (by id, name, synonym or unique prefix): summary, parent chain, subclasses, members."""
    if kb is None:
        view = _viewcache.cached_view("class", query)
        if view is not None:
            return view  # type: ignore[no-any-return]
    from . import views

    return views.class_view(query, kb)


def list_sources(kb: KnowledgeBase | None = None) -> SourcesView:
    """The sources registry: what each citation id stands for, how it was verified, how often it is cited."""
    if kb is None:
        view = _viewcache.cached_view("sources")
        if view is not None:
            return view  # type: ignore[no-any-return]
    from . import views

    return views.list_sources(kb)


def search(text: str, limit: int = 10, kb: KnowledgeBase | None = None) -> SearchResults:
    """Ranked, typo-tolerant full-text search over the whole knowledge base (best first).

    See :mod:`ipexrx.reference.fulltext`; imported on first use so that lookups do not pay for
    the search index or rapidfuzz.
    """
    from .fulltext import search as _search

    return _search(text, limit=limit, kb=kb)


def find_drug(query: str, kb: KnowledgeBase | None = None) -> Drug:
    """The knowledge-base drug record named ``query`` (generic, brand, synonym, ATC code or RxCUI)."""
    from .lookup import find_drug as _find

    return _find(query, kb)


def find_class(query: str, kb: KnowledgeBase | None = None) -> DrugClass:
    """The knowledge-base class record named ``query`` (id, name, synonym, ATC code or unique prefix)."""
    from .lookup import find_class as _find

    return _find(query, kb)


def find_manifestation(query: str, kb: KnowledgeBase | None = None) -> Manifestation:
    """The knowledge-base manifestation record named ``query`` (id, name, synonym, HPO id or prefix)."""
    from .lookup import find_manifestation as _find

    return _find(query, kb)


def clear_view_cache() -> None:
    """Forget this process's copy of the compiled views (e.g. after editing the content in-process)."""
    _viewcache.clear()
