"""Registry web pages (login, centre dashboard, patient page with forms for visits, courses,
manifestations, adverse events, HSCT and consent withdrawal) as a framework-free
route table, like :mod:`.http`: each handler takes the parsed request and returns the page, so the
service mounts them with a few lines of glue and every rule stays in the library.

Safety: the session lives in an HttpOnly, SameSite=Strict cookie scoped to ``/registry``; every
form carries the session's CSRF token (:meth:`Registry.actor_for_form`); validation errors
re-render the form with one line per problem and nothing written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, quote

from .core import Actor, Registry
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

    def one(self, name: str) -> str | None:
        v = (self.form.get(name) or [""])[0].strip()
        return v or None


@dataclass
class WebResponse:
    status: int
    html: str = ""
    headers: dict[str, str] = field(default_factory=dict)


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
# templates
# ----------------------------------------------------------------------------------------------
_BASE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{ title }} · ipexrx registry</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;color:#111}
label{display:block;margin:.35rem 0}input,select{font:inherit}table{border-collapse:collapse}
td,th{border:1px solid #aaa;padding:.2rem .4rem}.err{background:#fee2e2;border:1px solid #b91c1c;padding:.5rem}
.syn{background:#fde68a;padding:.3rem;font-weight:bold}fieldset{margin:.6rem 0}.inline{display:inline}</style>
</head><body>
<nav>{% if actor %}<a href="{{ p }}">Dashboard</a> · signed in as {{ actor.username }} ({{ actor.role }})
<form method="post" action="{{ p }}/logout" class="inline"><input type="hidden" name="csrf"
value="{{ csrf }}"><button>Sign out</button></form>{% endif %}</nav>
<h1>{{ title }}</h1>
{% if problems %}<div class="err" role="alert"><p>Not saved. Please correct:</p><ul>
{% for x in problems %}<li>{{ x }}</li>{% endfor %}</ul></div>{% endif %}
{{ body|safe }}</body></html>"""

_PAGES = {
    "login": """<form method="post" action="{{ p }}/login">
<label>Username <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button>Sign in</button></form>""",
    "dashboard": """{% if synthetic %}<p class="syn">Includes SYNTHETIC demo patients (not real).</p>{% endif %}
<p><a href="{{ p }}/patients/new">Add a patient</a></p>
<h2>Patients ({{ patients|length }})</h2><table><tr><th>Pseudonym</th><th>Diagnosis</th><th>Born</th>
<th>Vital status</th><th>Last follow-up</th></tr>{% for x in patients %}<tr>
<td><a href="{{ p }}/patients/{{ x.pseudonym|urlencode }}">{{ x.pseudonym }}
</a>{% if x.synthetic %} (synthetic){% endif %}</td>
<td>{{ x.diagnosis }} ({{ x.gene }})</td><td>{{ x.birth_year }}-{{ '%02d' % x.birth_month }}</td>
<td>{{ x.vital_status }}</td><td>{{ x.last_followup_date or '' }}</td></tr>{% endfor %}</table>""",
    "patient_form": """<form method="post" action="{{ p }}/patients/new">
<input type="hidden" name="csrf" value="{{ csrf }}">
<p>No name, no record number: the registry assigns a pseudonym.</p>
<label>Birth year <input name="birth_year" inputmode="numeric" value="{{ v.birth_year or '' }}" required></label>
<label>Birth month (1-12)
<input name="birth_month" inputmode="numeric" value="{{ v.birth_month or '' }}" required></label>
<label>Sex <select name="sex">{% for o in sex %}<option value="{{ o }}"
{% if v.sex == o %} selected{% endif %}>{{ o }}</option>{% endfor %}</select></label>
<label>Diagnosis <select name="diagnosis"><option value="ipex">IPEX (FOXP3)</option>
<option value="ipex-like"{% if v.diagnosis == 'ipex-like' %} selected{% endif %}>IPEX-like</option></select></label>
<label>Gene <input name="gene" value="{{ v.gene or 'FOXP3' }}" required></label>
<label>FOXP3 variant (HGVS, e.g. NM_014009.4:c.1150G&gt;A)
<input name="variant_hgvs" value="{{ v.variant_hgvs or '' }}"></label>
<label>IPEX-like disorder <select name="ipex_like_id"><option value="">(not IPEX-like)</option>
{% for k, name in ipex_like %}<option value="{{ k }}"{% if v.ipex_like_id == k %} selected{% endif %}>{{ name }}
</option>{% endfor %}</select></label>
<label>Onset date <input name="onset_date" type="date" value="{{ v.onset_date or '' }}"></label>
<label>Diagnosis date <input name="diagnosis_date" type="date" value="{{ v.diagnosis_date or '' }}" required></label>
<label>Consent date <input name="consent_date" type="date" value="{{ v.consent_date or '' }}" required></label>
<label>Consent scope <select name="consent_scope">{% for o in scopes %}
<option{% if v.consent_scope == o %} selected{% endif %}>{{ o }}</option>{% endfor %}</select></label>
<button>Save patient</button></form>""",
    "patient": """<p>{{ r.patient.diagnosis }} · {{ r.patient.gene }} {{ r.patient.variant_hgvs or '' }} · born
{{ r.patient.birth_year }}-{{ '%02d' % r.patient.birth_month }} · diagnosed {{ r.patient.diagnosis_date }} ·
{{ r.patient.vital_status }}{% if r.patient.synthetic %} · <span class="syn">SYNTHETIC</span>{% endif %}</p>
{% if r.patient.consent_withdrawn_date %}<p class="err">Consent withdrawn on {{ r.patient.consent_withdrawn_date }}:
left out of analyses and exports from that date.</p>{% endif %}
<h2>Manifestations</h2><table><tr><th>HPO</th><th>Manifestation</th><th>Onset</th><th>Resolved</th></tr>
{% for m in r.manifestations %}<tr><td>{{ m.hpo_code }}</td><td>{{ m.manifestation_id }}</td><td>{{ m.onset_date }}</td>
<td>{{ m.resolution_date or '' }}</td></tr>{% endfor %}</table>
{% if r.hsct %}<h2>HSCT</h2><table><tr><th>Date</th><th>Donor</th><th>Conditioning</th><th>Donor chimerism</th>
<th>Acute GvHD</th><th>Chronic GvHD</th><th>Pre-HSCT OI score</th></tr>{% for h in r.hsct %}<tr><td>{{ h.date }}</td>
<td>{{ h.donor }}</td><td>{{ h.conditioning }}</td>
<td>{% if h.chimerism_donor_pct is not none %}{{ h.chimerism_donor_pct }}% ({{ h.chimerism_date }}){% endif %}</td>
<td>{{ h.acute_gvhd_grade if h.acute_gvhd_grade is not none else '' }}</td><td>{{ h.chronic_gvhd or '' }}</td>
<td>{{ h.pre_hsct_oi_score if h.pre_hsct_oi_score is not none else '' }}</td></tr>{% endfor %}</table>{% endif %}
{% if r.adverse_events %}<h2>Adverse events</h2><table><tr><th>Date</th><th>Term (CTCAE)</th><th>Grade</th>
<th>Serious</th></tr>{% for x in r.adverse_events %}<tr><td>{{ x.date }}</td><td>{{ x.term }}</td><td>{{ x.grade }}</td>
<td>{{ 'yes' if x.serious else 'no' }}</td></tr>{% endfor %}</table>{% endif %}
<h2>Courses</h2><table><tr><th>Drug</th><th>Start</th><th>Stop</th><th>Dose</th><th>Reason stopped</th></tr>
{% for c in r.courses %}<tr><td>{{ c.drug_id }}</td><td>{{ c.start_date }}</td><td>{{ c.stop_date or 'ongoing' }}</td>
<td>{{ c.dose if c.dose is not none else '' }} {{ c.dose_unit or '' }}</td><td>{{ c.reason_stopped or '' }}</td>
</tr>{% endfor %}</table>
<h2>Visits</h2><table><tr><th>Date</th><th>OI score</th><th>Weight z</th><th>Stool mL/kg/day</th>
<th>Insulin U/kg/day</th>
<th>Skin</th><th>Organs</th></tr>{% for x in r.visits %}<tr><td>{{ x.date }}</td>
<td>{{ x.oi_score if x.oi_score is not none else '' }}</td>
<td>{{ x.weight_z if x.weight_z is not none else '' }}</td>
<td>{{ x.stool_ml_kg_day if x.stool_ml_kg_day is not none else '' }}</td>
<td>{{ x.insulin_u_kg_day if x.insulin_u_kg_day is not none else '' }}</td><td>{{ x.skin_severity or '' }}</td>
<td>{{ x.organs.replace(';', ', ') }}</td></tr>{% endfor %}</table>
<form method="post" action="{{ p }}/patients/{{ r.patient.pseudonym|urlencode }}/visits"><fieldset>
<legend>Add a visit</legend>
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Date <input name="date" type="date" required></label>
<label>OI score (Barzaghi 2018, 0-10) <input name="oi_score" inputmode="numeric"></label>
<label>Weight z-score <input name="weight_z" inputmode="decimal"></label>
<label>Stool output (mL/kg/day) <input name="stool_ml_kg_day" inputmode="decimal"></label>
<label>Insulin (units/kg/day) <input name="insulin_u_kg_day" inputmode="decimal"></label>
<label>Skin <select name="skin_severity"><option value=""></option>{% for o in skin %}<option value="{{ o }}">{{ o }}
</option>{% endfor %}</select></label>
<p>Organs involved: {% for o in organs %}<label class="inline">
<input type="checkbox" name="organs" value="{{ o }}"> {{ o }}</label> {% endfor %}</p>
<button>Save visit</button></fieldset></form>
<form method="post" action="{{ p }}/patients/{{ r.patient.pseudonym|urlencode }}/courses"><fieldset>
<legend>Add a treatment course</legend>
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Drug <select name="drug_id">{% for k, name in drugs %}<option value="{{ k }}">{{ name }}
</option>{% endfor %}</select></label>
<label>Start <input name="start_date" type="date" required></label>
<label>Stop <input name="stop_date" type="date"></label>
<label>Dose <input name="dose" inputmode="decimal"> <select name="dose_unit"><option value="">
</option>{% for o in units %}<option value="{{ o }}">{{ o }}</option>{% endfor %}</select></label>
<label>Reason stopped <select name="reason_stopped"><option value=""></option>{% for o in reasons %}
<option value="{{ o }}">{{ o }}</option>{% endfor %}</select></label>
<label>Other reason <input name="reason_other" maxlength="200"></label>
<button>Save course</button></fieldset></form>
<form method="post" action="{{ p }}/patients/{{ r.patient.pseudonym|urlencode }}/manifestations"><fieldset>
<legend>Add a manifestation episode</legend>
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Manifestation (HPO) <select name="hpo_code" required>{% for code, label in hpo %}<option value="{{ code }}">
{{ label }} ({{ code }})</option>{% endfor %}</select></label>
<label>Onset <input name="onset_date" type="date" required></label>
<label>Resolved <input name="resolution_date" type="date"></label>
<button>Save manifestation</button></fieldset></form>
<form method="post" action="{{ p }}/patients/{{ r.patient.pseudonym|urlencode }}/adverse-events"><fieldset>
<legend>Add an adverse event</legend>
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Date <input name="date" type="date" required></label>
<label>Term (CTCAE) <input name="term" minlength="2" maxlength="100" required></label>
<label>Grade (CTCAE) <select name="grade">{% for g in range(1, 6) %}<option>{{ g }}</option>{% endfor %}
</select></label>
<label><input type="checkbox" name="serious" value="true"> Serious adverse event</label>
<button>Save adverse event</button></fieldset></form>
<form method="post" action="{{ p }}/patients/{{ r.patient.pseudonym|urlencode }}/hsct"><fieldset>
<legend>Record an HSCT</legend>
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Date <input name="date" type="date" required></label>
<label>Donor <select name="donor">{% for o in donors %}<option>{{ o }}</option>{% endfor %}</select></label>
<label>Conditioning <select name="conditioning">{% for o in conditioning %}<option>{{ o }}</option>{% endfor %}
</select></label>
<label>Donor chimerism (%) <input name="chimerism_donor_pct" inputmode="decimal"></label>
<label>Chimerism date <input name="chimerism_date" type="date"></label>
<label>Acute GvHD grade (0-4) <select name="acute_gvhd_grade"><option value=""></option>{% for g in range(0, 5) %}
<option>{{ g }}</option>{% endfor %}</select></label>
<label>Chronic GvHD <select name="chronic_gvhd"><option value=""></option>{% for o in chronic_gvhd %}
<option>{{ o }}</option>{% endfor %}</select></label>
<label>OI score before HSCT (0-10) <input name="pre_hsct_oi_score" inputmode="numeric"></label>
<button>Save HSCT</button></fieldset></form>
{% if not r.patient.consent_withdrawn_date %}
<form method="post" action="{{ p }}/patients/{{ r.patient.pseudonym|urlencode }}/withdraw-consent"><fieldset>
<legend>Withdraw consent</legend>
<input type="hidden" name="csrf" value="{{ csrf }}">
<p>From this date the patient leaves every analysis and export; the record stays, for the audit trail.</p>
<label>Date consent was withdrawn <input name="date" type="date" required></label>
<label><input type="checkbox" name="confirm" value="yes" required> The patient (or guardian) has withdrawn
consent</label>
<button>Withdraw consent</button></fieldset></form>
{% endif %}""",
    "error": """<p>{{ message }}</p><p><a href="{{ p }}">Back to the dashboard</a></p>""",
}


def _render(name: str, title: str, status: int = 200, **ctx: Any) -> WebResponse:
    from jinja2 import Environment

    env = Environment(autoescape=True)
    ctx.setdefault("p", WEB_PREFIX)
    body = env.from_string(_PAGES[name]).render(**ctx)
    html = env.from_string(_BASE).render(title=title, body=body, **ctx)
    return WebResponse(status, html, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"})


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
        return _render("error", "Registry", actor=a, csrf=_csrf(req),
                       message=f"The {a.role} role has no patient pages; use the API or `ipexrx registry` commands.")
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
    except RegistryError as exc:
        return _render("error", "Not saved", exc.http_status, actor=actor, csrf=_csrf(req), message=str(exc))

