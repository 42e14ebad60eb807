"""CDS Hooks 2.0 endpoints: discovery, the three services, feedback (and its query)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from ..deps import cds_auth, db_of, public_base, settings_of
from ..errors import ERROR_RESPONSES, ApiError, ErrorBody
from ..fastjson import FastJSONResponse, FastJSONRoute
from ..security import AuthContext
from .body import OPENAPI_BODY, read_cds_request
from .models import (
    CdsResponse,
    Discovery,
    FeedbackList,
    FeedbackRecord,
    FeedbackRequest,
    FeedbackStored,
    ServiceDescription,
)
from .services import PREFETCH, SERVICES

router = APIRouter(tags=["CDS Hooks"], route_class=FastJSONRoute)

UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or refused JWT (no detail given)."}}

_DISCOVERY = Discovery(services=[
    ServiceDescription(hook=s.hook, title=s.title, description=s.description, id=s.id, prefetch=dict(PREFETCH))
    for s in SERVICES.values()
]).model_dump(exclude_none=True)


@router.get("/cds-services", response_model=Discovery, responses=UNAUTHORIZED,
            summary="CDS Hooks discovery: our services and their prefetch templates")
async def discovery(_auth: AuthContext = Depends(cds_auth)) -> JSONResponse:
    return FastJSONResponse(_DISCOVERY)


def _service(service_id: str) -> Any:
    svc = SERVICES.get(service_id)
    if svc is None:
        raise ApiError(404, "not_found", f"no CDS service '{service_id}'", suggestions=sorted(SERVICES))
    return svc


def _judged_inline(request: Request, body_bytes: int) -> bool:
    """Whether a chart that arrived whole in its request may be judged on the event loop.

    Why: an ordinary chart is judged in a little over a millisecond. Handing it to a pool thread
    costs more than that in thread switches and contention for Python's interpreter lock between the
    event loop and the thread (measured: one worker answered 225 distinct charts a second through the
    pool, 285 inline), and gains nothing, since threads do not add CPU. A chart of many megabytes
    would stall every other request of the worker for seconds, so above ``inline_analysis_bytes`` it
    goes to the bounded pool (503 when saturated); so does any chart whose data were fetched from the
    FHIR server (see :func:`~.engine.run_hook`), whatever the size of the request."""
    return body_bytes <= settings_of(request).inline_analysis_bytes


@router.post(
    "/cds-services/{service_id}",
    response_model=CdsResponse,
    responses={**UNAUTHORIZED, **ERROR_RESPONSES,
               400: {"model": ErrorBody, "description": "Wrong hook for this service, or the body is not JSON."},
               412: {"description": "Prefetch missing and the FHIR server could not supply it "
                     "(body: an OperationOutcome).",
                     "content": {"application/fhir+json": {"schema": {"type": "object"}}}},
               415: {"model": ErrorBody, "description": "The body is not declared as JSON."},
               503: {"model": ErrorBody, "description": "Busy with other analyses: try again after Retry-After "
                     "seconds."}},
    summary="Call a CDS service (patient-view, order-select or order-sign)",
    openapi_extra=OPENAPI_BODY,
)
async def call_service(service_id: str, request: Request) -> Response:
    # Requests reach this route only when the hook fast path (cds/fastpath.py) is off; the route stays
    # for the OpenAPI document and as the reference the fast path is tested against.
    return await answer_hook(service_id, request)


async def answer_hook(service_id: str, request: Request) -> Response:
    """A CDS service call, from the JWT to the cards (what the route and the fast path both run).

    The hot path: JWT, body and answer handled here rather than by FastAPI's dependency and body
    machinery (see cds/body.py for why); the checks and the errors are the same."""
    auth = await cds_auth(request)
    svc = _service(service_id)
    body = await read_cds_request(request)
    if body.hook != svc.hook:
        raise ApiError(400, "wrong_hook", f"service '{svc.id}' answers the '{svc.hook}' hook, got '{body.hook}'",
                       issues=[{"path": "$.hook", "expected": svc.hook, "got": repr(body.hook)}])
    from .engine import run_hook
    from .fhir import PrefetchUnavailable

    try:
        issued = await run_hook(svc, body, settings_of(request), public_base(request), auth.issuer,
                                request.app.state.analysis_pool,
                                inline=_judged_inline(request, len(await request.body())))
    except PrefetchUnavailable as exc:
        return JSONResponse(exc.operation_outcome(), status_code=412, media_type="application/fhir+json")
    if issued:
        request.app.state.cardlog.record_call(svc.id, body.hookInstance, issued, auth.issuer, auth.tenant)
    return FastJSONResponse({"cards": [card for card, _ in issued]})


@router.post(
    "/cds-services/{service_id}/feedback",
    response_model=FeedbackStored,
    responses={**UNAUTHORIZED, **ERROR_RESPONSES},
    summary="Record what the clinician did with our cards (accepted / overridden)",
)
async def feedback(
    service_id: str,
    request: Request,
    body: FeedbackRequest = Body(...),
    auth: AuthContext = Depends(cds_auth),
) -> FeedbackStored:
    svc = _service(service_id)
    from .feedback import feedback_issues

    request.app.state.cardlog.flush()  # the cards just issued must be known to check the reasons against them
    issued = db_of(request).cards_by_uuid(list({item.card for item in body.feedback}))
    # Only this client's own cards count (another EHR's card is as unknown to it as a made-up uuid).
    own = {u: c for u, c in issued.items() if c.issuer == auth.issuer and c.tenant == auth.tenant}
    issues = feedback_issues(body.feedback, own)
    if issues:
        raise ApiError(422, "invalid_feedback", f"{len(issues)} feedback item problem(s): "
                       f"{issues[0]['path']} expected {issues[0]['expected']}", issues=issues)
    rows = []
    for item in body.feedback:
        reason = item.overrideReason.reason if item.overrideReason else None
        rows.append({
            "service_id": svc.id,
            "card_uuid": item.card,
            "outcome": item.outcome,
            "accepted_suggestions": [s.id for s in item.acceptedSuggestions or []],
            "override_reason_system": reason.system if reason else None,
            "override_reason_code": reason.code if reason else None,
            "override_reason_display": reason.display if reason else None,
            "user_comment": item.overrideReason.userComment if item.overrideReason else None,
            "outcome_timestamp": item.outcomeTimestamp,
            "issuer": auth.issuer,
            "tenant": auth.tenant,
        })
    db_of(request).add_feedback(rows)
    return FeedbackStored(stored=len(rows))


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@router.get(
    "/api/v1/cds-feedback",
    response_model=FeedbackList,
    responses={**UNAUTHORIZED, **ERROR_RESPONSES},
    summary="Query recorded CDS feedback (same JWT rules as the CDS endpoints)",
)
async def query_feedback(
    request: Request,
    service: str | None = Query(None, description="Service id, e.g. ipexrx-order-sign."),
    outcome: Literal["accepted", "overridden"] | None = Query(None),
    card: str | None = Query(None, description="Card uuid."),
    since: dt.datetime | None = Query(None, description="Only outcomes at or after this ISO 8601 time."),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    auth: AuthContext = Depends(cds_auth),
) -> FeedbackList:
    if service is not None:
        _service(service)
    request.app.state.cardlog.flush()
    db = db_of(request)
    rows = db.query_feedback(service_id=service, outcome=outcome, card_uuid=card,
                                         since=_utc(since) if since else None, limit=limit, offset=offset)
    cards = db.cards_by_uuid([r.card_uuid for r in rows])
    out = []
    for r in rows:
        issued = cards.get(r.card_uuid)
        reason = {k: v for k, v in (("system", r.override_reason_system), ("code", r.override_reason_code),
                                    ("display", r.override_reason_display)) if v}
        out.append(FeedbackRecord(
            id=r.id, service=r.service_id, card=r.card_uuid, outcome=r.outcome,
            acceptedSuggestions=list(r.accepted_suggestions or []), overrideReason=reason or None,
            userComment=r.user_comment, outcomeTimestamp=_utc(r.outcome_timestamp),
            receivedAt=_utc(r.received_at), issuer=r.issuer, tenant=r.tenant,
            rule=issued.rule if issued else None, alert=issued.alert_id if issued else None,
            indicator=issued.indicator if issued else None,
        ))
    return FeedbackList(feedback=out)
