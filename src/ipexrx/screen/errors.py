"""The one error a screen raises for input it cannot use (missing directory, no Patient file, a file
that is not NDJSON at all). Bad *lines* are not errors: they are reported and skipped."""

from __future__ import annotations


class ScreenInputError(ValueError):
    """Input a screen cannot read; the message says what was expected and what arrived."""
