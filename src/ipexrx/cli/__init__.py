"""The ``ipexrx`` command: a thin typer face over the library.

Each command group lives in its own module (reference views, kb, assess, dose, serve...) and is
registered here. Modules import heavy libraries inside the command functions, so that a lookup
such as ``ipexrx drug sirolimus`` pays only for what it uses (start-up budget: well under 0.3 s).
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="ipexrx",
    help="Computable medication reference and decision support for IPEX syndrome (FOXP3). "
    "Supports, never replaces, clinical judgement.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from . import kb as _kb  # noqa: F401  (modules register their commands on import)
    from . import reference as _reference  # noqa: F401


def main() -> None:
    _register()
    app()
