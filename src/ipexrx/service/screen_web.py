"""The population-screen page: upload a FHIR Bulk Data export (``<Type>.ndjson`` / ``.ndjson.gz`` files) and read
the worklists -- bad lines first, then the candidates, the patients already diagnosed and the drug-safety alerts --
with the three CSV worklists to download.

A plain HTML form (``multipart/form-data``) that works without JavaScript. The files are written to a temporary
directory, screened with the DuckDB engine by :func:`ipexrx.screen.run.screen` (what ``ipexrx screen`` runs) on the
bounded analysis pool (503 when it is busy), and the directory is removed afterwards; nothing is stored. The CSVs
are the ones ``ipexrx screen --out`` writes, offered as ``data:`` download links (a link is not governed by the
Content-Security-Policy's fetch directives, so no script is needed). ``static/screen.js`` only makes the tables
sortable by a click on a column heading (no inline script: the pages are served without 'unsafe-inline').
Input that cannot be screened is shown on the page with status 422 (413 beyond the size limit), never a 500.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

MAX_UPLOAD_BYTES = 20 * 2**20  # all files together
MAX_FILES = 40
MAX_TEXT_BYTES = 400 * 2**20  # all files together once decompressed (a gzip bomb is refused, not screened)
MAX_LINE_BYTES = 16 * 2**20
_NAME = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)(?:[-._]\d+)?\.ndjson(?:\.gz)?$")  # the engine's Bulk Data file names


class ScreenFormError(Exception):
    def __init__(self, status: int, message: str, problems: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.problems = status, message, problems or []


def _view(result: dict[str, Any], csvs: dict[str, str]) -> dict[str, Any]:
    """What the template shows: the worklists with every source replaced by its number on the page's list (the
    numbering the screen's HTML report uses), and the CSV downloads."""
    from ..screen.report import cited_worklists

    links = {name: "data:text/csv;charset=utf-8," + quote(text, safe="") for name, text in csvs.items()}
    return {**cited_worklists(result), "s": result["stats"], "csv_links": links}


def check_lines(files: list[tuple[str, bytes]], max_depth: int) -> None:
    """Every line of every file (decompressed) nests at most ``max_depth`` brackets deep, the whole text is at most
    MAX_TEXT_BYTES, and a .gz file decompresses; else ScreenFormError naming the file and line. (The service's
    request limits leave this check of the uploads to this route: see limits.DEPTH_CHECKED_BY_ROUTE.)"""
    import gzip
    import io
    import zlib

    from .limits import json_too_deep

    total = 0
    for name, data in files:
        stream: Any = gzip.GzipFile(fileobj=io.BytesIO(data)) if name.endswith(".gz") else io.BytesIO(data)
        number = 0
        try:
            while line := stream.readline(MAX_LINE_BYTES + 1):
                number += 1
                total += len(line)
                if total > MAX_TEXT_BYTES:
                    raise ScreenFormError(413, f"the files together must be at most {MAX_TEXT_BYTES // 2**20} MB "
                                               f"once decompressed; {name} takes them past that at line {number}")
                if len(line) > MAX_LINE_BYTES:
                    raise ScreenFormError(422, "A line is too long to be one resource.", [{
                        "where": f"{name}, line {number}", "expected": f"at most {MAX_LINE_BYTES // 2**20} MB",
                        "got": "a longer line"}])
                if json_too_deep(line, max_depth):
                    raise ScreenFormError(422, "A line nests too deep to be read safely; nothing was screened.", [{
                        "where": f"{name}, line {number}", "expected": f"at most {max_depth} levels of nesting",
                        "got": "more"}])
        except (OSError, EOFError, zlib.error) as exc:
            raise ScreenFormError(422, "A compressed file cannot be read.", [{
                "where": name, "expected": "a complete gzip-compressed file",
                "got": f"{type(exc).__name__}: {exc}"[:200]}]) from None


def screen_files(files: list[tuple[str, bytes]], as_of: dt.date, max_depth: int = 64,
                 ) -> tuple[dict[str, Any], dict[str, str]]:
    """Screen the uploaded files (written to a temporary directory, removed afterwards) with the DuckDB engine;
    returns the result and the three CSV worklists' text. Raises ScreenFormError for a file that cannot be taken
    in (:func:`check_lines`) and ScreenInputError for input that cannot be read."""
    from ..screen.report import write_csvs
    from ..screen.run import screen

    check_lines(files, max_depth)
    with tempfile.TemporaryDirectory(prefix="ipexrx-screen-") as tmp:
        data_dir = Path(tmp) / "export"
        data_dir.mkdir()
        for name, data in files:
            (data_dir / name).write_bytes(data)
        result = screen(data_dir, as_of=as_of, engine="duckdb", memory_limit="512MB", threads=1)
        out = Path(tmp) / "out"
        csvs = {p.name: p.read_text(encoding="utf-8") for p in write_csvs(result, out)}
    result["stats"]["directory"] = "the uploaded files"
    return result, csvs


async def _read_form(request: Request) -> tuple[list[tuple[str, bytes]], str]:
    form = await request.form(max_files=MAX_FILES, max_fields=10, max_part_size=MAX_UPLOAD_BYTES)
    raw_date = form.get("as_of")
    as_of = raw_date.strip()[:40] if isinstance(raw_date, str) else ""
    files: list[tuple[str, bytes]] = []
    problems: list[dict[str, str]] = []
    total = 0
    for upload in form.getlist("files"):
        if isinstance(upload, str) or not upload.filename:
            continue
        name = Path(upload.filename.replace("\\", "/")).name[:120]
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        total += len(data)
        if total > MAX_UPLOAD_BYTES:
            raise ScreenFormError(413, f"the files together must be at most {MAX_UPLOAD_BYTES // 2**20} MB; "
                                       f"{name} takes them past that")
        if not _NAME.match(name):
            problems.append({"where": name, "expected": "a FHIR Bulk Data file named after its resource type, such "
                             "as Patient.ndjson, Condition.ndjson or Observation.ndjson.gz", "got": name})
            continue
        if any(n == name for n, _ in files):
            problems.append({"where": name, "expected": "each file once", "got": "the same name twice"})
            continue
        if name.endswith(".gz") and data[:2] != b"\x1f\x8b":
            problems.append({"where": name, "expected": "a gzip-compressed file (the name ends in .gz)",
                             "got": "a file that is not gzip-compressed"})
            continue
        files.append((name, data))
    if not files and not problems:
        problems.append({"where": "files", "expected": "one or more NDJSON files, among them Patient.ndjson",
                         "got": "no file"})
    elif files and not any(_NAME.match(n)["type"] == "Patient" for n, _ in files):  # type: ignore[index]
        problems.append({"where": "files", "expected": "a Patient file (Patient.ndjson or Patient.ndjson.gz)",
                         "got": ", ".join(n for n, _ in files)})
    if problems:
        raise ScreenFormError(422, "The files cannot be screened; nothing was read.", problems)
    return files, as_of


def _parse_date(text: str) -> dt.date:
    if not text:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ScreenFormError(422, "The screening date is not a date.", [
            {"where": "screening date", "expected": "a date as YYYY-MM-DD", "got": text}]) from None


def _page(request: Request, status: int = 200, *, as_of: str | None = None, **ctx: Any) -> HTMLResponse:
    from .web import render

    body = render("screen.html", request, title="Screen a population", as_of=as_of or dt.date.today().isoformat(),
                  max_mb=MAX_UPLOAD_BYTES // 2**20, max_bytes=MAX_UPLOAD_BYTES, **ctx)
    return HTMLResponse(body, status_code=status)


def mount_screen(app: FastAPI) -> None:
    @app.get("/screen", response_class=HTMLResponse, include_in_schema=False)
    def screen_form(request: Request) -> HTMLResponse:
        return _page(request)

    @app.post("/screen", response_class=HTMLResponse, include_in_schema=False)
    async def screen_submit(request: Request) -> HTMLResponse:
        return await _submit(request)


async def _submit(request: Request) -> HTMLResponse:
    from ..screen.errors import ScreenInputError
    from .errors import ApiError
    from .pool import pool_of

    as_of_text = None
    try:
        try:
            files, as_of_text = await _read_form(request)
        except ScreenFormError:
            raise
        except Exception as exc:  # a malformed multipart body or too many parts: say so, never a 500
            detail = getattr(exc, "detail", None) or type(exc).__name__
            raise ScreenFormError(400, f"The form could not be read: {detail}") from None
        as_of = _parse_date(as_of_text)
        if as_of > dt.date.today() + dt.timedelta(days=1):
            raise ScreenFormError(422, "The screening date is in the future.", [
                {"where": "screening date", "expected": "today or an earlier date", "got": as_of_text}])
        depth = request.app.state.settings.max_json_depth
        result, csvs = await pool_of(request.app).run(screen_files, files, as_of, depth)
    except ScreenFormError as exc:
        return _page(request, exc.status, as_of=as_of_text, error={"message": exc.message, "problems": exc.problems})
    except ApiError as exc:  # the analysis pool is busy: say so, with the same Retry-After
        page = _page(request, exc.status, as_of=as_of_text, error={"message": exc.body.message, "problems": []})
        page.headers.update(exc.headers or {})
        return page
    except ScreenInputError as exc:
        return _page(request, 422, as_of=as_of_text, error={"message": "The files cannot be screened.", "problems": [
            {"where": "files", "expected": "FHIR Bulk Data NDJSON (one resource per line)", "got": str(exc)}]})
    return _page(request, 200, as_of=as_of_text or as_of.isoformat(), **_view(result, csvs))
