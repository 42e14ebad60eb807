"""An empty monograph section is always explained: 'none in the label' (with where that was read) or
'not encoded in this release'. Never a silent gap that reads as 'nothing to know'."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from ipexrx.knowledge import get_kb
from ipexrx.knowledge.loader import load_kb
from ipexrx.knowledge.validate import validate_kb
from ipexrx.reference import drug_monograph


def test_empty_sections_are_named_as_not_encoded() -> None:
    view = drug_monograph("prednisone")
    notes = {n.section: n for n in view.safety.section_notes}
    filled = {"contraindications": view.safety.contraindications, "warnings": view.safety.warnings,
              "pregnancy": view.safety.pregnancy, "lactation": view.safety.lactation,
              "boxed_warnings": view.safety.boxed_warnings}
    for section, items in filled.items():
        assert bool(items) != (section in notes), section
    for n in notes.values():
        assert n.status in ("not-encoded", "none-in-label")
        if n.status == "not-encoded":
            assert "not encoded" in n.text and not n.sources


def test_a_section_the_label_has_none_of_is_said_with_its_source(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    shutil.copytree(get_kb().data_dir, dest)
    path = dest / "drugs" / "azithromycin.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["safety"]["boxed_warnings"] = []
    data["safety"]["none_in_label"] = [{"section": "boxed_warnings", "sources": ["label-zithromax"]}]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    kb = load_kb(dest)
    assert validate_kb(kb) == []
    notes = {n.section: n for n in drug_monograph("azithromycin", kb).safety.section_notes}
    assert notes["boxed_warnings"].status == "none-in-label"
    assert "has no boxed warning" in notes["boxed_warnings"].text
    assert [c.source for c in notes["boxed_warnings"].sources] == ["label-zithromax"]


def test_none_in_label_needs_a_known_source(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    shutil.copytree(get_kb().data_dir, dest)
    path = dest / "drugs" / "azithromycin.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["safety"]["none_in_label"] = [{"section": "pregnancy", "sources": ["label-nowhere"]}]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    problems = validate_kb(load_kb(dest))
    assert any("label-nowhere" in str(p) for p in problems)
