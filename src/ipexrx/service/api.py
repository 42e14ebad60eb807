"""JSON API under /api/v1 (reference views of the knowledge base and the assessment)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from .. import __version__

router = APIRouter(prefix="/api/v1", tags=["Reference"])


class VersionInfo(BaseModel):
    software: str
    content_version: str
    content_released: str


@router.get("/version", response_model=VersionInfo, summary="Software and content versions")
def version() -> VersionInfo:
    from ..knowledge import get_kb

    kb = get_kb()
    return VersionInfo(software=__version__, content_version=kb.meta.content_version,
                       content_released=kb.meta.released.isoformat())
