"""Errors raised by the dosing engine.

Every error carries a message that says what was expected and what arrived, so that the CLI and
the service can show it verbatim (no traceback) and exit non-zero / answer 4xx.
"""

from __future__ import annotations


class DosingError(ValueError):
    """Base class: bad input or a model that cannot be used as asked."""


class ModelError(DosingError):
    """A model file is malformed, or a model name is unknown."""


class DataError(DosingError):
    """Dosing/observation data are malformed (unsorted times, negative doses, missing columns...)."""


class CovariateError(DosingError):
    """A covariate is missing, has the wrong unit, or lies outside a range the model refuses."""


class EstimationError(DosingError):
    """The MAP optimisation did not converge from any start (never returned silently)."""
