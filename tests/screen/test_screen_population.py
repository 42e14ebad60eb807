"""Screening the shipped small population: ranking, known cases, bad lines, drug safety.

The population (tests/cases/screen/population) was written by ``ipexrx screen synth`` with a fixed seed
and is committed; ``synth-truth.csv`` says which patient is which (the screen never reads it).
"""

from __future__ import annotations

from typing import Any

from .conftest import AS_OF, POPULATION


def _rank(result: dict[str, Any]) -> dict[str, int]:
    return {c["patient"]: i for i, c in enumerate(result["candidates"])}


def test_every_ipex_case_ranks_above_every_lookalike(ranked: dict[str, Any], truth: dict[str, str]) -> None:
    rank = _rank(ranked)
    ipex = [p for p, g in truth.items() if g == "ipex"]
    lookalikes = [p for p, g in truth.items() if g.startswith("lookalike:")]
    assert ipex and lookalikes
    assert all(p in rank for p in ipex), "every undiagnosed IPEX case must be scored"
    worst_ipex = max(rank[p] for p in ipex)
    best_lookalike = min((rank[p] for p in lookalikes if p in rank), default=len(rank))
    assert worst_ipex < best_lookalike


def test_ipex_like_cases_rank_above_every_lookalike(ranked: dict[str, Any], truth: dict[str, str]) -> None:
    rank = _rank(ranked)
    like = [p for p, g in truth.items() if g.startswith("ipex-like:")]
    lookalikes = [rank[p] for p, g in truth.items() if g.startswith("lookalike:") and p in rank]
    assert like
    assert max(rank[p] for p in like) < min(lookalikes, default=len(rank))


def test_no_lookalike_reaches_the_candidate_list(result: dict[str, Any], truth: dict[str, str]) -> None:
    assert not [c["patient"] for c in result["candidates"] if truth[c["patient"]].startswith("lookalike:")]


def test_candidates_are_sorted_best_first_and_each_says_why(result: dict[str, Any]) -> None:
    scores = [c["score"] for c in result["candidates"]]
    assert scores == sorted(scores, reverse=True)
    for c in result["candidates"]:
        features = [r for r in c["reasons"] if r.get("hpo")]
        assert len(features) >= 2
        for r in features:
            assert r["points"] > 0 and r["evidence"] and r["record"]
            assert r["date"] is not None and r["age_at_onset_years"] is not None
        assert "Suggestion" in c["next_step"]["text"] and "FOXP3" in c["next_step"]["text"]
        assert c["next_step"]["sources"] and all(s["citation"] for s in c["next_step"]["sources"])


def test_infant_boys_with_the_ipex_picture_are_closest_to_ipex(result: dict[str, Any], truth: dict[str, str]) -> None:
    ipex = [c for c in result["candidates"] if truth[c["patient"]] == "ipex"]
    assert ipex
    assert sum(c["pattern"] == "IPEX (FOXP3)" for c in ipex) >= len(ipex) - 1


def test_known_cases_are_listed_apart_not_as_candidates(result: dict[str, Any], truth: dict[str, str]) -> None:
    known = {k["patient"] for k in result["known"]}
    expected = {p for p, g in truth.items() if g in ("ipex-known",) or g.startswith("ipex-like-known:")}
    assert known == expected
    assert not known & {c["patient"] for c in result["candidates"]}
    kinds = {k["patient"]: k["diagnosis"] for k in result["known"]}
    assert {kinds[p] for p, g in truth.items() if g == "ipex-known"} == {"IPEX"}
    assert all("LRBA" in kinds[p] for p, g in truth.items() if g.startswith("ipex-like-known:"))


def test_a_diagnosis_made_after_the_screening_date_was_not_known_then() -> None:
    import datetime as dt

    from ipexrx.screen.run import screen

    before = screen(POPULATION, as_of=dt.date(2026, 1, 1))  # p000199's IPEX diagnosis is dated 2026-06-29
    assert "p000199" not in {k["patient"] for k in before["known"]}
    assert "p000199" in {k["patient"] for k in screen(POPULATION, as_of=dt.date(2026, 7, 1))["known"]}


def _invalid_lines(name: str) -> list[int]:
    import gzip
    import json

    path = POPULATION / name
    raw = gzip.decompress(path.read_bytes()).decode("utf-8") if name.endswith(".gz") else path.read_text("utf-8")
    bad = []
    for n, line in enumerate(raw.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError:
            bad.append(n)
    return bad


def test_bad_lines_are_reported_with_file_and_line(result: dict[str, Any]) -> None:
    bad = result["stats"]["bad_lines"]
    expected = [("Condition.ndjson", n) for n in _invalid_lines("Condition.ndjson")] + [
        ("Observation.ndjson.gz", n) for n in _invalid_lines("Observation.ndjson.gz")]
    assert len(expected) == 2  # the shipped population has one truncated object and one non-JSON line
    assert [(b["file"], b["line"]) for b in bad] == expected
    assert all("not valid JSON" in b["problem"] for b in bad)


def test_nothing_but_the_bad_lines_is_lost(result: dict[str, Any]) -> None:
    import gzip

    def count(name: str) -> int:
        path = POPULATION / name
        raw = gzip.decompress(path.read_bytes()).decode("utf-8") if name.endswith(".gz") else path.read_text("utf-8")
        return sum(1 for line in raw.splitlines() if line.strip())

    res = result["stats"]["resources"]
    assert res["Condition"] == count("Condition.ndjson") - 1
    assert res["Observation"] == count("Observation.ndjson.gz") - 1
    for name, rtype in [("Patient.ndjson", "Patient"), ("MedicationRequest.ndjson", "MedicationRequest"),
                        ("MedicationStatement.ndjson", "MedicationStatement"), ("Procedure.ndjson", "Procedure"),
                        ("Immunization.ndjson", "Immunization")]:
        assert res[rtype] == count(name)
    assert result["stats"]["patients"] == 300


def _alerts(result: dict[str, Any], patient: str) -> list[dict[str, Any]]:
    entry = next((s for s in result["safety"] if s["patient"] == patient), None)
    assert entry is not None, f"{patient} missing from the safety list"
    return list(entry["alerts"])


def test_safety_lists_every_unsafe_regimen_with_the_assessment_alert(result: dict[str, Any],
                                                                       truth: dict[str, str]) -> None:
    unsafe = {p: g.split(":", 1)[1] for p, g in truth.items() if g.startswith("unsafe:")}
    assert set(unsafe.values()) == {"tacrolimus+voriconazole", "sirolimus+posaconazole", "live-vaccine-on-cni",
                                    "tacrolimus-no-trough"}
    for patient, kind in unsafe.items():
        alerts = _alerts(result, patient)
        summaries = " | ".join(a["summary"] for a in alerts)
        if kind == "tacrolimus+voriconazole":
            assert any(a["family"] == "interaction" and "voriconazole" in a["summary"] and "tacrolimus" in a["summary"]
                       for a in alerts), summaries
        elif kind == "sirolimus+posaconazole":
            assert any(a["family"] == "interaction" and a["severity"] == "critical" and "posaconazole" in a["summary"]
                       for a in alerts), summaries
        elif kind == "live-vaccine-on-cni":
            assert any(a["family"] == "vaccine" and a["severity"] == "critical" and "MMR" in a["summary"]
                       for a in alerts), summaries
        else:
            assert any("Tacrolimus trough" in a["summary"] and "no result" in a["summary"] for a in alerts), summaries


def test_safety_alerts_carry_sources_and_no_internal_ids(result: dict[str, Any]) -> None:
    assert result["safety"]
    for entry in result["safety"]:
        for a in entry["alerts"]:
            assert set(a) == {"severity", "family", "summary", "reasoning", "action", "evidence", "sources"}
            assert a["sources"], a["summary"]
            assert "rule" not in a and "id" not in a


def test_safety_covers_known_ipex_patients_on_immunosuppressants(result: dict[str, Any],
                                                                  truth: dict[str, str]) -> None:
    on_drugs = {s["patient"] for s in result["safety"]}
    assert {p for p, g in truth.items() if g == "ipex-known"} <= on_drugs


def test_background_patients_without_knowledge_base_drugs_are_not_assessed(result: dict[str, Any],
                                                                             truth: dict[str, str]) -> None:
    assert all(truth[s["patient"]] != "background" for s in result["safety"])


def test_json_has_exactly_the_four_sections(result: dict[str, Any]) -> None:
    import json

    assert list(result) == ["candidates", "known", "safety", "stats"]
    json.dumps(result)  # serialisable as is
    c = result["candidates"][0]
    assert isinstance(c["patient"], str) and isinstance(c["score"], float) and isinstance(c["reasons"], list)


def test_every_fixed_laboratory_cut_off_shown_carries_its_source(ranked: dict[str, Any]) -> None:
    shown = [r for c in ranked["candidates"] for r in c["reasons"]
             if str(r.get("evidence", "")).startswith("LOINC") and "(above the" not in r["evidence"]
             and "(below the" not in r["evidence"] and "flagged" not in r["evidence"]]
    assert shown
    for r in shown:
        assert r["threshold_sources"] and all(s["citation"] and s["verification"] for s in r["threshold_sources"])


def test_strict_fhir_validation_gives_the_same_safety_worklist_on_valid_resources(result: dict[str, Any]) -> None:
    """The typed read path and full fhir.resources validation agree on the shipped population."""
    from ipexrx.screen.run import screen

    strict = screen(POPULATION, as_of=AS_OF, strict=True)
    assert strict["safety"] == result["safety"] and strict["safety"]
