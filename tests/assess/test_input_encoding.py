"""Patient JSON and batch NDJSON are UTF-8, with or without a byte-order mark (Windows editors write one); other
encodings are refused saying what arrived. In NDJSON the mark may open the file, not a line inside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ipexrx.cli import get_app
from ipexrx.patient.errors import MalformedInputError
from ipexrx.patient.model import decode_json

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "examples" / "busy-chart.json"
BATCH = ROOT / "examples" / "batch.ndjson"
BOM = b"\xef\xbb\xbf"
WIDE = {"COLUMNS": "400"}


def _assess(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(get_app(), ["assess", *args, "--as-of", "2026-11-25"], env=WIDE)


def test_a_json_file_with_a_byte_order_mark_is_assessed_like_without(tmp_path: Path) -> None:
    marked = tmp_path / "chart.json"
    marked.write_bytes(BOM + CHART.read_bytes().replace(b"\n", b"\r\n"))
    plain, with_bom = _assess(str(CHART), "--json"), _assess(str(marked), "--json")
    assert plain.exit_code == 0 and with_bom.exit_code == 0, with_bom.output
    a, b = json.loads(plain.stdout), json.loads(with_bom.stdout)
    assert a["alerts"] and [x["summary"] for x in a["alerts"]] == [x["summary"] for x in b["alerts"]]


def test_a_batch_with_a_byte_order_mark_reads_every_line(tmp_path: Path) -> None:
    src, out = tmp_path / "batch.ndjson", tmp_path / "out.ndjson"
    src.write_bytes(BOM + BATCH.read_bytes())
    res = _assess("--batch", str(src), "-o", str(out), "--no-progress")
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    expected = sum(1 for line in BATCH.read_bytes().splitlines() if line.strip())
    assert len(lines) == expected > 1 and all(line["ok"] for line in lines)


def test_a_byte_order_mark_inside_a_batch_is_that_lines_error(tmp_path: Path) -> None:
    rows = BATCH.read_bytes().splitlines(keepends=True)
    rows[1] = BOM + rows[1]  # a second file appended with its own mark
    src, out = tmp_path / "joined.ndjson", tmp_path / "out.ndjson"
    src.write_bytes(BOM + b"".join(rows))
    res = _assess("--batch", str(src), "-o", str(out), "--no-progress")
    lines = {d["line"]: d for d in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert lines[1]["ok"] and not lines[2]["ok"] and all(d["ok"] for n, d in lines.items() if n != 2)
    problem = json.dumps(lines[2]["error"])
    assert "byte-order mark" in problem and "start of the file" in problem
    assert "line 2" in " ".join(res.output.split())


@pytest.mark.parametrize("codec,what", [("utf-16", "UTF-16 (little-endian) text (byte-order mark FF FE)"),
                                        ("utf-16-le", "UTF-16 text without a byte-order mark")])
def test_utf16_is_refused_saying_what_it_is(tmp_path: Path, codec: str, what: str) -> None:
    wide = tmp_path / "wide.json"
    wide.write_bytes(CHART.read_text(encoding="utf-8").encode(codec))
    res = _assess(str(wide))
    text = " ".join(res.output.split())
    assert res.exit_code == 1 and "Traceback" not in text
    assert "wide.json" in text and "expected UTF-8 text" in text and what in text and "save the file as UTF-8" in text


def test_latin1_is_refused_naming_the_line(tmp_path: Path) -> None:
    latin = tmp_path / "latin.json"
    latin.write_bytes('{\n  "demographics": {"sex": "männlich"}\n}\n'.encode("latin-1"))
    res = _assess(str(latin))
    text = " ".join(res.output.split())
    assert res.exit_code == 1 and "Traceback" not in text
    assert "expected UTF-8 text" in text and "0xE4" in text and "Latin-1/Windows-1252" in text and "line 2" in text


def test_decode_json_skips_one_leading_mark_and_no_other() -> None:
    assert decode_json(BOM + b'{"a": 1}') == decode_json('\ufeff{"a": 1}') == {"a": 1}
    with pytest.raises(MalformedInputError):
        decode_json(BOM + BOM + b'{"a": 1}')
    with pytest.raises(MalformedInputError) as err:
        decode_json(b'{"a": "\x00"}')
    assert "NUL" in str(err.value.issues[0].got)


def test_a_first_line_holding_only_the_byte_order_mark_is_a_blank_line() -> None:
    import datetime as dt

    from ipexrx.assess.batch import assess_batch, assess_batch_lines

    lines = [b"\xef\xbb\xbf\n", b"{broken\n"]
    served = [r.line for r in assess_batch_lines(lines, as_of=dt.date(2026, 11, 25), dose_suggestions=False)]
    assert served == [2]  # line 1 is not reported as an empty document
    assert [r.line for r in assess_batch(lines, as_of=dt.date(2026, 11, 25), dose_suggestions=False)] == [2]


@pytest.mark.parametrize("as_bytes", [True, False])
def test_json_cut_off_after_non_ascii_text_is_said_to_end_early(as_bytes: bool) -> None:
    text = '{"note": "Zoë, Ångström, 移植", "x": '
    with pytest.raises(MalformedInputError) as caught:
        decode_json(text.encode() if as_bytes else text)
    assert "the text ends before the JSON is complete" in caught.value.issues[0].got
