"""Statements are written in our own words: none may copy a run of words from the source page.

A shared run of eight or more words is taken as copying; shorter overlaps are names and terms
("granulocyte colony-stimulating factor (G-CSF)") that a paraphrase must keep.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ipexrx.knowledge import load_kb
from ipexrx.knowledge.schema import Statement
from ipexrx.knowledge.validate import _walk

RUN = 8
SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "ipex-medication-reference.txt"


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9\u03b1-\u03c9]+", text.lower())


def _copied_runs(seed_text: str) -> list[str]:
    seed = _words(seed_text)
    grams = {tuple(seed[i:i + RUN]) for i in range(len(seed) - RUN + 1)}
    found = []
    for kind, rid, rec in load_kb().records():
        for path, value in _walk(rec, ""):
            if isinstance(value, Statement):
                w = _words(value.text)
                for i in range(len(w) - RUN + 1):
                    if tuple(w[i:i + RUN]) in grams:
                        found.append(f"{kind}:{rid} {path}: '{' '.join(w[i:i + RUN])}'")
                        break
    return found


@pytest.mark.skipif(not SEED.exists(), reason=f"source page not found at {SEED}")
def test_no_statement_copies_eight_words_from_the_source_page() -> None:
    assert _copied_runs(SEED.read_text(encoding="utf-8")) == []


def test_copy_detector_catches_a_pasted_sentence() -> None:
    kb = load_kb()
    some = kb.drugs["cyclosporine"].pharmacology[0].text
    assert _copied_runs(some), "a statement's own text must be detected as a copy of itself"
