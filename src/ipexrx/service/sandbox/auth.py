"""The sandbox's SMART authorization server (App Launch 2.0, public clients, PKCE S256 only).

- ``GET <fhir>/.well-known/smart-configuration``: where to authorize and exchange codes.
- ``GET /auth/authorize``: checks the client, the redirect URI (registered ones only: an unknown
  one gets a page, never a redirect), PKCE S256 and ``aud``; then shows a consent page (with a
  patient picker for a standalone launch) that can allow or deny.
- ``POST /auth/authorize``: allow -> a code (random, single use, valid ``CODE_SECONDS``) to the
  redirect URI; deny -> ``error=access_denied``.
- ``POST /auth/token``: the code, once, with the same client and redirect URI, and a
  ``code_verifier`` whose S256 hash is the challenge; answers ``access_token``, ``patient``,
  ``scope`` (and the card's ``appContext`` for a launch from a CDS card). Any failure: 400 with
  the OAuth error code (``invalid_grant`` for a wrong, used or expired code or verifier).

Everything is in memory and ends with the process: it is a sandbox, not an identity provider.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from .store import SEARCHABLE, display_name

router = APIRouter(include_in_schema=False)

CODE_SECONDS = 60
TOKEN_SECONDS = 900
LAUNCH_SECONDS = 300
PENDING_SECONDS = 600
VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # RFC 7636 section 4.1
SCOPE_ITEM = re.compile(r"patient/(\*|[A-Za-z]+)\.(rs|r|s|read)")


@dataclass
class Launch:
    patient: str
    app_context: str | None
    expires: float


@dataclass
class Pending:
    client_id: str
    redirect_uri: str
    state: str
    scope: list[str]
    challenge: str
    patient: str | None
    app_context: str | None
    expires: float


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    patient: str
    scope: list[str]
    app_context: str | None
    expires: float


@dataclass
class AccessToken:
    patient: str
    scope: list[str]
    expires: float

    def may_read(self, rtype: str) -> bool:
        for item in self.scope:
            m = SCOPE_ITEM.fullmatch(item)
            if m and m.group(1) in ("*", rtype) and m.group(2) in ("rs", "r", "s", "read"):
                return True
        return False


class AuthServer:
    """Launch contexts, pending consents, codes and tokens, each with an expiry."""

    def __init__(self, client_id: str, redirect_uris: list[str]):
        self.client_id = client_id
        self.redirect_uris = list(redirect_uris)
        self.launches: dict[str, Launch] = {}
        self.pending: dict[str, Pending] = {}
        self.codes: dict[str, Grant] = {}
        self.tokens: dict[str, AccessToken] = {}

    @staticmethod
    def _prune(table: dict[str, Any]) -> None:
        now = time.time()
        for key in [k for k, v in table.items() if v.expires <= now]:
            del table[key]

    def new_launch(self, patient: str, app_context: str | None) -> str:
        self._prune(self.launches)
        token = secrets.token_urlsafe(24)
        self.launches[token] = Launch(patient, app_context, time.time() + LAUNCH_SECONDS)
        return token

    def issue_token(self, patient: str, scope: list[str], seconds: int = TOKEN_SECONDS) -> str:
        self._prune(self.tokens)
        token = secrets.token_urlsafe(32)
        self.tokens[token] = AccessToken(patient, list(scope), time.time() + seconds)
        return token

    def token(self, authorization: str | None) -> AccessToken | None:
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        found = self.tokens.get(authorization[7:].strip())
        if found is None or found.expires <= time.time():
            return None
        return found


def _state(request: Request) -> Any:
    return request.app.state.sandbox


def smart_configuration(base: str) -> dict[str, Any]:
    return {
        "authorization_endpoint": f"{base}/auth/authorize",
        "token_endpoint": f"{base}/auth/token",
        "token_endpoint_auth_methods_supported": ["none"],
        "grant_types_supported": ["authorization_code"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["launch", "launch/patient", *(f"patient/{t}.rs" for t in SEARCHABLE)],
        "capabilities": ["launch-ehr", "launch-standalone", "client-public", "context-ehr-patient",
                         "context-standalone-patient", "permission-patient", "permission-v2"],
    }


def _redirect(uri: str, **params: str) -> RedirectResponse:
    sep = "&" if "?" in uri else "?"
    resp = RedirectResponse(uri + sep + urlencode({k: v for k, v in params.items() if v}), status_code=303)
    resp.headers["cache-control"] = "no-store"
    return resp


def _page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    from .pages import render

    return HTMLResponse(render(request, "sandbox_message.html", title=title, message=message), status_code=status)


def scope_words(item: str) -> str:
    """A granted scope in plain words, for the consent page."""
    if item == "launch":
        return "open with the patient who is open in the chart"
    if item == "launch/patient":
        return "ask you which patient to open"
    m = SCOPE_ITEM.fullmatch(item)
    if m is None:
        return item
    what = "all of the patient's records" if m.group(1) == "*" else f"the patient's {m.group(1)} records"
    return f"read and search {what}"


def granted_scope(requested: list[str]) -> list[str]:
    """What the sandbox grants of the scope asked for: the launch scopes and patient-level read/search
    scopes of the types it serves (no identity scopes: it issues no ID token)."""
    out = []
    for item in requested:
        m = SCOPE_ITEM.fullmatch(item)
        if item in ("launch", "launch/patient") or (m and m.group(1) in ("*", *SEARCHABLE)):
            out.append(item)
    return out


@router.get("/auth/authorize", response_class=HTMLResponse)
def authorize(request: Request) -> Response:
    sb = _state(request)
    auth: AuthServer = sb.auth
    q = request.query_params
    client_id, redirect_uri, state = q.get("client_id", ""), q.get("redirect_uri", ""), q.get("state", "")
    if client_id != auth.client_id:
        return _page(request, 400, "Unknown app", f"The app's client id “{client_id[:80]}” is not registered with "
                     f"this sandbox (registered: {auth.client_id}).")
    if redirect_uri not in auth.redirect_uris:
        return _page(request, 400, "Unknown redirect address", f"The redirect address “{redirect_uri[:200]}” is not "
                     f"registered for this app (registered: {', '.join(auth.redirect_uris)}); the sign-in was not "
                     "started.")
    problem = None
    if q.get("response_type") != "code":
        problem = "response_type must be 'code'"
    elif q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
        problem = "PKCE is required: code_challenge with code_challenge_method=S256"
    elif q.get("aud", "").rstrip("/") != sb.fhir_base:
        problem = f"aud must be this sandbox's FHIR base URL ({sb.fhir_base})"
    elif not state:
        problem = "state is required"
    if problem:
        return _redirect(redirect_uri, error="invalid_request", error_description=problem, state=state)
    scope = q.get("scope", "").split()
    patient, app_context = None, None
    if "launch" in scope:
        launch = auth.launches.pop(q.get("launch", ""), None)
        if launch is None or launch.expires <= time.time():
            return _redirect(redirect_uri, error="invalid_request", state=state,
                             error_description="the launch is unknown or expired: open the app from the chart again")
        patient, app_context = launch.patient, launch.app_context
    elif "launch/patient" not in scope:
        return _redirect(redirect_uri, error="invalid_scope", state=state,
                         error_description="the scope needs 'launch' (from the chart) or 'launch/patient'")
    AuthServer._prune(auth.pending)
    pid = secrets.token_urlsafe(24)
    auth.pending[pid] = Pending(client_id, redirect_uri, state, granted_scope(scope), q["code_challenge"], patient,
                                app_context, time.time() + PENDING_SECONDS)
    from .pages import render

    chosen = sb.store.read("Patient", patient) if patient else None
    html = render(request, "sandbox_consent.html", title="Allow the app to read the record?", pending=pid,
                  chosen={"id": patient, "name": display_name(chosen)} if chosen else None,
                  patients=[{"id": p["id"], "name": display_name(p), "birth": p.get("birthDate", "not recorded")}
                            for p in sb.store.patients()],
                  scope=[(item, scope_words(item)) for item in auth.pending[pid].scope], app=client_id)
    resp = HTMLResponse(html)
    resp.headers["cache-control"] = "no-store"
    return resp


@router.post("/auth/authorize")
async def decide(request: Request) -> Response:
    sb = _state(request)
    auth: AuthServer = sb.auth
    form = await request.form()
    pending = auth.pending.pop(str(form.get("pending", "")), None)
    if pending is None or pending.expires <= time.time():
        return _page(request, 400, "No sign-in waiting", "This consent was already answered or has expired; open "
                     "the app again.")
    if form.get("decision") != "allow":
        return _redirect(pending.redirect_uri, error="access_denied", state=pending.state,
                         error_description="the user declined access")
    patient = pending.patient or str(form.get("patient", ""))
    if sb.store.read("Patient", patient) is None:
        return _redirect(pending.redirect_uri, error="access_denied", state=pending.state,
                         error_description="no patient was chosen")
    AuthServer._prune(auth.codes)
    code = secrets.token_urlsafe(32)
    auth.codes[code] = Grant(pending.client_id, pending.redirect_uri, pending.challenge, patient, pending.scope,
                             pending.app_context, time.time() + CODE_SECONDS)
    return _redirect(pending.redirect_uri, code=code, state=pending.state)


def _oauth_error(error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=400,
                        headers={"cache-control": "no-store", "pragma": "no-cache"})


@router.post("/auth/token")
async def token(request: Request) -> Response:
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    auth: AuthServer = _state(request).auth
    form = await request.form()
    if form.get("grant_type") != "authorization_code":
        return _oauth_error("unsupported_grant_type", "grant_type must be authorization_code")
    grant = auth.codes.pop(str(form.get("code", "")), None)  # one use, whatever follows
    if grant is None or grant.expires <= time.time():
        return _oauth_error("invalid_grant", "the code is unknown, already used or expired")
    if form.get("client_id") != grant.client_id:
        return _oauth_error("invalid_grant", "the code was issued to another client")
    if form.get("redirect_uri") != grant.redirect_uri:
        return _oauth_error("invalid_grant", "redirect_uri differs from the one of the authorization request")
    verifier = str(form.get("code_verifier", ""))
    if not VERIFIER.fullmatch(verifier):
        return _oauth_error("invalid_grant", "code_verifier must be 43-128 characters of [A-Za-z0-9-._~]")
    if not hmac.compare_digest(create_s256_code_challenge(verifier), grant.challenge):
        return _oauth_error("invalid_grant", "code_verifier does not match the code_challenge (S256)")
    access = auth.issue_token(grant.patient, grant.scope)
    body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": TOKEN_SECONDS,
                            "scope": " ".join(grant.scope), "patient": grant.patient}
    if grant.app_context:
        body["appContext"] = grant.app_context
    return JSONResponse(body, headers={"cache-control": "no-store", "pragma": "no-cache"})
