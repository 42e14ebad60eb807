"""Reference views in the terminal (summary, manifestation, drug, class, sources, search).

Each command prints a rich view with numbered citations, or with ``--json`` the view model's JSON
(the shape ``ipexrx schema <view>`` documents). The library does the work
(:mod:`ipexrx.reference`); this module only parses arguments and chooses the output face.
"""

from __future__ import annotations

from typing import Any

import typer

from . import app

JSON_HELP = "Print the view as JSON (schema: `ipexrx schema <command>`)."


def _emit(view: Any, as_json: bool, render: str) -> None:
    if as_json:
        typer.echo(view.model_dump_json(indent=2))
        return
    from . import render as _render

    getattr(_render, render)(view, _render.console())


@app.command("summary")
def summary_cmd(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """IPEX medication summary: cure, principles, manifestation -> options, caveats, identifiers."""
    from ..reference import summary

    _emit(summary(), as_json, "render_summary")


@app.command("manifestation")
def manifestation_cmd(
    query: str = typer.Argument(..., help="Id, name, synonym or HPO id (enteropathy, diarrhea, HP:0100651)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """A manifestation with its therapy options, strongest evidence first."""
    from ..reference import manifestation_view

    _emit(manifestation_view(query), as_json, "render_manifestation")


@app.command("drug")
def drug_cmd(
    query: str = typer.Argument(..., help="Generic name, brand or synonym, any case (Neoral, rapamycin, CsA)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Full drug monograph: identity, mechanism, evidence, codes, safety, interactions, sources."""
    from ..reference import drug_monograph

    _emit(drug_monograph(query), as_json, "render_drug")


@app.command("class")
def class_cmd(
    query: str = typer.Argument(..., help="Class id, name, synonym or unique prefix (calcineurin)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """A drug class: summary, parent classes, subclasses and member drugs."""
    from ..reference import class_view

    _emit(class_view(query), as_json, "render_class")


@app.command("sources")
def sources_cmd(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """The sources registry: citation, DOI/PMID, URL, sections, how each was verified."""
    from ..reference import list_sources

    _emit(list_sources(), as_json, "render_sources")


@app.command("search")
def search_cmd(
    text: list[str] = typer.Argument(..., help="Words to look for (typos tolerated)."),
    limit: int = typer.Option(10, "--limit", "-n", min=1, max=200, help="Maximum number of results."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Ranked full-text search over drugs, brands, classes, manifestations, HPO ids, statements, sources."""
    from ..reference import search

    _emit(search(" ".join(text), limit=limit), as_json, "render_search")
