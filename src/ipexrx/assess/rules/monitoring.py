"""Monitoring due or overdue: result dates against the knowledge base's ``Monitoring.interval_days``.

Why: the drugs used in IPEX need regular levels and organ checks (troughs, creatinine, blood
pressure, lipids, glucose, blood counts, thyroid). Each knowledge base ``Monitoring`` item gives the maximum
days between results and where that interval comes from (``interval_basis``). Severity:

* latest result older than the interval -> info ("due");
* older than twice the interval, or never recorded while the drug has been given longer than the
  interval (or since an unknown date) -> warning ("overdue");
* never recorded on a drug started less than one interval ago -> info (first result due);
* a parameter the labels ask to monitor without an interval in days (blood pressure, magnesium on
  tacrolimus, JAK-inhibitor blood counts): no result on record -> info "cannot judge", never silence.

Several drugs asking for the same parameter give one alert (the shortest interval wins). Troughs
are per drug. Parameters that are clinical observations (infection signs, infusion reactions,
growth) cannot be read from lab records and are not checked here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ...knowledge.schema import LabParameter, Monitoring
from ...memo import remembered
from ...patient.labs import LabKind, kinds_for_parameter
from ...patient.normalize import Med
from ..context import Ctx, drug_trigger, lab_trigger
from ..models import Alert, Severity

NOT_FROM_LABS = {LabParameter.INFECTION_SIGNS, LabParameter.INFUSION, LabParameter.GROWTH}
# ipexrx convention (no source): a result older than this many intervals is "overdue" (warning) rather
# than "due" (info). Alerts that use it say so.
OVERDUE_FACTOR = 2


@dataclass
class _Need:
    key: str
    parameter: LabParameter
    kinds: tuple[LabKind, ...]
    interval: int | None  # None: no drug gives an interval in days for this parameter
    items: list[tuple[Med, Monitoring]] = field(default_factory=list)


def _collect(ctx: Ctx) -> list[_Need]:
    needs: dict[str, _Need] = {}
    for med in ctx.active:
        if med.drug_id is None or not med.systemic:
            continue
        for key, mon, kinds in _lab_monitoring(ctx, med.drug_id):
            need = needs.get(key)
            if need is None:
                need = needs[key] = _Need(key, mon.parameter, kinds, mon.interval_days)
            known = [i for i in (need.interval, mon.interval_days) if i is not None]
            need.interval = min(known) if known else None
            need.items.append((med, mon))
    return list(needs.values())


_MONITORING: dict[Any, tuple[object, tuple[tuple[str, Monitoring, tuple[LabKind, ...]], ...]]] = {}


def _lab_monitoring(ctx: Ctx, drug_id: str) -> tuple[tuple[str, Monitoring, tuple[LabKind, ...]], ...]:
    """(need key, monitoring, lab kinds) for each parameter of the drug's label that a lab result answers; found
    once per drug and knowledge base (the drug's record, which they depend on alone, owns them)."""
    drug = ctx.drug(drug_id)

    def find() -> tuple[tuple[str, Monitoring, tuple[LabKind, ...]], ...]:
        out = []
        for mon in drug.safety.monitoring:
            if mon.parameter in NOT_FROM_LABS:
                continue
            kinds = kinds_for_parameter(mon.parameter, drug_id)
            if kinds:
                key = mon.parameter.value + (f":{drug_id}" if mon.parameter is LabParameter.TROUGH else "")
                out.append((key, mon, tuple(kinds)))
        return tuple(out)

    return remembered(_MONITORING, (id(drug), drug_id), drug, find)


def _no_interval(ctx: Ctx, need: _Need, what: str, drugs: str) -> Alert | None:
    """A parameter the labels ask to monitor without an interval in days: with no result on record it
    cannot be judged (info); with a result, ipexrx has no interval to call it stale by."""
    if ctx.latest(need.kinds) is not None:
        return None
    return Alert(
        id=f"monitoring:{need.key}", rule="monitoring.monitoring_due", family="monitoring", severity=Severity.INFO,
        summary=f"{what.capitalize()}: no result on record ({drugs}); cannot judge",
        reasoning="No result for this parameter is on record, so its toxicity cannot be judged. "
                  + " ".join(mon.statement.text for _, mon in need.items[:2])
                  + " No interval in days is given (label as read), so ipexrx sets no due date.",
        action=f"Consider checking {what}.",
        triggers=[drug_trigger(ctx, m) for m, _ in need.items],
        sources=ctx.refs(*(mon.statement for _, mon in need.items)),
    )


def _what(ctx: Ctx, need: _Need) -> str:
    if need.parameter is LabParameter.TROUGH:
        return f"{ctx.label(need.items[0][0].drug_id or '')} trough"
    return need.parameter.value.replace("-", " ")


def monitoring_due(ctx: Ctx) -> list[Alert]:
    """One alert per parameter whose latest result is older than the interval (or missing)."""
    alerts: list[Alert] = []
    for need in _collect(ctx):
        latest = ctx.latest(need.kinds)
        # A recent result (the usual case) needs no words: judged first, worded only for an alert.
        if latest is not None and (need.interval is None or (ctx.as_of - latest.date).days <= need.interval):
            continue
        drugs = ", ".join(ctx.label(m.drug_id or "") for m, _ in need.items)
        what = _what(ctx, need)
        if need.interval is None:
            alert = _no_interval(ctx, need, what, drugs)
            alerts += [alert] if alert else []
            continue
        starts = [m.start for m, _ in need.items]
        earliest_start: dt.date | None = None if any(s is None for s in starts) else min(s for s in starts if s)
        if latest is not None:
            age = (ctx.as_of - latest.date).days
            sev = Severity.WARNING if age > OVERDUE_FACTOR * need.interval else Severity.INFO
            state = "overdue" if sev is Severity.WARNING else "due"
            summary = (f"{what.capitalize()} {state}: last result {age} days ago "
                       f"(interval {need.interval} days; {drugs})")
            detail = f"The latest result is {latest.show()}, {age} days before {ctx.as_of}."
            if sev is Severity.WARNING:
                detail += (f" Calling it overdue beyond {OVERDUE_FACTOR}x the interval is an ipexrx convention.")
        else:
            since = (ctx.as_of - earliest_start).days if earliest_start else None
            if since is not None and since < need.interval:
                sev, state = Severity.INFO, "first result due"
                due = earliest_start + dt.timedelta(days=need.interval)  # type: ignore[operator]
                summary = f"{what.capitalize()}: first result due by {due} ({drugs} started {earliest_start})"
            else:
                sev, state = Severity.WARNING, "no result on record"
                summary = f"{what.capitalize()}: no result on record ({drugs}; interval {need.interval} days)"
            detail = "No result for this parameter is on record."
        bases = [mon.interval_basis for _, mon in need.items if mon.interval_basis]
        chosen = [mon for _, mon in need.items if mon.interval_days == need.interval]
        origin = [f"The {need.interval}-day interval is an ipexrx convention, not a label or guideline figure."
                  for mon in chosen[:1] if mon.interval_origin == "convention"]
        reasoning = " ".join([detail, *(mon.statement.text for _, mon in need.items[:2]),
                              *(b.text for b in bases[:1] if b), *origin])
        alerts.append(Alert(
            id=f"monitoring:{need.key}", rule="monitoring.monitoring_due", family="monitoring", severity=sev,
            summary=summary, reasoning=reasoning,
            action=f"Consider checking {what} (ipexrx interval {need.interval} days; basis given above).",
            triggers=[*(drug_trigger(ctx, m) for m, _ in need.items), *([lab_trigger(ctx, latest)] if latest else [])],
            sources=ctx.refs(*(mon.statement for _, mon in need.items), *bases),
        ))
    return alerts
