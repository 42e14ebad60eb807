"""The drug-safety checks of a screen run in a forked worker beside the scoring, and give exactly what the
same checks give run in the screening process."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import AS_OF, POPULATION


def test_the_safety_checks_in_a_forked_worker_equal_those_run_in_process(monkeypatch: pytest.MonkeyPatch,
                                                                        result: dict[str, Any]) -> None:
    from ipexrx.screen import safety
    from ipexrx.screen.run import screen

    assert result["stats"]["safety_beside_scoring"] is True  # the shipped population: the worker ran
    monkeypatch.setattr(safety.SafetyChecks, "MAX_FORKED", 0)  # too many to hold: checked here, in chunks
    here = screen(POPULATION, as_of=AS_OF)
    assert here["stats"]["safety_beside_scoring"] is False
    assert here["safety"] == result["safety"] and result["safety"]
    assert here["stats"]["safety_seconds"] > 0 and result["stats"]["safety_seconds"] > 0


def test_with_other_python_threads_running_the_checks_stay_in_this_process(result: dict[str, Any]) -> None:
    """A web server or a progress bar runs threads; a fork could copy a lock one of them holds."""
    import threading

    from ipexrx.screen.run import screen

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        here = screen(POPULATION, as_of=AS_OF)
    finally:
        stop.set()
        other.join()
    assert here["stats"]["safety_beside_scoring"] is False
    assert here["safety"] == result["safety"]
