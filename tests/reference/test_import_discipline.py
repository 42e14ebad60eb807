"""Start-up discipline: a lookup pays only for what it uses.

Wall-clock budgets are measured by benchmarks/startup.py (timings are too noisy for CI); what
can be pinned here is *which* heavy modules a lookup loads in a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
{code}
heavy = ["rapidfuzz", "yaml", "rich", "typer", "numpy", "scipy", "fastapi", "fhir", "matplotlib", "sqlalchemy",
         "uvicorn", "jinja2", "httpx", "starlette", "ipexrx.knowledge.schema"]
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def _loaded(code: str) -> list[str]:
    # the first process may build the compiled cache (and parse YAML); the second must not need to
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-c", PROBE.format(code=code)], check=True, capture_output=True, text=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_library_lookup_loads_no_yaml_schema_search_or_terminal_code() -> None:
    # served from the compiled view cache: not even the knowledge-base schema is imported
    assert _loaded("from ipexrx.reference import drug_monograph; drug_monograph('Neoral')") == []


def test_import_ipexrx_is_cheap() -> None:
    loaded = _loaded("import ipexrx")
    assert loaded == []
    out = subprocess.run([sys.executable, "-c", "import ipexrx, sys; print('pydantic' in sys.modules)"],
                         check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_cli_drug_lookup_loads_only_typer_and_rich() -> None:
    code = """
import sys, io, contextlib
sys.argv = ["ipexrx", "drug", "sirolimus"]
from ipexrx.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main()
    except SystemExit:
        pass
"""
    # every other command module is registered too: none may import a heavy library at import time
    assert _loaded(code) == ["rich", "typer"]


def test_building_a_view_compiles_no_pydantic_schema() -> None:
    # views are assembled from validated content with model_construct; building validators for
    # ~40 view models would cost a noticeable share of the lookup budget
    code = """
from ipexrx.reference import drug_monograph, manifestation_view, models
drug_monograph("sirolimus"); manifestation_view("enteropathy")
built = sorted(n for n, c in vars(models).items()
               if isinstance(c, type) and issubclass(c, models.View) and c.__pydantic_complete__)
print(built)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
