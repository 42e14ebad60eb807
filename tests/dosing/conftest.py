from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).with_name("data")
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "tdm-validation"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"reference data not found at {SHARED} (CI copies shared/ beside the repository)")
    return SHARED
