"""Sign-in throttling: exponential back-off per (account, source address) and per source address, and a
bound on how many passwords are hashed at once.

Why not lock the account after N failures (migration 0130 did): anyone who knows a username could then
keep its owner out for good. Here failures count against the pair (username, address) and against
the address; the owner signing in from another address is not slowed down at all, and even from the
attacker's address is only delayed (at most MAX_DELAY per try), never locked out.

* The first ``ACCOUNT_FREE`` failures of a (username, address) pair cost nothing but the hash check;
  each further failure doubles a waiting time (1 s, 2 s, 4 s, ... capped at ``MAX_DELAY``) during
  which that pair gets 429 with ``Retry-After`` and the password is not even checked. A success
  clears the pair. A pair is forgotten ``ACCOUNT_FORGET`` after its last failure.
* An address gets ``SOURCE_FREE`` failures over all usernames (password spraying) before the same
  back-off applies to everything it sends; forgotten ``SOURCE_FORGET`` after its last failure.
* Concurrent attempts count before they finish (in-flight reservations in this process), so 150
  parallel requests cannot all slip in before the first failure is written.
* At most ``HASH_SLOTS`` Argon2 verifications run at once per process (each takes ~64 MiB and tens
  to hundreds of milliseconds); an attempt that waits more than ``HASH_WAIT`` seconds for a slot
  gets 429 as well. Hashing never happens inside a database transaction.

Keys are SHA-256 digests: the table holds neither usernames nor addresses. The key does not depend
on whether the username exists, so the throttle's answers do not reveal which accounts exist.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from .errors import RateLimited
from .models import LoginThrottle

ACCOUNT_FREE = 5
SOURCE_FREE = 30
BASE_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 15 * 60
ACCOUNT_FORGET = dt.timedelta(hours=24)
SOURCE_FORGET = dt.timedelta(hours=1)
HASH_SLOTS = max(1, min(4, os.cpu_count() or 1))
HASH_WAIT_SECONDS = 5.0
LOCAL_SOURCE = "local"  # library and CLI callers: no network address

TOO_MANY = ("too many failed sign-ins for this username from this address, or from this address: "
            "retry after {s} s (failures slow down sign-ins from where they come from, they never lock "
            "an account)")
BUSY = "too many sign-ins at once: retry after {s} s"


@dataclass(frozen=True)
class Keys:
    account: str  # (username, source)
    source: str

    @classmethod
    def of(cls, username: str, source: str | None) -> Keys:
        src = source or LOCAL_SOURCE
        return cls(hashlib.sha256(f"acct\0{username.lower()}\0{src}".encode()).hexdigest(),
                   hashlib.sha256(f"src\0{src}".encode()).hexdigest())

    def pairs(self) -> tuple[tuple[str, int, dt.timedelta], ...]:
        return ((self.account, ACCOUNT_FREE, ACCOUNT_FORGET), (self.source, SOURCE_FREE, SOURCE_FORGET))


def delay_after(failures: int, free: int) -> float:
    """Seconds to wait after ``failures`` failures in a row when ``free`` are allowed without delay."""
    if failures < free:
        return 0.0
    return float(min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** min(failures - free, 30)))


def _utc(v: dt.datetime) -> dt.datetime:
    return v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v


@dataclass(frozen=True)
class State:
    failures: dict[str, int]  # key -> failures still counted
    blocked_until: dict[str, dt.datetime]


def load(s: Session, keys: Keys, now: dt.datetime) -> State:
    failures: dict[str, int] = {}
    blocked: dict[str, dt.datetime] = {}
    forget = {k: f for k, _, f in keys.pairs()}
    for row in s.scalars(select(LoginThrottle).where(LoginThrottle.key.in_([keys.account, keys.source]))):
        if now - _utc(row.last_failure_at) > forget[row.key]:
            continue
        failures[row.key] = row.failures
        if row.blocked_until is not None and _utc(row.blocked_until) > now:
            blocked[row.key] = _utc(row.blocked_until)
    return State(failures, blocked)


_in_flight: Counter[str] = Counter()
_in_flight_lock = threading.Lock()
_hash_slots = threading.BoundedSemaphore(HASH_SLOTS)


@contextmanager
def attempt(keys: Keys, state: State, now: dt.datetime) -> Iterator[None]:
    """Admit one sign-in attempt (or raise :class:`RateLimited`), hold an in-flight reservation and a
    hashing slot for its duration."""
    wait = [math.ceil((until - now).total_seconds()) for until in state.blocked_until.values()]
    if wait:
        raise RateLimited(TOO_MANY.format(s=max(wait)), max(1, max(wait)))
    with _in_flight_lock:
        for key, free, _ in keys.pairs():
            pending = _in_flight[key]
            if pending and state.failures.get(key, 0) + pending >= free:
                # the attempts under way may push this key into back-off: wait for their outcome
                raise RateLimited(TOO_MANY.format(s=1), 1)
        for key, _, _ in keys.pairs():
            _in_flight[key] += 1
    try:
        if not _hash_slots.acquire(timeout=HASH_WAIT_SECONDS):
            raise RateLimited(BUSY.format(s=2), 2)
        try:
            yield
        finally:
            _hash_slots.release()
    finally:
        with _in_flight_lock:
            for key, _, _ in keys.pairs():
                _in_flight[key] -= 1
                if _in_flight[key] <= 0:
                    del _in_flight[key]


def record_failure(s: Session, keys: Keys, now: dt.datetime) -> dict[str, float]:
    """Count one failure against both keys (inside the caller's short write transaction). Returns the
    back-off started for each key that is now waiting ({"account": seconds, "source": seconds})."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect_insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    started: dict[str, float] = {}
    for (key, free, forget), label in zip(keys.pairs(), ("account", "source"), strict=True):
        # insert-if-absent, then lock the row: concurrent workers (PostgreSQL) count one after another
        s.execute(dialect_insert(LoginThrottle).values(key=key, failures=0, last_failure_at=now)
                  .on_conflict_do_nothing())
        row = s.execute(select(LoginThrottle.failures, LoginThrottle.last_failure_at)
                        .where(LoginThrottle.key == key).with_for_update()).one()
        failures = 1 if now - _utc(row.last_failure_at) > forget else row.failures + 1
        wait = delay_after(failures, free)
        until = now + dt.timedelta(seconds=wait) if wait else None
        s.execute(update(LoginThrottle).where(LoginThrottle.key == key)
                  .values(failures=failures, last_failure_at=now, blocked_until=until))
        if wait:
            started[label] = wait
    return started


def record_success(s: Session, keys: Keys) -> None:
    """A right password clears its (username, address) pair; the address's count stays."""
    s.execute(delete(LoginThrottle).where(LoginThrottle.key == keys.account))


PURGE_EVERY = dt.timedelta(minutes=10)
_last_purge: list[dt.datetime] = []


def purge(s: Session, now: dt.datetime) -> None:
    """Drop keys nobody has failed with for longer than both forget periods (at most every
    PURGE_EVERY per process, inside the caller's write transaction)."""
    with _in_flight_lock:
        if _last_purge and now - _last_purge[0] < PURGE_EVERY:
            return
        _last_purge[:] = [now]
    s.execute(delete(LoginThrottle).where(LoginThrottle.last_failure_at < now - max(ACCOUNT_FORGET, SOURCE_FORGET)))
