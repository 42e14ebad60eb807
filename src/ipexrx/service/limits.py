"""Request limits, checked once for every route before anything else runs (authentication included):

- all request headers together at most ``max_header_bytes`` (431);
- a request body at most ``max_body_bytes``, declared or streamed (413);
- a request body nested at most ``max_json_depth`` deep (400): JSON bodies, and every other body too,
  because some routes read JSON whatever the declared type (the registry API) and uploads carry JSON
  files (a patient record, a FHIR Bundle).

Why here: each route parses its own body (FastAPI bodies, the CDS hot path, the registry's
framework-free routes), and a deeply nested document crashed the standard library's recursive
parser with a 500 before the registry even checked the caller. One check in front of all of them
means no route can forget it; every later parser (``json``, ``orjson``, pydantic, our readers) then
sees at most ``max_json_depth`` levels. The uvicorn server has no header limit of its own with
httptools, so the header check is done here too (a proxy in front should also limit them).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_NOT_STRUCTURE = bytes(range(256)).translate(None, b'[]{}"')
_AS_PARENS = bytes.maketrans(b"[]{}", b"()()")
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})
# Multipart uploads whose route checks the nesting of every line of every (decompressed) file itself, naming the
# file and line: the population screen's Bulk Data files, often gzip-compressed. Compressed bytes are not text:
# their random brackets nest "deeper" than any limit in a file of a megabyte or more, so the check of the raw
# body would refuse every real export.
DEPTH_CHECKED_BY_ROUTE = frozenset({"/screen"})


def json_too_deep(raw: bytes, limit: int) -> bool:
    """True when the JSON text ``raw`` nests arrays / objects more than ``limit`` levels deep.

    Linear and iteration-free over the characters (C-speed byte operations; ~25 us for a 14 kB CDS
    request): escaped backslashes and quotes are removed, then everything but quotes and brackets (one
    ``translate``); the remaining quotes alternate open / close, so an adjacent pair ``""`` -- an
    empty string, or the end of one string and the start of the next with nothing between -- can go
    without changing what lies inside or outside a string (most strings hold no bracket and vanish in
    that one pass); what is left inside quotes is cut out. The brackets left are read as parentheses,
    and each pass removes the innermost pairs, i.e. exactly one level. Text that is not JSON may get
    any answer; the parser behind rejects it."""
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = raw.translate(None, _NOT_STRUCTURE)
    if marks.count(b"[") + marks.count(b"{") <= limit:  # counted in the short text (a fifth of a FHIR body)
        return False
    marks = marks.replace(b'""', b"")
    if b'"' in marks:
        marks = b"".join(marks.split(b'"')[::2])
    brackets = marks.translate(_AS_PARENS)
    for _ in range(limit):
        inner = brackets.replace(b"()", b"")
        if inner == brackets or not inner:
            return False
        brackets = inner
    return b"()" in brackets


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return True  # no declared type: several routes read JSON anyway
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


async def refuse(send: Send, status: int, error: str, message: str, headers: list[tuple[bytes, bytes]] | None = None,
                 ) -> None:
    """A JSON error answer in the service's one error shape, sent straight from ASGI."""
    body = json.dumps({"error": error, "message": message, "issues": [], "suggestions": []}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _size(n: int) -> str:
    return f"{n // 2**20} MB" if n >= 2**20 and n % 2**20 == 0 else f"{n // 1024} kB" if n >= 1024 else f"{n} bytes"


class RequestLimits:
    """ASGI middleware enforcing the header, body and JSON depth limits (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = 20 * 2**20, max_header_bytes: int = 32 * 1024,
                 max_json_depth: int = 64):
        self.app = app
        self.max_body = max_body_bytes
        self.max_header = max_header_bytes
        self.max_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        header_bytes = sum(len(k) + len(v) + 4 for k, v in headers) + len(scope.get("raw_path") or b"")
        if header_bytes > self.max_header:
            await refuse(send, 431, "request_header_fields_too_large",
                         f"the request line and headers are larger than {_size(self.max_header)}")
            return
        declared: int | None = None
        content_type: bytes | None = None
        for name, value in headers:
            if name == b"content-length":
                declared = int(value) if value.isdigit() else None
            elif name == b"content-type":
                content_type = value
        if declared is not None and declared > self.max_body:
            await self._too_large(send)
            return
        if scope.get("method") in _BODYLESS or declared == 0:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        by_route = scope.get("path") in DEPTH_CHECKED_BY_ROUTE and (content_type or b"").lower().startswith(
            b"multipart/form-data")
        if not by_route and json_too_deep(body, self.max_depth):
            what = "the JSON body nests" if _is_json(content_type) else "the request body nests brackets"
            await refuse(send, 400, "json_too_deep", f"{what} more than {self.max_depth} levels deep")
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await refuse(send, 413, "payload_too_large", f"the request body is larger than {_size(self.max_body)}")


def _header_list(pairs: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in pairs.items()]


# Every page loads scripts, styles, images and fonts from this server only, runs no inline script,
# cannot be framed, and sends no referrer to other sites. No 'unsafe-inline' for scripts or styles.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")
# Self-contained documents carry their stylesheet inline because they must also work saved to a file or
# printed (the registry's report, the TDM report, the assessment report): there, and only there, inline
# styles are allowed. Inline scripts never are. The registry's pages carry one fixed <style> block, allowed by its hash.
INLINE_STYLE_PREFIXES = ("/api/v1/registry/report", "/api/v1/dosing/report", "/dosing/report", "/assess/report")
HASHED_STYLE_PREFIXES = ("/registry",)
CONTENT_SECURITY_POLICY_INLINE_STYLE = CONTENT_SECURITY_POLICY.replace("style-src 'self'",
                                                                       "style-src 'self' 'unsafe-inline'")


def _hashes(text: str, tag: str) -> list[str]:
    """CSP hash sources of the <tag> blocks in ``text``."""
    import base64
    import hashlib
    import re

    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.S)
    return [f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks]


def registry_style_hashes() -> list[str]:
    """CSP hash sources of any <style> blocks in the registry's page templates (none today: they share the
    site's layout and stylesheet)."""
    from pathlib import Path

    folder = Path(__file__).parent / "templates" / "registry"
    return [h for f in sorted(folder.glob("*.html")) for h in _hashes(f.read_text(encoding="utf-8"), "style")]


# The registry's interactive report (a self-contained file too) has one fixed script: click a legend
# entry to hide a curve. On that path, exactly that script is allowed, by its hash.
HASHED_SCRIPT_PREFIXES = ("/api/v1/registry/report",)
SMART_PREFIX = "/smart/"  # framed by the EHR origins in IPEXRX_SMART_FRAME_ANCESTORS, when any are listed


def registry_report_script_hashes() -> list[str]:
    from ..registry.report import LEGEND_SCRIPT

    return _hashes(LEGEND_SCRIPT, "script")
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
    "cross-origin-opener-policy": "same-origin",
}


class BrowserHardening:
    """Security headers on every answer (pages, JSON, static files), and ``Secure`` on every cookie
    set over TLS: the request came over https, or the public base URL is https, or a trusted proxy in
    front says ``X-Forwarded-Proto: https`` (trusted: every peer with ``trust_forwarded_proto``, else a
    peer address in ``trusted_proxies``)."""

    def __init__(self, app: ASGIApp, *, trust_forwarded_proto: bool = False, base_url: str | None = None,
                 trusted_proxies: list[str] | None = None, smart_frame_ancestors: list[str] | None = None):
        import ipaddress

        self.app = app
        self.trust_forwarded_proto = trust_forwarded_proto
        self.proxies = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies or []]
        self.always_secure = bool(base_url and base_url.lower().startswith("https://"))
        self.extra = _header_list(SECURITY_HEADERS)
        self.extra_inline_style = _header_list(
            {**SECURITY_HEADERS, "content-security-policy": CONTENT_SECURITY_POLICY_INLINE_STYLE})
        hashed = CONTENT_SECURITY_POLICY.replace("style-src 'self'",
                                                 "style-src 'self' " + " ".join(registry_style_hashes()))
        self.extra_hashed_style = _header_list({**SECURITY_HEADERS, "content-security-policy": hashed})
        report = CONTENT_SECURITY_POLICY_INLINE_STYLE.replace(
            "script-src 'self'", "script-src 'self' " + " ".join(registry_report_script_hashes()))
        self.extra_report = _header_list({**SECURITY_HEADERS, "content-security-policy": report})
        self.names = {k for k, _ in self.extra}
        # The SMART app may be shown inside a listed EHR's frame (its pages only; everything else stays unframeable)
        self.extra_smart = self.extra
        if smart_frame_ancestors:
            framed = CONTENT_SECURITY_POLICY.replace("frame-ancestors 'none'",
                                                     "frame-ancestors " + " ".join(smart_frame_ancestors))
            self.extra_smart = [(k, v) for k, v in _header_list({**SECURITY_HEADERS, "content-security-policy": framed})
                                if k != b"x-frame-options"]

    def _over_tls(self, scope: Scope) -> bool:
        if self.always_secure or scope.get("scheme") == "https":
            return True
        if self.trust_forwarded_proto or self._from_proxy(scope):
            for name, value in scope.get("headers", []):
                if name == b"x-forwarded-proto":
                    return value.split(b",")[0].strip().lower() == b"https"
        return False

    def _from_proxy(self, scope: Scope) -> bool:
        import ipaddress

        client = scope.get("client")
        if not self.proxies or not client:
            return False
        try:
            peer = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(peer in net for net in self.proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = self._over_tls(scope)
        path = scope.get("path", "")
        extra = self.extra_smart if path.startswith(SMART_PREFIX) else \
            self.extra_report if path.startswith(HASHED_SCRIPT_PREFIXES) else \
            self.extra_inline_style if path.startswith(INLINE_STYLE_PREFIXES) else \
            self.extra_hashed_style if path.startswith(HASHED_STYLE_PREFIXES) else self.extra

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = [(k, v) for k, v in message.get("headers", []) if k.lower() not in self.names]
                if tls:
                    headers = [(k, _secure(v)) if k.lower() == b"set-cookie" else (k, v) for k, v in headers]
                message = {**message, "headers": [*headers, *extra]}
            await send(message)

        await self.app(scope, receive, send_wrapper)


def _secure(cookie: bytes) -> bytes:
    attrs = [a.strip().lower() for a in cookie.split(b";")[1:]]
    return cookie if b"secure" in attrs else cookie + b"; Secure"
