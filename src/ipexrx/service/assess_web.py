"""The assessment page (paste or upload a patient JSON / FHIR Bundle, see the cited report)."""

from __future__ import annotations

from fastapi import FastAPI


def mount_assess(app: FastAPI) -> None:
    return None
