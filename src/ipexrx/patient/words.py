"""Case-insensitive word patterns that are fast on the text of ordinary charts.

Why: CPython's ``re`` tries every branch of a case-insensitive alternation at every position of the text,
so a list of words compiled with ``re.IGNORECASE`` (the infection words, the transplant words) took 6-17 us
for one condition's name; the same pattern without the flag, searched in the lower-cased text, takes 1-2 us,
because the engine can then skip to the positions where a branch's first letter occurs. A CDS call reads
every condition and procedure of every chart an EHR opens through such patterns.

The answers are exactly those of the case-insensitive pattern: the fast way is taken only for ASCII text,
where lower-casing and ``re.IGNORECASE`` agree (the pattern's letters are lower-case); any other text is
searched with the case-insensitive pattern itself (Unicode case folding has cases lower-casing does not
cover). ``tests/patient/test_words.py`` compares both on generated text.
"""

from __future__ import annotations

import re

_ESCAPE = re.compile(r"\\.")


class Words:
    """A case-insensitive pattern; :meth:`found` and :meth:`first` answer as ``re.search`` with
    ``re.IGNORECASE`` would."""

    def __init__(self, pattern: str):
        if any(ch.isupper() for ch in _ESCAPE.sub("", pattern)):
            raise ValueError(f"a Words pattern is written in lower case (escapes aside), got {pattern!r}")
        self.pattern = re.compile(pattern, re.IGNORECASE)
        self._lower = re.compile(pattern)

    def _search(self, text: str) -> re.Match[str] | None:
        if text.isascii():
            return self._lower.search(text.lower())
        return self.pattern.search(text)

    def found(self, text: str) -> bool:
        """Whether the pattern occurs in ``text``, ignoring case."""
        return self._search(text) is not None

    def first(self, text: str) -> str | None:
        """The first occurrence in ``text``, lower-cased (None when there is none)."""
        m = self._search(text)
        return m.group(0).lower() if m else None
