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
