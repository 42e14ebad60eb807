"""The address sign-in throttling counts against: the TCP peer, or, from a configured reverse proxy,
the first address in X-Forwarded-For that is not one of the proxies (a client cannot pick its own
address by sending the header directly)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from starlette.requests import Request

from ipexrx.service import Settings
from ipexrx.service.registry_mount import client_source


def _request(peer: str, forwarded: str | None, proxies: list[str]) -> Request:
    app = SimpleNamespace(state=SimpleNamespace(settings=Settings(trusted_proxies=proxies)))
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers, "client": (peer, 5000),
                    "app": app, "query_string": b""})


@pytest.mark.parametrize(("peer", "forwarded", "proxies", "expected"), [
    ("203.0.113.9", None, [], "203.0.113.9"),
    ("203.0.113.9", "1.2.3.4", [], "203.0.113.9"),  # no proxy configured: the header is ignored
    ("203.0.113.9", "1.2.3.4", ["10.0.0.0/24"], "203.0.113.9"),  # not from the proxy: ignored
    ("10.0.0.5", "198.51.100.7", ["10.0.0.0/24"], "198.51.100.7"),
    ("10.0.0.5", "6.6.6.6, 198.51.100.7, 10.0.0.6", ["10.0.0.0/24"], "198.51.100.7"),  # forged left part skipped
    ("10.0.0.5", "not-an-address", ["10.0.0.5"], "10.0.0.5"),
])
def test_the_throttled_address(peer: str, forwarded: str | None, proxies: list[str], expected: str) -> None:
    assert client_source(_request(peer, forwarded, proxies)) == expected


def test_a_trusted_proxy_must_be_an_address_or_cidr() -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings(trusted_proxies=["proxy.example.org"])
    assert Settings.from_env({"IPEXRX_TRUSTED_PROXIES": "10.0.0.5, 10.1.0.0/16"}).trusted_proxies == \
        ["10.0.0.5/32", "10.1.0.0/16"]
