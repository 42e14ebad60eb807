"""``ipexrx screen``: JSON, table, worklists and report, clear errors; precision-at-k on a larger population;
and the CLI does not pay for DuckDB or hpo3 unless a screen runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ipexrx.cli import get_app

from .conftest import POPULATION

runner = CliRunner()
AS_OF = ["--as-of", "2026-06-30"]


def test_json_output_has_the_issue_shape() -> None:
    res = runner.invoke(get_app(), ["screen", str(POPULATION), "--json", *AS_OF, "--top", "3"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert list(data) == ["candidates", "known", "safety", "stats"]
    assert len(data["candidates"]) == 3
    assert data["stats"]["candidates"] > 3 and data["stats"]["candidates_shown"] == 3
    assert {"patient", "score", "reasons"} <= set(data["candidates"][0])
    assert all({"patient", "alerts"} <= set(s) for s in data["safety"])


def test_table_output_lists_candidates_known_safety_and_skipped_lines() -> None:
    res = runner.invoke(get_app(), ["screen", "run", str(POPULATION), *AS_OF, "--no-progress"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "Candidates (best first)" in out and "IPEX (FOXP3)" in out
    assert "Already diagnosed" in out and "Drug safety" in out
    assert "skipped Condition.ndjson:" in out and "skipped Observation.ndjson.gz:" in out
    assert "not a diagnosis or an order" in out
    # alerts first (the drug-safety worklist), then the plan (the candidates), then the evidence
    assert out.index("Drug safety") < out.index("Candidates (best first)") < out.index("Already diagnosed") \
        < out.index("Method:")


def test_out_writes_worklists_and_a_report_with_the_score_plot(tmp_path: Path) -> None:
    res = runner.invoke(get_app(), ["screen", str(POPULATION), "--json", *AS_OF, "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    out = tmp_path / "o"
    assert sorted(p.name for p in out.iterdir()) == ["candidates.csv", "known.csv", "report.html", "safety.csv"]
    cands = (out / "candidates.csv").read_text(encoding="utf-8").splitlines()
    data = json.loads(res.stdout)
    assert len(cands) == 1 + len(data["candidates"])
    assert cands[1].startswith(f"1,{data['candidates'][0]['patient']},")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<svg" in html and "candidate threshold" in html
    assert "doi:10.1126/science.aal4043" in html  # PheRS, the method's source
    assert "critical" in (out / "safety.csv").read_text(encoding="utf-8")
    order = ['<h2 id="safety-title">Drug safety</h2>', '<h2 id="candidates-title">Candidates</h2>',
             "<h2>Score distribution</h2>", "<h2>Already diagnosed</h2>", "<h2>Method</h2>", '<h2 id="sources-title">']
    positions = [html.index(heading) for heading in order]  # alerts first, then the plan, then the evidence
    assert positions == sorted(positions), dict(zip(order, positions, strict=True))


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: d / "missing", "no such directory"),
    (lambda d: (d / "Condition.ndjson").write_text("{}\n") and d, "no Patient file"),
    (lambda d: (d / "Patient.ndjson").write_text("not json\nstill not\n") and d, "no line is a FHIR Patient"),
])
def test_unusable_input_is_one_clear_line_and_exit_1(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    target = make(tmp_path)
    res = runner.invoke(get_app(), ["screen", str(target), "--json"])
    assert res.exit_code == 1
    assert message in res.stderr and "Traceback" not in res.output + res.stderr


def test_synth_command_writes_a_population(tmp_path: Path) -> None:
    res = runner.invoke(get_app(), ["screen", "synth", str(tmp_path / "pop"), "--patients", "80", "--seed", "2",
                                    "--gzip", "Observation"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "pop" / "Observation.ndjson.gz").exists() and (tmp_path / "pop" / "synth-truth.csv").exists()
    bad = runner.invoke(get_app(), ["screen", "synth", str(tmp_path / "x"), "--gzip", "Encounter"])
    assert bad.exit_code == 1 and "unknown resource type" in bad.stderr


def test_cli_start_up_does_not_import_duckdb_or_hpo3() -> None:
    code = ("import sys; from ipexrx.cli import get_app; get_app(); "
            "print(sorted(m for m in ('duckdb', 'pyhpo', 'hpo3', 'ipexrx.screen.run') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


PRECISION_FLOOR = 0.9


def test_precision_at_k_on_a_larger_generated_population(tmp_path: Path) -> None:
    """k = the number of undiagnosed IPEX and IPEX-like patients in a 3,000-patient population (24); at least
    90 % of the k best-ranked candidates must be such patients, and every one of them must be a candidate."""
    import datetime as dt

    from ipexrx.screen.run import screen
    from ipexrx.screen.synth import generate, read_truth

    generate(tmp_path, 3000, 5)
    truth = read_truth(tmp_path)
    result = screen(tmp_path, as_of=dt.date(2026, 6, 30))
    positives = {p for p, g in truth.items() if g == "ipex" or g.startswith("ipex-like:")}
    k = len(positives)
    top = [c["patient"] for c in result["candidates"][:k]]
    precision = sum(p in positives for p in top) / k
    assert precision >= PRECISION_FLOOR, f"precision at {k} = {precision:.3f}"
    assert positives <= {c["patient"] for c in result["candidates"]}


def test_an_unknown_engine_is_refused_clearly() -> None:
    res = runner.invoke(get_app(), ["screen", str(POPULATION), "--engine", "hadoop"])
    assert res.exit_code == 2
    assert "expects 'duckdb' or 'spark'" in res.stderr and "got 'hadoop'" in res.stderr


def test_spark_master_without_the_spark_engine_is_refused() -> None:
    res = runner.invoke(get_app(), ["screen", str(POPULATION), "--spark-master", "local[1]"])
    assert res.exit_code == 2
    assert "--engine spark only" in res.stderr


def test_the_spark_engine_without_pyspark_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark... now raises ImportError
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    res = runner.invoke(get_app(), ["screen", str(POPULATION), "--engine", "spark", "--json"])
    assert res.exit_code == 2  # an optional part not installed (ipexrx.extras.MissingExtraError)
    assert "--engine spark needs the optional part 'spark' of ipexrx" in res.stderr
    assert re.search(r"Install it with: pip install (-e )?'[^']*\[spark\]'", res.stderr), res.stderr


def _numbers_agree(body: str, listed: list[int]) -> None:
    """The shared citation rule: every number used is listed, every entry is used, numbers in reading order."""
    from ipexrx.reference.citations import numbers_in

    used = numbers_in(body)
    assert listed and listed == list(range(1, len(listed) + 1)), listed
    assert set(used) == set(listed), sorted(set(used) ^ set(listed))
    first_use = list(dict.fromkeys(used))
    assert first_use == sorted(first_use), first_use


def test_screen_report_cites_numbers_its_sources_list_holds(tmp_path: Path) -> None:
    import html as html_lib

    res = runner.invoke(get_app(), ["screen", str(POPULATION), "--json", *AS_OF, "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    body, _, tail = page.split("<body>", 1)[1].partition('<h2 id="sources-title">')
    body = re.sub(r"<svg\b.*?</svg>", "", body, flags=re.S)
    listed = [int(n) for n in re.findall(r'<li id="source-(\d+)">', tail)]
    _numbers_agree(html_lib.unescape(re.sub(r"<[^>]+>", "", body)), listed)
    assert set(re.findall(r'href="#source-(\d+)"', body)) == {str(n) for n in listed}
    data = json.loads(res.stdout)  # the safety alerts' sources, once inline text, are numbered entries now
    alert_source = data["safety"][0]["alerts"][0]["sources"][0]
    assert alert_source not in body and alert_source in tail


def test_terminal_table_cites_numbers_its_sources_legend_holds() -> None:
    res = runner.invoke(get_app(), ["screen", str(POPULATION), *AS_OF, "--no-progress"], env={"COLUMNS": "1000"})
    assert res.exit_code == 0, res.output
    body, _, tail = res.stdout.partition("\nSources\n")
    entries = [line for line in tail.splitlines() if line.strip()]
    listed = [int(m.group(1)) for line in entries for m in [re.match(r"\[(\d+)\] ", line)] if m]
    assert len(listed) == len(entries)  # every legend line starts with its number
    _numbers_agree(body, listed)
    assert "doi:10.3389/fimmu.2018.02411" in tail and "Suggested next step (candidates 1," in body
