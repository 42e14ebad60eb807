"""Where seen JWT ids are kept: in the shared database whenever the database is a server that several
hosts can share (so a token replayed to another host is refused), on the host only with SQLite; a
per-host store chosen with a shared database is warned about at start-up."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from ipexrx.storage import Database
from ipexrx.storage.replay import DatabaseReplayStore, FileReplayStore, make_replay_store


def test_sqlite_keeps_token_ids_on_the_host(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    assert isinstance(make_replay_store(db, None, tmp_path / "seen"), FileReplayStore)
    db.dispose()


def test_a_shared_database_keeps_token_ids_for_every_host_and_a_file_store_there_is_warned_about(
        fresh_pg_database: Any, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    with fresh_pg_database() as url:
        db = Database(url)
        db.migrate()
        store = make_replay_store(db, None)
        assert isinstance(store, DatabaseReplayStore)
        other_host = make_replay_store(Database(url), None)
        assert store.remember("https://ehr.example.org", "jti-1", 2_000_000_000, 1_000_000_000)
        assert not other_host.remember("https://ehr.example.org", "jti-1", 2_000_000_000, 1_000_000_000)
        with caplog.at_level(logging.WARNING, logger="ipexrx.storage.replay"):
            assert isinstance(make_replay_store(db, "file", tmp_path / "seen"), FileReplayStore)
        assert "per host" in caplog.text
        db.dispose()
