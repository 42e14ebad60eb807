"""JWT replay protection shared by every worker process: has this (issuer, jti) been seen?

Two stores, same contract (``remember`` is an atomic "add if absent", False on a replay):

* :class:`FileReplayStore` -- one empty file per token id, created with ``O_CREAT | O_EXCL`` (atomic
  across processes on one host), in buckets of ten minutes of expiry that are deleted whole once
  expired. About 20 microseconds and no lock waits, so it is the default when the database is
  SQLite (one host by nature);
* :class:`DatabaseReplayStore` -- the ``seen_token`` table (a primary-key insert); use it when
  several hosts serve the same clients (``IPEXRX_REPLAY_STORE=database``, shared database).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path
from typing import Protocol

from .db import Database

BUCKET_SECONDS = 600


class ReplayStore(Protocol):
    def remember(self, issuer: str, jti: str, expires_at: int, now: int) -> bool: ...


class DatabaseReplayStore:
    def __init__(self, db: Database):
        self.db = db

    def remember(self, issuer: str, jti: str, expires_at: int, now: int) -> bool:
        return self.db.remember_token(issuer, jti, expires_at, now)


class FileReplayStore:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._last_purge = 0
        self._lock = threading.Lock()

    def remember(self, issuer: str, jti: str, expires_at: int, now: int) -> bool:
        self._maybe_purge(now)
        bucket = self.dir / str(expires_at // BUCKET_SECONDS)
        name = hashlib.sha256(f"{issuer}\0{jti}".encode()).hexdigest()
        for _ in range(2):
            try:
                fd = os.open(bucket / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                return False
            except FileNotFoundError:  # first token of this bucket (or the bucket was just purged)
                bucket.mkdir(parents=True, exist_ok=True, mode=0o700)
                continue
            os.close(fd)
            return True
        return False

    def _maybe_purge(self, now: int) -> None:
        if now - self._last_purge < 60 or not self._lock.acquire(blocking=False):
            return
        try:
            self._last_purge = now
            for entry in self.dir.iterdir():
                # a bucket holds tokens expiring before (n + 1) * BUCKET_SECONDS
                if entry.name.isdigit() and (int(entry.name) + 1) * BUCKET_SECONDS < now:
                    shutil.rmtree(entry, ignore_errors=True)
        finally:
            self._lock.release()


def default_replay_dir(db: Database) -> Path:
    """Next to the SQLite file (so each database has its own), else in the user data directory."""
    if db.engine.dialect.name == "sqlite" and db.engine.url.database not in (None, "", ":memory:"):
        return Path(str(db.engine.url.database)).expanduser().resolve().parent / "ipexrx-seen-jti"
    from .db import user_data_dir

    return user_data_dir() / "seen-jti"


def make_replay_store(db: Database, kind: str | None = None, directory: str | Path | None = None) -> ReplayStore:
    """``kind``: 'file', 'database', or None (file for SQLite, database otherwise)."""
    kind = kind or ("file" if db.engine.dialect.name == "sqlite" else "database")
    if kind == "database":
        return DatabaseReplayStore(db)
    if kind == "file":
        return FileReplayStore(directory or default_replay_dir(db))
    raise ValueError(f"replay store must be 'file' or 'database', got {kind!r}")
