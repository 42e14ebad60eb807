"""Outbound FHIR requests: only to servers the calling client may name, only to vetted addresses,
never following redirects, and never reading more than a fixed number of bytes.

A CDS call names its own ``fhirServer`` and hands us an access token for it. Without care, any
client able to sign a call (or anyone, in development mode) could make this service connect to any
address it can reach - loopback ports, the cloud metadata service, the hospital's internal hosts -
with the EHR's token attached, and read the differences between the answers as a port scanner.
So:

1. The ``fhirServer`` must be one of the base URLs listed for the calling issuer (``fhir_servers``
   in its ``IPEXRX_CDS_ISSUERS`` entry; in development mode ``IPEXRX_DEV_FHIR_SERVERS``). Anything
   else is refused before any name is resolved or any connection made, always with the same
   answer (:data:`NOT_ALLOWED`), whatever the target.
2. When connecting, the host name is resolved by us and every address must be public. Private,
   loopback and link-local addresses are used only when listed explicitly: the listed URL is
   written with that IP address (or ``localhost``), or the address lies in
   ``IPEXRX_FHIR_PRIVATE_NETWORKS``. The connection goes to the vetted address (so a second DNS
   answer cannot swap it), while TLS still verifies the certificate for the host name.
3. Redirects are not followed (a 3xx is an unusable answer); paging links must stay under the
   listed base URL; the token travels only with those requests.
4. All answers of one hook call together are read up to ``fhir_max_bytes`` (counted after
   decompression, streamed and aborted beyond); time is bounded per request and per call.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx
import orjson

from ..settings import Settings, fhir_base

NOT_ALLOWED = "fhirServer is not a FHIR server this service may contact for the calling client"
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundRefused(Exception):
    """The target may not be contacted (the reason is for the log; the caller sees NOT_ALLOWED)."""


class TooLarge(Exception):
    """The FHIR server's answers exceeded the byte budget of the call."""


def allowed_bases(settings: Settings, issuer: str | None) -> list[str]:
    """The FHIR base URLs the calling client may name: its issuer's list; in development mode (no
    verified issuer) the development list."""
    if issuer is not None:
        cfg = settings.issuers.get(issuer)
        return list(cfg.fhir_servers) if cfg is not None else []
    return list(settings.dev_fhir_servers) if settings.dev_mode else []


def listed_base(fhir_server: str, bases: Iterable[str]) -> str | None:
    """The listed base URL ``fhir_server`` is (compared in normalised form), or None."""
    try:
        wanted = fhir_base(fhir_server)
    except ValueError:
        return None
    return wanted if wanted in set(bases) else None


def under_base(url: str, base: str) -> bool:
    """Is ``url`` (a paging link) on the listed base's origin and under its path?"""
    try:
        a = urlsplit(url)
        b = urlsplit(base)
        if "@" in a.netloc or (a.scheme.lower(), (a.hostname or "").lower(), a.port or _default_port(a.scheme)) != (
                b.scheme, b.hostname, b.port or _default_port(b.scheme)):
            return False
    except ValueError:
        return False
    return a.path == b.path or a.path.startswith(b.path.rstrip("/") + "/")


def _default_port(scheme: str) -> int:
    return 443 if scheme.lower() == "https" else 80


def _plain(ip: IpAddress) -> IpAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def address_allowed(ip: IpAddress, explicit: set[IpAddress], networks: list[Any]) -> bool:
    ip = _plain(ip)
    if ip.is_unspecified or ip.is_multicast:
        return False
    if ip in {_plain(e) for e in explicit} or any(ip in net for net in networks):
        return True
    return ip.is_global


class VettedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend that resolves each host itself, refuses the connection unless every
    address is allowed (:func:`address_allowed`), and connects to the vetted address."""

    def __init__(self, explicit: set[IpAddress], networks: list[Any]):
        self.inner = httpcore.AnyIOBackend()
        self.explicit = explicit
        self.networks = networks

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:  # no such name, resolver down: an unreachable server, as httpx would say
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not addresses or not all(address_allowed(a, self.explicit, self.networks) for a in addresses):
            raise OutboundRefused(f"{host} resolves to an address not allowed for outbound FHIR requests")
        return await self.inner.connect_tcp(str(infos[0][4][0]), port, timeout=timeout, local_address=local_address,
                                            socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused("unix sockets are never used for outbound FHIR requests")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def explicit_addresses(base: str) -> set[IpAddress]:
    """The addresses a listed base URL names itself: its host when written as an IP address, the
    loopback addresses when written as ``localhost``."""
    host = urlsplit(base).hostname or ""
    if host == "localhost":
        return {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    try:
        return {_plain(ipaddress.ip_address(host))}
    except ValueError:
        return set()


def client_for(base: str, settings: Settings, headers: dict[str, str]) -> httpx.AsyncClient:
    """An httpx client that can reach only vetted addresses, follows no redirect, ignores proxy
    environment variables (a proxy would resolve names itself), and times out per request."""
    networks = [ipaddress.ip_network(n) for n in settings.fhir_private_networks]
    transport = httpx.AsyncHTTPTransport(retries=0)
    ssl_context = transport._pool._ssl_context  # the default verified context, reused
    transport._pool = httpcore.AsyncConnectionPool(  # same pool, with the vetting network backend
        ssl_context=ssl_context, max_connections=10, http1=True, http2=False,
        network_backend=VettedBackend(explicit_addresses(base), networks))
    timeout = httpx.Timeout(settings.fhir_timeout, connect=min(settings.fhir_timeout, 3.0))
    return httpx.AsyncClient(transport=transport, timeout=timeout, headers=headers, follow_redirects=False,
                             trust_env=False)


class Budget:
    """Bytes still allowed to be read for one hook call."""

    def __init__(self, limit: int):
        self.limit = limit
        self.left = limit


async def get_json(client: httpx.AsyncClient, url: str, budget: Budget, max_depth: int) -> tuple[int, Any]:
    """GET ``url``; (status, parsed JSON or None). The body is streamed and abandoned beyond the
    budget; a non-200 answer's body is not read at all."""
    from ..limits import json_too_deep

    async with client.stream("GET", url) as resp:
        if resp.status_code != 200:
            return resp.status_code, None
        declared = resp.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > budget.left:
            raise TooLarge()
        chunks = []
        async for chunk in resp.aiter_bytes():
            budget.left -= len(chunk)
            if budget.left < 0:
                raise TooLarge()
            chunks.append(chunk)
    raw = b"".join(chunks)
    if json_too_deep(raw, max_depth):
        raise ValueError("the FHIR answer nests too deeply")
    return 200, orjson.loads(raw)
