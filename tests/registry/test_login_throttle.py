"""Sign-in throttling: a run of failed sign-ins locks the account for a while, without telling a
guesser which usernames exist; a success resets the count. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from ipexrx.registry import NotAuthenticated, core
from ipexrx.registry.models import AuditEntry, User

from .conftest import PASSWORD, World

USER = "clinician.user"


def _fail(world: World, n: int, username: str = USER) -> list[str]:
    messages = []
    for _ in range(n):
        with pytest.raises(NotAuthenticated) as exc:
            world.reg.authenticate(username, "not the password at all")
        messages.append(str(exc.value))
    return messages


def _actions(world: World) -> list[str]:
    with world.reg.tx() as s:
        return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)).all())


def test_five_failures_in_a_row_lock_the_account_even_against_the_right_password(world: World) -> None:
    _fail(world, core.MAX_FAILED_LOGINS)
    with pytest.raises(NotAuthenticated):
        world.reg.authenticate(USER, PASSWORD)
    actions = _actions(world)
    assert actions.count("account-locked") == 1 and actions[-1] == "login-refused-locked"


def test_the_lock_ends_after_its_time(world: World) -> None:
    _fail(world, core.MAX_FAILED_LOGINS)
    with world.reg.tx() as s:  # as if LOCKOUT_MINUTES had passed
        s.execute(update(User).where(User.username == USER)
                  .values(locked_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    assert world.reg.authenticate(USER, PASSWORD).username == USER


def test_a_success_resets_the_count_of_failures(world: World) -> None:
    _fail(world, core.MAX_FAILED_LOGINS - 1)
    world.reg.authenticate(USER, PASSWORD)
    _fail(world, core.MAX_FAILED_LOGINS - 1)
    assert world.reg.authenticate(USER, PASSWORD).username == USER  # never five in a row
    with world.reg.tx() as s:
        assert s.scalar(select(User.failed_logins).where(User.username == USER)) == 0


def test_the_answer_never_tells_which_usernames_exist_or_are_locked(world: World) -> None:
    unknown = _fail(world, 1, "no.such.user")
    wrong = _fail(world, core.MAX_FAILED_LOGINS)  # the last one locks the account
    locked = _fail(world, 1)
    assert len({*unknown, *wrong, *locked}) == 1
    assert "locked for 15 minutes" in unknown[0]  # the rule is stated to everyone, up front


def test_other_accounts_are_not_affected(world: World) -> None:
    _fail(world, core.MAX_FAILED_LOGINS)
    assert world.reg.authenticate("clin.b", PASSWORD).username == "clin.b"


def test_the_audit_chain_still_verifies_after_lock_outs(world: World) -> None:
    from ipexrx.registry import audit

    _fail(world, core.MAX_FAILED_LOGINS + 2)
    with world.reg.tx() as s:
        assert audit.verify(s).ok
