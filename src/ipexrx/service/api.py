"""JSON API under ``/api/v1``: the reference views of the knowledge base and the assessment.

The views are the same typed models the terminal prints (``ipexrx.reference.models``), so the JSON
here and ``ipexrx drug X --json`` agree field for field. Unknown names are a 404 carrying the
closest matches; a name that fits several records is a 409 listing them (we never guess).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from .. import __version__
from ..assess.models import Assessment, PlanChoice
from ..reference.models import ClassView, DrugMonograph, ManifestationView, SearchResults, SourcesView, SourceView
from ..reference.models import SummaryView as SummaryModel
from .errors import ERROR_RESPONSES, ApiError, ErrorBody

router = APIRouter(prefix="/api/v1", tags=["Reference"])
T = TypeVar("T")

LOOKUP_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    409: {"model": ErrorBody, "description": "The name fits several records; suggestions lists them."},
}


def lookup(kind: str, query: str, fn: Callable[[str], T]) -> T:
    """Run a reference lookup, turning its errors into 404 / 409 JSON errors."""
    from ..reference import AmbiguousQueryError, NotFoundError

    try:
        return fn(query)
    except NotFoundError as exc:
        raise ApiError(404, "not_found", str(exc), suggestions=list(exc.suggestions)) from None
    except AmbiguousQueryError as exc:
        raise ApiError(409, "ambiguous", str(exc), suggestions=list(exc.candidates)) from None


def _json(model: BaseModel) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


class VersionInfo(BaseModel):
    software: str
    content_version: str
    content_released: str
    disclaimer: str


class IndexEntry(BaseModel):
    id: str
    name: str
    detail: str = Field(description="Brands (drugs), parent class (classes) or HPO ids (manifestations).")
    api: str = Field(description="API path of the full record.")
    page: str = Field(description="Web page of the record.")


class Index(BaseModel):
    items: list[IndexEntry]


@router.get("/version", response_model=VersionInfo, summary="Software and content versions")
def version() -> VersionInfo:
    from ..knowledge import get_kb

    kb = get_kb()
    return VersionInfo(software=__version__, content_version=kb.meta.content_version,
                       content_released=kb.meta.released.isoformat(), disclaimer=kb.meta.disclaimer)


@router.get("/summary", response_model=SummaryModel, summary="The IPEX medication summary")
def get_summary() -> Response:
    from ..reference import summary

    return _json(summary())


def drug_index() -> list[IndexEntry]:
    from ..knowledge import get_kb

    kb = get_kb()
    return [IndexEntry(id=d.id, name=d.name, detail=", ".join(b.name for b in d.brands),
                       api=f"/api/v1/drugs/{d.id}", page=f"/drugs/{d.id}")
            for d in sorted(kb.drugs.values(), key=lambda d: d.name)]


def class_index() -> list[IndexEntry]:
    from ..knowledge import get_kb

    kb = get_kb()
    return [IndexEntry(id=c.id, name=c.name, detail=kb.classes[c.parent].name if c.parent in kb.classes else "",
                       api=f"/api/v1/classes/{c.id}", page=f"/classes/{c.id}")
            for c in sorted(kb.classes.values(), key=lambda c: c.name)]


def manifestation_index() -> list[IndexEntry]:
    from ..knowledge import get_kb

    kb = get_kb()
    return [IndexEntry(id=m.id, name=m.name, detail=", ".join(c.code for c in m.hpo),
                       api=f"/api/v1/manifestations/{m.id}", page=f"/manifestations/{m.id}")
            for m in kb.manifestations.values()]


@router.get("/drugs", response_model=Index, summary="All drugs (id, name, brands)")
def list_drugs() -> Index:
    return Index(items=drug_index())


@router.get("/drugs/{name}", response_model=DrugMonograph, responses=LOOKUP_RESPONSES,
            summary="Drug monograph by generic name, brand, synonym, ATC code or RxCUI")
def get_drug(name: str) -> Response:
    from ..reference import drug_monograph

    return _json(lookup("drug", name, drug_monograph))


@router.get("/manifestations", response_model=Index, summary="All manifestations")
def list_manifestations() -> Index:
    return Index(items=manifestation_index())


@router.get("/manifestations/{name}", response_model=ManifestationView, responses=LOOKUP_RESPONSES,
            summary="A manifestation by id, name, synonym or HPO id, with options by evidence strength")
def get_manifestation(name: str) -> Response:
    from ..reference import manifestation_view

    return _json(lookup("manifestation", name, manifestation_view))


@router.get("/classes", response_model=Index, summary="All drug classes")
def list_classes() -> Index:
    return Index(items=class_index())


@router.get("/classes/{name}", response_model=ClassView, responses=LOOKUP_RESPONSES,
            summary="A drug class by id, name, synonym or ATC code, with its members")
def get_class(name: str) -> Response:
    from ..reference import class_view

    return _json(lookup("class", name, class_view))


@router.get("/sources", response_model=SourcesView, summary="Every source the knowledge base cites")
def get_sources() -> Response:
    from ..reference import list_sources

    return _json(list_sources())


@router.get("/sources/{source_id}", response_model=SourceView, responses=ERROR_RESPONSES, summary="One source")
def get_source(source_id: str) -> Response:
    from rapidfuzz import process

    from ..reference import list_sources

    sources = {s.id: s for s in list_sources().sources}
    if source_id not in sources:
        close = [m[0] for m in process.extract(source_id, list(sources), limit=5, score_cutoff=50)]
        hint = f"; closest matches: {', '.join(close)}" if close else ""
        raise ApiError(404, "not_found", f"no source with id '{source_id}'{hint}", suggestions=close)
    return _json(sources[source_id])


@router.get("/search", response_model=SearchResults, responses=ERROR_RESPONSES,
            summary="Ranked, typo-tolerant search over drugs, brands, classes, manifestations, statements...")
def get_search(q: str = Query(..., min_length=1, max_length=200, description="Search text."),
               limit: int = Query(10, ge=1, le=50)) -> Response:
    from ..reference import search

    return _json(search(q, limit=limit))


def page_for_record(kind: str, rid: str) -> str:
    """Our web page for a search hit or a record, used by cards and templates alike."""
    return {"drug": f"/drugs/{rid}", "class": f"/classes/{rid}", "manifestation": f"/manifestations/{rid}",
            "source": f"/sources#src-{rid}", "disease": "/", "interaction": f"/interactions/{rid}",
            "ipex-like": f"/#ipex-like-{rid}", "evidence": f"/sources#evidence-{rid}"}.get(kind, "/")




# --------------------------------------------------------------------------------------------
# Assessment
# --------------------------------------------------------------------------------------------
ASSESS_EXAMPLES: dict[str, Any] = {
    "patient": {"summary": "ipexrx patient JSON", "value": {
        "diagnosis": {"type": "ipex"}, "demographics": {"age_years": 6, "weight_kg": 18.4},
        "medications": [{"drug": "tacrolimus", "dose": "1 mg", "frequency": "q12h"},
                        {"drug": "cyclosporine", "status": "planned"}]}},
    "bundle": {"summary": "FHIR R4 Bundle", "value": {
        "resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "2020-01-05"}},
            {"resource": {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
                          "code": {"text": "IPEX syndrome"}}},
            {"resource": {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
                          "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"text": "sirolimus"}}},
        ]}},
}


def run_assessment(payload: Any, as_of: dt.date | None, ipex_plan: PlanChoice = "auto") -> Any:
    """assess(), with patient-input errors turned into a located 422."""
    from ..assess import assess
    from ..patient import PatientInputError

    try:
        return assess(payload, as_of=as_of, ipex_plan=ipex_plan)
    except PatientInputError as exc:
        raise ApiError(422, type(exc).__name__, exc.summary, issues=[i.to_dict() for i in exc.issues]) from None


@router.post(
    "/assess",
    response_model=Assessment,
    responses={**ERROR_RESPONSES, 400: {"model": ErrorBody, "description": "The body is not JSON."},
               503: {"model": ErrorBody, "description": "Busy with other analyses: try again after Retry-After "
                     "seconds."},
               200: {"description": "The assessment (format=json) or a FHIR R4 Bundle of DetectedIssue and "
                     "RequestGroup (format=fhir).",
                     "content": {"application/fhir+json": {"schema": {"type": "object"}}}}},
    tags=["Assessment"],
    summary="Assess a patient (ipexrx patient JSON or a FHIR R4 Bundle): cited safety alerts, and for IPEX or an "
    "IPEX-like disorder the IPEX plan",
    description="Every drug-safety rule runs for every chart. The IPEX plan (HSCT section, options per "
    "manifestation) is shown when the chart has IPEX or an IPEX-like disorder, or as `ipex_plan` says; the "
    "answer's `mode` and `mode_reason` say which applied. Alerts come first (critical, warning, info), then "
    "the plan.",
)
async def post_assess(
    request: Request,
    payload: dict[str, Any] = Body(..., openapi_examples=ASSESS_EXAMPLES,
                                   description="An ipexrx patient record (docs/patient-format.md) or a FHIR R4 "
                                   "Bundle (resourceType 'Bundle')."),
    as_of: dt.date | None = Query(None, description="Date monitoring intervals are measured to (default today)."),
    format: Literal["json", "fhir"] = Query("json", description="json: ipexrx assessment; fhir: FHIR R4 Bundle."),
    ipex_plan: PlanChoice = Query("auto", description="auto: the IPEX plan (HSCT, options per manifestation) only "
                                  "when the chart has IPEX or an IPEX-like disorder; always; never. Drug-safety "
                                  "checks run in every case."),
) -> Response:
    from .pool import pool_of

    # CPU-heavy: on the bounded analysis pool, never on the event loop (503 when saturated)
    return await pool_of(request.app).run(_assess_response, payload, as_of, ipex_plan, format)


def _assess_response(payload: Any, as_of: dt.date | None, ipex_plan: PlanChoice, format: str) -> Response:
    result = run_assessment(payload, as_of, ipex_plan)
    if format == "fhir":
        import json

        return Response(json.dumps(result.to_fhir()), media_type="application/fhir+json")
    return _json(result)
