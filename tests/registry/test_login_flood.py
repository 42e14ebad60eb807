"""A bounded sign-in flood against a real server on loopback: 150 concurrent wrong-password logins,
with the production Argon2 cost, from several source addresses (127.0.0.x), get only 401 or 429
(never a 5xx); every 429 says when to retry; and the account's owner, signing in from another
address, still gets in. Runs on SQLite and, with ``$IPEXRX_TEST_POSTGRES_URL``, on PostgreSQL."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from ipexrx.registry import SYSTEM, Registry

from .conftest import PASSWORD

FLOOD = 150
SOURCES = [f"127.0.0.{i}" for i in range(2, 7)]  # the attacker's addresses
OWNER_SOURCE = "127.0.0.9"  # the real user's address
USER = "flood.target"
LOGIN = "/api/v1/registry/auth/token"


SERVER = """
import sys
import uvicorn
from ipexrx.service import Settings, create_app
uvicorn.run(create_app(Settings(database_url=sys.argv[1])), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning")
"""


def _serve(db_url: str) -> Iterator[str]:
    """The service in its own process (its own interpreter lock, as in production), production Argon2."""
    import subprocess
    import sys

    reg = Registry(db_url)
    reg.create_centre(SYSTEM, {"code": "CTR-F", "name": "Centre F"})
    reg.create_user(SYSTEM, {"username": USER, "password": PASSWORD, "role": "clinician", "centre_code": "CTR-F"})
    reg.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", SERVER, db_url, str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/api/v1/registry/centres", timeout=2).status_code == 401:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield from _serve(f"sqlite:///{tmp_path / 'flood.sqlite3'}")
    else:
        with request.getfixturevalue("fresh_pg_database")() as url:
            yield from _serve(url)


def _login(base: str, source: str, username: str, password: str) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=base, transport=transport, timeout=50) as c:
        return c.post(LOGIN, json={"username": username, "password": password})


@pytest.mark.real_argon2
def test_a_login_flood_gets_401_or_429_only_and_the_owner_still_signs_in_from_elsewhere(server: str) -> None:
    usernames = [USER, USER, USER, "no.such.user"]  # mostly the target, some unknown names
    jobs: list[tuple[str, str]] = [(SOURCES[i % len(SOURCES)], usernames[i % len(usernames)]) for i in range(FLOOD)]
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=FLOOD) as pool:
        answers = list(pool.map(lambda j: _login(server, j[0], j[1], "wrong password, guess number 1"), jobs))
    elapsed = time.monotonic() - start
    statuses = Counter(r.status_code for r in answers)
    print(f"flood: {dict(statuses)} in {elapsed:.1f} s")
    assert set(statuses) <= {401, 429}, (statuses, [r.text for r in answers if r.status_code >= 500][:3])
    assert statuses[429] > 0  # the limits did act
    for r in answers:
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1, r.headers
            assert "retry" in r.json()["detail"]["message"].lower()
    assert elapsed < 40, f"the flood took {elapsed:.1f} s"
    owner = _login(server, OWNER_SOURCE, USER, PASSWORD)
    assert owner.status_code == 200, owner.text
    assert owner.json()["token"].startswith("ipxr_")


def test_an_attacker_address_in_back_off_is_told_when_to_retry(server: str) -> None:
    answers: list[Any] = [_login(server, SOURCES[0], USER, "wrong password, guess number 2") for _ in range(8)]
    codes = [r.status_code for r in answers]
    assert codes[0] == 401 and codes[-1] == 429, codes
    assert int(answers[-1].headers["retry-after"]) >= 1
    # the right password from the throttled address is not even checked during the back-off
    assert _login(server, SOURCES[0], USER, PASSWORD).status_code == 429
    assert _login(server, OWNER_SOURCE, USER, PASSWORD).status_code == 200
