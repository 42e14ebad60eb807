"""Registry CSV import reads what spreadsheets write: UTF-8 with a byte-order mark ("CSV UTF-8" in Excel, CRLF
line ends), plain UTF-8; UTF-16 is refused naming the file and what it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipexrx.registry.ops import ValidationFailed, read_csv_bundles

PATIENT = ("record,birth_year,birth_month,sex,diagnosis,gene,variant_hgvs,diagnosis_date,consent_date,consent_scope\n"
           "r1,2019,5,male,ipex,FOXP3,c.1150G>A,2019-09-01,2019-09-02,registry\n"
           "r2,2021,1,male,ipex,FOXP3,c.1189C>T,2021-03-01,2021-03-02,registry\n")
COURSE = "record,id,drug_id,start_date\nr1,1,sirolimus,2019-09-10\nr2,2,tacrolimus,2021-03-10\n"


def _write(directory: Path, encode) -> Path:  # type: ignore[no-untyped-def]
    directory.mkdir()
    (directory / "patient.csv").write_bytes(encode(PATIENT))
    (directory / "course.csv").write_bytes(encode(COURSE))
    return directory


def _summary(directory: Path) -> list[tuple[str, str, int, list[str]]]:
    keys, bundles = read_csv_bundles(directory)
    return [(k, b.patient.sex, b.patient.birth_year, [c.drug_id for c in b.courses])
            for k, b in zip(keys, bundles, strict=True)]


def test_a_byte_order_mark_and_crlf_read_like_plain_utf8(tmp_path: Path) -> None:
    plain = _summary(_write(tmp_path / "plain", lambda t: t.encode("utf-8")))
    excel = _summary(_write(tmp_path / "excel", lambda t: b"\xef\xbb\xbf" + t.replace("\n", "\r\n").encode("utf-8")))
    assert plain == excel == [("r1", "male", 2019, ["sirolimus"]), ("r2", "male", 2021, ["tacrolimus"])]


def test_utf16_is_refused_naming_the_file_and_the_encoding(tmp_path: Path) -> None:
    directory = _write(tmp_path / "wide", lambda t: t.encode("utf-16"))
    with pytest.raises(ValidationFailed) as err:
        read_csv_bundles(directory)
    text = " ".join(str(p) for p in err.value.problems)
    assert "patient.csv, line 1" in text and "expected UTF-8 text" in text and "got UTF-16" in text
