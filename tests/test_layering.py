"""The package keeps its layers: lower layers never import higher ones, and only the faces
(``service``, ``cli``) know about the web or the terminal.

Why a test: the library must stay usable without a terminal or web server (batch jobs, notebooks,
the registry), and import discipline is also what keeps CLI start-up fast.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ipexrx"

# layer -> ipexrx layers it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "knowledge": set(),
    "storage": set(),
    "reference": {"knowledge"},
    "patient": {"knowledge"},
    "dosing": {"knowledge", "patient", "reference"},  # reference: the shared citation numbering
    "assess": {"knowledge", "patient", "dosing", "reference"},
    "report": {"knowledge", "patient", "assess", "reference", "dosing"},
    "registry": {"knowledge", "storage", "patient", "assess", "reference", "dosing"},
    "screen": {"knowledge", "patient", "assess", "reference"},
    "service": {"knowledge", "storage", "reference", "patient", "assess", "dosing", "registry", "report",
                "screen"},
    "cli": {"knowledge", "storage", "reference", "patient", "assess", "dosing", "registry", "report", "service",
            "screen"},
}
FACES_ONLY = {"typer", "rich", "fastapi", "starlette", "uvicorn"}
NO_HTML = {"knowledge", "reference", "patient", "dosing", "assess", "storage"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in a module, relative imports resolved."""
    package = list(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
    return out


def _layer_of(path: Path) -> str | None:
    parts = path.relative_to(SRC).parts
    if len(parts) == 1:
        return "cli" if parts[0] == "cli.py" else None
    return parts[0]


MODULES = sorted(p for p in SRC.rglob("*.py") if _layer_of(p) in ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_module_imports_only_allowed_layers(path: Path) -> None:
    layer = _layer_of(path)
    assert layer is not None
    bad = []
    for line, mod in _imports(path):
        top = mod.split(".")[0]
        if top == "ipexrx":
            target = mod.split(".")[1] if "." in mod else ""
            if target and target != layer and target in ALLOWED and target not in ALLOWED[layer]:
                bad.append(f"line {line}: {layer} must not import ipexrx.{target}")
        elif layer not in ("service", "cli") and top in FACES_ONLY:
            bad.append(f"line {line}: {layer} must not import {top} (only service/cli may)")
        elif layer in NO_HTML and top == "jinja2":
            bad.append(f"line {line}: {layer} must not render HTML (jinja2)")
    assert not bad, "\n".join(bad)


def test_layer_map_covers_every_package() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(ALLOWED), f"add {sorted(packages - set(ALLOWED))} to the layer map"
