"""Population screening over FHIR Bulk Data (NDJSON): undiagnosed IPEX / IPEX-like candidates and unsafe regimens.

Layers: :mod:`.synth` writes a synthetic population; :mod:`.duckdb_engine` reads a Bulk Data directory
with DuckDB through the flattening views in ``views/``; :mod:`.score` turns the flattened rows into a
phenotype score (HPO annotations of IPEX and the IPEX-like disorders, shipped offline with hpo3);
:mod:`.safety` runs the assessment's own rules on the patients taking a knowledge-base drug;
:mod:`.run` ties them together into a :class:`~ipexrx.screen.models.ScreenResult`.

Nothing here is imported by the CLI at start-up: DuckDB and hpo3 load only when a screen runs.
"""

from __future__ import annotations

from .errors import ScreenInputError

__all__ = ["ScreenInputError"]
