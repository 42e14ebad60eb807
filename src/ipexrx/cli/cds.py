"""``ipexrx cds``: the CDS Hooks service's records (feedback on the cards it issued).

Reads the same database as ``ipexrx serve`` (``$IPEXRX_DATABASE_URL`` or the user data directory;
``--database`` to name another).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer

from . import app

cds_app = typer.Typer(help="CDS Hooks service records: what clinicians did with the cards. See docs/cds-hooks.md.",
                      no_args_is_help=True)
app.add_typer(cds_app, name="cds")


def _since(value: str | None) -> dt.datetime | None:
    """``--since``: an ISO 8601 date (midnight UTC) or date-time (a time without a zone is UTC)."""
    if value is None:
        return None
    try:
        if len(value.strip()) == 10:
            d = dt.date.fromisoformat(value.strip())
            return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)
        t = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"expected an ISO 8601 date such as 2026-11-01 or a date-time such as "
                                 f"2026-11-01T08:00:00Z, got {value!r}", param_hint="--since") from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _print_report(rep: dict[str, Any]) -> None:
    scope = f" since {rep['since']}" if rep["since"] else ""
    if rep["service"]:
        scope += f" for {rep['service']}"
    tot = rep["total"]
    typer.echo(f"CDS card feedback{scope}: {tot['accepted']} accepted, {tot['overridden']} overridden")
    if not rep["by_card_type"]:
        typer.echo("No feedback recorded.")
        return
    width = max(len(r["card_type"]) for r in rep["by_card_type"])
    typer.echo("\nPer card type (the rule behind the card):")
    typer.echo(f"  {'card type'.ljust(width)}  accepted  overridden")
    for r in rep["by_card_type"]:
        typer.echo(f"  {r['card_type'].ljust(width)}  {r['accepted']:>8}  {r['overridden']:>10}")
    typer.echo("\nOverride reasons:")
    for r in rep["by_override_reason"]:
        typer.echo(f"  {r['count']:>6}  {r['code']} ({r['display']})")
    typer.echo(f"  {rep['overridden_without_reason']:>6}  overridden without a reason")


@cds_app.command("feedback")
def feedback(
    report: bool = typer.Option(False, "--report", help="Counts: accepted / overridden per card type and per "
                                "override reason."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    since: str | None = typer.Option(None, "--since", help="Only outcomes at or after this ISO 8601 date or "
                                     "date-time (UTC unless a zone is given)."),
    service: str | None = typer.Option(None, "--service", help="Only this CDS service id, e.g. ipexrx-order-sign."),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="Without --report: how many items to list."),
    database: str | None = typer.Option(None, "--database", help="Database URL (default: as `ipexrx serve`)."),
) -> None:
    """Feedback the EHRs sent on our cards: the latest items, or with --report the counts."""
    import json
    import os

    from ..storage import Database

    start = _since(since)
    db = Database(database or os.environ.get("IPEXRX_DATABASE_URL") or None)
    db.migrate()
    if report:
        from ..service.cds.feedback import feedback_report

        rep = feedback_report(db, start, service)
        if as_json:
            typer.echo(json.dumps(rep, indent=2))
        else:
            _print_report(rep)
        return
    rows = db.query_feedback(service_id=service, since=start, limit=limit)
    items = [{"service": r.service_id, "card": r.card_uuid, "outcome": r.outcome,
              "acceptedSuggestions": list(r.accepted_suggestions or []),
              "overrideReason": r.override_reason_code, "userComment": r.user_comment,
              "outcomeTimestamp": (r.outcome_timestamp if r.outcome_timestamp.tzinfo else
                                   r.outcome_timestamp.replace(tzinfo=dt.UTC)).isoformat().replace("+00:00", "Z")}
             for r in rows]
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    if not items:
        typer.echo("No feedback recorded.")
    for it in items:
        why = f" ({it['overrideReason']})" if it["overrideReason"] else ""
        typer.echo(f"{it['outcomeTimestamp']}  {it['service']}  {it['outcome']}{why}  card {it['card']}")
