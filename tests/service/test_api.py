"""JSON API and web pages: reference views, assessment, errors, and the `ipexrx serve` command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

STATIC = Path(__file__).parents[2] / "src" / "ipexrx" / "service" / "static"


def test_reference_views_match_the_library(dev_client: TestClient) -> None:
    from ipexrx.reference import drug_monograph, search, summary

    assert dev_client.get("/api/v1/drugs/Rapamune").json() == json.loads(drug_monograph("sirolimus").model_dump_json())
    assert dev_client.get("/api/v1/summary").json()["cure"] == json.loads(summary().cure.model_dump_json())
    drugs = dev_client.get("/api/v1/drugs").json()["items"]
    assert {"id": "tacrolimus", "page": "/drugs/tacrolimus"}.items() <= next(
        d for d in drugs if d["id"] == "tacrolimus").items()
    assert dev_client.get("/api/v1/manifestations/HP:0002028").json()["id"] == "enteropathy"
    assert dev_client.get("/api/v1/classes/calcineurin").json()["id"] == "calcineurin-inhibitors"
    hits = dev_client.get("/api/v1/search", params={"q": "FKBP12"}).json()["results"]
    assert [h["id"] for h in hits] == [h.id for h in search("FKBP12").results]
    assert {"sirolimus", "tacrolimus", "everolimus"} <= {h["id"] for h in hits[:3]}
    assert dev_client.get("/api/v1/sources/seed").json()["kind"] == "seed"


def test_unknown_names_are_404_with_closest_matches_and_ambiguous_ones_409(dev_client: TestClient) -> None:
    resp = dev_client.get("/api/v1/drugs/rapamycn")
    assert resp.status_code == 404
    body = resp.json()
    assert body["error"] == "not_found" and "sirolimus" in body["suggestions"] and "rapamycn" in body["message"]
    resp = dev_client.get("/api/v1/classes/anti")
    assert resp.status_code == 409 and "antifungals" in resp.json()["suggestions"]
    assert dev_client.get("/api/v1/sources/sed").json()["suggestions"][0] == "seed"
    resp = dev_client.get("/api/v1/nothing-here")
    assert resp.status_code == 404 and resp.json()["error"] == "not_found"


def test_bad_query_parameters_are_located_422(dev_client: TestClient) -> None:
    resp = dev_client.get("/api/v1/search", params={"q": "x", "limit": 0})
    assert resp.status_code == 422
    assert resp.json()["issues"][0]["path"] == "query:limit"
    resp = dev_client.get("/api/v1/search")
    assert resp.status_code == 422 and resp.json()["issues"][0]["path"] == "query:q"


def test_assess_accepts_our_json_and_fhir_bundles(dev_client: TestClient) -> None:
    patient = json.loads((STATIC / "example-patient.json").read_text())
    a = dev_client.post("/api/v1/assess", params={"as_of": "2026-11-25"}, json=patient).json()
    assert a["schema_version"] == "ipexrx-assessment/1"
    assert any(al["severity"] == "critical" for al in a["alerts"])
    assert all(al["sources"] for al in a["alerts"] if al["family"] == "interaction")
    bundle = json.loads((STATIC / "example-bundle.json").read_text())
    resp = dev_client.post("/api/v1/assess", params={"as_of": "2026-11-25", "format": "fhir"}, json=bundle,
                           headers={"Content-Type": "application/fhir+json"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/fhir+json")
    assert resp.json()["resourceType"] == "Bundle"


def test_assess_errors_are_precise(dev_client: TestClient) -> None:
    resp = dev_client.post("/api/v1/assess", json={"diagnosis": {"type": "ipex"},
                                                   "medications": [{"drug": "tacrolimus", "dose": "-1 mg"}]})
    assert resp.status_code == 422
    assert resp.json()["issues"][0]["path"].startswith("$.medications[0].dose")
    resp = dev_client.post("/api/v1/assess", content=b'{"diagnosis": ', headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_json"
    resp = dev_client.post("/api/v1/assess", json=["not", "an", "object"])
    assert resp.status_code == 422 and resp.json()["issues"][0]["expected"] == "a JSON object"


def test_openapi_documents_the_api_and_the_cds_services(dev_client: TestClient) -> None:
    spec = dev_client.get("/openapi.json").json()
    for path in ("/api/v1/drugs/{name}", "/api/v1/assess", "/cds-services", "/cds-services/{service_id}",
                 "/cds-services/{service_id}/feedback", "/api/v1/cds-feedback"):
        assert path in spec["paths"], path
    assert dev_client.get("/docs").status_code == 200


@pytest.mark.parametrize("path,text", [
    ("/", "Manifestations and their options"), ("/drugs", "tacrolimus"), ("/drugs/rituximab", "Boxed warnings"),
    ("/manifestations/enteropathy", "Options"), ("/classes", "Calcineurin"), ("/classes/mtor-inhibitors", "sirolimus"),
    ("/sources", "src-seed"), ("/search?q=neoral", "cyclosporine"), ("/assess", "Patient JSON or FHIR Bundle"),
    ("/rules", "rule-duplication.two_calcineurin_inhibitors"),
])
def test_web_pages_render_with_citations(dev_client: TestClient, path: str, text: str) -> None:
    resp = dev_client.get(path)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert text in resp.text
    if path.startswith(("/drugs/", "/manifestations/")) or path == "/":
        assert 'href="/sources#src-' in resp.text  # statements link to their sources


def test_web_unknown_drug_page_suggests_and_brand_redirects(dev_client: TestClient) -> None:
    resp = dev_client.get("/drugs/rapamycn")
    assert resp.status_code == 404 and 'href="/drugs/sirolimus"' in resp.text
    resp = dev_client.get("/drugs/Neoral", follow_redirects=False)
    assert resp.status_code == 307 and resp.headers["location"] == "/drugs/cyclosporine"


def test_web_assessment_form_shows_report_and_errors(dev_client: TestClient) -> None:
    form = {"patient": (STATIC / "example-bundle.json").read_text(), "as_of": "2026-11-25"}
    resp = dev_client.post("/assess", content=urlencode(form),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200 and 'id="report"' in resp.text and 'class="cite"' in resp.text
    resp = dev_client.post("/assess", content=urlencode({"patient": "{oops"}),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 422 and "not valid JSON" in resp.text


def test_web_assessment_errors_past_the_first_50_are_counted_and_pointed_to(dev_client: TestClient) -> None:
    """A record with 60 problems: the form's table lists the first 50 and says how many more there are and where
    all of them are; the API's JSON answer lists all 60. With 50 or fewer, nothing is said to be left out."""
    from tests.test_plain_words import visible_text

    record = {"diagnosis": {"type": "ipex"}, "demographics": {"weight_kg": 20},
              **{f"extra_{k}": 1 for k in range(60)}}  # 60 fields the format lacks: 60 problems
    resp = dev_client.post("/assess", data={"patient": json.dumps(record), "as_of": "2026-11-25"})
    assert resp.status_code == 422
    seen = visible_text(resp.text)
    assert seen.count('field "extra_') == 50
    assert "… and 10 more problems not shown; the JSON output lists them all" in seen
    assert len(dev_client.post("/api/v1/assess", json=record).json()["issues"]) == 60
    record = {k: v for k, v in record.items() if not k.startswith("extra_") or int(k[6:]) < 50}
    resp = dev_client.post("/assess", data={"patient": json.dumps(record), "as_of": "2026-11-25"})
    assert visible_text(resp.text).count('field "extra_') == 50 and "more problem" not in resp.text


def test_web_assessment_form_takes_an_uploaded_file_over_the_text(dev_client: TestClient) -> None:
    bundle = (STATIC / "example-bundle.json").read_bytes()
    resp = dev_client.post("/assess", data={"patient": "{ignored", "as_of": "2026-11-25"},
                           files={"patient_file": ("bundle.json", bundle, "application/fhir+json")})
    assert resp.status_code == 200 and 'id="report"' in resp.text and 'class="cite"' in resp.text
    # no file chosen (the browser sends an empty part): the text area is assessed
    resp = dev_client.post("/assess", data={"patient": bundle.decode(), "as_of": "2026-11-25"},
                           files={"patient_file": ("", b"", "application/octet-stream")})
    assert resp.status_code == 200 and 'id="report"' in resp.text
    resp = dev_client.post("/assess", files={"patient_file": ("p.json", b"\xff\xfe{}", "application/json")})
    assert resp.status_code == 422 and "is not UTF-8 text" in resp.text
    resp = dev_client.post("/assess", files={"patient_file": ("p.json", b"{oops", "application/json")})
    assert resp.status_code == 422 and "not valid JSON" in resp.text
    resp = dev_client.post("/assess", content=b"--xyz\r\nbroken", headers={
        "Content-Type": "multipart/form-data; boundary=xyz"})
    assert resp.status_code in (400, 422) and "<html" in resp.text.lower()


def test_web_assessment_errors_name_the_line_and_field_in_words(dev_client: TestClient) -> None:
    """The form's error table: where each problem is (line of the pasted text or uploaded file, the field in
    words), never a JSON path; the API's JSON answer keeps the path."""
    from tests.test_plain_words import visible_text

    text = '{\n  "diagnosis": {"type": "ipex"},\n  "demographics": {\n    "weight_kg": 400\n  },\n  "medicatons": []\n}'
    resp = dev_client.post("/assess", data={"patient": text, "as_of": "2026-11-25"})
    assert resp.status_code == 422
    seen = visible_text(resp.text)
    assert "the pasted text: the patient record is not valid" in seen
    assert 'line 4, demographics, field "weight_kg" a number <= 250.0 400' in seen
    assert 'line 6, field "medicatons"' in seen
    assert "$." not in seen
    bundle = json.loads((STATIC / "example-bundle.json").read_text())
    i = next(i for i, e in enumerate(bundle["entry"]) if e["resource"].get("id") == "obs-1")
    bundle["entry"][i]["resource"]["valueQuantity"]["value"] = 400
    upload = json.dumps(bundle, indent=2)
    line = next(n for n, x in enumerate(upload.splitlines(), start=1) if '"value": 400' in x)
    resp = dev_client.post("/assess", data={"as_of": "2026-11-25"},
                           files={"patient_file": ("chart.json", upload.encode(), "application/fhir+json")})
    assert resp.status_code == 422
    seen = visible_text(resp.text)
    assert "chart.json: the patient record is not valid" in seen
    assert f'line {line}, entry {i + 1} (Observation, id "obs-1"), element "valueQuantity.value"' in seen
    assert "$." not in seen
    api = dev_client.post("/api/v1/assess", json=bundle)
    assert api.status_code == 422
    assert api.json()["issues"][0]["path"].startswith(f"$.entry[{i}].resource")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(tmp_path: Path, port: int, log_level: str) -> subprocess.Popen[str]:
    """``ipexrx serve`` as a user runs it (production mode, its own database)."""
    env = {**os.environ, "IPEXRX_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    env.pop("IPEXRX_DEV_MODE", None)
    return subprocess.Popen([sys.executable, "-m", "ipexrx", "serve", "--port", str(port), "--log-level", log_level],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _first_answer(proc: subprocess.Popen[str], url: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            return str(urllib.request.urlopen(url, timeout=2).read().decode())
        except OSError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "ipexrx serve did not answer within 30 s"
            time.sleep(0.2)


def test_ipexrx_serve_starts_everything_on_one_port(tmp_path: Path) -> None:
    port = _free_port()
    proc = _serve(tmp_path, port, "warning")
    try:
        home = _first_answer(proc, f"http://127.0.0.1:{port}/")
        assert "IPEX" in home and "Manifestations and their options" in home
        api: Any = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/version").read())
        assert api["software"]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/cds-services")
            raise AssertionError("CDS discovery without a JWT must be refused")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=15)
    assert f"http://127.0.0.1:{port}/" in out
    assert "no CDS client configured" in err
    assert '"GET / HTTP/1.1"' not in out + err  # no access log at warning level


def test_ipexrx_serve_logs_each_request_at_info_level(tmp_path: Path) -> None:
    port = _free_port()
    proc = _serve(tmp_path, port, "info")
    try:
        _first_answer(proc, f"http://127.0.0.1:{port}/api/v1/version")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert '"GET /api/v1/version HTTP/1.1" 200' in out  # uvicorn's access log goes to stdout


def test_ipexrx_serve_on_a_busy_port_fails_cleanly() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "ipexrx", "serve", "--port", str(port)], capture_output=True,
                             text=True, timeout=60)
    assert res.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr and "Traceback" not in res.stderr


def test_every_citation_link_on_every_reference_page_lands_on_its_source(dev_client: TestClient) -> None:
    import re

    from ipexrx.knowledge import get_kb

    anchors = set(re.findall(r'id="([^"]+)"', dev_client.get("/sources").text))
    kb = get_kb()
    pages = ["/", *(f"/drugs/{d}" for d in kb.drugs), *(f"/manifestations/{m}" for m in kb.manifestations),
             *(f"/classes/{c}" for c in kb.classes)]
    broken, links = [], 0
    for page in pages:
        for target in re.findall(r'href="/sources#([^"]+)"', dev_client.get(page).text):
            links += 1
            if target not in anchors:
                broken.append((page, target))
    assert links > 500 and broken == []


def test_oversized_bodies_are_refused_with_413(dev_client: TestClient) -> None:
    big = b'{"diagnosis": {"type": "ipex"}, "pad": "' + b"x" * (21 * 1024 * 1024) + b'"}'
    resp = dev_client.post("/api/v1/assess", content=big, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"] == "payload_too_large"


def test_oversized_streamed_bodies_are_refused_with_413(dev_client: TestClient) -> None:
    def chunks() -> Any:
        yield b'{"pad": "'
        for _ in range(22):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    resp = dev_client.post("/api/v1/assess", content=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
