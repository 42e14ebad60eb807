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


class NoUsableModelError(DosingError):
    """No clinical model of the drug can be used for this patient. The message names the models and covariates
    (for the dosing tools, where they are typed); ``reasons`` says the same in words for clinical text: one
    sentence part per model, "the Chen 2022 tacrolimus model needs to know whether posaconazole is given"."""

    def __init__(self, message: str, reasons: list[str], needs_comedications: bool = False):
        super().__init__(message)
        self.reasons = reasons
        self.needs_comedications = needs_comedications  # a model lacks a co-medication indicator


class EstimationError(DosingError):
    """The MAP optimisation did not converge from any start (never returned silently)."""
