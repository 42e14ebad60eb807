"""`ipexrx kb validate` must reject each kind of content defect with a precise location.

Each test copies the embedded knowledge base, introduces exactly one defect, and checks that
validation names the file, the record and the field, so an editor can fix it without guessing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ipexrx.knowledge import KnowledgeBaseError, Problem, load_kb, validate_kb
from ipexrx.knowledge.loader import DEFAULT_DATA_DIR


@pytest.fixture()
def kb_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "data"
    shutil.copytree(DEFAULT_DATA_DIR, dest)
    return dest


def _edit(path: Path, change: Callable[[Any], Any]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    new = change(data)
    path.write_text(yaml.safe_dump(new if new is not None else data, sort_keys=False), encoding="utf-8")


def _problems(data_dir: Path) -> list[Problem]:
    try:
        kb = load_kb(data_dir)
    except KnowledgeBaseError as exc:
        return exc.problems
    return validate_kb(kb)


def _find(problems: list[Problem], *, file: str, record: str, field_part: str, msg_part: str) -> Problem:
    for p in problems:
        if p.file == file and p.record == record and field_part in p.field and msg_part in p.message:
            return p
    raise AssertionError(f"no problem at {file} [{record}] {field_part} ~ {msg_part!r}; got:\n"
                         + "\n".join(map(str, problems)))


def test_embedded_knowledge_base_is_valid() -> None:
    assert _problems(DEFAULT_DATA_DIR) == []


def test_statement_without_source_is_reported(kb_copy: Path) -> None:
    def drop(d: dict[str, Any]) -> None:
        d["mechanism"][0]["sources"] = []
    _edit(kb_copy / "drugs" / "sirolimus.yaml", drop)
    _find(_problems(kb_copy), file="drugs/sirolimus.yaml", record="sirolimus",
          field_part="mechanism[0]", msg_part="no source")


def test_unknown_source_id_is_reported(kb_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        d["mechanism"][0]["sources"] = ["no-such-paper"]
    _edit(kb_copy / "drugs" / "sirolimus.yaml", bad)
    _find(_problems(kb_copy), file="drugs/sirolimus.yaml", record="sirolimus",
          field_part="mechanism[0].sources[0]", msg_part="unknown source id 'no-such-paper'")


def test_unknown_seed_section_is_reported(kb_copy: Path) -> None:
    def bad(d: dict[str, Any]) -> None:
        d["mechanism"][0]["sources"] = ["seed#no-such-section"]
    _edit(kb_copy / "drugs" / "sirolimus.yaml", bad)
    _find(_problems(kb_copy), file="drugs/sirolimus.yaml", record="sirolimus",
          field_part="mechanism[0].sources[0]", msg_part="no section 'no-such-section'")


def test_therapy_pointing_at_missing_drug_is_reported(kb_copy: Path) -> None:
    man_file = kb_copy / "manifestations.yaml"

    def bad(items: list[dict[str, Any]]) -> None:
        ent = next(m for m in items if m["id"] == "enteropathy")
        ent["therapy"][0]["drugs"] = ["unobtainium"]
    _edit(man_file, bad)
    _find(_problems(kb_copy), file="manifestations.yaml", record="enteropathy",
          field_part="therapy[0].drugs[0]", msg_part="unknown drug 'unobtainium'")


def test_drug_pointing_at_missing_class_is_reported(kb_copy: Path) -> None:
    _edit(kb_copy / "drugs" / "sirolimus.yaml", lambda d: d.update(classes=["no-such-class"]))
    _find(_problems(kb_copy), file="drugs/sirolimus.yaml", record="sirolimus",
          field_part="classes[0]", msg_part="unknown drug class 'no-such-class'")


def test_interaction_pointing_at_missing_drug_is_reported(kb_copy: Path) -> None:
    path = kb_copy / "interactions" / "dangling.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump([{
        "id": "sirolimus-unobtainium",
        "review": {"date": "2026-11-25", "reviewer": "test"},
        "drugs": ["sirolimus", "unobtainium"],
        "severity": "major",
        "mechanism": {"text": "x", "sources": ["seed#sirolimus"]},
        "instructions": [{"kind": "avoid", "text": {"text": "y", "sources": ["seed#sirolimus"]}}],
    }]), encoding="utf-8")
    _find(_problems(kb_copy), file="interactions/dangling.yaml", record="sirolimus-unobtainium",
          field_part="drugs[1]", msg_part="unknown drug 'unobtainium'")


@pytest.mark.parametrize(
    ("field", "value", "expect"),
    [
        ("rxcui", "35302a", "rxcui"),
        ("atc", [{"code": "L4AH01"}], "atc[0].code"),
    ],
)
def test_malformed_drug_codes_are_reported(kb_copy: Path, field: str, value: Any, expect: str) -> None:
    _edit(kb_copy / "drugs" / "sirolimus.yaml", lambda d: d["codes"].update({field: value}))
    _find(_problems(kb_copy), file="drugs/sirolimus.yaml", record="sirolimus",
          field_part=f"codes.{expect}", msg_part="should match pattern")


@pytest.mark.parametrize(
    ("field", "value"),
    [("omim", "30479"), ("orpha", "37042"), ("mondo", "MONDO:10580")],
)
def test_malformed_disease_identifiers_are_reported(kb_copy: Path, field: str, value: str) -> None:
    _edit(kb_copy / "disease.yaml", lambda d: d["identifiers"].update({field: value}))
    _find(_problems(kb_copy), file="disease.yaml", record="ipex",
          field_part=f"identifiers.{field}", msg_part="should match pattern")


def test_malformed_hpo_code_is_reported(kb_copy: Path) -> None:
    def bad(items: list[dict[str, Any]]) -> None:
        ent = next(m for m in items if m["id"] == "enteropathy")
        ent["hpo"][0]["code"] = "HP:2028"
    _edit(kb_copy / "manifestations.yaml", bad)
    _find(_problems(kb_copy), file="manifestations.yaml", record="enteropathy",
          field_part="hpo[0]", msg_part="malformed HPO code 'HP:2028'")


def test_duplicate_drug_id_is_reported(kb_copy: Path) -> None:
    shutil.copy(kb_copy / "drugs" / "sirolimus.yaml", kb_copy / "drugs" / "sirolimus-copy.yaml")
    problems = _problems(kb_copy)
    _find(problems, file="drugs/sirolimus.yaml", record="sirolimus", field_part="id",
          msg_part="duplicate drug id 'sirolimus'")


def test_duplicate_list_record_id_is_reported(kb_copy: Path) -> None:
    def dup(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [*items, next(m for m in items if m["id"] == "enteropathy")]
    _edit(kb_copy / "manifestations.yaml", dup)
    _find(_problems(kb_copy), file="manifestations.yaml", record="enteropathy", field_part="id",
          msg_part="duplicate manifestation id 'enteropathy'")


def test_missing_review_date_is_reported(kb_copy: Path) -> None:
    def drop(d: dict[str, Any]) -> None:
        del d["review"]["date"]
    _edit(kb_copy / "drugs" / "sirolimus.yaml", drop)
    _find(_problems(kb_copy), file="drugs/sirolimus.yaml", record="sirolimus", field_part="review.date",
          msg_part="required field is missing")


def test_unknown_field_is_reported_not_ignored(kb_copy: Path) -> None:
    _edit(kb_copy / "drugs" / "sirolimus.yaml", lambda d: d.update(brandz=["Rapamune"]))
    _find(_problems(kb_copy), file="drugs/sirolimus.yaml", record="sirolimus", field_part="brandz",
          msg_part="unknown field")


def test_broken_yaml_is_reported_with_line(kb_copy: Path) -> None:
    (kb_copy / "drugs" / "sirolimus.yaml").write_text("id: sirolimus\nname: [unclosed\n", encoding="utf-8")
    problems = _problems(kb_copy)
    assert any(p.file == "drugs/sirolimus.yaml" and "not valid YAML at line" in p.message for p in problems), problems


def test_brand_shared_by_two_drugs_is_reported(kb_copy: Path) -> None:
    def steal(d: dict[str, Any]) -> None:
        d["synonyms"] = [*d.get("synonyms", []), "Rapamune"]
    other = next(p for p in sorted((kb_copy / "drugs").glob("*.yaml")) if p.stem != "sirolimus")
    _edit(other, steal)
    problems = _problems(kb_copy)
    assert any("Rapamune" in p.message and "also used by" in p.message for p in problems), problems


def test_cli_validate_exits_nonzero_with_located_message(kb_copy: Path) -> None:
    _edit(kb_copy / "drugs" / "sirolimus.yaml", lambda d: d.update(classes=["no-such-class"]))
    proc = subprocess.run(
        [sys.executable, "-m", "ipexrx.cli", "kb", "validate", "--data-dir", str(kb_copy)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    line = next(n for n, x in enumerate((kb_copy / "drugs" / "sirolimus.yaml").read_text().splitlines(), start=1)
                if x.strip() == "- no-such-class")  # the list item itself
    assert f"drugs/sirolimus.yaml, line {line} [sirolimus] classes[0]" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_problems_get_the_line_of_their_field_or_of_the_record_that_lacks_it(kb_copy: Path) -> None:
    from ipexrx.knowledge.yamlpos import with_lines

    def change(records: list[dict[str, Any]]) -> None:
        del records[2]["title"]  # missing: the record's own line
        records[1]["titel"] = "misspelt"  # unknown: the key's line
    _edit(kb_copy / "evidence.yaml", change)
    lines = (kb_copy / "evidence.yaml").read_text(encoding="utf-8").splitlines()
    records = yaml.safe_load("\n".join(lines))
    problems = with_lines(_problems(kb_copy), kb_copy)
    missing = _find(problems, file="evidence.yaml", record=records[2]["id"], field_part="title", msg_part="missing")
    assert missing.line is not None and lines[missing.line - 1] == f"- id: {records[2]['id']}"
    unknown = _find(problems, file="evidence.yaml", record=records[1]["id"], field_part="titel", msg_part="unknown")
    assert unknown.line is not None and lines[unknown.line - 1].strip().startswith("titel:")
    assert str(unknown).startswith(f"evidence.yaml, line {unknown.line} [{records[1]['id']}] titel: ")


def test_a_problem_whose_record_is_not_in_the_file_keeps_no_line(kb_copy: Path) -> None:
    from ipexrx.knowledge.yamlpos import with_lines

    (p,) = with_lines([Problem("drugs/sirolimus.yaml", "no-such-record", "classes", "x")], kb_copy)
    assert p.line is None and str(p) == "drugs/sirolimus.yaml [no-such-record] classes: x"
    (p,) = with_lines([Problem("drugs/sirolimus.yaml", "sirolimus", "no.such[3].field", "x")], kb_copy)
    lines = (kb_copy / "drugs" / "sirolimus.yaml").read_text(encoding="utf-8").splitlines()
    assert p.line is not None and lines[p.line - 1] == "id: sirolimus"  # where the record starts


def test_cli_validate_passes_on_embedded_content() -> None:
    proc = subprocess.run([sys.executable, "-m", "ipexrx.cli", "kb", "validate"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "knowledge base OK" in proc.stdout
