"""Keep-alive connections are spread over ``ipexrx serve``'s workers (service/balance.py): a worker
holding more than its fair share plus one asks the clients beyond its share to reconnect; a balanced
server, a lone worker, a count that covers part of a window, or a request without a peer address
closes nothing."""

from __future__ import annotations

import asyncio
import http.client
import logging
import math
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ipexrx.cli import get_app
from ipexrx.service import Settings, create_app
from ipexrx.service.balance import (
    ENV_FILE,
    SLOT,
    ShareFileError,
    WorkerBalance,
    WorkerShare,
    create_share_file,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _workers(tmp_path: Path, n: int = 2, alive: Any = None) -> tuple[Clock, list[WorkerShare]]:
    clock = Clock()
    path = create_share_file(n, str(tmp_path))
    shares = [WorkerShare(path, pid=1000 + i, clock=clock, alive=alive or (lambda pid: True)) for i in range(n)]
    for s in shares:
        s.claim()
    return clock, shares


def _window(clock: Clock, loads: list[tuple[WorkerShare, list[Any]]]) -> list[list[Any]]:
    """One second of traffic: each worker gets one request on each of its connections; returns, per
    worker, the connections it asked to reconnect."""
    closed: list[list[Any]] = []
    for share, clients in loads:
        closed.append([c for c in clients if share.note(c)])
    clock.now += 1.0
    return closed


def _clients(prefix: str, n: int) -> list[tuple[str, int]]:
    return [(f"10.0.0.{prefix}", 40000 + i) for i in range(n)]


def test_a_worker_holding_too_many_connections_asks_the_excess_to_reconnect(tmp_path: Path) -> None:
    clock, (a, b) = _workers(tmp_path)
    many, few = _clients("1", 20), _clients("2", 12)
    log = [_window(clock, [(a, many), (b, few)]) for _ in range(2)]
    # window 1 is each worker's first (its count unknown); in window 2 A still sees B's unknown count; at the
    # end of window 2 both counts are known: A holds 20 of 32, over 16 + 1, and closes 20 - 16 in window 3
    assert log == [[[], []], [[], []]]
    closed_by_a = [c for c in many if a.note(c)]
    assert len(closed_by_a) == 4 and len(set(closed_by_a)) == 4
    # the closed clients reconnect at once: 3 land on B, 1 back on A (17 / 15, within the tolerance)
    reconnected_b, reconnected_a = _clients("3", 3), _clients("4", 1)
    assert not [c for c in few + reconnected_b if b.note(c)]
    clock.now += 1.0
    still = [c for c in many if c not in closed_by_a] + reconnected_a
    for _ in range(5):  # A waits a window after closing, then finds 17 / 15: nothing more is closed
        assert _window(clock, [(a, still), (b, few + reconnected_b)]) == [[], []]
    assert a.closed == 4 and b.closed == 0


def test_a_balanced_server_closes_nothing(tmp_path: Path) -> None:
    clock, (a, b) = _workers(tmp_path)
    for split in ((16, 16), (17, 15)):
        for _ in range(5):
            assert _window(clock, [(a, _clients("1", split[0])), (b, _clients("2", split[1]))]) == [[], []]
    assert a.closed == b.closed == 0


def test_a_count_covering_part_of_a_window_is_never_judged_by(tmp_path: Path) -> None:
    """A worker's first window, or its first after an idle spell, saw only part of its connections."""
    clock, (a, b) = _workers(tmp_path)
    for _ in range(3):
        _window(clock, [(a, _clients("1", 16)), (b, _clients("2", 16))])
    clock.now += 5  # both idle for five seconds
    # A's window closed after the spell is unknown, so is B's: no one judges, however lopsided
    assert _window(clock, [(a, _clients("1", 30)), (b, _clients("2", 2))]) == [[], []]
    assert _window(clock, [(a, _clients("1", 16)), (b, _clients("2", 16))]) == [[], []]
    assert a.closed == b.closed == 0


def test_an_idle_worker_counts_as_holding_no_connection(tmp_path: Path) -> None:
    """All 8 connections on A, none on B (which has claimed its slot but served nobody): A sheds 4."""
    clock, (a, b) = _workers(tmp_path)
    log = [_window(clock, [(a, _clients("1", 8))])[0] for _ in range(2)]
    assert log[0] == [] and len(log[1]) == 8 - math.ceil(8 / 2)  # A's first window is unknown; then it sheds 4


def test_missing_data_means_nothing_is_closed(tmp_path: Path) -> None:
    # a lone worker: nowhere to send anyone
    clock, (alone,) = _workers(tmp_path, n=1)
    for _ in range(4):
        assert _window(clock, [(alone, _clients("1", 30))]) == [[]]
    # the other worker's process is gone: its slot is not counted
    dead = {1001}
    clock, (a, b) = _workers(tmp_path, alive=lambda pid: pid not in dead)
    for _ in range(4):
        assert _window(clock, [(a, _clients("1", 30))]) == [[]]
    # no peer address (a Unix socket): nothing counted, nothing closed
    clock, (c, d) = _workers(tmp_path)
    for _ in range(4):
        assert _window(clock, [(c, [None] * 30), (d, _clients("2", 2))]) == [[], []]
    # a peer address given as a list (ASGI allows it) is counted as the same connection each time
    clock, (e, f) = _workers(tmp_path)
    for _ in range(3):
        assert _window(clock, [(e, [["10.0.0.1", 7]] * 3 + _clients("1", 7)), (f, _clients("2", 8))]) == [[], []]
    assert SLOT.unpack_from(e.path.read_bytes(), e.slot * SLOT.size)[1] == 8  # type: ignore[operator]
    # no slot (claim failed): nothing counted, nothing closed
    unclaimed = WorkerShare(create_share_file(1, str(tmp_path)), pid=5, clock=clock)
    assert not unclaimed.note(("10.0.0.1", 1))


def test_a_slot_of_a_dead_process_is_reused_and_a_full_file_is_an_error(tmp_path: Path) -> None:
    dead: set[int] = set()
    clock = Clock()
    path = create_share_file(1, str(tmp_path))  # two slots
    shares = [WorkerShare(path, pid=p, clock=clock, alive=lambda pid: pid not in dead) for p in (1, 2, 3)]
    assert shares[0].claim() == 0 and shares[1].claim() == 1
    with pytest.raises(ShareFileError, match=r"no free slot in .* \(2 slots, all held by running processes\)"):
        shares[2].claim()
    dead.add(1)
    assert shares[2].claim() == 0
    shares[1].release()
    assert SLOT.unpack_from(path.read_bytes(), SLOT.size)[0] == 0


def test_a_file_that_is_not_a_share_file_is_refused_with_what_was_expected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"x" * 7)
    with pytest.raises(ShareFileError, match=rf"expected a multiple of {SLOT.size} bytes, got 7"):
        WorkerShare(bad)
    with pytest.raises(ShareFileError, match="cannot open"):
        WorkerShare(tmp_path / "missing.bin")
    with pytest.raises(ValueError, match="at least 1"):
        create_share_file(0, str(tmp_path))


async def _call(app: Any, client: Any = ("10.0.0.1", 1234), scope_type: str = "http",
                headers: list[tuple[bytes, bytes]] | None = None) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers or []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await WorkerBalance(inner, app)({"type": scope_type, "client": client}, receive, send)
    return sent


def test_the_middleware_adds_connection_close_only_to_the_answers_picked(tmp_path: Path) -> None:
    asyncio.run(_middleware_checks(tmp_path))


async def _middleware_checks(tmp_path: Path) -> None:
    clock, (a, _) = _workers(tmp_path)
    a.note(("10.0.0.9", 1))  # opens the first window
    a.shed = 1
    first = await _call(a)
    assert (b"connection", b"close") in first[0]["headers"]
    second = await _call(a, client=("10.0.0.1", 999))
    assert all(name != b"connection" for name, _ in second[0]["headers"])
    a.shed = 1  # an answer that already says how to end the connection keeps its own header, once
    kept = await _call(a, client=("10.0.0.1", 555), headers=[(b"Connection", b"keep-alive")])
    assert [h for h in kept[0]["headers"] if h[0].lower() == b"connection"] == [(b"Connection", b"keep-alive")]
    a.shed = 1  # not an HTTP request: passed through, not counted
    other = await _call(a, scope_type="websocket")
    assert all(name != b"connection" for name, _ in other[0]["headers"]) and a.shed == 1


def test_the_application_serves_without_balancing_when_the_file_is_unusable(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"x" * 5)
    monkeypatch.setenv(ENV_FILE, str(bad))
    with caplog.at_level(logging.WARNING):
        app = create_app(settings)
    assert "not balanced across workers" in caplog.text and "got 5" in caplog.text
    assert not hasattr(app.state, "worker_share")
    monkeypatch.delenv(ENV_FILE)
    assert not hasattr(create_app(settings).state, "worker_share")  # no file named: one worker, nothing to do


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, db_url: str) -> dict[str, Any]:
    """Replaces only the final uvicorn.run: records the shared file the workers would have been given."""
    import uvicorn

    seen: dict[str, Any] = {}

    def run(*args: Any, **kwargs: Any) -> None:
        path = os.environ.get(ENV_FILE)
        seen["file"] = path
        seen["size"] = Path(path).stat().st_size if path else None

    monkeypatch.setattr(uvicorn, "run", run)
    for var in ("IPEXRX_BASE_URL", "IPEXRX_DEV_MODE", "IPEXRX_DB_MIGRATE", ENV_FILE):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setenv("IPEXRX_DATABASE_URL", db_url)
    return seen


@pytest.mark.parametrize(("workers", "switch", "made"), [(2, None, True), (3, "1", True), (2, "0", False),
                                                          (1, None, False)])
def test_serve_makes_the_shared_file_for_several_workers_and_removes_it(
        started: dict[str, Any], monkeypatch: pytest.MonkeyPatch, workers: int, switch: str | None,
        made: bool) -> None:
    if switch is not None:
        monkeypatch.setenv("IPEXRX_WORKER_BALANCE", switch)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = CliRunner().invoke(get_app(), ["serve", "--port", str(port), "--workers", str(workers)])
    assert r.exit_code == 0, r.output
    if made:
        assert started["size"] == SLOT.size * 2 * workers
        assert not Path(started["file"]).exists()  # removed when the server stops
        assert ENV_FILE not in os.environ
    else:
        assert started["file"] is None


def test_two_real_workers_claim_their_slots_and_publish_their_connections(tmp_path: Path) -> None:
    """``ipexrx serve --workers 2`` with 12 keep-alive clients: both workers hold a slot, their counts add
    up to the clients, and neither holds more than its share plus one at the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "IPEXRX_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    for var in ("IPEXRX_DEV_MODE", "IPEXRX_WORKER_BALANCE", ENV_FILE):
        env.pop(var, None)
    proc = subprocess.Popen([sys.executable, "-m", "ipexrx", "serve", "--port", str(port), "--workers", "2",
                             "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stop = threading.Event()
    reconnects: list[int] = []
    errors: list[BaseException] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        opened = 0
        try:
            while not stop.is_set():
                if conn.sock is None:
                    opened += 1
                conn.request("GET", "/api/v1/version")
                res = conn.getresponse()
                res.read()
                assert res.status == 200
                time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            conn.close()
            reconnects.append(opened - 1)

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        threads = [threading.Thread(target=client) for _ in range(12)]
        for t in threads:
            t.start()
        time.sleep(6)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        share_file = None
        for child in children:
            try:
                env_bytes = Path(f"/proc/{child}/environ").read_bytes()
            except OSError:
                continue
            for item in env_bytes.split(b"\0"):
                if item.startswith(ENV_FILE.encode() + b"="):
                    share_file = Path(item.split(b"=", 1)[1].decode())
        assert share_file is not None and share_file.exists()
        data = share_file.read_bytes()
        slots = [SLOT.unpack_from(data, i * SLOT.size) for i in range(len(data) // SLOT.size)]
        live = [(pid, count) for pid, count, _ in slots if pid]
        assert len(live) == 2 and all(str(pid) in children for pid, _ in live)  # the two workers
        counts = [count for _, count in live]
        assert 11 <= sum(counts) <= 13  # the windows of the two workers end at different moments
        assert max(counts) <= math.ceil(sum(counts) / 2) + 1 + 1  # share + tolerance + a client mid-reconnect
    finally:
        stop.set()
        for t in threads if "threads" in locals() else []:
            t.join(timeout=15)
        proc.terminate()
        proc.communicate(timeout=15)
    assert not errors, errors
    assert share_file is not None and not share_file.exists()  # removed when the server stopped
