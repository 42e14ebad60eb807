"""The copy-paste examples of README.md and docs/*.md run as written.

Convention: a fenced ```sh block directly after a line ``<!-- run -->`` is runnable. Each of its lines is one
command (``#`` starts a comment); the block's commands run in order in one fresh directory that holds a link to
``examples/``, with the database in that directory, proxies pointing nowhere (no network) and a timeout per
command. Long-running commands (``ipexrx serve``) are never marked: the test refuses a runnable block that
starts a server. ``ipexrx ...`` commands run in-process through typer's CliRunner (the same code path as the
console script, without paying the interpreter start-up for each); anything else runs in a shell.

Each command must also say something true, not only exit 0: its output (or the file it writes with ``--out``,
``-o`` or a ``>`` redirect) is checked by the first entry of :data:`CHECKS` whose pattern matches the command;
a command no entry knows must at least print something or write a non-empty file.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
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


GUIDES = ("assess.md", "dosing.md", "registry.md", "screen.md", "serve.md", "ehr-integration.md")


def test_the_readme_tour_and_each_guide_have_runnable_examples() -> None:
    marked = {p.values[0].name for p in CASES}
    assert {"README.md", *GUIDES} <= marked, f"without a {MARK} block: {sorted({'README.md', *GUIDES} - marked)}"


def test_the_readme_links_every_user_guide() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for guide in GUIDES:
        assert f"docs/{guide}" in readme, f"README.md does not link docs/{guide}"


# ------------------------------------------------------------------------------------------------
# what each documented command must show (beyond exit 0)
# ------------------------------------------------------------------------------------------------
Check = Callable[[str, str, "Path | None"], None]  # (standard output, all the user sees, the file written)


def _norm(text: str) -> str:
    return " ".join(text.split())


def _has(*parts: str) -> Check:
    def check(out: str, shown: str, written: Path | None) -> None:
        text = _norm(written.read_text(encoding="utf-8") if written is not None and written.is_file() else shown)
        missing = [p for p in parts if p not in text]
        assert not missing, f"expected {missing} in the output, got: {text[:600]!r}"
    return check


def _files(*names: str) -> Check:
    def check(out: str, shown: str, written: Path | None) -> None:
        assert written is not None and written.is_dir(), f"expected a directory to be written, got {written}"
        empty = [n for n in names if not (written / n).is_file() or (written / n).stat().st_size == 0]
        assert not empty, f"{written}: missing or empty {empty}"
    return check


def _json(check: Callable[[Any], bool], what: str) -> Check:
    def run(out: str, shown: str, written: Path | None) -> None:
        text = written.read_text(encoding="utf-8") if written is not None and written.is_file() else out
        assert check(json.loads(text)), f"expected {what}, got {text[:400]!r}"
    return run


def _all(*checks: Check) -> Check:
    def run(out: str, shown: str, written: Path | None) -> None:
        for check in checks:
            check(out, shown, written)
    return run


def _cited(out: str, shown: str, written: Path | None) -> None:
    """Numbered citations: every [n] in the text has an entry in the Sources list that ends the output."""
    from ipexrx.reference.citations import numbers_in

    body, _, sources = out.partition("Sources\n")
    listed = {int(m) for m in re.findall(r"^\s*\[(\d+)\]", sources, flags=re.M)}
    cited = set(numbers_in(body))
    assert cited and cited <= listed, f"cited {sorted(cited)}, listed {sorted(listed)}"


def _batch(out: str, shown: str, written: Path | None) -> None:
    assert written is not None
    lines = [json.loads(line) for line in written.read_text(encoding="utf-8").splitlines()]
    assert len(lines) > 1 and all(line["ok"] for line in lines), f"{written}: {len(lines)} lines, not all assessed"


def _ranked(d: Any) -> bool:
    scores = [c["score"] for c in d["candidates"]]
    return bool(scores) and scores == sorted(scores, reverse=True) and "stats" in d and "safety" in d


CHECKS: list[tuple[re.Pattern[str], Check]] = [(re.compile(p), c) for p, c in [
    (r"^ipexrx --version$", _has("ipexrx ")),
    (r"^ipexrx kb validate", _has("knowledge base OK")),
    (r"^ipexrx assess .*--json", _json(lambda d: bool(d["alerts"]) and d["as_of"] == "2026-11-25", "an assessment")),
    (r"^ipexrx assess .*--html", _has("<html", "Sources")),
    (r"^ipexrx assess .*--fhir", _json(lambda d: d["resourceType"] == "Bundle" and d["entry"], "a FHIR Bundle")),
    (r"^ipexrx assess --batch", _batch),
    (r"^ipexrx assess .*--save", _has("saved as assessment #1")),
    (r"^(cat .*\| )?ipexrx assess ", _all(_has("as of 2026-11-25"), _cited)),
    (r"^ipexrx assessments list", _has("saved assessments")),
    (r"^ipexrx assessments show 1", _has("saved assessment #1", "as of 2026-11-25")),
    (r"^ipexrx dose models --reference", _has("fictional")),
    (r"^ipexrx dose models", _has("tacrolimus", "sirolimus", "cyclosporine")),
    (r"^ipexrx dose recommend", _all(_has("Suggestion (not an order)"), _cited)),
    (r"^ipexrx dose report .*--out", _has("Therapeutic drug monitoring report", "Sources")),
    (r"^ipexrx registry demo", _has("SYNTHETIC DATA", "synthetic patients")),
    (r"^ipexrx registry report", _files("report.html")),
    (r"^ipexrx registry audit verify", _has("audit chain OK")),
    (r"^ipexrx registry export", _files("patient.csv", "course.csv", "data-dictionary.csv")),
    (r"^ipexrx registry data-dictionary", _has("Variable / Field Name")),
    (r"^ipexrx screen synth", _files("Patient.ndjson", "Condition.ndjson", "synth-truth.csv")),
    (r"^ipexrx screen .*--json", _json(_ranked, "candidates best first, the safety list and statistics")),
    (r"^ipexrx screen .*--out", _files("candidates.csv", "known.csv", "safety.csv", "report.html")),
    (r"^ipexrx screen ", _has("Population screen as of", "candidate(s)")),
    (r"^ipexrx cds services --json", _json(lambda d: len(d["services"]) == 3, "the discovery document")),
    (r"^ipexrx cds services", _has("ipexrx-patient-view", "ipexrx-order-select", "ipexrx-order-sign")),
    (r"^ipexrx cds sample", _json(lambda d: d["hook"] and d["prefetch"]["patient"], "a CDS Hooks request")),
    (r"^ipexrx cds cards .*--json", _json(lambda d: bool(d["cards"]) and all(c["summary"] for c in d["cards"]),
                                          "a CDS Hooks response with cards")),
    (r"^ipexrx cds cards", _has("card(s)", "source: ")),
    (r"^ipexrx drug \S+ --json", _json(lambda d: d["id"] == "sirolimus", "the sirolimus monograph")),
    (r"^ipexrx summary", _has("IPEX", "FOXP3")),
    (r"^ipexrx manifestation diarrhea", _has("Autoimmune enteropathy")),
    (r"^ipexrx drug Neoral", _has("cyclosporine")),
    (r"^ipexrx class calcineurin", _has("Calcineurin inhibitors", "tacrolimus")),
    (r"^ipexrx search FKBP12", _has("sirolimus", "tacrolimus")),
    (r"^ipexrx sources", _has("Sources registry")),
]]


def _written(cmd: str, words: list[str], cwd: Path) -> Path | None:
    """The file or directory a command writes: after --out, -o or --report-dir, or a ``>`` redirect."""
    redirect = re.search(r">\s*(\S+)", cmd.split("#", 1)[0])
    if redirect:
        return cwd / redirect.group(1)
    for flag in ("--out", "-o", "--output"):
        if flag in words[:-1]:
            return cwd / words[words.index(flag) + 1]
    if words[:3] == ["ipexrx", "screen", "synth"]:
        return cwd / words[3]
    return None


def check_output(cmd: str, words: list[str], out: str, shown: str, cwd: Path) -> None:
    """The first check whose pattern matches ``cmd`` (comments stripped), else: something was printed or written.
    ``out`` is standard output (JSON is read from it), ``shown`` everything the user sees (with standard error)."""
    bare = " ".join(shlex.split(cmd, comments=True))
    written = _written(cmd, words, cwd)
    for pattern, check in CHECKS:
        if pattern.search(bare):
            check(out, shown, written)
            return
    wrote = written is not None and written.exists() and (written.is_dir() or written.stat().st_size > 0)
    assert shown.strip() or wrote, f"{cmd!r} printed nothing and wrote nothing"


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise TimeoutError(f"command took longer than {TIMEOUT_S} s")


@pytest.mark.parametrize("path,cmds", CASES)
def test_documented_commands_run_and_show_what_they_should(path: Path, cmds: list[str], tmp_path: Path,
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
            check_output(cmd, words, res.stdout, res.output, tmp_path)
        else:
            bindir = str(Path(sys.executable).parent)
            proc = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True,
                                  timeout=TIMEOUT_S, env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"})
            assert proc.returncode == 0, \
                f"{cmd!r} -> exit {proc.returncode}\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}"
            check_output(cmd, words, proc.stdout, proc.stdout + proc.stderr, tmp_path)
