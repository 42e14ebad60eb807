"""The drug-safety checks of a screen run in a forked worker beside the scoring, and give exactly what the
same checks give run in the screening process."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import AS_OF, POPULATION


def _die(*_args: Any) -> Any:
    """The worker's job in a test: the process ends at once, as when it is killed."""
    import os

    os._exit(9)


def test_the_safety_checks_in_a_forked_worker_equal_those_run_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from ipexrx.screen import safety
    from ipexrx.screen.run import screen

    # the test process may run other tests' idle threads; the fork itself is what is checked here
    monkeypatch.setattr(safety.SafetyChecks, "may_fork", staticmethod(lambda: True))
    forked = screen(POPULATION, as_of=AS_OF)
    assert forked["stats"]["safety_beside_scoring"] is True
    monkeypatch.setattr(safety.SafetyChecks, "MAX_FORKED", 0)  # too many to hold: checked here, in chunks
    here = screen(POPULATION, as_of=AS_OF)
    assert here["stats"]["safety_beside_scoring"] is False
    assert here["safety"] == forked["safety"] and forked["safety"]
    assert here["stats"]["safety_seconds"] > 0 and forked["stats"]["safety_seconds"] > 0


def test_with_other_python_threads_running_the_checks_stay_in_this_process(result: dict[str, Any]) -> None:
    """A web server or a progress bar runs threads; a fork could copy a lock one of them holds."""
    import threading

    from ipexrx.screen.run import screen
    from ipexrx.screen.safety import SafetyChecks

    alone = threading.active_count() == 1
    if alone:  # a plain test run: nothing else runs, so the worker may be forked
        assert SafetyChecks.may_fork()
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert not SafetyChecks.may_fork()
        here = screen(POPULATION, as_of=AS_OF)
    finally:
        stop.set()
        other.join()
    assert here["stats"]["safety_beside_scoring"] is False
    assert here["safety"] == result["safety"]


def test_a_worker_that_dies_leaves_the_checks_to_this_process(monkeypatch: pytest.MonkeyPatch,
                                                              result: dict[str, Any]) -> None:
    """A worker killed (out of memory, a signal) must not lose the safety list: it is made here instead."""
    from ipexrx.screen import safety
    from ipexrx.screen.run import screen

    monkeypatch.setattr(safety.SafetyChecks, "may_fork", staticmethod(lambda: True))
    monkeypatch.setattr(safety, "_assess_in_fork", _die)
    here = screen(POPULATION, as_of=AS_OF)
    assert here["stats"]["safety_beside_scoring"] is False
    assert here["safety"] == result["safety"]
