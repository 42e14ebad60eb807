"""Registry web pages (login, centre dashboard, patient page with forms for visits, courses,
manifestations, adverse events, HSCT and consent withdrawal, and the analytics page with its SVG, PNG
and CSV downloads) as a framework-free route table, like :mod:`.http`: each handler takes the parsed
request and says which page to show with what (or which bytes to send), so every rule stays in the
library; the service draws the pages in the site's layout (``ipexrx/service/templates/registry/``) and
mounts the routes with a few lines of glue (:mod:`ipexrx.service.registry_mount`).

Safety: the session lives in an HttpOnly, SameSite=Strict cookie scoped to ``/registry``; every
form carries the session's CSRF token (:meth:`Registry.actor_for_form`); validation errors
re-render the form with one line per problem and nothing written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, quote

from .core import PERMISSIONS, Actor, Registry
from .errors import NotAuthenticated, NotFound, PermissionDenied, RateLimited, RegistryError, ValidationFailed
from .schemas import (
    CHRONIC_GVHD,
    CONDITIONING,
    CONSENT_SCOPES,
    DONORS,
    DOSE_UNITS,
    ORGANS,
    REASONS_STOPPED,
    SEX,
    SKIN,
    kb_hpo_index,
)

WEB_PREFIX = "/registry"
COOKIE = "ipexrx_registry_session"


@dataclass
class WebRequest:
    path_params: dict[str, str]
    session: str | None  # the session cookie's value
    form: dict[str, list[str]] = field(default_factory=dict)
    source: str | None = None  # the client's address (sign-in throttling)
    query: dict[str, list[str]] = field(default_factory=dict)  # the URL's query string (GET filters)

    def one(self, name: str) -> str | None:
        v = (self.form.get(name) or [""])[0].strip()
        return v or None

    def arg(self, name: str) -> str | None:
        v = (self.query.get(name) or [""])[0].strip()
        return v or None


@dataclass
class WebResponse:
    """A page to draw (``page``: the name of a registry template, ``context``: what it shows), or bytes to
    send as they are (``body``: a download), or neither (a redirect)."""

    status: int
    html: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    page: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True)
class WebRoute:
    method: Literal["GET", "POST"]
    path: str
    handler: Callable[[Registry, Actor | None, WebRequest], WebResponse]
    auth: bool = True


def parse_form(raw: bytes) -> dict[str, list[str]]:
    """application/x-www-form-urlencoded body (the only encoding our forms use)."""
    return parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)


# ----------------------------------------------------------------------------------------------
# pages: each handler says which page to show with what; the service draws it in the site's layout
# (templates under ipexrx/service/templates/registry/), so this module stays free of web frameworks.
# ----------------------------------------------------------------------------------------------
HTML_HEADERS = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}


def _render(name: str, title: str, status: int = 200, **ctx: Any) -> WebResponse:
    ctx.setdefault("p", WEB_PREFIX)
    ctx.setdefault("analytics_roles", PERMISSIONS["analytics"])
    ctx.setdefault("patient_roles", PERMISSIONS["patient.list"])
    return WebResponse(status, headers=dict(HTML_HEADERS), page=name, context={"title": title, **ctx})


def _redirect(to: str, cookie: str | None = None) -> WebResponse:
    headers = {"Location": to}
    if cookie is not None:
        headers["Set-Cookie"] = cookie
    return WebResponse(303, "", headers)


def session_cookie(token: str, max_age: int) -> str:
    return f"{COOKIE}={token}; Path={WEB_PREFIX}; HttpOnly; SameSite=Strict; Max-Age={max_age}"


def _kb_choices() -> dict[str, Any]:
    from ..knowledge import get_kb

    kb = get_kb()
    return {"drugs": sorted((d.id, d.name) for d in kb.drugs.values()),
            "ipex_like": sorted((d.id, d.name) for d in kb.ipex_like.values())}


# ----------------------------------------------------------------------------------------------
# handlers
# ----------------------------------------------------------------------------------------------
def _login_form(reg: Registry, _a: Actor | None, req: WebRequest) -> WebResponse:
    return _render("login", "Sign in")


def _login(reg: Registry, _a: Actor | None, req: WebRequest) -> WebResponse:
    from .core import SESSION_HOURS

    try:
        token, _csrf = reg.start_session(req.one("username") or "", req.one("password") or "", source=req.source)
    except NotAuthenticated:
        return _render("login", "Sign in", 401, problems=["unknown user, wrong password or deactivated account"])
    except RateLimited as exc:
        page = _render("login", "Sign in", 429, problems=[str(exc)])
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    return _redirect(WEB_PREFIX, session_cookie(token, SESSION_HOURS * 3600))


def _logout(reg: Registry, a: Actor | None, req: WebRequest) -> WebResponse:
    if a is not None and req.session:
        reg.revoke_token(a, req.session)
    return _redirect(f"{WEB_PREFIX}/login", session_cookie("", 0))


def _dashboard(reg: Registry, a: Actor | None, req: WebRequest) -> WebResponse:
    assert a is not None
    if a.role not in ("clinician", "data_manager"):
        what = "it reads the pooled analyses" if a.role in PERMISSIONS["analytics"] else \
            "use the API or `ipexrx registry` commands"
        return _render("error", "Registry", actor=a, csrf=_csrf(req),
                       message=f"The {a.role.replace('_', ' ')} role has no patient pages; {what}.")
    patients = reg.list_patients(a)
    return _render("dashboard", "Centre dashboard", actor=a, csrf=_csrf(req), patients=patients,
                   synthetic=any(x["synthetic"] for x in patients))


def _patient_form(reg: Registry, a: Actor | None, req: WebRequest, problems: list[str] | None = None,
                  values: dict[str, Any] | None = None, status: int = 200) -> WebResponse:
    reg.require(a or Actor(None, "anonymous", "anonymous"), "patient.write")
    return _render("patient_form", "Add a patient", status, actor=a, csrf=_csrf(req), v=values or {}, sex=SEX,
                   scopes=CONSENT_SCOPES, problems=problems, **_kb_choices())


_PATIENT_FIELDS = ("birth_year", "birth_month", "sex", "diagnosis", "gene", "variant_hgvs", "ipex_like_id",
                   "onset_date", "diagnosis_date", "consent_date", "consent_scope")


def _patient_submit(reg: Registry, a: Actor | None, req: WebRequest) -> WebResponse:
    assert a is not None
    values = {k: req.one(k) for k in _PATIENT_FIELDS}
    try:
        pseudonym = reg.add_patient(a, {"patient": {k: v for k, v in values.items() if v is not None}})
    except ValidationFailed as exc:
        return _patient_form(reg, a, req, exc.problems, values, 422)
    return _redirect(f"{WEB_PREFIX}/patients/{quote(pseudonym)}")


def _patient_page(reg: Registry, a: Actor | None, req: WebRequest, problems: list[str] | None = None,
                  status: int = 200) -> WebResponse:
    assert a is not None
    rec = reg.get_patient(a, req.path_params["pseudonym"])
    return _render("patient", f"Patient {rec['patient']['pseudonym']}", status, actor=a, csrf=_csrf(req), r=rec,
                   problems=problems, skin=SKIN, organs=ORGANS, units=DOSE_UNITS, reasons=REASONS_STOPPED,
                   donors=DONORS, conditioning=CONDITIONING, chronic_gvhd=CHRONIC_GVHD,
                   hpo=sorted(((code, label) for code, (_m, label) in kb_hpo_index().items()), key=lambda x: x[1]),
                   **_kb_choices())


def _child_submit(kind: str, fields: tuple[str, ...]) -> Callable[[Registry, Actor | None, WebRequest], WebResponse]:
    """A handler for one of the patient page's forms: the fields filled in go to the library's add_*
    method; its validation problems re-render the page with nothing written."""
    add = {"visit": Registry.add_visit, "course": Registry.add_course, "manifestation": Registry.add_manifestation,
           "adverse event": Registry.add_adverse_event, "hsct": Registry.add_hsct}[kind]

    def handler(reg: Registry, a: Actor | None, req: WebRequest) -> WebResponse:
        assert a is not None
        data: dict[str, Any] = {k: req.one(k) for k in fields if req.one(k) is not None}
        if kind == "visit":
            data["organs"] = [o for o in req.form.get("organs", []) if o]
        if kind == "adverse event":
            data["serious"] = req.one("serious") == "true"
        pseudonym = req.path_params["pseudonym"]
        try:
            add(reg, a, pseudonym, data)
        except ValidationFailed as exc:
            return _patient_page(reg, a, req, exc.problems, 422)
        return _redirect(f"{WEB_PREFIX}/patients/{quote(pseudonym)}")

    return handler


def _withdraw_consent(reg: Registry, a: Actor | None, req: WebRequest) -> WebResponse:
    import datetime as dt

    assert a is not None
    pseudonym = req.path_params["pseudonym"]
    raw = req.one("date") or ""
    problems = []
    if req.one("confirm") != "yes":
        problems.append("confirm: tick the box to confirm that consent was withdrawn")
    try:
        date = dt.date.fromisoformat(raw)
    except ValueError:
        problems.append(f"date: expected a date YYYY-MM-DD, got '{raw}'")
    if problems:
        return _patient_page(reg, a, req, problems, 422)
    try:
        reg.withdraw_consent(a, pseudonym, date)
    except ValidationFailed as exc:
        return _patient_page(reg, a, req, exc.problems, 422)
    return _redirect(f"{WEB_PREFIX}/patients/{quote(pseudonym)}")


# ----------------------------------------------------------------------------------------------
# analytics: the comparative report as a page, every figure as SVG and PNG, every table and curve as CSV
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figure:
    slug: str
    title: str
    xlabel: str
    unit: str  # days or years: the time column of its CSV is time_<unit>
    curves: list[Any]
    note: str = ""
    logrank: tuple[float, float] | None = None


COMPARISON_SLUGS = ("survival-hsct-versus-immunosuppression", "survival-from-hsct", "disease-free-survival",
                    "survival-by-oi-score")
TABLES = {"drugs.csv": "time on therapy, reasons stopped and response per drug",
          "survival.csv": "survival estimates per group"}


FILTER_LABELS = {"as_of": "Report date", "diagnosed_from": "Diagnosed from", "diagnosed_to": "Diagnosed to"}


def _report_filters(req: WebRequest) -> tuple[dict[str, str], list[str], dict[str, Any]]:
    """(the filters as given, problems, the dates by name) from the query string."""
    import datetime as dt

    given = {k: req.arg(k) or "" for k in ("as_of", "centre", "diagnosed_from", "diagnosed_to", "drug")}
    problems = []
    dates: dict[str, Any] = {"as_of": dt.datetime.now(dt.UTC).date(), "diagnosed_from": None, "diagnosed_to": None}
    for name, label in FILTER_LABELS.items():
        if given[name]:
            try:
                dates[name] = dt.date.fromisoformat(given[name])
            except ValueError:
                problems.append(f"{label}: expected a date YYYY-MM-DD, got '{given[name]}'")
    if dates["diagnosed_from"] and dates["diagnosed_to"] and dates["diagnosed_from"] > dates["diagnosed_to"]:
        problems.append(f"Diagnosed from: expected a date on or before 'Diagnosed to' ({given['diagnosed_to']}), "
                        f"got {given['diagnosed_from']}")
    given["as_of"] = dates["as_of"].isoformat()
    return given, problems, dates


def _figures(r: Any, drug: str) -> list[Figure]:
    drugs = [d for d in r.drugs if not drug or d.drug_id == drug]
    out = [Figure("time-on-therapy", "Time on therapy" + (f": {drug}" if drug else " per drug"),
                  "Days since the course started", "days", [d.km for d in drugs[:8]],
                  "Event: the course stopped, for any reason; courses still running are censored at the "
                  "patient's last follow-up." + (" The eight drugs with the most courses are drawn; every drug is "
                                                  "in the tables and the CSV." if len(drugs) > 8 else ""))]
    for i, c in enumerate(r.comparisons):
        slug = COMPARISON_SLUGS[i] if i < len(COMPARISON_SLUGS) else f"survival-{i + 1}"
        out.append(Figure(slug, c.title, "Years", "years", list(c.curves), c.note, c.logrank))
    return out


def _analytics_data(reg: Registry, a: Actor, req: WebRequest) -> tuple[Any, dict[str, str], list[Figure]]:
    from . import ops

    given, problems, dates = _report_filters(req)
    if problems:
        raise ValidationFailed(problems, "analytics filters")
    r = ops.analytics_report(reg, a, dates["as_of"], given["centre"] or None,
                             (dates["diagnosed_from"], dates["diagnosed_to"]))
    drugs = [d.drug_id for d in r.drugs]
    if given["drug"] and given["drug"] not in drugs:
        raise ValidationFailed([f"Drug: expected one of the drugs with courses in the registry ({', '.join(drugs)}), "
                                f"got '{given['drug']}'"], "analytics filters")
    return r, given, _figures(r, given["drug"])


def _analytics_page(reg: Registry, a: Actor | None, req: WebRequest) -> WebResponse:
    from .report import MIN_PER_CURVE, REASONS, RESPONSES, RISK_NOTE, figure_ticks, km_svg

    assert a is not None
    reg.require(a, "analytics")
    try:
        r, given, figures = _analytics_data(reg, a, req)
    except ValidationFailed as exc:
        given, _p, _d = _report_filters(req)
        return _render("analytics", "Registry analytics", 422, actor=a, csrf=_csrf(req), problems=exc.problems,
                       problems_intro="Please correct:", r=None, given=given, drugs=[], all_drugs=[], figures=[],
                       svgs={}, query="", centres=_centre_choices(reg, a))
    query = "?" + "&".join(f"{k}={quote(v)}" for k, v in given.items() if v)
    svgs = {f.slug: km_svg(f.curves, f.xlabel, f.unit, f.title) for f in figures}
    drugs = [d for d in r.drugs if not given["drug"] or d.drug_id == given["drug"]]
    return _render("analytics", "Registry analytics", actor=a, csrf=_csrf(req), r=r, given=given,
                   all_drugs=[d.drug_id for d in r.drugs], drugs=drugs, figures=figures, svgs=svgs, query=query,
                   minimum=MIN_PER_CURVE, reasons=REASONS, responses=RESPONSES, risk_note=RISK_NOTE, tables=TABLES,
                   ticks={f.slug: figure_ticks(f.curves) for f in figures}, definitions=_definitions(),
                   centres=_centre_choices(reg, a))


def _centre_choices(reg: Registry, a: Actor) -> list[tuple[str, str]]:
    """(code, name) of the centres an analyst may narrow the pooled report to; none for a centre user."""
    if a.role in PERMISSIONS["patient.list"]:
        return []
    return [(c["code"], c["name"]) for c in reg.centres(a)]


def _definitions() -> list[str]:
    """The analyses' definitions, as the printed report gives them (one paragraph per bullet)."""
    from . import analytics

    text = (analytics.__doc__ or "").split("nobody has to guess):")[-1].split("Kaplan-Meier estimates,")[0]
    return [" ".join(b.split()) for b in text.split("\n* ") if b.strip()]


DOWNLOAD_TYPES = {"svg": "image/svg+xml", "png": "image/png", "csv": "text/csv; charset=utf-8"}


def _analytics_download(reg: Registry, a: Actor | None, req: WebRequest) -> WebResponse:
    """/analytics/<figure>.svg|png|csv, /analytics/drugs.csv, /analytics/survival.csv (same filters as the page)."""
    from . import report

    assert a is not None
    reg.require(a, "analytics")
    name = req.path_params["name"]
    stem, _, ext = name.rpartition(".")
    r, given, figures = _analytics_data(reg, a, req)
    by_slug = {f.slug: f for f in figures}
    body: bytes | None = None
    if name == "drugs.csv":
        body = report.drugs_csv(r if not given["drug"] else _only_drug(r, given["drug"])).encode()
    elif name == "survival.csv":
        body = report.survival_csv(r).encode()
    elif stem in by_slug and ext in DOWNLOAD_TYPES:
        f = by_slug[stem]
        body = report.km_svg(f.curves, f.xlabel, f.unit, f.title).encode() if ext == "svg" else \
            report.km_png(f.curves, f.xlabel, f.unit, f.title) if ext == "png" else \
            report.curves_csv(f.curves, f.unit).encode()
    if body is None:
        files = [*TABLES, *(f"{s}.{e}" for s in by_slug for e in DOWNLOAD_TYPES)]
        raise NotFound(f"expected one of {', '.join(files)}, got '{name}'")
    period = f"diagnosed-{given['diagnosed_from'] or 'start'}-to-{given['diagnosed_to'] or 'now'}" \
        if given["diagnosed_from"] or given["diagnosed_to"] else ""
    filename = "-".join(["ipexrx-registry", stem, given["as_of"],
                         *(v for v in (given["centre"], period, given["drug"]) if v)])
    filename = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in filename) + f".{ext}"
    return WebResponse(200, headers={"Content-Type": DOWNLOAD_TYPES[ext], "Cache-Control": "no-store",
                                     "Content-Disposition": f'attachment; filename="{filename}"'}, body=body)


def _only_drug(r: Any, drug: str) -> Any:
    import dataclasses

    return dataclasses.replace(r, drugs=[d for d in r.drugs if d.drug_id == drug])


def _csrf(req: WebRequest) -> str:
    from .security import csrf_token

    return csrf_token(req.session) if req.session else ""


WEB_ROUTES: list[WebRoute] = [
    WebRoute("GET", "/login", _login_form, auth=False),
    WebRoute("POST", "/login", _login, auth=False),
    WebRoute("POST", "/logout", _logout),
    WebRoute("GET", "", _dashboard),
    WebRoute("GET", "/patients/new", _patient_form),
    WebRoute("POST", "/patients/new", _patient_submit),
    WebRoute("GET", "/patients/{pseudonym}", _patient_page),
    WebRoute("POST", "/patients/{pseudonym}/visits",
             _child_submit("visit", ("date", "oi_score", "weight_z", "stool_ml_kg_day", "insulin_u_kg_day",
                                     "skin_severity"))),
    WebRoute("POST", "/patients/{pseudonym}/courses",
             _child_submit("course", ("drug_id", "start_date", "stop_date", "dose", "dose_unit", "reason_stopped",
                                      "reason_other"))),
    WebRoute("POST", "/patients/{pseudonym}/manifestations",
             _child_submit("manifestation", ("hpo_code", "onset_date", "resolution_date"))),
    WebRoute("POST", "/patients/{pseudonym}/adverse-events",
             _child_submit("adverse event", ("date", "term", "grade"))),
    WebRoute("POST", "/patients/{pseudonym}/hsct",
             _child_submit("hsct", ("date", "donor", "conditioning", "chimerism_donor_pct", "chimerism_date",
                                    "acute_gvhd_grade", "chronic_gvhd", "pre_hsct_oi_score"))),
    WebRoute("POST", "/patients/{pseudonym}/withdraw-consent", _withdraw_consent),
    WebRoute("GET", "/analytics", _analytics_page),
    WebRoute("GET", "/analytics/{name}", _analytics_download),
]


def handle(reg: Registry, route: WebRoute, req: WebRequest) -> WebResponse:
    """Run one page: session (and CSRF for every POST) first, then the handler; errors become pages."""
    actor: Actor | None = None
    try:
        if route.auth:
            if not req.session:
                return _redirect(f"{WEB_PREFIX}/login")
            actor = reg.actor_for_form(req.session, req.one("csrf")) if route.method == "POST" else \
                reg.actor_for_token(req.session)
        from .http import check_path

        check_path(req.path_params)
        return route.handler(reg, actor, req)
    except NotAuthenticated:
        return _redirect(f"{WEB_PREFIX}/login", session_cookie("", 0))
    except (PermissionDenied, NotFound) as exc:
        return _render("error", "Not allowed" if isinstance(exc, PermissionDenied) else "Not found",
                       exc.http_status, actor=actor, csrf=_csrf(req), message=str(exc))
    except ValidationFailed as exc:
        if route.method == "GET":  # a filter or download asked for with an unusable value: nothing to save
            return _render("error", "Cannot show this", exc.http_status, actor=actor, csrf=_csrf(req),
                           message="Please correct the address or the filters.", problems=exc.problems)
        return _render("error", "Not saved", exc.http_status, actor=actor, csrf=_csrf(req), message=str(exc))
    except RegistryError as exc:
        return _render("error", "Not saved", exc.http_status, actor=actor, csrf=_csrf(req), message=str(exc))

