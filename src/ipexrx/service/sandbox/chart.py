"""The sandbox's chart: open a patient (patient-view), draft orders (order-select, then order-sign), act
on the returned cards (accept a suggestion, override with a reason: both sent as feedback) and
launch the SMART app from a card's ``smart`` link.

No script runs on these pages: every action is a form POSTed to the sandbox, which calls the CDS
service server-side and answers with a redirect back to the chart (post/redirect/get). What a
browser has drafted and been shown lives in the sandbox's memory under a random session id (an
HttpOnly, SameSite=Strict cookie); every form carries that session's CSRF token.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from .client import CdsUnavailable
from .orders import FREQUENCIES, OrderInputError, describe, draft_order, orderables
from .store import SearchError, display_name, searchset

router = APIRouter(include_in_schema=False)

COOKIE = "ipexrx_sandbox"
MAX_SESSIONS = 500
INDICATOR_WORD = {"critical": "Critical", "warning": "Warning", "info": "Information"}
HOOK_SCOPE = ["patient/*.rs"]


@dataclass
class HookResult:
    hook: str
    service: str
    cards: list[dict[str, Any]]
    at: str


@dataclass
class ChartSession:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    drafts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    view: dict[str, HookResult] = field(default_factory=dict)
    orders: dict[str, HookResult] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)  # card uuid -> what the user did
    messages: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # patient -> (kind, text)
    counter: int = 0

    def say(self, patient: str, kind: str, text: str) -> None:
        self.messages.setdefault(patient, []).append((kind, text))


class Sessions:
    def __init__(self) -> None:
        self.items: OrderedDict[str, ChartSession] = OrderedDict()
        self.lock = threading.Lock()

    def get_or_new(self, sid: str | None) -> tuple[str, ChartSession]:
        with self.lock:
            if sid and sid in self.items:
                self.items.move_to_end(sid)
                return sid, self.items[sid]
            sid = secrets.token_urlsafe(32)
            while len(self.items) >= MAX_SESSIONS:
                self.items.popitem(last=False)
            self.items[sid] = ChartSession()
            return sid, self.items[sid]


def _sandbox(request: Request) -> Any:
    return request.app.state.sandbox


def _session(request: Request) -> tuple[str, ChartSession]:
    sid, session = _sandbox(request).sessions.get_or_new(request.cookies.get(COOKIE))
    return sid, session


def _with_cookie(resp: Response, sid: str) -> Response:
    resp.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/")
    resp.headers["cache-control"] = "no-store"
    return resp


def _page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    from .pages import render

    return HTMLResponse(render(request, "sandbox_message.html", title=title, message=message), status_code=status)


def _back(pid: str, sid: str, anchor: str = "") -> Response:
    return _with_cookie(RedirectResponse(f"/chart/{pid}{anchor}", status_code=303), sid)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%H:%M:%S UTC")


# --- the record and the hook calls --------------------------------------------------------------------


def prefetch_for(sb: Any, patient: str) -> dict[str, Any]:
    """The service's prefetch templates filled from the sandbox's store (what an EHR prefetches)."""
    from ..cds.fhir import render_template
    from ..cds.services import PREFETCH

    out: dict[str, Any] = {}
    for key, template in PREFETCH.items():
        query = render_template(template, {"patientId": patient})
        if query is None:
            continue
        path, _, qs = str(query).partition("?")
        if "/" in path:
            rtype, rid = path.split("/", 1)
            found = sb.store.read(rtype, rid)
            if found is not None:
                out[key] = found
            continue
        try:
            out[key] = searchset(sb.fhir_base, path, qs, sb.store.search(path, parse_qsl(qs)))
        except SearchError:
            continue
    return out


def fire(sb: Any, hook: str, patient: str, drafts: list[dict[str, Any]] | None = None,
         selections: list[str] | None = None) -> HookResult:
    context: dict[str, Any] = {"userId": "Practitioner/sandbox-clinician", "patientId": patient}
    if drafts is not None:
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": d} for d in drafts]}
    if selections is not None:
        context["selections"] = selections
    token = sb.auth.issue_token(patient, HOOK_SCOPE, seconds=300)
    service, cards = sb.cds.call(hook, context, prefetch_for(sb, patient), sb.fhir_base, token, patient)
    return HookResult(hook, service, cards, _now())


def _find_card(session: ChartSession, patient: str, uuid: str) -> tuple[HookResult, dict[str, Any]] | None:
    for result in (session.view.get(patient), session.orders.get(patient)):
        if result is None:
            continue
        for card in result.cards:
            if card.get("uuid") == uuid:
                return result, card
    return None


async def _form(request: Request, session: ChartSession) -> dict[str, str] | None:
    """The POSTed form, or None when its CSRF token is not this session's."""
    form = await request.form()
    values = {k: str(v) for k, v in form.items()}
    if not hmac.compare_digest(values.get("csrf", "").encode(), session.csrf.encode()):
        return None
    return values


def _refused(request: Request, sid: str) -> Response:
    resp = _page(request, 403, "The form has expired", "This form belongs to an earlier visit (or another browser "
                 "tab that was reset). Open the chart again and repeat the action.")
    return _with_cookie(resp, sid)


def _patient(request: Request, pid: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = _sandbox(request).store.read("Patient", pid)
    return found


# --- pages ------------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def patients(request: Request) -> Response:
    from .pages import render

    sid, _ = _session(request)
    rows = [{"id": p["id"], "name": display_name(p), "birth": p.get("birthDate", "not recorded"),
             "gender": p.get("gender", "not recorded")} for p in _sandbox(request).store.patients()]
    return _with_cookie(HTMLResponse(render(request, "sandbox_patients.html", title="Patients", patients=rows)), sid)


def _record_summary(sb: Any, pid: str) -> dict[str, list[str]]:
    def texts(rtype: str, element: str) -> list[str]:
        out = []
        for r in sb.store.search(rtype, [("patient", pid)]):
            cc = r.get(element) or {}
            text = cc.get("text") or next((c.get("display") for c in cc.get("coding") or [] if c.get("display")),
                                          None)
            if text:
                status = r.get("status") or (r.get("clinicalStatus") or {}).get("text")
                out.append(f"{text} ({status})" if isinstance(status, str) and status else str(text))
        return out

    return {"Medicines": texts("MedicationStatement", "medicationCodeableConcept")
            + texts("MedicationRequest", "medicationCodeableConcept"),
            "Conditions": texts("Condition", "code"), "Procedures": texts("Procedure", "code"),
            "Immunizations": texts("Immunization", "vaccineCode")}


@router.get("/chart/{pid}", response_class=HTMLResponse)
async def chart(request: Request, pid: str, reopen: str = "") -> Response:
    from .pages import render

    sb = _sandbox(request)
    sid, session = _session(request)
    patient = _patient(request, pid)
    if patient is None:
        return _with_cookie(_page(request, 404, "No such patient", "The sandbox holds no patient under this "
                                  "address; choose one from the patient list."), sid)
    if reopen or pid not in session.view:
        try:
            session.view[pid] = await run_in_threadpool(fire, sb, "patient-view", pid)
        except CdsUnavailable as exc:
            session.view.pop(pid, None)
            session.say(pid, "error", f"Decision support is unavailable: {exc}.")
    messages = session.messages.pop(pid, [])
    html = render(request, "sandbox_chart.html", title=display_name(patient), patient=patient,
                  name=display_name(patient), pid=pid, csrf=session.csrf, messages=messages,
                  view=session.view.get(pid), orders=session.orders.get(pid), outcomes=session.outcomes,
                  drafts=[(d["id"], describe(d)) for d in session.drafts.get(pid, [])],
                  orderables=orderables(), frequencies=FREQUENCIES, record=_record_summary(sb, pid),
                  indicator_word=INDICATOR_WORD)
    return _with_cookie(HTMLResponse(html), sid)


async def _posted(request: Request) -> tuple[str, ChartSession, dict[str, str]] | Response:
    """The browser's session and its checked form; else the refusal to send back."""
    sid, session = _session(request)
    form = await _form(request, session)
    if form is None:
        return _refused(request, sid)
    return sid, session, form


@router.post("/chart/{pid}/orders")
async def add_order(request: Request, pid: str) -> Response:
    sb = _sandbox(request)
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    sid, session, form = posted
    if _patient(request, pid) is None:
        return _with_cookie(_page(request, 404, "No such patient", "Choose a patient from the patient list."), sid)
    session.counter += 1
    try:
        draft = draft_order(form.get("choice", ""), form.get("dose", ""), form.get("unit", "mg"),
                            form.get("frequency", ""), pid, f"draft-{session.counter}")
    except OrderInputError as exc:
        session.say(pid, "error", f"The order was not drafted: {exc}")
        return _back(pid, sid, "#orders")
    drafts = session.drafts.setdefault(pid, [])
    drafts.append(draft)
    ref = f"MedicationRequest/{draft['id']}"
    try:
        session.orders[pid] = await run_in_threadpool(fire, sb, "order-select", pid, list(drafts), [ref])
        n = len(session.orders[pid].cards)
        session.say(pid, "info", f"Drafted {describe(draft)}. Order check on selection: "
                    f"{n} card{'s' if n != 1 else ''}.")
    except CdsUnavailable as exc:
        session.say(pid, "error", f"Drafted {describe(draft)}, but the order check is unavailable: {exc}.")
    return _back(pid, sid, "#order-checks")


@router.post("/chart/{pid}/drafts/remove")
async def remove_draft(request: Request, pid: str) -> Response:
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    sid, session, form = posted
    drafts = session.drafts.get(pid, [])
    kept = [d for d in drafts if d["id"] != form.get("draft")]
    if len(kept) < len(drafts):
        session.say(pid, "info", "The draft order was removed.")
    session.drafts[pid] = kept
    return _back(pid, sid, "#orders")


def _sign(sb: Any, session: ChartSession, pid: str) -> None:
    drafts = session.drafts.pop(pid, [])
    today = dt.date.today().isoformat()
    for d in drafts:
        sb.store.add({**d, "id": d["id"].replace("draft-", f"signed-{secrets.token_hex(3)}-"), "status": "active",
                      "authoredOn": today})
    session.orders.pop(pid, None)
    session.say(pid, "info", f"{len(drafts)} order{'s' if len(drafts) != 1 else ''} signed and added to the "
                "record.")


@router.post("/chart/{pid}/sign")
async def sign(request: Request, pid: str) -> Response:
    sb = _sandbox(request)
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    sid, session, form = posted
    drafts = session.drafts.get(pid, [])
    if not drafts:
        session.say(pid, "error", "There is no draft order to sign.")
        return _back(pid, sid, "#orders")
    if form.get("confirm") == "1":
        _sign(sb, session, pid)
        return _back(pid, sid, "#orders")
    try:
        result = await run_in_threadpool(fire, sb, "order-sign", pid, list(drafts))
    except CdsUnavailable as exc:
        session.say(pid, "error", f"The orders were not signed: the order check is unavailable ({exc}).")
        return _back(pid, sid, "#orders")
    if not result.cards:
        _sign(sb, session, pid)
        session.say(pid, "info", "The order check before signing returned no cards.")
        return _back(pid, sid, "#orders")
    session.orders[pid] = result
    n = len(result.cards)
    session.say(pid, "info", f"Order check before signing: {n} card{'s' if n != 1 else ''}. Review "
                f"{'them' if n != 1 else 'it'}, change the orders or sign anyway.")
    return _back(pid, sid, "#order-checks")


def apply_actions(drafts: list[dict[str, Any]], actions: list[dict[str, Any]], pid: str) -> list[str]:
    """Apply a suggestion's actions to the draft orders (in place); what was done, in words. Raises
    ValueError for an action the sandbox cannot apply (nothing is changed then)."""
    work = [dict(d) for d in drafts]
    done = []
    for action in actions:
        kind = action.get("type")
        resource = action.get("resource") if isinstance(action.get("resource"), dict) else None
        if kind == "delete":
            ref = str(action.get("resourceId") or "")
            if not ref and resource is not None:
                ref = f"{resource.get('resourceType')}/{resource.get('id')}"
            gone = [d for d in work if f"{d['resourceType']}/{d['id']}" == ref]
            if not gone:
                raise ValueError("the suggestion removes an order that is not among the draft orders of this chart "
                                 "(only draft orders can be changed here)")
            work = [d for d in work if f"{d['resourceType']}/{d['id']}" != ref]
            done.append(f"removed the draft order for {describe(gone[0])}")
        elif kind == "create" and resource is not None:
            new = {**resource, "subject": {"reference": f"Patient/{pid}"}, "status": "draft"}
            new.setdefault("id", f"suggested-{secrets.token_hex(3)}")
            work.append(new)
            done.append(f"added a draft order: {describe(new)}")
        elif kind == "update" and resource is not None:
            ref = f"{resource.get('resourceType')}/{resource.get('id')}"
            idx = next((i for i, d in enumerate(work) if f"{d['resourceType']}/{d['id']}" == ref), None)
            if idx is None:
                raise ValueError("the suggestion changes an order that is not among the draft orders of this chart "
                                 "(only draft orders can be changed here)")
            work[idx] = {**resource, "status": "draft"}
            done.append(f"changed the draft order: {describe(work[idx])}")
        else:
            raise ValueError(f"it holds an action the sandbox cannot apply (type {str(kind)[:20]!r}; expected "
                             "create or update with a resource, or delete with a resourceId)")
    drafts[:] = work
    return done


@dataclass
class _CardForm:
    """A posted answer to a card: the checked form, the card it names and the hook call that showed it."""

    sid: str
    session: ChartSession
    form: dict[str, str]
    result: HookResult
    card: dict[str, Any]


async def _card_form(request: Request, pid: str, unchanged: str) -> _CardForm | Response:
    """The form of an accept / override post and its card; else the answer to send back (a refused form,
    or a note that the card is gone, ending in ``unchanged``)."""
    posted = await _posted(request)
    if isinstance(posted, Response):
        return posted
    sid, session, form = posted
    found = _find_card(session, pid, form.get("card", ""))
    if found is None:
        session.say(pid, "error", f"That card is no longer shown; {unchanged}.")
        return _back(pid, sid)
    return _CardForm(sid, session, form, *found)


@router.post("/chart/{pid}/accept")
async def accept(request: Request, pid: str) -> Response:
    sb = _sandbox(request)
    posted = await _card_form(request, pid, "nothing was changed")
    if not isinstance(posted, _CardForm):
        return posted
    sid, session, form, result, card = posted.sid, posted.session, posted.form, posted.result, posted.card
    suggestion = next((s for s in card.get("suggestions") or [] if s.get("uuid") == form.get("suggestion")), None)
    if suggestion is None:
        session.say(pid, "error", "That suggestion is not on the card; nothing was changed.")
        return _back(pid, sid)
    try:
        done = apply_actions(session.drafts.setdefault(pid, []), suggestion.get("actions") or [], pid)
    except ValueError as exc:
        session.say(pid, "error", f"The suggestion was not applied: {exc}.")
        return _back(pid, sid, "#orders")
    session.outcomes[card["uuid"]] = f"Accepted: {suggestion.get('label')}"
    try:
        await run_in_threadpool(sb.cds.feedback, result.service, card["uuid"], "accepted",
                                accepted=[suggestion["uuid"]])
        sent = "feedback sent (accepted)"
    except CdsUnavailable as exc:
        sent = f"the feedback could not be sent ({exc})"
    session.say(pid, "info", f"Suggestion applied: {'; '.join(done) or 'no change to the orders'}; {sent}.")
    return _back(pid, sid, "#orders")


@router.post("/chart/{pid}/override")
async def override(request: Request, pid: str) -> Response:
    sb = _sandbox(request)
    posted = await _card_form(request, pid, "no feedback was sent")
    if not isinstance(posted, _CardForm):
        return posted
    sid, session, form, result, card = posted.sid, posted.session, posted.form, posted.result, posted.card
    offered = card.get("overrideReasons") or []
    reason = next((r for r in offered if r.get("code") == form.get("reason")), None)
    if offered and reason is None:
        session.say(pid, "error", "Choose one of the card's reasons for going ahead; no feedback was sent.")
        return _back(pid, sid)
    comment = form.get("comment", "").strip()[:500] or None
    try:
        await run_in_threadpool(sb.cds.feedback, result.service, card["uuid"], "overridden", reason=reason,
                                comment=comment)
    except CdsUnavailable as exc:
        session.say(pid, "error", f"The feedback could not be sent: {exc}.")
        return _back(pid, sid)
    said = f"Overridden: {reason['display']}" if reason else "Dismissed"
    session.outcomes[card["uuid"]] = said
    session.say(pid, "info", f"{said}; feedback sent (overridden).")
    return _back(pid, sid)


@router.get("/chart/{pid}/launch")
def launch(request: Request, pid: str, card: str = "", link: int = 0) -> Response:
    sb = _sandbox(request)
    sid, session = _session(request)
    found = _find_card(session, pid, card)
    links = (found[1].get("links") or []) if found else []
    if found is None or not 0 <= link < len(links) or links[link].get("type") != "smart":
        return _with_cookie(_page(request, 404, "No app link", "That card or its app link is no longer shown; "
                                  "open the chart again."), sid)
    target = str(links[link].get("url", ""))
    if not target.startswith(f"{sb.app_url}/"):
        return _with_cookie(_page(request, 400, "App not registered", "The card's app link points to an app this "
                                  "sandbox has not registered, so it was not opened."), sid)
    token = sb.auth.new_launch(pid, links[link].get("appContext"))
    resp = RedirectResponse(f"{target}?{urlencode({'iss': sb.fhir_base, 'launch': token})}", status_code=303)
    return _with_cookie(resp, sid)
