"""Numbered citations, one rule for every face: the web pages, the printed reports and the terminal.

A document cites sources inline as numbers (``[1]``, ``[2, 5]``) that point into a numbered list of
sources at its end. The numbers are assigned in order of first use, and one source (the same source
and the same section of it) keeps one number however often it is cited, so every number in the text
has an entry in the list and every entry is cited somewhere in the text.

Pure functions and a small value object, nothing about HTML or terminals: each face calls
:meth:`CitationNumbers.cite` (or :meth:`CitationNumbers.marker`) where it shows a statement, and
prints :meth:`CitationNumbers.entries` as its sources list. A face that must agree with another
face (an assessment shown in the terminal, on the web and on paper) numbers the document's
citations once, in reading order, before rendering (:func:`number_citations`), so all faces show
the same numbers for the same sources.

>>> from types import SimpleNamespace as S
>>> n = number_citations([[S(source="label-x", locator="5")], [S(source="paper-y", locator=None),
...                        S(source="label-x", locator="5")]])
>>> n.marker([S(source="paper-y", locator=None), S(source="label-x", locator="5")])
'[1, 2]'
>>> [k for k, _ in n.items()]
[1, 2]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Generic, Protocol, TypeVar


class Citable(Protocol):
    """Anything that names a source and, optionally, a section of it (a locator)."""

    @property
    def source(self) -> str: ...

    @property
    def locator(self) -> str | None: ...


C = TypeVar("C", bound=Citable)
Key = tuple[str, str | None]

MARKER_RE = re.compile(r"\[(\d+(?:, \d+)*)\]")


def citation_key(c: Citable) -> Key:
    """What makes two citations the same entry: the source and the section cited."""
    return (c.source, c.locator or None)


def format_marker(numbers: Sequence[int]) -> str:
    """``[1, 3]`` for the numbers given (ascending, each once); ``""`` for none."""
    nums = sorted(set(numbers))
    return "[" + ", ".join(map(str, nums)) + "]" if nums else ""


def numbers_in(text: str) -> list[int]:
    """Every citation number in a rendered text, in order (for checks that text and list agree)."""
    return [int(x) for m in MARKER_RE.finditer(text) for x in m.group(1).split(", ")]


class CitationNumbers(Generic[C]):
    """Sources numbered 1, 2, ... in order of first use; identical sources share one number."""

    def __init__(self) -> None:
        self._numbers: dict[Key, int] = {}
        self._entries: list[C] = []

    def cite(self, cites: Iterable[C]) -> list[int]:
        """The numbers of these citations (ascending, each once), numbering the new ones next."""
        out: set[int] = set()
        for c in cites:
            key = citation_key(c)
            n = self._numbers.get(key)
            if n is None:
                self._entries.append(c)
                n = self._numbers[key] = len(self._entries)
            out.add(n)
        return sorted(out)

    def marker(self, cites: Iterable[C]) -> str:
        """The inline marker (``[2, 7]``) for these citations; ``""`` when there are none."""
        return format_marker(self.cite(cites))

    def number_of(self, c: Citable) -> int | None:
        return self._numbers.get(citation_key(c))

    def entries(self) -> list[C]:
        """The sources list, entry ``i`` being number ``i + 1``."""
        return list(self._entries)

    def items(self) -> list[tuple[int, C]]:
        """``(number, source)`` pairs in number order."""
        return list(enumerate(self._entries, start=1))

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)


def number_citations(groups: Iterable[Iterable[C]]) -> CitationNumbers[C]:
    """Number a document's citations, given as groups (one per statement) in reading order."""
    numbers: CitationNumbers[C] = CitationNumbers()
    for group in groups:
        numbers.cite(group)
    return numbers
