"""The assessment's three faces (terminal, web page, printout) say things in words, from one place each:
the HSCT status ('not transplanted', not the value ``not-done``; 'no transplant recorded' when the record says
nothing about HSCT, 'HSCT mentioned, status unclear' when it only names it), a drug by its knowledge-base name (not its
id), a dosing model by its paper; the JSON keeps the values and ids."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ipexrx.assess import assess
from ipexrx.assess.models import Assessment, HsctStatus
from ipexrx.knowledge import load_kb
from ipexrx.patient.hsct import STATUS_WORDS

AS_OF = "2026-11-25"
# St John's wort: a drug whose knowledge-base name is not its id (st-johns-wort)
PATIENT = {"demographics": {"sex": "male", "age_years": 8, "weight_kg": 25}, "diagnosis": {"type": "ipex"},
           "hsct": {"status": "not-done"},
           "medications": [{"drug": "tacrolimus", "dose": {"value": 1, "unit": "mg"}, "route": "oral",
                            "frequency": "twice daily", "status": "active"},
                           {"drug": "St John's wort", "status": "active"}]}
DRUG_ID = "st-johns-wort"


def _assessment(status: str = "not-done") -> Assessment:
    return assess({**PATIENT, "hsct": {"status": status}}, as_of=dt.date.fromisoformat(AS_OF))


def test_the_hsct_status_has_one_wording_for_every_value_and_the_json_keeps_the_value() -> None:
    values = HsctStatus.model_fields["status"].annotation.__args__  # type: ignore[union-attr]
    assert set(STATUS_WORDS) == set(values)
    assert STATUS_WORDS == {"not-done": "not transplanted", "planned": "transplant planned", "done": "transplanted"}
    a = _assessment()
    assert a.hsct is not None and a.hsct.status == "not-done" and a.hsct.status_text == "not transplanted"
    assert json.loads(a.model_dump_json())["hsct"]["status"] == "not-done"
    assert "status_text" not in json.loads(a.model_dump_json())["hsct"]


def test_a_drug_is_named_by_its_knowledge_base_name_and_the_json_keeps_the_id() -> None:
    name = load_kb().drugs[DRUG_ID].name
    assert name != DRUG_ID
    a = _assessment()
    med = next(m for m in a.medications if m.drug_id == DRUG_ID)
    assert med.drug_name == name
    trig = next(t for al in a.alerts for t in al.triggers if t.ref == DRUG_ID)
    assert (trig.kind, trig.name, trig.label) == ("drug", name, name)


def _terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str) -> str:
    from ipexrx.cli import get_app

    monkeypatch.setenv("COLUMNS", "400")
    f = tmp_path / "p.json"
    f.write_text(json.dumps({**PATIENT, "hsct": {"status": status}}), encoding="utf-8")
    res = CliRunner().invoke(get_app(), ["assess", str(f), "--as-of", AS_OF])
    assert res.exit_code in (0, 1), res.output
    return res.output


@pytest.mark.parametrize("status", ["not-done", "planned", "done"])
def test_terminal_says_the_status_and_the_drug_in_words(status: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = _terminal(tmp_path, monkeypatch, status)
    assert f"Status: {STATUS_WORDS[status]}" in out and "not-done" not in out
    name = load_kb().drugs[DRUG_ID].name
    assert f"drug {name} (medication 2)" in out  # 'Triggered by'
    assert re.search(rf"│ {re.escape(name)}\s+│ {re.escape(name)}\s+│", out)  # the medications table: read as
    assert DRUG_ID not in out


def test_printout_says_the_status_and_the_drug_in_words() -> None:
    from ipexrx.report import render_assessment_html

    page = render_assessment_html(_assessment())
    name = load_kb().drugs[DRUG_ID].name.replace("'", "&#39;")
    assert "<strong>Status:</strong> not transplanted" in page
    assert f"drug {name} (" in page and f"<td>{name}</td>" in page
    assert DRUG_ID not in _visible(page)  # the editors' details keep the record's paths


def _visible(page: str) -> str:
    page = re.sub(r"<details\b.*?</details\s*>", " ", page, flags=re.S | re.I)
    return re.sub(r"<[^>]+>", " ", page)


def test_web_page_says_the_status_and_the_drug_in_words(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from ipexrx.service import Settings, create_app

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ipexrx.sqlite3'}", replay_dir=tmp_path / "seen")
    with TestClient(create_app(settings), base_url="http://testserver") as c:
        r = c.post("/assess", data={"patient": json.dumps({**PATIENT, "hsct": {"status": "planned"}}),
                                    "as_of": AS_OF, "ipex_plan": "auto"})
    assert r.status_code == 200, r.text[:500]
    name = load_kb().drugs[DRUG_ID].name.replace("'", "&#39;")
    assert "Status: <strong>transplant planned</strong>" in r.text
    assert f'<a href="/drugs/{DRUG_ID}">{name}</a>' in r.text  # the link keeps the id, the reader sees the name
    assert DRUG_ID not in _visible(r.text) and "planned</strong>" in r.text


def test_no_model_based_suggestion_names_the_models_as_papers_and_the_missing_facts_in_words() -> None:
    """An unidentified medication leaves the co-medication list incomplete: the alert says which model needs
    which fact, from the model files' labels, without model ids or covariate codes."""
    from ipexrx.dosing.model import all_models

    p = {**PATIENT, "medications": [PATIENT["medications"][0], {"drug": "Zzyzxamab", "status": "active"}],
         "labs": [{"test": "tacrolimus trough", "value": 25, "unit": "ng/mL", "date": "2026-11-20"}]}
    a = assess(p, as_of=dt.date.fromisoformat(AS_OF))
    action = next(al.action for al in a.alerts if al.rule == "results.trough_out_of_range")
    assert "the Chen 2022 tacrolimus model needs to know whether posaconazole is given" in action
    for m in all_models():
        assert m.id not in action
        assert not any(code in action for code in m.spec.covariates if "_" in code or code.isupper() and len(code) > 4)


def test_the_assessment_schema_says_knowledge_base_not_kb() -> None:
    schema = json.dumps(Assessment.model_json_schema())
    assert not re.search(r"\bKB\b", schema)


# What the record says about HSCT -> the words every face shows; the JSON status stays a value.
HSCT_CASES = {
    "explicit not-done": ({"status": "not-done"}, "not-done", "recorded", "not transplanted"),
    "read as not done": ({"note": "no HSCT"}, "not-done", "recorded", "not transplanted"),
    "nothing recorded": (None, "not-done", "not-recorded", "no transplant recorded"),
    "unclear mention": ({"note": "BMT"}, "not-done", "unclear", "HSCT mentioned, status unclear"),
    "done": ({"status": "done", "date": "2024-03-01"}, "done", "recorded", "transplanted"),
}


def _patient(hsct: dict[str, str] | None) -> dict[str, object]:
    p = {k: v for k, v in PATIENT.items() if k != "hsct"}
    return p if hsct is None else {**p, "hsct": hsct}


@pytest.mark.parametrize("case", list(HSCT_CASES))
def test_hsct_words_say_what_the_record_says_in_every_face(case: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing value is 'cannot judge', never 'not transplanted': the three faces tell an explicit
    not-done from nothing recorded and from an unclear mention; the JSON keeps ``status`` as it was."""
    from fastapi.testclient import TestClient

    from ipexrx.cli import get_app
    from ipexrx.report import render_assessment_html
    from ipexrx.service import Settings, create_app

    hsct, status, basis, words = HSCT_CASES[case]
    a = assess(_patient(hsct), as_of=dt.date.fromisoformat(AS_OF))
    assert a.hsct is not None
    out = json.loads(a.model_dump_json())["hsct"]
    assert (out["status"], out["status_basis"], a.hsct.status_text) == (status, basis, words)
    others = {w for _, _, _, w in HSCT_CASES.values()} - {words}

    monkeypatch.setenv("COLUMNS", "400")
    f = tmp_path / "p.json"
    f.write_text(json.dumps(_patient(hsct)), encoding="utf-8")
    res = CliRunner().invoke(get_app(), ["assess", str(f), "--as-of", AS_OF])
    assert res.exit_code in (0, 1), res.output
    status_line = re.search(r"Status: ([^.(]*?)(?: \(\S+\))?\.", res.output)
    assert status_line and status_line.group(1) == words, res.output

    page = render_assessment_html(a)
    assert f"<strong>Status:</strong> {words}" in page
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ipexrx.sqlite3'}", replay_dir=tmp_path / "seen")
    with TestClient(create_app(settings), base_url="http://testserver") as c:
        r = c.post("/assess", data={"patient": json.dumps(_patient(hsct)), "as_of": AS_OF, "ipex_plan": "auto"})
    assert r.status_code == 200, r.text[:500]
    assert f"Status: <strong>{words}</strong>" in r.text
    for other in others - {"transplanted"}:  # 'transplanted' is a word of the others
        assert f"Status: <strong>{other}" not in r.text and f"<strong>Status:</strong> {other}" not in page


def test_the_referral_is_not_phrased_as_if_the_record_said_not_transplanted() -> None:
    rec = {case: assess(_patient(HSCT_CASES[case][0]), as_of=dt.date.fromisoformat(AS_OF)).hsct.recommendation
           for case in HSCT_CASES}  # type: ignore[union-attr]
    assert rec["explicit not-done"] and rec["explicit not-done"].startswith("Consider referral to a transplant centre")
    assert rec["nothing recorded"] and rec["nothing recorded"].startswith(
        "No transplant is recorded; if the patient has not been transplanted: consider referral")
    assert rec["unclear mention"] and rec["unclear mention"].startswith("Confirm the transplant history first")
    assert "referral" in rec["unclear mention"]
    assert rec["done"] is None


def test_a_saved_assessment_from_before_status_basis_does_not_say_not_transplanted() -> None:
    old = json.loads(assess(_patient(None), as_of=dt.date.fromisoformat(AS_OF)).model_dump_json())
    del old["hsct"]["status_basis"]
    assert Assessment.model_validate(old).hsct.status_text == "no transplant recorded"  # type: ignore[union-attr]
    old["hsct"]["read_from"] = ["the record's HSCT status (not transplanted)"]
    assert Assessment.model_validate(old).hsct.status_text == "not transplanted"  # type: ignore[union-attr]
