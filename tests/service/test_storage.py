"""Storage: migrations create and re-apply cleanly; feedback and token ids persist across instances."""

from __future__ import annotations

import datetime as dt
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


def test_issued_cards_are_recorded_once_per_uuid(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'd.sqlite3'}")
    db.migrate()
    now = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    row = {"uuid": "u1", "service_id": "s", "hook_instance": "h", "alert_id": "a", "rule": "r", "indicator": "info",
           "issued_at": now}
    db.add_cards([row, row])
    db.add_cards([row, {**row, "uuid": "u2", "rule": "r2"}])  # a repeated hook call
    cards = db.cards_by_uuid(["u1", "u2", "u3"])
    assert sorted(cards) == ["u1", "u2"] and cards["u2"].rule == "r2"
