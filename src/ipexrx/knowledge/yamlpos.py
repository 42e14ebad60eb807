"""The line of a content problem in its YAML file, for ``ipexrx kb validate`` (an editor fixes a file line by line).

A problem names its file, record and field path (``drugs/sirolimus.yaml [sirolimus] mechanism[0].sources``);
this module composes the file's YAML node tree once (nodes carry their position) and walks it: the record (the
file's mapping, or the list item whose ``id`` is the record), then each field and list index. The answer is
the line of the deepest node found (the key's line for a mapping member), so a missing field points at the
record or object that should hold it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from .loader import Problem

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _compose(path: Path) -> object | None:
    import yaml

    loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with path.open("r", encoding="utf-8") as fh:
            return yaml.compose(fh, Loader=loader)  # noqa: S506 - a safe loader; nodes only, nothing constructed
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _member(node: object, name: str) -> tuple[object, object] | None:
    """(key node, value node) of ``name`` in a mapping node."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == name:
                return key, value
    return None


def _record(root: object, record: str) -> object | None:
    import yaml

    if not record:
        return root
    candidates = root.value if isinstance(root, yaml.SequenceNode) else [root]
    for item in candidates:
        found = _member(item, "id")
        if found is not None and isinstance(found[1], yaml.ScalarNode) and found[1].value == record:
            return item
    return None


def line_in(root: object, record: str, field: str) -> int | None:
    """1-based line of ``field`` (``a.b[0].c``) of ``record`` in a composed YAML tree, or of the deepest part of
    it that exists; None when the record is not in the tree."""
    import yaml

    node = _record(root, record)
    if not isinstance(node, yaml.Node):
        return None
    line = node.start_mark.line + 1
    for m in _STEP.finditer(field):
        if m.group(1) is not None:
            found = _member(node, m.group(1))
            if found is None:
                break
            key, node = found
            line = key.start_mark.line + 1  # type: ignore[attr-defined]
        else:
            i = int(m.group(2))
            if not isinstance(node, yaml.SequenceNode) or i >= len(node.value):
                break
            node = node.value[i]
            line = node.start_mark.line + 1  # type: ignore[attr-defined]
    return line


def with_lines(problems: list[Problem], base: Path) -> list[Problem]:
    """``problems`` with ``line`` set where the record or field is found in its file under ``base`` (each file
    composed once)."""
    trees: dict[str, object | None] = {}
    out = []
    for p in problems:
        if p.line is None and p.file.endswith((".yaml", ".yml")):
            if p.file not in trees:
                trees[p.file] = _compose(base / p.file)
            tree = trees[p.file]
            line = line_in(tree, p.record, p.field) if tree is not None else None
            p = dataclasses.replace(p, line=line) if line is not None else p
        out.append(p)
    return out
