"""`ipexrx` reference commands: readable views with visible sources, stable JSON, clean errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ipexrx.cli import get_app
from ipexrx.cli.schema import SCHEMAS, json_schema, load_model
from ipexrx.knowledge.loader import DEFAULT_DATA_DIR

runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(get_app(), list(args))


VIEWS = [
    ("summary", ["summary"], ["IPEX medication summary", "HSCT", "Autoimmune enteropathy"]),
    ("manifestation", ["manifestation", "diarrhea"], ["Autoimmune enteropathy", "HP:0002028", "Sirolimus"]),
    ("manifestation", ["manifestation", "HP:0100651"], ["Type 1 diabetes", "Insulin"]),
    ("drug", ["drug", "Neoral"], ["cyclosporine", "Gengraf", "Sandimmune", "Interactions"]),
    ("drug", ["drug", "rapamycin"], ["sirolimus", "Rapamune", "Boxed warnings", "Monitoring", "voriconazole"]),
    ("drug", ["drug", "FK506"], ["tacrolimus", "Prograf"]),
    ("class", ["class", "calcineurin"], ["Calcineurin inhibitors", "cyclosporine", "tacrolimus"]),
    ("class", ["class", "immunosuppressants"], ["Immunosuppressant agents", "sirolimus"]),
    ("sources", ["sources"], ["seed", "barzaghi-2018", "10.1016/j.jaci.2017.10.041"]),
    ("search", ["search", "FKBP12"], ["sirolimus", "tacrolimus", "ipexrx drug tacrolimus"]),
]


@pytest.mark.parametrize(("name", "args", "expected"), VIEWS, ids=[" ".join(v[1]) for v in VIEWS])
def test_view_prints_readable_text_with_sources(name: str, args: list[str], expected: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 0, result.output
    for text in expected:
        assert text in result.stdout, f"{text!r} missing from `ipexrx {' '.join(args)}`"
    if name not in ("sources", "search"):
        # numbered citations in the text and the legend that explains them
        assert "[1]" in result.stdout and "Sources" in result.stdout


@pytest.mark.parametrize(("name", "args", "expected"), VIEWS, ids=[" ".join(v[1]) for v in VIEWS])
def test_json_output_matches_the_published_schema(name: str, args: list[str], expected: list[str]) -> None:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    schema = json.loads(run("schema", name).stdout)
    assert schema == json_schema(name)
    # top-level shape: every key is documented, every required key present
    assert set(data) <= set(schema["properties"])
    assert set(schema.get("required", [])) <= set(data)
    # full check: the model the schema was generated from accepts the output unchanged
    model = load_model(name)
    assert json.loads(model.model_validate(data).model_dump_json()) == data


def test_json_output_is_deterministic() -> None:
    assert run("drug", "sirolimus", "--json").stdout == run("drug", "sirolimus", "--json").stdout


def test_schema_without_name_lists_the_registry() -> None:
    result = run("schema")
    assert result.exit_code == 0
    assert result.stdout.split() == sorted(SCHEMAS)


@pytest.mark.parametrize(("args", "needle"), [
    (["drug", "sirolimis"], "no drug named 'sirolimis'; closest matches: sirolimus"),
    (["manifestation", "diarhea"], "no manifestation named 'diarhea'; closest matches: enteropathy"),
    (["class", "anti"], "matches several drug class records"),
    (["schema", "nope"], "no schema named 'nope'"),
])
def test_unknown_names_exit_1_with_one_clear_line(args: list[str], needle: str) -> None:
    result = run(*args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_search_with_no_match_says_so() -> None:
    result = run("search", "zzzzqqqq")
    assert result.exit_code == 0 and "No matches" in result.stdout


def test_unknown_drug_in_a_real_process_has_no_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "ipexrx", "drug", "nosuchdrugxyz"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: no drug named 'nosuchdrugxyz'")
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_broken_knowledge_base_is_reported_cleanly_with_exit_3(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(DEFAULT_DATA_DIR, data)
    path = data / "drugs" / "sirolimus.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("name: sirolimus", "name: sirolimus\nbogus: 1", 1),
                    encoding="utf-8")
    env = {**os.environ, "IPEXRX_KB_DIR": str(data)}
    proc = subprocess.run([sys.executable, "-m", "ipexrx", "drug", "sirolimus"], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 3
    assert "knowledge base failed to load" in proc.stderr and "drugs/sirolimus.yaml" in proc.stderr
    assert "bogus" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_registered_schema_loads_and_prints(name: str) -> None:
    # the registry holds "module:Model" strings: a typo would only show when someone asks for it
    result = run("schema", name)
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["type"] == "object" and schema["properties"]
