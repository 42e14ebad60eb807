"""`ipexrx dose` in the terminal cites by number, like `ipexrx assess`: ``[n]`` marks in reading order that point
into a numbered Sources list at the end, the same numbers as the printable report (`dose report`)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ipexrx.cli import get_app
from ipexrx.reference.citations import numbers_in

WIDE = {"COLUMNS": "400"}  # no wrapping: one printed line per statement
TAC = ["--drug", "tacrolimus", "--cov", "WT=9.5", "--age", "1.5", "--co-medications",
       "posaconazole, prednisolone, omeprazole", "--level", "14.2", "--level-unit", "ng/mL", "--dose", "0.5",
       "--interval", "12", "--low", "5", "--high", "10", "--unit", "ng/mL"]


def _body_and_sources(output: str) -> tuple[str, dict[int, str]]:
    body, _, tail = output.partition("\nSources\n")
    assert tail, f"no Sources list at the end:\n{output[-1500:]}"
    sources = {}
    for line in tail.splitlines():
        assert line.startswith("  ["), f"the Sources list must end the output, found {line!r}"
        num, _, text = line.strip()[1:].partition("] ")
        sources[int(num)] = text
    return body, sources


def test_recommend_cites_by_number_in_reading_order_and_ends_with_the_sources() -> None:
    res = CliRunner().invoke(get_app(), ["dose", "recommend", *TAC], env=WIDE)
    assert res.exit_code == 0, res.output
    body, sources = _body_and_sources(res.output)
    cited = numbers_in(body)
    first_seen = list(dict.fromkeys(cited))
    # model averaging over three tacrolimus models: the chosen model, the dosage form, the diagnostics' two
    # methods, the averaging method and the two other models
    assert first_seen == list(range(1, len(first_seen) + 1)) and len(first_seen) >= 7, first_seen
    assert sorted(sources) == first_seen  # every number has an entry and every entry is cited
    # the citation texts are in the list, not inline
    assert "doi:" not in body and "Front Pharmacol" not in body
    assert "Effects of posaconazole on tacrolimus" in sources[1] and "doi:10.3389/fphar.2022.758524" in sources[1]
    chosen_line = next(line for line in body.splitlines() if "(used)" in line)
    assert chosen_line.strip().startswith("Chen 2022 [1]")
    assert "Suggestion (not an order):" in body and body.index("warning") < body.index("Suggestion")


def test_recommend_numbers_are_the_printable_reports() -> None:
    runner = CliRunner()
    text = runner.invoke(get_app(), ["dose", "recommend", *TAC], env=WIDE)
    rep = runner.invoke(get_app(), ["dose", "report", *TAC, "--json", "--as-of", "2026-11-25"])
    assert text.exit_code == 0 and rep.exit_code == 0, text.output + rep.output
    _, sources = _body_and_sources(text.output)
    report = json.loads(rep.output)
    assert {s["number"]: s["text"] for s in report["sources"]} == {n: t.split(" doi:")[0] for n, t in sources.items()}


def test_recommend_without_levels_cites_the_model_and_lists_it() -> None:
    res = CliRunner().invoke(get_app(), ["dose", "recommend", "--drug", "sirolimus", "--cov", "WT=12", "--age", "3",
                                         "--co-medications", "none"], env=WIDE)
    assert res.exit_code == 0, res.output
    body, sources = _body_and_sources(res.output)
    assert list(dict.fromkeys(numbers_in(body))) == sorted(sources) and sources
    assert "no measured level" in body.lower() or "No measured level" in body


def test_fit_cites_its_model_by_number(tmp_path) -> None:
    csv = tmp_path / "sirolimus.csv"
    csv.write_text("ID,TIME,EVID,AMT,CMT,II,SS,DV,WT\n1,0,1,1,1,24,1,.,20\n1,24,0,.,2,0,0,6,20\n")
    res = CliRunner().invoke(get_app(), ["dose", "fit", "--model", "fan2024-sirolimus", "--data", str(csv)], env=WIDE)
    assert res.exit_code == 0, res.output
    body, sources = _body_and_sources(res.output)
    assert numbers_in(body) == [1] and list(sources) == [1]
    assert "sirolimus" in sources[1] and "doi:10.3389/fphar.2024.1457614" in sources[1]
