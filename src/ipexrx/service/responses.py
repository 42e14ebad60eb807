"""JSON responses serialised with orjson.

Why: a CDS card list is re-serialised on every hook call, and the standard library encoder was a
measurable share of a patient-view call (about 0.1 ms of ~1 ms). orjson writes the same JSON
(UTF-8, compact) several times faster. It refuses what JSON cannot carry (NaN becomes null; keys
must be strings), which our cards never contain.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
