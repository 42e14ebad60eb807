"""Keep-alive connections spread evenly over the server's worker processes.

Why: ``ipexrx serve --workers N`` runs uvicorn's workers on one shared listening socket, and a new
connection goes to whichever worker calls ``accept`` first. A client that keeps its connections open
(an EHR's integration engine, a reverse proxy's pool of upstream connections, the load benchmark's
32 connections) keeps the split made at connect time for as long as the connections live: with 20 of
32 on one worker and 12 on the other, the first answers each caller about 1.7 times later than the
second, and with 2 connections both on one worker, half the server idles while the other half queues.

How: each worker counts the client connections that sent it a request in the last second and
publishes the count in a small file shared by the workers (one slot per worker: its process id, its
count, when it published). A worker holding more than its fair share (all counts together divided by
the live workers, rounded up) plus a tolerance of one answers as many requests as it holds beyond its
fair share, each on a different connection, with ``Connection: close``; then it waits a window before
judging again, because the other workers' counts do not yet show where those clients reconnected.
An HTTP/1.1 client opens a new connection, which the kernel hands to whichever worker accepts first,
so the split drifts to even within seconds, and a balanced server closes nothing. A live worker that
published nothing recently has served no connection in that time and counts as holding none (an idle
worker is exactly where connections should go); a slot whose process is gone is not counted; a count
that covers only part of a window (a worker's first, or its first after an idle spell) is published as
unknown, and nobody judges by it.

Counts are read and written without locks: a torn read can only misjudge one second's split, and the
next second corrects it. Claiming a slot takes an exclusive lock on the file.

``ipexrx serve`` makes the file when it starts more than one worker (``IPEXRX_WORKER_BALANCE=0``
turns this off) and names it to the workers in ``IPEXRX_WORKER_SHARE``; without it (one worker, or
the application run by another server) nothing is counted and nothing is closed.
"""

from __future__ import annotations

import fcntl
import logging
import math
import mmap
import os
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

ENV_FILE = "IPEXRX_WORKER_SHARE"
SLOT = struct.Struct("=qqd")  # process id (0: free), connections seen in the last window, when published
WINDOW_SECONDS = 1.0
TOLERANCE = 1  # connections a worker may hold beyond its fair share before it asks clients to reconnect
STALE_WINDOWS = 3  # a count older than this many windows is read as "no connection served lately"
UNKNOWN = -1  # the count of a window that saw only part of a worker's connections


class ShareFileError(ValueError):
    """The shared file is missing, the wrong size, or has no slot left for this worker."""


def create_share_file(workers: int, directory: str | None = None) -> Path:
    """A zeroed file with two slots per worker (room for workers restarted before their old slot is
    seen free). In /dev/shm when there is one: the counts never need to reach a disk."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if directory is None and os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        directory = "/dev/shm"
    fd, name = tempfile.mkstemp(prefix="ipexrx-workers-", suffix=".bin", dir=directory)
    with os.fdopen(fd, "wb") as fh:
        fh.write(bytes(SLOT.size * 2 * workers))
    return Path(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class WorkerShare:
    """This worker's slot in the shared file, its count of connections, and its decision to shed some."""

    def __init__(self, path: str | os.PathLike[str], *, pid: int | None = None, window: float = WINDOW_SECONDS,
                 tolerance: int = TOLERANCE, clock: Callable[[], float] = time.monotonic,
                 alive: Callable[[int], bool] = _alive):
        self.path = Path(path)
        self.pid = pid if pid is not None else os.getpid()
        self.window = window
        self.tolerance = tolerance
        self.clock = clock
        self.alive = alive
        self.slot: int | None = None
        self.shed = 0  # connections still to close in this window
        self.closed = 0  # connections closed so far (for the log and the tests)
        self._seen: set[Any] = set()
        self._gone: set[Any] = set()  # connections this window closed: no longer this worker's
        self._window_end = 0.0
        try:
            size = self.path.stat().st_size
        except OSError as exc:
            raise ShareFileError(f"{ENV_FILE}: cannot open the workers' shared file {self.path} "
                                 f"({exc.strerror})") from None
        if size == 0 or size % SLOT.size:
            raise ShareFileError(f"{ENV_FILE}: {self.path} is not a workers' shared file (expected a multiple of "
                                 f"{SLOT.size} bytes, got {size})")
        self._fh = self.path.open("r+b")
        self._map = mmap.mmap(self._fh.fileno(), size)
        self.slots = size // SLOT.size

    # -- slots ---------------------------------------------------------------------------------
    def _read(self, i: int) -> tuple[int, int, float]:
        pid, count, stamp = SLOT.unpack_from(self._map, i * SLOT.size)
        return pid, count, stamp

    def _write(self, i: int, pid: int, count: int, stamp: float) -> None:
        SLOT.pack_into(self._map, i * SLOT.size, pid, count, stamp)

    def claim(self) -> int:
        """Take a free slot (never used, or its process gone); at start-up, so that a worker that
        has not yet served anyone is counted as a worker holding no connection."""
        if self.slot is not None:
            return self.slot
        fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX)
        try:
            for i in range(self.slots):
                pid, _, _ = self._read(i)
                if pid == self.pid or pid == 0 or not self.alive(pid):
                    self._write(i, self.pid, 0, self.clock())
                    self.slot = i
                    return i
        finally:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        raise ShareFileError(f"{ENV_FILE}: no free slot in {self.path} ({self.slots} slots, all held by running "
                             "processes)")

    def release(self) -> None:
        if self.slot is not None:
            self._write(self.slot, 0, 0, 0.0)
            self.slot = None

    def close(self) -> None:
        self.release()
        self._map.close()
        self._fh.close()

    def counts(self, now: float) -> list[int]:
        """Connections per live worker: a fresh count as published (:data:`UNKNOWN` included), a stale one
        as 0."""
        out = []
        for i in range(self.slots):
            pid, count, stamp = self._read(i)
            if pid == 0 or (pid != self.pid and not self.alive(pid)):
                continue
            out.append(count if now - stamp <= STALE_WINDOWS * self.window else 0)
        return out

    # -- per request -----------------------------------------------------------------------------
    def note(self, client: Any) -> bool:
        """Count the request's connection; True when it should be closed after this answer."""
        if client is None or self.slot is None:
            return False  # no peer address to tell connections apart (a Unix socket), or no slot: count nothing
        if isinstance(client, list):
            client = tuple(client)  # ASGI allows a list: kept in a set, it must be hashable
        now = self.clock()
        if now >= self._window_end:
            self._end_window(now)
        self._seen.add(client)
        if self.shed > 0 and client not in self._gone:
            self.shed -= 1
            self.closed += 1
            self._gone.add(client)
            return True
        return False

    def _end_window(self, now: float) -> None:
        # The first window after claiming the slot, or one closed after an idle spell, saw only part of this
        # worker's connections: published as "unknown", and no worker judges the split by it.
        partial = self._window_end == 0.0 or now - self._window_end > self.window
        mine = len(self._seen) - len(self._gone)
        closed_some = bool(self._gone)
        self._seen.clear()
        self._gone.clear()
        self._window_end = now + self.window
        assert self.slot is not None
        self._write(self.slot, self.pid, UNKNOWN if partial else mine, now)
        self.shed = 0
        counts = self.counts(now)
        if partial or closed_some or len(counts) < 2 or UNKNOWN in counts:
            # nothing to judge by; the only worker (nowhere to send anyone); or connections were just closed,
            # and where they reconnected is not yet in the other workers' counts: judge a window later
            return
        fair = math.ceil(sum(counts) / len(counts))
        if mine > fair + self.tolerance:
            self.shed = mine - fair
            log.debug("worker %d holds %d of %d connections (fair share %d): asking %d to reconnect",
                      self.pid, mine, sum(counts), fair, self.shed)


def share_from_env(environ: dict[str, str] | None = None) -> WorkerShare | None:
    """The worker's share when ``ipexrx serve`` made a shared file (several workers), else None."""
    e = os.environ if environ is None else environ
    path = e.get(ENV_FILE)
    if not path:
        return None
    return WorkerShare(path)


class WorkerBalance:
    """ASGI middleware: counts each request's connection and adds ``Connection: close`` to the answers
    :meth:`WorkerShare.note` picks (see the module docstring)."""

    def __init__(self, app: ASGIApp, share: WorkerShare):
        self.app = app
        self.share = share

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.share.note(scope.get("client")):
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"connection" for name, _ in headers):
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, closing)
