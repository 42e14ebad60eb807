"""Optional parts of ipexrx (pip extras): a job that needs a missing one stops with one sentence naming the
extra and the install command -- exit code 2 on the command line, 503 with that sentence in the web app --
never a traceback; and the default install (``pip install .``) carries none of them.

A missing package is simulated the way Python itself honours it: ``sys.modules[name] = None`` makes every
``import name`` fail with ImportError (in a subprocess for the commands, so nothing leaks between tests).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ipexrx import extras
from ipexrx.extras import EXTRAS, MissingExtraError, require

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
POPULATION = ROOT / "tests" / "cases" / "screen" / "population"

# Runs the real `ipexrx` entry point with the packages named in argv[1] made unimportable.
BLOCKED_CLI = ("import sys; [sys.modules.__setitem__(m, None) for m in sys.argv[1].split(',')]; "
               "sys.argv = ['ipexrx', *sys.argv[2:]]; from ipexrx.cli import main; main()")


def _requirement_name(req: str) -> str:
    return re.split(r"[\[=<>!~; ]", req, maxsplit=1)[0].lower()


def _ipexrx(blocked: str, *args: str, tmp_path: Path,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    run_env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "IPEXRX_DATABASE_URL": "", **(env or {})}
    return subprocess.run([sys.executable, "-c", BLOCKED_CLI, blocked, *args], capture_output=True, text=True,
                          cwd=tmp_path, env=run_env, timeout=120)


def _assert_names_extra(proc: subprocess.CompletedProcess[str], extra: str, package: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert f"optional part '{extra}'" in lines[0] and f"missing package: {package}" in lines[0], lines[0]
    assert re.search(rf"Install it with: pip install (-e )?'[^']*\[{extra}\]'$", lines[0]), lines[0]


# -- the declaration ------------------------------------------------------------------------------------


def test_every_extra_the_code_names_is_declared_with_its_packages_and_none_is_a_default_dependency() -> None:
    optional = PYPROJECT["project"]["optional-dependencies"]
    default = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    for extra, packages in EXTRAS.items():
        assert extra in optional, f"pyproject.toml has no extra {extra!r}"
        declared = {_requirement_name(r) for r in optional[extra]}
        assert set(packages) <= declared, (extra, packages, declared)
        assert not set(packages) & default, f"{extra}: {set(packages) & default} is also a default dependency"
    assert optional["all"] == [f"ipexrx[{','.join(sorted(EXTRAS))}]"]


def test_every_pin_of_an_optional_package_is_exact_and_the_same_everywhere() -> None:
    pins: dict[str, set[str]] = {}
    for reqs in PYPROJECT["project"]["optional-dependencies"].values():
        for r in reqs:
            if _requirement_name(r) != "ipexrx":
                assert "==" in r, f"not pinned: {r}"
                pins.setdefault(_requirement_name(r), set()).add(r)
    assert all(len(v) == 1 for v in pins.values()), {k: v for k, v in pins.items() if len(v) > 1}


def test_the_test_extra_brings_every_extra_but_spark_so_the_readme_test_command_runs_the_whole_suite() -> None:
    test = PYPROJECT["project"]["optional-dependencies"]["test"]
    assert "ipexrx[analytics,plots,postgres]" in test


def test_ci_installs_every_extra() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install -q -e ".[test,all]"' in ci


# -- the helper -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_require_names_the_extra_and_the_install_command_when_the_package_is_missing(
        extra: str, monkeypatch: pytest.MonkeyPatch) -> None:
    package = EXTRAS[extra][0]
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(MissingExtraError) as caught:
        require(package, extra, "This job")
    exc = caught.value
    assert (exc.module, exc.extra) == (package, extra)
    assert str(exc).startswith(f"This job needs the optional part '{extra}' of ipexrx, which is not installed "
                               f"(missing package: {package}). Install it with: pip install ")
    assert str(exc).endswith(f"[{extra}]'") and exc.command in str(exc)
    assert isinstance(exc.__cause__, ImportError)  # the original failure stays attached for debugging


def test_require_returns_the_module_when_it_is_installed() -> None:
    assert require("json", "plots", "This job") is json


def test_require_rejects_an_extra_that_does_not_exist() -> None:
    with pytest.raises(ValueError, match=r"unknown extra 'plot'; expected one of analytics, plots, postgres, spark"):
        require("json", "plot", "This job")


class _Dist:
    def __init__(self, direct_url: dict[str, Any] | None):
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        assert name == "direct_url.json"
        return None if self.direct_url is None else json.dumps(self.direct_url)


@pytest.mark.parametrize(("direct_url", "expected"), [
    ({"url": "{dir}", "dir_info": {"editable": True}}, "pip install -e '{path}[analytics]'"),
    ({"url": "{dir}", "dir_info": {}}, "pip install '{path}[analytics]'"),
    (None, "pip install 'ipexrx[analytics]'"),  # from an index: no direct_url.json
    ({"url": "https://example.org/ipexrx-0.1.0.tar.gz", "archive_info": {}}, "pip install 'ipexrx[analytics]'"),
    ({"url": "{dir}/gone", "dir_info": {}}, "pip install 'ipexrx[analytics]'"),  # the checkout was removed
], ids=["editable checkout", "checkout", "index", "archive", "removed checkout"])
def test_the_install_command_is_the_one_that_works_for_how_ipexrx_was_installed(
        direct_url: dict[str, Any] | None, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    src = tmp_path / "my checkout"
    src.mkdir()
    (src / "pyproject.toml").write_text("[project]\nname = 'ipexrx'\n", encoding="utf-8")
    if direct_url is not None:
        direct_url = {**direct_url, "url": direct_url["url"].replace("{dir}", src.as_uri())}
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: _Dist(direct_url))
    # a path with a space is quoted as a whole, extra included, so the command pastes into a shell as is
    assert extras.install_command("analytics") == expected.replace("{path}", str(src))


# -- each extra, missing, on the command line -----------------------------------------------------------


def test_a_postgresql_url_without_the_postgres_extra_exits_2_naming_it(tmp_path: Path) -> None:
    proc = _ipexrx("psycopg", "registry", "init", "--admin", "admin.user", "--db",
                   "postgresql+psycopg://someone@127.0.0.1:9/registry", tmp_path=tmp_path,
                   env={"IPEXRX_ADMIN_PASSWORD": "a long admin password 1"})
    _assert_names_extra(proc, "postgres", "psycopg")
    assert "A PostgreSQL database" in proc.stderr


def test_serve_on_a_postgresql_database_without_the_postgres_extra_exits_2_naming_it(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _ipexrx("psycopg", "serve", "--port", str(port), tmp_path=tmp_path,
                   env={"IPEXRX_DATABASE_URL": "postgresql://someone@127.0.0.1:9/ipexrx"})
    _assert_names_extra(proc, "postgres", "psycopg")


def test_registry_report_without_the_analytics_extra_exits_2_naming_it(tmp_path: Path) -> None:
    proc = _ipexrx("lifelines", "registry", "report", "--db", f"sqlite:///{tmp_path / 'registry.sqlite3'}",
                   "--out", str(tmp_path / "report"), tmp_path=tmp_path)
    _assert_names_extra(proc, "analytics", "lifelines")
    assert proc.stderr.startswith("error: Registry analytics")
    assert not (tmp_path / "report" / "report.html").exists()


def test_the_demo_with_a_report_but_without_the_analytics_extra_stops_before_loading_anything(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite3"
    proc = _ipexrx("lifelines", "registry", "demo", "--patients", "5", "--centres", "1", "--db", f"sqlite:///{db}",
                   "--report-dir", str(tmp_path / "report"), tmp_path=tmp_path)
    _assert_names_extra(proc, "analytics", "lifelines")
    assert proc.stderr.startswith("error: The demo's report (--report-dir) needs")
    assert "loaded" not in proc.stdout and not db.exists()


def test_a_png_plot_without_the_plots_extra_exits_2_naming_it_and_writes_nothing(tmp_path: Path) -> None:
    png = tmp_path / "regimen.png"
    proc = _ipexrx("matplotlib", "dose", "recommend", "--drug", "sirolimus", "--level", "17.5", "--level-unit",
                   "ng/mL", "--dose", "1.5", "--interval", "24", "--cov", "WT=21.5", "--plot", str(png),
                   tmp_path=tmp_path)
    _assert_names_extra(proc, "plots", "matplotlib")
    assert not png.exists()


def test_the_same_dose_recommendation_without_a_png_needs_no_extra(tmp_path: Path) -> None:
    html = tmp_path / "regimen.html"
    proc = _ipexrx("matplotlib,lifelines,psycopg,pyspark", "dose", "recommend", "--drug", "sirolimus", "--level",
                   "17.5", "--level-unit", "ng/mL", "--dose", "1.5", "--interval", "24", "--cov", "WT=21.5",
                   "--html", str(html), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "<svg" in html.read_text(encoding="utf-8")


def test_the_spark_engine_without_the_spark_extra_exits_2_naming_it(tmp_path: Path) -> None:
    proc = _ipexrx("pyspark", "screen", str(POPULATION), "--engine", "spark", "--as-of", "2026-12-06",
                   tmp_path=tmp_path)
    _assert_names_extra(proc, "spark", "pyspark")
    assert proc.stderr.strip().startswith("error: --engine spark needs")  # after the progress line's end


# -- a missing extra in the web app ---------------------------------------------------------------------

ANALYST_PASSWORD = "a long analyst password 1"


@pytest.fixture
def analytics_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """The service (registry on) with an analyst, and lifelines unimportable."""
    from ipexrx.registry import SYSTEM
    from ipexrx.service.app import create_app
    from ipexrx.service.settings import Settings

    app = create_app(Settings(dev_mode=True, database_url=f"sqlite:///{tmp_path / 'ipexrx.sqlite3'}"))
    app.state.registry.create_user(SYSTEM, {"username": "analyst.user", "password": ANALYST_PASSWORD,
                                            "role": "analyst"})
    monkeypatch.setitem(sys.modules, "lifelines", None)
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


def test_the_registry_report_api_answers_503_naming_the_analytics_extra(analytics_missing: TestClient) -> None:
    tok = analytics_missing.post("/api/v1/registry/auth/token",
                                 json={"username": "analyst.user", "password": ANALYST_PASSWORD})
    assert tok.status_code == 200, tok.text
    r = analytics_missing.get("/api/v1/registry/report", headers={"Authorization": f"Bearer {tok.json()['token']}"})
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["error"] == "not_installed"
    assert body["message"].startswith("Registry analytics (Kaplan-Meier estimates) needs the optional part "
                                      "'analytics' of ipexrx")
    assert body["message"].endswith("[analytics]'")


def test_the_registry_analytics_page_says_which_extra_to_install(analytics_missing: TestClient) -> None:
    login = analytics_missing.post("/registry/login", data={"username": "analyst.user",
                                                            "password": ANALYST_PASSWORD})
    assert login.status_code == 303, login.text
    r = analytics_missing.get("/registry/analytics")
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("text/html")
    assert "<h1>This part of ipexrx is not installed</h1>" in r.text
    assert "optional part &#39;analytics&#39; of ipexrx" in r.text and "[analytics]" in r.text
    assert "Traceback" not in r.text and 'role="alert"' in r.text
