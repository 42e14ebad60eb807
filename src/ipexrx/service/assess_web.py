"""The assessment page: paste or upload a patient JSON / FHIR Bundle, read the cited report.

The form posts ``application/x-www-form-urlencoded`` (parsed here, so no multipart dependency);
an uploaded file is read into the text area by a few lines of JavaScript in the browser, so the
patient data goes only to this server, and only when the user presses the button. Nothing is stored.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

MAX_FORM_BYTES = 20 * 1024 * 1024


def _page(request: Request, status: int = 200, **ctx: Any) -> HTMLResponse:
    from .web import render

    ctx.setdefault("patient_text", "")
    ctx.setdefault("as_of", "")
    return HTMLResponse(render("assess.html", request, title="Assess a patient", **ctx), status_code=status)


def mount_assess(app: FastAPI) -> None:
    @app.get("/assess", response_class=HTMLResponse, include_in_schema=False)
    def assess_form(request: Request) -> HTMLResponse:
        return _page(request)

    @app.post("/assess", response_class=HTMLResponse, include_in_schema=False)
    async def assess_submit(request: Request) -> HTMLResponse:
        from ..assess import assess
        from ..patient import PatientInputError
        from ..patient.model import decode_json

        raw = await request.body()
        if len(raw) > MAX_FORM_BYTES:
            return _page(request, 413, error={"message": f"the upload is larger than {MAX_FORM_BYTES // 2**20} MB",
                                              "issues": []})
        form = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
        text = (form.get("patient") or [""])[0]
        as_of_text = (form.get("as_of") or [""])[0].strip()
        ctx: dict[str, Any] = {"patient_text": text, "as_of": as_of_text}
        if not text.strip():
            return _page(request, 422, error={"message": "paste a patient JSON or a FHIR Bundle, or choose a file",
                                              "issues": []}, **ctx)
        as_of = None
        if as_of_text:
            try:
                as_of = dt.date.fromisoformat(as_of_text)
            except ValueError:
                return _page(request, 422, error={"message": f"the assessment date must be YYYY-MM-DD, got "
                                                  f"'{as_of_text}'", "issues": []}, **ctx)
        try:
            result = assess(decode_json(text, "the pasted text"), as_of=as_of)
        except PatientInputError as exc:
            return _page(request, 422, error={"message": exc.summary, "issues": [i.to_dict() for i in exc.issues]},
                         **ctx)
        return _page(request, 200, a=result, counts=result.counts(), **ctx)
