"""Property tests: no input makes ``assess`` raise anything but our documented input errors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipexrx.assess import Assessment, assess
from ipexrx.patient import PatientInputError

AS_OF = dt.date(2026, 11, 25)
EXAMPLES = Path(__file__).parents[2] / "examples"
SEEDS = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12),
                    st.sampled_from(["mg", "mcg", "ng/mL", "umol/L", "mg/dL", "2026-11-01", "2099-01-01", "HP:0002028",
                                     "sirolimus", "Prograf", "positive", "MMR", "active", "planned", "ipex", "Bundle",
                                     "-1 mg", "1e400", "mL"]))
json_values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4),
                                                        st.dictionaries(st.text(max_size=10), c, max_size=4)),
                           max_leaves=20)


def _check(doc: Any) -> None:
    try:
        result = assess(doc, as_of=AS_OF)
    except PatientInputError as exc:
        assert exc.issues and all(i.path.startswith("$") for i in exc.issues)
        return
    assert isinstance(result, Assessment)
    result.model_dump_json()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_values(doc: Any) -> None:
    _check(doc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60))
def test_arbitrary_text(text: str) -> None:
    _check(text)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_examples(draw: st.DrawFn) -> Any:
    """A real example (JSON or FHIR) with one node replaced by an arbitrary value or deleted."""
    doc = json.loads(json.dumps(draw(st.sampled_from(SEEDS))))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(json_values)
    return doc


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_examples())
def test_mutated_real_records(doc: Any) -> None:
    _check(doc)
