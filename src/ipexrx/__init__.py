"""ipexrx: computable medication reference and decision support for IPEX syndrome.

The reference views are re-exported here lazily (``ipexrx.drug_monograph("Neoral")``), so that
``import ipexrx`` stays cheap for the CLI, which imports only what a command needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "summary": "ipexrx.reference",
    "find_drug": "ipexrx.reference",
    "drug_monograph": "ipexrx.reference",
    "find_manifestation": "ipexrx.reference",
    "manifestation_view": "ipexrx.reference",
    "find_class": "ipexrx.reference",
    "class_view": "ipexrx.reference",
    "list_sources": "ipexrx.reference",
    "search": "ipexrx.reference",
    "NotFoundError": "ipexrx.reference",
    "AmbiguousQueryError": "ipexrx.reference",
    "get_kb": "ipexrx.knowledge",
    "KnowledgeBaseError": "ipexrx.knowledge",
}

__all__ = [
    "AmbiguousQueryError",
    "KnowledgeBaseError",
    "NotFoundError",
    "__version__",
    "class_view",
    "drug_monograph",
    "find_class",
    "find_drug",
    "find_manifestation",
    "get_kb",
    "list_sources",
    "manifestation_view",
    "search",
    "summary",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .knowledge import KnowledgeBaseError, get_kb
    from .reference import (  # type: ignore[no-redef]
        AmbiguousQueryError,
        NotFoundError,
        class_view,
        drug_monograph,
        find_class,
        find_drug,
        find_manifestation,
        list_sources,
        manifestation_view,
        search,
        summary,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ipexrx' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
