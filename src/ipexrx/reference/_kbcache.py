"""Per-knowledge-base memo for derived indexes (name tables, search index, citation counts).

A ``KnowledgeBase`` is an unhashable dataclass, and tests load several of them side by side, so
derived data is keyed by object identity and guarded by a weak reference: a new KB (e.g. after an
edit) never sees an index built from an old one.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from ..knowledge import KnowledgeBase, get_kb

T = TypeVar("T")

_memo: dict[tuple[int, str], tuple[weakref.ref[KnowledgeBase], Any]] = {}


def resolve_kb(kb: KnowledgeBase | None) -> KnowledgeBase:
    return kb if kb is not None else get_kb()


def memo(kb: KnowledgeBase, name: str, build: Callable[[KnowledgeBase], T]) -> T:
    key = (id(kb), name)
    hit = _memo.get(key)
    if hit is not None and hit[0]() is kb:
        return hit[1]  # type: ignore[no-any-return]
    value = build(kb)
    _memo[key] = (weakref.ref(kb), value)
    return value
