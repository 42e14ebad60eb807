"""The card log: every card a CDS call returns is written, even when calls outpace one batch."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import pytest

from ipexrx.service import cardlog
from ipexrx.service.cardlog import CardLog
from ipexrx.storage import Database


@dataclass(frozen=True)
class _Template:
    alert_id: str
    rule: str


def _issued(call: int, n: int) -> list[tuple[dict[str, str], _Template]]:
    return [({"uuid": f"card-{call}-{i}", "indicator": "warning"}, _Template(f"alert-{i}", "interaction"))
            for i in range(n)]


def _count(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM cds_card").scalar_one())


def test_one_tick_writes_everything_queued_not_just_one_batch(db_url: str) -> None:
    db = Database(db_url)
    log = CardLog(db)
    calls = 3 * cardlog.BATCH  # 3 cards each: nine batches' worth
    for c in range(calls):
        log.record_call("ipexrx-patient-view", f"hook-{c}", _issued(c, 3), "https://ehr.example.org", None)
    log._tick()  # what the writer thread does every INTERVAL_SECONDS
    assert _count(db) == 3 * calls and log.dropped == 0
    rows = db.cards_by_uuid(["card-7-2"])
    assert rows["card-7-2"].rule == "interaction" and rows["card-7-2"].alert_id == "alert-2"
    db.dispose()


def test_the_writer_thread_writes_queued_cards_within_moments(db_url: str) -> None:
    db = Database(db_url)
    log = CardLog(db)
    log.start()
    log.record_call("ipexrx-order-sign", "hook-x", _issued(0, 2), None, "tenant-a")
    deadline = time.monotonic() + 10
    while _count(db) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    log.close()
    assert _count(db) == 2
    db.dispose()


def test_calls_beyond_the_queue_limit_are_counted_as_dropped_not_kept(
        db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(cardlog, "MAX_QUEUED", 2)
    db = Database(db_url)
    log = CardLog(db)
    log._ensure_thread = lambda: None  # type: ignore[method-assign]  # no writer: the queue only fills
    for c in range(4):
        log.record_call("ipexrx-patient-view", f"hook-{c}", _issued(c, 2), None, None)
    assert log.dropped == 4  # two calls of two cards did not fit
    assert caplog.text.count("card log queue full") == 1  # said once, not per dropped call
    log.flush()
    assert _count(db) == 4
    db.dispose()


def test_a_backlog_wakes_the_normal_priority_writer_which_brings_it_back_down(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the low-priority writer gets no CPU (here: it never ticks), the urgent writer writes until the
    backlog is small; below the mark it stays asleep."""
    monkeypatch.setattr(cardlog, "INTERVAL_SECONDS", 3600.0)  # the low-priority writer never ticks
    monkeypatch.setattr(cardlog, "URGENT_QUEUED", 20)
    monkeypatch.setattr(cardlog, "CALM_QUEUED", 5)
    db = Database(db_url)
    log = CardLog(db)
    log.start()
    try:
        for c in range(20):  # at the mark, not beyond: nothing is written
            log.record_call("ipexrx-patient-view", f"hook-{c}", _issued(c, 2), None, None)
        time.sleep(0.3)
        assert _count(db) == 0
        for c in range(20, 60):
            log.record_call("ipexrx-patient-view", f"hook-{c}", _issued(c, 2), None, None)
        deadline = time.monotonic() + 10
        while log._q.qsize() > cardlog.CALM_QUEUED and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log._q.qsize() <= cardlog.CALM_QUEUED and _count(db) >= 2 * (60 - cardlog.CALM_QUEUED)
        assert log.dropped == 0
    finally:
        log.close()
    assert _count(db) == 2 * 60  # closing writes the rest
    db.dispose()


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="per-thread niceness is a Linux feature")
def test_the_writer_runs_below_the_servers_priority_and_the_urgent_writer_at_it(db_url: str) -> None:
    db = Database(db_url)
    log = CardLog(db)
    log.start()
    try:
        assert log._thread is not None and log._urgent_thread is not None
        server = os.getpriority(os.PRIO_PROCESS, 0)
        deadline = time.monotonic() + 5
        nice = None
        while time.monotonic() < deadline:  # the writer lowers its own priority as it starts
            nice = os.getpriority(os.PRIO_PROCESS, log._thread.native_id)  # type: ignore[arg-type]
            if nice > server:
                break
            time.sleep(0.01)
        assert nice is not None and nice > server
        assert os.getpriority(os.PRIO_PROCESS, log._urgent_thread.native_id) == server  # type: ignore[arg-type]
    finally:
        log.close()
        db.dispose()
