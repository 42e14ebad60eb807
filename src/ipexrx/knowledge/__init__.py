"""Knowledge base: schema (pydantic), loader and validation. Knows nothing of the other layers.

The public names load lazily: importing a light submodule (``ipexrx.knowledge.cachefile``, used
by the reference view cache) must not import the pydantic schema, which is most of a lookup's
start-up cost.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .loader import KnowledgeBase, KnowledgeBaseError, Problem, get_kb, load_kb
    from .validate import validate_kb

_LAZY = {
    "KnowledgeBase": "loader", "KnowledgeBaseError": "loader", "Problem": "loader", "get_kb": "loader",
    "load_kb": "loader", "validate_kb": "validate",
}

__all__ = ["KnowledgeBase", "KnowledgeBaseError", "Problem", "get_kb", "load_kb", "validate_kb"]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'ipexrx.knowledge' has no attribute {name!r}")
    value = getattr(import_module(f".{mod}", __name__), name)
    globals()[name] = value  # later lookups (the service asks for get_kb on every call) skip this hook
    return value
