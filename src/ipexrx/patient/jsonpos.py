"""Which line of a JSON text holds the element a JSON path names (for error messages a person can act on).

Why a position-tracking pass and not a string search: a key such as ``"value"`` appears dozens of times
in a FHIR Bundle; only walking the structure finds the right one. The walk descends along the path only:
each object or array on the way is scanned once, its members skipped with the standard library's scanner
(``JSONDecoder.raw_decode`` from the member's first character) and their positions kept (:class:`JsonLines`),
so the issues of one error cost about two parses of the text together, whatever their number.

The answer is the line of the member's key (``"weight_kg": ...``) or of an array item's first character;
for a member that is missing, the line where the object that should hold it starts. A text that is not
valid JSON answers with the line where reading stopped (where the syntax error is).
"""

from __future__ import annotations

import json
import re
from json.decoder import scanstring  # type: ignore[attr-defined]  # public since Python 2.6, untyped

_WS = re.compile(r"[ \t\n\r]*")
_STEP = re.compile(r"\.([^.\[\]\s]+)|\[(\d+)\]")
_DECODER = json.JSONDecoder()


def path_steps(path: str) -> list[str | int] | None:
    """``$.entry[3].resource`` -> ``["entry", 3, "resource"]``; None if ``path`` is not a JSON path.
    A trailing note such as `` (field dose.unit)`` (a FHIR reader's relocation) is ignored."""
    path = path.split(" (", 1)[0].strip()
    if not path.startswith("$"):
        return None
    steps: list[str | int] = []
    end = 1
    for m in _STEP.finditer(path, 1):
        if m.start() != end:
            return None
        steps.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        end = m.end()
    return steps if end == len(path) else None


def _skip(text: str, pos: int) -> int:
    m = _WS.match(text, pos)
    return m.end() if m else pos


class JsonLines:
    """Lines of the elements of one JSON text, for many paths: each object or array on the way to an element
    is scanned once (its members' positions kept), so the issues of one error cost about one parse together."""

    def __init__(self, text: str | bytes):
        if isinstance(text, bytes | bytearray):
            text = bytes(text).decode("utf-8", errors="replace")
        self.text = text
        self._objects: dict[int, dict[str, tuple[int, int]]] = {}
        self._arrays: dict[int, list[int]] = {}
        self._bad: int | None = None  # the syntax error's line (None: valid JSON), once looked for
        self._looked = False

    def _members(self, pos: int) -> dict[str, tuple[int, int]]:
        """The object starting at ``pos`` (its ``{``): key -> (key position, value position); a repeated
        key keeps its last place, as JSON readers do."""
        if pos in self._objects:
            return self._objects[pos]
        text, out = self.text, {}
        i = _skip(text, pos + 1)
        if text[i] != "}":
            while True:
                if text[i] != '"':
                    raise ValueError(f"expected a key at {i}")
                name, j = scanstring(text, i + 1)
                j = _skip(text, j)
                if text[j] != ":":
                    raise ValueError(f"expected ':' at {j}")
                value = _skip(text, j + 1)
                out[name] = (i, value)
                _, j = _DECODER.raw_decode(text, value)
                j = _skip(text, j)
                if text[j] == "}":
                    break
                if text[j] != ",":
                    raise ValueError(f"expected ',' at {j}")
                i = _skip(text, j + 1)
        self._objects[pos] = out
        return out

    def _items(self, pos: int) -> list[int]:
        """The array starting at ``pos`` (its ``[``): the position of each item."""
        if pos in self._arrays:
            return self._arrays[pos]
        text, out = self.text, []
        i = _skip(text, pos + 1)
        if text[i] != "]":
            while True:
                out.append(i)
                _, j = _DECODER.raw_decode(text, i)
                j = _skip(text, j)
                if text[j] == "]":
                    break
                if text[j] != ",":
                    raise ValueError(f"expected ',' at {j}")
                i = _skip(text, j + 1)
        self._arrays[pos] = out
        return out

    def position(self, steps: list[str | int]) -> int:
        """Offset of the element ``steps`` lead to (its key for a member), or of the deepest existing
        container that should hold it. Raises ValueError (or IndexError) on invalid JSON."""
        text = self.text
        pos = _skip(text, 1 if text.startswith("\ufeff") else 0)
        anchor = pos
        for step in steps:
            opener = text[pos]
            if isinstance(step, str):
                found = self._members(pos).get(step) if opener == "{" else None
                if found is None:
                    return pos
                anchor, pos = found
            else:
                items = self._items(pos) if opener == "[" else []
                if not 0 <= step < len(items):
                    return pos
                anchor = pos = items[step]
        return anchor

    def line(self, path: str) -> int | None:
        """The 1-based line where the element ``path`` names is (see the module docstring); None when
        ``path`` is not a JSON path. Invalid JSON: the line where reading stopped."""
        steps = path_steps(path)
        if steps is None:
            return None
        try:
            if not steps:  # the whole document: its problem may be its syntax (a walk would not look)
                bad = self._syntax_error_line()
                return bad if bad is not None else line_number(self.text, self.position([]))
            return line_number(self.text, self.position(steps))
        except (ValueError, IndexError, RecursionError):  # json.JSONDecodeError is a ValueError
            return self._syntax_error_line()

    def _syntax_error_line(self) -> int | None:
        if not self._looked:
            self._looked = True
            try:
                json.loads(self.text.removeprefix("\ufeff"))
            except json.JSONDecodeError as exc:
                self._bad = exc.lineno
            except RecursionError:
                pass
        return self._bad


def line_number(text: str, pos: int) -> int:
    """1-based line of offset ``pos``; a line ends with LF, CRLF or a lone CR."""
    n = text.count("\n", 0, pos) + 1
    if "\r" in text:
        n += text.count("\r", 0, pos) - text.count("\r\n", 0, pos)
    return n


def line_of(text: str | bytes, path: str) -> int | None:
    """The 1-based line of ``text`` where the element ``path`` names is (for many paths of one text, use
    one :class:`JsonLines`)."""
    return JsonLines(text).line(path)
