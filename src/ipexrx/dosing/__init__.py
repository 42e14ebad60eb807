"""Model-informed precision dosing: population-PK models as data, MAP-Bayesian estimation that reproduces
NONMEM's POSTHOC step (ETAs, OBJ, ETC), and dose suggestions rounded to real dosage forms.

Knows no terminal or web. Public API (loaded lazily, so importing the package costs nothing until used):

* models: :func:`get_model`, :func:`all_models`, :func:`load_model_file`, :func:`with_thetas`;
* data: :func:`read_nmtran`, :class:`Subject`, :class:`Record`;
* estimation: :func:`fit` -> :class:`FitResult`, :func:`map_objective`, :func:`nonmem_obj`;
* predictions: :func:`build_design`, :func:`predict`, :func:`prediction_band`;
* dosing: :func:`recommend`, :func:`recommend_from_trough`, :func:`recommend_for_patient`, :data:`IPEX_CAVEAT`;
* errors: :class:`DosingError` and its subclasses.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import CovariateError, DataError, DosingError, EstimationError, ModelError

_LAZY = {
    "get_model": "model", "all_models": "model", "load_model_file": "model", "with_thetas": "model",
    "CompiledModel": "model", "ModelSpec": "model",
    "read_nmtran": "data", "Subject": "data", "Record": "data",
    "fit": "estimate", "FitResult": "estimate", "map_objective": "estimate", "nonmem_obj": "estimate",
    "build_design": "engine", "predict": "engine",
    "recommend": "recommend", "recommend_from_trough": "recommend", "Recommendation": "recommend",
    "prediction_band": "recommend", "IPEX_CAVEAT": "recommend", "DEFAULT_MODELS": "recommend",
    "recommend_for_patient": "patient_input", "interval_from_frequency": "patient_input",
    "read_phi": "nonmem",
}

__all__ = ["CovariateError", "DataError", "DosingError", "EstimationError", "ModelError", *_LAZY]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'ipexrx.dosing' has no attribute {name!r}")
    return getattr(import_module(f".{mod}", __name__), name)
