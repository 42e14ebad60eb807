"""Printable reports (HTML via Jinja2): the medication assessment and the TDM (dosing) report. Renders the data
the library builds (assess models, :class:`ipexrx.dosing.report.TDMReport`); no terminal, no web server."""

from .html import render_assessment_html
from .tdm_html import render_tdm_html

__all__ = ["render_assessment_html", "render_tdm_html"]
