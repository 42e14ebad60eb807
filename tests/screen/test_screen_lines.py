"""The line readers (Arrow's CSV reader, fast; Python line by line, exact) number lines as an editor does, and
the fast one gives way to the exact one on files it might split or decode differently."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Any

import pytest

from .conftest import POPULATION

pytest.importorskip("pyarrow")

P1 = '{"resourceType":"Patient","id":"a","gender":"male","birthDate":"2025-01-01"}'
P2 = '{"resourceType":"Patient","id":"b","gender":"female"}'


def _lines(path: Path, block: int | None = None, monkeypatch: pytest.MonkeyPatch | None = None,
           exact: bool = False) -> list[Any]:
    from ipexrx.screen import lines

    if block is not None and monkeypatch is not None:
        monkeypatch.setattr(lines, "BLOCK", block)
        monkeypatch.setattr(lines, "EXACT_BATCH", 7)
    src = lines.LineSource([path], exact=exact)
    table = src.reader.read_all()
    return list(zip(table.column("_file").to_pylist(), table.column("_line").to_pylist(),
                    table.column("_raw").to_pylist(), strict=True))


@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
def test_blank_lines_are_counted_and_crlf_bom_and_a_last_line_without_end_are_read(tmp_path: Path,
                                                                                   exact: bool) -> None:
    f = tmp_path / "Patient.ndjson"
    f.write_bytes(b"\xef\xbb\xbf" + P1.encode() + b"\r\n\r\n   \n" + P2.encode())
    assert _lines(f, exact=exact) == [("Patient.ndjson", 1, P1), ("Patient.ndjson", 2, ""),
                                      ("Patient.ndjson", 3, "   "), ("Patient.ndjson", 4, P2)]


def test_gzip_files_are_numbered_from_one_each(tmp_path: Path) -> None:
    from ipexrx.screen import lines

    a = tmp_path / "Patient.ndjson.gz"
    a.write_bytes(gzip.compress(f"{P1}\n{P2}\n".encode()))
    b = tmp_path / "Patient-2.ndjson"
    b.write_text(f"\n{P2}\n", encoding="utf-8")
    table = lines.LineSource([a, b]).reader.read_all()
    assert list(zip(table.column("_file").to_pylist(), table.column("_line").to_pylist(), strict=True)) == [
        ("Patient.ndjson.gz", 1), ("Patient.ndjson.gz", 2), ("Patient-2.ndjson", 1), ("Patient-2.ndjson", 2)]


def test_an_empty_file_has_no_lines(tmp_path: Path) -> None:
    f = tmp_path / "Patient.ndjson"
    f.write_bytes(b"")
    assert _lines(f) == []


@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
def test_line_numbers_run_on_across_blocks_and_a_crlf_split_by_a_block_edge_is_one_line_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exact: bool) -> None:
    f = tmp_path / "Patient.ndjson"
    rows = [P1.replace('"a"', f'"p{i}"') for i in range(400)]
    f.write_bytes(("\r\n".join(rows) + "\r\n").encode())
    # dozens of blocks (some ending between \r and \n) or batches of 7 lines
    got = _lines(f, block=1000, monkeypatch=monkeypatch, exact=exact)
    assert [n for _f, n, _r in got] == list(range(1, 401))
    assert [r for _f, _n, r in got] == rows


@pytest.mark.parametrize(("data", "why"), [
    (f"{P1}\r{P2}\n".encode(), "carriage return without a line feed"),
    (f"{P1}\n{P2}\x01junk\n".encode(), "control byte 0x01"),
    (f"{P1}\n".encode() + b'{"id":"\xff"}\n', "invalid UTF8"),
])
def test_the_fast_reader_gives_way_on_what_it_might_number_differently(tmp_path: Path, data: bytes,
                                                                        why: str) -> None:
    from ipexrx.screen import lines

    f = tmp_path / "Patient.ndjson"
    f.write_bytes(data)
    src = lines.LineSource([f])
    with pytest.raises(Exception):  # noqa: B017 - pyarrow wraps the Python error in its own type
        src.reader.read_all()
    assert src.problem is not None and why in str(src.problem)


def _tables(reader: Any) -> dict[str, list[tuple[Any, ...]]]:
    from ipexrx.screen.duckdb_engine import TABLES

    return {t: reader.sql(f"SELECT * FROM {t} ORDER BY ALL") for t in TABLES.values()}


def _load(directory: Path, fast: bool) -> Any:
    from ipexrx.screen.duckdb_engine import DuckDBReader

    reader = DuckDBReader(directory)
    reader.fast_lines = fast
    reader.load_all(lambda rd: ["p000004", "p000013"], wanted_codes={"Observation": ["19113-0", "711-2"]})
    return reader


def test_the_shipped_population_flattens_the_same_through_the_fast_and_the_exact_reader() -> None:
    fast, exact = _load(POPULATION, True), _load(POPULATION, False)
    with fast, exact:
        assert fast.exact_reads == []
        assert fast.stats == exact.stats  # the same bad lines (file and line), counts and resources
        assert fast.stats.bad_lines  # the shipped population has broken lines
        assert _tables(fast) == _tables(exact)


def test_a_file_the_fast_reader_gives_way_on_is_read_the_exact_way_and_nothing_is_lost(tmp_path: Path) -> None:
    pop = tmp_path / "pop"
    shutil.copytree(POPULATION, pop)
    cond = pop / "Condition.ndjson"
    cond.write_bytes(cond.read_bytes() + b'{"resourceType":"Condition","id":"x"}\x01junk\n')
    fast, exact = _load(pop, True), _load(pop, False)
    with fast, exact:
        assert [names for names, _why in fast.exact_reads] == ["Condition.ndjson"]
        assert "0x01" in fast.exact_reads[0][1]
        assert fast.stats == exact.stats
        last = [b for b in fast.stats.bad_lines if b.file == "Condition.ndjson"][-1]
        assert last.line == len(cond.read_bytes().splitlines()) and "not valid JSON" in last.problem
        assert _tables(fast) == _tables(exact)


def _screened(directory: Path) -> Any:
    from ipexrx.screen.duckdb_engine import DuckDBReader

    reader = DuckDBReader(directory)
    reader.load("Patient", keep_json="TRUE")
    return reader


def test_a_line_that_is_not_utf8_is_a_bad_line_and_the_others_are_kept(tmp_path: Path) -> None:
    (tmp_path / "Patient.ndjson").write_bytes(f"{P1}\n".encode() + b'{"resourceType":"Patient","id":"\xff"}\n'
                                              + f"{P2}\n".encode())
    with _screened(tmp_path) as reader:
        assert reader.sql("SELECT id, _line FROM t_patient ORDER BY _line") == [("a", 1), ("b", 3)]
        [bad] = reader.stats.bad_lines
        assert (bad.file, bad.line) == ("Patient.ndjson", 2)
        assert "not valid JSON" in bad.problem and "\\xff" in bad.problem  # the bad byte is shown
        assert reader.stats.resources["Patient"] == 2


def test_a_lone_carriage_return_does_not_end_a_line_and_the_next_line_is_kept_whole(tmp_path: Path) -> None:
    """NDJSON lines end at \\n; two objects joined by a lone \\r are one bad line, as an editor shows them."""
    p3 = P2.replace('"b"', '"c"')
    (tmp_path / "Patient.ndjson").write_bytes(f"{P1}\r{P2}\n{p3}\n".encode())
    with _screened(tmp_path) as reader:
        assert reader.sql("SELECT id, gender, _line FROM t_patient") == [("c", "female", 2)]
        assert [(b.file, b.line) for b in reader.stats.bad_lines] == [("Patient.ndjson", 1)]
        assert reader.exact_reads and "carriage return" in reader.exact_reads[0][1]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "exact"])
def test_a_truncated_gzip_file_is_refused_by_name(tmp_path: Path, fast: bool) -> None:
    from ipexrx.screen.duckdb_engine import DuckDBReader
    from ipexrx.screen.errors import ScreenInputError

    rows = [P1.replace('"a"', f'"p{i}"') for i in range(2000)]
    whole = gzip.compress(("\n".join(rows) + "\n").encode())
    (tmp_path / "Patient.ndjson.gz").write_bytes(whole[: len(whole) // 2])
    with DuckDBReader(tmp_path) as reader:
        reader.fast_lines = fast
        with pytest.raises(ScreenInputError, match=r"Patient\.ndjson\.gz: cannot be read as NDJSON"):
            reader.load("Patient", keep_json="TRUE")
