"""Prefetch: check what the EHR sent against our templates, fetch the rest from its FHIR server.

Why so careful: a missing medication list must never read as "takes nothing" (that would hide an
interaction), so a key we cannot obtain is a 412, never an empty list. Data is fetched only from
a ``fhirServer`` listed for the calling client, at vetted addresses, within a byte and time budget
(see :mod:`.outbound`); the access token from ``fhirAuthorization`` is sent only there (``next``
links elsewhere are refused), never logged, never stored.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..settings import Settings
from .models import CdsRequest
from .services import OPTIONAL_KEYS, PREFETCH

log = logging.getLogger("ipexrx.service.cds")

MAX_PAGES = 10
_TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z0-9_]+)\s*\}\}")
_ANY_TOKEN = re.compile(r"\{\{[^}]*\}\}")


class PrefetchUnavailable(Exception):
    """Data we need is neither in prefetch nor obtainable from the FHIR server (-> 412)."""

    def __init__(self, keys: list[str], reason: str):
        self.keys = keys
        self.reason = reason
        super().__init__(f"{reason} (prefetch keys: {', '.join(keys)})")

    def operation_outcome(self) -> dict[str, Any]:
        return {
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": "processing",
                "details": {"text": f"Cannot evaluate the hook: {self.reason}."},
                "diagnostics": "Prefetch key(s) absent or unusable and not fetchable from fhirServer: "
                + ", ".join(self.keys),
            }],
        }


@dataclass
class Gathered:
    """Prefetch values by key (each a FHIR resource or a Bundle; ``None`` = the EHR has no data)."""

    values: dict[str, Any] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# What a context value may be when it goes into a FHIR request: a FHIR id (R4 "id": letters, digits,
# '-' and '.', at most 64), never only dots. Anything else ('/', '?', '&', '%', '..') could move the
# request off the template - another path on the server, another query - with the access token.
_FHIR_ID = re.compile(r"^(?!\.+$)[A-Za-z0-9\-.]{1,64}$")


def render_template(template: str, context: dict[str, Any]) -> str | None:
    """Fill ``{{context.x}}`` tokens; None when a token cannot be filled from primitive context fields
    that are FHIR ids (see ``_FHIR_ID``)."""

    def sub(m: re.Match[str]) -> str:
        value = context.get(m.group(1))
        if isinstance(value, bool) or not isinstance(value, str | int) or not _FHIR_ID.match(str(value)):
            raise KeyError(m.group(1))
        return str(value)

    try:
        out = _TOKEN.sub(sub, template)
    except KeyError:
        return None
    return None if _ANY_TOKEN.search(out) else out


def _is_outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


def _usable(key: str, value: Any) -> bool:
    """Does a prefetch value answer its template? (``None`` does: the EHR says there is no data.)"""
    if value is None:
        return key != "patient"
    if not isinstance(value, dict) or _is_outcome(value):
        return False
    if key == "patient":
        return value.get("resourceType") == "Patient"
    return value.get("resourceType") == "Bundle"


def _loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def gather(body: CdsRequest, settings: Settings, issuer: str | None = None) -> Gathered:
    """The prefetch values the rules need: as sent, or fetched from ``fhirServer`` when it is listed
    for ``issuer`` (the verified caller; None in development mode)."""
    from .outbound import NOT_ALLOWED, allowed_bases, listed_base

    out = Gathered()
    prefetch = body.prefetch or {}
    missing: list[str] = []
    optional: list[str] = []
    for key in PREFETCH:
        if key in prefetch and _usable(key, prefetch[key]):
            out.values[key] = prefetch[key]
        else:
            if key in prefetch:
                out.notes.append(f"prefetch '{key}' was unusable ({_describe(prefetch[key])}); fetched instead")
            (optional if key in OPTIONAL_KEYS else missing).append(key)
    if not missing:  # a key the rules do not read is not worth a round trip of its own
        out.notes += [f"prefetch '{key}' absent; not fetched (not read by the rules)" for key in optional]
        return out
    if not body.fhirServer:
        raise PrefetchUnavailable(missing, "prefetch is incomplete and no fhirServer was given")
    base = listed_base(body.fhirServer, allowed_bases(settings, issuer))
    if base is None:  # before any name lookup or connection, and the same answer whatever the target
        log.info("hook %s: fhirServer not listed for issuer %r; nothing fetched", body.hookInstance, issuer)
        raise PrefetchUnavailable(missing, NOT_ALLOWED)
    parts = urlsplit(base)
    if parts.scheme != "https" and not (_loopback(parts.hostname or "") or settings.fhir_allow_http):
        raise PrefetchUnavailable(missing, "fhirServer must use https (plain http only on loopback)")
    queries: dict[str, str] = {}
    for key in missing + optional:
        q = render_template(PREFETCH[key], body.context)
        if q is None:
            if key in OPTIONAL_KEYS:
                continue
            raise PrefetchUnavailable(missing, f"the '{key}' query needs context fields the request does not carry "
                                      "as FHIR ids (context.patientId: letters, digits, '-' and '.', at most 64)")
        queries[key] = q
    results = await _fetch_all(body, settings, queries, base)
    for key in optional:
        if key not in results:
            out.notes.append(f"'{key}' could not be fetched; not needed by the rules")
    out.values.update(results)
    out.fetched = sorted(results)
    return out


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return f"a {value.get('resourceType', 'JSON object')}"
    return type(value).__name__


async def _fetch_all(body: CdsRequest, settings: Settings, queries: dict[str, str], base: str) -> dict[str, Any]:
    import httpx

    from .outbound import Budget, OutboundRefused, TooLarge, client_for

    headers = {"Accept": "application/fhir+json, application/json"}
    if body.fhirAuthorization is not None:
        auth = body.fhirAuthorization
        headers["Authorization"] = f"{auth.token_type or 'Bearer'} {auth.access_token}"
    fetch = _Fetch(Budget(settings.fhir_max_bytes), settings.max_json_depth)
    try:
        async with client_for(base, settings, headers) as client:
            pairs = await asyncio.wait_for(
                asyncio.gather(*(fetch.optional(client, base, key, q) if key in OPTIONAL_KEYS
                                 else fetch.one(client, base, key, q) for key, q in queries.items())),
                timeout=settings.fhir_timeout * 2,
            )
    except PrefetchUnavailable:
        raise
    except OutboundRefused as exc:
        log.info("FHIR fetch for hook %s refused: %s", body.hookInstance, exc)
        raise PrefetchUnavailable(sorted(queries), "the FHIR server's address is not allowed for outbound requests "
                                  "(private, loopback or link-local; see IPEXRX_FHIR_PRIVATE_NETWORKS)") from None
    except TooLarge:
        raise PrefetchUnavailable(sorted(queries), f"the FHIR server's answers exceed "
                                  f"{settings.fhir_max_bytes // 2**20 or 1} MB for one call") from None
    except (httpx.HTTPError, TimeoutError, ValueError) as exc:
        log.info("FHIR fetch for hook %s failed: %s", body.hookInstance, type(exc).__name__)
        reason = f"the FHIR server could not be read ({type(exc).__name__})"
        raise PrefetchUnavailable(sorted(queries), reason) from None
    return {key: value for key, value in pairs if not (key in OPTIONAL_KEYS and value is _NOT_FETCHED)}


_NOT_FETCHED = object()


@dataclass
class _Fetch:
    """The reads of one hook call, sharing its byte budget."""

    budget: Any
    max_depth: int

    async def optional(self, client: Any, base: str, key: str, query: str) -> tuple[str, Any]:
        """A key the rules do not read: a failed read leaves it out instead of failing the call."""
        import httpx

        try:
            return await self.one(client, base, key, query)
        except (PrefetchUnavailable, httpx.HTTPError, ValueError):
            return key, _NOT_FETCHED

    async def one(self, client: Any, base: str, key: str, query: str) -> tuple[str, Any]:
        return await _fetch_one(client, base, key, query, self)


async def _fetch_one(client: Any, base: str, key: str, query: str, fetch: _Fetch) -> tuple[str, Any]:
    from .outbound import get_json, under_base

    url = f"{base}/{query.lstrip('/')}"
    status, data = await get_json(client, url, fetch.budget, fetch.max_depth)
    if status == 404 and key == "patient":
        raise PrefetchUnavailable([key], "the FHIR server has no such Patient")
    if status != 200:
        raise PrefetchUnavailable([key], f"the FHIR server answered {status} to the '{key}' query")
    if key == "patient":
        if not isinstance(data, dict) or data.get("resourceType") != "Patient":
            raise PrefetchUnavailable([key], "the FHIR server did not return a Patient")
        return key, data
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise PrefetchUnavailable([key], f"the FHIR server did not return a Bundle for '{key}'")
    entries = list(data.get("entry") or [])
    pages = 1
    nxt = _next_link(data)
    while nxt and pages < MAX_PAGES:
        if not under_base(nxt, base):
            raise PrefetchUnavailable([key], "a paging link pointed away from fhirServer (token not sent elsewhere)")
        status, page = await get_json(client, nxt, fetch.budget, fetch.max_depth)
        if status != 200:
            raise PrefetchUnavailable([key], f"the FHIR server answered {status} while paging '{key}'")
        if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
            raise PrefetchUnavailable([key], f"the FHIR server did not return a Bundle while paging '{key}'")
        entries.extend(page.get("entry") or [])
        nxt = _next_link(page)
        pages += 1
    if nxt:
        raise PrefetchUnavailable([key], f"'{key}' has more than {MAX_PAGES} pages")
    return key, {"resourceType": "Bundle", "type": "searchset", "entry": entries}


def _next_link(bundle: Any) -> str | None:
    for link in bundle.get("link") or [] if isinstance(bundle, dict) else []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None
