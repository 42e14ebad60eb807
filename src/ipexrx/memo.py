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
from contextlib import AbstractContextManager
from typing import Any, TypeVar

T = TypeVar("T")


def remembered(store: dict[Any, tuple[object, Any]], key: Hashable, owner: object, make: Callable[[], T],
               limit: int = 10_000, lock: AbstractContextManager[Any] | None = None) -> T:
    """``store[key]``'s value if it was made for ``owner`` (the same object, not an equal one), else
    ``make()``, kept for the next call. ``key`` should contain ``id(owner)``.

    ``lock``: for values that are costly to make (a knowledge base's indexes) and asked for from several
    threads at once (the CDS service's analysis pool): the value is then made under the lock, by one thread,
    and the others wait for it instead of making it again. The lookup itself never takes the lock."""
    known = store.get(key)
    if known is not None and known[0] is owner:
        return known[1]  # type: ignore[no-any-return]
    if lock is None:
        return _make(store, key, owner, make, limit)
    with lock:
        known = store.get(key)
        if known is not None and known[0] is owner:
            return known[1]  # type: ignore[no-any-return]
        return _make(store, key, owner, make, limit)


def _make(store: dict[Any, tuple[object, Any]], key: Hashable, owner: object, make: Callable[[], T],
          limit: int) -> T:
    value = make()
    if len(store) > limit:
        store.clear()
    store[key] = (owner, value)
    return value
