"""CSV encodings: UTF-8 with or without a byte-order mark and Windows-1252/Latin-1 (with a warning) are read;
UTF-16, binary data and mixed encodings are refused with a message naming the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipexrx.dosing.data import read_nmtran
from ipexrx.dosing.errors import DataError
from ipexrx.textio import TextEncodingError, decode_text

CSV = "ID,TIME,EVID,AMT,CMT,II,ADDL,DV,WT\n1,0,1,2,1,12,5,.,20\n1,59.5,0,.,2,.,.,8,20\n"


def _subject_summary(subjects: list) -> list[tuple[str, int, float | None]]:
    return [(s.id, len(s.records), s.records[-1].dv) for s in subjects]


def test_utf8_with_and_without_byte_order_mark_read_alike_without_a_warning(tmp_path: Path) -> None:
    plain, bom = tmp_path / "plain.csv", tmp_path / "bom.csv"
    plain.write_bytes(CSV.encode("utf-8"))
    bom.write_bytes(b"\xef\xbb\xbf" + CSV.encode("utf-8"))
    a, b = read_nmtran(plain), read_nmtran(bom)
    assert _subject_summary(a) == _subject_summary(b) == [("1", 2, 8.0)]
    assert "WT" in b[0].records[0].covariates  # the mark did not stick to the first header name
    assert a[0].warnings == b[0].warnings == []


def test_bytes_are_read_like_a_file_and_named_in_messages() -> None:
    (s,) = read_nmtran(CSV.encode(), name="upload.csv")
    assert s.records[1].dv == 8.0
    with pytest.raises(DataError, match=r"upload\.csv: subject 1, line 3, field DV: expected a number, got 'x'"):
        read_nmtran(CSV.replace(",8,", ",x,").encode(), name="upload.csv")


@pytest.mark.parametrize(("encoding", "comment"), [("latin-1", "C Müller 2 µg"), ("cp1252", "C Müller – 2 µg")])
def test_a_legacy_encoded_file_is_read_with_a_warning_naming_the_encoding(tmp_path: Path, encoding: str,
                                                                          comment: str) -> None:
    p = tmp_path / "legacy.csv"
    p.write_bytes((CSV + comment + "\n").encode(encoding))
    (s,) = read_nmtran(p)
    assert s.records[1].dv == 8.0
    (warning,) = s.warnings
    assert "legacy.csv is not UTF-8" in warning and "line 4" in warning and "Windows-1252 (Latin-1)" in warning


def test_utf16_with_its_byte_order_mark_is_refused_naming_file_and_what_arrived(tmp_path: Path) -> None:
    p = tmp_path / "excel-unicode.csv"
    p.write_bytes(CSV.encode("utf-16"))
    with pytest.raises(DataError) as err:
        read_nmtran(p)
    msg = str(err.value)
    assert "excel-unicode.csv, line 1" in msg and "expected UTF-8 text" in msg
    assert "got UTF-16 (little-endian) text (byte-order mark FF FE)" in msg


def test_utf16_without_a_mark_is_recognised_by_its_zero_bytes() -> None:
    with pytest.raises(DataError, match="UTF-16 text without a byte-order mark"):
        read_nmtran(CSV.encode("utf-16-be"), name="x.csv")


def test_binary_data_is_refused_at_its_line_and_field() -> None:
    data = CSV.encode().replace(b"59.5", b"5\x009.5")
    with pytest.raises(DataError, match=r"x\.csv, line 3, field TIME: expected UTF-8 .* got binary data"):
        read_nmtran(data, name="x.csv")
    with pytest.raises(DataError, match=r"line 2, field AMT: .*control character U\+0003"):
        read_nmtran(CSV.encode().replace(b"1,2,1", b"1,\x03,1"), name="x.csv")


def test_a_file_mixing_utf8_and_latin1_is_refused_rather_than_half_misread() -> None:
    data = CSV.encode() + "C µg\n".encode() + "C é\n".encode("latin-1")
    with pytest.raises(TextEncodingError, match=r"line 5, .*mixture of UTF-8 and another encoding"):
        decode_text(data, "mixed.csv", csv_fields=True)


def test_json_mode_accepts_utf8_only() -> None:
    assert decode_text(b'\xef\xbb\xbf{"a": 1}', "b.json", legacy=False).text == '{"a": 1}'
    with pytest.raises(TextEncodingError, match=r"b\.json, line 1: expected UTF-8 text .* got a byte that is not"):
        decode_text('{"a": "é"}'.encode("latin-1"), "b.json", legacy=False)


def test_line_numbers_count_blank_lines_and_quoted_line_breaks() -> None:
    text = 'ID,TIME,EVID,AMT,CMT,DV,NOTE\n\n1,0,1,2,1,.,"two\nlines"\n1,abc,0,.,2,8,x\n'
    with pytest.raises(DataError, match=r"subject 1, line 5, field TIME: expected a number, got 'abc'"):
        read_nmtran(text.encode(), ["WT"], name="n.csv")


def test_the_cli_reads_a_latin1_csv_with_the_warning_and_refuses_utf16_with_exit_1(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ipexrx.cli import get_app

    tac = "ID,TIME,EVID,AMT,CMT,II,ADDL,DV,WT,DONOR_DECEASED,EGFR,HCT\n" \
          "1,0,1,2,1,12,5,.,20,1,80,0.35\n1,59.5,0,.,2,.,.,5,20,1,80,0.35\nC Müller\n"
    latin = tmp_path / "latin.csv"
    latin.write_bytes(tac.encode("latin-1"))
    ok = CliRunner().invoke(get_app(), ["dose", "recommend", "--model", "andrews2018-tacrolimus", "--data", str(latin)],
                            env={"COLUMNS": "1000"})  # no wrapping inside the file path
    assert ok.exit_code == 0, ok.output
    assert "latin.csv is not UTF-8 (byte 0xFC at line 4" in " ".join(ok.output.split())  # rich wraps lines
    wide = tmp_path / "wide.csv"
    wide.write_bytes(tac.encode("utf-16"))
    bad = CliRunner().invoke(get_app(), ["dose", "fit", "--model", "andrews2018-tacrolimus", "--data", str(wide)])
    assert bad.exit_code == 1 and "wide.csv, line 1: expected UTF-8 text" in " ".join(bad.output.split())
    assert "Traceback" not in bad.output
