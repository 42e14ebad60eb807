"""Registry analytics: the first view computes the report, later views come from the cache.

    python benchmarks/analytics_cache_bench.py                  # 2,000 synthetic patients, 10 centres
    python benchmarks/analytics_cache_bench.py --patients 20000 --centres 20

Loads a synthetic cohort into a fresh SQLite registry, then times the pooled analytics report (what
the analytics page and its downloads read) three times, a write (one course stopped), and two more
views: the write must make the next view recompute, the one after is cached again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

from ipexrx.registry import SYSTEM, Registry, ops

PASSWORD = "correct horse battery staple 1"
AS_OF = dt.date(2026, 6, 30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--centres", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        reg = Registry(f"sqlite:///{Path(d) / 'registry.sqlite3'}")
        try:
            t = time.perf_counter()
            ops.load_demo(reg, SYSTEM, n_patients=args.patients, n_centres=args.centres)
            print(f"cohort: {args.patients} patients in {args.centres} centres loaded in "
                  f"{time.perf_counter() - t:.1f} s")
            reg.create_user(SYSTEM, {"username": "bench.analyst", "password": PASSWORD, "role": "analyst"})
            analyst = reg.authenticate("bench.analyst", PASSWORD)
            def view(label: str) -> None:
                t0 = time.perf_counter()
                r = ops.analytics_report(reg, analyst, AS_OF)
                print(f"{label:<28} {time.perf_counter() - t0:8.3f} s   ({r.patients} patients)")

            for i in range(3):
                view(f"view {i + 1}")
            stopped = None
            for row in reg.list_patients(SYSTEM):  # a write: the first open course found is stopped
                rec = reg.get_patient(SYSTEM, row["pseudonym"])
                open_courses = [c for c in rec["courses"] if not c.get("stop_date")]
                if open_courses:
                    reg.stop_course(SYSTEM, row["pseudonym"], open_courses[0]["id"], AS_OF, "toxicity")
                    stopped = row["pseudonym"]
                    break
            print(f"write: a course of {stopped} stopped")
            view("view after a write")
            view("view again")
        finally:
            reg.close()


if __name__ == "__main__":
    main()
