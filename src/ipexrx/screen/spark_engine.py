"""``--engine spark``: the same ViewDefinitions flattened by Apache Spark (PySpark), for exports beyond one machine.

What runs where: Spark reads every NDJSON line (plain or ``.gz``), numbers it within its file, checks that it is
JSON of the view's resource type and flattens it with the shipped ViewDefinitions -- the same parsed views and
paths as the DuckDB engine (:mod:`.views`: :func:`~.views.parse_view`, :func:`~.views.translate_path`,
:func:`~.views.column_value`), written here in Spark SQL over its VARIANT type (``try_parse_json``,
``try_variant_get``). That is the work that grows with the population. What it keeps -- the flattened rows
the screen can use (the same prefilter as the DuckDB engine leaves the many Observations no rule reads as
one empty row each), the bad lines and the raw JSON of the safety patients -- is handed to the driver as
Parquet and loaded into an embedded DuckDB database, where the bad-line reports, the counts, the scoring and
the drug-safety checks run the very code the DuckDB engine runs (:mod:`.duckdb_engine`, :mod:`.run`,
:mod:`.safety`). One scoring code path, so both engines rank alike.

Line numbers: Spark's text reader may split a large file into blocks read by different tasks, so a line's
number is its position in its block (``monotonically_increasing_id`` counts rows contiguously within a
task, and each task reads one block) plus the lines of the file's earlier blocks
(``_metadata.file_block_start``), counted by a first, text-only pass when a file has more than one block.
``\\n`` and ``\\r\\n`` both end a line, and a lone ``\\r`` does not, as in the DuckDB engine.

Spark runs quietly (log level WARN, no web UI) and offline (no package downloads: PySpark's own jars only).
``master``: ``local[2]`` by default, or a cluster URL (``spark://host:7077``, ``yarn``, ``k8s://...``) from
``--spark-master`` or ``IPEXRX_SPARK_MASTER``. With a cluster, the export directory and the staging
directory (``IPEXRX_SPARK_STAGING``, default a temporary directory) must be visible at the same path to the
driver and every executor (a shared file system).
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from .duckdb_engine import EMPTY_LINES, KEEP_SAFETY, DuckDBReader, prefilter_patterns
from .errors import ScreenInputError
from .views import View, column_value, translate_path, view_sql

DEFAULT_MASTER = "local[2]"
_LOG4J = """rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.hadoop.name = org.apache.hadoop
logger.hadoop.level = error
# a file that cannot be read fails its task: the screen reports it as one clear error, so the task-level
# stack traces (utils, executor, scheduler, writer) are not printed as well
logger.sparkutils.name = org.apache.spark.util.Utils
logger.sparkutils.level = off
logger.executor.name = org.apache.spark.executor.Executor
logger.executor.level = off
logger.tasks.name = org.apache.spark.scheduler.TaskSetManager
logger.tasks.level = off
logger.writer.name = org.apache.spark.sql.execution.datasources.FileFormatWriter
logger.writer.level = off
"""
_sessions: dict[str, Any] = {}


class SparkUnavailableError(ScreenInputError):
    """``--engine spark`` asked for where PySpark or a Java runtime is missing."""


def _java_home() -> None:
    """Spark needs a Java runtime (17 or later): use JAVA_HOME when set, else ``java`` on the PATH, else a
    Java 17 under /usr/lib/jvm."""
    if os.environ.get("JAVA_HOME") or shutil.which("java"):
        return
    homes = sorted(glob.glob("/usr/lib/jvm/*17*"))
    if not homes:
        raise SparkUnavailableError("--engine spark needs a Java runtime (17 or later): JAVA_HOME is not set, no "
                                    "'java' is on the PATH and there is no /usr/lib/jvm/*17* (on Debian: apt-get "
                                    "install openjdk-17-jre-headless)")
    os.environ["JAVA_HOME"] = homes[0]


def spark_session(master: str | None = None) -> Any:
    """The SparkSession for ``master`` (created once per process and reused: starting a JVM takes seconds)."""
    from ..extras import require

    require("pyspark.sql", "spark", "--engine spark")  # MissingExtraError naming the extra and the install command
    from pyspark.sql import SparkSession

    master = master or os.environ.get("IPEXRX_SPARK_MASTER") or DEFAULT_MASTER
    if master in _sessions and _sessions[master].sparkContext._jsc is not None:  # not stopped
        return _sessions[master]
    active = SparkSession.getActiveSession()
    if active is not None and active.sparkContext.master != master:
        raise SparkUnavailableError(f"--engine spark: this process already runs Spark with master "
                                    f"{active.sparkContext.master!r}; one process cannot switch to {master!r}")
    _java_home()
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no "hostname resolves to a loopback" warning
    conf_dir = Path(tempfile.mkdtemp(prefix="ipexrx-spark-"))
    atexit.register(shutil.rmtree, conf_dir, True)
    log4j = conf_dir / "log4j2.properties"
    log4j.write_text(_LOG4J, encoding="utf-8")
    java_opts = f"-Dlog4j2.configurationFile=file:{log4j}"
    builder = (SparkSession.builder.master(master).appName("ipexrx-screen")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.extraJavaOptions", java_opts)
               .config("spark.executor.extraJavaOptions", java_opts)
               # A repeated key is read, not refused, as DuckDB reads it; but Spark takes the last value and
               # DuckDB the first (docs/screen.md, "What differs"; FHIR forbids repeated keys)
               .config("spark.sql.variant.allowDuplicateKeys", "true")
               .config("spark.sql.session.timeZone", "UTC"))
    if master.startswith("local"):
        builder = builder.config("spark.sql.shuffle.partitions", "2")
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: say why, not a traceback
        raise SparkUnavailableError(f"--engine spark could not start Spark with master {master!r}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    session.sparkContext.setLogLevel("WARN")
    _sessions[master] = session
    return session


def _lit(text: str) -> str:
    """A Spark SQL raw string literal (no backslash escapes, so regular expressions stay as written)."""
    if "'" in text:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"r'{text}'"


def spark_view_sql(view: View, source: str, prefilter: str | None = None, sentinel: str | None = None) -> str:
    """Spark SQL over ``source`` (a relation with ``_file, _line, _raw``) giving what
    :func:`~.views.view_sql` gives in DuckDB -- the view's columns plus ``_file, _line, _ok, _bad, _rtype``
    -- and ``_use`` (flattened), ``_raw`` and ``_pos`` (the forEach element's index, to keep row order).

    A line is JSON only when nothing but whitespace follows its value. Spark's ``try_parse_json`` reads the
    first value and ignores the rest (``{"a":1} junk`` parses as ``{"a":1}``), where DuckDB and every other
    reader of ours refuse the line; so the line is parsed as the first element of ``[line,"<sentinel>"]``, and
    it is JSON only when the second element is the sentinel (text after the value would sit between them
    and break the array, or be read as the second element). ``sentinel``: letters and digits, new for each
    reader (a random uuid), so no line of an export can close the array early and put it there itself."""
    sentinel = sentinel or uuid.uuid4().hex
    if not sentinel.isalnum():
        raise ValueError(f"the sentinel must be letters and digits, got {sentinel!r}")
    paths = [translate_path(view.name, c.path) for c in view.columns]
    use = f"_ok AND ({prefilter})" if prefilter else "_ok"
    # Spark's text reader keeps bytes that are not UTF-8: such a line is a bad line (JSON text is UTF-8), shown
    # with U+FFFD in their place, since the DuckDB tables the rows go to hold only valid UTF-8
    checked = (f"SELECT *, {use} AS _use FROM (SELECT _file, _line, _raw, _j, _j IS NOT NULL AS _ok FROM "
               f"(SELECT _file, _line, _raw, CASE WHEN try_variant_get(_w, '$[1]', 'string') = '{sentinel}' "
               "THEN try_variant_get(_w, '$[0]', 'variant') END AS _j FROM "
               f"(SELECT _file, _line, _raw, CASE WHEN is_valid_utf8(_raw) THEN "
               f"try_parse_json(concat('[', _raw, ',\"{sentinel}\"]')) END AS _w "
               f"FROM {source} WHERE _raw IS NOT NULL))) WHERE _ok OR trim(_raw) <> ''")
    inner = ["_file", "_line", "_ok", "_use", "_raw",
             "CASE WHEN _use THEN try_variant_get(_j, '$.resourceType', 'string') END AS _rtype",
             "CASE WHEN _ok THEN NULL ELSE substring(make_valid_utf8(_raw), 1, 160) END AS _bad"]
    for i, p in enumerate(paths):
        inner.append(f"CASE WHEN _use THEN try_variant_get(_j, {_lit(p.json_path)}, 'string') END AS _c{i}")
    if view.for_each:
        loop = translate_path(view.name, view.for_each)
        items = (f"coalesce(try_variant_get(_j, {_lit(loop.json_path)}, 'array<variant>'), "
                 "CAST(array() AS ARRAY<VARIANT>))")
        keep = f" AND size({items}) > 0" if view.for_each_or_null else ""  # as in views.view_sql
        inner.append(f"posexplode(CASE WHEN _use{keep} THEN {items} ELSE array(CAST(NULL AS VARIANT)) END) "
                     "AS (_pos, _e)")
    else:
        inner.append("0 AS _pos")
    rtype_rx = _lit(f'"resourceType"\\s*:\\s*"{view.resource}"')
    outer = ["_file", "_line", "_use", "_raw", "_pos", "_bad", "_rtype",
             f"_ok AND CASE WHEN _use THEN _rtype <=> '{view.resource}' ELSE _raw RLIKE {rtype_rx} END AS _ok"]
    for i, (col, p) in enumerate(zip(view.columns, paths, strict=True)):
        outer.append(f"{column_value(f'_c{i}', col, p.reference_type, 'try_cast')} AS {col.name}")
    for col in view.each_columns:
        p = translate_path(view.name, col.path)
        got = f"try_variant_get(_e, {_lit(p.json_path)}, 'string')"
        outer.append(f"{column_value(got, col, p.reference_type, 'try_cast')} AS {col.name}")
    return f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM ({checked}))"


class SparkReader(DuckDBReader):
    """A :class:`~.duckdb_engine.DuckDBReader` whose tables are flattened by Spark. Use as a context manager."""

    engine = "spark"

    def __init__(self, directory: Path | str, *, memory_limit: str = "1GB", threads: int | None = None,
                 master: str | None = None, staging: str | None = None):
        self.spark = spark_session(master)
        super().__init__(directory, memory_limit=memory_limit, threads=threads)
        self._sentinel = uuid.uuid4().hex  # see spark_view_sql
        self._staging = tempfile.TemporaryDirectory(prefix="ipexrx-spark-stage-",
                                                    dir=staging or os.environ.get("IPEXRX_SPARK_STAGING"))

    def close(self) -> None:
        super().close()
        self._staging.cleanup()

    def prefilter_sql(self, rtype: str, codes: list[str], patients: list[str]) -> str | None:
        """The same selection as the DuckDB engine's, tested on the raw line: a code as a JSON string
        anywhere in it, or a reference to one of ``patients`` -- regular expressions with Spark's ``RLIKE``
        (a literal substring search per code, ``instr``, was measured several times slower)."""
        return " OR ".join(f"_raw RLIKE {_lit(a)}" for a in prefilter_patterns(codes, patients)) or "FALSE"

    def _lines(self, files: list[Path]) -> Any:
        """``_file, _line, _raw`` for every line of ``files``, numbered from 1 within each file.

        The session packs one file block per task (``openCostInBytes`` = ``maxPartitionBytes``), so within a
        task ``monotonically_increasing_id() - (spark_partition_id() << 33)`` counts the block's lines from
        0. A file of one block (the usual case, and every ``.gz``) needs nothing more; the blocks of a larger
        plain file are first counted (a cheap text-only pass) to offset each block by the lines before it."""
        from pyspark.sql import functions as F
        from pyspark.sql.types import LongType, StringType, StructField, StructType

        block = int(_bytes(self.spark.conf.get("spark.sql.files.maxPartitionBytes")))
        self.spark.conf.set("spark.sql.files.openCostInBytes", str(block))

        def read(paths: list[Path]) -> Any:
            # Lines end at "\n" only, and a "\r" before it is dropped, as in the DuckDB engine: Spark's default
            # also ends a line at a lone "\r" (not valid NDJSON), which would read two objects where DuckDB
            # reports one bad line.
            # (trim works on the line's bytes: a regular expression would first turn bytes that are not UTF-8
            # into U+FFFD, and such a line must stay a bad line)
            return self.spark.read.option("lineSep", "\n").text([str(p) for p in paths]).select(
                F.col("_metadata.file_name").alias("_file"), F.col("_metadata.file_block_start").alias("_blk"),
                (F.monotonically_increasing_id() - F.shiftleft(F.spark_partition_id().cast("long"), 33) + 1)
                .alias("_n"), F.expr("trim(TRAILING '\\r' FROM value)").alias("_raw"))

        lines = read(files)
        split = [p for p in files if not p.name.endswith(".gz") and p.stat().st_size > block]
        if not split:
            return lines.select("_file", F.col("_n").alias("_line"), "_raw")
        counts = sorted((r["_file"], int(r["_blk"]), int(r["n"])) for r in read(split).groupBy("_file", "_blk").agg(
            F.count(F.lit(1)).alias("n")).collect())
        offsets: list[tuple[str, int, int]] = []
        before: dict[str, int] = {}
        for name, blk, n in counts:
            offsets.append((name, blk, before.get(name, 0)))
            before[name] = before.get(name, 0) + n
        schema = StructType([StructField("_file", StringType()), StructField("_blk", LongType()),
                             StructField("_off", LongType())])
        table = self.spark.createDataFrame(offsets, schema)
        return lines.join(F.broadcast(table), ["_file", "_blk"], "left").select(
            "_file", (F.col("_n") + F.coalesce(F.col("_off"), F.lit(0))).alias("_line"), "_raw")

    def _flatten(self, table: str, view: View, files: list[Path], keep_json: str | None,
                 prefilter: str | None) -> dict[str, int] | None:
        """Create the DuckDB ``table`` the DuckDB engine would: the view flattened by Spark, staged as Parquet,
        loaded in file and line order. Every line has its row, so no counts are returned."""
        from py4j.protocol import Py4JJavaError
        from pyspark.errors import PySparkException
        from pyspark.sql import functions as F

        src = f"_lines_{table}"
        out = Path(self._staging.name) / table
        names = ["_file", "_line", "_ok", "_bad", "_rtype", *view.column_names]
        try:
            self._lines(files).createOrReplaceTempView(src)
            flat = self.spark.sql(spark_view_sql(view, src, prefilter, self._sentinel))
            if keep_json == KEEP_SAFETY:
                keep = self.spark.createDataFrame([(p,) for p in sorted(set(self.safety_set))], "_sp STRING")
                flat = flat.join(F.broadcast(keep), flat["patient"] == keep["_sp"], "left").withColumn(
                    "_keep", F.col("_sp").isNotNull())
            else:
                flat = flat.withColumn("_keep", F.lit(keep_json is not None and keep_json.upper() == "TRUE"))
            flat = flat.select(*names, F.when(F.col("_use") & F.col("_ok") & F.col("_keep"), F.col("_raw"))
                               .alias("_json"), "_pos")
            flat.write.mode("overwrite").parquet(str(out))
        except (PySparkException, Py4JJavaError) as exc:
            listed = ", ".join(p.name for p in files)
            raise ScreenInputError(f"{listed}: cannot be read as NDJSON ({_root_cause(exc)})") from None
        parquet = str(out / "*.parquet")
        if not glob.glob(parquet):
            self.con.execute(f"CREATE OR REPLACE TABLE {table} AS {view_sql(view, EMPTY_LINES, keep_json)}")
            return None
        cols = ", ".join([*names, "_json"])
        self.con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT {cols} FROM read_parquet(?) "
                         "ORDER BY _file, _line, _pos", [parquet])
        return None



def _root_cause(exc: BaseException) -> str:
    """The innermost Java cause of a Spark failure (``EOFException: Unexpected end of input stream``), else the
    first line of its message."""
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    try:
        if java is not None:
            while java.getCause() is not None:
                java = java.getCause()
            return f"{java.getClass().getSimpleName()}: {java.getMessage()}"
    except Exception:  # the JVM is gone: fall back to the Python-side message
        pass
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _bytes(text: str) -> int:
    """Spark's size setting (``134217728b``, ``128m``, ``1g``...) in bytes."""
    t = text.strip().lower().rstrip("b")
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}.get(t[-1:], 1)
    return int(float(t.rstrip("kmgt")) * mult)
