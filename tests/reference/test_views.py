"""The reference views: lookups as clinicians type them, every line sourced, stable ordering."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from ipexrx.knowledge import get_kb
from ipexrx.knowledge.schema import EvidenceLevel
from ipexrx.reference import (
    AmbiguousQueryError,
    NotFoundError,
    class_view,
    drug_monograph,
    find_class,
    find_drug,
    find_manifestation,
    list_sources,
    manifestation_view,
    summary,
)
from ipexrx.reference.models import CitationView, StatementView


def _walk(obj: Any) -> Iterator[Any]:
    yield obj
    if isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _walk(getattr(obj, name))
    elif isinstance(obj, list):
        for item in obj:
            yield from _walk(item)


def _assert_every_statement_sourced(view: BaseModel) -> None:
    kb = get_kb()
    n = 0
    for node in _walk(view):
        if isinstance(node, StatementView):
            n += 1
            assert node.sources, f"statement without citation: {node.text!r}"
        if isinstance(node, CitationView):
            src = kb.sources[node.source]
            assert node.title == src.title and node.label.startswith(src.title)
            if node.locator and node.locator in src.sections:
                assert node.section == src.sections[node.locator]
                assert src.sections[node.locator] in node.label
            assert (node.doi, node.pmid) == (src.doi, src.pmid)
    assert n > 0


# ---------------------------------------------------------------------------- lookups
@pytest.mark.parametrize(("query", "drug_id"), [
    ("Neoral", "cyclosporine"), ("neoral", "cyclosporine"), ("NEORAL", "cyclosporine"),
    ("Sandimmune", "cyclosporine"), ("Gengraf", "cyclosporine"), ("CsA", "cyclosporine"),
    ("cyclosporin A", "cyclosporine"), ("rapamycin", "sirolimus"), ("Rapamune", "sirolimus"),
    ("FK506", "tacrolimus"), ("FK-506", "tacrolimus"), ("Prograf", "tacrolimus"), ("sirolimus", "sirolimus"),
    ("Rituxan", "rituximab"), ("Remicade", "infliximab"), ("L04AH01", "sirolimus"),
])
def test_drug_lookup_accepts_generic_brand_and_synonym_in_any_case(query: str, drug_id: str) -> None:
    assert find_drug(query).id == drug_id


def test_drug_lookup_never_resolves_a_prefix() -> None:
    # 'predniso' could be prednisone or prednisolone: for a drug a guess is worse than an error
    with pytest.raises(NotFoundError):
        find_drug("siroli")


def test_unknown_drug_raises_not_found_with_the_closest_names() -> None:
    with pytest.raises(NotFoundError) as err:
        find_drug("sirolimis")
    assert err.value.kind == "drug" and err.value.query == "sirolimis"
    assert err.value.suggestions[0] == "sirolimus"
    assert "sirolimus" in str(err.value)


@pytest.mark.parametrize(("query", "man_id"), [
    ("enteropathy", "enteropathy"), ("diarrhea", "enteropathy"), ("Diarrhoea", "enteropathy"),
    ("HP:0002028", "enteropathy"), ("hp:0002028", "enteropathy"), ("HP:0100651", "type-1-diabetes"),
    ("type-1-diabetes", "type-1-diabetes"),
])
def test_manifestation_lookup_by_id_name_synonym_or_hpo(query: str, man_id: str) -> None:
    assert find_manifestation(query).id == man_id


@pytest.mark.parametrize(("query", "class_id"), [
    ("calcineurin", "calcineurin-inhibitors"), ("immunosuppressants", "immunosuppressants"),
    ("Calcineurin inhibitors", "calcineurin-inhibitors"), ("mTOR inhibitor", "mtor-inhibitors"),
])
def test_class_lookup_by_name_synonym_or_unique_prefix(query: str, class_id: str) -> None:
    assert find_class(query).id == class_id


def test_ambiguous_class_prefix_lists_the_candidates() -> None:
    with pytest.raises(AmbiguousQueryError) as err:
        find_class("anti")
    assert {"anti-cd20-antibodies", "anti-tnf-agents"} <= set(err.value.candidates)


# ---------------------------------------------------------------------------- views
def test_summary_has_cure_principles_every_manifestation_and_identifiers() -> None:
    kb = get_kb()
    v = summary()
    assert v.cure.id == "hsct-only-cure" and "HSCT" in v.cure.text
    assert v.principles and v.caveats
    assert [m.id for m in v.manifestations] == list(kb.manifestations)
    assert v.identifiers.omim == "304790" and v.gene.symbol == "FOXP3"
    assert v.content.disclaimer == kb.meta.disclaimer
    for m in v.manifestations:
        ranks = [o.evidence_rank for o in m.options]
        assert ranks == sorted(ranks)
    _assert_every_statement_sourced(v)


def test_manifestation_options_are_ordered_by_evidence_strength() -> None:
    kb = get_kb()
    v = manifestation_view("diarrhea")
    assert v.id == "enteropathy"
    assert {o.id for o in v.options} == {o.id for o in kb.manifestations["enteropathy"].therapy}
    ranks = [o.evidence_rank for o in v.options]
    assert ranks == sorted(ranks)
    assert all(o.evidence_rank == EvidenceLevel(o.evidence_level).rank for o in v.options)
    sirolimus = next(o for o in v.options if any(d.id == "sirolimus" for d in o.drugs))
    assert sirolimus.drugs[0].name == "sirolimus"
    _assert_every_statement_sourced(v)


def test_sirolimus_monograph_gathers_classes_codes_safety_interactions_and_uses() -> None:
    kb = get_kb()
    v = drug_monograph("rapamycin")
    assert v.id == "sirolimus" and "rapamycin" in v.synonyms
    assert [c.id for c in v.classes] == ["mtor-inhibitors"]
    assert "immunosuppressants" in [c.id for c in v.class_ancestors]
    assert v.codes.rxcui == "35302" and "L04AH01" in [a.code for a in v.codes.atc]
    assert v.safety.boxed_warnings and v.safety.vaccines is not None
    assert any(m.parameter == "trough" for m in v.safety.monitoring)
    assert "FKBP12" in v.targets
    # every KB interaction involving sirolimus, seen from sirolimus
    expected = {iid for iid, i in kb.interactions.items() if "sirolimus" in i.drugs}
    assert {i.id for i in v.interactions} == expected and expected
    for i in v.interactions:
        assert i.drug.id == "sirolimus" and i.other.id != "sirolimus" and i.other.name
        assert i.instructions and all(ins.text.sources for ins in i.instructions)
    assert any(u.manifestation is not None and u.manifestation.id == "enteropathy" for u in v.options)
    assert {c.source for c in v.sources} >= {"seed", "label-rapamune"}
    _assert_every_statement_sourced(v)


def test_interactions_are_listed_most_severe_first() -> None:
    order = {"contraindicated": 0, "major": 1, "moderate": 2}
    for drug in ("sirolimus", "tacrolimus", "cyclosporine"):
        sev = [order[i.severity] for i in drug_monograph(drug).interactions]
        assert sev == sorted(sev)


def test_cyclosporine_monograph_lists_the_three_brands_from_the_source_page() -> None:
    v = drug_monograph("Neoral")
    assert v.name == "cyclosporine"
    assert {"Gengraf", "Neoral", "Sandimmune"} <= {b.name for b in v.brands}
    assert v.calcineurin_inhibitor and v.immunosuppressive
    assert all(b.sources for b in v.brands)


def test_class_view_resolves_parent_subclasses_and_members_through_subclasses() -> None:
    cni = class_view("calcineurin")
    assert cni.id == "calcineurin-inhibitors"
    assert cni.parent is not None and cni.parent.id == "immunosuppressants"
    assert {"cyclosporine", "tacrolimus"} <= {m.id for m in cni.members}
    top = class_view("immunosuppressants")
    assert "calcineurin-inhibitors" in {s.id for s in top.subclasses}
    siro = next(m for m in top.members if m.id == "sirolimus")
    assert siro.via.id == "mtor-inhibitors"
    assert [m.name.casefold() for m in top.members] == sorted(m.name.casefold() for m in top.members)


def test_sources_view_lists_every_source_with_citation_counts() -> None:
    kb = get_kb()
    v = list_sources()
    assert {s.id for s in v.sources} == set(kb.sources)
    seed = next(s for s in v.sources if s.id == "seed")
    assert seed.cited > 0 and any(x.locator == "medication-summary" for x in seed.sections)
    assert v.sources[0].kind == "seed"
    papers = [s for s in v.sources if s.kind == "paper"]
    assert papers and all(s.doi or s.pmid for s in papers)


@pytest.mark.parametrize("build", [
    lambda: summary(), lambda: manifestation_view("enteropathy"), lambda: drug_monograph("sirolimus"),
    lambda: class_view("immunosuppressants"), lambda: list_sources(),
])
def test_views_round_trip_through_their_json(build: Any) -> None:
    v = build()
    again = type(v).model_validate_json(v.model_dump_json())
    assert again == v
    assert again.model_dump_json() == v.model_dump_json()  # deterministic


def test_view_literal_types_match_the_knowledge_base_enums() -> None:
    # models.py repeats the enum values as Literal types so that it need not import the schema
    from typing import get_args

    from ipexrx.knowledge import schema
    from ipexrx.reference import models

    assert list(get_args(models.EvidenceLevel)) == [e.value for e in schema.EvidenceLevel]
    assert set(get_args(models.SourceKind)) == {e.value for e in schema.SourceKind}
    assert list(get_args(models.InteractionSeverity)) == [e.value for e in schema.InteractionSeverity]


def test_lazy_reexports_from_the_package() -> None:
    import ipexrx

    assert ipexrx.drug_monograph("FK506").id == "tacrolimus"
    assert ipexrx.NotFoundError is NotFoundError
    with pytest.raises(AttributeError):
        _ = ipexrx.no_such_thing  # type: ignore[attr-defined]


def test_a_name_of_another_kind_points_to_the_right_command() -> None:
    with pytest.raises(NotFoundError) as err:
        find_drug("diarrhea")
    assert err.value.elsewhere == ["manifestation enteropathy"]
    assert "ipexrx manifestation enteropathy" in str(err.value)
    with pytest.raises(NotFoundError) as err2:
        find_class("sirolimus")
    assert err2.value.elsewhere == ["drug sirolimus"]


def test_every_record_builds_a_view_that_its_model_accepts() -> None:
    # views are built without validation (model_construct); re-validating each one proves the
    # construction matches the published models for all content, not just the examples above
    kb = get_kb()
    views: list[BaseModel] = [summary(), list_sources()]
    views += [drug_monograph(d) for d in kb.drugs]
    views += [manifestation_view(m) for m in kb.manifestations]
    views += [class_view(c) for c in kb.classes]
    for v in views:
        assert type(v).model_validate_json(v.model_dump_json()) == v
    for d in kb.drugs:
        _assert_every_statement_sourced(drug_monograph(d))
