"""`ipexrx cds services / sample / cards`: what the CDS Hooks service publishes and answers, offline (no server,
no network, no signature), the same documents and cards as the HTTP service."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ipexrx.cli import get_app

AS_OF = "2026-11-25"


def _run(*args: str, code: int = 0):  # type: ignore[no-untyped-def]
    res = CliRunner().invoke(get_app(), ["cds", *args], env={"COLUMNS": "400"})
    assert res.exit_code == code, res.output
    return res


def test_services_json_is_the_served_discovery_document() -> None:
    from ipexrx.service.cds.router import _DISCOVERY

    assert json.loads(_run("services", "--json").stdout) == _DISCOVERY
    text = _run("services").stdout
    assert all(s["id"] in text and s["hook"] in text for s in _DISCOVERY["services"])
    assert "MedicationRequest?patient={{context.patientId}}" in text


def test_cards_of_the_sample_are_the_services_cards_and_read_alerts_first(tmp_path: Path) -> None:
    from ipexrx.service.cds.models import CdsResponse

    answer = json.loads(_run("cards", "ipexrx-order-sign", "--as-of", AS_OF, "--json").stdout)
    CdsResponse.model_validate(answer)  # a valid CDS Hooks response
    summaries = [c["summary"] for c in answer["cards"]]
    assert any("Two calcineurin inhibitors" in s for s in summaries)
    text = _run("cards", "order-sign", "--as-of", AS_OF).stdout
    severity = ["critical", "warning", "info"]
    shown = [line.split(": ", 1) for line in text.splitlines() if line.split(":")[0] in severity]
    assert sorted(s for _, s in shown) == sorted(summaries)
    ranks = [severity.index(level) for level, _ in shown]
    assert ranks == sorted(ranks) and ranks[0] == 0  # alerts first
    assert "rules#rule-" not in text  # no rule ids in what a reader sees
    # the sample, written to a file and read back, gives the same cards
    request = tmp_path / "request.json"
    request.write_text(_run("sample", "order-sign").stdout, encoding="utf-8")
    again = json.loads(_run("cards", "order-sign", "--request", str(request), "--as-of", AS_OF, "--json").stdout)
    assert again == answer


def test_an_incomplete_prefetch_or_another_hook_is_refused_clearly(tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "p1"},
                                   "prefetch": {"patient": {"resourceType": "Patient", "id": "p1"}}}))
    out = " ".join(_run("cards", "patient-view", "--request", str(request), code=1).output.split())
    assert "request.json: the prefetch lacks conditions, medications" in out and "nothing is fetched" in out
    out = " ".join(_run("cards", "order-sign", "--request", str(request), code=1).output.split())
    assert "answers the order-sign hook" in out and "'patient-view'" in out
    request.write_text('{"hook": "patient-view"}')
    out = " ".join(_run("cards", "patient-view", "--request", str(request), code=1).output.split())
    assert "not a CDS Hooks request" in out and "field context: expected a value (required), got nothing" in out
    assert "expected a CDS service id or hook" in _run("cards", "no-such-hook", code=1).output


def test_with_json_a_refused_request_is_json_on_stdout(tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text('{"hook": "patient-view"}')
    res = _run("cards", "patient-view", "--request", str(request), "--json", code=1)
    doc = json.loads(res.stdout)
    assert doc["message"] == f"{request} is not a CDS Hooks request"
    context = next(i for i in doc["issues"] if i["path"] == "$.context")
    assert context == {"path": "$.context", "expected": "a value (required)", "got": "nothing",
                       "where": f"{request}, field context"}
    assert "field context: expected a value (required), got nothing" in res.stderr
    request.write_text(json.dumps({"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "p1"},
                                   "prefetch": {"patient": {"resourceType": "Patient", "id": "p1"}}}))
    doc = json.loads(_run("cards", "patient-view", "--request", str(request), "--json", code=1).stdout)
    assert "$.prefetch.conditions" in [i["path"] for i in doc["issues"]] and "the prefetch lacks" in doc["message"]
    doc = json.loads(_run("cards", "order-sign", "--request", str(request), "--json", code=1).stdout)
    assert doc["issues"] == [{"path": "$.hook", "expected": "order-sign", "got": "patient-view",
                              "where": f"{request}, field hook"}]
    request.write_text("{broken")
    doc = json.loads(_run("cards", "patient-view", "--request", str(request), "--json", code=1).stdout)
    assert doc["error"] == "MalformedInputError" and doc["issues"][0]["where"] == str(request)
    doc = json.loads(_run("cards", "patient-view", "--request", str(tmp_path / "nope.json"), "--json", code=1).stdout)
    assert doc["issues"][0]["expected"] == "a readable file"
    assert _run("cards", "patient-view", "--request", str(request), code=1).stdout == ""
