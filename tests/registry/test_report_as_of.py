"""`--as-of` on the registry report: the printed date is the one asked for, so examples do not drift."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from typer.testing import CliRunner

from ipexrx.cli import get_app


def test_registry_report_prints_the_as_of_date_instead_of_now(tmp_path: Path) -> None:
    out = tmp_path / "report"
    res = CliRunner().invoke(get_app(), ["registry", "demo", "--patients", "20", "--centres", "2", "--db",
                                         f"sqlite:///{tmp_path / 'r.sqlite3'}", "--report-dir", str(out),
                                         "--as-of", "2026-11-25"])
    assert res.exit_code == 0, res.output
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "generated 2026-11-25." in page
    assert dt.datetime.now(dt.UTC).strftime("%H:%M UTC") not in page


def test_a_malformed_as_of_is_refused_before_the_database_is_touched(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    for cmd in (["registry", "demo"], ["registry", "report", "--out", str(tmp_path / "o")]):
        res = CliRunner().invoke(get_app(), [*cmd, "--db", f"sqlite:///{db}", "--as-of", "25/11/2026"])
        assert res.exit_code == 2
        assert "--as-of expects a date as YYYY-MM-DD, got '25/11/2026'" in res.output
    assert not db.exists()
