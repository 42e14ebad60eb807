"""``ipexrx kb ...``: knowledge-base maintenance commands for editors."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app

kb_app = typer.Typer(help="Knowledge-base maintenance (validate the content files).", no_args_is_help=True)
app.add_typer(kb_app, name="kb")


@kb_app.command("validate")
def validate(
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Knowledge-base directory (default: embedded)."),
) -> None:
    """Check every content file: schema, sources, cross-references, codes. Exit 1 on any problem."""
    from rich.console import Console
    from rich.markup import escape

    from ..knowledge import KnowledgeBaseError, load_kb, validate_kb

    console = Console(stderr=True)
    try:
        kb = load_kb(data_dir)
        problems = validate_kb(kb)
    except KnowledgeBaseError as exc:
        problems = exc.problems
        kb = None
    if problems:
        from ..knowledge.loader import DEFAULT_DATA_DIR
        from ..knowledge.yamlpos import with_lines

        problems = with_lines(problems, kb.data_dir if kb is not None else data_dir or DEFAULT_DATA_DIR)
        for p in problems:
            console.print(f"[red]error[/red] {escape(str(p))}", highlight=False, soft_wrap=True)
        console.print(f"[bold red]{len(problems)} problem(s)[/bold red]")
        raise typer.Exit(1)
    assert kb is not None
    n = sum(1 for _ in kb.records())
    typer.echo(f"knowledge base OK: {n} records, content version {kb.meta.content_version} ({kb.data_dir})")
