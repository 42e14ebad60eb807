"""``ipexrx.registry``: a multi-centre IPEX / IPEX-like registry on the shared storage layer.

Library first: :class:`Registry` (in :mod:`.core`) is the only way data goes in or out, and every
call takes the acting user (:class:`Actor`), so centre scoping, roles, validation and the
hash-chained audit entry are enforced whatever the face (CLI, JSON API, web forms).
See docs/registry.md.
"""

from __future__ import annotations

from .core import PERMISSIONS, ROLES, SYSTEM, Actor, Registry
from .errors import (
    Conflict,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    RateLimited,
    RegistryError,
    ValidationFailed,
)

__all__ = [
    "PERMISSIONS",
    "ROLES",
    "SYSTEM",
    "Actor",
    "Conflict",
    "NotAuthenticated",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "Registry",
    "RegistryError",
    "ValidationFailed",
]
