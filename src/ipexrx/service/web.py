"""Server-rendered web reference (Jinja2 templates, print stylesheet, no front-end build)."""

from __future__ import annotations

from fastapi import FastAPI


def mount_web(app: FastAPI) -> None:
    return None
