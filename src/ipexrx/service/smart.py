"""SMART App Launch 2.0: the assessment as an app inside the EHR (public client, PKCE S256).

Flow (https://hl7.org/fhir/smart-app-launch/app-launch.html):

1. ``GET /smart/launch?iss=<FHIR base>&launch=<token>`` (EHR launch) or ``?iss=<FHIR base>``
   (standalone launch). ``iss`` must be one of ``IPEXRX_SMART_ISSUERS``; any other is refused with
   a page before any name lookup or connection. The server's ``.well-known/smart-configuration``
   is read (through the outbound FHIR client: vetted addresses, no redirects, byte cap), and the
   browser is sent (302) to its ``authorization_endpoint`` with a PKCE S256 challenge, a random
   ``state`` and ``aud=<iss>``.
2. ``GET /smart/callback?code=&state=``: ``state`` must be the one issued to this browser (the
   session cookie: random id + HMAC, HttpOnly, SameSite=Lax, Secure over TLS). The code is
   exchanged at the ``token_endpoint`` with the ``code_verifier`` (public client: ``client_id`` in
   the body, no secret). The token stays in the server-side session; the browser is sent (303) to
   ``/smart/patient``, so the code leaves the address bar and a reload does not replay it.
3. ``GET /smart/patient``: the patient's record is read from the FHIR server with the access
   token (the same queries as the CDS Hooks prefetch), assembled into a Bundle, read by the FHIR
   reader and assessed; the page shows the report, alerts first.

Tokens are kept in this process's memory only, never put in a cookie, a page, a URL or a log, and
are sent only to the issuer's FHIR base URL (the access token) and token endpoint (the code and
verifier). Sessions are per process: with several worker processes, a load balancer must keep a
browser on one of them (see docs/ehr-integration.md).

authlib supplies the OAuth 2.0 pieces that carry no network of their own (the authorization URL,
the token request body, PKCE); requests go through :mod:`.cds.outbound`, which authlib's own httpx
clients would bypass.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .settings import Settings

log = logging.getLogger("ipexrx.service.smart")

router = APIRouter(include_in_schema=False)

COOKIE = "ipexrx_smart"
COOKIE_PATH = "/smart"
LAUNCH_SECONDS = 600  # from the launch to the callback: the user signs in and consents meanwhile
SESSION_SECONDS = 3600  # after sign-in, at most (less when the access token expires sooner)
MAX_SESSIONS = 10_000
CONFIG_MAX_BYTES = 256 * 1024
TOKEN_MAX_BYTES = 256 * 1024
# What the app reads (SMART v2 scopes: r = read, s = search): the queries of the CDS Hooks prefetch.
READ_SCOPES = ("patient/Patient.rs", "patient/MedicationRequest.rs", "patient/MedicationStatement.rs",
               "patient/Observation.rs", "patient/Condition.rs", "patient/Procedure.rs",
               "patient/Immunization.rs", "patient/AllergyIntolerance.rs")
IDENTITY_SCOPES = ("openid", "fhirUser")
FHIR_ID = re.compile(r"(?!\.+$)[A-Za-z0-9\-.]{1,64}")  # R4 id; never only dots (a path step)
# Searches a server may not offer at all (US Core R4 dropped MedicationStatement): an answer saying the
# type is unknown or unsupported is noted on the page, never read as "no such records".
MAY_BE_UNSUPPORTED = {"medication_statements": "MedicationStatement"}
UNSUPPORTED_STATUSES = {400, 404, 405, 501}
SEARCH_NAMES = {"patient": "Patient", "conditions": "Condition", "medications": "MedicationRequest",
                "medication_statements": "MedicationStatement", "observations": "laboratory Observation",
                "vital_signs": "vital-sign Observation", "procedures": "Procedure", "immunizations": "Immunization",
                "allergies": "AllergyIntolerance"}


def scope_for(launch: str | None) -> str:
    """The scope asked for: ``launch`` with an EHR launch token, ``launch/patient`` (pick a patient) without."""
    return " ".join(("launch" if launch else "launch/patient", *IDENTITY_SCOPES, *READ_SCOPES))


# --- the server-side session store -------------------------------------------------------------------


@dataclass(repr=False)  # repr would print the verifier and the token
class SmartSession:
    iss: str  # the listed, normalised FHIR base URL
    expires: float
    token_endpoint: str
    state: str | None = None
    code_verifier: str | None = None
    access_token: str | None = None
    token_type: str = "Bearer"
    patient: str | None = None
    scope: str = ""
    fhir_user: str | None = None
    notes: list[str] = field(default_factory=list)
    card_context: dict[str, Any] | None = None  # the CDS card's appContext, when the EHR passed it on

    def __repr__(self) -> str:
        return f"SmartSession(iss={self.iss!r}, signed_in={self.access_token is not None})"


class SessionStore:
    """Sessions by random id, in memory, each with an expiry; at most ``MAX_SESSIONS`` (the oldest go
    first). The cookie carries ``<id>.<HMAC of the id>`` under a key made when the process starts."""

    def __init__(self, max_sessions: int = MAX_SESSIONS):
        self.key = secrets.token_bytes(32)
        self.max = max_sessions
        self.items: OrderedDict[str, SmartSession] = OrderedDict()
        self.lock = threading.Lock()

    def _sign(self, sid: str) -> str:
        mac = hmac.new(self.key, sid.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def add(self, session: SmartSession) -> str:
        """Store ``session`` under a new id; the cookie value."""
        sid = secrets.token_urlsafe(32)
        now = time.time()
        with self.lock:
            for old in [k for k, s in self.items.items() if s.expires <= now]:
                del self.items[old]
            while len(self.items) >= self.max:
                self.items.popitem(last=False)
            self.items[sid] = session
        return f"{sid}.{self._sign(sid)}"

    def _sid(self, cookie: str | None) -> str | None:
        if not cookie or cookie.count(".") != 1:
            return None
        sid, sig = cookie.split(".")
        return sid if hmac.compare_digest(sig, self._sign(sid)) else None

    def get(self, cookie: str | None) -> SmartSession | None:
        sid = self._sid(cookie)
        if sid is None:
            return None
        with self.lock:
            session = self.items.get(sid)
            if session is not None and session.expires <= time.time():
                del self.items[sid]
                return None
            return session

    def drop(self, cookie: str | None) -> None:
        sid = self._sid(cookie)
        if sid is not None:
            with self.lock:
                self.items.pop(sid, None)


def store_of(request: Request) -> SessionStore:
    state = request.app.state
    with _STORE_LOCK:
        if getattr(state, "smart_sessions", None) is None:
            state.smart_sessions = SessionStore()
    store: SessionStore = state.smart_sessions
    return store


_STORE_LOCK = threading.Lock()


# --- pages ---------------------------------------------------------------------------------------------


def _settings(request: Request) -> Settings:
    s: Settings = request.app.state.settings
    return s


def error_page(request: Request, status: int, title: str, message: str, *, hint: str | None = None,
               issuers: list[str] | None = None, issues: list[dict[str, Any]] | None = None,
               more: int = 0) -> HTMLResponse:
    """``more``: how many problems beyond ``issues`` were left out (the page says so)."""
    from .web import render

    page = render("smart_error.html", request, title=title, message=message, hint=hint, issuers=issuers or [],
                  issues=issues or [], more=more)
    resp = HTMLResponse(page, status_code=status)
    resp.headers["cache-control"] = "no-store"
    return resp


AGAIN = "Open the app again from the patient's chart in the EHR (or start a standalone launch)."


def _set_cookie(request: Request, resp: Response, value: str, max_age: int) -> None:
    s = _settings(request)
    secure = request.url.scheme == "https" or bool(s.base_url and s.base_url.lower().startswith("https://"))
    if s.smart_frame_ancestors:  # inside an EHR's frame the cookie is third-party: it must be SameSite=None; Secure
        resp.set_cookie(COOKIE, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="none",
                        secure=True)
        return
    resp.set_cookie(COOKIE, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure)


def redirect_uri(request: Request) -> str | None:
    """``<base>/smart/callback``: the configured public base URL; in development mode, as the request says."""
    from .deps import public_base

    s = _settings(request)
    if s.base_url:
        return f"{s.base_url}/smart/callback"
    if s.dev_mode:
        return f"{public_base(request)}/smart/callback"
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _endpoint(value: Any, name: str, settings: Settings) -> str:
    """An endpoint URL from the SMART configuration: absolute, https (http only on loopback or when
    allowed), no user information or fragment. Raises ValueError saying what is wrong."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"the SMART configuration has no {name}")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "@" in parts.netloc or parts.fragment:
        raise ValueError(f"the SMART configuration's {name} is not an absolute https URL")
    if parts.scheme.lower() != "https" and not (_loopback(parts.hostname) or settings.fhir_allow_http):
        raise ValueError(f"the SMART configuration's {name} is not https (plain http only on loopback)")
    return value


def _sentence(text: str) -> str:
    """``text`` as a sentence: first letter capitalised (the rest untouched), a full stop at the end."""
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def _plain_http_refused(base: str, settings: Settings) -> bool:
    parts = urlsplit(base)
    return parts.scheme != "https" and not (_loopback(parts.hostname or "") or settings.fhir_allow_http)


# --- outbound requests (through the allow-listed, capped client of the CDS service) ------------------


class Unreadable(Exception):
    """A server could not be read or answered something unusable (the message is for the page)."""


class TokenRejected(Exception):
    """The FHIR server answered 401 or 403: the access token is expired, revoked or lacks a scope."""


async def _read_capped(resp: Any, limit: int, max_depth: int) -> Any:
    from .cds.outbound import TooLarge
    from .limits import json_too_deep

    declared = resp.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge()
    chunks, size = [], 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise TooLarge()
        chunks.append(chunk)
    raw = b"".join(chunks)
    if json_too_deep(raw, max_depth):
        raise ValueError("the answer nests too deeply")
    import orjson

    return orjson.loads(raw)


async def smart_configuration(base: str, settings: Settings) -> dict[str, Any]:
    import httpx

    from .cds.outbound import Budget, OutboundRefused, TooLarge, client_for, get_json

    url = f"{base}/.well-known/smart-configuration"
    try:
        async with client_for(base, settings, {"Accept": "application/json"}) as client:
            status, doc = await asyncio.wait_for(
                get_json(client, url, Budget(CONFIG_MAX_BYTES), settings.max_json_depth), settings.fhir_timeout * 2)
    except OutboundRefused:
        raise Unreadable("the FHIR server's address is not allowed for outbound requests (private, loopback or "
                         "link-local; see IPEXRX_FHIR_PRIVATE_NETWORKS)") from None
    except TooLarge:
        raise Unreadable(f"the SMART configuration is larger than {CONFIG_MAX_BYTES // 1024} kB") from None
    except (httpx.HTTPError, OSError, ValueError) as exc:  # OSError: resolver and socket errors, timeouts
        raise Unreadable(f"the SMART configuration could not be read ({type(exc).__name__})") from None
    if status != 200 or not isinstance(doc, dict):
        raise Unreadable(f"the FHIR server answered {status} to {url}, expected its SMART configuration (JSON)")
    return doc


async def exchange_code(endpoint: str, body: str, settings: Settings) -> tuple[int, Any]:
    """POST the token request; (status, parsed JSON or None)."""
    import httpx

    from .cds.outbound import OutboundRefused, TooLarge, client_for

    headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
    try:
        async with client_for(endpoint, settings, headers) as client, \
                client.stream("POST", endpoint, content=body.encode()) as resp:
            try:
                data = await _read_capped(resp, TOKEN_MAX_BYTES, settings.max_json_depth)
            except ValueError:
                data = None
            return resp.status_code, data
    except OutboundRefused:
        raise Unreadable("the token endpoint's address is not allowed for outbound requests") from None
    except TooLarge:
        raise Unreadable(f"the token endpoint's answer is larger than {TOKEN_MAX_BYTES // 1024} kB") from None
    except (httpx.HTTPError, OSError) as exc:
        raise Unreadable(f"the token endpoint could not be reached ({type(exc).__name__})") from None


async def fetch_record(session: SmartSession, settings: Settings) -> tuple[dict[str, Any], list[str]]:
    """The patient's record as one FHIR Bundle (Patient first), and notes on what could not be read."""
    import httpx

    from .cds.fhir import render_template
    from .cds.outbound import Budget, OutboundRefused, TooLarge, client_for
    from .cds.services import OPTIONAL_KEYS, PREFETCH

    assert session.access_token is not None and session.patient is not None
    queries = {key: render_template(q, {"patientId": session.patient}) for key, q in PREFETCH.items()}
    if any(q is None for q in queries.values()):  # the id was checked at sign-in; never a silent gap
        raise Unreadable("the patient named in the sign-in has an id that cannot go into a FHIR search")
    headers = {"Accept": "application/fhir+json, application/json",
               "Authorization": f"{session.token_type} {session.access_token}"}
    budget = Budget(settings.fhir_max_bytes)
    notes: list[str] = []
    try:
        async with client_for(session.iss, settings, headers) as client:
            results = await asyncio.wait_for(asyncio.gather(
                *(_search(client, session.iss, key, str(q), budget, settings, notes)
                  for key, q in queries.items() if q is not None), return_exceptions=True), settings.fhir_timeout * 3)
    except OutboundRefused:
        raise Unreadable("the FHIR server's address is not allowed for outbound requests") from None
    except TimeoutError:
        raise Unreadable("the FHIR server did not answer in time") from None
    failures = [r for r in results if isinstance(r, BaseException)]
    for exc in failures:  # the token first: it decides what the page tells the user to do
        if isinstance(exc, TokenRejected):
            raise exc
    for exc in failures:
        if isinstance(exc, Unreadable):
            raise exc
        if isinstance(exc, TooLarge):
            raise Unreadable(f"the patient's record is larger than {settings.fhir_max_bytes // 2**20 or 1} MB")
        if isinstance(exc, httpx.HTTPError | OSError | ValueError):
            raise Unreadable(f"the FHIR server could not be read ({type(exc).__name__})")
        raise exc
    found: dict[str, Any] = {}
    for key, value in results:  # type: ignore[misc]
        if value is not None:
            found[key] = value
    entries: list[dict[str, Any]] = [{"resource": found.pop("patient")}]
    seen: set[tuple[str, str]] = set()
    for key in PREFETCH:
        if key in found:
            for entry in found[key]:
                res = entry.get("resource") if isinstance(entry, dict) else None
                ident = (res.get("resourceType"), res.get("id")) if isinstance(res, dict) else None
                if isinstance(ident, tuple) and isinstance(ident[1], str):
                    if ident in seen:
                        continue
                    seen.add(ident)  # type: ignore[arg-type]
                entries.append(entry)
        elif key in OPTIONAL_KEYS:
            notes.append(f"{SEARCH_NAMES[key]} records could not be read; the rules do not use them")
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}, notes


async def _search(client: Any, base: str, key: str, query: str, budget: Any, settings: Settings,
                  notes: list[str]) -> tuple[str, Any]:
    """One query of the record (following ``next`` links under ``base`` only); the Patient, or the
    entries of a search. None for an optional or unsupported search that failed (noted)."""
    from .cds.fhir import MAX_PAGES
    from .cds.outbound import get_json, under_base
    from .cds.services import OPTIONAL_KEYS

    what = SEARCH_NAMES.get(key, key)
    url = f"{base}/{query}"
    status, data = await get_json(client, url, budget, settings.max_json_depth)
    if status in (401, 403):
        raise TokenRejected(status)
    if status != 200:
        if key in OPTIONAL_KEYS:
            return key, None
        if key in MAY_BE_UNSUPPORTED and status in UNSUPPORTED_STATUSES:
            notes.append(f"The FHIR server does not offer {MAY_BE_UNSUPPORTED[key]} searches (it answered {status}): "
                         "medications were read from MedicationRequest only.")
            return key, None
        if key == "patient" and status == 404:
            raise Unreadable("the FHIR server has no record of the patient named in the sign-in")
        raise Unreadable(f"the FHIR server answered {status} to the {what} search")
    if key == "patient":
        if not isinstance(data, dict) or data.get("resourceType") != "Patient":
            raise Unreadable("the FHIR server did not return a Patient for the patient named in the sign-in")
        return key, data
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise Unreadable(f"the FHIR server did not return a Bundle for the {what} search")
    entries = list(data.get("entry") or [])
    pages, nxt = 1, _next_link(data)
    while nxt and pages < MAX_PAGES:
        if not under_base(nxt, base):
            raise Unreadable(f"a paging link of the {what} search pointed away from the FHIR server (not followed)")
        status, page = await get_json(client, nxt, budget, settings.max_json_depth)
        if status in (401, 403):
            raise TokenRejected(status)
        if status != 200 or not isinstance(page, dict) or page.get("resourceType") != "Bundle":
            raise Unreadable(f"the FHIR server answered {status} while paging the {what} search")
        entries.extend(page.get("entry") or [])
        nxt, pages = _next_link(page), pages + 1
    if nxt:
        raise Unreadable(f"the {what} search has more than {MAX_PAGES} pages")
    return key, entries


# --- routes --------------------------------------------------------------------------------------------


@router.get("/smart/launch", response_class=HTMLResponse)
async def launch(request: Request, iss: str = "", launch: str = "") -> Response:
    from authlib.common.security import generate_token
    from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    from .cds.outbound import listed_base

    s = _settings(request)
    if not iss:
        return error_page(request, 400, "Which FHIR server?", "The launch needs iss=<FHIR server base URL>: the EHR "
                          "adds it when it opens the app; a standalone launch chooses one of the servers below.",
                          issuers=s.smart_issuers)
    base = listed_base(iss, s.smart_issuers)
    if base is None:  # before any name lookup or connection
        log.info("SMART launch refused: iss not listed in IPEXRX_SMART_ISSUERS")
        return error_page(request, 400, "This FHIR server is not registered",
                          f"The app may only connect to the FHIR servers configured for it "
                          f"(IPEXRX_SMART_ISSUERS); the launch named “{iss[:200]}”, which is not one of them.",
                          hint="Ask the administrator of this service to add the EHR's FHIR base URL, or start "
                          "from one of the servers below.", issuers=s.smart_issuers)
    if len(launch) > 2048:
        return error_page(request, 400, "Launch refused", f"The launch token is longer than 2048 characters "
                          f"({len(launch)}); expected the opaque token the EHR sends.")
    if not s.smart_client_id:
        return error_page(request, 503, "The SMART app is not configured",
                          "IPEXRX_SMART_CLIENT_ID is not set: the client id the EHR gave this app is needed.")
    callback = redirect_uri(request)
    if callback is None:
        return error_page(request, 503, "The SMART app is not configured",
                          "IPEXRX_BASE_URL is not set: the app's redirect URI (<base URL>/smart/callback) must be "
                          "the public URL registered with the EHR.")
    if _plain_http_refused(base, s):
        return error_page(request, 400, "Launch refused", "The FHIR server must use https (plain http only on "
                          "loopback, or with IPEXRX_FHIR_ALLOW_HTTP=1, never for patient data).")
    try:
        config = await smart_configuration(base, s)
        authorize = _endpoint(config.get("authorization_endpoint"), "authorization_endpoint", s)
        token_endpoint = _endpoint(config.get("token_endpoint"), "token_endpoint", s)
        methods = config.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise ValueError("the authorization server does not support PKCE S256 (code_challenge_methods_supported)")
    except (Unreadable, ValueError) as exc:
        log.info("SMART launch for %s failed: %s", base, exc)
        return error_page(request, 502, "The EHR's sign-in could not be started", _sentence(str(exc)),
                          hint=AGAIN)
    verifier = generate_token(64)  # 64 characters of [A-Za-z0-9]: within RFC 7636's 43-128 unreserved
    state = secrets.token_urlsafe(32)
    session = SmartSession(iss=base, expires=time.time() + LAUNCH_SECONDS, token_endpoint=token_endpoint,
                           state=state, code_verifier=verifier)
    store = store_of(request)
    store.drop(request.cookies.get(COOKIE))
    cookie = store.add(session)
    extra = {"launch": launch} if launch else {}
    url = prepare_grant_uri(authorize, s.smart_client_id, "code", redirect_uri=callback, scope=scope_for(launch),
                            state=state, aud=iss, code_challenge=create_s256_code_challenge(verifier),
                            code_challenge_method="S256", **extra)
    log.info("SMART %s launch for %s: sent to the authorization server", "EHR" if launch else "standalone", base)
    resp = RedirectResponse(url, status_code=302)
    resp.headers["cache-control"] = "no-store"
    _set_cookie(request, resp, cookie, LAUNCH_SECONDS)
    return resp


@router.get("/smart/callback", response_class=HTMLResponse)
async def callback(request: Request, code: str = "", state: str = "", error: str = "",
                   error_description: str = "") -> Response:
    from authlib.oauth2.rfc6749.parameters import prepare_token_request

    s = _settings(request)
    store = store_of(request)
    cookie = request.cookies.get(COOKIE)
    session = store.get(cookie)
    if session is None or session.state is None:
        return error_page(request, 400, "No sign-in in progress",
                          "This browser has no app launch waiting for the EHR's answer: the launch was started in "
                          f"another browser, more than {LAUNCH_SECONDS // 60} minutes ago, or its answer was "
                          "already used.", hint=AGAIN)
    if not state or not hmac.compare_digest(state.encode(), session.state.encode()):
        log.info("SMART callback refused: state does not match the browser's launch")
        return error_page(request, 400, "Sign-in refused",
                          "The answer from the EHR's sign-in does not belong to the launch started in this "
                          "browser (state mismatch), so it was not used.", hint=AGAIN)
    if error:
        store.drop(cookie)
        if error == "access_denied":
            return error_page(request, 403, "Consent was declined",
                              "The EHR reports that access to the patient's record was not granted (consent "
                              "declined or not allowed), so the app cannot show an assessment.", hint=AGAIN)
        detail = f": {error_description[:300]}" if error_description else ""
        return error_page(request, 400, "The EHR refused the sign-in",
                          f"The authorization server answered “{error[:60]}”{detail}.", hint=AGAIN)
    if not code:
        return error_page(request, 400, "Sign-in refused", "The EHR's answer carries no authorization code "
                          "(expected code=... and state=...).", hint=AGAIN)
    verifier, session.state, session.code_verifier = session.code_verifier, None, None  # one use only
    body = prepare_token_request("authorization_code", code=code, redirect_uri=redirect_uri(request),
                                 client_id=s.smart_client_id, code_verifier=verifier)
    try:
        status, token = await exchange_code(session.token_endpoint, body, s)
    except Unreadable as exc:
        store.drop(cookie)
        log.info("SMART token exchange with %s failed: %s", session.iss, exc)
        return error_page(request, 502, "The sign-in could not be completed", _sentence(str(exc)),
                          hint=AGAIN)
    problem = _token_problem(status, token)
    if problem is not None:
        store.drop(cookie)
        log.info("SMART token exchange with %s refused: %s", session.iss, problem)
        return error_page(request, 502, "The sign-in could not be completed", problem, hint=AGAIN)
    assert isinstance(token, dict)
    lifetime = token.get("expires_in")
    seconds = int(lifetime) if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) else SESSION_SECONDS
    signed_in = SmartSession(iss=session.iss, expires=time.time() + max(1, min(seconds, SESSION_SECONDS)),
                             token_endpoint=session.token_endpoint, access_token=token["access_token"],
                             token_type="Bearer", patient=token["patient"], scope=str(token.get("scope") or ""),
                             card_context=card_context(token.get("appContext")))
    store.drop(cookie)
    new_cookie = store.add(signed_in)  # a new session id after sign-in
    log.info("SMART sign-in with %s complete", session.iss)
    resp = RedirectResponse("/smart/patient", status_code=303)
    resp.headers["cache-control"] = "no-store"
    _set_cookie(request, resp, new_cookie, SESSION_SECONDS)
    return resp


def card_context(raw: Any) -> dict[str, Any] | None:
    """The ``appContext`` of the CDS card the app was opened from (CDS Hooks 2.0: a string the EHR hands to the
    app at launch; ipexrx's cards put a small JSON object in it: rule, drugs, levels). Anything else - absent,
    not JSON, another app's shape - is ignored: the context only adds a line to the page, never decides."""
    if not isinstance(raw, str) or len(raw) > 4000:
        return None
    try:
        ctx = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(ctx, dict):
        return None
    raw_drugs, raw_levels = ctx.get("drugs"), ctx.get("levels")
    drugs = [d for d in (raw_drugs if isinstance(raw_drugs, list) else []) if isinstance(d, str)
             and FHIR_ID.fullmatch(d)][:5]
    levels = [str(lv["result"])[:160] for lv in (raw_levels if isinstance(raw_levels, list) else [])
              if isinstance(lv, dict) and lv.get("result")][:5]
    if not drugs and not levels:
        return None
    return {"drugs": drugs, "levels": levels}


def _token_problem(status: int, token: Any) -> str | None:
    """What is wrong with the token endpoint's answer, in words for the page (None: usable)."""
    if status != 200:
        err = token.get("error") if isinstance(token, dict) else None
        said = f" ({err[:60]})" if isinstance(err, str) and err else ""
        return (f"The EHR's token endpoint did not accept the authorization code: it answered {status}{said}. "
                "Codes are valid once and for a short time.")
    if not isinstance(token, dict) or not isinstance(token.get("access_token"), str) or not token["access_token"]:
        return "The EHR's token endpoint answered without an access token."
    if str(token.get("token_type", "")).lower() != "bearer":
        return "The EHR's token endpoint answered with a token type other than Bearer."
    patient = token.get("patient")
    if not isinstance(patient, str) or not patient:
        return ("The sign-in carries no patient: open the app from a patient's chart, or choose a patient when "
                "the EHR asks (the launch/patient scope must be granted).")
    if not FHIR_ID.fullmatch(patient):
        return "The sign-in names a patient whose id is not a FHIR id (letters, digits, '-' and '.', at most 64)."
    return None


@router.get("/smart/patient", response_class=HTMLResponse)
async def patient_page(request: Request) -> Response:
    from ..assess import assess
    from ..patient import PatientInputError
    from .errors import ApiError
    from .pool import pool_of

    s = _settings(request)
    store = store_of(request)
    cookie = request.cookies.get(COOKIE)
    session = store.get(cookie)
    if session is None or session.access_token is None:
        return error_page(request, 401, "Not signed in", "This browser has no current sign-in to an EHR: it has "
                          f"expired (at most {SESSION_SECONDS // 60} minutes, or when the EHR's access token "
                          "expires) or was never made.", hint=AGAIN)
    try:
        bundle, notes = await fetch_record(session, s)
    except TokenRejected:
        store.drop(cookie)
        log.info("SMART record fetch from %s: access token refused", session.iss)
        return error_page(request, 401, "The EHR no longer accepts this sign-in",
                          "The FHIR server refused the access token (expired, revoked, or without the scope for "
                          "one of the records read), so the record was not read.", hint=AGAIN)
    except Unreadable as exc:
        log.info("SMART record fetch from %s failed: %s", session.iss, exc)
        return error_page(request, 502, "The patient's record could not be read", _sentence(str(exc)),
                          hint="Try again in a moment; if it persists, ask the EHR team whether the app's searches "
                          "are allowed.")

    def run() -> Any:
        return assess(bundle, ipex_plan="auto")

    try:  # CPU-heavy: on the bounded analysis pool, never on the event loop (503 when saturated)
        result = await pool_of(request.app).run(run)
    except ApiError as exc:
        page = error_page(request, exc.status, "Busy", exc.body.message)
        page.headers.update(exc.headers or {})
        return page
    except PatientInputError as exc:
        from ..patient.errors import issue_places

        # 'Observation, id "o1", element "valueQuantity.value"': the resource as the EHR holds it (the Bundle
        # and its entry numbers are the app's own)
        places = issue_places(exc, document=bundle, numbered_entries=False)
        issues = [{**i.to_dict(), "where": where} for i, where in zip(exc.issues, places, strict=False)]
        return error_page(request, 422, "The patient's record cannot be assessed safely", exc.summary, issues=issues,
                          more=len(exc.issues) - len(issues))
    from .web import render

    banner = patient_banner(bundle["entry"][0]["resource"])
    html = render("smart_patient.html", request, title="Assessment from the EHR", a=result, counts=result.counts(),
                  notes=notes, dosing=dosing_links(result), fhir_base=session.iss, card=session.card_context,
                  counts_read=_counts(bundle), banner=banner,
                  report_subject=banner.name if banner.named else "the patient opened in the EHR")
    resp = HTMLResponse(html)
    resp.headers["cache-control"] = "no-store"
    return resp


def _next_link(bundle: Any) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


UNNAMED = "Patient without a recorded name"


def _human_name(name: dict[str, Any]) -> str:
    """A FHIR HumanName as one line: its ``text``, else the given names and the family name."""
    written = name.get("text")
    if isinstance(written, str) and written.strip():
        return " ".join(written.split())
    given = [g for g in name.get("given") or [] if isinstance(g, str)]
    family = name.get("family")
    return " ".join(" ".join([*given, family] if isinstance(family, str) else given).split())


@dataclass(frozen=True)
class PatientBanner:
    """Who the page is about, as the EHR's Patient gives it: ``name`` (:data:`UNNAMED` when it has none),
    ``birth`` and ``gender`` (None when not recorded), ``fhir_id`` (shown to editors only)."""

    name: str
    named: bool
    birth: str | None
    gender: str | None
    fhir_id: str | None


def patient_banner(patient: dict[str, Any] | None) -> PatientBanner:
    """The page's heading, so the user can check the app shows the patient they opened (the app runs in its own
    window, away from the EHR's banner): the official HumanName, else the first one that holds a name."""
    patient = patient if isinstance(patient, dict) else {}
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    ordered = [n for n in names if n.get("use") == "official"] + [n for n in names if n.get("use") != "official"]
    shown = next((t for t in map(_human_name, ordered) if t), "")

    def text(key: str) -> str | None:
        v = patient.get(key)
        return v if isinstance(v, str) and v.strip() else None

    return PatientBanner(name=shown or UNNAMED, named=bool(shown), birth=text("birthDate"), gender=text("gender"),
                         fhir_id=text("id"))


def _counts(bundle: dict[str, Any]) -> list[tuple[str, int]]:
    out: dict[str, int] = {}
    for entry in bundle["entry"]:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and isinstance(res.get("resourceType"), str):
            out[res["resourceType"]] = out.get(res["resourceType"], 0) + 1
    return sorted(out.items())


def dosing_links(result: Any) -> list[dict[str, str]]:
    """The patient's drugs that the dosing page has an oral clinical model for: (drug, URL)."""
    from urllib.parse import quote

    from ..dosing.errors import DosingError
    from ..dosing.select import clinical_models

    out: list[dict[str, str]] = []
    for drug in dict.fromkeys(m.drug_id for m in result.medications if m.drug_id):
        try:
            models = clinical_models(drug)
        except DosingError:
            continue
        if any(not {d.route for d in m.spec.dosing.values()} <= {"iv", "intravenous"} for m in models):
            out.append({"drug": drug, "url": f"/dosing?drug={quote(drug, safe='')}"})
    return out
