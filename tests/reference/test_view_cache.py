"""The compiled view cache serves exactly what the views compute, and is never stale."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipexrx import reference
from ipexrx.knowledge import get_kb, loader
from ipexrx.knowledge.loader import DEFAULT_DATA_DIR
from ipexrx.reference import NotFoundError, _viewcache, views


def test_cached_views_equal_the_directly_computed_ones() -> None:
    kb = get_kb()
    assert reference.summary() == views.summary(kb)
    assert reference.list_sources() == views.list_sources(kb)
    for did in kb.drugs:
        assert reference.drug_monograph(did) == views.drug_monograph(did, kb)
    for mid in kb.manifestations:
        assert reference.manifestation_view(mid) == views.manifestation_view(mid, kb)
    for cid in kb.classes:
        assert reference.class_view(cid) == views.class_view(cid, kb)


@pytest.mark.parametrize(("kind", "query"), [("drug", "sirolimis"), ("drug", "diarrhea"), ("class", "anti"),
                                             ("manifestation", "diarhea")])
def test_cached_and_direct_lookups_fail_the_same_way(kind: str, query: str) -> None:
    kb = get_kb()
    direct = {"drug": views.drug_monograph, "class": views.class_view, "manifestation": views.manifestation_view}
    with pytest.raises(reference.ReferenceQueryError) as cached_err:
        _viewcache.cached_view(kind, query)
    with pytest.raises(reference.ReferenceQueryError) as direct_err:
        direct[kind](query, kb)
    assert type(cached_err.value) is type(direct_err.value)
    assert str(cached_err.value) == str(direct_err.value)


def test_cache_directory_is_the_knowledge_base_cache_directory(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    monkeypatch.delenv("IPEXRX_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _viewcache.cache_dir() == loader.cache_dir() == tmp_path / "ipexrx"
    monkeypatch.setenv("IPEXRX_CACHE_DIR", str(tmp_path / "x"))
    assert _viewcache.cache_dir() == loader.cache_dir()


@pytest.fixture()
def kb_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    dest = tmp_path / "data"
    shutil.copytree(DEFAULT_DATA_DIR, dest)
    monkeypatch.setenv("IPEXRX_KB_DIR", str(dest))
    monkeypatch.setenv("IPEXRX_CACHE_DIR", str(tmp_path / "cache"))
    _viewcache.clear()
    loader.clear_cache()
    yield dest
    _viewcache.clear()
    loader.clear_cache()


def test_an_edit_is_seen_by_the_next_lookup(kb_copy: Path) -> None:
    assert "zz-view-synonym" not in reference.drug_monograph("sirolimus").synonyms
    assert list((kb_copy.parent / "cache").glob("views-*.pickle"))
    path = kb_copy / "drugs" / "sirolimus.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("synonyms: [rapamycin", "synonyms: [zz-view-synonym, rapamycin", 1), encoding="utf-8")
    _viewcache.clear()
    loader.clear_cache()
    assert "zz-view-synonym" in reference.drug_monograph("sirolimus").synonyms
    assert reference.drug_monograph("zz-view-synonym").id == "sirolimus"  # the name tables follow too


def test_a_fresh_cache_is_used_without_loading_the_knowledge_base(kb_copy: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    reference.drug_monograph("sirolimus")
    _viewcache.clear()

    def no_build(_base: str) -> None:
        raise AssertionError("views rebuilt although the content is unchanged")

    monkeypatch.setattr(_viewcache, "build", no_build)
    assert reference.drug_monograph("Rapamune").id == "sirolimus"


def test_no_cache_switch_computes_views_directly(kb_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPEXRX_NO_CACHE", "1")
    assert _viewcache.cached_view("drug", "sirolimus") is None
    assert reference.drug_monograph("sirolimus").id == "sirolimus"
    assert not list((kb_copy.parent / "cache").glob("views-*.pickle"))
    with pytest.raises(NotFoundError):
        reference.drug_monograph("sirolimis")
