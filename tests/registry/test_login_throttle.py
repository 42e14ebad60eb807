"""Sign-in throttling: failures slow down the (username, address) pair and the address they come from,
with a back-off that doubles; nobody can lock a real user out; the answers do not tell which
usernames exist; the audit chain records every checked attempt. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from ipexrx.registry import NotAuthenticated, RateLimited, audit, throttle
from ipexrx.registry.models import AuditEntry, LoginThrottle, User

from .conftest import PASSWORD, World

USER = "clinician.user"
ATTACKER = "203.0.113.7"
OWNER = "198.51.100.20"


def _fail(world: World, n: int, username: str = USER, source: str = ATTACKER) -> list[str]:
    messages = []
    for _ in range(n):
        with pytest.raises(NotAuthenticated) as exc:
            world.reg.authenticate(username, "not the password at all", source)
        messages.append(str(exc.value))
    return messages


def _actions(world: World) -> list[str]:
    with world.reg.tx() as s:
        return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)).all())


def _expire_back_off(world: World) -> None:
    with world.reg.tx() as s:  # as if the waiting time had passed
        s.execute(update(LoginThrottle).values(blocked_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))


def test_after_the_free_failures_the_pair_waits_and_the_right_password_is_not_checked(world: World) -> None:
    _fail(world, throttle.ACCOUNT_FREE)
    with pytest.raises(RateLimited) as exc:
        world.reg.authenticate(USER, PASSWORD, ATTACKER)
    assert exc.value.http_status == 429 and exc.value.retry_after >= 1
    assert "retry after" in str(exc.value)
    assert _actions(world).count("login-throttled") == 1


def test_the_owner_signs_in_from_another_address_while_the_attacker_waits(world: World) -> None:
    _fail(world, throttle.ACCOUNT_FREE)
    assert world.reg.authenticate(USER, PASSWORD, OWNER).username == USER
    with world.reg.tx() as s:
        assert s.scalar(select(User.locked_until).where(User.username == USER)) is None  # no account lock


def test_the_wait_doubles_with_each_further_failure_and_is_capped() -> None:
    free = throttle.ACCOUNT_FREE
    waits = [throttle.delay_after(n, free) for n in range(free - 1, free + 4)]
    assert waits == [0.0, 1.0, 2.0, 4.0, 8.0]
    assert throttle.delay_after(free + 60, free) == throttle.MAX_DELAY_SECONDS


def test_after_the_wait_one_more_try_is_allowed_and_a_success_clears_the_pair(world: World) -> None:
    _fail(world, throttle.ACCOUNT_FREE)
    _expire_back_off(world)
    assert world.reg.authenticate(USER, PASSWORD, ATTACKER).username == USER
    _fail(world, throttle.ACCOUNT_FREE - 1)  # the count started again from zero
    assert world.reg.authenticate(USER, PASSWORD, ATTACKER).username == USER


def test_an_address_spraying_many_usernames_is_slowed_down(world: World) -> None:
    for i in range(throttle.SOURCE_FREE):
        _fail(world, 1, f"sprayed.name{i}")
    with pytest.raises(RateLimited):
        world.reg.authenticate("clin.b", PASSWORD, ATTACKER)
    assert world.reg.authenticate("clin.b", PASSWORD, OWNER).username == "clin.b"


def test_the_answer_never_tells_which_usernames_exist(world: World) -> None:
    unknown = _fail(world, 1, "no.such.user")
    wrong = _fail(world, 1)
    too_long = _fail(world, 1, "x" * 500)  # longer than any username can be: same answer, no 500
    assert len({*unknown, *wrong, *too_long}) == 1
    for name in ("no.such.user", USER):
        _fail(world, throttle.ACCOUNT_FREE - 1, name, source="192.0.2.1")
        with pytest.raises(RateLimited) as exc:  # an unknown name is throttled exactly like a real one
            _fail(world, 2, name, source="192.0.2.1")
        assert exc.value.retry_after == 1


def test_every_checked_attempt_is_audited_with_its_address_and_the_chain_verifies(world: World) -> None:
    _fail(world, 2)
    world.reg.authenticate(USER, PASSWORD, OWNER)
    with world.reg.tx() as s:
        rows = s.execute(select(AuditEntry.action, AuditEntry.after).order_by(AuditEntry.seq.desc()).limit(3)).all()
        assert [r[0] for r in rows] == ["login", "login-failed", "login-failed"]
        assert OWNER in rows[0][1] and ATTACKER in rows[1][1]
        assert audit.verify(s).ok


def test_the_throttle_table_holds_neither_usernames_nor_addresses(world: World) -> None:
    _fail(world, 2)
    with world.reg.tx() as s:
        keys = list(s.scalars(select(LoginThrottle.key)))
    assert len(keys) == 2 and all(len(k) == 64 and USER not in k and ATTACKER not in k for k in keys)


def test_the_web_sign_in_page_says_when_to_retry(world: World) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from ipexrx.service.registry_mount import mount_registry

    app = FastAPI()
    mount_registry(app, world.reg)
    client = TestClient(app)
    codes = [client.post("/registry/login", data={"username": USER, "password": "not the password at all"},
                         follow_redirects=False).status_code for _ in range(throttle.ACCOUNT_FREE + 1)]
    assert codes == [401] * throttle.ACCOUNT_FREE + [429]
    r = client.post("/registry/login", data={"username": USER, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "retry after" in r.text


def test_old_failures_are_purged(world: World) -> None:
    _fail(world, 1)
    with world.reg.tx() as s:  # as if the last failure were two days old
        s.execute(update(LoginThrottle).values(last_failure_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2)))
        throttle._last_purge.clear()
        throttle.purge(s, dt.datetime.now(dt.UTC))
        assert s.scalar(select(LoginThrottle.key)) is None


def test_a_database_busy_past_its_timeout_is_a_429_not_a_500(tmp_path: object) -> None:
    """Another process holds SQLite's write lock longer than the lock timeout: the sign-in (whose
    outcome cannot be recorded) and the token issue answer 'retry', and no token is handed out."""
    import sqlite3

    from sqlalchemy import event

    from ipexrx.registry import SYSTEM, Registry

    path = f"{tmp_path}/busy.sqlite3"
    reg = Registry(f"sqlite:///{path}")
    reg.create_user(SYSTEM, {"username": "busy.user", "password": PASSWORD, "role": "analyst"})
    actor = reg.authenticate("busy.user", PASSWORD)
    event.listen(reg.engine, "connect", lambda c, _r: c.execute("PRAGMA busy_timeout=100"))
    reg.engine.dispose()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(RateLimited) as exc:
            reg.authenticate("busy.user", PASSWORD, ATTACKER)
        assert exc.value.retry_after == 1
        with pytest.raises(RateLimited):
            reg.issue_token(actor, "script")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert reg.authenticate("busy.user", PASSWORD, ATTACKER).username == "busy.user"
    reg.close()
