"""The caveats of `ipexrx dose recommend` (terminal) and of the printable report (HTML, JSON) include every
caveat the recommendation carries (an unchecked dosage form among them), and the target caveat says where the
range came from: typed by the user (--low/--high), the model's source study, or the knowledge base's range."""

from __future__ import annotations

import html
import json
from typing import Any

import pytest
from typer.testing import CliRunner

from ipexrx.cli import get_app
from ipexrx.dosing.model import get_model
from ipexrx.dosing.recommend import recommend_from_trough
from ipexrx.dosing.report import build_report

WIDE = {"COLUMNS": "400"}
TAC = ["--drug", "tacrolimus", "--cov", "WT=9.5", "--age", "1.5", "--co-medications",
       "posaconazole, prednisolone, omeprazole", "--level", "14.2", "--level-unit", "ng/mL", "--dose", "0.5",
       "--interval", "12"]
USER = ["--low", "5", "--high", "10", "--unit", "ng/mL"]
FORM = "were not re-checked against the label for this release"


def _caveats(output: str) -> list[str]:
    return [line.removeprefix("caveat: ") for line in output.splitlines() if line.startswith("caveat: ")]


@pytest.fixture(scope="module")
def runs() -> dict[str, Any]:
    runner = CliRunner()
    out: dict[str, Any] = {}
    for name, extra in (("user", USER), ("study", [])):
        text = runner.invoke(get_app(), ["dose", "recommend", *TAC, *extra], env=WIDE)
        page = runner.invoke(get_app(), ["dose", "report", *TAC, *extra, "--as-of", "2026-11-25"])
        rec = runner.invoke(get_app(), ["dose", "recommend", *TAC, *extra, "--json"])
        assert text.exit_code == 0 and page.exit_code == 0 and rec.exit_code == 0, text.output + page.output
        out[name] = (_caveats(text.output), html.unescape(page.output), json.loads(rec.output))
    return out


@pytest.mark.parametrize("name", ["user", "study"])
def test_every_caveat_of_the_recommendation_is_in_the_terminal_and_the_report(runs: dict[str, Any],
                                                                                name: str) -> None:
    terminal, page, rec = runs[name]
    form = [c for c in rec["caveats"] if FORM in c]
    assert len(form) == 1 and rec["form"] in form[0], rec["caveats"]
    for c in rec["caveats"]:
        assert c in terminal, (c, terminal)
        assert c in page, c
    assert "Prograf" in form[0]  # the label the strengths were taken from, in words


def test_a_user_target_is_said_to_be_the_users_not_the_studys(runs: dict[str, Any]) -> None:
    terminal, page, rec = runs["user"]
    assert rec["target_origin"] == "user"
    target = [c for c in terminal if c.startswith("Target range")]
    assert target == ["Target range 5-10 ng/mL was supplied by the user, not taken from a study or the knowledge "
                      "base; it is not established for IPEX: confirm it is the range agreed for this patient."]
    assert target[0] in page
    assert not any("source study" in c or "Chen 2022, Figures" in c for c in terminal)
    assert "Target range from the source study" not in page


def test_a_study_target_names_its_source(runs: dict[str, Any]) -> None:
    terminal, page, rec = runs["study"]
    assert rec["target_origin"] == "study"
    (target,) = [c for c in terminal if c.startswith("Target range")]
    assert target.startswith(f"Target range {rec['target_low']:g}-{rec['target_high']:g} ng/mL is from the "
                             "model's source study, not an IPEX target:")
    # the study is named where the target is shown, with its citation number (the caveat says only its setting)
    assert rec["target_source"] not in target and rec["target_source"] in page  # "Chen 2022, Figures 5-6 (...)"
    assert "supplied by the user" not in target and target in page


def test_a_knowledge_base_range_is_named_as_such() -> None:
    m = get_model("chen2022-tacrolimus")
    covs = {"WT": 9.5, "POSACONAZOLE": 1.0}
    rec = recommend_from_trough("tacrolimus", 14.2, "ng/mL", 0.5, 12, covs, model_id=m.id, target_low=5,
                                target_high=10, target_unit="ng/mL",
                                target_basis=("after HSCT, first months", "Prograf label, section 2"))
    assert rec.target_origin == "knowledge base"
    (target,) = [c for c in rec.caveats if c.startswith("Target range")]
    assert target == ("Target range 5-10 ng/mL is the knowledge base's range for the drug (after HSCT, first "
                      "months; taken from Prograf label, section 2), not established for IPEX: agree the target for "
                      "this patient.")
    report = build_report(m, rec, covariates=covs, as_of="2026-11-25")
    assert target in report.caveats and not any("supplied by the user" in c for c in report.caveats)
    assert report.target.source == "the knowledge base: Prograf label, section 2"
    assert [s.text for s in report.sources if s.number in report.target.refs] == ["Prograf label, section 2"]
