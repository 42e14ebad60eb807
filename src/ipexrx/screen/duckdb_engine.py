"""Read a FHIR Bulk Data directory with DuckDB: files found, lines checked, views flattened into tables.

Why lines first, not ``read_json``: DuckDB's ``read_json(..., ignore_errors=true)`` skips a bad line
without saying which, and a truncated object makes its parser read on into the next, good line (seen
with DuckDB 2.0: an object cut at the end of line 402 is reported "in line 403"). A screen must name
each bad line and lose nothing else, so each file is read by DuckDB's CSV reader as one text column
(no quoting, so a line is exactly a line; ``\\n`` and ``\\r\\n`` both end one; read sequentially, so
``row_number()`` is the line number -- DuckDB's parallel CSV scan refuses ``new_line='\\r\\n'`` on some
files and would not guarantee the order), ``json_valid`` marks the lines that
are JSON, and the view's JSON paths are extracted from those in one parse per line (``json_extract_string``
with a list of paths). Every file is read once; the work is DuckDB's, in parallel and vectorised, with a
``memory_limit`` and a spill directory so memory stays bounded whatever the population size.

The tables (``t_condition``, ``t_observation``...) hold the view columns plus ``_file`` and ``_line``;
the raw JSON of a line is kept only for the patients the safety checks need (``_json``).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ScreenInputError
from .views import View, load_views, reference_key_pattern, resource_type_pattern, view_sql

# Bulk Data file names: "<Type>.ndjson", "<Type>-1.ndjson", "<Type>.000.ndjson", "<Type>_2.ndjson[.gz]".
_FILE = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)(?:[-._]\d+)?\.ndjson(?P<gz>\.gz)?$")
TABLES = {"Patient": "t_patient", "Condition": "t_condition", "Observation": "t_observation",
          "MedicationRequest": "t_medication_request", "MedicationStatement": "t_medication_statement",
          "Procedure": "t_procedure", "Immunization": "t_immunization", "Medication": "t_medication"}
# Read first: the safety set is decided from these, and later files keep raw JSON only for it.
FIRST = ("Patient", "Medication", "MedicationRequest", "MedicationStatement")
MAX_PREFILTER_PATIENTS = 5000
EMPTY_LINES = "(SELECT NULL::VARCHAR AS _file, NULL::BIGINT AS _line, NULL::VARCHAR AS _raw WHERE FALSE)"
# keep_json for the types read after the safety set is known: the raw line of a safety patient's resources
KEEP_SAFETY = "patient IN (SELECT patient FROM safety_patients)"


@dataclass(frozen=True)
class BadLine:
    file: str
    line: int
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.problem}"


@dataclass
class ReadStats:
    files: dict[str, int] = field(default_factory=dict)  # file name -> lines read (non-blank)
    resources: dict[str, int] = field(default_factory=dict)  # type -> valid resources
    ignored_files: list[str] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)


def find_files(directory: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """Resource type -> its NDJSON files; and the names of files that are not a type this screen reads."""
    if not directory.exists():
        raise ScreenInputError(f"{directory}: no such directory (expected a FHIR Bulk Data export: a directory of "
                               "<Type>.ndjson or <Type>.ndjson.gz files)")
    if not directory.is_dir():
        raise ScreenInputError(f"{directory}: not a directory (expected a FHIR Bulk Data export directory)")
    found: dict[str, list[Path]] = {}
    ignored: list[str] = []
    for path in sorted(directory.iterdir()):
        m = _FILE.match(path.name)
        if not m or not path.is_file():
            continue
        if m.group("type") in TABLES:
            found.setdefault(m.group("type"), []).append(path)
        else:
            ignored.append(path.name)
    if "Patient" not in found:
        names = ", ".join(sorted(p.name for ps in found.values() for p in ps)) or "no NDJSON files"
        raise ScreenInputError(f"{directory}: no Patient file (expected Patient.ndjson or Patient.ndjson.gz; found "
                               f"{names})")
    return found, ignored


def prefilter_patterns(codes: list[str], patients: list[str]) -> list[str]:
    """The regular expressions of a prefilter (see :meth:`DuckDBReader.prefilter_sql`), shared by the engines."""
    # two patterns OR-ed: one alternation of both is several times slower in RE2
    alts = ["\"(?:" + "|".join(re.escape(c) for c in codes) + ")\""] if codes else []
    if patients:
        alts.append("Patient/(?:" + "|".join(re.escape(p) for p in patients) + ")\"")
    return alts


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _lines_sql(files: list[Path]) -> str:
    parts = []
    for path in files:
        parts.append(
            f"SELECT {_quote(path.name)} AS _file, row_number() OVER () AS _line, column0 AS _raw "
            f"FROM read_csv({_quote(str(path))}, columns={{'column0': 'VARCHAR'}}, delim='\\x01', quote='', "
            "escape='', new_line='\\r\\n', header=false, auto_detect=false, strict_mode=false, parallel=false, "
            f"compression={'gzip' if path.name.endswith('.gz') else 'none'})")
    return "(" + " UNION ALL ".join(parts) + ")"


class DuckDBReader:
    """One screen's DuckDB connection and flattened tables. Use as a context manager."""

    engine = "duckdb"
    background_scans = True  # see load_all

    def __init__(self, directory: Path | str, *, memory_limit: str = "1GB", threads: int | None = None):
        import duckdb

        self.directory = Path(directory)
        self.files, ignored = find_files(self.directory)
        self._tmp = tempfile.TemporaryDirectory(prefix="ipexrx-screen-")
        config: dict[str, Any] = {"memory_limit": memory_limit, "temp_directory": self._tmp.name}
        if threads:
            config["threads"] = threads
        self.con = duckdb.connect(config=config)
        self.views: dict[str, View] = load_views()
        self.stats = ReadStats(ignored_files=ignored)
        self.safety_set: list[str] = []

    def __enter__(self) -> DuckDBReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()
        self._tmp.cleanup()

    def sql(self, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(query, params or []).fetchall()

    def prefilter_sql(self, codes: list[str], patients: list[str]) -> str:
        """An SQL condition over the raw line: it holds one of ``codes`` as a JSON string (``"<code>"``) or
        references one of ``patients`` (``Patient/<id>"``)."""
        return " OR ".join(f"regexp_matches(_raw, {_quote(a)})"
                           for a in prefilter_patterns(codes, patients)) or "FALSE"

    def has(self, rtype: str) -> bool:
        return rtype in self.files

    def load(self, rtype: str, keep_json: str | None = None, prefilter: str | None = None,
             scanned: str | None = None) -> None:
        """Flatten one resource type into its table; bad lines go to ``stats.bad_lines``.

        ``scanned``: the table :meth:`scan` made of this type's lines with this ``prefilter`` (it is dropped
        here); without it the files are scanned now."""
        table = TABLES[rtype]
        view = self.views[rtype]
        files = self.files.get(rtype, [])
        if not files:  # an empty table with the view's columns and types
            self.con.execute(f"CREATE OR REPLACE TABLE {table} AS {view_sql(view, EMPTY_LINES, keep_json)}")
            return
        skipped = self._flatten(table, view, files, keep_json, prefilter, scanned)
        bad = self.sql(f"SELECT DISTINCT _file, _line, _bad, _rtype FROM {table} WHERE NOT _ok ORDER BY _file, _line")
        self.con.execute(f"DELETE FROM {table} WHERE NOT _ok")
        counts = dict(self.sql(f"SELECT _file, count(DISTINCT _line) FROM {table} GROUP BY _file"))
        for name, n in skipped.items():
            counts[name] = counts.get(name, 0) + n
        self._report(rtype, files, bad, sorted(counts.items()))

    def scan(self, rtype: str, codes: list[str], con: Any = None) -> str:
        """Read the lines of ``rtype``'s files once, in order, into a table ``_lines_<table>`` of ``_file,
        _line, _raw, _pre``. ``_pre``: the line is a JSON object one of whose ``code.coding`` is one of
        ``codes`` (a JSON string inside that element) or whose subject is a patient in ``safety_patients``.
        ``_raw`` is kept only for a line the view needs: one that is not JSON, that passes ``_pre``, or
        that is not of the type; for the rest (valid resources of the type that ``_pre`` rejects: most
        Observations) only the line is counted. Returns the table's name, for :meth:`load` (``scanned``).

        This is the one sequential pass over the files (line numbers need the order; a ``.gz`` cannot be
        split), so it parses each line once: validity (a line that does not parse gives null), its
        subject and its code.coding in one ``json_extract_string``. What follows reads the small table in
        parallel. ``con``: a cursor of this reader's database, to run it beside other work in another
        thread."""
        name = f"_lines_{TABLES[rtype]}"
        marker = _quote(f'"resourceType":"{rtype}"')
        typed = f"(contains(_raw, {marker}) OR regexp_matches(_raw, {_quote(resource_type_pattern(rtype))}))"
        code_rx = _quote("\"(?:" + "|".join(re.escape(c) for c in codes) + ")\"") if codes else None
        by_code = f"coalesce(regexp_matches(_m[2], {code_rx}), FALSE)" if code_rx else "FALSE"
        by_patient = (f"coalesce(regexp_extract(_m[1], {_quote(reference_key_pattern('Patient'))}, 1) IN "
                      "(SELECT patient FROM safety_patients), FALSE)")
        sql = (f"CREATE OR REPLACE TABLE {name} AS SELECT _file, _line, CASE WHEN _m IS NOT NULL AND NOT _pre "
               f"AND {typed} THEN NULL ELSE _raw END AS _raw, _pre FROM (SELECT *, _m IS NOT NULL AND ({by_code} OR "
               f"{by_patient}) AS _pre FROM (SELECT _file, _line, _raw, try(json_extract_string(_raw, "
               f"['$.subject.reference', '$.code.coding'])) AS _m FROM {_lines_sql(self.files[rtype])} "
               "WHERE _raw IS NOT NULL) WHERE _m IS NOT NULL OR trim(_raw) <> '')")
        self._run_or_refuse(con or self.con, sql, self.files[rtype])
        return name

    def _run_or_refuse(self, con: Any, sql: str, files: list[Path]) -> None:
        import duckdb

        try:
            con.execute(sql)
        except duckdb.Error as exc:
            names = ", ".join(p.name for p in files)
            raise ScreenInputError(f"{names}: cannot be read as NDJSON ({str(exc).splitlines()[0]})") from None

    def _flatten(self, table: str, view: View, files: list[Path], keep_json: str | None,
                 prefilter: str | None, scanned: str | None = None) -> dict[str, int]:
        """Create ``table``: the view over every line of ``files`` (see :func:`~.views.view_sql`), flattening
        only the lines ``prefilter`` keeps; or over the lines :meth:`scan` kept in the table ``scanned``
        (then dropped). Returns the counts of the valid lines only counted, by file name."""
        if prefilter is None and scanned is None:
            self._run_or_refuse(self.con, f"CREATE OR REPLACE TABLE {table} AS "
                                f"{view_sql(view, _lines_sql(files), keep_json)}", files)
            return {}
        if scanned is None:
            self._run_or_refuse(self.con, f"CREATE OR REPLACE TABLE {table} AS "
                                f"{view_sql(view, _lines_sql(files), keep_json, prefilter)}", files)
            return {}
        lines = scanned
        try:
            kept = f"(SELECT _file, _line, _raw, _pre FROM {lines} WHERE _raw IS NOT NULL)"
            self._run_or_refuse(self.con, f"CREATE OR REPLACE TABLE {table} AS "
                                f"{view_sql(view, kept, keep_json, '_pre')}", files)
            return {str(f): int(n) for f, n in self.sql(f"SELECT _file, count(*) FROM {lines} WHERE _raw IS NULL "
                                                         "GROUP BY _file")}
        finally:
            self.con.execute(f"DROP TABLE IF EXISTS {lines}")

    def _report(self, rtype: str, files: list[Path], bad: list[tuple[Any, ...]],
                counts: list[tuple[Any, ...]]) -> None:
        """Record one type's bad lines (``_file, _line, _bad, _rtype``, in file and line order) and its
        per-file counts of good lines (``_file, count``); refuse a file none of whose lines is usable."""
        for name, line, raw, rtype_found in bad:
            if raw is not None:
                problem = f"not valid JSON: {raw[:80]!r}"
            elif rtype_found is not None:
                problem = f"resourceType {rtype_found!r} where {rtype!r} was expected; line skipped"
            else:
                problem = f"not a {rtype} resource (no resourceType {rtype!r}); line skipped"
            self.stats.bad_lines.append(BadLine(name, int(line), problem))
        for name, total in counts:
            self.stats.files[name] = int(total)
        for path in files:
            self.stats.files.setdefault(path.name, 0)
            n_bad = sum(1 for b in self.stats.bad_lines if b.file == path.name)
            self.stats.files[path.name] += n_bad
            if n_bad and n_bad == self.stats.files[path.name]:
                raise ScreenInputError(f"{path.name}: no line is a FHIR {rtype} resource (first problem: "
                                       f"{next(b for b in self.stats.bad_lines if b.file == path.name)}); "
                                       "expected one JSON resource per line (NDJSON)")
        self.stats.resources[rtype] = sum(int(total) for _name, total in counts)

    def load_all(self, safety_patients: Callable[[DuckDBReader], list[str]],
                 progress: Callable[[str], None] | None = None,
                 wanted_codes: dict[str, list[str]] | None = None,
                 meanwhile: Callable[[], object] | None = None) -> list[str]:
        """Load every type: Patient and medications first, then ``safety_patients(self)`` names the
        patients whose raw resources are kept for the safety checks, then the rest.

        ``wanted_codes``: for a resource type, the codes that make a line worth flattening; its other lines
        are validated and counted but flattened only when they belong to a safety patient (up to
        :data:`MAX_PREFILTER_PATIENTS` of them; beyond that every line is flattened).

        The long sequential read of a prefiltered type (:meth:`scan`; the Observations, usually one
        ``.gz``) runs in a second thread while the other types are loaded and ``meanwhile()`` runs here,
        so both cores work; bad lines, file counts and resource counts are still reported in type order."""
        for rtype in FIRST:
            if progress:
                progress(rtype)
            self.load(rtype, keep_json="TRUE")
        chosen = safety_patients(self)
        self.safety_set = list(chosen)
        self.con.execute("CREATE OR REPLACE TABLE safety_patients AS SELECT DISTINCT unnest(?::VARCHAR[]) AS patient",
                         [chosen])
        rest = [rtype for rtype in TABLES if rtype not in FIRST]
        prefilters: dict[str, str | None] = {}
        for rtype in rest:
            codes = (wanted_codes or {}).get(rtype)
            prefilters[rtype] = (self.prefilter_sql(codes, chosen)
                                 if codes is not None and len(chosen) <= MAX_PREFILTER_PATIENTS else None)
        background = [r for r in rest if self.background_scans and prefilters[r] is not None and self.has(r)]
        scans: dict[str, Future[str]] = {}
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipexrx-screen-scan") as pool:
            cursor = self.con.cursor() if background else None
            try:
                for rtype in background:
                    scans[rtype] = pool.submit(self.scan, rtype, list((wanted_codes or {})[rtype]), cursor)
                for rtype in [r for r in rest if r not in scans] + list(scans):
                    if rtype in scans and meanwhile is not None:
                        meanwhile()
                        meanwhile = None
                    if progress:
                        progress(rtype)
                    self.load(rtype, keep_json=KEEP_SAFETY, prefilter=prefilters[rtype],
                              scanned=scans[rtype].result() if rtype in scans else None)
            finally:
                for job in scans.values():
                    job.cancel()
                wait(list(scans.values()))
                if cursor is not None:
                    cursor.close()
        if meanwhile is not None:
            meanwhile()
        self._in_type_order([*FIRST, *rest])
        return chosen

    def _in_type_order(self, order: list[str]) -> None:
        """Put the statistics in ``order`` of types (files in name order within a type), whatever order the
        types were loaded in."""
        rank = {p.name: (order.index(t), i) for t, paths in self.files.items() for i, p in enumerate(paths)}
        self.stats.bad_lines.sort(key=lambda b: (rank.get(b.file, (len(order), 0)), b.line))
        self.stats.files = dict(sorted(self.stats.files.items(), key=lambda kv: rank.get(kv[0], (len(order), 0))))
        self.stats.resources = dict(sorted(self.stats.resources.items(),
                                           key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))

    def raw_resources(self, patients: list[str]) -> dict[str, list[str]]:
        """Patient id -> the raw JSON lines of its resources (Patient first; Medications referenced by
        its medication resources included)."""
        return {p: [raw for _f, _l, raw in rows] for p, rows in self.resource_lines(patients).items()}

    def resource_lines(self, patients: list[str]) -> dict[str, list[tuple[str, int, str]]]:
        """As :meth:`raw_resources`, each line with the file and line number it was read from (so that a
        problem in a resource can be named where it is)."""
        out: dict[str, list[tuple[str, int, str]]] = {p: [] for p in patients}
        if not patients:
            return out
        self.con.execute("CREATE OR REPLACE TEMP TABLE _want AS SELECT unnest(?::VARCHAR[]) AS patient", [patients])
        parts = ["SELECT DISTINCT id AS patient, 0 AS k, _file, _line, _json FROM t_patient "
                 "WHERE id IN (SELECT patient FROM _want) AND _json IS NOT NULL"]
        for k, (rtype, table) in enumerate(TABLES.items(), start=1):
            if rtype in ("Patient", "Medication"):
                continue
            parts.append(f"SELECT DISTINCT patient, {k}, _file, _line, _json FROM {table} "
                         "WHERE patient IN (SELECT patient FROM _want) AND _json IS NOT NULL")
        parts.append(
            "SELECT DISTINCT m.patient, 99, t._file, t._line, t._json FROM t_medication t JOIN "
            "(SELECT patient, medication_ref FROM t_medication_request UNION ALL SELECT patient, medication_ref "
            "FROM t_medication_statement) m ON m.medication_ref = 'Medication/' || t.id "
            "WHERE m.patient IN (SELECT patient FROM _want) AND t._json IS NOT NULL")
        rows = self.sql(" UNION ALL ".join(parts) + " ORDER BY 1, 2, 3, 4")
        for patient, _k, file, line, raw in rows:
            out[patient].append((file, line, raw))
        return out
