"""Hook call -> patient model -> assessment -> cards."""

from __future__ import annotations

from typing import Any

from ..settings import Settings
from .models import CdsRequest
from .services import ServiceDef


async def run_hook(svc: ServiceDef, body: CdsRequest, settings: Settings, base_url: str) -> list[dict[str, Any]]:
    raise NotImplementedError
