"""Storage: migrations create and re-apply cleanly; feedback and token ids persist across instances."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from ipexrx.storage import Database, default_database_url


def test_migrations_create_the_tables_and_are_idempotent(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    db.migrate()
    db.migrate()
    names = set(inspect(db.engine).get_table_names())
    assert {"cds_feedback", "seen_token", "alembic_version"} <= names


def test_feedback_and_seen_tokens_survive_a_new_database_object(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    db = Database(url)
    db.migrate()
    when = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)
    db.add_feedback([{"service_id": "s", "card_uuid": "c", "outcome": "accepted", "accepted_suggestions": ["x"],
                      "outcome_timestamp": when}])
    assert db.remember_token("iss", "jti-1", 2_000_000_000, 1_700_000_000)
    db.dispose()
    again = Database(url)
    (row,) = again.query_feedback(outcome="accepted")
    assert row.card_uuid == "c" and row.accepted_suggestions == ["x"]
    assert not again.remember_token("iss", "jti-1", 2_000_000_000, 1_700_000_000)  # replay across restarts
    assert again.remember_token("other-iss", "jti-1", 2_000_000_000, 1_700_000_000)  # per issuer


def test_an_expired_token_id_may_be_reused(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    db.migrate()
    assert db.remember_token("iss", "j", expires_at=100, now=50)
    assert db.remember_token("iss", "j", expires_at=500, now=200)  # the first one expired at 100


def test_database_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IPEXRX_DATABASE_URL", "sqlite:///" + str(tmp_path / "env.sqlite3"))
    assert default_database_url().endswith("env.sqlite3")
    monkeypatch.delenv("IPEXRX_DATABASE_URL")
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_database_url() == f"sqlite:///{tmp_path / 'ipexrx' / 'ipexrx.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated service database on SQLite, and on a fresh PostgreSQL database when
    ``$IPEXRX_TEST_POSTGRES_URL`` names a server (``.ci/run`` starts one)."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'any.sqlite3'}")
        db.migrate()
        yield db
        db.dispose()
        return
    with request.getfixturevalue("fresh_pg_database")() as url:
        db = Database(url)
        try:
            db.migrate()
            yield db
        finally:
            db.dispose()


def test_issued_cards_are_recorded_once_per_uuid(any_db: Database) -> None:
    db = any_db
    now = dt.datetime(2026, 11, 25, 10, 30, 5, 123456, tzinfo=dt.UTC)
    row = {"uuid": "u1", "service_id": "s", "hook_instance": "h", "alert_id": "a", "rule": "r", "indicator": "info",
           "issued_at": now}
    db.add_cards([row, row])
    db.add_cards([row, {**row, "uuid": "u2", "rule": "r2", "tenant": "t"}])  # a repeated hook call
    cards = db.cards_by_uuid(["u1", "u2", "u3"])
    assert sorted(cards) == ["u1", "u2"] and cards["u2"].rule == "r2" and cards["u2"].tenant == "t"
    issued = cards["u1"].issued_at
    assert (issued if issued.tzinfo else issued.replace(tzinfo=dt.UTC)) == now  # read back as written
    assert cards["u1"].issuer is None


def test_many_cards_go_in_several_statements_and_odd_text_is_stored_verbatim(any_db: Database) -> None:
    from ipexrx.storage import db as dbmod

    now = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    n = 2 * dbmod.CARD_ROWS_PER_STATEMENT + 7
    rows = [{"uuid": f"c{i}", "service_id": "s", "hook_instance": "h'); DROP TABLE cds_card; --",
             "alert_id": "a % %s ? :x", "rule": "r", "indicator": "warning", "issued_at": now} for i in range(n)]
    any_db.add_cards(rows)
    cards = any_db.cards_by_uuid([f"c{i}" for i in range(n)])
    assert len(cards) == n
    assert cards["c3"].hook_instance == "h'); DROP TABLE cds_card; --" and cards["c3"].alert_id == "a % %s ? :x"
    with pytest.raises(ValueError, match="no column"):
        any_db.add_cards([{**rows[0], "uuid": "x", "patient_name": "never stored"}])


def test_a_batch_of_several_statements_is_one_transaction_with_the_pause_between_statements(
        any_db: Database) -> None:
    """The card log pauses between the statements of a batch (``between``), never before the first or after
    the last; the batch still commits as one: while the pause runs, another connection sees none of it."""
    from ipexrx.storage import db as dbmod

    now = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    n = 2 * dbmod.CARD_ROWS_PER_STATEMENT + 7  # three statements
    rows = [{"uuid": f"t{i}", "service_id": "s", "hook_instance": "h", "alert_id": "a", "rule": "r",
             "indicator": "info", "issued_at": now} for i in range(n)]
    seen: list[int] = []

    def between() -> None:
        with any_db.engine.connect() as other:
            seen.append(int(other.exec_driver_sql("SELECT count(*) FROM cds_card").scalar_one()))

    any_db.add_cards(rows, between=between)
    assert seen == [0, 0]  # two pauses for three statements; nothing visible before the commit
    assert len(any_db.cards_by_uuid([f"t{i}" for i in range(n)])) == n


def test_sqlite_connections_get_the_larger_page_cache(tmp_path: Path) -> None:
    from ipexrx.storage import db as dbmod

    db = Database(f"sqlite:///{tmp_path / 'cache.sqlite3'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar_one() == -dbmod.SQLITE_CACHE_KIB
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    db.dispose()


@pytest.mark.parametrize("kind", ["file", "database"])
def test_replay_stores_accept_a_token_id_once_per_issuer(tmp_path: Path, kind: str) -> None:
    from ipexrx.storage.replay import make_replay_store

    db = Database(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    db.migrate()
    a = make_replay_store(db, kind)
    b = make_replay_store(db, kind)  # another worker process sees the same store
    assert a.remember("iss", "j1", 2_000_000_000, 1_700_000_000)
    assert not b.remember("iss", "j1", 2_000_000_000, 1_700_000_000)
    assert b.remember("iss2", "j1", 2_000_000_000, 1_700_000_000)


RACE = """
import sys
from ipexrx.storage.replay import FileReplayStore
store = FileReplayStore(sys.argv[1])
print(sum(store.remember("iss", f"jti-{i}", 2_000_000_000, 1_700_000_000) for i in range(300)))
"""


def test_file_replay_store_is_atomic_across_processes(tmp_path: Path) -> None:
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path / "seen")], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    wins = sum(int(p.communicate(timeout=60)[0]) for p in procs)
    assert wins == 300  # each token id accepted exactly once over all processes


def test_file_replay_store_purges_expired_buckets(tmp_path: Path) -> None:
    from ipexrx.storage.replay import BUCKET_SECONDS, FileReplayStore

    store = FileReplayStore(tmp_path / "seen")
    assert store.remember("iss", "old", expires_at=1000, now=900)
    assert (tmp_path / "seen" / str(1000 // BUCKET_SECONDS)).is_dir()
    assert store.remember("iss", "new", expires_at=10_000, now=5000)  # purge runs: bucket of 1000 expired
    assert not (tmp_path / "seen" / str(1000 // BUCKET_SECONDS)).exists()
    assert not store.remember("iss", "new", expires_at=10_000, now=5001)


def test_default_replay_dir_is_private_and_per_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ipexrx.storage.replay import default_replay_dir

    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    a = default_replay_dir(Database(f"sqlite:///{tmp_path / 'a.sqlite3'}"))
    b = default_replay_dir(Database(f"sqlite:///{tmp_path / 'b.sqlite3'}"))
    assert a.parent == runtime and b.parent == runtime and a != b
    assert a.stat().st_mode & 0o777 == 0o700
    # a directory someone else could write to is never used: fall back next to the database
    c_db = Database(f"sqlite:///{tmp_path / 'sub' / 'c.sqlite3'}")
    c = default_replay_dir(c_db)
    c.chmod(0o777)
    monkeypatch.setattr("ipexrx.storage.replay.os.path.isdir", lambda p: p == str(runtime))
    assert default_replay_dir(c_db) == tmp_path / "sub" / "ipexrx-seen-jti"
