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
``IPEXRX_DEV_FHIR_SERVERS``    development mode only (no verified issuer): the FHIR server base URLs the
                               service may fetch from, comma-separated (each issuer lists its own as
                               ``fhir_servers`` in IPEXRX_CDS_ISSUERS).
``IPEXRX_FHIR_PRIVATE_NETWORKS`` comma-separated CIDRs (e.g. ``10.20.0.0/16``) that a listed FHIR server's
                               host name may resolve to; private, loopback and link-local addresses are
                               refused otherwise (an IP address written in ``fhir_servers`` is explicit).
``IPEXRX_FHIR_MAX_BYTES``      bytes read from FHIR servers for one hook call, all answers together
                               (default 10 MB; beyond it the call is a 412).
``IPEXRX_MAX_BODY_BYTES``      request body limit (default 20 MB; 413 beyond).
``IPEXRX_MAX_HEADER_BYTES``    request header limit, all headers together (default 32 KB; 431 beyond).
``IPEXRX_MAX_JSON_DEPTH``      nesting limit of a JSON request body (default 64; 400 beyond).
``IPEXRX_ANALYSIS_THREADS``    threads for CPU-heavy work (CDS analysis, assessment, dosing fits; default 2).
``IPEXRX_ANALYSIS_QUEUE``      jobs that may wait for those threads (default 32); beyond: 503 + Retry-After.
``IPEXRX_WORKER_BALANCE``     ``0``: ``ipexrx serve --workers N`` leaves each keep-alive connection on the worker
                               that accepted it (default: spread evenly, see ipexrx.service.balance).
``IPEXRX_TRUST_FORWARDED_PROTO`` ``1``: believe ``X-Forwarded-Proto: https`` from the proxy in front (only
                               when every request comes through that proxy); used for Secure cookies.
``IPEXRX_TRUSTED_PROXIES``     comma-separated addresses or CIDRs of the reverse proxies in front: from them,
                               the client address (for sign-in throttling) is taken from X-Forwarded-For.
``IPEXRX_SMART_ISSUERS``       JSON list of the FHIR base URLs a SMART launch may name as ``iss`` (the SMART
                               app at /smart/launch talks to no other server); empty: every launch is refused.
``IPEXRX_SMART_CLIENT_ID``     the client id the EHR's authorization server gave this app (public client).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Asymmetric algorithms only: the spec forbids "none" and HMAC; ES384/RS384 are recommended.
DEFAULT_ALGORITHMS = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS256", "PS384", "PS512")
FORBIDDEN_ALGORITHMS = frozenset({"none", "HS256", "HS384", "HS512"})


def fhir_base(url: str) -> str:
    """A FHIR server base URL in one comparable spelling: lower-case scheme and host, no default port, no
    trailing slash. Raises ValueError for anything that is not a plain absolute http(s) base URL (user
    information, a query or a fragment have no place in a base URL and could hide another host)."""
    if not isinstance(url, str) or any(c.isspace() for c in url) or "\\" in url:
        raise ValueError(f"a FHIR server base URL must be an absolute http(s) URL without spaces, got {url!r}")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"FHIR server base URL {url!r} has an invalid port") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a FHIR server base URL must be an absolute http(s) URL, got {url!r}")
    if "@" in parts.netloc or parts.query or parts.fragment or "#" in url or "?" in url:
        raise ValueError(f"a FHIR server base URL has no user, query or fragment, got {url!r}")
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    default = {"http": 80, "https": 443}[scheme]
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != default:
        netloc += f":{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


class IssuerConfig(BaseModel):
    """Where the keys of one trusted CDS client (EHR) come from, and which FHIR servers it may send us to."""

    model_config = ConfigDict(extra="forbid")

    jwks: dict[str, Any] | None = Field(None, description="Inline JWK Set.")
    jwks_file: Path | None = Field(None, description="Path to a JWK Set JSON file.")
    jwks_url: str | None = Field(
        None, description="JWK Set URL, fetched on first use with a bounded timeout and cached; "
        "also the only `jku` accepted for this issuer.",
    )
    algorithms: list[str] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS))
    fhir_servers: list[str] = Field(
        default_factory=list, description="FHIR server base URLs this client may name as fhirServer; the "
        "service fetches missing prefetch (with the client's access token) only from these. Empty: never.")

    @field_validator("fhir_servers")
    @classmethod
    def _bases(cls, v: list[str]) -> list[str]:
        return [fhir_base(u) for u in v]

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
    dev_fhir_servers: list[str] = Field(
        default_factory=list, description="Development mode only: FHIR server base URLs the service may fetch "
        "from (there is no verified issuer whose fhir_servers could be used).")
    fhir_private_networks: list[str] = Field(
        default_factory=list, description="CIDRs a listed FHIR server's host name may resolve to although they are "
        "private, loopback or link-local (e.g. the hospital network).")
    fhir_max_bytes: int = Field(10 * 2**20, ge=1024, description="Bytes read from FHIR servers for one hook call.")
    max_body_bytes: int = Field(20 * 2**20, ge=1024, description="Request body limit (413 beyond).")
    max_header_bytes: int = Field(32 * 1024, ge=1024, description="Request header limit, all together (431 beyond).")
    max_json_depth: int = Field(64, ge=8, le=512, description="Nesting limit of a JSON request body (400 beyond).")
    analysis_threads: int = Field(2, ge=1, le=64, description="Threads for CPU-heavy analysis.")
    analysis_queue: int = Field(32, ge=0, le=10_000, description="Analysis jobs that may wait; beyond: 503.")
    inline_analysis_bytes: int = Field(
        64 * 1024, ge=0, le=2**30, description="A CDS call whose body is at most this size is judged on the event "
        "loop rather than on the analysis pool (0: always on the pool).")
    cds_fast_path: bool = Field(
        True, description="Answer CDS service calls before Starlette's router (same answers, less CPU per call; "
        "see ipexrx.service.cds.fastpath). Off: the FastAPI route answers them.")
    worker_balance: bool = Field(
        True, description="With several workers, spread keep-alive connections evenly over them (see "
        "ipexrx.service.balance). Off: a connection stays on the worker that accepted it.")
    trust_forwarded_proto: bool = Field(False, description="Believe X-Forwarded-Proto from the proxy in front.")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="Addresses or CIDRs of the reverse proxies in front; from them the client "
        "address (sign-in throttling) is read from X-Forwarded-For.")
    smart_issuers: list[str] = Field(
        default_factory=list, description="FHIR base URLs a SMART launch may name as iss; any other is refused "
        "before a connection is made.")
    smart_client_id: str | None = Field(None, description="The SMART app's client id (public client, PKCE).")
    smart_frame_ancestors: list[str] = Field(
        default_factory=list, description="Origins (https://ehr.example.org) of EHRs that show the SMART app inside "
        "a frame: only /smart/* may then be framed, only by them, and the app's cookie becomes SameSite=None; "
        "Secure (so the app must be served over TLS).")

    @field_validator("smart_frame_ancestors")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        out = []
        for o in v:
            o = o.strip().rstrip("/")
            if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?", o):
                raise ValueError(f"IPEXRX_SMART_FRAME_ANCESTORS: expected origins like https://ehr.example.org "
                                 f"(https, host, optional port, no path); got {o!r}")
            out.append(o)
        return out

    @field_validator("smart_issuers")
    @classmethod
    def _smart_bases(cls, v: list[str]) -> list[str]:
        return [fhir_base(u) for u in v]

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        out = []
        for net in v:
            try:
                out.append(str(ipaddress.ip_network(net.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"trusted_proxies: {net!r} is not an address or CIDR such as 10.0.0.5 or "
                                 "10.0.0.0/24") from None
        return out

    @field_validator("dev_fhir_servers")
    @classmethod
    def _dev_bases(cls, v: list[str]) -> list[str]:
        return [fhir_base(u) for u in v]

    @field_validator("fhir_private_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        out = []
        for net in v:
            try:
                out.append(str(ipaddress.ip_network(net.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"fhir_private_networks: {net!r} is not a CIDR such as 10.20.0.0/16") from None
        return out

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
            dev_fhir_servers=_list(e.get("IPEXRX_DEV_FHIR_SERVERS")),
            fhir_private_networks=_list(e.get("IPEXRX_FHIR_PRIVATE_NETWORKS")),
            **{name: int(e[var]) for name, var in _INT_VARS.items() if (e.get(var) or "").strip()},
            cds_fast_path=not _falsy(e.get("IPEXRX_CDS_FAST_PATH")),
            worker_balance=not _falsy(e.get("IPEXRX_WORKER_BALANCE")),
            trust_forwarded_proto=_truthy(e.get("IPEXRX_TRUST_FORWARDED_PROTO")),
            trusted_proxies=_list(e.get("IPEXRX_TRUSTED_PROXIES")),
            smart_issuers=_json_list(e.get("IPEXRX_SMART_ISSUERS"), "IPEXRX_SMART_ISSUERS"),
            smart_client_id=(e.get("IPEXRX_SMART_CLIENT_ID") or "").strip() or None,
            smart_frame_ancestors=_list(e.get("IPEXRX_SMART_FRAME_ANCESTORS")),
        )


_INT_VARS = {"fhir_max_bytes": "IPEXRX_FHIR_MAX_BYTES", "max_body_bytes": "IPEXRX_MAX_BODY_BYTES",
             "max_header_bytes": "IPEXRX_MAX_HEADER_BYTES", "max_json_depth": "IPEXRX_MAX_JSON_DEPTH",
             "analysis_threads": "IPEXRX_ANALYSIS_THREADS", "analysis_queue": "IPEXRX_ANALYSIS_QUEUE",
             "inline_analysis_bytes": "IPEXRX_INLINE_ANALYSIS_BYTES"}


def _list(v: str | None) -> list[str]:
    return [x.strip() for x in (v or "").replace(" ", ",").split(",") if x.strip()]


def _json_list(v: str | None, name: str) -> list[str]:
    """A JSON list of strings from an environment variable (empty when unset)."""
    text = (v or "").strip()
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"{name} must be a JSON list of URLs such as [\"https://fhir.example.org/R4\"], "
                         f"got {text[:80]!r}")
    return value


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in {"1", "true", "yes", "on"}


def _falsy(v: str | None) -> bool:
    return (v or "").strip().lower() in {"0", "false", "no", "off"}
