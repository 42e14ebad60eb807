"""The registry's HTTP API as a framework-free route table.

Layering keeps web frameworks in the faces (``service``, ``cli``), so this module only says *what*
each endpoint is: method, path, the library call, the success status. :func:`call` runs one route:
it authenticates the bearer token, calls :class:`~ipexrx.registry.core.Registry` (which checks role,
centre and input, and audits), and maps errors to HTTP statuses. The service mounts ``ROUTES``
with a few lines of FastAPI glue (see docs/registry.md); the tests mount them the same way.

Errors: ``{"detail": {"message": ..., "problems": [...]}}`` with 400, 401 (plus
``WWW-Authenticate: Bearer``), 403, 404, 409 or 422, never a traceback.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from . import ops
from .core import Actor, Registry
from .errors import NotAuthenticated, NotFound, RateLimited, RegistryError, ValidationFailed
from .models import ApiToken, Course, Patient, User
from .schemas import CENTRE_CODE_MAX, column_length, parse
from .schemas import _In as _Body
from .security import MAX_PASSWORD_LENGTH

PREFIX = "/api/v1/registry"


@dataclass(frozen=True)
class Route:
    method: Literal["GET", "POST", "PATCH"]
    path: str
    handler: Callable[..., Any]
    summary: str
    status: int = 200
    auth: bool = True
    html: bool = False
    source: bool = False  # the handler takes the client's address as a fifth argument


class Login(_Body):
    username: str = Field(max_length=column_length(User, "username"))
    password: str = Field(max_length=MAX_PASSWORD_LENGTH)
    label: str = Field("api", max_length=column_length(ApiToken, "label"))


class UserChange(_Body):
    role: str | None = Field(None, max_length=column_length(User, "role"))
    centre_code: str | None = Field(None, max_length=CENTRE_CODE_MAX)
    active: bool | None = None


class CourseStop(_Body):
    stop_date: dt.date
    reason_stopped: str = Field(max_length=column_length(Course, "reason_stopped"))
    reason_other: str | None = Field(None, max_length=column_length(Course, "reason_other"))


# Path parameters that name a stored value: checked against their column before any lookup or audit.
PATH_LIMITS = {"pseudonym": column_length(Patient, "pseudonym"), "username": column_length(User, "username"),
               "course_id": 18, "kind": 40}


def check_path(path_params: dict[str, str]) -> None:
    """A path parameter longer than the column it names is a 422 naming it and its limit."""
    problems = [f"path {name}: expected at most {PATH_LIMITS[name]} characters, got {len(value)}"
                for name, value in path_params.items() if name in PATH_LIMITS and len(value) > PATH_LIMITS[name]]
    if problems:
        raise ValidationFailed(problems, "request")


def _login(reg: Registry, _actor: None, _p: dict[str, str], body: Any, source: str | None) -> dict[str, str]:
    b: Login = parse(Login, body, "login")
    actor = reg.authenticate(b.username, b.password, source)
    return {"token": reg.issue_token(actor, b.label), "token_type": "bearer"}


def _change_user(reg: Registry, a: Actor, p: dict[str, str], body: Any) -> dict[str, str]:
    b: UserChange = parse(UserChange, body, "user change")
    reg.change_user(a, p["username"], role=b.role, centre_code=b.centre_code, active=b.active)
    return {"status": "changed"}


_CHILD = {"manifestations": "add_manifestation", "courses": "add_course", "visits": "add_visit",
          "adverse-events": "add_adverse_event", "hsct": "add_hsct"}


def _add_child(reg: Registry, a: Actor, p: dict[str, str], body: Any) -> dict[str, int]:
    if p["kind"] not in _CHILD:
        raise NotFound(f"expected one of {', '.join(_CHILD)}, got '{p['kind']}'")
    return {"id": getattr(reg, _CHILD[p["kind"]])(a, p["pseudonym"], body)}


def _stop_course(reg: Registry, a: Actor, p: dict[str, str], body: Any) -> dict[str, str]:
    b: CourseStop = parse(CourseStop, body, "course stop")
    try:
        course_id = int(p["course_id"])
    except ValueError:
        raise NotFound(f"expected a numeric course id, got '{p['course_id']}'") from None
    reg.stop_course(a, p["pseudonym"], course_id, b.stop_date, b.reason_stopped, b.reason_other)
    return {"status": "stopped"}


def _analytics(reg: Registry, a: Actor, _p: dict[str, str], _b: Any) -> dict[str, Any]:
    r = ops.analytics_report(reg, a)
    return {"scope": r.scope, "synthetic": r.synthetic, "patients": r.patients, "centres": r.centres,
            "deaths": r.deaths, "followup_due": [{"pseudonym": p, "last_visit": d} for p, d in r.followup_due],
            "drugs": [{"drug_id": d.drug_id, "courses": d.courses, "patients": d.patients, "reasons": d.reasons,
                       "time_on_therapy_days": d.km.as_dict(), "response": d.response} for d in r.drugs],
            "survival": [{"title": c.title, "curves": [k.as_dict() for k in c.curves], "note": c.note,
                          "logrank": None if c.logrank is None else {"chi2": c.logrank[0], "p": c.logrank[1]}}
                         for c in r.comparisons]}


def _report(reg: Registry, a: Actor, _p: dict[str, str], _b: Any) -> str:
    from .report import render_html

    return render_html(ops.analytics_report(reg, a), interactive=True)


def _verify(reg: Registry, a: Actor, _p: dict[str, str], _b: Any) -> dict[str, Any]:
    r = reg.verify_audit(a)
    return {"ok": r.ok, "entries": r.entries, "head_seq": r.head_seq, "head_hash": r.head_hash, "problems": r.problems}


ROUTES: list[Route] = [
    Route("POST", "/auth/token", _login, "Trade username and password for a bearer token", auth=False, source=True),
    Route("GET", "/centres", lambda r, a, p, b: r.centres(a), "List centres"),
    Route("POST", "/centres", lambda r, a, p, b: {"id": r.create_centre(a, b)}, "Create a centre (admin)", 201),
    Route("GET", "/users", lambda r, a, p, b: r.users(a), "List users (admin)"),
    Route("POST", "/users", lambda r, a, p, b: {"id": r.create_user(a, b)}, "Create a user (admin)", 201),
    Route("PATCH", "/users/{username}", _change_user, "Change role, centre or active flag (admin)"),
    Route("GET", "/patients", lambda r, a, p, b: r.list_patients(a), "Patients of your centre"),
    Route("POST", "/patients", lambda r, a, p, b: {"pseudonym": r.add_patient(a, b)},
          "Add a patient (optionally with the whole follow-up)", 201),
    Route("GET", "/patients/{pseudonym}", lambda r, a, p, b: r.get_patient(a, p["pseudonym"]), "One patient's record"),
    Route("PATCH", "/patients/{pseudonym}", lambda r, a, p, b: r.update_patient(a, p["pseudonym"], b),
          "Change core fields (vital status, follow-up, consent...)"),
    Route("POST", "/patients/{pseudonym}/courses/{course_id}/stop", _stop_course, "Stop a course"),
    Route("POST", "/patients/{pseudonym}/{kind}", _add_child,
          "Add a manifestation, course, visit, adverse event or HSCT", 201),
    Route("GET", "/export/deidentified", lambda r, a, p, b: ops.export_deidentified(r, a),
          "De-identified export (dates shifted per patient)"),
    Route("GET", "/export/fhir", lambda r, a, p, b: ops.export_fhir(r, a), "FHIR R4 Bundle of your centre"),
    Route("GET", "/analytics", _analytics, "Comparative analyses (JSON)"),
    Route("GET", "/report", _report, "Interactive HTML report", html=True),
    Route("GET", "/audit/verify", _verify, "Verify the audit hash chain (admin)"),
]


def _error(exc: RegistryError) -> tuple[int, Any, dict[str, str]]:
    detail: dict[str, Any] = {"message": str(exc).split("\n")[0]}
    if isinstance(exc, ValidationFailed):
        detail["problems"] = exc.problems
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    return exc.http_status, {"detail": detail}, headers


def call(reg: Registry, route: Route, authorization: str | None, path_params: dict[str, str],
         body: Any, source: str | None = None) -> tuple[int, Any, dict[str, str]]:
    """Run one route: (status, JSON-ready payload or HTML string, extra headers). ``source``: the
    client's address, for sign-in throttling."""
    try:
        actor: Actor | None = None
        if route.auth:
            scheme, _, token = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise NotAuthenticated("expected 'Authorization: Bearer <token>'")
            actor = reg.actor_for_token(token.strip())
        check_path(path_params)
        if route.method in ("POST", "PATCH") and not isinstance(body, dict):
            raise ValidationFailed([f"request body: expected a JSON object, got {type(body).__name__}"], "request")
        if route.source:
            return route.status, route.handler(reg, actor, path_params, body, source), {}
        return route.status, route.handler(reg, actor, path_params, body), {}
    except RegistryError as exc:
        return _error(exc)
