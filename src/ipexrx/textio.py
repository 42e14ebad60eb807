"""Reading user-supplied text files (CSV uploads, data files): one decoder for every reader.

Accepted: UTF-8 with or without a byte-order mark, and - when the bytes are not valid UTF-8 - the legacy
single-byte encodings spreadsheets still write (Windows-1252, of which Latin-1's printable characters are a
subset), with a warning saying which encoding was assumed. Refused, with a message naming the file, the line
and what was expected and what arrived: UTF-16/UTF-32 (recognised by their byte-order mark, or by NUL bytes
without one), binary data (NUL or other control bytes), and files that mix UTF-8 with another encoding (no
single reading is right for them).

Why here: it depends on nothing but the standard library, so every layer that reads a user file (dosing,
registry import, the faces) may import it; each wraps :class:`TextEncodingError` in its own error type.
"""

from __future__ import annotations

import codecs
import csv
import re
from dataclasses import dataclass
from pathlib import Path

EXPECTED = "UTF-8 text (with or without a byte-order mark) or Latin-1/Windows-1252 text"

_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "UTF-32 (little-endian)"),
    (codecs.BOM_UTF32_BE, "UTF-32 (big-endian)"),
    (codecs.BOM_UTF16_LE, "UTF-16 (little-endian)"),
    (codecs.BOM_UTF16_BE, "UTF-16 (big-endian)"),
)
# a well-formed multi-byte UTF-8 sequence (2, 3 or 4 bytes)
_UTF8_SEQ = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
# control characters no text file carries (tab, line feed, carriage return and form feed are text)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


class TextEncodingError(ValueError):
    """The bytes are not text in an accepted encoding. ``line`` is 1-based (None when not located)."""

    def __init__(self, source: str, line: int | None, field: str | None, got: str, expected: str = EXPECTED):
        self.source, self.line, self.field, self.got, self.expected = source, line, field, got, expected
        where = source + (f", line {line}" if line else "") + (f", field {field}" if field else "")
        super().__init__(f"{where}: expected {expected}, got {got}")


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str  # "utf-8", "utf-8 (with byte-order mark)" or "windows-1252"
    warning: str | None = None  # set when a legacy encoding was assumed


def _locate(data: bytes, offset: int, csv_fields: bool) -> tuple[int, str | None]:
    """(1-based line, field) of the byte at ``offset``; the field is the CSV column's header name (or its
    1-based number) when ``csv_fields``."""
    line = data.count(b"\n", 0, offset) + 1
    if not csv_fields:
        return line, None
    start = data.rfind(b"\n", 0, offset) + 1
    prefix = data[start:offset].decode("latin-1")
    index = len(next(csv.reader([prefix + "x"]), [""])) - 1  # the field the byte falls in (0-based)
    header_end = data.find(b"\n")
    header = data[: header_end if header_end >= 0 else len(data)].decode("latin-1").lstrip("\ufeff\xef\xbb\xbf")
    names = next(csv.reader([header.strip("\r")]), [])
    if line > 1 and index < len(names) and names[index].strip():
        return line, names[index].strip()
    return line, f"{index + 1}" + (" (header)" if line == 1 else "")


def decode_text(data: bytes, source: str, *, csv_fields: bool = False, legacy: bool = True,
                expected: str | None = None) -> DecodedText:
    """The text of ``data`` (the contents of the file named ``source`` in messages).

    ``legacy=False`` accepts UTF-8 only (JSON, which RFC 8259 requires to be UTF-8). ``csv_fields`` makes a
    located error name the CSV column (from the header row) as well as the line.
    """
    exp = expected or (EXPECTED if legacy else "UTF-8 text (with or without a byte-order mark)")
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise TextEncodingError(source, 1, None, f"{name} text (byte-order mark {bom.hex(' ').upper()}); "
                                    "save the file as UTF-8" + (" (in a spreadsheet: 'CSV UTF-8')" if legacy else ""),
                                    exp)
    nul = data.find(b"\x00")
    if nul >= 0:
        pattern = data[:64]
        looks_utf16 = len(pattern) >= 4 and (pattern[1::2].count(0) > len(pattern) // 4
                                             or pattern[0::2].count(0) > len(pattern) // 4)
        line, field = _locate(data, nul, csv_fields and not looks_utf16)
        what = ("UTF-16 text without a byte-order mark (every other byte is 0x00); save the file as UTF-8"
                if looks_utf16 else f"binary data (a NUL byte 0x00 at byte {nul})")
        raise TextEncodingError(source, line, field, what, exp)
    try:
        text = data.decode("utf-8")
        encoding = "utf-8"
        if text.startswith("\ufeff"):
            text, encoding = text[1:], "utf-8 (with byte-order mark)"
        warning = None
    except UnicodeDecodeError as exc:
        line, field = _locate(data, exc.start, csv_fields)
        bad = data[exc.start]
        mixed = bool(_UTF8_SEQ.search(data, 0, exc.start) or _UTF8_SEQ.search(data, exc.end))
        if not legacy:
            looks = "" if mixed else "; the text looks like Latin-1/Windows-1252"
            raise TextEncodingError(source, line, field, f"a byte that is not UTF-8 (0x{bad:02X}{looks}); save the "
                                    "file as UTF-8", exp) from None
        if mixed:
            raise TextEncodingError(
                source, line, field, f"a mixture of UTF-8 and another encoding (byte 0x{bad:02X} is not UTF-8, "
                "other characters are); save the whole file in one encoding, preferably UTF-8", exp) from None
        try:  # Windows-1252 reads every printable Latin-1 byte alike and adds the 0x80-0x9F punctuation
            text, encoding = data.decode("cp1252"), "windows-1252"
        except UnicodeDecodeError as exc2:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D: a control code in Latin-1 too
            line, field = _locate(data, exc2.start, csv_fields)
            raise TextEncodingError(source, line, field, f"binary data (byte 0x{data[exc2.start]:02X} is neither "
                                    "UTF-8 nor a Latin-1/Windows-1252 character)", exp) from None
        where = f"line {line}" + (f", field {field}" if field else "")
        warning = (f"{source} is not UTF-8 (byte 0x{bad:02X} at {where}); it was read as Windows-1252 "
                   "(Latin-1): check accented names and the micro sign, or save the file as UTF-8")
    ctrl = _CONTROL.search(text)
    if ctrl is not None:
        offset = len(text[: ctrl.start()].encode("utf-8" if encoding.startswith("utf-8") else "cp1252",
                                                  errors="replace")) + (3 if encoding.endswith("mark)") else 0)
        line = text.count("\n", 0, ctrl.start()) + 1
        field = _locate(data, offset, csv_fields)[1] if csv_fields else None
        raise TextEncodingError(source, line, field,
                                f"binary data (control character U+{ord(ctrl.group()):04X})", exp)
    return DecodedText(text, encoding, warning)


def read_text_file(path: str | Path, *, csv_fields: bool = False, legacy: bool = True) -> DecodedText:
    """:func:`decode_text` of a file's bytes. An unreadable file raises ``OSError`` (the caller names it)."""
    p = Path(path)
    return decode_text(p.read_bytes(), str(p), csv_fields=csv_fields, legacy=legacy)
