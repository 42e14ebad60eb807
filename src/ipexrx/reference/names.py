"""Name tables: the normalised names a user may type, mapped to record ids.

Kept apart from :mod:`ipexrx.reference.lookup` (which needs the knowledge base) because the
compiled view cache stores these tables and must resolve a name without loading the knowledge
base or its schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import AmbiguousQueryError, NotFoundError

_STRIP = re.compile(r"[\s\-_/.,'()\u2010-\u2015]+")
MIN_PREFIX = 4


def normalise(name: str) -> str:
    """The lookup key of a name: case-folded, without spaces, hyphens, slashes, dots or quotes."""
    return _STRIP.sub("", name.casefold())


@dataclass
class NameTable:
    """Normalised name -> record ids, plus the display names used for suggestions."""

    kind: str
    keys: dict[str, set[str]] = field(default_factory=dict)
    display: dict[str, str] = field(default_factory=dict)  # display name -> record id

    def add(self, rid: str, names: Iterable[str | None]) -> None:
        for name in names:
            if not name:
                continue
            key = normalise(name)
            if key:
                self.keys.setdefault(key, set()).add(rid)
                self.display.setdefault(name, rid)

    def resolve(self, query: str, *, allow_prefix: bool) -> str:
        key = normalise(query)
        if not key:
            raise NotFoundError(self.kind, query, [])
        ids = self.keys.get(key)
        if not ids and allow_prefix and len(key) >= MIN_PREFIX:
            ids = {rid for k, rids in self.keys.items() if k.startswith(key) for rid in rids}
        if ids and len(ids) == 1:
            return next(iter(ids))
        if ids:
            raise AmbiguousQueryError(self.kind, query, sorted(ids))
        raise NotFoundError(self.kind, query, self.suggest(query))

    def suggest(self, query: str, limit: int = 5) -> list[str]:
        """Record ids whose names are closest to ``query`` (typo-tolerant)."""
        from rapidfuzz import fuzz, process, utils

        names = list(self.display)
        found = process.extract(query, names, scorer=fuzz.WRatio, processor=utils.default_process,
                                limit=limit * 4, score_cutoff=70)
        out: list[str] = []
        for name, _score, _i in found:
            rid = self.display[name]
            if rid not in out:
                out.append(rid)
        return out[:limit]


_COMMAND = {"drug": "drug", "drug class": "class", "manifestation": "manifestation"}
# Prefixes are accepted for classes and manifestations only; see ipexrx.reference.lookup.
ALLOW_PREFIX = {"drug": False, "class": True, "manifestation": True}


def resolve_in(tables: dict[str, NameTable], kind: str, query: str, *, allow_prefix: bool) -> str:
    """Resolve ``query`` in ``tables[kind]``; on a miss, say if the name is a record of another kind."""
    try:
        return tables[kind].resolve(query, allow_prefix=allow_prefix)
    except NotFoundError as exc:
        key = normalise(query)
        elsewhere = [
            f"{_COMMAND[t.kind]} {sorted(t.keys[key])[0]}"
            for k, t in tables.items() if k != kind and key in t.keys and len(t.keys[key]) == 1
        ]
        if elsewhere:
            raise NotFoundError(exc.kind, exc.query, exc.suggestions, elsewhere) from None
        raise
