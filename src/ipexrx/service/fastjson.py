"""orjson on the CDS hot path: request bodies parsed, responses written.

Why: a patient-view call parses a prefetch of tens of kilobytes and re-serialises a card list on
every call, and the standard library's JSON was a measurable share of it (about 0.1 ms of a call
that costs ~0.5 ms). orjson reads and writes the same JSON several times faster. Where it
differs it is stricter: ``NaN``/``Infinity`` literals and lone surrogates are refused like any
malformed body (400). One difference is looser: an integer beyond 64 bits is read as a float
(the standard library keeps it exact); no field a CDS request carries (FHIR integers are 32-bit,
quantities are decimals) can hold such a number. On output NaN would become null; our cards
carry no floats.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class FastJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            # orjson.JSONDecodeError subclasses json.JSONDecodeError: FastAPI's 422 handling still applies
            self._json = orjson.loads(await self.body())
        return self._json


class FastJSONRoute(APIRoute):
    """An APIRoute whose handlers see a :class:`FastJSONRequest` (set as a router's ``route_class``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def fast(request: Request) -> Response:
            return await handler(FastJSONRequest(request.scope, request.receive))

        return fast
