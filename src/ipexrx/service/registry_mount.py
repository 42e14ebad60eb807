"""Serve the registry's framework-free route tables (JSON API under ``/api/v1/registry``, web
forms under ``/registry``) from the FastAPI app.

The registry library decides everything (authentication, role and centre checks, validation,
audit); this module only moves bytes between HTTP and :func:`ipexrx.registry.http.call` /
:func:`ipexrx.registry.web.handle`, in a thread pool because both do blocking database work, and draws the
registry's pages with the site's templates.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response

if TYPE_CHECKING:
    from ..registry import Registry


def client_source(request: Request) -> str | None:
    """The client's address for sign-in throttling: the TCP peer, unless the peer is a proxy listed in
    the service settings' ``trusted_proxies`` (``IPEXRX_TRUSTED_PROXIES``); then the right-most
    address in ``X-Forwarded-For`` that is not itself a trusted proxy. Without that setting, behind
    a reverse proxy every client shares the proxy's address (and its throttle)."""
    import ipaddress

    peer = request.client.host if request.client else None
    settings = getattr(request.app.state, "settings", None)
    networks = [ipaddress.ip_network(n, strict=False) for n in getattr(settings, "trusted_proxies", None) or []]

    def trusted(addr: str | None) -> bool:
        try:
            ip = ipaddress.ip_address((addr or "").strip())
        except ValueError:
            return False
        return any(ip in n for n in networks)

    if not networks or not trusted(peer):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a malformed header: fall back to the proxy's own address
    return peer


def mount_registry_api(app: FastAPI, registry: Registry) -> None:
    from ..registry.http import PREFIX, ROUTES, Route, call

    def make(route: Route) -> Any:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's parser allows
                return JSONResponse({"detail": {"message": "request body: expected JSON"}}, status_code=400)
            status, payload, headers = await run_in_threadpool(
                call, registry, route, request.headers.get("authorization"), dict(request.path_params), body,
                client_source(request))
            if route.html and status < 400:
                return HTMLResponse(payload, status_code=status)
            return JSONResponse(jsonable_encoder(payload), status_code=status, headers=headers)

        return endpoint

    for route in ROUTES:
        app.add_api_route(PREFIX + route.path, make(route), methods=[route.method], summary=route.summary,
                          tags=["Registry"], include_in_schema=False)


def mount_registry_web(app: FastAPI, registry: Registry) -> None:
    """The registry's pages: the library decides what each page shows (:mod:`ipexrx.registry.web`); they are
    drawn here with the site's layout, navigation and stylesheet (templates/registry/*.html)."""
    from urllib.parse import parse_qs

    from ..registry.web import COOKIE, WEB_PREFIX, WEB_ROUTES, WebRequest, WebRoute, handle, parse_form
    from .web import env, render

    env().globals["registry_nav"] = True  # the site's main navigation links the registry while it is served

    def make(route: WebRoute) -> Any:
        async def page(request: Request) -> Response:
            form = parse_form(await request.body()) if route.method == "POST" else {}
            req = WebRequest(dict(request.path_params), request.cookies.get(COOKIE), form, client_source(request),
                             parse_qs(request.url.query, keep_blank_values=True))
            res = await run_in_threadpool(handle, registry, route, req)
            if res.body is not None:
                return Response(res.body, status_code=res.status, headers=res.headers)
            content = res.html
            if res.page is not None:
                content = render(f"registry/{res.page}.html", request, registry_page=res.page, **res.context)
            return Response(content, status_code=res.status, headers=res.headers)

        return page

    for route in WEB_ROUTES:
        app.add_api_route(WEB_PREFIX + route.path, make(route), methods=[route.method], include_in_schema=False)


def mount_registry(app: FastAPI, registry: Registry) -> None:
    """Both faces of the registry on one app, sharing one Registry (and so one database)."""
    mount_registry_api(app, registry)
    mount_registry_web(app, registry)
