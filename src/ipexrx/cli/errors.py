"""Input errors as JSON for the commands that print JSON (``--json``).

A script that runs ``ipexrx assess --json``, ``ipexrx dose recommend --json`` or ``ipexrx screen run --json``
reads stdout as JSON, also when the input is refused: the error is then written to stdout as one JSON object
(``error``: the error's kind, ``message``, ``issues``: each located problem with its JSON ``path``, what was
``expected``, what was ``got`` and, where known, ``where`` in words), the plain-words lines still go to stderr
and the exit code is unchanged (1). ``ipexrx cds cards --json`` does the same for a refused request.
"""

from __future__ import annotations

import json
from typing import Any

import typer


def error_document(exc: BaseException, places: list[str] | None = None) -> dict[str, Any]:
    """``exc`` as a JSON-ready object: its own ``to_dict()`` when it has one (a patient input error: message and
    issues), else its kind and message with no issues. ``places`` gives each issue's location in words, in the
    order of the issues (fewer places than issues leave the rest without ``where``)."""
    to_dict = getattr(exc, "to_dict", None)
    doc: dict[str, Any] = dict(to_dict()) if callable(to_dict) else {
        "error": type(exc).__name__, "message": str(exc), "issues": []}
    issues = list(doc.get("issues") or [])
    for i, where in enumerate((places or [])[:len(issues)]):
        issues[i] = {**issues[i], "where": where}
    doc["issues"] = issues
    return doc


def echo_json_error(exc: BaseException, places: list[str] | None = None) -> None:
    """Write :func:`error_document` of ``exc`` to stdout (the human lines are the caller's, on stderr)."""
    typer.echo(json.dumps(error_document(exc, places), indent=2, ensure_ascii=False))


def echo_json_message(error: str, message: str, issues: list[dict[str, str]] | None = None) -> None:
    """An error that has no exception object of its own (a command's own check), as the same JSON object."""
    typer.echo(json.dumps({"error": error, "message": message, "issues": issues or []}, indent=2,
                          ensure_ascii=False))
