"""Lookup errors. A name that matches nothing (or several things) is an error, never a guess:
for clinical content, silently picking the "closest" drug would be worse than failing."""

from __future__ import annotations


class ReferenceQueryError(LookupError):
    """Base of the reference-lookup errors; ``str(exc)`` is a complete one-line message."""

    def __init__(self, kind: str, query: str, candidates: list[str], message: str):
        self.kind = kind
        self.query = query
        self.candidates = candidates
        super().__init__(message)


class NotFoundError(ReferenceQueryError):
    """No record of ``kind`` is named ``query``; ``suggestions`` are the closest names."""

    def __init__(self, kind: str, query: str, suggestions: list[str], elsewhere: list[str] | None = None):
        self.suggestions = suggestions
        self.elsewhere = elsewhere or []  # e.g. ["manifestation enteropathy"]: the name exists as another kind
        hint = f"; closest matches: {', '.join(suggestions)}" if suggestions else ""
        if self.elsewhere:
            hint += "; that name belongs to another kind of record, try: " + \
                " or ".join(f"`ipexrx {e}`" for e in self.elsewhere)
        super().__init__(kind, query, suggestions, f"no {kind} named '{query}'{hint}")


class AmbiguousQueryError(ReferenceQueryError):
    """``query`` names several records of ``kind``; the caller must choose one of ``candidates``."""

    def __init__(self, kind: str, query: str, candidates: list[str]):
        super().__init__(kind, query, candidates,
                         f"'{query}' matches several {kind} records: {', '.join(candidates)}; please use one of them")
