"""Small pieces the rules rely on: frequency parsing, live-vaccine recognition, rule documentation."""

from __future__ import annotations

import inspect

import pytest
from typer.testing import CliRunner

from ipexrx.assess import RULES
from ipexrx.assess.context import doses_per_day
from ipexrx.assess.rules.interactions import severity_of
from ipexrx.cli import get_app
from ipexrx.knowledge import get_kb
from ipexrx.patient.vaccines import is_live


@pytest.mark.parametrize(("text", "n"), [("once daily", 1), ("BID", 2), ("q12h", 2), ("TID", 3), ("q6h", 4),
                                         ("every other day", 0.5), ("2 per day", 2), ("1 per 12 hours", 2),
                                         ("weekly", 1 / 7), ("when needed", None), (None, None)])
def test_doses_per_day(text: str | None, n: float | None) -> None:
    assert doses_per_day(text) == (pytest.approx(n) if n is not None else None)


@pytest.mark.parametrize(("name", "cvx", "live"), [("MMR", None, True), ("rotavirus (RotaTeq)", None, True),
                                                   ("x", "21", True), ("BCG", None, True), ("DTaP", None, False),
                                                   ("inactivated influenza", None, False),
                                                   ("recombinant zoster (Shingrix)", None, False),
                                                   ("local vaccine", None, None)])
def test_live_vaccine_recognition(name: str, cvx: str | None, live: bool | None) -> None:
    assert is_live(name, cvx) is live


def test_every_rule_documents_why() -> None:
    for name, fn in RULES.items():
        assert fn.__doc__ and len(fn.__doc__) > 30, name
        module_doc = inspect.getmodule(fn).__doc__  # type: ignore[union-attr]
        assert module_doc and "Why" in module_doc, name


def test_contraindicated_kb_interactions_map_to_critical() -> None:
    kb = get_kb()
    for inter in kb.interactions.values():
        kinds = {i.kind for i in inter.instructions}
        if inter.severity.value == "contraindicated" or "do-not-combine" in kinds:
            assert severity_of(inter).value == "critical", inter.id


def test_schema_command_knows_patient_and_assessment() -> None:
    runner = CliRunner()
    for name in ("patient", "assessment"):
        r = runner.invoke(get_app(), ["schema", name])
        assert r.exit_code == 0 and '"properties"' in r.stdout


def _uncached_refs(statements: tuple[object, ...]) -> list[object]:
    out: dict[str, object] = {}
    for st in statements:
        if st is None:
            continue
        for c in st.sources:  # type: ignore[attr-defined]
            src = get_kb().sources.get(c.source)
            out.setdefault(str(c), (str(c), c.source, c.locator, src.title if src else None))
    return list(out.values())


def test_remembered_sources_are_the_sources_of_the_statements_and_a_fresh_list_each_time() -> None:
    from ipexrx.assess.context import assess_index

    kb = get_kb()
    index = assess_index(kb)
    groups = [(kb.disease.cure, *kb.disease.hsct_evidence), (None, kb.disease.cure),
              tuple(m.caveats[0] if m.caveats else None for m in kb.manifestations.values())]
    for statements in groups:
        first = index.refs(statements)
        second = index.refs(statements)
        assert [(r.citation, r.source, r.locator, r.title) for r in first] == _uncached_refs(statements)
        assert second == first and second is not first  # a caller may extend its own list
        first.append(first[0])
        assert index.refs(statements) == second  # ... without changing what the next caller gets
    citation = kb.disease.cure.sources[0]
    assert index.ref(citation) is index.ref(citation)  # one resolved source per citation


def test_a_record_names_one_trigger_per_chart_made_from_that_record() -> None:
    import dataclasses
    import datetime as dt

    from ipexrx.assess.context import Ctx, assess_index, drug_trigger, lab_trigger
    from ipexrx.patient.reader import read_patient

    kb = get_kb()
    patient = read_patient({"diagnosis": {"type": "ipex"}, "demographics": {"age_years": 6, "weight_kg": 20},
                            "medications": [{"drug": "tacrolimus", "dose": "1 mg", "frequency": "BID"}],
                            "labs": [{"test": "potassium", "value": 6.1, "unit": "mmol/L", "date": "2026-11-01"}]},
                           kb, dt.date(2026, 12, 1))
    ctx = Ctx(kb=kb, index=assess_index(kb), patient=patient, as_of=dt.date(2026, 12, 1))
    med, lab = patient.meds[0], patient.labs[0]
    first = drug_trigger(ctx, med)
    assert drug_trigger(ctx, med) is first and lab_trigger(ctx, lab) is lab_trigger(ctx, lab)
    assert first.ref == "tacrolimus" and first.detail == f"active: {med.describe()}" and first.path == med.path
    other = Ctx(kb=kb, index=assess_index(kb), patient=patient, as_of=dt.date(2026, 12, 1))
    assert drug_trigger(other, med) == first and drug_trigger(other, med) is not first  # one chart's, not shared
    changed = dataclasses.replace(med, status="planned")  # another record: its own trigger, saying what it says
    assert drug_trigger(ctx, changed).detail.startswith("planned: ")
