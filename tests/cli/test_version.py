"""`ipexrx --version`: the installed version, from package metadata, without loading the library."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from typer.testing import CliRunner

from ipexrx.cli import get_app


def test_version_prints_the_installed_distribution_version_and_exits_zero() -> None:
    res = CliRunner().invoke(get_app(), ["--version"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"ipexrx {version('ipexrx')}"


def test_version_loads_neither_the_knowledge_base_nor_pydantic() -> None:
    code = (
        "import sys\n"
        "from ipexrx.cli import main\n"
        "sys.argv = ['ipexrx', '--version']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "heavy = sorted(m for m in ('pydantic', 'ipexrx.knowledge', 'ipexrx.assess', 'fastapi', 'numpy', 'sqlalchemy')"
        " if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert f"ipexrx {version('ipexrx')}" in out.stdout
    assert "HEAVY []" in out.stdout, out.stdout


def test_help_shows_no_value_type_for_flags() -> None:
    """A flag takes no value: `--version`, `--help`, `--json` show none; options that take one keep theirs."""
    res = CliRunner().invoke(get_app(), ["--help"], env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    version_line = next(line for line in res.output.splitlines() if "--version" in line)
    assert "Print the installed version and exit." in version_line
    assert "<" not in version_line and "bool" not in version_line
    sub = CliRunner().invoke(get_app(), ["assess", "--help"], env={"COLUMNS": "200"})
    assert "<bool>" not in sub.output
    as_of = next(line for line in sub.output.splitlines() if "--as-of" in line)
    assert "<str>" in as_of  # an option with a value still says what kind
