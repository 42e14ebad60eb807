"""Readers for NONMEM output tables (``.phi``, ``.ext``) used by the validation tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError


@dataclass
class PhiRow:
    id: str
    eta: np.ndarray
    etc: np.ndarray  # full symmetric matrix
    obj: float


def read_phi(path: str | Path) -> dict[str, PhiRow]:
    """Parse a NONMEM ``.phi`` file (first table only): ETA(i), ETC(i,j) lower triangle, OBJ."""
    lines = Path(path).read_text().splitlines()
    header: list[str] | None = None
    out: dict[str, PhiRow] = {}
    for line in lines:
        if line.startswith("TABLE NO."):
            if header is not None:
                break
            continue
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "SUBJECT_NO":
            header = parts
            continue
        if header is None:
            raise DataError(f"{path}: data before the column header")
        vals = dict(zip(header, parts, strict=True))
        etas = [k for k in header if k.startswith("ETA(")]
        n = len(etas)
        etc = np.zeros((n, n))
        for k in header:
            if k.startswith("ETC("):
                i, j = (int(x) - 1 for x in k[4:-1].split(","))
                etc[i, j] = etc[j, i] = float(vals[k])
        out[vals["ID"]] = PhiRow(vals["ID"], np.array([float(vals[e]) for e in etas]), etc, float(vals["OBJ"]))
    return out


def read_ext(path: str | Path) -> dict[str, dict[str, float]]:
    """Parse a NONMEM ``.ext`` file: {iteration: {column: value}} for the first table."""
    lines = Path(path).read_text().splitlines()
    header: list[str] | None = None
    out: dict[str, dict[str, float]] = {}
    for line in lines[1:]:
        parts = line.split()
        if not parts or line.startswith("TABLE NO."):
            break
        if parts[0] == "ITERATION":
            header = parts
            continue
        assert header is not None
        out[parts[0]] = {k: float(v) for k, v in zip(header[1:], parts[1:], strict=True)}
    return out
