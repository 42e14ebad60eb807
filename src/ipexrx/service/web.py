"""Server-rendered web reference: Jinja2 templates, one small CSS file with a print stylesheet, two
tiny scripts (instant search, reading an uploaded file). No front-end build.

Pages are rendered from the same view models as the JSON API, so every statement on a page carries
its citations, each linked to the source (and section) on /sources. Reference pages are cached per
knowledge-base object: the content is immutable while the server runs.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import __version__

HERE = Path(__file__).parent


def _src_anchor(source: str, locator: str | None = None) -> str:
    return f"src-{source}-{locator}" if locator else f"src-{source}"


@functools.cache
def env() -> Any:
    import jinja2

    e = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    e.filters["src_anchor"] = _src_anchor
    e.filters["urlencode"] = lambda s: quote(str(s), safe="")
    from ..patient.errors import plain_location

    e.filters["place"] = plain_location  # a JSON path in words ("medication 2 (dose)") for readers
    e.globals["assessment_citations"] = _assessment_citations
    return e


def _assessment_citations(a: Any) -> Any:
    """An assessment's numbered sources: the numbers its terminal report and printout show too."""
    from ..assess.citations import assessment_citations

    return assessment_citations(a)


def render(template: str, request: Request | None = None, **ctx: Any) -> str:
    from ..knowledge import get_kb

    meta = get_kb().meta
    from ..reference.citations import CitationNumbers

    page_url = str(request.url) if request is not None else ""
    ctx.setdefault("cn", CitationNumbers())  # the page's numbered sources, in order of first citation
    return str(env().get_template(template).render(meta=meta, version=__version__, page_url=page_url, **ctx))


_page_cache: dict[tuple[int, str], str] = {}


def cached_page(key: str, build: Any) -> str:
    """Rendered HTML for an immutable reference page (keyed by the KB object and the page)."""
    from ..knowledge import get_kb

    kb = get_kb()
    ck = (id(kb), key)
    html = _page_cache.get(ck)
    if html is None:
        if len(_page_cache) > 2000:
            _page_cache.clear()
        html = build()
        _page_cache[ck] = html
    return html


def html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status)


def _error_page(kind: str, query: str, exc: Exception, base: str) -> tuple[int, str]:
    suggestions = list(getattr(exc, "suggestions", None) or getattr(exc, "candidates", None) or [])
    status = 409 if type(exc).__name__ == "AmbiguousQueryError" else 404
    title = f"Several {kind} records match" if status == 409 else f"No {kind} named “{query}”"
    return status, render("error.html", None, title=title, message=str(exc), suggestions=suggestions,
                          base=base, query=query)


_response_cache: dict[tuple[int, str], tuple[int, str]] = {}


def cached_response(key: str, build: Any) -> Response:
    """A reference page by the name asked for (page, redirect or not-found), rendered once.

    Keyed by the knowledge-base object too, so a reloaded KB never serves stale pages. Bounded:
    unknown names are cached as well, and a crawler must not grow memory without limit.
    """
    from ..knowledge import get_kb

    ck = (id(get_kb()), key)
    hit = _response_cache.get(ck)
    if hit is None:
        if len(_response_cache) > 5000:
            _response_cache.clear()
        hit = build()
        _response_cache[ck] = hit
    status, body = hit
    if status in (301, 302, 307, 308):
        return RedirectResponse(body, status_code=status)
    return HTMLResponse(body, status_code=status)


def mount_web(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request) -> HTMLResponse:
        from ..reference import summary

        return html(cached_page("/", lambda: render("summary.html", None, title="IPEX medication reference",
                                                    s=summary())))

    @app.get("/manifestations", response_class=HTMLResponse, include_in_schema=False)
    def manifestations_page(request: Request) -> HTMLResponse:
        from .api import manifestation_index

        return html(cached_page("/manifestations", lambda: render(
            "index_list.html", None, title="Manifestations", items=manifestation_index(),
            lede="Each manifestation of IPEX with its therapy options, strongest evidence first.")))

    @app.get("/manifestations/{name}", response_class=HTMLResponse, include_in_schema=False)
    def manifestation_page(name: str, request: Request) -> Response:
        def build() -> tuple[int, str]:
            from ..reference import ReferenceQueryError, manifestation_view

            try:
                m = manifestation_view(name)
            except ReferenceQueryError as exc:
                return _error_page("manifestation", name, exc, "/manifestations/")
            return 200, render("manifestation.html", None, title=m.name, m=m)

        return cached_response(f"/manifestations/{name}", build)

    @app.get("/drugs", response_class=HTMLResponse, include_in_schema=False)
    def drugs_page(request: Request) -> HTMLResponse:
        from .api import drug_index

        return html(cached_page("/drugs", lambda: render(
            "index_list.html", None, title="Drugs", items=drug_index(),
            lede="Monographs: identity and brands, class, mechanism, pharmacology, evidence in IPEX, boxed "
                 "warnings, screening, monitoring, interactions and sources.")))

    @app.get("/drugs/{name}", response_class=HTMLResponse, include_in_schema=False)
    def drug_page(name: str, request: Request) -> Response:
        def build() -> tuple[int, str]:
            from ..reference import ReferenceQueryError, drug_monograph

            try:
                d = drug_monograph(name)
            except ReferenceQueryError as exc:
                return _error_page("drug", name, exc, "/drugs/")
            if name != d.id:  # one canonical URL per drug (brands and synonyms redirect)
                return 307, f"/drugs/{d.id}"
            return 200, render("drug.html", None, title=d.name, d=d)

        return cached_response(f"/drugs/{name}", build)

    @app.get("/classes", response_class=HTMLResponse, include_in_schema=False)
    def classes_page(request: Request) -> HTMLResponse:
        from .api import class_index

        return html(cached_page("/classes", lambda: render(
            "index_list.html", None, title="Drug classes", items=class_index(),
            lede="Classes with their parent class; each page lists its drugs.")))

    @app.get("/classes/{name}", response_class=HTMLResponse, include_in_schema=False)
    def class_page(name: str, request: Request) -> Response:
        def build() -> tuple[int, str]:
            from ..reference import ReferenceQueryError, class_view

            try:
                c = class_view(name)
            except ReferenceQueryError as exc:
                return _error_page("class", name, exc, "/classes/")
            return 200, render("class.html", None, title=c.name, c=c)

        return cached_response(f"/classes/{name}", build)

    @app.get("/sources", response_class=HTMLResponse, include_in_schema=False)
    def sources_page(request: Request) -> HTMLResponse:
        from ..reference import list_sources

        return html(cached_page("/sources", lambda: render("sources.html", None, title="Sources",
                                                           sources=list_sources().sources)))

    @app.get("/rules", response_class=HTMLResponse, include_in_schema=False)
    def rules_page(request: Request) -> HTMLResponse:
        import inspect

        from ..assess import RULES

        def build() -> str:
            rules = [{"id": rid, "family": rid.split(".", 1)[0],
                      "title": rid.split(".", 1)[-1].replace("_", " ").capitalize(),
                      "doc": " ".join((inspect.getdoc(fn) or "").split("\n\n", 1)[0].split())}
                     for rid, fn in RULES.items()]
            return render("rules.html", None, title="Assessment rules", rules=rules)

        return html(cached_page("/rules", build))

    @app.get("/interactions/{iid}", include_in_schema=False)
    def interaction_page(iid: str, request: Request) -> Response:
        from ..knowledge import get_kb

        inter = get_kb().interactions.get(iid)
        if inter is None:
            return html(render("error.html", request, title=f"No interaction “{iid}”",
                               message=f"no interaction with id '{iid}'", suggestions=[], base="/", query=iid), 404)
        return RedirectResponse(f"/drugs/{inter.drugs[0]}#interaction-{iid}", status_code=307)

    @app.get("/search", response_class=HTMLResponse, include_in_schema=False)
    def search_page(request: Request, q: str = "") -> HTMLResponse:
        from ..reference import search
        from .api import page_for_record

        q = q.strip()[:200]
        results = []
        if q:
            results = [{"kind": h.kind, "title": h.title, "snippet": h.snippet, "page": page_for_record(h.kind, h.id)}
                       for h in search(q, limit=20).results]
        return html(render("search.html", request, title="Search", q=q, results=results))

    from .assess_web import mount_assess

    mount_assess(app)
