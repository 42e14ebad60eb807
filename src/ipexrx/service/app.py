"""The application factory: ``create_app(settings)`` wires settings, storage, security and routers.

``uvicorn --factory ipexrx.service.app:create_app`` (what ``ipexrx serve`` runs) calls it with no
argument, so settings come from the environment (see :mod:`ipexrx.service.settings`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..extras import MissingExtraError
from ..storage import Database
from ..storage.replay import make_replay_store
from .balance import ShareFileError, WorkerBalance, share_from_env
from .cardlog import CardLog
from .deps import Unauthorized, unauthorized_handler
from .errors import ApiError, api_error_handler, http_error_handler, missing_extra_handler, validation_error_handler
from .limits import BrowserHardening, RequestLimits
from .pool import AnalysisPool
from .security import JwtVerifier
from .settings import Settings

log = logging.getLogger("ipexrx.service")
_NOT_BALANCED = "keep-alive connections are not balanced across workers: %s"

DEV_MODE_BANNER = (
    "!!! IPEXRX DEVELOPMENT MODE: CDS Hooks JWT verification is OFF. Any caller can invoke the CDS "
    "services and post feedback. Never run this with real patient data or on a reachable network. !!!"
)


DEV_MODE_HTML = (  # styled by its own stylesheet: the Content-Security-Policy allows no inline style
    '<link rel="stylesheet" href="/static/dev-banner.css"><div id="ipexrx-dev-mode" role="alert">'
    "DEVELOPMENT MODE: CDS Hooks JWT verification is OFF. Any caller can invoke the CDS services. "
    "Never use with real patient data or on a reachable network.</div>"
)


class DevModeMarker:
    """Marks every response while JWT verification is off, so nobody mistakes it for production:
    an ``x-ipexrx-dev-mode`` header on all of them, and a red banner at the top of every HTML page
    (reference, assessment, registry, API docs), injected here so no page or page cache can miss it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_wrapper(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-ipexrx-dev-mode", b"jwt-verification-disabled")]
                message = {**message, "headers": headers}
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html") and scope.get("method") != "HEAD":
                    start = message  # hold it: the body grows by the banner
                    return
            elif start is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = _with_banner(b"".join(chunks))
                headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                message = {"type": "http.response.body", "body": body}
            await send(message)

        await self.app(scope, receive, send_wrapper)


def _with_banner(body: bytes) -> bytes:
    """The page with the banner right after ``<body ...>`` (at the very top when there is no body tag)."""
    lower = body[:4096].lower()
    at = lower.find(b"<body")
    end = body.find(b">", at) + 1 if at >= 0 else 0
    return body[:end] + DEV_MODE_HTML.encode() + body[end:]


DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="/static/swagger-ui/swagger-ui.css">
<link rel="stylesheet" href="/static/docs.css">
<link rel="icon" href="data:,">
<title>ipexrx API</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="/static/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/swagger-init.js"></script>
</body>
</html>
"""


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the swagger-ui-bundle-v2 package (FastAPI's default uses a CDN and an
    inline script; here both scripts are files on this server, as the Content-Security-Policy requires)."""
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/static/swagger-ui", StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_HTML)


# Why: with Python's default (700 container objects allocated and not yet freed), a CDS call -- its request
# JSON, typed FHIR views and record alive at once -- set off young-generation collections, in the loaded
# server on nearly every call (a sampling profile put 7 % of a worker's time on one allocating line of the
# FHIR reader), each 0.15-0.2 ms over objects that reference counting frees a moment later anyway. Above
# one chart's worth, a collection runs only as surviving objects (the analysis cache) accumulate. Measured with
# benchmarks/service_load.py (distinct IPEX charts, RS384, 2 workers): 2.10-2.17 ms of server CPU per
# call with the default, 1.91-1.93 ms with 20,000; p99 102-106 ms -> 74-79 ms.
GC_YOUNG_THRESHOLD = 20_000


def _warm_up(app: FastAPI) -> None:
    """Before the first request: load the knowledge base, run every CDS service once on its packaged
    sample (this imports the FHIR models and rules), read the drug dictionary used for names outside
    the knowledge base, parse the JWT keys, start the card-log writer; then freeze the objects made so
    far out of the garbage collector's view.

    Why: each of these is a one-off stall of tens to hundreds of milliseconds that would otherwise
    land on a real caller, and every later full collection would re-scan the (large, immortal)
    knowledge base. Last, the young-generation threshold of the collector is raised (see
    :data:`GC_YOUNG_THRESHOLD`)."""
    import gc

    from ..knowledge import get_kb
    from ..patient import lexicon
    from .cds.engine import warm_up as warm_cds

    get_kb()
    warm_cds()
    lexicon.table()  # the open drug dictionary, read on the first unrecognised medication name (~0.3 s)
    app.state.verifier.warm_up()
    app.state.cardlog.start()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    db = Database(settings.database_url)
    if settings.auto_migrate:
        db.migrate()
    if settings.dev_mode:
        log.warning(DEV_MODE_BANNER)
    elif not settings.issuers:
        log.warning("no CDS client issuers configured (IPEXRX_CDS_ISSUERS): every CDS Hooks call will get 401")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _warm_up(app)
        share = getattr(app.state, "worker_share", None)
        if share is not None:
            try:
                share.claim()  # counted as a worker from the start, before it has served anyone
            except ShareFileError as exc:
                log.warning(_NOT_BALANCED, exc)
        yield
        app.state.cardlog.close()
        if share is not None:
            share.close()

    app = FastAPI(
        lifespan=lifespan,
        title="ipexrx",
        version=__version__,
        description="Computable medication reference and clinical decision support for IPEX syndrome (FOXP3). "
        "Every statement carries its source. Supports, never replaces, clinical judgement.",
        openapi_url="/openapi.json",
        docs_url=None,  # served below from local files: no CDN, no network at run time
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.verifier = JwtVerifier(settings, make_replay_store(db, settings.replay_store, settings.replay_dir))
    app.state.cardlog = CardLog(db)
    app.state.analysis_pool = AnalysisPool(settings.analysis_threads, settings.analysis_queue)

    handlers: list[tuple[Any, Any]] = [
        (ApiError, api_error_handler),
        (RequestValidationError, validation_error_handler),
        (StarletteHTTPException, http_error_handler),
        (Unauthorized, unauthorized_handler),
        (MissingExtraError, missing_extra_handler),  # an optional part not installed: 503 naming the extra
    ]
    for exc, handler in handlers:
        app.add_exception_handler(exc, handler)

    from .api import router as api_router
    from .cds.router import router as cds_router
    from .dosing_api import router as dosing_router
    from .smart import router as smart_router
    from .web import mount_web

    _mount_docs(app)
    app.include_router(cds_router)  # first: routes are tried in order and the CDS calls are the hot path
    app.include_router(api_router)
    app.include_router(dosing_router)
    app.include_router(smart_router)  # SMART App Launch: /smart/launch, /smart/callback, /smart/patient
    mount_web(app)
    from .dosing_web import mount_dosing

    mount_dosing(app)
    from .screen_web import mount_screen

    mount_screen(app)
    if settings.registry:
        from ..registry import Registry
        from .registry_mount import mount_registry

        # the registry shares the service's database (migrated above with the same Alembic chain)
        app.state.registry = Registry(db.url, migrate=False)
        mount_registry(app, app.state.registry)

    if settings.cds_fast_path:
        from .cds.fastpath import CdsHookFastPath

        app.add_middleware(CdsHookFastPath)  # innermost: every middleware below still applies to hook calls
    # As the CDS Hooks reference services do: any origin, GET/POST/OPTIONS, Content-Type and
    # Authorization allowed, so browser-based EHRs (the sandbox) can preflight and call us.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization"],
        max_age=600,
    )
    if settings.dev_mode:
        app.add_middleware(DevModeMarker)
    app.add_middleware(BrowserHardening, trust_forwarded_proto=settings.trust_forwarded_proto,
                       base_url=settings.base_url, trusted_proxies=settings.trusted_proxies,
                       smart_frame_ancestors=settings.smart_frame_ancestors)
    # Outermost: nothing (routing, authentication, parsing) sees a request beyond the limits.
    app.add_middleware(RequestLimits, max_body_bytes=settings.max_body_bytes,
                       max_header_bytes=settings.max_header_bytes, max_json_depth=settings.max_json_depth)
    try:
        share = share_from_env()
    except ShareFileError as exc:  # an optimisation, not a safeguard: serve without it, and say so
        log.warning(_NOT_BALANCED, exc)
        share = None
    # Several workers started by `ipexrx serve`: spread keep-alive connections evenly. Outside the limits, but it
    # reads nothing of the request (it counts the peer address and may add `Connection: close` to the answer).
    if share is not None:
        app.state.worker_share = share
        app.add_middleware(WorkerBalance, share=share)
    _describe_cds_body(app)
    return app


def _describe_cds_body(app: FastAPI) -> None:
    """The CDS service route reads its body itself (cds/body.py); add the body's models to the OpenAPI
    components so /openapi.json and /docs still describe it."""
    from .cds.body import add_schemas

    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_schemas(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
