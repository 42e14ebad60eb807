"""Registry benchmark: write throughput and the time of the full analytics report on the synthetic
cohort (SYNTHETIC DATA).

    python benchmarks/registry_bench.py --db postgresql+psycopg://postgres@127.0.0.1:5433/ipexrx_bench \
        --patients 100000

The database must be empty (a fresh SQLite file or PostgreSQL database). Measures:
1. interactive writes: single patients through ``Registry.add_patient`` (one transaction, one audit
   entry each, the path a web form takes);
2. bulk import: ``load_demo`` (200 patients per transaction, one audit entry per patient);
3. the full analytics report (load, KM per drug, survival comparisons, rendering with plots);
4. audit chain verification.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ipexrx.registry import SYSTEM, Registry, ops
from ipexrx.registry.report import write_report
from ipexrx.registry.synthetic import cohort


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True)
    ap.add_argument("--patients", type=int, default=5000)
    ap.add_argument("--centres", type=int, default=20)
    ap.add_argument("--single", type=int, default=200, help="patients written one transaction each")
    ap.add_argument("--out", type=Path, default=Path("registry-bench-report"))
    ap.add_argument("--report-only", action="store_true", help="skip the writes: time the report and the audit "
                    "verification on an already loaded database")
    a = ap.parse_args()
    reg = Registry(a.db)
    print(f"database: {reg.engine.dialect.name}  (SYNTHETIC DATA)")
    if not a.report_only:
        write(reg, a)
    import lifelines  # noqa: F401  (imported up front: the report time excludes the one-off library import)

    t = time.perf_counter()
    rep = ops.analytics_report(reg, SYSTEM)
    t2 = time.perf_counter()
    write_report(rep, a.out)
    t3 = time.perf_counter()
    print(f"analytics report: {rep.patients} patients, computed in {t2 - t:.1f} s, rendered (printable + "
          f"interactive) in {t3 - t2:.1f} s (total {t3 - t:.1f} s) -> {a.out / 'report.html'}")
    t = time.perf_counter()
    r = reg.verify_audit(SYSTEM)
    print(f"audit verify: {r.entries} entries in {time.perf_counter() - t:.1f} s, ok={r.ok}")


def write(reg: Registry, a: argparse.Namespace) -> None:
    t = time.perf_counter()
    counts = ops.load_demo(reg, SYSTEM, a.patients, a.centres)
    dt_bulk = time.perf_counter() - t
    print(f"bulk import: {counts['patients']} patients in {dt_bulk:.1f} s = {counts['patients'] / dt_bulk:.0f} "
          "patients/s (full follow-up, 200 per transaction)")
    bundles = list(cohort(a.single, a.centres, seed=99))
    t = time.perf_counter()
    for b in bundles:
        reg.add_patient(SYSTEM, b)
    dt_single = time.perf_counter() - t
    print(f"interactive writes: {a.single} patients in {dt_single:.1f} s = {a.single / dt_single:.1f} "
          "transactions/s (validated, audited, one per transaction)")


if __name__ == "__main__":
    main()
