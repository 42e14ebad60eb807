"""Option values shared by several command groups, parsed once with one error message."""

from __future__ import annotations

import datetime as dt

import typer


def date_option(value: str | None, option: str = "--as-of") -> dt.date | None:
    """A YYYY-MM-DD option value; None when absent. A malformed date exits 2 (a usage error) naming the
    option and what arrived, before any work starts."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        typer.echo(f"error: {option} expects a date as YYYY-MM-DD, got {value!r}", err=True)
        raise typer.Exit(2) from None
