"""The sandbox's FHIR R4 server: read and search, JSON only, under ``/fhir``.

``GET /fhir/metadata`` (CapabilityStatement, no token), ``GET /fhir/.well-known/smart-configuration``
(no token), ``GET /fhir/Patient/{id}``, ``GET /fhir/{type}/{id}`` and ``GET /fhir/{type}?patient=``
(or ``subject=``; also ``category``, ``status``, ``_sort=date|-date``, ``_count``) with a Bearer
token from the sandbox's authorization server. A token is for one patient and the types its scope
names: another patient's data is 403, no or an expired token 401, an unknown id 404, an unsupported
search 400 - each an OperationOutcome.

Why not a FHIR server package: fhirstarter 4.2.0 requires fastapi<0.137 and python-multipart<0.0.32,
fhirsnake 1.1.0 requires fastapi<0.113 (ipexrx pins fastapi 0.163.2 and python-multipart 0.0.34); this
read/search subset is what the SMART app and CDS Hooks prefetch need.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .auth import AccessToken, smart_configuration
from .store import PATIENT_PARAMS, SEARCHABLE, SearchError, outcome, patient_of, searchset

router = APIRouter(include_in_schema=False)
FHIR_JSON = "application/fhir+json"


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def _refuse(request: Request, rtype: str) -> tuple[AccessToken | None, JSONResponse | None]:
    token = request.app.state.sandbox.auth.token(request.headers.get("authorization"))
    if token is None:
        return None, _json(outcome("login", "a Bearer access token from the sandbox's authorization server is "
                                   "required (none was sent, or it has expired)"), 401,
                           {"www-authenticate": 'Bearer realm="ipexrx sandbox"'})
    if not token.may_read(rtype):
        return None, _json(outcome("forbidden", f"the access token's scope does not allow reading {rtype}"), 403)
    return token, None


@router.get("/fhir/metadata")
def metadata(request: Request) -> JSONResponse:
    sb = request.app.state.sandbox
    security = {"extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                               "extension": [{"url": "authorize", "valueUri": f"{sb.base}/auth/authorize"},
                                             {"url": "token", "valueUri": f"{sb.base}/auth/token"}]}],
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                         "code": "SMART-on-FHIR"}]}]}
    resources = [{"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}],
                  "searchParam": [{"name": "_id", "type": "token"}] if t == "Patient" else
                  [{"name": p, "type": "reference"} for p in PATIENT_PARAMS]
                  + [{"name": "category", "type": "token"}, {"name": "status", "type": "token"}]}
                 for t in SEARCHABLE]
    return _json({"resourceType": "CapabilityStatement", "status": "active", "date": "2026-12-06", "kind": "instance",
                  "software": {"name": "ipexrx sandbox EHR"}, "implementation": {
                      "description": "ipexrx sandbox: synthetic patients only", "url": sb.fhir_base},
                  "fhirVersion": "4.0.1", "format": ["json"],
                  "rest": [{"mode": "server", "security": security, "resource": resources}]})


@router.get("/fhir/.well-known/smart-configuration")
def smart_config(request: Request) -> JSONResponse:
    return JSONResponse(smart_configuration(request.app.state.sandbox.base))


def _admit(request: Request, rtype: str) -> tuple[AccessToken | None, JSONResponse | None]:
    """A served resource type and a token that may read it; else the OperationOutcome to answer."""
    if rtype not in SEARCHABLE:
        return None, _json(outcome("not-supported", f"resource type '{rtype}' is not served; expected one of "
                                   f"{', '.join(SEARCHABLE)}"), 404)
    return _refuse(request, rtype)


@router.get("/fhir/{rtype}/{rid}")
def read(rtype: str, rid: str, request: Request) -> JSONResponse:
    token, refusal = _admit(request, rtype)
    if refusal is not None:
        return refusal
    assert token is not None
    found = request.app.state.sandbox.store.read(rtype, rid)
    if found is None:
        return _json(outcome("not-found", f"no {rtype} with id '{rid[:64]}'"), 404)
    if patient_of(found) != token.patient:
        return _json(outcome("forbidden", "the access token is for another patient"), 403)
    return _json(found)


@router.get("/fhir/{rtype}")
def search(rtype: str, request: Request) -> JSONResponse:
    sb = request.app.state.sandbox
    token, refusal = _admit(request, rtype)
    if refusal is not None:
        return refusal
    assert token is not None
    params = list(request.query_params.multi_items())
    named = {v.removeprefix("Patient/") for k, v in params if k in PATIENT_PARAMS}
    if rtype == "Patient":
        named |= {v for k, v in params if k == "_id"}
    if not named:
        return _json(outcome("required", f"a {rtype} search must name the patient (patient=<id> or subject=<id>"
                             + (", or _id=<id>" if rtype == "Patient" else "") + ")"), 400)
    if named != {token.patient}:
        return _json(outcome("forbidden", "the access token is for another patient"), 403)
    try:
        found = sb.store.search(rtype, params)
    except SearchError as exc:
        return _json(outcome("not-supported", str(exc)), 400)
    return _json(searchset(sb.fhir_base, rtype, str(request.url.query), found))
