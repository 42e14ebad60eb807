"""Active infections under immunosuppression.

Why: every IPEX immunosuppressant carries a label warning (often boxed) about serious infection,
and infections are a leading cause of death in IPEX. An active infection recorded while a
systemic immunosuppressive drug is current is a warning, cited to the drugs' infection warnings.
Hepatitis B and tuberculosis get the drug's screening statement as well, because the labels tie
them to reactivation.
"""

from __future__ import annotations

import re

from ...knowledge.schema import LabParameter, Statement
from ..context import Ctx, drug_trigger
from ..models import Alert, Severity, Trigger

_HBV = re.compile(r"hepatitis b|\bhbv\b", re.I)
_TB = re.compile(r"tubercul|\btb\b|mycobacterium tuberculosis", re.I)


def infection_under_immunosuppression(ctx: Ctx) -> list[Alert]:
    """One warning per active infection while on systemic immunosuppressive drugs."""
    immuno = ctx.immunosuppressive(ctx.active)
    if not immuno:
        return []
    alerts: list[Alert] = []
    for inf in ctx.patient.infections:
        text = f"{inf.name} {inf.pathogen or ''}"
        stmts: list[Statement | None] = []
        for m in immuno:
            d = ctx.drug(m.drug_id or "")
            pool = [*d.safety.boxed_warnings, *d.safety.warnings]
            stmts += [w for w in pool if "infect" in w.text.lower()][:1]
            wanted = {LabParameter.HBV} if _HBV.search(text) else {LabParameter.TB} if _TB.search(text) else set()
            stmts += [s.statement for s in d.safety.screening if s.parameter in wanted]
        names = ", ".join(ctx.label(m.drug_id or "") for m in immuno)
        pathogen = f" ({inf.pathogen})" if inf.pathogen else " (pathogen not recorded)"
        alerts.append(Alert(
            id=f"infection:{inf.path}", rule="infections.infection_under_immunosuppression", family="infection",
            severity=Severity.WARNING,
            summary=f"Active infection under immunosuppression: {inf.name}{pathogen}; on {names}",
            reasoning=f"{names} suppress{'es' if len(immuno) == 1 else ''} immune defence; the labels warn of "
                      "serious and opportunistic infection.",
            action="Consider reviewing the immunosuppressive regimen with the infection team"
                   + ("; identifying the pathogen would guide treatment." if not inf.pathogen else "."),
            triggers=[Trigger(kind="infection", ref=inf.name, path=inf.path, detail=inf.pathogen),
                      *(drug_trigger(ctx, m) for m in immuno)],
            sources=ctx.refs(*stmts),
        ))
    return alerts


def start_during_active_infection(ctx: Ctx) -> list[Alert]:
    """A drug whose label says not to start it during an active (serious) infection, planned or just started
    while an infection is active -> warning, quoting the label statement (``Safety.no_start_in_active_infection``).

    "Just started": an active record whose start date is on or after the infection's onset. The record does
    not say how serious the infection is; the alert says so rather than guessing.
    """
    infections = ctx.patient.infections
    if not infections:
        return []
    alerts: list[Alert] = []
    for m in ctx.current_and_planned:
        if not m.drug_id or not m.systemic:
            continue
        stmt = ctx.drug(m.drug_id).safety.no_start_in_active_infection
        if stmt is None:
            continue
        for inf in infections:
            started_during = m.status == "active" and m.start is not None and inf.since is not None \
                and m.start >= inf.since
            if m.status != "planned" and not started_during:
                continue
            name = ctx.label(m.drug_id)
            how = "planned" if m.status == "planned" else f"started on {m.start}"
            since = f" (since {inf.since})" if inf.since else ""
            alerts.append(Alert(
                id=f"infection:start:{m.drug_id}:{inf.path}", rule="infections.start_during_active_infection",
                family="infection", severity=Severity.WARNING,
                summary=f"{name} {how} during an active infection: {inf.name}{since}",
                reasoning=f"{stmt.text} The record lists {inf.name} as active{since}; it does not say how serious "
                          "the infection is.",
                action=f"Consider treating or controlling the infection before starting {name}, and reviewing the "
                       "timing with the infection team (label instruction).",
                triggers=[Trigger(kind="infection", ref=inf.name, path=inf.path, detail=inf.pathogen),
                          drug_trigger(ctx, m)],
                sources=ctx.refs(stmt),
            ))
    return alerts
