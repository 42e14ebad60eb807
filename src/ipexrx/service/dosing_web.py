"""The dosing page: choose a clinical model, enter covariates, the current regimen and levels (or upload an
NM-TRAN CSV or a FHIR Bundle), and read the suggestion with its plot, diagnostics, citation and caveats.

A plain HTML form (``multipart/form-data``) that works without JavaScript; ``static/dosing.js`` only adds level
rows and keeps the target in step with the chosen metric (no inline script: the pages are served under a
Content-Security-Policy without 'unsafe-inline'). The inputs go through :mod:`ipexrx.dosing.inputs`, the same
conversions and input checks as the upload API; any problem is shown on the page with status 422, never a 500.
Teaching models are never offered. Nothing is stored.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

MAX_FORM_BYTES = 6 * 1024 * 1024  # the 5 MB file and the other fields
MAX_LEVEL_ROWS = 20
PLOT_POINTS = 240  # per curve: smooth at page width, half the sampling time and SVG size of the default 400
LEVEL_UNITS = [("ng/mL", "ng/mL (= µg/L = mcg/L)"), ("mg/L", "mg/L"), ("nmol/L", "nmol/L"),
               ("pmol/mL", "pmol/mL"), ("umol/L", "µmol/L")]
METRICS = [("trough", "trough (just before the next dose)"), ("peak", "peak"), ("auc24", "AUC over 24 h")]


@dataclass
class FormState:
    """What the user entered, as text (so the form shows it back exactly), and the problems found in it."""

    model_id: str
    covariates: dict[str, str] = field(default_factory=dict)
    age_years: str = ""
    dose_mg: str = ""
    interval_h: str = ""
    new_interval_h: str = ""
    levels: list[dict[str, str]] = field(default_factory=list)
    subject_id: str = ""
    dv_unit: str = ""
    metric: str = "trough"
    target_low: str = ""
    target_high: str = ""
    target_for: str = ""
    form: str = "0"
    retarget: bool = False
    issues: list[dict[str, str]] = field(default_factory=list)


def plain(text: Any) -> str:
    """Text for the page without working notes or internal model ids (the TDM report's wording)."""
    from ..dosing.report import plain as report_plain

    return report_plain(str(text))


_SOURCE_REF = re.compile(r"(?<![\w/-])(?P<id>[a-z][a-z0-9.-]*[a-z0-9])(?:#(?P<loc>[\w.-]+))?(?![\w/#-])")


def source_html(text: Any) -> Any:
    """A problem's source with knowledge-base source ids (``label-prograf#2``) shown as the source's title and
    section, linked to its entry on /sources; other text escaped as is."""
    from markupsafe import Markup, escape

    from ..knowledge import get_kb

    sources = get_kb().sources
    out, last = [], 0
    raw = plain(text)
    for hit in _SOURCE_REF.finditer(raw):
        src = sources.get(hit["id"])
        if src is None:
            continue
        loc = hit["loc"]
        anchor = f"src-{src.id}-{loc}" if loc else f"src-{src.id}"
        out.append(escape(raw[last:hit.start()]))
        section = f", section {loc}" if loc else ""
        out.append(Markup('<a href="/sources#{}">{}{}</a>').format(anchor, src.title, section))
        last = hit.end()
    out.append(escape(raw[last:]))
    return Markup("").join(out)


def clinical_models() -> list[Any]:
    """The clinical models, by drug then id (teaching models are never offered)."""
    from ..dosing.model import all_models

    return sorted((m for m in all_models() if m.spec.kind == "clinical"), key=lambda m: (m.spec.drug, m.id))


@dataclass
class Choice:
    """What the form is built for: one clinical model, or a drug whose clinical models are compared for the
    patient (``model`` is None then; the model is chosen by :func:`ipexrx.dosing.select.recommend_for_drug`)."""

    value: str  # a model id, or "drug:<name>"
    drug: str
    title: str
    population: str
    citations: list[tuple[str, str | None]]
    covariates: list[dict[str, Any]]  # name, description, unit, allowed, help, required (no value)
    forms: list[tuple[str, str]]  # (value posted, label)
    targets: list[Any]
    unit: str
    default_interval_h: float | None
    model: Any | None = None

    @property
    def descriptions(self) -> dict[str, str]:
        return {c["name"]: c["description"] for c in self.covariates}


def _covariate_specs(m: Any) -> list[dict[str, Any]]:
    out = []
    for name, c in m.spec.covariates.items():
        unit = "" if c.unit == "1" else c.unit
        rng = (f"cohort range {c.min:g}-{c.max:g} {unit}".rstrip() if c.min is not None and c.max is not None
               else "")
        need = (f"blank: the model's default {c.default:g} {unit}".rstrip() if c.default is not None
                else "required")
        out.append({"name": name, "description": c.description, "unit": unit, "allowed": c.allowed,
                    "help": "; ".join(x for x in (rng, need) if x), "required": c.default is None})
    return out


def model_choice(m: Any) -> Choice:
    s = m.spec
    return Choice(value=m.id, drug=s.drug, title=s.title, population=s.population.description,
                  citations=[(s.citation.text, s.citation.doi)], covariates=_covariate_specs(m),
                  forms=[(str(i), f.form) for i, f in enumerate(s.dosage_forms)], targets=list(s.targets),
                  unit=s.outputs[0].unit, default_interval_h=s.default_interval_h, model=m)


def drug_choice(drug: str) -> Choice:
    """The union of the drug's oral clinical models' covariates, each with the models that use it and their cohort
    ranges; a model whose required covariate is left blank is not used (the comparison says so)."""
    from ..dosing.report import model_label
    from ..dosing.select import clinical_models as drug_models

    # the comparison is for oral regimens (recommend_for_drug's default route): intravenous-only models are left out
    models = [m for m in drug_models(drug) if not {d.route for d in m.spec.dosing.values()} <= {"iv", "intravenous"}]
    specs: dict[str, dict[str, Any]] = {}
    uses: dict[str, list[str]] = {}
    for m in models:
        for c in _covariate_specs(m):
            specs.setdefault(c["name"], {**c, "required": False})
            cv = m.spec.covariates[c["name"]]
            rng = f"cohort {cv.min:g}-{cv.max:g}" if cv.min is not None and cv.max is not None else ""
            need = "required" if cv.default is None else f"default {cv.default:g}"
            uses.setdefault(c["name"], []).append(f"{model_label(m)} ({', '.join(x for x in (rng, need) if x)})")
    for name, spec in specs.items():
        spec["help"] = "used by " + "; ".join(uses[name]) + ". Blank: a model that requires it is not used"
    forms = list(dict.fromkeys(f.form for m in models for f in m.spec.dosage_forms))
    units = {m.spec.outputs[0].unit for m in models}
    return Choice(
        value=f"drug:{drug}", drug=drug, title=f"{drug}: the model is chosen for this patient",
        population=(f"Each of the {len(models)} oral {drug} models is checked against the patient (covariates, age, "
                    "source population); with levels, every usable model is fitted and weighted by how well it "
                    "explains them, and the comparison is shown with the suggestion."),
        citations=[(m.spec.citation.text, m.spec.citation.doi) for m in models], covariates=list(specs.values()),
        forms=[(f, f) for f in forms], targets=[], unit=units.pop() if len(units) == 1 else "ng/mL",
        default_interval_h=None)


def _choice(value: str) -> Choice | None:
    """The choice named by a posted or linked value; None when it names no clinical model or modelled drug."""
    if value.startswith("drug:"):
        drug = value[5:]
        return drug_choice(drug) if drug in {m.spec.drug for m in clinical_models()} else None
    m = next((mm for mm in clinical_models() if mm.id == value), None)
    return model_choice(m) if m is not None else None


def _default_model_id() -> str:
    from ..dosing.recommend import DEFAULT_MODELS

    ids = {m.id for m in clinical_models()}
    return DEFAULT_MODELS["tacrolimus"] if DEFAULT_MODELS["tacrolimus"] in ids else sorted(ids)[0]


def _model_target(m: Any, metric: str) -> Any | None:
    """The model's own target for ``metric`` (the one :func:`~ipexrx.dosing.recommend.choose_target` uses)."""
    cands = [t for t in m.spec.targets if t.metric == metric]
    return cands[-1] if cands else None


def _fresh_state(ch: Choice) -> FormState:
    st = FormState(model_id=ch.value, interval_h=f"{ch.default_interval_h:g}" if ch.default_interval_h else "")
    metric = "trough" if _target_of(ch, "trough") or not ch.targets else ch.targets[0].metric
    t = _target_of(ch, metric)
    st.metric, st.target_for = metric, metric
    st.target_low, st.target_high = (f"{t.low:g}", f"{t.high:g}") if t else ("", "")
    return st


def _target_of(ch: Choice, metric: str) -> Any | None:
    return _model_target(ch.model, metric) if ch.model is not None else None


def _covariate_fields(ch: Choice, st: FormState) -> list[dict[str, Any]]:
    return [{**c, "value": st.covariates.get(c["name"], "")} for c in ch.covariates]


def _targets_help(ch: Choice) -> list[str]:
    out = []
    for t in ch.targets:
        verified = "verified" if t.verified else "not verified"
        out.append(plain(f"{t.metric} {t.low:g}-{t.high:g} {t.unit}: {t.context} ({verified} for IPEX; source: "
                         f"{t.source})"))
    return out


@dataclass(frozen=True)
class _Cited:
    """A source as the dosing results name it: its text (a reference, or knowledge-base ids) and a DOI."""

    source: str
    locator: str | None = None  # the DOI: two texts with different DOIs are different sources


class _PageCitations:
    """Numbers the sources the page cites, in the order the template shows them (shared rule:
    :mod:`ipexrx.reference.citations`); the numbered list is drawn at the end of the page."""

    def __init__(self) -> None:
        from ..reference.citations import CitationNumbers

        self.numbers: CitationNumbers[_Cited] = CitationNumbers()

    def __call__(self, text: Any, doi: str | None = None) -> Any:
        from markupsafe import Markup

        if not text:
            return Markup("")
        nums = self.numbers.cite([_Cited(str(text), doi or None)])
        return Markup(", ".join(f'<a class="cite" href="#dsrc-{n}">[{n}]</a>' for n in nums))

    def items(self) -> list[tuple[int, _Cited]]:
        return self.numbers.items()


def _page(request: Request, ch: Choice, st: FormState, status: int = 200, **ctx: Any) -> HTMLResponse:
    from .web import render

    models = clinical_models()
    rows = st.levels + [{"value": "", "unit": "ng/mL", "hours": ""}
                        for _ in range(max(1, 3 - len(st.levels)))]
    defaults: dict[str, tuple[str, str]] = {}
    for t in ch.targets:  # choose_target uses the last target per metric
        defaults[t.metric] = (f"{t.low:g}", f"{t.high:g}")
    from ..dosing.report import BOX_1980, BOX_1980_DOI, PARAMETER_WORDS, SAVIC_2009, SAVIC_2009_DOI

    body = render("dosing.html", request, title="Dose a patient", models=models, ch=ch, st=st, cite=_PageCitations(),
                  parameter_words=PARAMETER_WORDS,
                  diagnostic_sources=[(BOX_1980, BOX_1980_DOI), (SAVIC_2009, SAVIC_2009_DOI)],
                  drugs=sorted({m.spec.drug for m in models}), covariates=_covariate_fields(ch, st),
                  level_rows=rows[:MAX_LEVEL_ROWS], level_units=LEVEL_UNITS, metrics=METRICS,
                  target_defaults=defaults, targets_help=_targets_help(ch), unit=ch.unit, **ctx)
    return HTMLResponse(body, status_code=status)


def _number(text: str, label: str, st: FormState, *, positive: bool = True) -> float | None:
    t = text.strip().replace(",", ".") if text.count(",") == 1 and "." not in text else text.strip()
    if not t:
        return None
    try:
        v = float(t)
    except ValueError:
        st.issues.append({"path": label, "expected": "a number" + (" > 0" if positive else ""), "got": text[:40]})
        return None
    if not math.isfinite(v) or (positive and v <= 0):
        st.issues.append({"path": label, "expected": "a finite number" + (" > 0" if positive else ""),
                          "got": text[:40]})
        return None
    return v


_REC = re.compile(r"^subject (?P<sid>.+?) records\[(?P<i>\d+)\](?: \(row (?P<row>\d+)\))?(?:\.(?P<f>\w+))?$")


def where_label(path: str, descriptions: dict[str, str], typed: bool, filename: str | None) -> str:
    """A problem's place in the words of the form: a covariate's label, a level row, a file line and field."""
    if path.startswith("covariates."):
        name = path.split(".", 1)[1]
        return f"{descriptions[name]} ({name})" if name in descriptions else f"covariate {name}"
    if path == "interval_h":
        return "interval of the suggestion"
    if path.startswith("dose"):
        return "current regimen" + (" (interval)" if path.endswith(".II") else " (dose)")
    rec = _REC.match(path)
    if rec:
        i, f = int(rec["i"]), rec["f"]
        if typed:
            return ("current regimen" + (" (interval)" if f == "II" else " (dose)")) if i % 2 == 0 else \
                f"level {i // 2 + 1}"
        where = f"{filename or 'the file'}" + (f", line {rec['row']}" if rec["row"] else f", record {i + 1}")
        return where + (f", field {f}" if f else "")
    sub = re.match(r"^subject .+?\.(\w+)$", path)
    if sub:
        return f"{filename or 'the file'}, field {sub[1]}"
    return path


def _problem_rows(problems: list[Any], ch: Choice, typed: bool, filename: str | None) -> list[dict[str, str]]:
    return [{"severity": p.severity, "where": where_label(p.path, ch.descriptions, typed, filename),
             "message": p.message,
             "expected": p.expected, "got": p.got, "source": p.source} for p in problems]


def _plots(m: Any, rec: Any, subject: Any, covs: dict[str, float]) -> list[dict[str, str]]:
    """Inline SVGs: the fit to the levels (when there are levels) and the suggested regimen at steady state."""
    from ..dosing import plot

    out = []
    allc = dict(covs)
    if rec.fit is not None and rec.fit.design is not None:
        allc = {**{k: float(v[-1]) for k, v in rec.fit.design.cov.items()}, **covs}
    if rec.fit is not None and subject is not None:
        c = plot.fit_curve(m, subject, rec.fit, n=PLOT_POINTS)
        c.title = f"{m.spec.drug}: measured levels and the fitted curve on the current regimen"
        c.target = (rec.target_low, rec.target_high) if rec.metric == "trough" else None
        out.append({"id": "plot-fit", "heading": "Levels and the fitted curve", "svg": plot.svg(c, "plot-fit"),
                    "note": c.note})
    c = plot.recommendation_curve(m, rec, allc, n=PLOT_POINTS)
    c.title = f"{m.spec.drug} {rec.dose_mg:g} mg every {rec.interval_h:g} h at steady state"
    out.append({"id": "plot-suggested", "heading": "The suggested regimen at steady state",
                "svg": plot.svg(c, "plot-suggested"), "note": c.note})
    return out


async def _read_state(request: Request) -> tuple[FormState | None, Any, bytes, str, str | None]:
    """(state, model, file bytes, file name, error message) from the posted form."""
    from ..dosing.model import get_model

    form = await request.form(max_files=1, max_fields=40 + 3 * MAX_LEVEL_ROWS, max_part_size=MAX_FORM_BYTES)
    mid = str(form.get("model") or "")
    ch = _choice(mid)
    if ch is None:
        ids = sorted(mm.id for mm in clinical_models())
        return None, model_choice(get_model(_default_model_id())), b"", "", (
            f"the model must be one of the clinical models ({', '.join(ids)}) or a drug, got '{mid[:60]}'")
    st = FormState(model_id=ch.value)

    def text(name: str, limit: int = 60) -> str:
        v = form.get(name)
        return v[:limit] if isinstance(v, str) else ""

    st.covariates = {c["name"]: text(f"cov_{c['name']}") for c in ch.covariates}
    st.age_years = text("age_years")
    st.dose_mg, st.interval_h, st.new_interval_h = text("dose_mg"), text("interval_h"), text("new_interval_h")
    values, units, hours = (form.getlist(k) for k in ("level_value", "level_unit", "level_hours"))
    for k in range(min(len(values), MAX_LEVEL_ROWS)):
        vk, uk, hk = values[k], units[k] if k < len(units) else "", hours[k] if k < len(hours) else ""
        v = vk if isinstance(vk, str) else ""
        u = uk if isinstance(uk, str) else ""  # a missing unit is refused by the conversion, never assumed
        h = hk if isinstance(hk, str) else ""
        if v.strip() or h.strip():
            st.levels.append({"value": v[:40], "unit": u[:20], "hours": h[:40]})
    st.subject_id, st.dv_unit = text("subject_id", 100), text("dv_unit", 20)
    st.metric = text("metric") if text("metric") in dict(METRICS) else "trough"
    st.target_low, st.target_high, st.target_for = text("target_low"), text("target_high"), text("target_for")
    st.form = text("form") or "0"
    st.retarget = bool(form.get("retarget"))
    upload = form.get("file")
    data, filename = b"", ""
    if upload is not None and not isinstance(upload, str) and upload.filename:
        data = await upload.read(MAX_FORM_BYTES)
        filename = upload.filename[:120]
    return st, ch, data, filename, None


def _compute(ch: Choice, st: FormState, data: bytes, filename: str, plots: bool = True) -> dict[str, Any]:
    """Run the inputs through the library; raises DosingError (and InputCheckError) for the page to show."""
    from ..dosing.errors import DataError
    from ..dosing.inputs import LevelEntry, checked_recommendation, subject_from_file, subject_from_levels

    covs: dict[str, float] = {}
    for name, raw in st.covariates.items():
        desc = ch.descriptions[name]
        v = _number(raw, f"{desc[:1].upper()}{desc[1:]} ({name})", st, positive=False)
        if v is not None:
            covs[name] = v
    age = _number(st.age_years, "age (years)", st, positive=False)
    dose = _number(st.dose_mg, "current dose (mg)", st)
    tau = _number(st.interval_h, "current interval (h)", st)
    new_tau = _number(st.new_interval_h, "interval of the suggestion (h)", st)
    levels = []
    for k, row in enumerate(st.levels, start=1):
        v = _number(row["value"], f"level {k} (value)", st)
        h = _number(row["hours"], f"level {k} (hours after the dose)", st)
        if v is None and not row["value"].strip():
            st.issues.append({"path": f"level {k} (value)", "expected": "a concentration", "got": "nothing"})
        if v is not None:
            levels.append(LevelEntry(v, row["unit"], h))
    low = _number(st.target_low, "target low", st)
    high = _number(st.target_high, "target high", st)
    if st.issues:
        raise DataError("some entries are not numbers; see the table")
    if ch.model is None:
        return _compute_by_drug(ch, st, covs, age, dose, tau, new_tau, levels, low, high, data, filename, plots)
    m = ch.model
    own = _model_target(m, st.target_for or st.metric)
    if own is not None and low == own.low and high == own.high:
        low = high = None  # the prefilled model target (of this or the previously chosen metric): the model's own
    if (low is None) != (high is None):
        raise DataError("the target needs both a low and a high value, or neither (the model's target)")
    unit = m.spec.outputs[0].unit + ("*h" if st.metric == "auc24" else "")
    if low is None and _model_target(m, st.metric) is None:
        raise DataError(f"the model states no {st.metric} target; expected a target low and high in {unit}, got "
                        "none")
    options: dict[str, Any] = {"metric": st.metric, "target_low": low, "target_high": high,
                               "target_unit": unit if low is not None else None, "form_index": st.form,
                               "retarget": st.retarget}
    typed = not data
    subject = None
    if data:
        if levels or dose is not None:
            raise DataError("give either the current regimen and levels in the form or a file, not both; expected "
                            f"one of them, got a file ({filename}) and typed "
                            + ("levels" if levels else "a dose"))
        subject = subject_from_file(m, data, filename, covs, st.subject_id or None, st.dv_unit or None)
        options["interval_h"] = new_tau
    elif levels:
        if dose is None or tau is None:
            raise DataError("a level needs the regimen it was measured on: expected the current dose (mg) and "
                            f"interval (h), got {'no dose' if dose is None else 'no interval'}")
        subject = subject_from_levels(m, dose, tau, levels, covs)
        options.update(interval_h=new_tau or tau, current_dose_mg=dose, current_interval_h=tau)
    else:
        options["interval_h"] = new_tau or tau
        if dose is not None and tau is not None:
            options.update(current_dose_mg=dose, current_interval_h=tau)
    rec, problems = checked_recommendation(m, subject, covs, **options)
    return {"rec": rec, "model": m, "problems": _problem_rows(problems, ch, typed, filename),
            "other_warnings": [w for w in rec.warnings if not w.startswith("input check: ")],
            "plots": _plots(m, rec, subject, covs) if plots else [], "subject": subject, "covariates_used": covs}


def _compute_by_drug(ch: Choice, st: FormState, covs: dict[str, float], age: float | None, dose: float | None,
                     tau: float | None, new_tau: float | None, levels: list[Any], low: float | None,
                     high: float | None, data: bytes, filename: str, plots: bool) -> dict[str, Any]:
    """The drug's models compared for this patient (:func:`ipexrx.dosing.select.recommend_for_drug`): one typed
    level on the current regimen, a FHIR Bundle, or covariates only."""
    from ..dosing.checks import check_inputs
    from ..dosing.errors import DataError
    from ..dosing.inputs import is_fhir
    from ..dosing.model import get_model
    from ..dosing.select import recommend_for_drug
    from ..textio import TextEncodingError, decode_text

    if (low is None) != (high is None):
        raise DataError("the target needs both a low and a high value, or neither (each model's own target)")
    unit = ch.unit + ("*h" if st.metric == "auc24" else "")
    options: dict[str, Any] = {"metric": st.metric, "target_low": low, "target_high": high,
                               "target_unit": unit if low is not None else None, "form": st.form,
                               "retarget": st.retarget, "age_years": age}
    if data:
        if levels or dose is not None:
            raise DataError("give either the current regimen and levels in the form or a file, not both; expected "
                            f"one of them, got a file ({filename}) and typed " + ("levels" if levels else "a dose"))
        if not is_fhir(data, filename):
            raise DataError(f"{filename}: an NM-TRAN CSV numbers its compartments for one model; expected a FHIR "
                            "Bundle when the model is chosen for the patient, or choose a model for a CSV")
        try:
            options["fhir_bundle"] = decode_text(data, filename, legacy=False).text
        except TextEncodingError as exc:
            raise DataError(str(exc)) from None
        options["interval_h"] = new_tau
    elif levels:
        if len(levels) > 1:
            raise DataError("comparing the models takes one typed level; expected one level, got "
                            f"{len(levels)}: choose a model for several levels, or upload them in a FHIR Bundle")
        if dose is None or tau is None:
            raise DataError("a level needs the regimen it was measured on: expected the current dose (mg) and "
                            f"interval (h), got {'no dose' if dose is None else 'no interval'}")
        lv = levels[0]
        options.update(level=lv.value, level_unit=lv.unit, hours_after_dose=lv.hours_after_dose, dose_mg=dose,
                       interval_h=tau, new_interval_h=new_tau)
    else:
        options.update(interval_h=new_tau or tau, dose_mg=dose)
    rec = recommend_for_drug(ch.drug, covs, **options)
    m = get_model(rec.model_id)
    own = {k: v for k, v in covs.items() if k in m.spec.covariates}
    problems = [p for p in check_inputs(m, rec.subject, own, interval_h=options.get("interval_h"))
                if p.severity == "warning"]  # an error would have stopped every model above
    subject = rec.subject if rec.fit is not None else None
    return {"rec": rec, "model": m, "problems": _problem_rows(problems, ch, not data, filename),
            "other_warnings": [w for w in rec.warnings if not w.startswith("input check: ")],
            "plots": _plots(m, rec, subject, own) if plots else [], "subject": rec.subject, "covariates_used": own}


def mount_dosing(app: FastAPI) -> None:
    from .web import env

    env().filters["plain"] = plain
    env().filters["source_html"] = source_html

    @app.get("/dosing", response_class=HTMLResponse, include_in_schema=False)
    def dosing_form(request: Request, model: str = "", drug: str = "") -> HTMLResponse:
        value = model or (f"drug:{drug.strip().lower()}" if drug else _default_model_id())
        ch = _choice(value)
        if ch is None:
            ch = model_choice(next(m for m in clinical_models() if m.id == _default_model_id()))
            return _page(request, ch, _fresh_state(ch), 404, error={
                "message": f"no clinical model or modelled drug '{value[:60]}'; choose one of the list",
                "problems": [], "issues": []})
        return _page(request, ch, _fresh_state(ch))

    @app.post("/dosing", response_class=HTMLResponse, include_in_schema=False)
    async def dosing_submit(request: Request) -> HTMLResponse:
        return await _submit(request, report=False)

    @app.post("/dosing/report", response_class=HTMLResponse, include_in_schema=False)
    async def dosing_report(request: Request) -> HTMLResponse:
        """The same inputs as /dosing, answered with the printable TDM report (one page); problems are shown
        on the dosing page, as for /dosing."""
        return await _submit(request, report=True)


async def _submit(request: Request, report: bool) -> HTMLResponse:
    from ..dosing.checks import InputCheckError
    from ..dosing.errors import DosingError
    from ..dosing.inputs import MAX_UPLOAD_BYTES
    from .errors import ApiError
    from .pool import pool_of

    try:
        st, ch, data, filename, problem = await _read_state(request)
    except Exception as exc:  # a malformed multipart body or too many parts: say so, never a 500
        from ..dosing.model import get_model

        ch = model_choice(get_model(_default_model_id()))
        detail = getattr(exc, "detail", None) or type(exc).__name__
        return _page(request, ch, _fresh_state(ch), 400, error={
            "message": f"the form could not be read: {detail}", "problems": [], "issues": []})
    if st is None:
        return _page(request, ch, _fresh_state(ch), 422, error={"message": problem, "problems": [], "issues": []})
    if len(data) > MAX_UPLOAD_BYTES:
        return _page(request, ch, st, 413, error={"message": f"{filename}: expected a file of at most "
                                                  f"{MAX_UPLOAD_BYTES // 2**20} MB, got a larger one",
                                                  "problems": [], "issues": []})

    def work() -> tuple[dict[str, Any], str | None]:
        result = _compute(ch, st, data, filename, plots=not report)
        if not report:
            return result, None
        from ..dosing.report import build_report
        from ..report.tdm_html import render_tdm_html

        doc = build_report(result["model"], result["rec"], result["subject"], result["covariates_used"])
        return result, render_tdm_html(doc)

    try:  # CPU-heavy: on the bounded analysis pool, never on the event loop (503 when saturated)
        result, document = await pool_of(request.app).run(work)
        if document is not None:
            return HTMLResponse(document)
    except ApiError as exc:  # busy: say so on the page, with the same Retry-After
        page = _page(request, ch, st, exc.status, error={"message": exc.body.message, "problems": [], "issues": []})
        page.headers.update(exc.headers or {})
        return page
    except InputCheckError as exc:
        return _page(request, ch, st, 422, error={
            "message": "The inputs did not pass the checks that run before any fit; nothing was fitted or "
                       "suggested.", "issues": st.issues,
            "problems": _problem_rows(exc.problems, ch, not data, filename)})
    except DosingError as exc:
        return _page(request, ch, st, 422, error={"message": str(exc), "issues": st.issues, "problems": []})
    return _page(request, ch, st, 200, filename=filename, **result)
