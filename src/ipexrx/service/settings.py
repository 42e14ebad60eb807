"""Service settings, read from the environment (``Settings.from_env``) or built in code (tests).

Environment variables
---------------------
``IPEXRX_DEV_MODE``            ``1`` turns CDS Hooks JWT verification OFF (development only; logged
                               loudly at start-up and flagged on every response).
``IPEXRX_CDS_ISSUERS``         JSON object: issuer -> {"jwks": {...} | "jwks_file": path |
                               "jwks_url": url, "algorithms": [...]?}; or a path to a file holding it.
``IPEXRX_CDS_TENANTS``         comma-separated tenant allow-list (when set, tokens must carry one).
``IPEXRX_BASE_URL``            public base URL (e.g. ``https://cds.example.org``) when behind a proxy;
                               used for the expected ``aud`` and for links in cards.
``IPEXRX_DATABASE_URL``        SQLAlchemy URL (default: SQLite in the user data directory).
``IPEXRX_FHIR_TIMEOUT``        seconds for each FHIR request made to fill missing prefetch (default 5).
``IPEXRX_FHIR_ALLOW_HTTP``     ``1`` allows plain-http FHIR servers other than loopback (never for PHI).
``IPEXRX_REPLAY_STORE``        ``file`` or ``database``: where seen JWT ids are kept (see ipexrx.storage.replay).
``IPEXRX_REPLAY_DIR``          directory of the file replay store.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Asymmetric algorithms only: the spec forbids "none" and HMAC; ES384/RS384 are recommended.
DEFAULT_ALGORITHMS = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS256", "PS384", "PS512")
FORBIDDEN_ALGORITHMS = frozenset({"none", "HS256", "HS384", "HS512"})


class IssuerConfig(BaseModel):
    """Where the keys of one trusted CDS client (EHR) come from."""

    model_config = ConfigDict(extra="forbid")

    jwks: dict[str, Any] | None = Field(None, description="Inline JWK Set.")
    jwks_file: Path | None = Field(None, description="Path to a JWK Set JSON file.")
    jwks_url: str | None = Field(
        None, description="JWK Set URL, fetched on first use with a bounded timeout and cached; "
        "also the only `jku` accepted for this issuer.",
    )
    algorithms: list[str] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS))

    @model_validator(mode="after")
    def _one_key_source(self) -> IssuerConfig:
        if not (self.jwks or self.jwks_file or self.jwks_url):
            raise ValueError("an issuer needs one of jwks, jwks_file or jwks_url")
        bad = sorted(set(self.algorithms) & FORBIDDEN_ALGORITHMS)
        if bad:
            raise ValueError(f"algorithms {bad} are not allowed for CDS Hooks (asymmetric algorithms only)")
        return self


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dev_mode: bool = Field(False, description="Turns JWT verification off. Never in production.")
    issuers: dict[str, IssuerConfig] = Field(default_factory=dict)
    tenants: list[str] | None = None
    base_url: str | None = None
    database_url: str | None = None
    fhir_timeout: float = Field(5.0, gt=0, le=60)
    fhir_allow_http: bool = False
    max_token_lifetime: int = Field(3600, gt=0, description="Longest exp - iat accepted, seconds.")
    clock_skew: int = Field(30, ge=0, le=300, description="Leeway for exp / iat, seconds.")
    auto_migrate: bool = Field(True, description="Run database migrations when the app starts.")
    registry: bool = Field(True, description="Serve the registry (JSON API /api/v1/registry, web /registry).")
    replay_store: Literal["file", "database"] | None = Field(
        None, description="Where seen JWT ids are kept: 'file' (one host; default with SQLite) or 'database' "
        "(shared by several hosts; default otherwise).")
    replay_dir: Path | None = Field(None, description="Directory of the file replay store (default: next to the "
                                    "SQLite database).")

    @model_validator(mode="after")
    def _normalise(self) -> Settings:
        if self.base_url:
            object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        return self

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        issuers_raw = e.get("IPEXRX_CDS_ISSUERS", "").strip()
        issuers: dict[str, Any] = {}
        if issuers_raw:
            if issuers_raw.startswith("{"):
                issuers = json.loads(issuers_raw)
            else:
                issuers = json.loads(Path(issuers_raw).read_text(encoding="utf-8"))
        tenants_raw = e.get("IPEXRX_CDS_TENANTS", "").strip()
        return cls(
            dev_mode=_truthy(e.get("IPEXRX_DEV_MODE")),
            issuers=issuers,
            tenants=[t.strip() for t in tenants_raw.split(",") if t.strip()] or None,
            base_url=e.get("IPEXRX_BASE_URL") or None,
            database_url=e.get("IPEXRX_DATABASE_URL") or None,
            fhir_timeout=float(e.get("IPEXRX_FHIR_TIMEOUT") or 5.0),
            fhir_allow_http=_truthy(e.get("IPEXRX_FHIR_ALLOW_HTTP")),
            auto_migrate=not _falsy(e.get("IPEXRX_DB_MIGRATE")),
            registry=not _falsy(e.get("IPEXRX_REGISTRY")),
            replay_store=e.get("IPEXRX_REPLAY_STORE") or None,  # type: ignore[arg-type]
            replay_dir=Path(e["IPEXRX_REPLAY_DIR"]) if e.get("IPEXRX_REPLAY_DIR") else None,
        )


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in {"1", "true", "yes", "on"}


def _falsy(v: str | None) -> bool:
    return (v or "").strip().lower() in {"0", "false", "no", "off"}
