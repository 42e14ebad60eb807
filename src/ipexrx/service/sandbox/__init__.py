"""A small offline EHR for demonstrations and tests: ``ipexrx sandbox``.

One FastAPI app, on loopback, plays the hospital's side of both integrations:

- a FHIR R4 read/search server (``/fhir``) holding synthetic patients (:mod:`.store`, :mod:`.fhir`);
- a SMART authorization server (``/fhir/.well-known/smart-configuration``, ``/auth/authorize``,
  ``/auth/token``) for public clients with PKCE S256 (:mod:`.auth`);
- a chart (``/``, ``/chart/<patient>``) that fires CDS Hooks calls at the ipexrx service, signed
  with the sandbox's own key, shows the cards, applies accepted suggestions to the draft orders,
  sends feedback and launches the ipexrx SMART app from a card (:mod:`.chart`, :mod:`.client`).

``ipexrx sandbox`` (src/ipexrx/cli/sandbox.py) starts this app and an ``ipexrx serve`` configured
to trust it. Synthetic patients only: it is not an EHR for real records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from .auth import AuthServer
from .chart import Sessions
from .client import CdsClient
from .store import Store, load_store

CLIENT_ID = "ipexrx-sandbox-app"
KID = "ipexrx-sandbox-1"


@dataclass
class Sandbox:
    base: str  # the sandbox's own URL, e.g. http://127.0.0.1:8700
    app_url: str  # the ipexrx service's URL
    store: Store
    auth: AuthServer
    cds: CdsClient
    sessions: Sessions

    @property
    def fhir_base(self) -> str:
        return f"{self.base}/fhir"


def create_sandbox_app(base: str, app_url: str, key: ec.EllipticCurvePrivateKey, *,
                       http: httpx.Client | None = None) -> FastAPI:
    """The sandbox EHR at ``base``, calling the ipexrx service at ``app_url`` with JWTs signed by ``key``
    (``http``: the client for those calls; tests hand in the service's TestClient)."""
    base, app_url = base.rstrip("/"), app_url.rstrip("/")
    app = FastAPI(title="ipexrx sandbox EHR", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = Sandbox(
        base=base, app_url=app_url, store=load_store(),
        auth=AuthServer(CLIENT_ID, [f"{app_url}/smart/callback"]),
        cds=CdsClient(app_url=app_url, issuer=base, key=key, kid=KID, http=http), sessions=Sessions())

    from . import auth, chart, fhir

    app.include_router(fhir.router)
    app.include_router(auth.router)
    app.include_router(chart.router)
    static = Path(__file__).parent.parent / "static"
    app.mount("/static", StaticFiles(directory=static), name="static")
    app.mount("/sandbox-static", StaticFiles(directory=Path(__file__).parent / "static"), name="sandbox-static")

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Any:
        resp = await call_next(request)
        # No script at all; forms post here, and the consent form's redirect goes to the app's callback.
        resp.headers.setdefault("content-security-policy", "default-src 'none'; style-src 'self'; img-src 'self'; "
                                f"form-action 'self' {app_url}; frame-ancestors 'none'; base-uri 'none'")
        resp.headers.setdefault("x-content-type-options", "nosniff")
        resp.headers.setdefault("referrer-policy", "no-referrer")
        return resp

    return app
