"""Reference views in the terminal (summary, manifestation, drug, class, sources, search)."""

from __future__ import annotations

from . import app  # noqa: F401
