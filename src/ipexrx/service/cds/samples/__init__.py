"""Synthetic CDS Hooks requests (one per hook), shipped with the package.

They are what the service evaluates once at start-up so that the first real call does not pay
for lazy imports (pydantic builds each validator on first use), and what the tests
and the load benchmark send. The patient is invented; no real data.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

NAMES = ("patient_view", "order_select", "order_sign")


def load(name: str) -> dict[str, Any]:
    """A fresh copy of the sample request ``name`` (one of :data:`NAMES`)."""
    if name not in NAMES:
        raise ValueError(f"sample CDS request must be one of {', '.join(NAMES)}; got {name!r}")
    data: dict[str, Any] = json.loads(resources.files(__name__).joinpath(f"{name}.json").read_text("utf-8"))
    return data
