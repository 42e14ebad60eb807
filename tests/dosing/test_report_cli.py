"""`ipexrx dose report`: the same inputs as `dose recommend`, an HTML page (--out) or JSON (--json), a fixed
date (--as-of), and clear errors with exit 1."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ipexrx.cli import get_app

runner = CliRunner()
LEVEL = ["--model", "fan2024-sirolimus", "--cov", "WT=12", "--level", "3.5", "--level-unit", "ng/mL", "--dose", "0.8",
         "--interval", "24"]


def test_report_writes_a_printable_page_dated_as_asked(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    res = runner.invoke(get_app(), ["dose", "report", *LEVEL, "--out", str(out), "--as-of", "2026-01-02"])
    assert res.exit_code == 0, res.output
    html = out.read_text(encoding="utf-8")
    assert '<svg class="plot"' in html and "Produced on 2026-01-02" in html
    assert "0.9 mg every 24 h" in html
    assert "wrote" in res.stderr and "0.9 mg every 24 h" in res.stderr


def test_report_json_matches_the_recommendation_of_the_same_options() -> None:
    rep = runner.invoke(get_app(), ["dose", "report", *LEVEL, "--json", "--as-of", "2026-01-02"])
    rec = runner.invoke(get_app(), ["dose", "recommend", *LEVEL, "--json"])
    assert rep.exit_code == 0 and rec.exit_code == 0, rep.output + rec.output
    d, r = json.loads(rep.stdout), json.loads(rec.stdout)
    assert d["as_of"] == "2026-01-02"
    assert (d["suggestion"]["dose_mg"], d["suggestion"]["interval_h"], d["suggestion"]["predicted"]) == (
        r["dose_mg"], r["interval_h"], r["predicted"])
    assert d["suggestion"]["unit"] == r["target_unit"] == "ng/mL"


def test_report_honours_form_and_metric_like_recommend() -> None:
    res = runner.invoke(get_app(), ["dose", "report", *LEVEL, "--form", "tablet", "--json", "--as-of", "2026-01-02"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)["suggestion"]
    assert s["form"] == "tablet" and "x 1" in s["administration"]


def test_report_without_out_or_json_prints_the_page() -> None:
    res = runner.invoke(get_app(), ["dose", "report", "--model", "fan2024-sirolimus", "--cov", "WT=12",
                                    "--as-of", "2026-01-02"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("<!DOCTYPE html>") and "population prediction" in res.stdout


def test_report_errors_are_clear_and_exit_1(tmp_path: Path) -> None:
    pdf = runner.invoke(get_app(), ["dose", "report", *LEVEL, "--out", str(tmp_path / "r.pdf")])
    assert pdf.exit_code == 1 and "expected a file name ending in .html" in pdf.output and "print it" in pdf.output
    date = runner.invoke(get_app(), ["dose", "report", *LEVEL, "--as-of", "yesterday"])
    assert date.exit_code == 1 and "as_of: expected a date YYYY-MM-DD, got 'yesterday'" in date.output
    unit = runner.invoke(get_app(), ["dose", "report", "--model", "fan2024-sirolimus", "--cov", "WT=12", "--level",
                                     "3.5", "--dose", "0.8", "--interval", "24"])
    assert unit.exit_code == 1 and "--level needs --level-unit" in unit.output
    dose = runner.invoke(get_app(), ["dose", "report", *LEVEL[:-4], "--dose", "80", "--interval", "24"])
    assert dose.exit_code == 1 and "input check failed" in dose.output
    nowhere = runner.invoke(get_app(), ["dose", "report", *LEVEL, "--out", str(tmp_path / "missing" / "r.html")])
    assert nowhere.exit_code == 1 and "cannot write" in nowhere.output
    for res in (pdf, date, unit, dose, nowhere):
        assert "Traceback" not in res.output and not (tmp_path / "r.pdf").exists()


def test_report_from_an_nmtran_history_lists_every_dose_and_level(tmp_path: Path) -> None:
    data = tmp_path / "siro.csv"
    data.write_text("ID,TIME,EVID,AMT,CMT,II,ADDL,DV,WT\n1,0,1,0.8,1,24,6,.,12\n1,168,0,0,2,0,0,4.1,12\n"
                    "1,168,1,1,1,24,3,.,12\n1,264,0,0,2,0,0,6.2,12\n", encoding="utf-8")
    res = runner.invoke(get_app(), ["dose", "report", "--model", "fan2024-sirolimus", "--data", str(data), "--json",
                                    "--as-of", "2026-01-02"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert [(x["time_h"], x["amount_mg"], x["additional_doses"]) for x in d["patient"]["doses"]] == [
        (0, 0.8, 6), (168, 1, 3)]
    assert [(x["time_h"], x["value"], x["unit"]) for x in d["patient"]["levels"]] == [
        (168, 4.1, "ng/mL"), (264, 6.2, "ng/mL")]
    # the suggested regimen starts when the next dose is due after the recorded ones (168 + 3 x 24 + 24 h)
    assert d["curve"]["regimen_change_h"] == 264 and d["curve"]["times_h"][-1] == 264 + 3 * 24
    assert d["suggestion"]["decision"] == "keep" and d["suggestion"]["current_dose_mg"] == 1
    assert len(d["diagnostics"]["levels"]) == 2 and d["diagnostics"]["conflict"]["df"] == 2
