"""Shared test set-up: keep the compiled knowledge-base cache out of the user's home directory."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_kb_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test run (and every subprocess it starts) uses a fresh cache directory."""
    old = os.environ.get("IPEXRX_CACHE_DIR")
    os.environ["IPEXRX_CACHE_DIR"] = str(tmp_path_factory.mktemp("ipexrx-cache"))
    yield
    if old is None:
        os.environ.pop("IPEXRX_CACHE_DIR", None)
    else:
        os.environ["IPEXRX_CACHE_DIR"] = old
