"""The numbered lines of NDJSON files as an Arrow stream, for DuckDB to read in parallel.

Why this exists: a screen must name every bad line by file and line number, and the only way DuckDB
numbers lines is ``row_number() OVER ()`` over a sequential CSV scan -- which makes every later step of
that query (JSON parsing, regular expressions, copying) run on one thread, while the other core waits.
Here the lines are split and numbered before DuckDB sees them, so it receives ``_file, _line, _raw``
already numbered and parses the batches on every thread. Gzip is inflated by ISA-L (``isal``), several
times faster than zlib; without it, by Python's ``gzip``.

Two readers give the same lines, numbered as a text editor numbers them (a line ends at ``\n``; a
``\r`` before it is dropped; a UTF-8 byte-order mark opening the file is not part of line 1):

* the fast one: Arrow's CSV reader (C++, no quoting, one text column). It gives way -- raising
  :class:`NotPlainLines` while it is read -- where it might split or decode differently: a control
  byte ``\x01`` (its column separator), a carriage return not followed by a line feed (Arrow ends a
  line there), bytes that are not UTF-8, a line longer than a block;
* the exact one: Python reading line by line (``exact=True``), several times slower, for those files.
  A line that is not UTF-8 is passed on with its bad bytes written as ``\\xNN`` -- never valid JSON
  (JSON text is UTF-8), so it is reported as a bad line with what it holds, and the other lines are
  kept. A file that cannot be read at all (a broken gzip stream) is named in ``refusal``.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

BLOCK = 16 << 20  # bytes per Arrow CSV block: a few batches per core, little memory


EXACT_BATCH = 20_000  # lines per batch of the exact reader

BOM = b"\xef\xbb\xbf"


class NotPlainLines(Exception):
    """The fast reader cannot number this file's lines exactly (see the module docstring)."""


class Unreadable(Exception):
    """A file that cannot be read at all (its message names the file and why)."""


class _Checked:
    """A binary file that refuses, as it is read, the bytes the fast reader would split differently from
    an editor: ``\\x01`` and a carriage return not followed by a line feed."""

    def __init__(self, raw: IO[bytes], name: str):
        self._raw = raw
        self._name = name
        self._pending_cr = False  # the previous block ended in "\r"
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        block = self._raw.read(size)
        if not block:
            if self._pending_cr:
                raise NotPlainLines(f"{self._name}: a carriage return ends the file without a line feed")
            return block
        if b"\x01" in block:
            raise NotPlainLines(f"{self._name}: holds the control byte 0x01")
        if self._pending_cr and not block.startswith(b"\n"):
            raise NotPlainLines(f"{self._name}: a carriage return without a line feed")
        if b"\r" in block:
            trailing = block.endswith(b"\r")
            if block.count(b"\r") - trailing != block.count(b"\r\n"):
                raise NotPlainLines(f"{self._name}: a carriage return without a line feed")
            self._pending_cr = trailing
        else:
            self._pending_cr = False
        return block

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self._raw.close()


def _open(path: Path) -> IO[bytes]:
    if not path.name.endswith(".gz"):
        return path.open("rb")
    try:
        from isal import igzip
    except ImportError:  # pragma: no cover - isal is a pinned dependency; zlib is the same, slower
        return cast(IO[bytes], gzip.open(path, "rb"))
    return cast(IO[bytes], igzip.open(path, "rb"))


def schema() -> Any:
    import pyarrow as pa

    return pa.schema([("_file", pa.large_string()), ("_line", pa.int64()), ("_raw", pa.string())])


def _file_batches(path: Path) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    name = path.name.encode("utf-8")
    with _open(path) as raw:
        checked = _Checked(raw, path.name)
        try:
            reader = pcsv.open_csv(
                pa.PythonFile(checked, mode="r"),
                read_options=pcsv.ReadOptions(column_names=["_raw"], block_size=BLOCK, use_threads=True),
                parse_options=pcsv.ParseOptions(delimiter="\x01", quote_char=False, escape_char=False,
                                                newlines_in_values=False, ignore_empty_lines=False),
                convert_options=pcsv.ConvertOptions(column_types={"_raw": pa.string()}, check_utf8=True,
                                                    strings_can_be_null=False, quoted_strings_can_be_null=False))
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return
            raise NotPlainLines(f"{path.name}: {exc}") from None
        base = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowInvalid, OSError) as exc:
                raise NotPlainLines(f"{path.name}: {exc}") from None
            yield _batch(name, base, batch.column(0))
            base += batch.num_rows


def _exact_batches(path: Path) -> Iterator[Any]:
    """The lines of ``path`` read by Python, one at a time (see the module docstring)."""
    import pyarrow as pa

    base = 0
    texts: list[str] = []

    def batch() -> Any:
        return _batch(path.name.encode("utf-8"), base, pa.array(texts, type=pa.string()))

    try:
        with _open(path) as fh:
            for n, line in enumerate(fh):  # a binary file's lines end at b"\n" only
                line = line.removesuffix(b"\n").removesuffix(b"\r")
                if n == 0:
                    line = line.removeprefix(BOM)
                try:
                    texts.append(line.decode("utf-8"))
                except UnicodeDecodeError:
                    texts.append(line.decode("utf-8", "backslashreplace"))
                if len(texts) == EXACT_BATCH:
                    yield batch()
                    base += len(texts)
                    texts = []
    except Exception as exc:  # noqa: BLE001 - gzip, zlib and ISA-L each raise their own kind
        raise Unreadable(f"{path.name}: cannot be read as NDJSON ({type(exc).__name__}: {exc})") from None
    if texts:
        yield batch()


def _batch(name: bytes, base: int, raw: Any) -> Any:
    """A record batch of ``raw`` (an Arrow string array) numbered from ``base + 1``, in file ``name``."""
    import numpy as np
    import pyarrow as pa

    n = len(raw)
    # built from buffers: pa.array() and pa.scalar() on Python objects import pandas (0.2 s) to look for its types
    starts = np.arange(0, (n + 1) * len(name), len(name), dtype=np.int64)
    files = pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(starts), pa.py_buffer(name * n)])
    numbers = np.arange(base + 1, base + n + 1, dtype=np.int64)
    lines = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(numbers)])
    return pa.RecordBatch.from_arrays([files, lines, raw], schema=schema())


class LineSource:
    """``reader``: a ``pyarrow.RecordBatchReader`` of ``_file`` (the file's name), ``_line`` (1-based,
    blank lines counted) and ``_raw`` (the line without its line end) over ``files`` in order; it can be
    read once. ``exact``: read by Python, line by line (see the module docstring). When the stream stops
    with an error (the consumer -- DuckDB -- reports it in its own words), ``problem`` says why the fast
    reader gave way, or ``refusal`` why a file cannot be read at all."""

    def __init__(self, files: list[Path], exact: bool = False):
        import pyarrow as pa

        self.files = files
        self.exact = exact
        self.problem: NotPlainLines | None = None
        self.refusal: str | None = None
        self.counts: dict[str, int] = {}  # file name -> lines streamed so far (blank ones too)
        self.reader = pa.RecordBatchReader.from_batches(schema(), self._batches())

    def _batches(self) -> Iterator[Any]:
        try:
            for path in self.files:
                self.counts[path.name] = 0
                for batch in _exact_batches(path) if self.exact else _file_batches(path):
                    self.counts[path.name] += batch.num_rows
                    yield batch
        except NotPlainLines as exc:
            self.problem = exc
            raise
        except Unreadable as exc:
            self.refusal = str(exc)
            raise
