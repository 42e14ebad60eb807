"""Engine, sessions and migrations."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .models import CdsCard, CdsFeedback, SavedAssessment, SeenToken

CARD_ROWS_PER_STATEMENT = 500  # 9 columns: 4,500 parameters, under SQLite's 32,766 and PostgreSQL's 65,535

ENV_DATABASE_URL = "IPEXRX_DATABASE_URL"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def user_data_dir() -> Path:
    """Per-user data directory (XDG on Linux, Application Support on macOS, LOCALAPPDATA on Windows)."""
    if sys.platform == "win32":
        root = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Application Support"
    else:
        root = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return root / "ipexrx"


def default_database_url() -> str:
    """``$IPEXRX_DATABASE_URL`` or SQLite in the user data directory."""
    env = os.environ.get(ENV_DATABASE_URL)
    if env:
        return env
    return f"sqlite:///{user_data_dir() / 'ipexrx.sqlite3'}"


MIGRATION_LOCK_KEY = 0x69706578_72780001  # pg_advisory_xact_lock key: "ipexrx" + 1 (migrations/env.py)


@contextmanager
def migration_lock(url: str) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite database's ``<file>.migrate-lock`` while migrating, so that two
    processes starting at once (two workers, a CLI beside the service) do not both create the
    schema: the second waits, then finds it at the head. PostgreSQL takes an advisory lock inside the
    migration transaction instead (migrations/env.py); other URLs (in-memory SQLite) need none."""
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
    if path is None or path.startswith(":memory:") or not path:
        yield
        return
    lock_path = Path(path.split("?")[0]).expanduser()
    lock_path = lock_path.with_name(lock_path.name + ".migrate-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as fh:
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            import msvcrt

            fh.seek(0)
            while True:
                try:
                    msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


SQLITE_CACHE_KIB = 32 * 1024


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets several uvicorn workers read while one writes; busy_timeout makes a writer wait
    # for the lock instead of failing at once. The page cache (SQLite's default: 2 MB per connection, filled
    # only as pages are read) is raised to SQLITE_CACHE_KIB: the card log inserts card uuids, which are random,
    # so each batch touches index pages all over a table of hundreds of thousands of rows, and with the
    # default cache they were read back through the operating system on every batch (measured on the card
    # log's transactions of 1,000 rows, 4 cards a call: 84-85 us of CPU per logged call with the default
    # cache, 73-78 us with this; with transactions of 200 rows the cache alone did not help).
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cur.close()


class Database:
    """One engine plus the few operations the service needs."""

    def __init__(self, url: str | None = None):
        self.url = url or default_database_url()
        if self.url.startswith("sqlite:///") and not self.url.startswith("sqlite:///:memory:"):
            Path(self.url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = create_engine(self.url, future=True)
        except ModuleNotFoundError as exc:  # SQLAlchemy imports the URL's driver here
            if (exc.name or "").split(".")[0] != "psycopg":
                raise
            from ..extras import MissingExtraError

            raise MissingExtraError("psycopg", "postgres", "A PostgreSQL database (postgresql:// URL)") from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._purge_lock = threading.Lock()
        self._last_purge = 0

    # -- schema ---------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with migration_lock(self.url), self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s, s.begin():
            yield s

    def dispose(self) -> None:
        self.engine.dispose()

    # -- saved assessments ----------------------------------------------------------------
    def save_assessment(self, assessment: dict[str, Any], input_bytes: bytes, software_version: str) -> int:
        """Store an assessment (its JSON form, as ``Assessment.model_dump(mode="json")``); return its id.

        The storage layer takes plain JSON so that it stays below the assessment layer."""
        counts = {"critical": 0, "warning": 0, "info": 0}
        for alert in assessment.get("alerts", []):
            sev = alert.get("severity")
            if sev in counts:
                counts[sev] += 1
        row = SavedAssessment(
            saved_at=dt.datetime.now(dt.UTC), patient_id=(assessment.get("patient") or {}).get("id"),
            as_of=dt.date.fromisoformat(assessment["as_of"]), kb_version=assessment["kb_version"],
            software_version=software_version, input_sha256=hashlib.sha256(input_bytes).hexdigest(),
            assessment=assessment, **counts,
        )
        with self.session() as s:
            s.add(row)
            s.flush()
            return row.id

    def saved_assessments(self, patient_id: str | None = None, limit: int = 50) -> list[SavedAssessment]:
        """Newest first; optionally one patient's."""
        with self.session() as s:
            q = select(SavedAssessment).order_by(SavedAssessment.saved_at.desc(), SavedAssessment.id.desc())
            if patient_id is not None:
                q = q.where(SavedAssessment.patient_id == patient_id)
            return list(s.scalars(q.limit(limit)))

    def saved_assessment(self, assessment_id: int) -> SavedAssessment | None:
        with self.session() as s:
            return s.get(SavedAssessment, assessment_id)

    # -- CDS feedback ---------------------------------------------------------------------
    def add_feedback(self, rows: list[dict[str, Any]]) -> list[int]:
        """Store feedback items (dicts of CdsFeedback columns); return their ids."""
        now = dt.datetime.now(dt.UTC)
        with self.session() as s:
            objs = [CdsFeedback(received_at=now, **row) for row in rows]
            s.add_all(objs)
            s.flush()
            return [o.id for o in objs]

    def add_cards(self, rows: list[dict[str, Any]], between: Callable[[], None] | None = None) -> None:
        """Record issued cards (dicts of CdsCard columns); a uuid already recorded is left as it is
        (an EHR may repeat a hook call with the same hookInstance).

        SQLite and PostgreSQL get one multi-row ``INSERT ... ON CONFLICT (uuid) DO NOTHING`` per
        CARD_ROWS_PER_STATEMENT rows. Why not ``executemany``: the sqlite3 driver releases and
        re-takes the GIL around every row, and the card log runs on a thread beside the event
        loop, so each row cost a GIL hand-over with the CDS calls being answered (measured: a
        third of the p99 latency under load). Values still go through the columns' SQLAlchemy
        bind processors, so the stored text is what the ORM reads back. ``between`` is called between two
        statements of the one transaction (the card log pauses there, so that building the next statement's
        parameters does not hold Python's interpreter lock for the whole batch)."""
        unique = list({r["uuid"]: r for r in rows}.values())
        if not unique:
            return
        dialect = self.engine.dialect
        mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
        if dialect.name in ("sqlite", "postgresql") and mark is not None:
            self._insert_cards_multirow(unique, mark, between)
            return
        for row in unique:  # other databases: one by one, skipping uuids already there
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(CdsCard).values(**row))
            except IntegrityError:
                continue

    def _insert_cards_multirow(self, rows: list[dict[str, Any]], mark: str,
                               between: Callable[[], None] | None = None) -> None:
        dialect = self.engine.dialect
        columns = list(CdsCard.__table__.columns)
        unknown = set().union(*rows) - {c.name for c in columns}
        if unknown:
            raise ValueError(f"cds_card has no column(s) {sorted(unknown)}")
        procs = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
        head = f"INSERT INTO {CdsCard.__tablename__} ({', '.join(c.name for c in columns)}) VALUES "
        one = "(" + ", ".join([mark] * len(columns)) + ")"
        with self.engine.begin() as conn:
            for start in range(0, len(rows), CARD_ROWS_PER_STATEMENT):
                if start and between is not None:
                    between()
                chunk = rows[start:start + CARD_ROWS_PER_STATEMENT]
                params: list[Any] = []
                for row in chunk:
                    for col, proc in zip(columns, procs, strict=True):
                        value = row.get(col.name)
                        params.append(proc(value) if proc is not None and value is not None else value)
                sql = head + ", ".join([one] * len(chunk)) + " ON CONFLICT (uuid) DO NOTHING"
                conn.exec_driver_sql(sql, tuple(params))

    def cards_by_uuid(self, uuids: list[str]) -> dict[str, CdsCard]:
        if not uuids:
            return {}
        with self.session() as s:
            return {c.uuid: c for c in s.scalars(select(CdsCard).where(CdsCard.uuid.in_(uuids)))}

    def query_feedback(
        self,
        service_id: str | None = None,
        outcome: str | None = None,
        card_uuid: str | None = None,
        since: dt.datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[CdsFeedback]:
        stmt = select(CdsFeedback)
        if service_id:
            stmt = stmt.where(CdsFeedback.service_id == service_id)
        if outcome:
            stmt = stmt.where(CdsFeedback.outcome == outcome)
        if card_uuid:
            stmt = stmt.where(CdsFeedback.card_uuid == card_uuid)
        if since:
            stmt = stmt.where(CdsFeedback.outcome_timestamp >= since)
        stmt = stmt.order_by(CdsFeedback.outcome_timestamp.desc(), CdsFeedback.id.desc()).limit(limit).offset(offset)
        with self.session() as s:
            return list(s.scalars(stmt))

    # -- JWT replay protection ------------------------------------------------------------
    def remember_token(self, issuer: str, jti: str, expires_at: int, now: int) -> bool:
        """Record a token id; False when the same issuer already used it (a replay).

        The primary key makes this atomic across processes: two workers receiving the same
        token race on one INSERT and exactly one wins.
        """
        self._maybe_purge(now)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(SeenToken).values(issuer=issuer, jti=jti, expires_at=expires_at))
        except IntegrityError:
            with self.engine.begin() as conn:
                row = conn.execute(
                    select(SeenToken.expires_at).where(SeenToken.issuer == issuer, SeenToken.jti == jti)
                ).first()
                if row is not None and row[0] < now:  # an expired entry not purged yet: reuse the slot
                    conn.execute(delete(SeenToken).where(SeenToken.issuer == issuer, SeenToken.jti == jti))
                    conn.execute(insert(SeenToken).values(issuer=issuer, jti=jti, expires_at=expires_at))
                    return True
            return False
        return True

    def _maybe_purge(self, now: int) -> None:
        if now - self._last_purge < 60 or not self._purge_lock.acquire(blocking=False):
            return
        try:
            self._last_purge = now
            with self.engine.begin() as conn:
                conn.execute(delete(SeenToken).where(SeenToken.expires_at < now))
        finally:
            self._purge_lock.release()
