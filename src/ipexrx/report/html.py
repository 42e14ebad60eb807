"""Render an :class:`~ipexrx.assess.Assessment` as one self-contained, printable HTML page.

Why self-contained: the page is printed or attached to a chart; it must not fetch fonts, scripts or
styles from anywhere (no network at run time), so the CSS is inline and there is no JavaScript.
Autoescaping is on: every string in an assessment may come from patient input.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import jinja2

    from ..assess.models import Assessment

TEMPLATES = Path(__file__).parent / "templates"


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    import jinja2

    from ..patient.errors import plain_location

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
    )
    env.filters["place"] = plain_location  # a JSON path in words ("medication 2 (dose)")
    return env


def render_assessment_html(assessment: Assessment) -> str:
    """The assessment as a complete HTML document (UTF-8 text)."""
    from ..assess.citations import assessment_citations

    return _env().get_template("assessment.html").render(a=assessment, counts=assessment.counts(),
                                                         cn=assessment_citations(assessment))
