"""The Spark engine gives what the DuckDB engine gives: the same views, the same ranking, the same reports.

One SparkSession serves the whole module (starting the JVM takes seconds); the engine reuses it per master.
Skipped only when PySpark is not installed (the optional extra ``pip install '.[spark]'``).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Any

import pytest

from .conftest import AS_OF, POPULATION

pytest.importorskip("pyspark", reason="the Spark engine is the optional extra: pip install '.[spark]'")


@pytest.fixture(scope="module")
def spark() -> Any:
    from ipexrx.screen.spark_engine import spark_session

    return spark_session("local[2]")


@pytest.fixture(scope="module")
def spark_ranked(spark: Any) -> dict[str, Any]:
    """Every scored patient, below the candidate threshold too, screened by Spark."""
    from ipexrx.screen.run import screen

    return screen(POPULATION, as_of=AS_OF, all_scored=True, engine="spark", spark_master="local[2]")


def test_spark_ranks_the_same_patients_in_the_same_order_with_the_same_scores(
        ranked: dict[str, Any], spark_ranked: dict[str, Any]) -> None:
    duck, spark = ranked["candidates"], spark_ranked["candidates"]
    assert len(duck) > 20
    assert [c["patient"] for c in spark] == [c["patient"] for c in duck]
    for d, s in zip(duck, spark, strict=True):
        assert s["score"] == pytest.approx(d["score"], abs=1e-9)
        assert s["reasons"] == d["reasons"] and s["pattern"] == d["pattern"] and s["next_step"] == d["next_step"]


def test_spark_finds_the_same_known_patients(ranked: dict[str, Any], spark_ranked: dict[str, Any]) -> None:
    assert ranked["known"] and spark_ranked["known"] == ranked["known"]


def test_spark_gives_the_same_drug_safety_alerts(ranked: dict[str, Any], spark_ranked: dict[str, Any]) -> None:
    assert ranked["safety"] and spark_ranked["safety"] == ranked["safety"]
    assert spark_ranked["stats"]["safety_patients_checked"] == ranked["stats"]["safety_patients_checked"]


def test_spark_reports_the_same_bad_lines_by_file_and_line_gz_included(
        ranked: dict[str, Any], spark_ranked: dict[str, Any]) -> None:
    bad = spark_ranked["stats"]["bad_lines"]
    assert bad == ranked["stats"]["bad_lines"]
    assert {(b["file"], b["line"]) for b in bad} == {("Condition.ndjson", 516), ("Observation.ndjson.gz", 742)}


def test_spark_counts_the_same_files_resources_and_score_distribution(
        ranked: dict[str, Any], spark_ranked: dict[str, Any]) -> None:
    for key in ("patients", "resources", "files", "ignored_files", "score_histogram", "candidates", "known"):
        assert spark_ranked["stats"][key] == ranked["stats"][key], key
    assert spark_ranked["stats"]["engine"] == "spark" and ranked["stats"]["engine"] == "duckdb"


def _awkward_export(tmp: Path) -> Path:
    """Patients plus a Condition file with a blank line, CRLF endings, a wrong resourceType, JSON that is
    not an object, a truncated line and an empty coding list; and the same Conditions again gzipped in a
    second file."""
    shutil.copy(POPULATION / "Patient.ndjson", tmp / "Patient.ndjson")
    lines = (POPULATION / "Condition.ndjson").read_text(encoding="utf-8").splitlines()
    lines[10] = '{"resourceType": "Observation", "id": "misfiled"}'
    lines[20] = "[1, 2, 3]"
    lines[30] = ""
    lines[40] = ('{"resourceType": "Condition", "id": "no-codings", "subject": {"reference": "Patient/p000001"}, '
                 '"code": {"coding": [], "text": "chronic diarrhoea"}}')
    lines[300] = lines[300][:50]
    (tmp / "Condition.ndjson").write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    with gzip.open(tmp / "Condition-2.ndjson.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines[:400]) + "\n")
    return tmp


def _read(reader: Any) -> tuple[list[Any], dict[str, int], list[tuple[Any, ...]]]:
    with reader:
        reader.load("Patient", keep_json="TRUE")
        reader.load("Condition")
        rows = reader.sql("SELECT _file, _line, id, patient, system, code, onset, onset_age, text FROM t_condition "
                          "ORDER BY ALL")
        return [str(b) for b in reader.stats.bad_lines], dict(reader.stats.files), rows


def test_spark_numbers_lines_exactly_across_blocks_crlf_blank_lines_and_gz(spark: Any, tmp_path: Path) -> None:
    from ipexrx.screen.duckdb_engine import DuckDBReader
    from ipexrx.screen.spark_engine import SparkReader

    export = _awkward_export(tmp_path)
    duck = _read(DuckDBReader(export))
    before = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "32k")  # the 290 kB file is read in ten blocks
    try:
        sparked = _read(SparkReader(export, master="local[2]"))
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", before)
    assert sparked[0] == duck[0]
    assert any(":11: resourceType 'Observation'" in b for b in duck[0])
    assert any("Condition.ndjson:301: not valid JSON" in b for b in duck[0])
    assert any("Condition-2.ndjson.gz:301: not valid JSON" in b for b in duck[0])
    assert sparked[1] == duck[1]
    assert sparked[2] == duck[2]
    assert ("Condition.ndjson", 41, "no-codings") in {r[:3] for r in duck[2]}


def test_a_file_with_no_usable_line_is_refused_as_by_duckdb(spark: Any, tmp_path: Path) -> None:
    from ipexrx.screen.errors import ScreenInputError
    from ipexrx.screen.spark_engine import SparkReader

    shutil.copy(POPULATION / "Patient.ndjson", tmp_path / "Patient.ndjson")
    (tmp_path / "Procedure.ndjson").write_text("<html>404</html>\nnot json either\n", encoding="utf-8")
    with SparkReader(tmp_path, master="local[2]") as reader, pytest.raises(ScreenInputError,
                                                                            match=r"Procedure.ndjson: no line"):
        reader.load("Procedure")


def test_a_truncated_gz_file_is_refused_with_its_name_and_cause(spark: Any, tmp_path: Path) -> None:
    from ipexrx.screen.errors import ScreenInputError
    from ipexrx.screen.spark_engine import SparkReader

    shutil.copy(POPULATION / "Patient.ndjson", tmp_path / "Patient.ndjson")
    (tmp_path / "Observation.ndjson.gz").write_bytes((POPULATION / "Observation.ndjson.gz").read_bytes()[:5000])
    with SparkReader(tmp_path, master="local[2]") as reader, pytest.raises(
            ScreenInputError, match=r"Observation.ndjson.gz: cannot be read as NDJSON \(EOFException: Unexpected end"):
        reader.load("Observation")


def test_one_process_keeps_one_spark_master(spark: Any) -> None:
    from ipexrx.screen.spark_engine import SparkUnavailableError, spark_session

    assert spark_session("local[2]") is spark
    with pytest.raises(SparkUnavailableError, match=r"already runs Spark with master 'local\[2\]'"):
        spark_session("local[1]")


def _both_engines(export: Path, query: str, *types: str) -> dict[str, tuple[list[Any], list[tuple[str, int, str]]]]:
    """Per engine: the rows of ``query`` after loading ``types`` (default Patient) from ``export``, and the bad
    lines as (file, line, problem)."""
    from ipexrx.screen.duckdb_engine import DuckDBReader
    from ipexrx.screen.spark_engine import SparkReader

    got = {}
    for reader in (SparkReader(export, master="local[2]"), DuckDBReader(export)):
        with reader:
            for rtype in types or ("Patient",):
                reader.load(rtype, keep_json="TRUE" if rtype == "Patient" else None)
            got[reader.engine] = (reader.sql(query), [(b.file, b.line, b.problem) for b in reader.stats.bad_lines])
    return got


def _where(got: dict[str, tuple[list[Any], list[tuple[str, int, str]]]]) -> dict[str, Any]:
    return {engine: (rows, [(f, n) for f, n, _ in bad]) for engine, (rows, bad) in got.items()}


def test_a_line_that_is_not_utf8_is_one_bad_line_for_both_engines(spark: Any, tmp_path: Path) -> None:
    (tmp_path / "Patient.ndjson").write_bytes(b'{"resourceType":"Patient","id":"a"}\n'
                                              b'{"resourceType":"Patient","id":"b\xff"}\n'
                                              b'{"resourceType":"Patient","id":"c"}\n')
    got = _both_engines(tmp_path, "SELECT id FROM t_patient ORDER BY _line")
    for engine in ("spark", "duckdb"):
        assert _where(got)[engine] == ([("a",), ("c",)], [("Patient.ndjson", 2)]), engine
        assert "not valid JSON" in got[engine][1][0][2], engine


def test_a_lone_carriage_return_joins_two_objects_into_one_bad_line_for_both_engines(
        spark: Any, tmp_path: Path) -> None:
    """NDJSON lines end at \\n (a \\r before it dropped); a lone \\r (old Mac line end) does not end a line, so
    the two objects around it are one bad line for both engines, and the lines after keep their numbers."""
    (tmp_path / "Patient.ndjson").write_bytes(b'{"resourceType":"Patient","id":"a"}\r\n'
                                              b'{"resourceType":"Patient","id":"b"}\r{"resourceType":"Patient","id":"c"}\n'
                                              b'{"resourceType":"Patient","id":"d"}\r\n'
                                              b'{"resourceType":"Patient","id":"e"}\r')
    got = _where(_both_engines(tmp_path, "SELECT id, _line FROM t_patient ORDER BY _line"))
    assert got["spark"] == got["duckdb"] == ([("a", 1), ("d", 3), ("e", 4)], [("Patient.ndjson", 2)])


@pytest.mark.parametrize("tail", [b" junk", b"}", b' {"resourceType":"Patient","id":"x"}', b", 1", b']]"]'])
def test_text_after_the_json_object_makes_the_line_bad_for_both_engines(spark: Any, tmp_path: Path,
                                                                         tail: bytes) -> None:
    """Spark's JSON parser stops after the first value; a line with anything but whitespace after its object is
    still a bad line (never half-read), as it is for DuckDB."""
    (tmp_path / "Patient.ndjson").write_bytes(b'{"resourceType":"Patient","id":"a"}  \n'
                                              b'{"resourceType":"Patient","id":"b"}' + tail + b"\n"
                                              b'{"resourceType":"Patient","id":"c"}\t\n')
    got = _both_engines(tmp_path, "SELECT id FROM t_patient ORDER BY _line")
    assert _where(got)["spark"] == _where(got)["duckdb"] == ([("a",), ("c",)], [("Patient.ndjson", 2)])
    assert all("not valid JSON" in bad[0][2] for _rows, bad in got.values())


@pytest.mark.parametrize("tail", [', "x": NaN}', ', "x": [1,]}', ', "x": -Infinity}'])
def test_json_that_only_duckdb_accepts_is_a_bad_line_for_spark(spark: Any, tmp_path: Path, tail: str) -> None:
    """The documented difference (docs/screen.md): DuckDB's JSON reader accepts NaN, Infinity and trailing commas
    and reads the line (the safety check then refuses to judge its patient, tests/screen/test_screen_record_errors.py);
    Spark's parser refuses them, so the line is a bad line, reported with its file and number."""
    (tmp_path / "Patient.ndjson").write_bytes(b'{"resourceType":"Patient","id":"a"}\n'
                                              + b'{"resourceType":"Patient","id":"b"' + tail.encode() + b"\n")
    got = _where(_both_engines(tmp_path, "SELECT id FROM t_patient ORDER BY _line"))
    assert got["spark"] == ([("a",)], [("Patient.ndjson", 2)])
    assert got["duckdb"] == ([("a",), ("b",)], [])


def test_a_repeated_key_is_read_by_both_engines_spark_taking_the_last_value_duckdb_the_first(
        spark: Any, tmp_path: Path) -> None:
    """What docs/screen.md says of repeated keys (which FHIR forbids): read, not reported, and not alike."""
    (tmp_path / "Patient.ndjson").write_bytes(
        b'{"resourceType":"Patient","id":"p1","gender":"male","gender":"female"}\n')
    (tmp_path / "Condition.ndjson").write_bytes(
        b'{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1","reference":"Patient/p2"},'
        b'"code":{"text":"chronic diarrhoea"}}\n')
    got = _both_engines(tmp_path, "SELECT p.gender, c.patient FROM t_patient p, t_condition c", "Patient", "Condition")
    assert got["spark"] == ([("female", "p2")], [])
    assert got["duckdb"] == ([("male", "p1")], [])
