"""JWT replay protection shared by every worker process: has this (issuer, jti) been seen?

Two stores, same contract (``remember`` is an atomic "add if absent", False on a replay):

* :class:`FileReplayStore` -- one empty file per token id, created with ``O_CREAT | O_EXCL`` (atomic
  across processes on one host), in buckets of ten minutes of expiry that are deleted whole once
  expired; by default on a memory file system (see :func:`default_replay_dir`). About 15
  microseconds and no lock waits, so it is the default when the database is SQLite (one host);
* :class:`DatabaseReplayStore` -- the ``seen_token`` table (a primary-key insert); use it when
  several hosts serve the same clients (``IPEXRX_REPLAY_STORE=database``, shared database).

Default: the database store whenever the database is a server (PostgreSQL: the database the
registry and every host share), the file store only with SQLite, which one host alone can use, so
a per-host store covers every process that can reach that database. Choosing the file store with a
server database is allowed (one host, lowest latency) but logged as a warning at start-up: a
token replayed to another host would be accepted there. The file store's default directory is in
memory, so seen ids do not survive a reboot of the host (tokens live at most
``max_token_lifetime``); set ``IPEXRX_REPLAY_DIR`` on a disk, or use the database store, if that
matters.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Protocol

from .db import Database

BUCKET_SECONDS = 600
log = logging.getLogger("ipexrx.storage.replay")


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
        self._dir = str(self.dir)
        self._last_purge = 0
        self._lock = threading.Lock()

    def remember(self, issuer: str, jti: str, expires_at: int, now: int) -> bool:
        self._maybe_purge(now)
        bucket = os.path.join(self._dir, str(expires_at // BUCKET_SECONDS))  # str paths: on every CDS call
        name = hashlib.sha256(f"{issuer}\0{jti}".encode()).hexdigest()
        for _ in range(2):
            try:
                fd = os.open(os.path.join(bucket, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                return False
            except FileNotFoundError:  # first token of this bucket (or the bucket was just purged)
                os.makedirs(bucket, mode=0o700, exist_ok=True)
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


def _private_dir(path: Path) -> bool:
    """Create ``path`` (0700) if needed; True only if it is a directory owned by us that nobody else can
    write to (a shared tmpfs must not let another user pre-create it and delete our token ids)."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = path.lstat()
    except OSError:
        return False
    import stat

    getuid = getattr(os, "getuid", None)
    return stat.S_ISDIR(st.st_mode) and (getuid is None or st.st_uid == getuid()) and not st.st_mode & 0o077


def default_replay_dir(db: Database) -> Path:
    """A memory file system (``$XDG_RUNTIME_DIR`` or ``/dev/shm``) when there is one: creating a file there
    takes microseconds whatever the disks are doing, while on a busy disk it can take milliseconds. One
    directory per database. Token ids then do not survive a reboot of the machine (tokens live minutes);
    choose ``IPEXRX_REPLAY_DIR`` on a disk, or the database store, to keep them across reboots."""
    url_db = db.engine.url.database if db.engine.dialect.name == "sqlite" else None
    if url_db and url_db != ":memory:":
        db_path = Path(str(url_db)).expanduser().resolve()
        tag = hashlib.sha256(str(db_path).encode()).hexdigest()[:16]
        uid = getattr(os, "getuid", lambda: 0)()
        for runtime in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):
            if runtime and os.path.isdir(runtime):
                candidate = Path(runtime) / f"ipexrx-seen-jti-{uid}-{tag}"
                if _private_dir(candidate):
                    return candidate
        return db_path.parent / "ipexrx-seen-jti"
    from .db import user_data_dir

    return user_data_dir() / "seen-jti"


def make_replay_store(db: Database, kind: str | None = None, directory: str | Path | None = None) -> ReplayStore:
    """``kind``: 'file', 'database', or None (file for SQLite, database otherwise)."""
    shared = db.engine.dialect.name != "sqlite"
    kind = kind or ("database" if shared else "file")
    if kind == "database":
        return DatabaseReplayStore(db)
    if kind == "file":
        if shared:
            log.warning("JWT replay protection is per host (IPEXRX_REPLAY_STORE=file) although the database is "
                        "shared: a token replayed to another host would be accepted there. Use "
                        "IPEXRX_REPLAY_STORE=database when several hosts serve the same CDS clients.")
        return FileReplayStore(directory or default_replay_dir(db))
    raise ValueError(f"replay store must be 'file' or 'database', got {kind!r}")
