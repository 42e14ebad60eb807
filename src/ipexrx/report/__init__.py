"""Printable reports (HTML via Jinja2). Knows the assess models only; no terminal, no web server."""

from .html import render_assessment_html

__all__ = ["render_assessment_html"]
