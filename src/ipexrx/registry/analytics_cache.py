"""A bounded cache of analytics reports, keyed by the version of the registry's data.

Building the comparative report reads every patient in scope with their follow-up and fits the
Kaplan-Meier curves (about 20 s at 100,000 patients), while the data change far less often than the
page is viewed. :func:`ipexrx.registry.analytics.build_report` therefore keeps the reports it built,
keyed by

* the **data version** (:func:`data_version`): the sequence number and hash of the newest audit entry
  that wrote data rows. Every write of the application is audited in the same transaction as the
  change, and an entry that writes rows seals them (``row_hashes``), so any committed write (by any
  process, on SQLite or PostgreSQL) moves the version and the next view recomputes. Reads are audited
  too but write no rows, so viewing the report does not invalidate it. The hash makes the version
  unique to one history of the chain (a registry emptied and restored from a backup, or another
  database, never matches an older version). The number of patients and their highest id are part
  of the version too, so rows added with SQL outside the application are also seen; rows *changed*
  with SQL are not (``ipexrx registry audit verify`` reports those), and :data:`MAX_AGE_SECONDS`
  bounds how long such a change can go unseen;
* the **database** (its URL, and the engine object, so two in-memory databases do not share);
* the **scope and filters**: the centre (None: pooled), the scope line, the report day and the
  diagnosis period. A centre's report and the pooled report, or two centres', are different keys;
  what a role may see is decided before (``ops.analytics_report``), on the copy each caller gets.

At most :data:`MAX_REPORTS` reports are kept (least recently used first out). Callers get their own
shallow copy of the cached report: they may set its fields (an analyst's report drops the follow-up
list) without touching the cached one; the curves and tables inside are shared and read-only.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from .models import AuditEntry, Patient

if TYPE_CHECKING:
    from .analytics import Report

MAX_REPORTS = 16
MAX_AGE_SECONDS = 900.0
T = TypeVar("T")


def data_version(s: Session) -> tuple[Hashable, ...]:
    """What identifies the registry's data as ``s`` sees it now (read it before the data, in the same
    transaction: a write committed in between then only makes the cached report miss, never go stale)."""
    last = s.execute(select(AuditEntry.seq, AuditEntry.hash)
                     .where(or_(AuditEntry.row_hashes.is_not(None), AuditEntry.action == "restore"))
                     .order_by(AuditEntry.seq.desc()).limit(1)).first()
    patients, top = s.execute(select(func.count(Patient.id), func.max(Patient.id))).one()
    engine = s.get_bind().engine
    return (engine.url.render_as_string(hide_password=True), id(engine),
            tuple(last) if last is not None else None, int(patients), top)


class ReportCache:
    """Least-recently-used reports, at most ``size`` of them, each for at most ``max_age`` seconds."""

    def __init__(self, size: int = MAX_REPORTS, max_age: float = MAX_AGE_SECONDS) -> None:
        self.size, self.max_age = size, max_age
        self._items: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            found = self._items.get(key)
            if found is None or time.monotonic() - found[0] > self.max_age:
                self._items.pop(key, None)
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found[1]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)


REPORTS = ReportCache()


def cached_report(s: Session, key: tuple[Hashable, ...], compute: Callable[[], Report],
                  stamp: str) -> Report:
    """The cached report for ``key`` and the data ``s`` sees, else ``compute()`` (then kept); always the
    caller's own copy, dated ``stamp``."""
    full = (data_version(s), *key)
    report: Report | None = REPORTS.get(full)
    if report is None:
        report = compute()
        REPORTS.put(full, report)
    return dataclasses.replace(report, generated_at=stamp)
