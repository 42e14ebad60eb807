"""The ``ipexrx`` command: a thin typer face over the library.

Each command group lives in its own module (reference views, kb, assess, dose, serve...) and is
registered here. Modules import heavy libraries inside the command functions, so that a lookup
such as ``ipexrx drug sirolimus`` pays only for what it uses (start-up budget: well under 0.3 s).

Errors: a user who mistypes a drug or feeds a malformed file must get one clear line, not a
traceback. Every command runs inside :class:`_CleanErrors`, which turns the exception types listed
in :data:`USER_ERRORS` into a message on stderr and an exit code. The registry names classes as
``"module:Class"`` strings and matches them against the exception's MRO by name, so no error
module is imported unless an error actually happens. Add your module's input-error class there.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

# "module:Class" -> exit code. Exit codes: 1 = input not understood / not found; 2 = usage error
# (typer/click's own) or an optional part of ipexrx not installed; 3 = the knowledge base itself failed to
# load (a content problem).
USER_ERRORS: dict[str, int] = {
    "ipexrx.reference.errors:ReferenceQueryError": 1,
    "ipexrx.cli.schema:UnknownSchemaError": 1,
    "ipexrx.screen.errors:ScreenInputError": 1,
    "ipexrx.knowledge.loader:KnowledgeBaseError": 3,
    "ipexrx.extras:MissingExtraError": 2,
}


def user_error_code(exc: BaseException) -> int | None:
    """The exit code for ``exc`` if it is a registered user-facing error, else None."""
    for cls in type(exc).__mro__:
        code = USER_ERRORS.get(f"{cls.__module__}:{cls.__qualname__}")
        if code is not None:
            return code
    return None


def _message(exc: BaseException) -> str:
    problems = getattr(exc, "problems", None)
    if isinstance(problems, list) and problems:  # KnowledgeBaseError: show where, briefly
        shown = "\n".join(f"  - {p}" for p in problems[:10])
        more = f"\n  ... and {len(problems) - 10} more (run `ipexrx kb validate`)" if len(problems) > 10 else ""
        return f"the knowledge base failed to load ({len(problems)} problem(s)):\n{shown}{more}"
    return str(exc)


class _CleanErrors(TyperGroup):
    """Top-level group that reports registered errors cleanly instead of with a traceback."""

    def invoke(self, ctx: Any) -> Any:
        # a command asked for JSON (`screen run --json`): a refused input is then also JSON on stdout
        as_json = "--json" in [*getattr(ctx, "_protected_args", []), *ctx.args]
        try:
            return super().invoke(ctx)
        except Exception as exc:
            code = user_error_code(exc)
            if code is None:
                raise
            typer.echo(f"error: {_message(exc)}", err=True)
            if as_json:
                from .errors import echo_json_error

                echo_json_error(exc)
            raise typer.Exit(code) from None


def _flags_without_a_type() -> None:
    """A flag takes no value, so its help line shows none: typer's rich help prints a type for every option
    (``--version <bool>``, ``--json <bool>``), click's plain help does not. Pinned typer (pyproject.toml)."""
    from typer.core import TyperOption

    show_type = TyperOption.display_type_rich
    if getattr(show_type, "_ipexrx_flags", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag or self.count else show_type(self, ctx)

    display_type_rich._ipexrx_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_a_type()

app = typer.Typer(
    name="ipexrx",
    cls=_CleanErrors,
    help="Computable medication reference and decision support for IPEX syndrome (FOXP3). "
    "Supports, never replaces, clinical judgement.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



def _version_text() -> str:
    """The installed distribution's version (package metadata; no knowledge base or library import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"ipexrx {version('ipexrx')}"
    except PackageNotFoundError:  # running from a source tree that was never installed
        from .. import __version__

        return f"ipexrx {__version__} (not installed)"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(_version_text())
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version,
                                 help="Print the installed version and exit."),
) -> None:
    """Computable medication reference and decision support for IPEX syndrome (FOXP3).
    Supports, never replaces, clinical judgement."""


_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    from . import assess as _assess  # noqa: F401
    from . import cds as _cds  # noqa: F401
    from . import dose as _dose  # noqa: F401
    from . import kb as _kb  # noqa: F401  (modules register their commands on import)
    from . import reference as _reference  # noqa: F401
    from . import registry as _registry  # noqa: F401
    from . import sandbox as _sandbox  # noqa: F401
    from . import schema as _schema  # noqa: F401
    from . import screen as _screen  # noqa: F401
    from . import serve as _serve  # noqa: F401


def get_app() -> typer.Typer:
    """The fully registered application (for tests: ``CliRunner().invoke(get_app(), [...])``)."""
    _register()
    return app


def main() -> None:
    get_app()()
