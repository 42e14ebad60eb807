"""Request-scoped helpers shared by the routers: settings, database, the JWT check."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse

from ..storage import Database
from .security import DEV_CONTEXT, AuthContext, AuthError, JwtVerifier
from .settings import Settings

log = logging.getLogger("ipexrx.service.security")


class Unauthorized(Exception):
    """Any refused or missing token: answered with a bare 401."""


def settings_of(request: Request) -> Settings:
    s: Settings = request.app.state.settings
    return s


def db_of(request: Request) -> Database:
    d: Database = request.app.state.db
    return d


def public_base(request: Request) -> str:
    """The base URL clients use to reach us (configured, or as the request says)."""
    s = settings_of(request)
    if s.base_url:
        return s.base_url
    return _urls(request)[0]


def called_url(request: Request) -> str:
    """The URL of the endpoint being invoked (what ``aud`` must equal), without the query string."""
    s = settings_of(request)
    if s.base_url:
        return s.base_url + _urls(request)[2]
    return _urls(request)[1]


_URLS: dict[tuple[object, ...], tuple[str, str, str]] = {}


def _urls(request: Request) -> tuple[str, str, str]:
    """(public base, called URL, path) as Starlette's ``request.url`` gives them, remembered per scheme, server,
    root path, path and Host header -- everything that URL is made of but the query, which neither keeps.

    Why: every CDS call asks for both, and building ``request.url`` costs more than the rest of the lookup;
    the same few endpoints are called again and again (bounded: cleared past 1,000 entries)."""
    scope = request.scope
    server = scope.get("server")
    key = (scope.get("scheme"), tuple(server) if server is not None else None, scope.get("root_path", ""),
           scope["path"], request.headers.get("host"))
    hit = _URLS.get(key)
    if hit is None:
        url = request.url
        hit = (f"{url.scheme}://{url.netloc}{scope.get('root_path', '')}".rstrip("/"),
               f"{url.scheme}://{url.netloc}{url.path}", url.path)
        if len(_URLS) >= 1000:
            _URLS.clear()
        _URLS[key] = hit
    return hit


async def cds_auth(request: Request) -> AuthContext:
    """FastAPI dependency: verify the CDS client's JWT (or let everything through in dev mode)."""
    settings = settings_of(request)
    if settings.dev_mode:
        return DEV_CONTEXT
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        log.info("CDS call refused: no bearer token (%s %s)", request.method, request.url.path)
        raise Unauthorized()
    verifier: JwtVerifier = request.app.state.verifier
    try:
        return await verifier.verify(token.strip(), called_url(request))
    except AuthError as exc:
        log.info("CDS call refused on %s: %s", request.url.path, exc)
        raise Unauthorized() from None


async def unauthorized_handler(_request: Request, _exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
