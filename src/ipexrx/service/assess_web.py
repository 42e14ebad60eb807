"""The assessment page: paste or upload a patient JSON / FHIR Bundle, read the cited report.

The form posts ``multipart/form-data`` so that a chosen file is uploaded by the browser itself,
with no JavaScript; with JavaScript, a chosen file is also shown in the text area (and then sent
from there, so edits to it count). ``application/x-www-form-urlencoded`` posts (text only) are
accepted too. The patient data goes only to this server, only when the user presses the button,
and nothing is stored.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

MAX_FORM_BYTES = 20 * 1024 * 1024


def _page(request: Request, status: int = 200, **ctx: Any) -> HTMLResponse:
    from .web import render

    ctx.setdefault("patient_text", "")
    ctx.setdefault("as_of", "")
    ctx.setdefault("ipex_plan", "auto")
    return HTMLResponse(render("assess.html", request, title="Assess a patient", **ctx), status_code=status)


def mount_assess(app: FastAPI) -> None:
    @app.get("/assess", response_class=HTMLResponse, include_in_schema=False)
    def assess_form(request: Request) -> HTMLResponse:
        return _page(request)

    @app.post("/assess", response_class=HTMLResponse, include_in_schema=False)
    async def assess_submit(request: Request) -> HTMLResponse:
        return await _submit(request, printable=False)

    @app.post("/assess/report", response_class=HTMLResponse, include_in_schema=False)
    async def assess_report(request: Request) -> HTMLResponse:
        """The same inputs as /assess, answered with the self-contained printable report (the page
        ``ipexrx assess --html`` writes, ending with its numbered sources); problems are shown on the form."""
        return await _submit(request, printable=True)


async def _submit(request: Request, printable: bool) -> HTMLResponse:
    from ..assess import assess
    from ..patient import PatientInputError
    from ..patient.model import decode_json

    try:
        form = await request.form(max_files=1, max_fields=10, max_part_size=MAX_FORM_BYTES)
    except Exception as exc:  # a malformed multipart body or too many parts: say so, never a 500
        detail = getattr(exc, "detail", None) or type(exc).__name__
        return _page(request, 400, error={"message": f"the form could not be read: {detail}", "issues": []})
    text = form.get("patient")
    text = text if isinstance(text, str) else ""
    upload = form.get("patient_file")
    as_of_text = str(form.get("as_of") or "").strip()
    plan = str(form.get("ipex_plan") or "auto").strip()
    if upload is not None and not isinstance(upload, str) and upload.filename:
        data = await upload.read(MAX_FORM_BYTES + 1)
        if len(data) > MAX_FORM_BYTES:
            return _page(request, 413, error={"message": f"the file is larger than {MAX_FORM_BYTES // 2**20} MB",
                                              "issues": []})
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return _page(request, 422, error={"message": f"the file '{upload.filename}' is not UTF-8 text (byte "
                                              f"{exc.start}): expected a JSON patient record or FHIR Bundle",
                                              "issues": []}, as_of=as_of_text)
    ctx: dict[str, Any] = {"patient_text": text, "as_of": as_of_text, "ipex_plan": plan}
    if plan not in ("auto", "always", "never"):
        ctx["ipex_plan"] = "auto"
        return _page(request, 422, error={"message": f"the IPEX plan choice must be auto, always or never, got "
                                          f"'{plan[:40]}'", "issues": []}, **ctx)
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
    from ..patient.errors import issue_places
    from .errors import ApiError
    from .pool import pool_of

    source = upload.filename if upload is not None and not isinstance(upload, str) and upload.filename \
        else "the pasted text"

    def run() -> Any:
        try:
            return assess(decode_json(text, source), as_of=as_of, ipex_plan=plan)  # type: ignore[arg-type]
        except PatientInputError as exc:  # where each problem is (a walk over the text): on the pool too
            return exc, issue_places(exc, text=text)  # 'line 3, demographics, field "weight_kg"' (no JSON path)

    try:  # CPU-heavy: on the bounded analysis pool, never on the event loop (503 when saturated)
        result = await pool_of(request.app).run(run)
    except ApiError as exc:  # busy: say so on the page, with the same Retry-After
        page = _page(request, exc.status, error={"message": exc.body.message, "issues": []}, **ctx)
        page.headers.update(exc.headers or {})
        return page
    if isinstance(result, tuple):
        problem, places = result
        message = problem.summary if problem.summary.startswith(source) else f"{source}: {problem.summary}"
        return _page(request, 422, error={"message": message, "issues": [
            {**i.to_dict(), "where": where} for i, where in zip(problem.issues, places, strict=False)],
            "more": len(problem.issues) - len(places)}, **ctx)  # the first 50 are listed; the page counts the rest
    if printable:
        from ..report import render_assessment_html

        return HTMLResponse(render_assessment_html(result))
    return _page(request, 200, a=result, counts=result.counts(), **ctx)
