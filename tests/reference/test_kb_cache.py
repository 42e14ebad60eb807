"""The compiled knowledge-base cache: fast, and never stale.

``get_kb`` serves a pickled, validated knowledge base from the cache directory when every content
file is unchanged; any edit must be seen by the next process (and by the next ``get_kb`` after
``clear_cache`` in this one). ``load_kb`` (used by ``kb validate``) never reads the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ipexrx.knowledge import KnowledgeBaseError, get_kb, loader
from ipexrx.knowledge.loader import DEFAULT_DATA_DIR, cache_dir, clear_cache, content_fingerprint


@pytest.fixture()
def kb_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    dest = tmp_path / "data"
    shutil.copytree(DEFAULT_DATA_DIR, dest)
    monkeypatch.setenv("IPEXRX_CACHE_DIR", str(tmp_path / "cache"))
    clear_cache()
    yield dest
    clear_cache()


def _add_synonym(data_dir: Path, synonym: str) -> None:
    path = data_dir / "drugs" / "sirolimus.yaml"
    text = path.read_text(encoding="utf-8")
    assert "synonyms: [rapamycin" in text
    path.write_text(text.replace("synonyms: [rapamycin", f"synonyms: [{synonym}, rapamycin", 1), encoding="utf-8")


def test_second_load_is_served_from_the_compiled_cache(kb_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_kb(kb_copy)
    files = list(cache_dir().glob("kb-*.pickle"))
    assert len(files) == 1
    clear_cache()

    def no_yaml(*_a: object, **_k: object) -> None:
        raise AssertionError("YAML was parsed although the cache is fresh")

    monkeypatch.setattr(loader, "load_kb", no_yaml)
    second = get_kb(kb_copy)
    assert second is not first and second.drugs.keys() == first.drugs.keys()


def test_an_edited_file_is_never_served_stale(kb_copy: Path) -> None:
    assert "zz-test-synonym" not in get_kb(kb_copy).drugs["sirolimus"].synonyms
    before = content_fingerprint(kb_copy)
    _add_synonym(kb_copy, "zz-test-synonym")
    assert content_fingerprint(kb_copy) != before
    clear_cache()
    assert "zz-test-synonym" in get_kb(kb_copy).drugs["sirolimus"].synonyms


def test_a_new_file_changes_the_fingerprint(kb_copy: Path) -> None:
    before = content_fingerprint(kb_copy)
    shutil.copy(kb_copy / "drugs" / "sirolimus.yaml", kb_copy / "drugs" / "zz-extra.yaml")
    assert content_fingerprint(kb_copy) != before


def test_a_corrupt_cache_file_is_rebuilt(kb_copy: Path) -> None:
    get_kb(kb_copy)
    (path,) = cache_dir().glob("kb-*.pickle")
    path.write_bytes(path.read_bytes()[:200])
    clear_cache()
    assert "sirolimus" in get_kb(kb_copy).drugs
    assert path.stat().st_size > 200


def test_an_invalid_edit_raises_instead_of_serving_the_old_cache(kb_copy: Path) -> None:
    get_kb(kb_copy)
    path = kb_copy / "drugs" / "sirolimus.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("name: sirolimus", "name: sirolimus\nbogus: 1", 1),
                    encoding="utf-8")
    clear_cache()
    with pytest.raises(KnowledgeBaseError):
        get_kb(kb_copy)


def test_unwritable_cache_directory_still_loads(kb_copy: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("IPEXRX_CACHE_DIR", str(blocker / "sub"))
    assert "sirolimus" in get_kb(kb_copy).drugs


def test_separate_processes_see_an_edit_immediately(kb_copy: Path, tmp_path: Path) -> None:
    env = {**os.environ, "IPEXRX_KB_DIR": str(kb_copy), "IPEXRX_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "ipexrx", "drug", "sirolimus", "--json"]
    out1 = json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
    assert "zz-proc-synonym" not in out1["synonyms"]
    _add_synonym(kb_copy, "zz-proc-synonym")
    out2 = json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
    assert "zz-proc-synonym" in out2["synonyms"]


def test_kb_validate_reads_the_yaml_not_the_cache(kb_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from ipexrx.cli import get_app

    def no_cache(*_a: object, **_k: object) -> None:
        raise AssertionError("kb validate must not read the compiled cache")

    monkeypatch.setattr(loader.cachefile, "read", no_cache)
    result = CliRunner().invoke(get_app(), ["kb", "validate", "--data-dir", str(kb_copy)])
    assert result.exit_code == 0, result.output
    assert "knowledge base OK" in result.stdout


def test_a_relative_kb_dir_follows_the_working_directory(kb_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """get_kb remembers how an absolute directory resolves (it is asked on every CDS call); a relative
    one must be resolved afresh, or a change of working directory would serve the wrong content."""
    other = kb_copy.parent / "elsewhere" / "data"
    shutil.copytree(kb_copy, other)
    _add_synonym(other, "zz-elsewhere")
    monkeypatch.chdir(kb_copy.parent)
    assert "zz-elsewhere" not in get_kb("data").drugs["sirolimus"].synonyms
    monkeypatch.chdir(other.parent)
    assert "zz-elsewhere" in get_kb("data").drugs["sirolimus"].synonyms
    assert get_kb(kb_copy) is get_kb(str(kb_copy))  # absolute: the same object every time
