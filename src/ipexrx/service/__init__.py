"""The web face of ipexrx: JSON API (/api/v1), CDS Hooks 2.0 (/cds-services) and the web reference.

Thin by design: every answer comes from ``ipexrx.reference`` / ``ipexrx.assess``; this package only
translates HTTP in and out, verifies callers, and stores CDS feedback.
"""

from __future__ import annotations

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
