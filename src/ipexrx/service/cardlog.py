"""Background writer for the cards we issue (``cds_card``), so a CDS call never waits on the
database: each call's cards are queued as one item, and one thread per worker process turns them
into rows and writes them in batches (building the rows there keeps that work off the request).

That thread runs at a low OS priority, so it gives way to the calls being answered. When a worker is
saturated for long (thousands of calls a second: the low-priority thread then gets almost no CPU), the
queue grows; past ``URGENT_QUEUED`` waiting calls a second thread, at the normal priority and otherwise
asleep, writes until the backlog is back under ``CALM_QUEUED``. Measured before it existed: in a full run of
the load benchmark, the cached patient-view scenario (3,250 calls a second) filled the queue and the cards
of some 4,800 calls were dropped."""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..storage import Database

log = logging.getLogger("ipexrx.service.cardlog")

BATCH = 2_000  # rows per transaction (statements of storage.db.CARD_ROWS_PER_STATEMENT rows each)
INTERVAL_SECONDS = 1.0  # a tick a second: see _run for why not more often
MAX_QUEUED = 20_000  # hook calls waiting; beyond this, cards are dropped (and counted), not memory exhausted
URGENT_QUEUED = 2_000  # hook calls waiting that wake the normal-priority writer
CALM_QUEUED = 200  # ... which goes back to sleep once the backlog is this small


class CardLog:
    def __init__(self, db: Database):
        self.db = db
        self._q: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=MAX_QUEUED)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._urgent_thread: threading.Thread | None = None
        self._urgent = threading.Event()
        self._stop = threading.Event()
        self.dropped = 0
        self._last_drop_warning = -1e9

    def record_call(self, service_id: str, hook_instance: str, issued: Sequence[tuple[dict[str, Any], Any]],
                    issuer: str | None, tenant: str | None) -> None:
        """Queue the cards of one hook call: ``issued`` pairs each card with the template (alert id, rule)
        it came from. Beyond MAX_QUEUED waiting calls, the call's cards are dropped and counted."""
        self._ensure_thread()
        try:
            self._q.put_nowait((service_id, hook_instance, tuple(issued), issuer, tenant, dt.datetime.now(dt.UTC)))
            if self._q.qsize() > URGENT_QUEUED and not self._urgent.is_set():
                self._urgent.set()
        except queue.Full:
            self.dropped += len(issued)
            now = time.monotonic()
            if now - self._last_drop_warning > 10:  # say so, but not once per call
                self._last_drop_warning = now
                log.warning("card log queue full (%d calls waiting): %d issued card(s) not recorded so far; "
                            "feedback on them cannot be traced to its rule", MAX_QUEUED, self.dropped)

    @staticmethod
    def _rows(item: tuple[Any, ...]) -> list[dict[str, Any]]:
        service_id, hook_instance, issued, issuer, tenant, now = item
        return [{"uuid": card["uuid"], "service_id": service_id, "hook_instance": hook_instance[:200],
                 "alert_id": t.alert_id[:500], "rule": t.rule, "indicator": card["indicator"], "issued_at": now,
                 "issuer": issuer, "tenant": tenant} for card, t in issued]

    def flush(self) -> None:
        """Write everything queued so far (called before feedback is read back, and at shutdown)."""
        with self._lock:
            while True:
                batch = self._drain()
                if not batch:
                    return
                self._write(batch, between=None)  # the caller waits for this: no pauses

    def close(self) -> None:
        self._stop.set()
        self._urgent.set()  # wakes the urgent writer, which sees the stop
        for thread in (self._thread, self._urgent_thread):
            if thread is not None:
                thread.join(timeout=5)
        self.flush()

    def start(self) -> None:
        """Start the writer now (at service start-up) rather than on the first card."""
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._urgent_thread = threading.Thread(target=self._run_urgent, name="ipexrx-cardlog-urgent",
                                                           daemon=True)
                    self._urgent_thread.start()
                    self._thread = threading.Thread(target=self._run, name="ipexrx-cardlog", daemon=True)
                    self._thread.start()

    def _drain(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < BATCH:
            try:
                out.extend(self._rows(self._q.get_nowait()))
            except queue.Empty:
                break
        return out

    def _write(self, batch: list[dict[str, Any]], between: Callable[[], None] | None = None) -> None:
        try:
            self.db.add_cards(batch, between=between)
        except Exception as exc:  # the CDS answer was already sent; never let logging break the service
            log.warning("could not record %d issued card(s): %s", len(batch), type(exc).__name__)

    def _run(self) -> None:
        _lower_this_threads_priority()
        # Each tick writes everything queued (a busy service queues thousands of rows a second), up to
        # BATCH rows a transaction. Why a tick a second and large transactions: the card uuids are random,
        # so every row dirties an index page somewhere in the table, and rows committed together share
        # pages. Measured (4 cards a call, the larger page cache of storage.db): 102 us of CPU per logged
        # call when each transaction held 100 calls' cards (a worker's share of 0.2 s at 500 calls a
        # second, the tick before), 76 us with 250, 64 us with 500. A card is thus in the table within
        # about a second; the feedback route and shutdown flush the queue first, so nothing waits on it.
        # Between the statements of a transaction, and between transactions, the thread pauses: it needs
        # the GIL to build rows, and a long hold would stall the event loop, i.e. the very CDS calls
        # being logged.
        while not self._stop.wait(INTERVAL_SECONDS):
            self._tick()

    def _run_urgent(self) -> None:
        """At the normal priority, asleep until the queue backs up (see the module docstring); then writes
        batch after batch, with the same short pauses as the other writer, until the backlog is small."""
        while True:
            self._urgent.wait()
            if self._stop.is_set():
                return
            while self._q.qsize() > CALM_QUEUED and not self._stop.is_set():
                self._write_batch()
                time.sleep(0.001)
            self._urgent.clear()

    def _tick(self) -> None:
        while self._write_batch() >= BATCH:  # a full batch: more may be waiting
            time.sleep(0.001)

    def _write_batch(self) -> int:
        """Write up to BATCH queued rows (under the lock both writers and flush share); returns how many."""
        with self._lock:
            batch = self._drain()
            if batch:
                self._write(batch, between=_pause)
        return len(batch)


WRITER_NICENESS = 15


def _pause() -> None:
    time.sleep(0.001)


def _lower_this_threads_priority() -> None:
    """Let the operating system run the event loops before this thread (Linux: niceness applies per
    thread). Why: on a saturated server the SQLite work of the writer competed for the CPU with the
    CDS calls being answered and raised their p99 latency by a third (measured with
    ``benchmarks/service_load.py``: p99 26-32 ms with, 21-22 ms without, all cards still logged).
    Elsewhere, or if refused, the thread keeps the normal priority."""
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICENESS)
    except (OSError, AttributeError) as exc:
        log.debug("card log writer keeps its priority: %s", exc)

