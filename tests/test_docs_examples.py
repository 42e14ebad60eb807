"""The copy-paste examples of README.md and docs/*.md run as written.

Convention: a fenced ```sh block directly after a line ``<!-- run -->`` is runnable. Each of its lines is one
command (``#`` starts a comment); the block's commands run in order in one fresh directory that holds a link to
``examples/``, with the database in that directory, proxies pointing nowhere (no network) and a timeout per
command. Long-running commands (``ipexrx serve``) are never marked: the test refuses a runnable block that
starts a server. ``ipexrx ...`` commands run in-process through typer's CliRunner (the same code path as the
console script, without paying the interpreter start-up for each); anything else runs in a shell.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = "<!-- run -->"
TIMEOUT_S = 60
LONG_RUNNING = re.compile(r"\bipexrx\s+serve\b|\buvicorn\b")
SHELL_SYNTAX = re.compile(r"[|<>;&`$]")


def runnable_blocks(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number of the fence, commands) of every block marked runnable in ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.strip() != MARK:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        found = lines[j] if j < len(lines) else "end of file"
        assert found.strip() == "```sh", \
            f"{path.name}:{i + 1}: {MARK} must be followed by a ```sh block, found {found!r}"
        cmds: list[str] = []
        k = j + 1
        pending = ""  # a command continued on the next line with a trailing backslash
        while k < len(lines) and lines[k].strip() != "```":
            text = lines[k].strip()
            if pending or (text and not text.startswith("#")):
                if text.endswith("\\"):
                    pending += text[:-1] + " "
                else:
                    cmds.append(pending + text)
                    pending = ""
            k += 1
        assert not pending, f"{path.name}:{k}: a command ends with a line continuation"
        assert k < len(lines), f"{path.name}:{j + 1}: unterminated code block"
        yield j + 1, cmds


def _cases() -> Iterator[Any]:
    for path in DOCS:
        for line, cmds in runnable_blocks(path):
            yield pytest.param(path, cmds, id=f"{path.relative_to(ROOT)}:{line}")


CASES = list(_cases())


def test_the_readme_tour_and_each_guide_have_runnable_examples() -> None:
    marked = {p.values[0].name for p in CASES}
    assert {"README.md", "dosing.md", "registry.md", "assess.md"} <= marked, sorted(marked)


def test_the_readme_links_every_user_guide() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for guide in ("assess.md", "dosing.md", "registry.md", "screen.md", "serve.md", "ehr-integration.md"):
        assert f"docs/{guide}" in readme, f"README.md does not link docs/{guide}"


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise TimeoutError(f"command took longer than {TIMEOUT_S} s")


@pytest.mark.parametrize("path,cmds", CASES)
def test_documented_commands_run_and_exit_zero(path: Path, cmds: list[str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from ipexrx.cli import get_app

    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "tests").symlink_to(ROOT / "tests")  # shipped data sets (e.g. the screening population)
    env = {"IPEXRX_DATABASE_URL": f"sqlite:///{tmp_path / 'ipexrx.sqlite3'}", "HOME": str(tmp_path),
           "XDG_DATA_HOME": str(tmp_path / "data"), "http_proxy": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "", "COLUMNS": "120"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    for cmd in cmds:
        assert not LONG_RUNNING.search(cmd), f"{cmd!r}: a long-running command must not be marked {MARK}"
        words = shlex.split(cmd, comments=True)
        if not words:
            continue
        if words[0] == "ipexrx" and not SHELL_SYNTAX.search(" ".join(words)):
            old = signal.signal(signal.SIGALRM, _alarm)
            signal.alarm(TIMEOUT_S)
            try:
                res = CliRunner().invoke(get_app(), words[1:])
            finally:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, old)
            assert res.exit_code == 0 and (res.exception is None or isinstance(res.exception, SystemExit)), \
                f"{cmd!r} -> exit {res.exit_code}: {res.exception!r}\n{res.output[-2000:]}"
        else:
            bindir = str(Path(sys.executable).parent)
            proc = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True,
                                  timeout=TIMEOUT_S, env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"})
            assert proc.returncode == 0, \
                f"{cmd!r} -> exit {proc.returncode}\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}"
