"""ipexrx.memo.remembered: a value made once per owning object, never handed to another object."""

from __future__ import annotations

from typing import Any

from ipexrx.memo import remembered


class Owner:
    pass


def test_a_value_is_made_once_for_the_same_owner() -> None:
    store: dict[Any, tuple[object, Any]] = {}
    owner, made = Owner(), []
    for _ in range(3):
        assert remembered(store, id(owner), owner, lambda: made.append(1) or "value") == "value"
    assert made == [1]


def test_an_entry_is_not_used_for_another_object_under_the_same_key() -> None:
    """An id may be reused once its object is gone: the entry must name its owner."""
    store: dict[Any, tuple[object, Any]] = {}
    first, second = Owner(), Owner()
    assert remembered(store, "same-key", first, lambda: "first's") == "first's"
    assert remembered(store, "same-key", second, lambda: "second's") == "second's"
    assert store["same-key"] == (second, "second's")


def test_the_store_is_cleared_beyond_its_limit() -> None:
    store: dict[Any, tuple[object, Any]] = {}
    owners = [Owner() for _ in range(5)]
    for o in owners:
        remembered(store, id(o), o, lambda: 0, limit=3)
    assert len(store) <= 4


def test_with_a_lock_a_value_asked_for_by_many_threads_at_once_is_made_once() -> None:
    import threading
    import time

    store: dict[Any, tuple[object, Any]] = {}
    owner, made = Owner(), []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def slow() -> str:
        made.append(1)
        time.sleep(0.05)  # long enough for every other thread to arrive while it is being made
        return "index"

    def ask(out: list[str]) -> None:
        start.wait()
        out.append(remembered(store, id(owner), owner, slow, lock=lock))

    got: list[str] = []
    threads = [threading.Thread(target=ask, args=(got,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["index"] * 8 and made == [1]


def test_limit_zero_keeps_only_the_latest_owner() -> None:
    store: dict[Any, tuple[object, Any]] = {}
    first, second = Owner(), Owner()
    remembered(store, id(first), first, lambda: 1, limit=0)
    remembered(store, id(second), second, lambda: 2, limit=0)
    assert list(store.values()) == [(second, 2)]
