"""JSON API for the registry: a self-contained FastAPI ``APIRouter`` with the same permissions as the
library (every endpoint calls :class:`~ipexrx.registry.core.Registry`, which checks role, centre and
input, and audits).

Mounting (the service owns the app)::

    from ipexrx.registry.api import router as registry_router
    app.state.registry = Registry(url)        # one per process
    app.include_router(registry_router)       # under /api/v1/registry

Authentication: ``Authorization: Bearer <token>``; ``POST /api/v1/registry/auth/token`` trades a
username and password for a token (scripts keep it; a web UI would keep it in a session cookie and
add CSRF protection on its forms). Errors are JSON ``{"detail": {"message": ..., "problems": [...]}}``
with 401, 403, 404, 409 or 422, never a traceback.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from . import ops
from .core import Actor, Registry
from .errors import NotAuthenticated, RegistryError, ValidationFailed

router = APIRouter(prefix="/api/v1/registry", tags=["Registry"])
_bearer = HTTPBearer(auto_error=False)
T = TypeVar("T")


def registry_of(request: Request) -> Registry:
    reg: Registry = request.app.state.registry
    return reg


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except RegistryError as exc:
        detail: dict[str, Any] = {"message": str(exc).split("\n")[0]}
        if isinstance(exc, ValidationFailed):
            detail["problems"] = exc.problems
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
        raise HTTPException(exc.http_status, detail, headers=headers) from None


def actor_of(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Actor:
    if cred is None or cred.scheme.lower() != "bearer":
        raise HTTPException(401, {"message": "expected 'Authorization: Bearer <token>'"},
                            headers={"WWW-Authenticate": "Bearer"})
    return _call(lambda: registry_of(request).actor_for_token(cred.credentials))


class Login(BaseModel):
    username: str
    password: str
    label: str = Field("api", max_length=100)


class UserChange(BaseModel):
    role: str | None = None
    centre_code: str | None = None
    active: bool | None = None


class CourseStop(BaseModel):
    stop_date: dt.date
    reason_stopped: str
    reason_other: str | None = None


@router.post("/auth/token", summary="Trade username and password for a bearer token")
def login(body: Login, request: Request) -> dict[str, str]:
    reg = registry_of(request)
    actor = _call(lambda: reg.authenticate(body.username, body.password))
    return {"token": _call(lambda: reg.issue_token(actor, body.label)), "token_type": "bearer"}


@router.get("/centres")
def list_centres(request: Request, actor: Actor = Depends(actor_of)) -> list[dict[str, Any]]:
    return _call(lambda: registry_of(request).centres(actor))


@router.post("/centres", status_code=201)
def create_centre(request: Request, body: dict[str, Any] = Body(...),
                  actor: Actor = Depends(actor_of)) -> dict[str, int]:
    return {"id": _call(lambda: registry_of(request).create_centre(actor, body))}


@router.get("/users")
def list_users(request: Request, actor: Actor = Depends(actor_of)) -> list[dict[str, Any]]:
    return _call(lambda: registry_of(request).users(actor))


@router.post("/users", status_code=201)
def create_user(request: Request, body: dict[str, Any] = Body(...), actor: Actor = Depends(actor_of)) -> dict[str, int]:
    return {"id": _call(lambda: registry_of(request).create_user(actor, body))}


@router.patch("/users/{username}")
def change_user(username: str, body: UserChange, request: Request, actor: Actor = Depends(actor_of)) -> dict[str, str]:
    _call(lambda: registry_of(request).change_user(actor, username, role=body.role, centre_code=body.centre_code,
                                                   active=body.active))
    return {"status": "changed"}


@router.get("/patients")
def list_patients(request: Request, actor: Actor = Depends(actor_of)) -> list[dict[str, Any]]:
    return _call(lambda: registry_of(request).list_patients(actor))


@router.post("/patients", status_code=201)
def create_patient(request: Request, body: dict[str, Any] = Body(...),
                   actor: Actor = Depends(actor_of)) -> dict[str, str]:
    return {"pseudonym": _call(lambda: registry_of(request).add_patient(actor, body))}


@router.get("/patients/{pseudonym}")
def read_patient(pseudonym: str, request: Request, actor: Actor = Depends(actor_of)) -> dict[str, Any]:
    return _call(lambda: registry_of(request).get_patient(actor, pseudonym))


@router.patch("/patients/{pseudonym}")
def update_patient(pseudonym: str, request: Request, body: dict[str, Any] = Body(...),
                   actor: Actor = Depends(actor_of)) -> dict[str, Any]:
    return _call(lambda: registry_of(request).update_patient(actor, pseudonym, body))


_CHILD = {"manifestations": "add_manifestation", "courses": "add_course", "visits": "add_visit",
          "adverse-events": "add_adverse_event", "hsct": "add_hsct"}


@router.post("/patients/{pseudonym}/{kind}", status_code=201,
             summary="Add a manifestation, course, visit, adverse event or HSCT")
def add_child(pseudonym: str, kind: str, request: Request, body: dict[str, Any] = Body(...),
              actor: Actor = Depends(actor_of)) -> dict[str, int]:
    if kind not in _CHILD:
        raise HTTPException(404, {"message": f"expected one of {', '.join(_CHILD)}, got '{kind}'"})
    reg = registry_of(request)
    return {"id": _call(lambda: getattr(reg, _CHILD[kind])(actor, pseudonym, body))}


@router.post("/patients/{pseudonym}/courses/{course_id}/stop")
def stop_course(pseudonym: str, course_id: int, body: CourseStop, request: Request,
                actor: Actor = Depends(actor_of)) -> dict[str, str]:
    _call(lambda: registry_of(request).stop_course(actor, pseudonym, course_id, body.stop_date, body.reason_stopped,
                                                   body.reason_other))
    return {"status": "stopped"}


@router.get("/export/deidentified")
def export_deidentified(request: Request, actor: Actor = Depends(actor_of)) -> dict[str, Any]:
    return _call(lambda: ops.export_deidentified(registry_of(request), actor))


@router.get("/export/fhir")
def export_fhir(request: Request, actor: Actor = Depends(actor_of)) -> dict[str, Any]:
    return _call(lambda: ops.export_fhir(registry_of(request), actor))


@router.get("/analytics")
def analytics(request: Request, actor: Actor = Depends(actor_of)) -> dict[str, Any]:
    r = _call(lambda: ops.analytics_report(registry_of(request), actor))
    return {"scope": r.scope, "synthetic": r.synthetic, "patients": r.patients, "centres": r.centres,
            "deaths": r.deaths,
            "drugs": [{"drug_id": d.drug_id, "courses": d.courses, "patients": d.patients, "reasons": d.reasons,
                       "time_on_therapy_days": d.km.as_dict(), "response": d.response} for d in r.drugs],
            "survival": [{"title": c.title, "curves": [k.as_dict() for k in c.curves], "note": c.note,
                          "logrank": None if c.logrank is None else {"chi2": c.logrank[0], "p": c.logrank[1]}}
                         for c in r.comparisons]}


@router.get("/report", response_class=HTMLResponse)
def report(request: Request, actor: Actor = Depends(actor_of)) -> HTMLResponse:
    from .report import render_html

    r = _call(lambda: ops.analytics_report(registry_of(request), actor))
    return HTMLResponse(render_html(r))


@router.get("/audit/verify")
def audit_verify(request: Request, actor: Actor = Depends(actor_of)) -> dict[str, Any]:
    r = _call(lambda: registry_of(request).verify_audit(actor))
    return {"ok": r.ok, "entries": r.entries, "head_seq": r.head_seq, "head_hash": r.head_hash,
            "problems": r.problems}
