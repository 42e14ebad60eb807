"""Verification of the JWT a CDS client sends with every CDS Hooks call.

Follows CDS Hooks 2.0 "Trusting CDS Clients" and the cds-hooks.org best practices: the issuer
must be allow-listed, the signature must verify against that issuer's JWK Set with an asymmetric
algorithm (never ``none`` or HMAC), ``aud`` must be the URL being called, ``exp``/``iat`` must
be sane, a ``jti`` may be used once, and ``tenant`` must be allow-listed when a list is configured.

Every failure is the same ``401`` with no detail (the reason is logged with ``iss``/``jti`` only;
the token itself is never logged), so that a probing client learns nothing. Whatever its shape (a
``kid`` that is a list, ``exp`` as a string, nested claims, a header that is not JSON), a token is
refused with :class:`AuthError`, never an unhandled exception (tests/service/test_jwt_shapes.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import jwt
import orjson

from ..storage.models import SeenToken
from ..storage.replay import ReplayStore
from . import jws
from .settings import FORBIDDEN_ALGORITHMS, IssuerConfig, Settings

log = logging.getLogger("ipexrx.service.security")

JWKS_TTL_SECONDS = 3600
JWKS_REFETCH_MIN_SECONDS = 60
JWKS_MAX_BYTES = 1_000_000  # a JWK Set answer larger than this is refused (keys kept as they were)
JTI_MAX = int(getattr(SeenToken.__table__.c.jti.type, "length", 500))  # the replay table's column


class AuthError(Exception):
    """Why a token was refused (for the log only; the client sees a bare 401)."""


@dataclass(frozen=True)
class AuthContext:
    issuer: str | None
    tenant: str | None
    jti: str | None
    verified: bool


DEV_CONTEXT = AuthContext(issuer=None, tenant=None, jti=None, verified=False)


def _keys_from_jwks(jwks: dict[str, Any], where: str) -> dict[str | None, dict[str, Any]]:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list):
        raise ValueError(f"{where}: a JWK Set needs a 'keys' list")
    out: dict[str | None, dict[str, Any]] = {}
    for k in keys:
        if not isinstance(k, dict) or "kty" not in k:
            raise ValueError(f"{where}: every JWK needs a 'kty'")
        if k.get("kty") == "oct":
            raise ValueError(f"{where}: symmetric ('oct') keys are not accepted for CDS Hooks")
        out[k.get("kid")] = k
    return out


class _IssuerKeys:
    def __init__(self, iss: str, cfg: IssuerConfig):
        self.iss = iss
        self.cfg = cfg
        self.static: dict[str | None, dict[str, Any]] = {}
        if cfg.jwks is not None:
            self.static.update(_keys_from_jwks(cfg.jwks, f"issuer {iss} jwks"))
        if cfg.jwks_file is not None:
            data = json.loads(cfg.jwks_file.read_text(encoding="utf-8"))
            self.static.update(_keys_from_jwks(data, str(cfg.jwks_file)))
        self.remote: dict[str | None, dict[str, Any]] = {}
        self.fetched_at = 0.0
        self.parsed: dict[tuple[str | None, str], Any] = {}
        self.lock = asyncio.Lock()

    def lookup(self, kid: str | None) -> dict[str, Any] | None:
        table = {**self.remote, **self.static}
        if kid is None:
            return next(iter(table.values())) if len(table) == 1 else None
        return table.get(kid)

    async def refresh(self, timeout: float, force: bool) -> None:
        if not self.cfg.jwks_url:
            return
        now = time.monotonic()
        stale = now - self.fetched_at > JWKS_TTL_SECONDS
        if not stale and not (force and now - self.fetched_at > JWKS_REFETCH_MIN_SECONDS):
            return
        async with self.lock:
            if time.monotonic() - self.fetched_at < JWKS_REFETCH_MIN_SECONDS and self.remote:
                return
            import httpx

            try:
                async with httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
                                             follow_redirects=False) as client:
                    # a JWK Set is a few kB: stream it and stop at JWKS_MAX_BYTES rather than trust its size
                    async with client.stream("GET", self.cfg.jwks_url,
                                             headers={"Accept": "application/json"}) as resp:
                        resp.raise_for_status()
                        body = bytearray()
                        async for chunk in resp.aiter_bytes():
                            body += chunk
                            if len(body) > JWKS_MAX_BYTES:
                                raise ValueError(f"JWK Set larger than {JWKS_MAX_BYTES} bytes")
                    self.remote = _keys_from_jwks(json.loads(bytes(body)), self.cfg.jwks_url)
            except Exception as exc:  # network, HTTP or JSON problem: keep what we had
                log.warning("could not fetch JWK Set for issuer %s from %s: %s", self.iss, self.cfg.jwks_url,
                            type(exc).__name__)
            finally:
                self.fetched_at = time.monotonic()

    def key_for(self, jwk: dict[str, Any], alg: str) -> Any:
        cache_key = (jwk.get("kid"), alg)
        key = self.parsed.get(cache_key)
        if key is None:
            key = jwt.PyJWK(jwk, algorithm=alg).key
            self.parsed[cache_key] = key
        return key


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, not verified (the signature is checked by jws.decode later)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthError("malformed token")
    out = []
    for seg in parts[:2]:
        try:
            value = orjson.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))
        except (ValueError, TypeError) as exc:
            raise AuthError("malformed token") from exc
        if not isinstance(value, dict):
            raise AuthError("malformed token")
        out.append(value)
    return out[0], out[1]


class JwtVerifier:
    def __init__(self, settings: Settings, replay: ReplayStore):
        self.settings = settings
        self.replay = replay
        self.issuers = {iss: _IssuerKeys(iss, cfg) for iss, cfg in settings.issuers.items()}

    def warm_up(self) -> int:
        """Parse every configured static key for each algorithm its issuer allows, before the first
        call (parsing imports the crypto backends: tens of milliseconds paid once, not by a client).
        Returns how many (key, algorithm) pairs are ready; pairs that do not fit are skipped here and
        refused, as before, when a token uses them."""
        ready = 0
        for keys in self.issuers.values():
            for jwk in keys.static.values():
                for alg in keys.cfg.algorithms:
                    try:
                        keys.key_for(jwk, alg)
                    except (jwt.PyJWTError, ValueError, TypeError):
                        continue
                    ready += 1
        return ready

    async def verify(self, token: str, audience: str) -> AuthContext:
        try:
            return await self._verify(token, audience)
        except AuthError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
            # a shape no check above anticipated: still a refusal, never a 500
            raise AuthError(f"malformed token ({type(exc).__name__})") from None

    async def _verify(self, token: str, audience: str) -> AuthContext:
        header, unverified = _peek(token)  # unverified: only to choose the issuer's keys
        alg = header.get("alg")
        if not isinstance(alg, str) or alg in FORBIDDEN_ALGORITHMS or alg.lower() == "none":
            raise AuthError(f"algorithm {alg!r} refused")
        typ = header.get("typ")
        if typ is not None and str(typ).upper() != "JWT":
            raise AuthError(f"typ {typ!r} refused")
        iss = unverified.get("iss")
        keys = self.issuers.get(iss) if isinstance(iss, str) else None
        if keys is None or not isinstance(iss, str):
            raise AuthError(f"issuer {iss!r} not allow-listed")
        if alg not in keys.cfg.algorithms:
            raise AuthError(f"algorithm {alg} not allowed for issuer {iss}")
        jku = header.get("jku")
        if jku is not None and jku != keys.cfg.jwks_url:
            raise AuthError(f"jku not allow-listed for issuer {iss}")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthError(f"kid must be a string, got {type(kid).__name__}")
        await keys.refresh(self.settings.fhir_timeout, force=False)
        jwk = keys.lookup(kid)
        if jwk is None:
            await keys.refresh(self.settings.fhir_timeout, force=True)
            jwk = keys.lookup(kid)
        if jwk is None:
            raise AuthError(f"no key {kid!r} for issuer {iss}")
        try:
            key = keys.key_for(jwk, alg)
            claims = jws.decode(  # PyJWT's decode, its segment check done in C (see service/jws.py)
                token,
                key=key,
                algorithms=[alg],
                audience=audience,
                issuer=iss,
                leeway=self.settings.clock_skew,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise AuthError(f"token refused: {type(exc).__name__}") from exc
        now = int(time.time())
        iat, exp, jti = claims["iat"], claims["exp"], claims["jti"]
        for name, value in (("iat", iat), ("exp", exp), ("nbf", claims.get("nbf", 0))):
            if isinstance(value, bool) or not isinstance(value, int | float):  # RFC 7519: NumericDate
                raise AuthError(f"{name} must be a number of seconds, got {type(value).__name__}")
        if not isinstance(jti, str) or not jti:
            raise AuthError("jti must be a non-empty string")
        if len(jti) > JTI_MAX:
            raise AuthError(f"jti longer than {JTI_MAX} characters")
        if iat > now + self.settings.clock_skew:
            raise AuthError("iat in the future")
        if exp - iat > self.settings.max_token_lifetime:
            raise AuthError("token lifetime too long")
        tenant = claims.get("tenant")
        if self.settings.tenants is not None and (not isinstance(tenant, str) or tenant not in self.settings.tenants):
            raise AuthError(f"tenant {tenant!r} not allow-listed")
        if not self.replay.remember(iss, jti, int(exp) + self.settings.clock_skew, now):
            raise AuthError(f"jti {jti!r} replayed")
        return AuthContext(issuer=iss, tenant=tenant if isinstance(tenant, str) else None, jti=jti, verified=True)
