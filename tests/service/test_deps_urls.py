"""The remembered public base and called URL equal what Starlette's ``request.url`` gives, for every part
of the scope a URL is made of (scheme, server, root path, path, Host header), and a query never counts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from starlette.requests import Request

from ipexrx.service.deps import _URLS, called_url, public_base


def _request(scheme="http", server=("127.0.0.1", 8000), root="", path="/cds-services/x", host=b"ehr.example:8443",
             query=b"", base_url=None) -> Request:
    headers = [(b"host", host)] if host is not None else []
    app = SimpleNamespace(state=SimpleNamespace(settings=SimpleNamespace(base_url=base_url)))
    return Request({"type": "http", "method": "POST", "scheme": scheme, "server": server, "root_path": root,
                    "path": path, "query_string": query, "headers": headers, "app": app})


CASES = [dict(), dict(server=["10.0.0.1", 8000]), dict(scheme="https"), dict(host=None),
         dict(host=None, server=("::1", 9000)),
         dict(root="/ipexrx", path="/ipexrx/cds-services/x"), dict(host=b"other.example"), dict(query=b"a=1"),
         dict(path="/cds-services/y/feedback"), dict(server=None, host=None)]


@pytest.mark.parametrize("case", CASES)
def test_urls_are_what_starlette_says(case):
    _URLS.clear()
    for _ in range(2):  # made, then remembered
        request = _request(**case)
        url = request.url
        root = request.scope.get("root_path", "")
        assert public_base(request) == f"{url.scheme}://{url.netloc}{root}".rstrip("/")
        assert called_url(request) == f"{url.scheme}://{url.netloc}{url.path}"


def test_requests_differing_in_one_part_never_share_an_answer():
    _URLS.clear()
    for case in CASES + CASES[::-1]:  # all remembered side by side, each still answered as Starlette answers it
        request = _request(**case)
        assert called_url(request) == f"{request.url.scheme}://{request.url.netloc}{request.url.path}"


def test_a_configured_base_url_wins():
    request = _request(base_url="https://ipexrx.example.org")
    assert public_base(request) == "https://ipexrx.example.org"
    assert called_url(request) == "https://ipexrx.example.org/cds-services/x"
