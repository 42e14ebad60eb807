"""One JSON error shape for every 4xx the service returns.

``{"error": <kind>, "message": <one sentence>, "issues": [{"path", "expected", "got"}]}`` mirrors
``PatientInputError.to_dict`` so that an integrator reads the same shape whether a patient record,
a request body or a path parameter was wrong. Values under ``fhirAuthorization`` are never echoed
(they hold an access token).
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__

SENSITIVE_KEYS = frozenset({"fhirAuthorization", "access_token", "authorization", "Authorization"})


class IssueModel(BaseModel):
    path: str = Field(description="JSON path of the problem ($ is the request body root).")
    expected: str
    got: str


class ErrorBody(BaseModel):
    error: str = Field(description="Kind of error, e.g. 'not_found', 'invalid_request', 'PatientInputError'.")
    message: str
    issues: list[IssueModel] = Field(default_factory=list)
    suggestions: list[str] = Field(default_factory=list, description="Closest matches, for unknown ids.")


class ApiError(Exception):
    """Raised by routes for a clean 4xx."""

    def __init__(self, status: int, error: str, message: str, issues: list[dict[str, str]] | None = None,
                 suggestions: list[str] | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(error=error, message=message, issues=[IssueModel(**i) for i in issues or []],
                              suggestions=suggestions or [])
        self.headers = headers


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not valid JSON."},
    404: {"model": ErrorBody, "description": "Unknown record (with closest matches)."},
    422: {"model": ErrorBody, "description": "The request is malformed; issues locate each problem."},
}


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = list(loc)
    root = "$"
    if parts and parts[0] in ("body", "query", "path", "header"):
        kind = parts.pop(0)
        root = "$" if kind == "body" else f"{kind}:"
    out = root
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out not in ("query:", "path:", "header:") else str(p)
    return out


def _got(err: dict[str, Any]) -> str:
    loc = [str(p) for p in err.get("loc", ())]
    if any(p in SENSITIVE_KEYS for p in loc):
        return "(value withheld)"
    if err.get("type") == "missing":
        return "nothing (the field is missing)"
    if "input" not in err:
        return "an unusable value"
    value = err["input"]
    if isinstance(value, dict) and any(k in SENSITIVE_KEYS for k in value):
        return "an object"
    return _short(value)


def validation_issues(errors: list[Any]) -> list[dict[str, str]]:
    out = []
    for err in errors:
        msg = str(err.get("msg", "a valid value"))
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            out.append({"path": "$", "expected": "a JSON document",
                        "got": f"invalid JSON ({ctx.get('error', 'parse error')})"})
            continue
        expected = msg[len("Input should be "):] if msg.startswith("Input should be ") else msg
        expected = expected.removeprefix("Value error, ").replace("a valid dictionary", "a JSON object")
        if err.get("type") == "missing":
            expected = "this field (required)"
        out.append({"path": _path(err.get("loc", ())), "expected": expected, "got": _got(err)})
    return out


async def api_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body.model_dump(), status_code=exc.status, headers=exc.headers)


async def validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    issues = validation_issues(errors)
    if any(e.get("type") == "json_invalid" for e in errors):
        body = ErrorBody(error="invalid_json", message=f"the request body is not valid JSON: {issues[0]['got']}",
                         issues=[IssueModel(**i) for i in issues])
        return JSONResponse(body.model_dump(), status_code=400)
    n = len(issues)
    first = f"{issues[0]['path']}: expected {issues[0]['expected']}, got {issues[0]['got']}" if issues else ""
    body = ErrorBody(error="invalid_request", message=f"the request has {n} problem(s); first: {first}",
                     issues=[IssueModel(**i) for i in issues])
    return JSONResponse(body.model_dump(), status_code=422)


_STATUS_NAMES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 412: "precondition_failed",
                 413: "payload_too_large", 415: "unsupported_media_type"}


async def http_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException | HTTPException)
    name = _STATUS_NAMES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else name.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = "no such endpoint; the API is under /api/v1 (see /docs), CDS Hooks under /cds-services"
    body = ErrorBody(error=name, message=message)
    return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=getattr(exc, "headers", None))


NOT_INSTALLED_PAGE = """{% extends "base.html" %}
{% block content %}
<h1>{{ title }}</h1>
<div class="error" role="alert" id="not-installed"><p>{{ message }}</p></div>
<p>Whoever runs this server can install it with <code>{{ command }}</code> and then restart the server;
everything else works without it.</p>
{% endblock %}
"""


async def missing_extra_handler(request: Request, exc: Exception) -> Response:
    """An optional part of ipexrx (a pip extra) is not installed on this server: 503 with one sentence naming
    it and the install command. JSON (the usual error shape) under /api and /cds-services, a page elsewhere."""
    from ..extras import MissingExtraError

    assert isinstance(exc, MissingExtraError)
    if request.url.path.startswith(("/api/", "/cds-services")):
        body = ErrorBody(error="not_installed", message=str(exc))
        return JSONResponse(body.model_dump(), status_code=503)
    from ..knowledge import get_kb
    from .web import env

    page = env().from_string(NOT_INSTALLED_PAGE).render(
        meta=get_kb().meta, version=__version__, page_url=str(request.url),
        title="This part of ipexrx is not installed", message=str(exc), command=exc.command)
    return HTMLResponse(page, status_code=503, headers={"cache-control": "no-store"})
