"""Read a FHIR Bulk Data directory with DuckDB: files found, lines checked, views flattened into tables.

Why lines first, not ``read_json``: DuckDB's ``read_json(..., ignore_errors=true)`` skips a bad line
without saying which, and a truncated object makes its parser read on into the next, good line (seen
with DuckDB 2.0: an object cut at the end of line 402 is reported "in line 403"). A screen must name
each bad line and lose nothing else, so the lines reach DuckDB already split and numbered, as an Arrow
stream (:mod:`.lines`), and each view's JSON paths are extracted in one parse per line
(``json_extract_string`` with a list of paths; a line that does not parse gives null). Every file is
read once; the parsing is DuckDB's, on every thread and vectorised, with a ``memory_limit`` and a spill
directory so memory stays bounded whatever the population size.

The tables (``t_condition``, ``t_observation``...) hold the view columns plus ``_file`` and ``_line``;
the raw JSON of a line is kept only for the patients the safety checks need (``_json``).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ScreenInputError
from .views import View, load_views, view_sql

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


class DuckDBReader:
    """One screen's DuckDB connection and flattened tables. Use as a context manager."""

    engine = "duckdb"
    fast_lines = True  # False: every file read by the exact (Python) line reader of :mod:`.lines`

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
        # files read the exact, slow way because the fast line reader gave way: (file names, why)
        self.exact_reads: list[tuple[str, str]] = []

    def __enter__(self) -> DuckDBReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()
        self._tmp.cleanup()

    def sql(self, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(query, params or []).fetchall()

    def prefilter_sql(self, rtype: str, codes: list[str], patients: list[str]) -> str | None:
        """The condition (see :func:`~.views.view_sql`) under which a valid line of ``rtype`` is flattened:
        one of ``codes`` is a JSON string in the view's ``forEach`` collection (the codings), or its
        patient is one of ``patients`` (kept in the table ``safety_patients``). None -- flatten every
        line -- when the view has no ``forEach`` or no ``patient`` column to test."""
        view = self.views[rtype]
        if not view.for_each or "patient" not in [c.name for c in view.columns]:
            return None
        parts = []
        if codes:
            parts.append(f"regexp_matches(_each_text, {_quote(prefilter_patterns(codes, [])[0])})")
        if patients:  # one alternation, not a join: the rows are wide (the raw line rides along)
            ids = "|".join(re.escape(p) for p in sorted(set(patients)))
            parts.append(f"regexp_matches(_text_patient, {_quote(f'(?:^|/)Patient/(?:{ids})(?:/_history/[^/]*)?$')})")
        return " OR ".join(f"coalesce({p}, FALSE)" for p in parts) or "FALSE"

    def has(self, rtype: str) -> bool:
        return rtype in self.files

    def load(self, rtype: str, keep_json: str | None = None, prefilter: str | None = None) -> None:
        """Flatten one resource type into its table (see :func:`~.views.view_sql` for ``keep_json`` and
        ``prefilter``); bad lines go to ``stats.bad_lines``."""
        table = TABLES[rtype]
        view = self.views[rtype]
        files = self.files.get(rtype, [])
        if not files:  # an empty table with the view's columns and types
            self.con.execute(f"CREATE OR REPLACE TABLE {table} AS {view_sql(view, EMPTY_LINES, keep_json)}")
            return
        read = self._flatten(table, view, files, keep_json, prefilter)
        bad = self.sql(f"SELECT DISTINCT _file, _line, _bad, _rtype FROM {table} WHERE NOT _ok AND "
                       "(_bad IS NULL OR trim(_bad, ' \t') <> '') ORDER BY _file, _line")  # blank: no problem
        if read is None:  # every line read has a row: count the good ones
            self.con.execute(f"DELETE FROM {table} WHERE NOT _ok")
            counts = dict(self.sql(f"SELECT _file, count(DISTINCT _line) FROM {table} GROUP BY _file"))
        else:  # a good line may have no row (not flattened, or no coding): lines read less the rest
            rest = dict(self.sql(f"SELECT _file, count(DISTINCT _line) FROM {table} WHERE NOT _ok GROUP BY _file"))
            counts = {name: n - rest.get(name, 0) for name, n in read.items()}
            self.con.execute(f"DELETE FROM {table} WHERE NOT _ok")
        self._report(rtype, files, bad, sorted(counts.items()))

    def _run_lines(self, con: Any, sql: str, files: list[Path]) -> dict[str, int]:
        """Run ``sql`` (an SQL text whose ``{source}`` is the relation ``_file, _line, _raw`` of ``files``)
        over the numbered line stream of :mod:`.lines`, which DuckDB parses on every thread: the fast
        reader first and, when it gives way (a file that is not plain UTF-8 lines), the exact one. Returns
        the number of lines read per file name; a file that cannot be read at all is refused by name."""
        import duckdb

        from .lines import LineSource

        names = ", ".join(p.name for p in files)
        for exact in (False, True) if self.fast_lines else (True,):
            src = LineSource(files, exact=exact)
            view = f"_lines_src_{len(self.exact_reads)}_{id(src)}"
            con.register(view, src.reader)
            try:
                con.execute(sql.replace("{source}", f"(SELECT _file, _line, _raw FROM {view})"))
                return {p.name: src.counts.get(p.name, 0) for p in files}
            except duckdb.InterruptException:
                raise  # Ctrl-C: stop, do not read the files again the slow way
            except duckdb.Error as exc:
                if src.refusal is not None:
                    raise ScreenInputError(src.refusal) from None
                if exact:
                    raise ScreenInputError(f"{names}: cannot be read as NDJSON ({str(exc).splitlines()[0]})") from None
                self.exact_reads.append((names, str(src.problem or exc).splitlines()[0]))
            finally:
                con.unregister(view)
        raise AssertionError("unreachable: the exact reader returns or raises")

    def _flatten(self, table: str, view: View, files: list[Path], keep_json: str | None,
                 prefilter: str | None) -> dict[str, int] | None:
        """Create ``table``: the view over every line of ``files`` (see :func:`~.views.view_sql`). Returns
        the lines read per file name (a good line may have no row), or None when every line read has one."""
        return self._run_lines(self.con, f"CREATE OR REPLACE TABLE {table} AS "
                               f"{view_sql(view, '{source}', keep_json, prefilter)}", files)

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

        ``meanwhile()`` (Python work that needs no table) runs in a second thread while the types after the
        first ones are read; bad lines, file counts and resource counts are reported in type order."""
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
            prefilters[rtype] = (self.prefilter_sql(rtype, codes, chosen)
                                 if codes is not None and len(chosen) <= MAX_PREFILTER_PATIENTS else None)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipexrx-screen-meanwhile") as pool:
            side: Future[object] | None = pool.submit(meanwhile) if meanwhile is not None else None
            for rtype in rest:
                if progress:
                    progress(rtype)
                self.load(rtype, keep_json=KEEP_SAFETY, prefilter=prefilters[rtype])
            if side is not None:
                side.result()
        return chosen

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
