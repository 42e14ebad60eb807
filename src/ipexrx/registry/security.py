"""Password hashing (Argon2id) and bearer tokens.

Passwords use argon2-cffi's defaults (Argon2id, RFC 9106 low-memory profile), and a hash made with
older parameters is transparently re-hashed at the next successful login. Tokens are 256-bit random
values; only their SHA-256 is stored, so a database leak does not leak usable tokens.
"""

from __future__ import annotations

import hashlib
import secrets

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # Argon2 takes any length; a bound keeps a 20 MB "password" from being hashed
TOKEN_PREFIX = "ipxr_"


def _hasher():  # type: ignore[no-untyped-def]
    from argon2 import PasswordHasher

    return PasswordHasher()


def hash_password(password: str) -> str:
    return str(_hasher().hash(password))


def verify_password(stored_hash: str, password: str) -> tuple[bool, str | None]:
    """(matches, new hash if the stored one should be upgraded)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    ph = _hasher()
    try:
        ph.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False, None
    return True, (ph.hash(password) if ph.check_needs_rehash(stored_hash) else None)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def password_problems(password: str, username: str) -> list[str]:
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"password: expected at least {MIN_PASSWORD_LENGTH} characters, got {len(password)}")
    if username and username.lower() in password.lower():
        problems.append("password: must not contain the username")
    return problems


def csrf_token(session_token: str) -> str:
    """CSRF token bound to a session (HMAC-SHA256 keyed by the session token)."""
    import hmac

    return hmac.new(session_token.encode(), b"ipexrx-registry-csrf", hashlib.sha256).hexdigest()


def check_csrf(session_token: str, candidate: str) -> bool:
    import hmac

    return hmac.compare_digest(csrf_token(session_token), candidate)
