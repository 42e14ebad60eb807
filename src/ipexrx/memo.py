"""Values derived from long-lived objects (the knowledge base and its parts), remembered per object.

Why one helper: several hot paths derive text or numbers from knowledge-base objects that never change
while they live (a threshold's limit in another unit, a citation's Markdown line, a drug's thresholds).
Keying a dict by ``id(obj)`` is fast, but an id can be reused after its object is gone (a reloaded
knowledge base), so each entry keeps its owner and is used only while that very object is asked about.
The store is bounded by clearing it whole: these caches hold a few hundred entries in practice.

Depends on nothing but the standard library, so every layer may import it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


def remembered(store: dict[Any, tuple[object, Any]], key: Hashable, owner: object, make: Callable[[], T],
               limit: int = 10_000) -> T:
    """``store[key]``'s value if it was made for ``owner`` (the same object, not an equal one), else
    ``make()``, kept for the next call. ``key`` should contain ``id(owner)``."""
    known = store.get(key)
    if known is not None and known[0] is owner:
        return known[1]  # type: ignore[no-any-return]
    value = make()
    if len(store) > limit:
        store.clear()
    store[key] = (owner, value)
    return value
