"""Rejected input: a clear message per problem, and nothing written (no row, no audit entry)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from ipexrx.registry import Registry, ValidationFailed
from ipexrx.registry.models import AuditEntry, Course, Patient

from .conftest import World, patient_data


def _counts(reg: Registry) -> tuple[int, int, int]:
    with reg.tx() as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) or 0  # type: ignore[return-value]
                     for m in (Patient, Course, AuditEntry))


def _rejects(world: World, data: dict[str, Any], *fragments: str) -> None:
    before = _counts(world.reg)
    with pytest.raises(ValidationFailed) as exc:
        world.reg.add_patient(world.actors["clinician"], data)
    msg = str(exc.value)
    assert "nothing was written" in msg
    for f in fragments:
        assert f in msg, msg
    assert _counts(world.reg) == before


def test_stop_before_start(world: World) -> None:
    _rejects(world, {"patient": patient_data(), "courses": [
        {"drug_id": "sirolimus", "start_date": "2020-05-01", "stop_date": "2020-04-01", "reason_stopped": "toxicity"}]},
        "stop_date 2020-04-01 is before start_date 2020-05-01")


def test_death_before_birth(world: World) -> None:
    _rejects(world, {"patient": patient_data(vital_status="dead", death_date="2018-01-01")},
             "death_date: 2018-01-01 is before the birth month 2019-05")


def test_event_after_death(world: World) -> None:
    _rejects(world, {"patient": patient_data(vital_status="dead", death_date="2020-01-01"),
                     "visits": [{"date": "2020-03-01"}]}, "visits.0.date: 2020-03-01 is after death (2020-01-01)")


def test_unknown_drug(world: World) -> None:
    _rejects(world, {"patient": patient_data(), "courses": [{"drug_id": "rapamycin", "start_date": "2020-01-01"}]},
             "courses.0.drug_id: 'rapamycin' is not a knowledge-base drug id", "sirolimus")


def test_unknown_and_malformed_hpo(world: World) -> None:
    _rejects(world, {"patient": patient_data(), "manifestations": [
        {"hpo_code": "HP:0000001", "onset_date": "2020-01-01"}]}, "'HP:0000001' is not an HPO code of a knowledge-base")
    _rejects(world, {"patient": patient_data(), "manifestations": [{"hpo_code": "HP:12", "onset_date": "2020-01-01"}]},
             "expected an HPO id 'HP:' + 7 digits, got 'HP:12'")


def test_out_of_range_values(world: World) -> None:
    _rejects(world, {"patient": patient_data(), "visits": [{"date": "2020-01-01", "weight_z": -12,
                                                            "stool_ml_kg_day": 900}]},
             "weight_z: expected -8..8 SD, got -12", "stool_ml_kg_day: expected 0..300 mL/kg/day, got 900")


def test_ipex_needs_foxp3_and_hgvs(world: World) -> None:
    _rejects(world, {"patient": patient_data(gene="IL2RA")}, "expected 'FOXP3', got 'IL2RA'")
    _rejects(world, {"patient": patient_data(variant_hgvs="FOXP3 mutation")},
             "expected an HGVS variant such as 'NM_014009.4:c.1150G>A'", "got 'FOXP3 mutation'")
    _rejects(world, {"patient": patient_data(variant_hgvs=None)}, "IPEX needs the FOXP3 variant in HGVS notation")


def test_ipex_like_gene_must_match_kb_disorder(world: World) -> None:
    _rejects(world, {"patient": patient_data(diagnosis="ipex-like", gene="STAT1", variant_hgvs=None,
                                             ipex_like_id="lrba-deficiency")}, "is LRBA disease, got 'STAT1'")


def test_unknown_field_is_rejected_not_ignored(world: World) -> None:
    _rejects(world, {"patient": patient_data(name="Jane Doe")}, "patient.name: unknown field")


def test_one_bad_patient_rejects_the_whole_import(world: World) -> None:
    from ipexrx.registry.schemas import PatientBundle

    good = PatientBundle.model_validate({"patient": patient_data("CTR-A")})
    bad = PatientBundle.model_validate({"patient": patient_data("CTR-A"), "courses": [
        {"drug_id": "nosuchdrug", "start_date": "2020-01-01"}]})
    before = _counts(world.reg)
    with pytest.raises(ValidationFailed, match="patient 2: courses.0.drug_id"):
        world.reg.add_bundles(world.actors["data_manager"], [good, bad], action="import")
    assert _counts(world.reg) == before


def test_child_record_checked_against_the_stored_patient(world: World) -> None:
    with pytest.raises(ValidationFailed, match="before the birth month 2019-05"):
        world.reg.add_course(world.actors["clinician"], world.pa, {"drug_id": "tacrolimus",
                                                                   "start_date": "2018-01-01"})


def test_valid_follow_up_is_stored(world: World) -> None:
    a = world.actors["clinician"]
    world.reg.add_manifestation(a, world.pa, {"hpo_code": "HP:0002028", "onset_date": "2019-07-01"})
    world.reg.add_visit(a, world.pa, {"date": "2019-12-01", "oi_score": 3, "organs": ["gut", "skin"]})
    world.reg.add_hsct(a, world.pa, {"date": "2020-06-01", "donor": "matched-unrelated",
                                     "conditioning": "reduced-toxicity", "pre_hsct_oi_score": 3})
    rec = world.reg.get_patient(a, world.pa)
    assert rec["manifestations"][0]["manifestation_id"] == "enteropathy"
    assert rec["visits"][0]["organs"] == "gut;skin" and rec["hsct"][0]["donor"] == "matched-unrelated"
    cid = rec["courses"][0]["id"]
    world.reg.stop_course(a, world.pa, cid, __import__("datetime").date(2020, 6, 1), "hsct")
    assert world.reg.get_patient(a, world.pa)["courses"][0]["reason_stopped"] == "hsct"
