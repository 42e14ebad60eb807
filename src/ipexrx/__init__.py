"""ipexrx: computable medication reference and decision support for IPEX syndrome."""

__version__ = "0.1.0"
