"""Subject event records and the NM-TRAN style CSV reader.

The record layout follows NONMEM (ID, TIME, EVID, AMT, CMT, RATE, II, ADDL, SS, MDV, DV, plus BLQ/LLOQ
and covariate columns), which is the format of the reference data. Problems are reported, never
guessed around: unsorted or non-finite times, negative amounts, unknown compartments, ADDL without II,
non-numeric values all raise :class:`DataError` naming the subject, the row and the column.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DataError

STANDARD = ("ID", "TIME", "EVID", "AMT", "CMT", "RATE", "II", "ADDL", "SS", "MDV", "DV", "BLQ", "LLOQ")


@dataclass
class Record:
    """One data row. ``cmt`` is 1-based as in NONMEM; ``covariates`` holds the row's covariate values."""

    time: float
    evid: int = 0
    amt: float = 0.0
    cmt: int = 1
    rate: float = 0.0
    ii: float = 0.0
    addl: int = 0
    ss: int = 0
    mdv: int = 0
    dv: float | None = None
    blq: bool = False
    lloq: float | None = None
    covariates: dict[str, float] = field(default_factory=dict)
    row: int | None = None  # line number in the source file, for messages

    @property
    def is_dose(self) -> bool:
        return self.evid in (1, 4)

    @property
    def is_obs(self) -> bool:
        return self.evid == 0 and self.mdv == 0


@dataclass
class Subject:
    id: str
    records: list[Record]
    warnings: list[str] = field(default_factory=list)
    now_h: float | None = None  # the present on this subject's time axis when known (FHIR input): later = future

    @property
    def observations(self) -> list[Record]:
        return [r for r in self.records if r.is_obs]

    @property
    def doses(self) -> list[Record]:
        return [r for r in self.records if r.is_dose]


def _num(value: str, col: str, row: int, sid: str) -> float | None:
    v = value.strip()
    if v in ("", ".", "NA", "NaN", "nan"):
        return None
    try:
        x = float(v)
    except ValueError:
        raise DataError(f"subject {sid}, line {row}, field {col}: expected a number, got {value!r}") from None
    if not math.isfinite(x):
        raise DataError(f"subject {sid}, line {row}, field {col}: expected a finite number, got {value!r}")
    return x


def _int(x: float | None, col: str, row: int, sid: str, default: int = 0) -> int:
    if x is None:
        return default
    if x != int(x):
        raise DataError(f"subject {sid}, line {row}, field {col}: expected an integer, got {x}")
    return int(x)


def read_nmtran(source: str | Path | bytes | io.TextIOBase, covariates: list[str] | None = None,
                name: str | None = None) -> list[Subject]:
    """Read an NM-TRAN style CSV (header row, ``.`` = missing) into subjects, in file order.

    ``source`` is a path, the file's bytes (an upload) or a text stream; ``name`` is how messages call it
    (default: the path, else "the data"). Bytes and files are decoded by :func:`ipexrx.textio.decode_text`:
    UTF-8 with or without a byte-order mark, or Windows-1252/Latin-1 with a warning on every subject; UTF-16
    and binary data are a :class:`DataError` naming the file, line and field. ``covariates`` names the columns
    to keep as covariates (case-insensitive); by default every non-standard column is kept.
    """
    from ..textio import TextEncodingError, decode_text

    label = name or (str(source) if isinstance(source, (str, Path)) else "the data")
    note: str | None = None
    if isinstance(source, (str, Path, bytes)):
        try:
            raw = source if isinstance(source, bytes) else Path(source).read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read data file {label}: {exc.strerror}") from None
        try:
            decoded = decode_text(raw, label, csv_fields=True)
        except TextEncodingError as exc:
            raise DataError(str(exc)) from None
        text, note = decoded.text, decoded.warning
    else:
        text = source.read()
        text = text.removeprefix("\ufeff")
    try:
        subjects = _parse_nmtran(text, covariates)
    except DataError as exc:
        raise DataError(f"{label}: {exc}") from None
    if note:
        for s in subjects:
            s.warnings.append(note)
    return subjects


def _parse_nmtran(text: str, covariates: list[str] | None) -> list[Subject]:
    reader = csv.reader(io.StringIO(text))
    numbered = [(reader.line_num, r) for r in reader]  # line_num: the file line where the record ends
    numbered = [(n, r) for n, r in numbered if r and any(c.strip() for c in r)]
    rows = [r for _, r in numbered]
    if not rows:
        raise DataError("data file is empty; expected a header row (ID,TIME,...) and records")
    header = [h.strip() for h in rows[0]]
    upper = [h.upper() for h in header]
    for need in ("ID", "TIME"):
        if need not in upper:
            raise DataError(f"data header {header} lacks the required column {need}")
    if "AMT" not in upper and "DV" not in upper:
        raise DataError(f"data header {header} has neither AMT nor DV: nothing to fit")
    col = {u: i for i, u in enumerate(upper)}
    cov_cols: dict[str, int] = {}
    wanted = {c.upper(): c for c in covariates} if covariates is not None else None
    for i, h in enumerate(header):
        u = h.upper()
        if u in STANDARD:
            continue
        if wanted is None:
            cov_cols[h] = i
        elif u in wanted:
            cov_cols[wanted[u]] = i

    subjects: dict[str, Subject] = {}
    order: list[str] = []
    for lineno, r in numbered[1:]:
        if r[0].strip().startswith(("#", "@", "C ")):
            continue
        if len(r) != len(header):
            raise DataError(f"line {lineno}: expected {len(header)} fields as in the header, got {len(r)}")
        sid = r[col["ID"]].strip()
        if sid in ("", "."):
            raise DataError(f"line {lineno}, field ID: expected a subject id, got nothing")
        if sid.endswith(".0"):
            sid = sid[:-2]

        def get(name: str, _r: list[str] = r, _sid: str = sid, _ln: int = lineno) -> float | None:
            return _num(_r[col[name]], name, _ln, _sid) if name in col else None

        t = get("TIME")
        if t is None:
            raise DataError(f"subject {sid}, line {lineno}, field TIME: expected a time, got nothing")
        amt = get("AMT") or 0.0
        mdv_raw = get("MDV")
        evid_raw = get("EVID")
        evid = (1 if amt > 0 else (2 if mdv_raw == 1 else 0)) if evid_raw is None else _int(
            evid_raw, "EVID", lineno, sid)
        mdv = _int(mdv_raw, "MDV", lineno, sid, default=0 if evid == 0 else 1)
        if evid not in (0, 1, 2, 3, 4):
            raise DataError(f"subject {sid}, line {lineno}, field EVID: expected 0-4, got {evid}")
        dv = get("DV")
        blq = bool(_int(get("BLQ"), "BLQ", lineno, sid)) if "BLQ" in col else False
        rec = Record(
            time=t, evid=evid, amt=amt, cmt=_int(get("CMT"), "CMT", lineno, sid, default=1),
            rate=get("RATE") or 0.0, ii=get("II") or 0.0, addl=_int(get("ADDL"), "ADDL", lineno, sid),
            ss=_int(get("SS"), "SS", lineno, sid), mdv=mdv if evid == 0 else 1, dv=dv, blq=blq,
            lloq=get("LLOQ"), row=lineno,
        )
        for name, i in cov_cols.items():
            v = _num(r[i], name, lineno, sid)
            if v is not None:
                rec.covariates[name] = v
        if sid not in subjects:
            subjects[sid] = Subject(sid, [])
            order.append(sid)
        elif subjects[sid].records and subjects[order[-1]] is not subjects[sid]:
            raise DataError(f"subject {sid}: rows are not contiguous (line {lineno}); sort the file by ID, TIME")
        subjects[sid].records.append(rec)
    out = [subjects[s] for s in order]
    for s in out:
        validate_subject(s)
    return out


def validate_subject(s: Subject, n_cmt: int | None = None) -> None:
    """Structural checks that need no model. Raises :class:`DataError` on the first problem."""
    prev = -math.inf
    if not s.records:
        raise DataError(f"subject {s.id}: no records")
    for r in s.records:
        where = f"subject {s.id}" + (f", line {r.row}" if r.row else "") + f" (time {r.time:g})"
        if not (math.isfinite(r.amt) and math.isfinite(r.rate) and math.isfinite(r.ii)):
            raise DataError(f"{where}: AMT, RATE and II must be finite numbers")
        if not math.isfinite(r.time):
            raise DataError(f"{where}: TIME must be finite")
        if r.time < prev:
            raise DataError(
                f"{where}: times are not sorted (previous record at {prev:g}); expected non-decreasing TIME")
        prev = r.time
        if r.amt < 0:
            raise DataError(f"{where}: negative dose AMT {r.amt:g}; expected AMT >= 0")
        if r.is_dose and r.amt <= 0:
            raise DataError(f"{where}: dose record (EVID {r.evid}) with AMT {r.amt:g}; expected AMT > 0")
        if r.addl < 0:
            raise DataError(f"{where}: ADDL {r.addl} < 0")
        if r.ii < 0:
            raise DataError(f"{where}: II {r.ii:g} < 0")
        if r.is_dose and (r.addl > 0 or r.ss) and r.ii <= 0:
            raise DataError(f"{where}: ADDL/SS need an interval II > 0, got II {r.ii:g}")
        if r.ss not in (0, 1, 2):
            raise DataError(f"{where}: SS expected 0, 1 or 2, got {r.ss}")
        if r.is_dose and r.rate not in (0.0, -2.0) and r.rate <= 0:
            raise DataError(f"{where}: RATE {r.rate:g} not supported (expected 0, > 0, or -2 for modelled duration)")
        if r.cmt < 1 or (n_cmt is not None and r.cmt > n_cmt):
            raise DataError(f"{where}: CMT {r.cmt} outside 1..{n_cmt if n_cmt else '?'}")
        if r.is_obs:
            if r.blq:
                if r.lloq is None or r.lloq <= 0:
                    raise DataError(f"{where}: BLQ observation needs LLOQ > 0")
            elif r.dv is None:
                raise DataError(f"{where}: observation (EVID 0, MDV 0) has no DV")
            elif not math.isfinite(r.dv):
                raise DataError(f"{where}: DV must be a finite number, got {r.dv}")


def subjects_from_rows(rows: list[dict[str, Any]]) -> list[Subject]:
    """Build subjects from dict rows (keys as the CSV columns); used by the JSON/API paths and tests."""
    if not rows:
        raise DataError("no records")
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(keys)
    for r in rows:
        w.writerow(["." if r.get(k) is None else r.get(k) for k in keys])
    buf.seek(0)
    return read_nmtran(buf)
