"""Bulk Data files saved with a UTF-8 byte-order mark (and CRLF line ends) screen exactly like the plain files:
the mark opens a file, it is not a bad first line."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from .conftest import AS_OF, POPULATION

BOM = b"\xef\xbb\xbf"


def test_ndjson_with_a_byte_order_mark_screens_like_without(tmp_path: Path, result) -> None:  # type: ignore[no-untyped-def]
    from ipexrx.screen.run import screen

    pop = tmp_path / "pop"
    shutil.copytree(POPULATION, pop)
    for f in sorted(pop.iterdir()):
        if f.name.endswith(".ndjson"):
            f.write_bytes(BOM + f.read_bytes().replace(b"\n", b"\r\n"))
        elif f.name.endswith(".ndjson.gz"):
            f.write_bytes(gzip.compress(BOM + gzip.decompress(f.read_bytes())))
    marked = screen(pop, as_of=AS_OF)
    assert marked["stats"]["resources"] == result["stats"]["resources"]
    assert marked["stats"]["bad_lines"] == result["stats"]["bad_lines"]  # the shipped broken lines, nothing more
    assert [(c["patient"], c["score"]) for c in marked["candidates"]] == \
        [(c["patient"], c["score"]) for c in result["candidates"]]
    assert [k["patient"] for k in marked["known"]] == [k["patient"] for k in result["known"]]
    assert [(s["patient"], len(s["alerts"])) for s in marked["safety"]] == \
        [(s["patient"], len(s["alerts"])) for s in result["safety"]]
    assert result["candidates"] and result["safety"]
