"""JSON API for model-informed dosing under ``/api/v1/dosing``: the model library, MAP-Bayesian fits
of NM-TRAN data, and dose suggestions.

A thin face over :mod:`ipexrx.dosing` (numpy/scipy load on the first dosing call, not at start-up).
Every suggestion carries the model's citation and the "optimal dosing in IPEX not established"
caveat; a :class:`~ipexrx.dosing.errors.DosingError` (unknown model, covariate outside a refused
range, unit that differs from the model's, unsorted times...) is a 422 with its message.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import ERROR_RESPONSES, ApiError, ErrorBody
from .pool import analysis_slot, pool_of

router = APIRouter(prefix="/api/v1/dosing", tags=["Dosing"])


class CitationOut(BaseModel):
    text: str
    doi: str | None = None


class ModelSummary(BaseModel):
    id: str
    title: str
    drug: str
    kind: str
    citation: CitationOut
    population: str
    covariates: list[str] = Field(description="Covariate names with unit and validated range.")
    etas: list[str]
    targets: list[dict[str, Any]]
    caveats: list[str]


class ModelList(BaseModel):
    models: list[ModelSummary]


class RecommendRequest(BaseModel):
    """Either a measured level on the current regimen (a posteriori) or covariates only (a priori)."""

    model_config = ConfigDict(extra="forbid")

    drug: Literal["tacrolimus", "sirolimus", "cyclosporine"] | None = Field(
        None, description="Choose the model among this drug's clinical models (population match without levels, "
        "weighted by how well each explains the level with one); the choice is returned in 'model_choice'.")
    age_years: float | None = Field(None, ge=0, le=120, description="Age in years (used to choose the model).")
    co_medications: list[str] | None = Field(
        None, max_length=100, description="With drug: the patient's complete list of other current drugs (generic "
        "names); sets the models' co-medication indicators (e.g. posaconazole). Omitted = unknown: models that need "
        "one are not used.")
    model: str | None = Field(None, description="A model id from GET /api/v1/dosing/models.")
    covariates: dict[str, float] = Field(default_factory=dict, description="Covariates in the model's units.")
    level: float | None = Field(None, gt=0, description="A steady-state level on the current regimen.")
    level_unit: str | None = Field(None, description="Unit of level, converted to the model's: ng/mL = ug/L = mcg/L "
                                   "(any case), mg/L, or nmol/L, pmol/L, pmol/mL, umol/L with the drug's molar mass.")
    dose_mg: float | None = Field(None, gt=0, description="Current dose in mg (with level).")
    interval_h: float | None = Field(None, gt=0, le=168, description="Dosing interval in hours.")
    hours_after_dose: float | None = Field(None, gt=0, description="When the level was drawn (default: trough).")
    metric: Literal["trough", "peak", "auc24"] | None = None
    target_low: float | None = Field(None, gt=0)
    target_high: float | None = Field(None, gt=0)
    target_unit: str | None = None
    form: int | str | None = Field(None, description="Dosage form of the model: index or name (e.g. 'tablet'); "
                                   "default: the model's first form, or the first that can reach the target.")
    new_interval_h: float | None = Field(None, gt=0, le=168, description="With level: interval of the suggestion "
                                         "if it should differ from the current interval_h.")
    retarget: bool = Field(False, description="Aim at the middle of the target range even when the current "
                           "regimen is predicted inside it.")

    @model_validator(mode="after")
    def _consistent(self) -> RecommendRequest:
        if (self.drug is None) == (self.model is None):
            raise ValueError("give exactly one of 'drug' or 'model'")
        if self.level is not None and (self.level_unit is None or self.dose_mg is None or self.interval_h is None):
            raise ValueError("a level needs level_unit, dose_mg and interval_h (the regimen it was measured on)")
        if (self.target_low is None) != (self.target_high is None):
            raise ValueError("give both target_low and target_high, or neither")
        if self.target_low is not None and self.target_high is not None and self.target_low >= self.target_high:
            raise ValueError("target_low must be below target_high")
        return self


class FitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="A model id from GET /api/v1/dosing/models.")
    data_csv: str = Field(min_length=1, max_length=5_000_000,
                          description="NM-TRAN style CSV text (ID,TIME,EVID,AMT,CMT,...,DV; '.' = missing).")
    subject_id: str | None = Field(None, description="Fit only this subject.")
    dv_unit: str | None = Field(None, description="Unit of DV and LLOQ (default: the model's output unit); "
                                "ng/mL = ug/L = mcg/L (any case), mg/L, or nmol/L-type molar units.")


def _finite(obj: Any) -> Any:
    """JSON cannot carry NaN/inf: map them to null rather than emit invalid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _json(obj: Any) -> Response:
    import json

    return Response(json.dumps(_finite(obj)), media_type="application/json")


def _dosing_error(exc: Exception) -> ApiError:
    from ..dosing.checks import InputCheckError

    if isinstance(exc, InputCheckError):  # structured: one issue per error-level input problem
        issues = [{"path": p.path, "expected": p.expected, "got": p.got} for p in exc.problems
                  if p.severity == "error"]
        return ApiError(422, "input_check_failed", str(exc), issues=issues)
    return ApiError(422, "dosing_error", str(exc))


@router.get("/models", response_model=ModelList, summary="The population-PK model library with citations")
def list_models(reference: bool = False) -> Response:
    """Clinical models; ``?reference=true`` lists the fictional teaching/validation models instead."""
    from ..dosing.engine import covariate_range_text
    from ..dosing.model import all_models

    out = []
    for m in (m for m in all_models() if m.spec.kind == ("reference" if reference else "clinical")):
        s = m.spec
        out.append(ModelSummary(
            id=s.id, title=s.title, drug=s.drug, kind=s.kind,
            citation=CitationOut(text=s.citation.text, doi=s.citation.doi),
            population=s.population.description, covariates=covariate_range_text(m), etas=list(m.eta_names),
            targets=[t.model_dump() for t in s.targets], caveats=list(s.caveats),
        ).model_dump())
    return _json({"models": out})


BUSY: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "Busy with other analyses: try again after Retry-After seconds."}}
ANALYSIS = [Depends(analysis_slot)]  # CPU-heavy: a place in the bounded analysis pool (503 when saturated)


def _recommendation(body: RecommendRequest) -> Any:
    """The Recommendation for a request (shared by /recommend and /report); DosingError propagates."""
    from ..dosing.recommend import recommend, recommend_from_trough

    if body.model is None:
        # by drug: the model is chosen among the drug's clinical models; the choice travels in "model_choice"
        from ..dosing.select import recommend_for_drug

        rec = recommend_for_drug(
            body.drug or "", body.covariates, age_years=body.age_years, level=body.level,
            level_unit=body.level_unit, dose_mg=body.dose_mg, interval_h=body.interval_h,
            hours_after_dose=body.hours_after_dose, new_interval_h=body.new_interval_h, metric=body.metric,
            target_low=body.target_low, target_high=body.target_high, target_unit=body.target_unit,
            form=body.form, retarget=body.retarget,
            co_medications=[c.strip().lower() for c in body.co_medications]
            if body.co_medications is not None else None)
        return rec
    model_id = body.model
    if body.level is not None:
        assert body.level_unit is not None and body.dose_mg is not None and body.interval_h is not None
        rec = recommend_from_trough(
            body.drug or "", body.level, body.level_unit, body.dose_mg, body.interval_h, body.covariates,
            model_id=model_id, hours_after_dose=body.hours_after_dose,
            target_low=body.target_low, target_high=body.target_high, metric=body.metric, form_index=body.form,
            new_interval_h=body.new_interval_h, retarget=body.retarget, target_unit=body.target_unit,
        )
    else:
        rec = recommend(model_id, None, body.covariates, interval_h=body.interval_h, metric=body.metric,
                        target_low=body.target_low, target_high=body.target_high,
                        target_unit=body.target_unit, form_index=body.form, retarget=body.retarget)
    return rec


@router.post("/recommend", summary="Suggest a dose and interval (not an order)",
             responses={**ERROR_RESPONSES, **BUSY}, dependencies=ANALYSIS)
def recommend(body: RecommendRequest) -> Response:
    from ..dosing.errors import DosingError

    try:
        rec = _recommendation(body)
    except DosingError as exc:
        raise _dosing_error(exc) from None
    return _json(rec.as_dict())


class ReportRequest(RecommendRequest):
    """The request of POST /recommend, and the date to print on the report."""

    as_of: dt.date | None = Field(None, description="Date printed on the report (YYYY-MM-DD; default: today). The "
                                  "same request and date give the same report.")


def _wants_html(accept: str | None) -> bool:
    """True when the client prefers text/html to application/json (quality values honoured; JSON wins ties)."""
    best: dict[str, float] = {}
    for part in (accept or "").split(","):
        kind, *params = (x.strip() for x in part.split(";"))
        q = 1.0
        for prm in params:
            if prm.startswith("q="):
                try:
                    q = float(prm[2:])
                except ValueError:
                    q = 0.0
        best[kind.lower()] = max(q, best.get(kind.lower(), 0.0))
    html = max(best.get("text/html", 0.0), best.get("text/*", 0.0) * 0.999)
    json_q = max(best.get("application/json", 0.0), best.get("application/*", 0.0) * 0.999, best.get("*/*", 0.0))
    return html > 0 and html > json_q


@router.post("/report", summary="The TDM report of a suggestion: JSON, or one printable HTML page (Accept: text/html)",
             description="Takes the request of POST /api/v1/dosing/recommend (plus `as_of`). Returns the report as "
             "JSON, or, when the client prefers `text/html`, as one self-contained printable A4 page with an inline "
             "SVG plot. Both hold the same content: alerts first, the suggestion (not an order) with alternatives "
             "and probability of target attainment, the patient's inputs, the curve with its interval bands and the "
             "target band, fit diagnostics, the model's citation and validity domain, caveats and numbered sources.",
             responses={**ERROR_RESPONSES, **BUSY, 200: {"description": "The report.", "content": {
                 "application/json": {}, "text/html": {}}}}, dependencies=ANALYSIS)
def report(body: ReportRequest, request: Request) -> Response:
    from ..dosing.errors import DosingError
    from ..dosing.model import get_model
    from ..dosing.report import build_report

    try:
        rec = _recommendation(body)
        rep = build_report(get_model(rec.model_id), rec, covariates=body.covariates, as_of=body.as_of,
                           age_years=body.age_years)
    except DosingError as exc:
        raise _dosing_error(exc) from None
    if _wants_html(request.headers.get("accept")):
        from ..report import render_tdm_html

        return Response(render_tdm_html(rep), media_type="text/html; charset=utf-8")
    return _json(rep.as_dict())


@router.post("/fit", summary="MAP-Bayesian fit of NM-TRAN data, one result per subject",
             responses={**ERROR_RESPONSES, **BUSY, 413: {"model": ErrorBody, "description": "Too many subjects."}},
             dependencies=ANALYSIS)
def fit(body: FitRequest) -> Response:
    import io

    from ..dosing.checks import check_inputs, require_ok
    from ..dosing.data import read_nmtran
    from ..dosing.errors import DosingError
    from ..dosing.estimate import fit as map_fit
    from ..dosing.model import get_model
    from ..dosing.units import convert_subject

    if "/" in body.model or body.model.endswith((".yaml", ".yml")):
        raise ApiError(422, "dosing_error", "model must be a library id, not a path")
    try:
        m = get_model(body.model)
        subjects = read_nmtran(io.StringIO(body.data_csv), m.covariate_names())
        if body.subject_id is not None:
            subjects = [s for s in subjects if s.id == body.subject_id]
            if not subjects:
                raise ApiError(404, "not_found", f"subject {body.subject_id!r} is not in the data")
        if len(subjects) > 200:
            raise ApiError(413, "too_large", f"at most 200 subjects per call, got {len(subjects)}")
        results = []
        for s in subjects:
            if body.dv_unit is not None:
                convert_subject(s, body.dv_unit, m)
            checked = require_ok(check_inputs(m, s))  # errors: 422 with one issue per problem
            r = map_fit(m, s, raise_on_failure=False).as_dict()
            r["input_checks"] = [p.as_dict() for p in checked]
            r["unit"] = m.spec.outputs[0].unit
            results.append(r)
    except DosingError as exc:
        raise _dosing_error(exc) from None
    return _json({"model": m.id, "citation": m.spec.citation.text, "results": results})


UPLOAD_DESCRIPTION = (
    "multipart/form-data: 'file' is an NM-TRAN CSV (UTF-8 with or without byte-order mark, or Windows-1252/"
    "Latin-1 with a warning) or a FHIR R4 Bundle (JSON, UTF-8); at most 5 MB (413 beyond). The same input checks "
    "as /recommend run before any fit; a bad encoding or an input-check error is a 422 naming the file, line and "
    "field.")


def _covariates_field(text: str | None) -> dict[str, float]:
    import json

    if not text or not text.strip():
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(422, "invalid_request", f"covariates: expected a JSON object such as {{\"WT\": 20}}, got "
                       f"invalid JSON ({exc.msg})", issues=[{"path": "covariates", "expected": "a JSON object of "
                                                             "numbers", "got": text[:80]}]) from None
    bad = [k for k, v in obj.items() if isinstance(v, bool) or not isinstance(v, int | float)] \
        if isinstance(obj, dict) else None
    if bad is None or bad:
        got = type(obj).__name__ if bad is None else f"{bad[0]}: {obj[bad[0]]!r}"
        raise ApiError(422, "invalid_request", f"covariates: expected a JSON object of numbers (model units), "
                       f"got {got}",
                       issues=[{"path": "covariates", "expected": "a JSON object of numbers", "got": got[:80]}])
    return {str(k): float(v) for k, v in obj.items()}


@router.post("/recommend-upload", summary="Suggest a regimen from an uploaded NM-TRAN CSV or FHIR Bundle (not an "
             "order)", description=UPLOAD_DESCRIPTION,
             responses={**ERROR_RESPONSES, **BUSY, 413: {"model": ErrorBody,
                                                         "description": "The file is larger than 5 MB."}})
async def recommend_upload(
    request: Request,
    file: UploadFile = File(description="NM-TRAN CSV or FHIR Bundle (JSON) with the doses and levels."),
    model: str | None = Form(None, max_length=80, description="A clinical model id from GET /api/v1/dosing/models "
                             "(give this or drug)."),
    drug: Literal["tacrolimus", "sirolimus", "cyclosporine"] | None = Form(
        None, description="With a FHIR Bundle: choose the model among this drug's clinical models, weighted by how "
        "well each explains the levels (returned in 'model_choice'). An NM-TRAN CSV needs 'model'."),
    age_years: float | None = Form(None, ge=0, le=120, description="Age in years (used to choose the model)."),
    covariates: str | None = Form(None, description='Covariates in the model\'s units as a JSON object, e.g. '
                                  '{"WT": 20, "HCT": 0.33}; they override values in the file.'),
    subject_id: str | None = Form(None, max_length=100, description="The subject (ID) to dose when the CSV holds "
                                  "several."),
    dv_unit: str | None = Form(None, max_length=40, description="Unit of the CSV's DV column (default: the model's); "
                               "ng/mL = ug/L = mcg/L (any case), mg/L, or nmol/L-type molar units."),
    interval_h: float | None = Form(None, gt=0, le=168, description="Interval of the suggestion, if it should "
                                    "differ from the current one."),
    metric: Literal["trough", "peak", "auc24"] | None = Form(None),
    target_low: float | None = Form(None, gt=0),
    target_high: float | None = Form(None, gt=0),
    target_unit: str | None = Form(None, max_length=40),
    form: str = Form("0", max_length=80, description="Dosage form of the model: index or name (e.g. 'tablet')."),
    retarget: bool = Form(False, description="Aim at the middle of the target range even when the current regimen "
                          "is predicted inside it."),
) -> Response:
    from ..dosing.errors import DosingError
    from ..dosing.inputs import MAX_UPLOAD_BYTES, checked_recommendation, subject_from_file
    from ..dosing.model import get_model

    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise ApiError(413, "payload_too_large", f"{file.filename or 'the file'}: expected at most "
                       f"{MAX_UPLOAD_BYTES // 2**20} MB, got more")
    covs = _covariates_field(covariates)
    if (target_low is None) != (target_high is None) or (
            target_low is not None and target_high is not None and target_low >= target_high):
        raise ApiError(422, "invalid_request", "give both target_low and target_high with target_low below "
                       "target_high, or neither")
    if (model is None) == (drug is None):
        raise ApiError(422, "invalid_request", "give exactly one of 'model' or 'drug'", issues=[
            {"path": "model", "expected": "a clinical model id, or 'drug' instead", "got": model or "nothing"}])
    if drug is not None:  # several fits: CPU-heavy, on the bounded pool
        return await pool_of(request.app).run(
            _upload_by_drug, drug, data, file.filename or "the uploaded file", covs, age_years, interval_h, metric,
            target_low, target_high, target_unit, form, retarget)
    assert model is not None
    if "/" in model or model.endswith((".yaml", ".yml")):
        raise ApiError(422, "dosing_error", "model must be a library id, not a path")
    try:
        m = get_model(model)
        if m.spec.kind != "clinical":
            raise DosingError(f"model {m.id} is a fictional teaching/validation model, never used for a patient; "
                              "choose a clinical model from GET /api/v1/dosing/models")
        unit = target_unit or (m.spec.outputs[0].unit + ("*h" if metric == "auc24" else "")
                               if target_low is not None else None)

        def work() -> tuple[Any, Any]:  # reading the file and the fit: CPU-heavy, on the bounded pool
            subject = subject_from_file(m, data, file.filename or "the uploaded file", covs, subject_id or None,
                                        dv_unit or None)
            return checked_recommendation(m, subject, covs, interval_h=interval_h, metric=metric,
                                          target_low=target_low, target_high=target_high, target_unit=unit,
                                          form_index=form, retarget=retarget)

        rec, problems = await pool_of(request.app).run(work)
    except DosingError as exc:
        raise _dosing_error(exc) from None
    return _upload_answer(rec, problems, m)


def _upload_answer(rec: Any, problems: list[Any], m: Any) -> Response:
    """The /recommend JSON plus the warning-level input checks and the model's concentration unit."""
    out = rec.as_dict()
    out["input_checks"] = [p.as_dict() for p in problems]
    out["unit"] = m.spec.outputs[0].unit
    return _json(out)


def _upload_by_drug(drug: str, data: bytes, filename: str, covs: dict[str, float], age_years: float | None,
                    interval_h: float | None, metric: str | None, target_low: float | None, target_high: float | None,
                    target_unit: str | None, form: str, retarget: bool) -> Response:
    """The upload endpoint with the model chosen among the drug's clinical models (FHIR Bundle only)."""
    from ..dosing.checks import check_inputs
    from ..dosing.errors import DataError, DosingError
    from ..dosing.inputs import is_fhir
    from ..dosing.model import get_model
    from ..dosing.select import recommend_for_drug
    from ..textio import TextEncodingError, decode_text

    try:
        if not is_fhir(data, filename):
            raise DataError(f"{filename}: an NM-TRAN CSV numbers compartments for one model; expected 'model' with a "
                            "CSV, or a FHIR Bundle with 'drug'")
        try:
            text = decode_text(data, filename, legacy=False).text
        except TextEncodingError as exc:
            raise DataError(str(exc)) from None
        rec = recommend_for_drug(drug, covs, age_years=age_years, fhir_bundle=text, new_interval_h=interval_h,
                                 interval_h=interval_h, metric=metric, target_low=target_low, target_high=target_high,
                                 target_unit=target_unit, form=form, retarget=retarget)
        m = get_model(rec.model_id)
        own = {k: v for k, v in covs.items() if k in m.spec.covariates}
        problems = check_inputs(m, rec.subject, own, interval_h=interval_h)  # warnings only: errors stopped it above
    except DosingError as exc:
        raise _dosing_error(exc) from None
    return _upload_answer(rec, problems, m)
