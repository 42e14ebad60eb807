"""Errors a registry user can act on. Each says what was expected and what arrived."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class: an expected, user-facing failure (exit code 1 / HTTP 4xx, never a traceback)."""

    http_status = 400


class ValidationFailed(RegistryError):
    """Input rejected; nothing was written. ``problems`` lists every problem found, one per line."""

    http_status = 422

    def __init__(self, problems: list[str], what: str = "input"):
        self.problems = problems
        super().__init__(f"{what} rejected, nothing was written:\n" + "\n".join(f"  - {p}" for p in problems))


class PermissionDenied(RegistryError):
    http_status = 403


class NotAuthenticated(RegistryError):
    http_status = 401


class NotFound(RegistryError):
    http_status = 404


class Conflict(RegistryError):
    http_status = 409


class RateLimited(RegistryError):
    """Too many attempts: try again after ``retry_after`` seconds (HTTP 429 with ``Retry-After``)."""

    http_status = 429

    def __init__(self, message: str, retry_after: int):
        self.retry_after = max(1, int(retry_after))
        super().__init__(message)
