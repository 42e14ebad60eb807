"""``ipexrx cds``: the CDS Hooks service's records (feedback on the cards it issued).

Reads the same database as ``ipexrx serve`` (``$IPEXRX_DATABASE_URL`` or the user data directory;
``--database`` to name another).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, NoReturn

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


# ---------------------------------------------------------------------------------------------
# Offline: what the service publishes and what it answers (no server, no network, no signature)
# ---------------------------------------------------------------------------------------------
def _hook_service(name: str) -> Any:
    """A CDS service by its id (ipexrx-order-sign) or its hook (order-sign)."""
    from ..service.cds.services import SERVICES

    for svc in SERVICES.values():
        if name in (svc.id, svc.hook):
            return svc
    choices = ", ".join(f"{s.id} ({s.hook})" for s in SERVICES.values())
    typer.echo(f"error: expected a CDS service id or hook: {choices}; got {name!r}", err=True)
    raise typer.Exit(1)


@cds_app.command("services")
def services_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the discovery document as the service serves it."),
) -> None:
    """The discovery document an EHR reads at <base>/cds-services: each service's id, hook, title and the FHIR
    queries it asks the EHR to prefetch. Runs offline."""
    import json

    from ..service.cds.services import OPTIONAL_KEYS, PREFETCH, SERVICES

    if as_json:
        services = [{"hook": s.hook, "title": s.title, "description": s.description, "id": s.id,
                     "prefetch": dict(PREFETCH)} for s in SERVICES.values()]
        typer.echo(json.dumps({"services": services}, indent=2))
        return
    for s in SERVICES.values():
        typer.echo(f"{s.id}  (hook {s.hook}): {s.title}")
    typer.echo("\nPrefetch (the same for every service; {{context.patientId}} is the chart's patient):")
    width = max(map(len, PREFETCH))
    for key, query in PREFETCH.items():
        typer.echo(f"  {key.ljust(width)}  {query}" + ("  (optional: not read by the rules yet)"
                                                        if key in OPTIONAL_KEYS else ""))


@cds_app.command("sample")
def sample_cmd(
    hook: str = typer.Argument(..., help="patient-view, order-select or order-sign (or the service id)."),
) -> None:
    """Print the shipped synthetic CDS Hooks request for a hook (an invented IPEX patient with every prefetch
    key): a starting point for a request of your own for `ipexrx cds cards --request`."""
    import json

    from ..service.cds import samples

    svc = _hook_service(hook)
    typer.echo(json.dumps(samples.load(svc.hook.replace("-", "_")), indent=2, ensure_ascii=False))


@cds_app.command("cards")
def cards_cmd(
    service: str = typer.Argument(..., help="The CDS service id (ipexrx-patient-view, ipexrx-order-select, "
                                  "ipexrx-order-sign) or its hook."),
    request: Path | None = typer.Option(None, "--request", help="A CDS Hooks request (JSON) with the prefetch; "
                                        "default: the shipped sample of the hook (`ipexrx cds sample`)."),
    as_of: str | None = typer.Option(None, "--as-of", help="The date the chart is judged on, YYYY-MM-DD (default: "
                                     "today, as the service does)."),
    as_json: bool = typer.Option(False, "--json", help="Print the CDS Hooks response ({\"cards\": [...]})."),
) -> None:
    """The cards the service would answer to a CDS Hooks request, without a server: the request's prefetch is
    judged as the service judges it. Nothing is fetched (a request whose prefetch lacks a key the rules read is
    refused, as the service refuses it without a FHIR server) and no signature is checked (the JWT belongs to
    the HTTP call). Card links use IPEXRX_BASE_URL (default http://127.0.0.1:8000)."""
    import asyncio
    import json

    from pydantic import ValidationError

    from ..service.cds import samples
    from ..service.cds.engine import evaluate
    from ..service.cds.fhir import PrefetchUnavailable, gather
    from ..service.cds.models import CdsRequest
    from ..service.settings import Settings
    from .errors import echo_json_error, echo_json_message

    svc = _hook_service(service)
    date = _as_of(as_of)
    where = str(request) if request is not None else f"the {svc.hook} sample"

    def refuse(message: str, issues: list[dict[str, str]] | None = None) -> NoReturn:
        """With --json, the refusal is also JSON on stdout (the lines on stderr are the caller's); exit 1."""
        if as_json:
            echo_json_message("CdsRequestError", message, issues)
        raise typer.Exit(1)
    if request is None:
        data: Any = samples.load(svc.hook.replace("-", "_"))
    else:
        from ..patient.errors import PatientInputError
        from ..patient.model import decode_json

        try:
            data = decode_json(request.read_bytes(), str(request))
        except OSError as exc:
            typer.echo(f"error: cannot read {request}: {exc.strerror}", err=True)
            refuse(f"cannot read {request}", [{"path": "$", "expected": "a readable file",
                                               "got": str(exc.strerror or exc), "where": str(request)}])
        except PatientInputError as exc:
            issue = exc.issues[0]
            typer.echo(f"error: {request}: expected {issue.expected}, got {issue.got}", err=True)
            if as_json:
                echo_json_error(exc, [str(request)])
            raise typer.Exit(1) from None
    try:
        body = CdsRequest.model_validate(data)
    except ValidationError as exc:
        typer.echo(f"error: {where} is not a CDS Hooks request:", err=True)
        issues: list[dict[str, str]] = []
        for e in exc.errors(include_url=False):
            field = ".".join(str(p) for p in e["loc"]) or "the document"
            path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"])
            if e["type"] == "missing":
                expected, got = "a value (required)", "nothing"
            elif e["type"] == "value_error":  # our validators say what was expected and what arrived
                expected, got = e["msg"].removeprefix("Value error, "), ""
            else:
                expected, got = e["msg"].removeprefix("Input should be "), repr(e.get("input"))[:80]
            if len(issues) < 20:
                typer.echo(f"  - field {field}: {f'expected {expected}, got {got}' if got else expected}", err=True)
            issues.append({"path": path, "expected": expected, "got": got, "where": f"{where}, field {field}"})
        refuse(f"{where} is not a CDS Hooks request", issues)
    if body.hook != svc.hook:
        message = f"{where}: service {svc.id} answers the {svc.hook} hook; the request's hook is {body.hook!r}"
        typer.echo(f"error: {message}", err=True)
        refuse(message, [{"path": "$.hook", "expected": svc.hook, "got": body.hook, "where": f"{where}, field hook"}])
    settings = Settings.from_env()
    try:  # the service's own prefetch check; without a fhirServer it never fetches
        gathered = asyncio.run(gather(body.model_copy(update={"fhirServer": None}), settings))
    except PrefetchUnavailable as exc:
        message = (f"{where}: the prefetch lacks {', '.join(exc.keys)} (expected for each key what its query "
                   "returns: the Patient, a Bundle for a search, or null when the EHR has no data); offline nothing "
                   "is fetched from a FHIR server")
        typer.echo(f"error: {message}", err=True)
        refuse(message, [{"path": f"$.prefetch.{k}", "expected": "what its query returns (a resource, a Bundle or "
                          "null)", "got": "nothing", "where": f"{where}, prefetch key {k}"} for k in exc.keys])
    base = settings.base_url or "http://127.0.0.1:8000"
    smart = bool(settings.smart_issuers and settings.smart_client_id)
    cards = [card for card, _ in evaluate(svc, body, gathered.values, base, date, smart=smart)]
    if as_json:
        typer.echo(json.dumps({"cards": cards}, indent=2, ensure_ascii=False))
        return
    order = {"critical": 0, "warning": 1, "info": 2}
    typer.echo(f"{svc.id} ({svc.hook}) on {where}, judged as of {date.isoformat()}: {len(cards)} card(s)")
    for card in sorted(cards, key=lambda c: order.get(c.get("indicator", ""), 3)):  # alerts first
        typer.echo(f"\n{card.get('indicator', '?')}: {card['summary']}")
        source = card.get("source") or {}
        if source.get("label"):
            typer.echo(f"  source: {source['label']}")
        for s in card.get("suggestions") or []:
            typer.echo(f"  suggestion: {s.get('label')}")
        for link in card.get("links") or []:  # the label the EHR shows (the address is in --json)
            typer.echo(f"  link: {link.get('label')}")


def _as_of(value: str | None) -> dt.date:
    if value is None:
        return dt.datetime.now(dt.UTC).date()
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(f"expected a date YYYY-MM-DD, got {value!r}", param_hint="--as-of") from None
