"""Analytics checked against values computed by hand, then end to end on a small synthetic cohort."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest

from ipexrx.registry import SYSTEM, Registry, ops
from ipexrx.registry.analytics import kaplan_meier, logrank, response
from ipexrx.registry.models import Course, Visit


def test_kaplan_meier_matches_hand_computation() -> None:
    # times 2, 3, 3(censored), 5, 8(censored), 9:
    # t=2: 6 at risk, 1 event -> S = 5/6
    # t=3: 5 at risk, 1 event (the other 3 is censored) -> S = 5/6 * 4/5 = 4/6
    # t=5: 3 at risk, 1 event -> S = 4/6 * 2/3 = 8/18
    # t=9: 1 at risk, 1 event -> S = 0
    km = kaplan_meier([2, 3, 3, 5, 8, 9], [True, True, False, True, False, True], "x", at=(2.5, 4.0, 6.0))
    assert km.at[2.5][0] == pytest.approx(5 / 6)
    assert km.at[4.0][0] == pytest.approx(4 / 6)
    assert km.at[6.0][0] == pytest.approx(8 / 18)
    assert km.survival[-1] == 0
    assert km.median == 5.0  # first time S <= 0.5
    # Greenwood variance at t=5: S^2 * sum d/(n(n-d)) = (8/18)^2 * (1/30 + 1/20 + 1/6); the log(-log)
    # interval: exp(-exp(log(-log S) +/- 1.96 * sqrt(V)/(S*|log S|)))
    s = 8 / 18
    v = (1 / 30 + 1 / 20 + 1 / 6) / math.log(s) ** 2
    lo = s ** math.exp(1.959963984540054 * math.sqrt(v))
    hi = s ** math.exp(-1.959963984540054 * math.sqrt(v))
    assert km.at[6.0][1] == pytest.approx(lo, rel=1e-6)
    assert km.at[6.0][2] == pytest.approx(hi, rel=1e-6)


def test_logrank_matches_hand_computation() -> None:
    # A: events at 1, 3; B: events at 2, 4. Pooled event times 1,2,3,4 with (n_A, n_B):
    # t=1 (2,2): E_A = 2/4 = .5, V = 2*2*1*3/(16*3) = .25
    # t=2 (1,2): E_A = 1/3,       V = 1*2*1*2/(9*2) = 2/9
    # t=3 (1,1): E_A = .5,        V = .25
    # t=4 (0,1): E_A = 0,         V = 0
    # O_A - E_A = 2 - 4/3 = 2/3; V = .25 + 2/9 + .25 = 13/18; chi2 = (2/3)^2 / (13/18) = 8/13
    chi2, p = logrank([1, 3], [True, True], [2, 4], [True, True])  # type: ignore[misc]
    assert chi2 == pytest.approx(8 / 13)
    from scipy.stats import chi2 as chi2_dist

    assert p == pytest.approx(chi2_dist.sf(8 / 13, 1))
    assert logrank([], [], [1.0], [True]) is None


def _course(start: str, stop: str | None) -> Course:
    return Course(start_date=dt.date.fromisoformat(start), stop_date=dt.date.fromisoformat(stop) if stop else None)


def _visits(*pairs: tuple[str, int]) -> list[Visit]:
    return [Visit(date=dt.date.fromisoformat(d), oi_score=s) for d, s in pairs]


def test_response_classification() -> None:
    end = dt.date(2022, 1, 1)
    v = _visits(("2020-01-01", 4), ("2020-04-05", 2), ("2020-07-01", 4), ("2021-01-10", 5))
    c = _course("2020-01-02", None)
    assert response(c, v, end, 3) == "improved"
    assert response(c, v, end, 6) == "stable"
    assert response(c, v, end, 12) == "worse"
    assert response(_course("2020-01-02", "2020-03-01"), v, end, 3) == "stopped before"
    assert response(_course("2019-06-01", None), v, end, 3) == "not evaluable"  # no baseline visit


def test_report_on_synthetic_cohort(tmp_path: Path) -> None:
    reg = Registry(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    ops.load_demo(reg, SYSTEM, n_patients=40, n_centres=4, seed=7)
    rep = ops.analytics_report(reg, SYSTEM)
    assert rep.patients == 40 and rep.centres <= 4 and rep.synthetic
    assert {d.drug_id for d in rep.drugs} <= {"sirolimus", "tacrolimus", "cyclosporine", "prednisone", "rituximab",
                                             "abatacept"}
    for d in rep.drugs:
        assert sum(d.reasons.values()) == d.courses
        assert all(sum(r.values()) == d.courses for r in d.response.values())
    os_ = rep.comparisons[0]
    assert sum(k.n for k in os_.curves) == 40 and os_.logrank is not None
    from ipexrx.registry.report import write_report

    paths = write_report(rep, tmp_path / "out")
    html = paths[0].read_text()
    assert html.count("SYNTHETIC DATA") == 2 and "Log-rank test" in html
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths[1:-1])
    interactive = paths[-1].read_text()
    assert "<svg" in interactive and "<title>HSCT" in interactive and "95% CI" in interactive
    assert "data:image/png" not in interactive and interactive.count("SYNTHETIC DATA") == 2
    # consent withdrawal removes a patient from the analyses
    with reg.tx() as s:
        from sqlalchemy import select

        from ipexrx.registry.models import Patient

        pseudonym = s.scalars(select(Patient.pseudonym).limit(1)).one()
    reg.withdraw_consent(SYSTEM, pseudonym, dt.date(2026, 1, 1))
    assert ops.analytics_report(reg, SYSTEM).patients == 39


def test_followup_due_lists_living_patients_without_a_visit_for_a_year() -> None:
    from ipexrx.registry.analytics import Cohort, followup_due
    from ipexrx.registry.models import Patient

    def pt(i: int, status: str) -> Patient:
        return Patient(id=i, pseudonym=f"P{i}", vital_status=status, diagnosis_date=dt.date(2020, 1, 1))

    c = Cohort({1: pt(1, "alive"), 2: pt(2, "alive"), 3: pt(3, "dead"), 4: pt(4, "alive")}, [],
               {1: _visits(("2024-01-01", 1)), 2: _visits(("2025-06-01", 1)), 3: _visits(("2023-01-01", 1))}, {}, {},
               False)
    assert followup_due(c, dt.date(2025, 12, 1)) == [("P4", "2020-01-01"), ("P1", "2024-01-01")]
