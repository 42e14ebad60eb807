"""Optional parts of ipexrx (pip extras) and the one clear error when one is missing.

``pip install .`` (or ``pip install ipexrx``) installs what the reference, the assessment, dosing, the
population screen and the web app need. A few jobs need packages that are large or only useful in some
settings; they are pip extras (see ``[project.optional-dependencies]`` in pyproject.toml):

``analytics``  registry analytics: Kaplan-Meier estimates and log-rank tests (lifelines, with pandas)
               and the registry report's PNG figures (matplotlib)
``plots``      PNG plots of the dosing commands (``ipexrx dose fit|recommend --plot``; matplotlib)
``postgres``   a PostgreSQL database for the registry and the service (the psycopg driver)
``spark``      ``ipexrx screen --engine spark`` (PySpark; needs a Java 17+ runtime)
``all``        every extra above

Code that needs such a package calls :func:`require` where it imports it (never at module import time),
so a missing extra costs nothing until the job that needs it runs, and then stops that job with
:class:`MissingExtraError`: one sentence naming what is missing and the exact install command. The
command line turns it into exit code 2, the web service into a page (or JSON error) saying the same.
"""

from __future__ import annotations

import importlib
import json
import shlex
from pathlib import Path
from types import ModuleType
from urllib.parse import urlparse
from urllib.request import url2pathname

# extra -> the packages it installs (as pip names them), for the message
EXTRAS: dict[str, tuple[str, ...]] = {
    "analytics": ("lifelines", "matplotlib"),
    "plots": ("matplotlib",),
    "postgres": ("psycopg",),
    "spark": ("pyspark",),
}


class MissingExtraError(Exception):
    """A job needs an optional package that is not installed. ``extra`` is the pip extra that installs it."""

    def __init__(self, module: str, extra: str, purpose: str):
        self.module = module
        self.extra = extra
        self.purpose = purpose
        self.command = install_command(extra)
        super().__init__(f"{purpose} needs the optional part '{extra}' of ipexrx, which is not installed "
                         f"(missing package: {module.split('.')[0]}). Install it with: {self.command}")


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` and return it, or raise :class:`MissingExtraError` naming ``extra``.

    ``purpose`` says, in the user's words, what needs it ("Registry analytics (Kaplan-Meier estimates)").
    Any import failure counts (the package itself or one of its own dependencies missing): installing the
    extra is the fix for both."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; expected one of {', '.join(sorted(EXTRAS))}")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module, extra, purpose) from exc


def install_command(extra: str) -> str:
    """The pip command that installs ``extra`` for this installation of ipexrx.

    Installed from a local directory (``pip install .`` or ``pip install -e .`` in a source checkout that
    still exists): that directory, so the command can be pasted as is; otherwise the package by name."""
    source = _installed_from()
    if source is not None:
        path, editable = source
        return "pip install " + ("-e " if editable else "") + shlex.quote(f"{path}[{extra}]")
    return f"pip install 'ipexrx[{extra}]'"


def _installed_from() -> tuple[Path, bool] | None:
    """(source directory, editable) when ipexrx was installed from a local directory that still exists."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        raw = distribution("ipexrx").read_text("direct_url.json")
    except PackageNotFoundError:
        return None
    if not raw:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    url = urlparse(str(info.get("url", "")))
    dir_info = info.get("dir_info")
    if url.scheme != "file" or not isinstance(dir_info, dict):
        return None  # an archive, a VCS checkout or an index: no directory to point at
    path = Path(url2pathname(url.path))
    if not (path / "pyproject.toml").is_file():
        return None
    return path, bool(dir_info.get("editable"))
