"""The CDS service calls (``POST /cds-services/{id}``) answered without Starlette's router and FastAPI's
route machinery.

Why: a hook call is the one request an EHR makes for every chart it opens, and on a 2-core server each
call has about 1.9 ms of CPU if a thousand a second are to be answered. Between the last middleware
and the handler the framework runs its exception middleware, router matching, FastAPI's dependency
solving for the path parameter, and its request and response wrappers; none of it does anything for this
route, whose handler reads its JWT and body itself (cds/body.py). Measured in process with distinct
charts through the whole application: 1.72 ms per call by the route, 1.56 ms by this path (medians of 8
interleaved runs).

What stays the same: this sits inside every middleware of the application (request limits, browser
security headers, CORS, the development-mode marker), so those still see and shape the answer; the
handler is the route's own (:func:`.router.answer_hook`); an exception it raises is answered by the
application's own handler for it, found as Starlette's exception middleware finds it, and anything
without a handler goes on to the server-error middleware (500), as before. Only an exact, known service
path with POST is taken here: other methods, unknown services, trailing slashes and the feedback route
go to the router, which answers them as it always did. ``tests/service/test_cds_fastpath.py`` sends the
same requests (good, refused, malformed, unknown, preflight) to the application with and without this
path and requires identical answers.
"""

from __future__ import annotations

import inspect
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .services import SERVICES

PREFIX = "/cds-services/"


def _handler_for(handlers: dict[Any, Any], exc: Exception) -> Any:
    """The application's handler for ``exc``, found as Starlette's exception middleware finds it: for an
    HTTPException first by its status code, then by class along the exception's MRO. The 500 /
    ``Exception`` handler is not one of them: it belongs to the server-error middleware further out,
    which still sees whatever is not handled here."""
    if isinstance(exc, HTTPException) and exc.status_code != 500 and exc.status_code in handlers:
        return handlers[exc.status_code]
    for cls in type(exc).__mro__:
        if cls is not Exception and cls in handlers:
            return handlers[cls]
    return None


class CdsHookFastPath:
    """ASGI middleware: answers ``POST /cds-services/{known service id}`` itself, passes on everything else."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.paths = {PREFIX + sid: sid for sid in SERVICES}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        service_id = self.paths.get(path)
        if service_id is None or scope.get("fastapi.telemetry") is not None:
            # unknown service (the router's 404), or OpenTelemetry on: the router names the route in the spans
            await self.app(scope, receive, send)
            return
        from .router import answer_hook

        scope["path_params"] = {"service_id": service_id}
        request = Request(scope, receive)
        try:
            response = await answer_hook(service_id, request)
        except Exception as exc:
            handler = _handler_for(scope["app"].exception_handlers, exc)
            if handler is None:
                raise
            response = await handler(request, exc) if inspect.iscoroutinefunction(handler) else \
                await run_in_threadpool(handler, request, exc)
        await response(scope, receive, send)
