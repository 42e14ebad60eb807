"""Comparative analyses: time on therapy per drug, reasons stopped, response, HSCT versus
immunosuppression survival, organ-involvement (OI) strata.

Definitions (ipexrx conventions, printed in the report so nobody has to guess):

* Time on therapy: course start to stop (event = stopped for any reason); ongoing courses are
  censored at the patient's last follow-up (or death).
* Response at 3, 6, 12 months: the OI score at the visit closest to start + 91/182/365 days
  (within 45 days, course still running) compared with the baseline OI score (the last visit up to
  the start, at most 90 days before): improved (lower), stable, worse; "stopped before" when the
  course had ended; "not evaluable" when a visit is missing. Nothing is imputed.
* Overall survival, HSCT versus immunosuppression only: from diagnosis to death (censored at last
  follow-up); group = ever transplanted. Grouping by a later event favours the transplanted group
  (immortal time), so a landmark analysis from the HSCT date is reported beside it.
* Disease-free survival: from the start of the strategy (HSCT date, or first immunosuppressive
  course) to death or the onset of a manifestation episode after that start.
* OI strata: 0-2 versus 3 or more (the split used by Barzaghi 2018, doi:10.1016/j.jaci.2017.10.041),
  on the pre-HSCT score for transplanted patients and the first score on record otherwise.
* Patients who withdrew consent are left out entirely.

Kaplan-Meier estimates, Greenwood-based confidence intervals (lifelines' exponential/log-log
transform) and the log-rank test come from lifelines.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from .models import Course, Hsct, ManifestationEpisode, Patient, Visit

RESPONSE_DAYS = {3: 91, 6: 182, 12: 365}
WINDOW_DAYS = 45
BASELINE_DAYS = 90
YEAR = 365.25
FOLLOWUP_DAYS = 365


@dataclass
class KmCurve:
    label: str
    n: int
    events: int
    times: list[float]  # in the unit of the analysis (days or years), step times including 0
    survival: list[float]
    lower: list[float]
    upper: list[float]
    median: float | None
    at: dict[float, tuple[float, float, float]] = field(default_factory=dict)  # t -> (S, lo, hi)
    durations: list[float] = field(default_factory=list, repr=False)  # sorted follow-up times (numbers at risk)

    def at_risk(self, t: float) -> int:
        """Number at risk at time ``t``: followed for at least ``t`` (no event and not censored before ``t``)."""
        return len(self.durations) - bisect.bisect_left(self.durations, t)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "n": self.n, "events": self.events, "median": self.median,
                "at": {str(k): v for k, v in self.at.items()}}


def kaplan_meier(durations: list[float], events: list[bool], label: str, at: tuple[float, ...] = ()) -> KmCurve:
    from ..extras import require

    require("lifelines", "analytics", "Registry analytics (Kaplan-Meier estimates)")
    from lifelines import KaplanMeierFitter

    if not durations:
        return KmCurve(label, 0, 0, [0.0], [1.0], [1.0], [1.0], None)
    kmf = KaplanMeierFitter(label=label).fit(durations, event_observed=events)
    sf = kmf.survival_function_[label]
    ci = kmf.confidence_interval_survival_function_
    med = float(kmf.median_survival_time_)
    points = {}
    for t in at:
        s = float(kmf.survival_function_at_times(t).iloc[0])
        lo = float(ci.iloc[:, 0][ci.index <= t].iloc[-1])
        hi = float(ci.iloc[:, 1][ci.index <= t].iloc[-1])
        points[t] = (s, lo, hi)
    return KmCurve(label, len(durations), int(sum(events)), [float(x) for x in sf.index], [float(x) for x in sf],
                   [float(x) for x in ci.iloc[:, 0]], [float(x) for x in ci.iloc[:, 1]],
                   None if med == float("inf") else med, points, sorted(float(d) for d in durations))


def logrank(d1: list[float], e1: list[bool], d2: list[float], e2: list[bool]) -> tuple[float, float] | None:
    """(chi-square statistic, p) or None when a group is empty."""
    from ..extras import require

    require("lifelines.statistics", "analytics", "Registry analytics (log-rank tests)")
    from lifelines.statistics import logrank_test

    if not d1 or not d2:
        return None
    r = logrank_test(d1, d2, event_observed_A=e1, event_observed_B=e2)
    return float(r.test_statistic), float(r.p_value)


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
@dataclass
class Cohort:
    patients: dict[int, Patient]
    courses: list[Any]  # rows with patient_id, drug_id, start_date, stop_date, reason_stopped
    visits: dict[int, list[Any]]  # rows with patient_id, date, oi_score, sorted by date
    hsct: dict[int, Any]  # first HSCT: patient_id, date, pre_hsct_oi_score
    manifestations: dict[int, list[Any]]  # patient_id, onset_date
    synthetic: bool


def load(s: Session, centre_id: int | None = None, *,
         diagnosed: tuple[dt.date | None, dt.date | None] = (None, None)) -> Cohort:
    """Patients in scope (one centre, or all; diagnosed within ``diagnosed``, both ends included, when
    given), minus withdrawn consent, with their follow-up.

    Follow-up comes as light rows of only the columns the analyses read (attribute access works as
    on the models): at 100,000 patients there are millions of visits, and ORM objects would cost
    most of the report's time.
    """
    where: list[ColumnElement[bool]] = [Patient.consent_withdrawn_date.is_(None)]
    if centre_id is not None:
        where.append(Patient.centre_id == centre_id)
    if diagnosed[0] is not None:
        where.append(Patient.diagnosis_date >= diagnosed[0])
    if diagnosed[1] is not None:
        where.append(Patient.diagnosis_date <= diagnosed[1])
    patients = {p.id: p for p in s.scalars(select(Patient).where(*where))}
    ids = select(Patient.id).where(*where)
    courses: list[Any] = list(s.execute(
        select(Course.patient_id, Course.drug_id, Course.start_date, Course.stop_date, Course.reason_stopped)
        .where(Course.patient_id.in_(ids)).order_by(Course.id)))
    visits: dict[int, list[Any]] = {}
    for v in s.execute(select(Visit.patient_id, Visit.date, Visit.oi_score).where(Visit.patient_id.in_(ids))
                       .order_by(Visit.patient_id, Visit.date)):
        visits.setdefault(v.patient_id, []).append(v)
    hsct: dict[int, Any] = {}
    for h in s.execute(select(Hsct.patient_id, Hsct.date, Hsct.pre_hsct_oi_score).where(Hsct.patient_id.in_(ids))
                       .order_by(Hsct.date.desc())):
        hsct[h.patient_id] = h  # the first transplant (ordered newest first, so the oldest wins)
    mans: dict[int, list[Any]] = {}
    for m in s.execute(select(ManifestationEpisode.patient_id, ManifestationEpisode.onset_date)
                       .where(ManifestationEpisode.patient_id.in_(ids))):
        mans.setdefault(m.patient_id, []).append(m)
    return Cohort(patients, courses, visits, hsct, mans, bool(patients) and all(p.synthetic for p in
                                                                                  patients.values()))


def _end(p: Patient) -> dt.date:
    return p.death_date or p.last_followup_date or p.diagnosis_date


def responses(c: Any, visits: list[Any], end: dt.date) -> dict[int, str]:
    """Response at 3, 6 and 12 months for one course (visits sorted by date); see the module docstring."""
    scored = [v for v in visits if v.oi_score is not None]
    dates = [v.date for v in scored]
    stop = c.stop_date or end
    lo = bisect.bisect_left(dates, c.start_date - dt.timedelta(days=BASELINE_DAYS))
    hi = bisect.bisect_right(dates, c.start_date)
    base = scored[hi - 1] if hi > lo else None
    out = {}
    for months, days in RESPONSE_DAYS.items():
        target = c.start_date + dt.timedelta(days=days)
        if stop < target:
            out[months] = "stopped before"
            continue
        a = bisect.bisect_left(dates, target - dt.timedelta(days=WINDOW_DAYS))
        b = bisect.bisect_right(dates, min(target + dt.timedelta(days=WINDOW_DAYS), stop))
        near = min(scored[a:b], key=lambda v: abs((v.date - target).days), default=None)
        if base is None or near is None:
            out[months] = "not evaluable"
            continue
        out[months] = "improved" if near.oi_score < base.oi_score else "stable" if near.oi_score == base.oi_score \
            else "worse"
    return out


def response(c: Any, visits: list[Any], end: dt.date, months: int) -> str:
    return responses(c, visits, end)[months]


@dataclass
class DrugSummary:
    drug_id: str
    courses: int
    patients: int
    ongoing: int
    reasons: dict[str, int]
    km: KmCurve
    response: dict[int, dict[str, int]]


def drug_summaries(c: Cohort) -> list[DrugSummary]:
    by_drug: dict[str, list[Any]] = {}
    for co in c.courses:
        by_drug.setdefault(co.drug_id, []).append(co)
    out = []
    for drug, cs in sorted(by_drug.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        dur: list[float] = []
        ev: list[bool] = []
        reasons: dict[str, int] = {}
        resp: dict[int, dict[str, int]] = {m: {} for m in RESPONSE_DAYS}
        for co in cs:
            p = c.patients[co.patient_id]
            stop = co.stop_date or _end(p)
            dur.append(max(0, (stop - co.start_date).days))
            ev.append(co.stop_date is not None)
            key = co.reason_stopped or "ongoing"
            reasons[key] = reasons.get(key, 0) + 1
            for m, r in responses(co, c.visits.get(co.patient_id, []), _end(p)).items():
                resp[m][r] = resp[m].get(r, 0) + 1
        out.append(DrugSummary(drug, len(cs), len({co.patient_id for co in cs}), reasons.get("ongoing", 0), reasons,
                               kaplan_meier(dur, ev, drug, at=(182.0, 365.0)), resp))
    return out


def _years(a: dt.date, b: dt.date) -> float:
    return max(0.0, (b - a).days / YEAR)


@dataclass
class Comparison:
    title: str
    curves: list[KmCurve]
    logrank: tuple[float, float] | None
    note: str


def survival_comparisons(c: Cohort) -> list[Comparison]:
    at = (1.0, 5.0, 10.0)
    os_: dict[str, tuple[list[float], list[bool]]] = {"HSCT": ([], []), "Immunosuppression only": ([], [])}
    land: tuple[list[float], list[bool]] = ([], [])
    dfs: dict[str, tuple[list[float], list[bool]]] = {"HSCT": ([], []), "Immunosuppression only": ([], [])}
    oi: dict[str, tuple[list[float], list[bool]]] = {"OI score 0-2": ([], []), "OI score 3 or more": ([], [])}
    first_course: dict[int, dt.date] = {}
    for co in c.courses:
        if co.patient_id not in first_course or co.start_date < first_course[co.patient_id]:
            first_course[co.patient_id] = co.start_date
    for pid, p in c.patients.items():
        end, dead = _end(p), p.death_date is not None
        h = c.hsct.get(pid)
        group = "HSCT" if h else "Immunosuppression only"
        os_[group][0].append(_years(p.diagnosis_date, end))
        os_[group][1].append(dead)
        if h:
            land[0].append(_years(h.date, end))
            land[1].append(dead)
        origin = h.date if h else first_course.get(pid)
        if origin is not None:
            relapse = [m.onset_date for m in c.manifestations.get(pid, []) if m.onset_date > origin]
            ev_date = min([*relapse, *([p.death_date] if p.death_date else [])], default=None)
            dfs[group][0].append(_years(origin, ev_date or end))
            dfs[group][1].append(ev_date is not None)
        score = h.pre_hsct_oi_score if h and h.pre_hsct_oi_score is not None else next(
            (v.oi_score for v in c.visits.get(pid, []) if v.oi_score is not None), None)
        if score is not None:
            key = "OI score 0-2" if score <= 2 else "OI score 3 or more"
            oi[key][0].append(_years(p.diagnosis_date, end))
            oi[key][1].append(dead)

    def comp(title: str, groups: dict[str, tuple[list[float], list[bool]]], note: str) -> Comparison:
        (k1, (d1, e1)), (k2, (d2, e2)) = groups.items()
        return Comparison(title, [kaplan_meier(d1, e1, k1, at), kaplan_meier(d2, e2, k2, at)],
                          logrank(d1, e1, d2, e2), note)

    return [
        comp("Overall survival from diagnosis: HSCT versus immunosuppression only", os_,
             "Grouped by transplant at any time: transplanted patients had to survive until HSCT (immortal time "
             "bias in their favour). Read with the landmark curve."),
        Comparison("Overall survival from the HSCT date (transplanted patients)",
                   [kaplan_meier(land[0], land[1], "HSCT (from transplant)", at)], None,
                   "Time origin at the transplant: no immortal time."),
        comp("Disease-free survival from the start of the strategy", dfs,
             "Event: death or onset of a manifestation episode after the HSCT date or the first immunosuppressive "
             "course (ipexrx convention)."),
        comp("Overall survival from diagnosis by organ-involvement score", oi,
             "OI score as recorded by the centre (Barzaghi 2018, doi:10.1016/j.jaci.2017.10.041): pre-HSCT score "
             "for transplanted patients, first recorded score otherwise; split 0-2 versus 3 or more as in that "
             "paper."),
    ]


@dataclass
class Report:
    generated_at: str
    scope: str
    synthetic: bool
    patients: int
    centres: int
    deaths: int
    drugs: list[DrugSummary]
    comparisons: list[Comparison]
    followup_due: list[tuple[str, str]] = field(default_factory=list)  # centre scope only: (pseudonym, last visit)


def followup_due(c: Cohort, today: dt.date, days: int = FOLLOWUP_DAYS) -> list[tuple[str, str]]:
    """Living patients (not lost) whose last visit is more than ``days`` ago: the yearly ESID-style follow-up."""
    out = []
    for pid, p in c.patients.items():
        if p.vital_status != "alive":
            continue
        visits = c.visits.get(pid, [])
        last = visits[-1].date if visits else p.diagnosis_date
        if (today - last).days > days:
            out.append((p.pseudonym, last.isoformat()))
    return sorted(out, key=lambda x: x[1])


def build_report(s: Session, centre_id: int | None, scope: str, today: dt.date | None = None, *,
                 diagnosed: tuple[dt.date | None, dt.date | None] = (None, None)) -> Report:
    """The report; with ``centre_id`` (a centre's own dashboard) it also lists follow-up visits due,
    by pseudonym. The pooled report names no patient. ``today`` fixes the report date (printed, and the
    day follow-up is measured to) so that the same data give the same report; default: now.
    ``diagnosed`` (from, to; either may be None) keeps the patients diagnosed in that period.

    Served from :mod:`ipexrx.registry.analytics_cache` while the registry's data have not changed
    (same centre, scope, day and period); computed by :func:`compute_report` otherwise."""
    from .analytics_cache import cached_report

    day = today or dt.date.today()
    stamp = today.isoformat() if today else dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return cached_report(s, (centre_id, scope, day, diagnosed),
                         lambda: compute_report(s, centre_id, scope, today, diagnosed=diagnosed), stamp)


def compute_report(s: Session, centre_id: int | None, scope: str, today: dt.date | None = None, *,
                   diagnosed: tuple[dt.date | None, dt.date | None] = (None, None)) -> Report:
    """The report computed from the data (what :func:`build_report` caches)."""
    c = load(s, centre_id, diagnosed=diagnosed)
    stamp = today.isoformat() if today else dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return Report(stamp, scope, c.synthetic, len(c.patients),
                  len({p.centre_id for p in c.patients.values()}),
                  sum(p.death_date is not None for p in c.patients.values()), drug_summaries(c),
                  survival_comparisons(c),
                  followup_due(c, today or dt.date.today()) if centre_id is not None else [])
