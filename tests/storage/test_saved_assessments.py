"""Saved assessments: `ipexrx assess FILE --save` keeps what the system said, with the KB version
and an input hash, in the same database (and migration chain) as CDS feedback and the registry."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "sirolimus-azole.json"


def _ipexrx(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IPEXRX_DATABASE_URL": f"sqlite:///{db}"}
    return subprocess.run([sys.executable, "-m", "ipexrx", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_saved_assessment_is_listed_and_shown_exactly_as_produced(tmp_path: Path) -> None:
    db = tmp_path / "ipexrx.sqlite3"
    made = _ipexrx(db, "assess", str(EXAMPLE), "--as-of", "2026-11-25", "--json", "--save")
    assert made.returncode == 0, made.stderr
    assert "saved as assessment #1" in made.stderr
    produced = json.loads(made.stdout)

    listed = _ipexrx(db, "assessments", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    counts = {s: sum(a["severity"] == s for a in produced["alerts"]) for s in ("critical", "warning", "info")}
    assert {k: row[k] for k in counts} == counts and counts["critical"] >= 1
    assert row["patient_id"] == produced["patient"]["id"] and row["kb_version"] == produced["kb_version"]
    assert row["input_sha256"] == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()

    shown = _ipexrx(db, "assessments", "show", "1", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == produced


def test_unknown_saved_assessment_is_a_clean_error(tmp_path: Path) -> None:
    res = _ipexrx(tmp_path / "ipexrx.sqlite3", "assessments", "show", "42")
    assert res.returncode == 1
    assert "no saved assessment #42" in res.stderr and "Traceback" not in res.stderr


def test_assessment_without_save_stores_nothing(tmp_path: Path) -> None:
    db = tmp_path / "ipexrx.sqlite3"
    assert _ipexrx(db, "assess", str(EXAMPLE), "--json").returncode == 0
    listed = _ipexrx(db, "assessments", "list", "--json")
    assert json.loads(listed.stdout) == []
