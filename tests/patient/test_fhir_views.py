"""The fast FHIR views (msgspec Structs derived from the pydantic models of ``patient.fhir_types``)
accept exactly what the models accept, with the same values, and a refused resource is worded by the
model as before."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, StringConstraints, ValidationError

from ipexrx.patient.fhir_types import MODELS, VIEWS, InvalidResource, _struct, parse

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
JSON = st.recursive(JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                    max_leaves=8)
# FHIR date / dateTime / instant shapes, good and bad: a trailing newline, a month 13, a time without a zone
DATES = st.sampled_from(["2024", "2024-02", "2024-02-29", "2024-13-01", "2024-02-29\n", "2024-02-29T10:00:00Z",
                         "2024-02-29T10:00:00", "2024-02-29T10:00:00.123+01:00", "0000", "24-01-01", ""])


def _values(tp: Any, metadata: tuple[Any, ...] = (), depth: int = 0) -> st.SearchStrategy[Any]:
    """Values for an annotation: mostly of the right shape, sometimes any JSON at all."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *meta = typing.get_args(tp)
        return _values(base, (*metadata, *meta), depth)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_values(a, metadata, depth) for a in typing.get_args(tp)))
    if tp is type(None):
        return st.none()
    if origin is list:
        (item,) = typing.get_args(tp)
        return st.one_of(st.lists(_values(item, (), depth + 1), max_size=2), JSON)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return st.one_of(_resource(tp, depth + 1), JSON) if depth < 3 else JSON
    patterned = any(isinstance(m, StringConstraints) and m.pattern for m in metadata)
    own = {str: DATES if patterned else st.text(max_size=8), float: st.one_of(st.integers(), st.floats()),
           int: st.integers(min_value=-(2**70), max_value=2**70), bool: st.booleans()}.get(tp, JSON)
    return st.one_of(own, own, JSON)


def _resource(model: type[BaseModel], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    fields = {name: _values(info.annotation, tuple(info.metadata), depth) for name, info in model.model_fields.items()}
    return st.fixed_dictionaries({}, optional={**fields, "extension": JSON})


def _plain(obj: Any) -> Any:
    """A view or model as plain data, for comparing the two."""
    if isinstance(obj, BaseModel):
        return {k: _plain(getattr(obj, k)) for k in type(obj).model_fields}
    if isinstance(obj, msgspec.Struct):
        return {k: _plain(getattr(obj, k)) for k in obj.__struct_fields__}
    if isinstance(obj, list):
        return [_plain(x) for x in obj]
    return obj


@pytest.mark.parametrize("rtype", sorted(MODELS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_views_accept_what_the_models_accept_with_the_same_values(rtype, data):
    model, view = MODELS[rtype], VIEWS[rtype]
    raw = {**data.draw(_resource(model)), "resourceType": rtype}
    try:
        expected = _plain(model.model_validate(raw))
    except ValidationError:
        expected = None
    try:
        got = _plain(msgspec.convert(raw, view))
    except msgspec.ValidationError:
        got = None
    if got is not None:  # what the fast view reads, the model reads the same way
        assert expected == got
        assert all(type(a) is type(b) or {type(a), type(b)} == {int, float}
                   for a, b in zip(_leaves(expected), _leaves(got), strict=True))
    elif expected is not None:  # the one allowed difference: integers beyond 64 bits (msgspec's int)
        assert _has_huge_int(raw), f"the view refused what the model reads: {raw!r}"
        assert _plain(parse(raw)) == expected  # parse then falls back to the model's reading


def _leaves(x: Any) -> list[Any]:
    if isinstance(x, dict):
        return [leaf for k in sorted(x) for leaf in _leaves(x[k])]
    if isinstance(x, list):
        return [leaf for v in x for leaf in _leaves(v)]
    return [x]


def _has_huge_int(x: Any) -> bool:
    if isinstance(x, dict):
        return any(_has_huge_int(v) for v in x.values())
    if isinstance(x, list):
        return any(_has_huge_int(v) for v in x)
    return isinstance(x, int) and not isinstance(x, bool) and not -(2**63) <= x < 2**64


def test_a_refused_resource_is_worded_by_the_model():
    with pytest.raises(InvalidResource) as err:
        parse({"resourceType": "Observation", "valueQuantity": {"value": "5.1"}}, "$.entry[3].resource")
    assert err.value.issue.path == "$.entry[3].resource.valueQuantity.value"
    assert err.value.issue.expected == "a number"
    with pytest.raises(InvalidResource) as err:
        parse({"resourceType": "Patient", "birthDate": "2020-01-01\n"})
    assert err.value.issue.expected == "a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)"


def test_a_date_with_a_trailing_newline_is_refused_by_both():
    raw = {"resourceType": "Patient", "birthDate": "2020-01-01\n"}
    with pytest.raises(ValidationError):
        MODELS["Patient"].model_validate(raw)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, VIEWS["Patient"])


def test_the_view_answers_like_the_model():
    view = parse({"resourceType": "MedicationRequest", "id": "m1", "status": "active", "unknownElement": [1],
                  "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 2, "unit": "mg"}}]}]})
    assert isinstance(view, VIEWS["MedicationRequest"])
    assert view.get_resource_type() == "MedicationRequest"
    assert view.dosageInstruction[0].doseAndRate[0].doseQuantity.value == 2.0
    assert view.intent is None


def test_a_big_integer_the_view_cannot_hold_is_read_by_the_model():
    raw = {"resourceType": "MedicationRequest", "dosageInstruction": [{"timing": {"repeat": {"frequency": 2**70}}}]}
    got = parse(raw)
    assert got.dosageInstruction[0].timing.repeat.frequency == 2**70


def test_a_model_the_translation_does_not_know_stops_the_import():
    class Odd(BaseModel):
        when: set[str] | None = None

    with pytest.raises(TypeError, match="does not know"):
        _struct(Odd)

    class Defaulted(BaseModel):
        status: str = "active"

    with pytest.raises(TypeError, match="default to None"):
        _struct(Defaulted)
