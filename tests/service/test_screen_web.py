"""The population-screen page (/screen): the upload form, the worklists of the shipped test population in the
library's order with bad lines first, numbered sources, CSV downloads identical to ``ipexrx screen --out``, and
every input problem as a page with 422 / 413 / 503, never a 500."""

from __future__ import annotations

import datetime as dt
import gzip
import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from tests.test_plain_words import problems, visible_text

POPULATION = Path(__file__).resolve().parents[1] / "cases" / "screen" / "population"
AS_OF = "2026-01-01"


def _population_files() -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "application/octet-stream"))
            for p in sorted(POPULATION.glob("*.ndjson*"))]


def _rows(page: str, table_id: str) -> list[list[str]]:
    at = page.find(f'<table class="sortable worklist" id="{table_id}">')
    assert at >= 0, f"no table #{table_id}"
    body = page[at:page.find("</table>", at)].split("<tbody>", 1)[1]
    return [[" ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


@pytest.fixture(scope="module")
def screened(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """The page for the shipped population, and the library's result for the same files and date."""
    from ipexrx.screen.run import screen
    from ipexrx.service.app import create_app
    from ipexrx.service.settings import Settings

    db = tmp_path_factory.mktemp("screen-web") / "t.db"
    with TestClient(create_app(Settings(dev_mode=True, database_url=f"sqlite:///{db}"))) as client:
        r = client.post("/screen", data={"as_of": AS_OF}, files=_population_files())
    assert r.status_code == 200, r.text[:2000]
    return r.text, screen(POPULATION, as_of=dt.date.fromisoformat(AS_OF))


def test_the_form_asks_for_ndjson_files_and_a_screening_date_defaulting_to_today(dev_client: TestClient) -> None:
    r = dev_client.get("/screen")
    assert r.status_code == 200
    page = r.text
    assert 'enctype="multipart/form-data"' in page and 'name="files" multiple' in page
    assert f'name="as_of" value="{dt.date.today().isoformat()}"' in page
    assert "Patient.ndjson" in page and '<a href="/screen">Screen a population</a>' in page
    assert re.search(r"<script(?![^>]*\bsrc=)", page) is None  # no inline script (Content-Security-Policy)
    assert '<script src="/static/screen.js" defer></script>' in page
    assert dev_client.get("/static/screen.js").status_code == 200


def test_candidates_are_listed_in_the_order_of_the_library_with_reasons_dates_and_age_at_onset(
        screened: tuple[str, dict[str, Any]]) -> None:
    page, result = screened
    rows = _rows(page, "candidates")
    assert [r[1] for r in rows] == [c["patient"] for c in result["candidates"]]
    assert len(rows) == 14
    assert [r[0] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
    assert [float(r[2]) for r in rows] == [c["score"] for c in result["candidates"]]
    first = result["candidates"][0]
    dated = next(x for x in first["reasons"] if x.get("date") and x.get("age_at_onset_years") is not None)
    assert f"{dated['date']}, age {dated['age_at_onset_years']} years" in rows[0][5]
    assert rows[0][6].startswith("Suggestion for the treating team")
    assert [r[0] for r in _rows(page, "known")] == [k["patient"] for k in result["known"]]
    assert [r[0] for r in _rows(page, "safety")] == [s["patient"] for s in result["safety"]]


def test_bad_lines_come_first_with_file_and_line(screened: tuple[str, dict[str, Any]]) -> None:
    page, result = screened
    bad = result["stats"]["bad_lines"]
    assert bad
    for b in bad:
        assert f"{b['file']}, line {b['line']}:" in page
    assert page.index('id="bad-lines"') < page.index('id="safety"')


def test_alerts_come_first_then_the_candidates_then_the_evidence(screened: tuple[str, dict[str, Any]]) -> None:
    """The order of every face: the drug-safety worklist (alerts), then the candidates with their next steps
    (the plan), then the already diagnosed, the method and the sources (the evidence)."""
    page, _ = screened
    order = ['id="safety-title"', 'id="safety"', 'id="candidates-title"', 'id="candidates"', 'id="known-title"',
             'id="method"', 'id="sources-title"']
    positions = [page.index(marker) for marker in order]
    assert positions == sorted(positions), dict(zip(order, positions, strict=True))


def test_every_source_mark_points_to_a_numbered_source_on_the_same_page(screened: tuple[str, dict[str, Any]]) -> None:
    page, _ = screened
    marks = {int(n) for n in re.findall(r'href="#source-(\d+)"', page)}
    listed = [int(n) for n in re.findall(r'<li id="source-(\d+)">', page)]
    assert marks and listed == list(range(1, len(listed) + 1)) and marks == set(listed)
    assert "doi:10.3389/fimmu.2018.02411" in page  # the IgE cut-off and the next step cite Gambineri 2018


def test_inline_source_numbers_and_the_sources_list_agree_in_reading_order(
        screened: tuple[str, dict[str, Any]]) -> None:
    """The shared numbering rule: every number shown is listed and every entry is used, the numbers first appear
    1, 2, 3 ... down the page, each marker lists its numbers ascending, and one source has one number."""
    from ipexrx.reference.citations import numbers_in

    page, _ = screened
    result = page.split('<section id="screen-result"', 1)[1]
    body, _, tail = result.partition('<h3 id="sources-title">')
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", body)).split())
    listed = [int(n) for n in re.findall(r'<li id="source-(\d+)">', tail)]
    used = numbers_in(text)
    assert listed == list(range(1, len(listed) + 1)) and set(used) == set(listed)
    first_use = list(dict.fromkeys(used))
    assert first_use == sorted(first_use)
    for sup in re.findall(r'<sup class="refs">(.*?)</sup>', body):
        marks = [int(n) for n in re.findall(r"\[(\d+)\]", sup)]
        assert marks == sorted(set(marks)), sup
    entries = [" ".join(html.unescape(re.sub(r"<[^>]+>", "", li)).split())
               for li in re.findall(r'<li id="source-\d+">(.*?)</li>', tail, re.S)]
    assert len(entries) == len(set(entries))  # one source, one entry


def test_safety_alerts_are_listed_critical_first_without_json_paths(screened: tuple[str, dict[str, Any]]) -> None:
    page, _ = screened
    for row in _rows(page, "safety"):
        severities = re.findall(r"\b(CRITICAL|WARNING|INFO)\b", row[3])
        rank = {"CRITICAL": 0, "WARNING": 1, "INFO": 2}
        assert [rank[s] for s in severities] == sorted(rank[s] for s in severities)
    text = visible_text(page)
    assert "$." not in text
    # a record that cannot be read is placed by its input file and line, in words
    assert re.search(r"\.ndjson(\.gz)?, line \d+, \w+, id ", text), text[:2000]
    assert problems(text) == []


def test_the_csv_downloads_are_the_worklists_the_command_line_writes(screened: tuple[str, dict[str, Any]],
                                                                     tmp_path: Path) -> None:
    from ipexrx.screen.report import write_csvs

    page, result = screened
    links = dict((name, href) for href, name in re.findall(r'<a href="(data:text/csv;[^"]+)" download="([^"]+)"',
                                                            page))
    assert sorted(links) == ["candidates.csv", "known.csv", "safety.csv"]
    for path in write_csvs(result, tmp_path):
        href = html.unescape(links[path.name])
        assert unquote(href.split(",", 1)[1]) == path.read_text(encoding="utf-8")


def _post(client: TestClient, files: list[tuple[str, bytes]], as_of: str = AS_OF) -> Any:
    return client.post("/screen", data={"as_of": as_of},
                       files=[("files", (n, d, "application/octet-stream")) for n, d in files])


PATIENT = b'{"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "2020-01-01"}\n'


def test_no_patient_file_is_a_422_naming_what_is_missing(dev_client: TestClient) -> None:
    r = _post(dev_client, [("Condition.ndjson", b'{"resourceType": "Condition"}\n')])
    assert r.status_code == 422
    assert "a Patient file (Patient.ndjson or Patient.ndjson.gz)" in html.unescape(r.text)
    assert "Condition.ndjson" in r.text and 'id="screen-error"' in r.text


def test_a_file_not_named_like_bulk_data_is_a_422_naming_the_file(dev_client: TestClient) -> None:
    r = _post(dev_client, [("Patient.ndjson", PATIENT), ("notes.txt", b"hello")])
    assert r.status_code == 422
    text = visible_text(r.text)
    assert "notes.txt" in text and "named after its resource type, such as Patient.ndjson" in text


def test_a_file_that_is_not_ndjson_is_a_422_naming_the_file(dev_client: TestClient) -> None:
    r = _post(dev_client, [("Patient.ndjson", b"ID,NAME\n1,x\n")])
    assert r.status_code == 422
    assert "Patient.ndjson" in visible_text(r.text)
    fake_gz = _post(dev_client, [("Patient.ndjson.gz", PATIENT)])
    assert fake_gz.status_code == 422 and "not gzip-compressed" in fake_gz.text


def test_a_gzipped_patient_file_is_screened(dev_client: TestClient) -> None:
    r = _post(dev_client, [("Patient.ndjson.gz", gzip.compress(PATIENT))])
    assert r.status_code == 200 and "Patients read: 1" in r.text


@pytest.mark.parametrize("bad", ["2026-13-01", "yesterday", "01/02/2026"])
def test_a_bad_screening_date_is_a_422_naming_the_field(dev_client: TestClient, bad: str) -> None:
    r = _post(dev_client, [("Patient.ndjson", PATIENT)], as_of=bad)
    assert r.status_code == 422
    text = visible_text(r.text)
    assert "screening date" in text and "YYYY-MM-DD" in text and bad in text
    assert f'value="{bad}"' in r.text  # the form shows back what was entered


def test_files_over_the_size_limit_are_a_413_page(dev_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from ipexrx.service import screen_web

    monkeypatch.setattr(screen_web, "MAX_UPLOAD_BYTES", 1024)
    r = _post(dev_client, [("Patient.ndjson", PATIENT * 30)])
    assert r.status_code == 413
    assert "at most" in visible_text(r.text) and 'id="screen-error"' in r.text


def test_a_busy_analysis_pool_is_a_503_page_with_retry_after(dev_client: TestClient) -> None:
    pool = dev_client.app.state.analysis_pool  # type: ignore[attr-defined]
    saved = pool.admitted
    pool.admitted = pool.threads + pool.queue
    try:
        r = _post(dev_client, [("Patient.ndjson", PATIENT)])
    finally:
        pool.admitted = saved
    assert r.status_code == 503 and r.headers["retry-after"].isdigit()
    assert "busy" in visible_text(r.text)


def test_a_large_gzip_export_is_screened_not_refused_for_its_compressed_bytes(dev_client: TestClient) -> None:
    """Compressed bytes hold random brackets; the request limits leave the nesting check to the route, which
    checks the decompressed lines."""
    import base64
    import random

    from ipexrx.service.limits import json_too_deep

    noise = random.Random(17)
    lines = [b'{"resourceType": "Patient", "id": "p%d", "gender": "male", "birthDate": "2020-01-01", '
             b'"text": {"status": "generated", "div": "%s"}}\n' % (i, base64.b64encode(noise.randbytes(750)))
             for i in range(3000)]
    data = gzip.compress(b"".join(lines), mtime=0)
    assert len(data) > 2 * 2**20 and json_too_deep(data, 64)  # the raw-body check would have refused it
    r = _post(dev_client, [("Patient.ndjson.gz", data)])
    assert r.status_code == 200 and "Patients read: 3000" in r.text


def test_a_line_nested_too_deep_is_a_422_naming_file_and_line(dev_client: TestClient) -> None:
    deep = b'{"resourceType": "Condition", "id": "c1", "note": ' + b"[" * 100 + b"]" * 100 + b"}\n"
    r = _post(dev_client, [("Patient.ndjson", PATIENT), ("Condition.ndjson", PATIENT.replace(b"Patient", b"X") + deep)])
    assert r.status_code == 422
    text = visible_text(r.text)
    assert "Condition.ndjson, line 2" in text and "at most 64 levels of nesting" in text


def test_a_truncated_gzip_file_is_a_422_naming_the_file(dev_client: TestClient) -> None:
    data = gzip.compress(PATIENT * 50)
    r = _post(dev_client, [("Patient.ndjson.gz", data[: len(data) // 2])])
    assert r.status_code == 422
    assert "Patient.ndjson.gz" in visible_text(r.text) and "a complete gzip-compressed file" in visible_text(r.text)


def test_files_that_decompress_beyond_the_limit_are_a_413_page(dev_client: TestClient,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from ipexrx.service import screen_web

    monkeypatch.setattr(screen_web, "MAX_TEXT_BYTES", 4096)
    r = _post(dev_client, [("Patient.ndjson.gz", gzip.compress(PATIENT * 200))])
    assert r.status_code == 413 and "once decompressed" in visible_text(r.text)


def test_a_screening_date_in_the_future_is_a_422(dev_client: TestClient) -> None:
    later = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    r = _post(dev_client, [("Patient.ndjson", PATIENT)], as_of=later)
    assert r.status_code == 422 and "today or an earlier date" in visible_text(r.text)


def test_only_multipart_uploads_to_the_screen_skip_the_raw_body_nesting_check(dev_client: TestClient) -> None:
    deep = b"[" * 100 + b"]" * 100
    r = dev_client.post("/screen", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "json_too_deep"
    r = dev_client.post("/dosing", content=deep, headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400 and r.json()["error"] == "json_too_deep"


def test_the_uploaded_files_are_deleted_after_the_screen_and_after_an_error(dev_client: TestClient) -> None:
    import tempfile

    def left() -> set[str]:
        return {p.name for p in Path(tempfile.gettempdir()).glob("ipexrx-screen-*")}

    before = left()
    assert _post(dev_client, [("Patient.ndjson", PATIENT)]).status_code == 200
    assert _post(dev_client, [("Patient.ndjson", b"ID,NAME\n1,x\n")]).status_code == 422
    assert left() == before
