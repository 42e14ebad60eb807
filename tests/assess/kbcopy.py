"""A throw-away copy of the knowledge base with one file edited, validated before use.

Why: rule tests pin behaviour that depends on content (a threshold, a wait after stopping); editing
a copy lets them vary that content without touching the shipped files.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ipexrx.knowledge.loader import DEFAULT_DATA_DIR, KnowledgeBase, load_kb
from ipexrx.knowledge.validate import validate_kb


def kb_with(tmp_path: Path, rel: str, change: Callable[[Any], Any]) -> KnowledgeBase:
    """The knowledge base with ``change`` applied to the parsed YAML of ``rel`` (a path under data/)."""
    dest = tmp_path / "data"
    shutil.copytree(DEFAULT_DATA_DIR, dest)
    path = dest / rel
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    kb = load_kb(dest)
    assert validate_kb(kb) == []
    return kb
