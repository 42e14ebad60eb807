"""The 'optimal dosing not established' caveat wherever a dose is shown.

Why: the source page and the literature agree that no dose of any of these drugs has been
established for IPEX (no comparative studies); a dose printed by ipexrx -- the patient's own or
a label-fraction arithmetic -- must never read as a recommendation. One info alert lists every
dosed drug in the KB, citing each drug's ``dosing_caveat`` (or the disease-level caveat).
"""

from __future__ import annotations

from ...knowledge.schema import Statement
from ..context import Ctx, drug_trigger
from ..models import Alert, Severity


def dosing_not_established(ctx: Ctx) -> list[Alert]:
    """Info alert when any current/planned KB drug has a recorded dose."""
    dosed = [m for m in ctx.current_and_planned if m.drug_id and m.dose is not None]
    if not dosed:
        return []
    caveats: list[Statement | None] = [ctx.dosing_caveat(m.drug_id or "") for m in dosed]
    first = next((c for c in caveats if c is not None), None)
    return [Alert(
        id="dosing:not-established", rule="dosing.dosing_not_established", family="dosing", severity=Severity.INFO,
        summary="Optimal dosing in IPEX has not been established for the doses shown",
        reasoning=(first.text if first else "No dose has been established for IPEX.")
        + " Doses on this page are the record's own, shown for checking, not recommended.",
        action="Consider dosing by response, tolerance and (where measured) drug levels, with specialist input.",
        triggers=[drug_trigger(ctx, m) for m in dosed], sources=ctx.refs(*caveats),
    )]
