"""``ipexrx schema NAME``: the JSON Schema of a command's ``--json`` output.

The registry maps a name to ``"module:Model"`` and is imported lazily, so adding a schema (for
example ``patient``, ``assessment`` or a dosing result) is one entry here and costs nothing at
start-up.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import typer

from . import app

SCHEMAS: dict[str, str] = {
    "summary": "ipexrx.reference.models:SummaryView",
    "manifestation": "ipexrx.reference.models:ManifestationView",
    "drug": "ipexrx.reference.models:DrugMonograph",
    "class": "ipexrx.reference.models:ClassView",
    "sources": "ipexrx.reference.models:SourcesView",
    "search": "ipexrx.reference.models:SearchResults",
    "patient": "ipexrx.patient.model:PatientRecord",
    "assessment": "ipexrx.assess.models:Assessment",
}


class UnknownSchemaError(LookupError):
    """No schema of that name; the message lists the known names."""


def load_model(name: str) -> Any:
    """The pydantic model class registered under ``name``."""
    target = SCHEMAS.get(name)
    if target is None:
        raise UnknownSchemaError(f"no schema named '{name}'; known schemas: {', '.join(sorted(SCHEMAS))}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12, as pydantic emits it) of the view registered as ``name``."""
    schema: dict[str, Any] = load_model(name).model_json_schema(mode="serialization")
    return schema


@app.command("schema")
def schema_cmd(
    name: str | None = typer.Argument(None, help="View name; omit to list the names."),
) -> None:
    """Print the JSON Schema of a view's --json output (summary, manifestation, drug, class, sources, search)."""
    if name is None:
        for key in sorted(SCHEMAS):
            typer.echo(key)
        return
    typer.echo(json.dumps(json_schema(name), indent=2))
