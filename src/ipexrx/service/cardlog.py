"""Background writer for the cards we issue (``cds_card``), so a CDS call never waits on the
database: rows are queued and written in batches by one thread per worker process."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from ..storage import Database

log = logging.getLogger("ipexrx.service.cardlog")

BATCH = 500
INTERVAL_SECONDS = 0.2
MAX_QUEUED = 100_000  # beyond this, rows are dropped (and counted) rather than exhausting memory


class CardLog:
    def __init__(self, db: Database):
        self.db = db
        self._q: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=MAX_QUEUED)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.dropped = 0

    def record(self, rows: list[dict[str, Any]]) -> None:
        self._ensure_thread()
        for row in rows:
            try:
                self._q.put_nowait(row)
            except queue.Full:
                self.dropped += 1

    def flush(self) -> None:
        """Write everything queued so far (called before feedback is read back, and at shutdown)."""
        with self._lock:
            while True:
                batch = self._drain()
                if not batch:
                    return
                self._write(batch)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def start(self) -> None:
        """Start the writer now (at service start-up) rather than on the first card."""
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="ipexrx-cardlog", daemon=True)
                    self._thread.start()

    def _drain(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < BATCH:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                break
        return out

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            self.db.add_cards(batch)
        except Exception as exc:  # the CDS answer was already sent; never let logging break the service
            log.warning("could not record %d issued card(s): %s", len(batch), type(exc).__name__)

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_SECONDS):
            with self._lock:
                batch = self._drain()
                if batch:
                    self._write(batch)
