"""Batch assessment of FHIR charts, as ``ipexrx assess --batch FILE --workers N`` runs it.

    python benchmarks/assess_batch_bench.py                 # 100,000 charts, 1 and 2 workers
    python benchmarks/assess_batch_bench.py --n 20000 --workers 2

Generates N synthetic FHIR R4 Bundles (benchmarks/assess_gen.py: IPEX charts with varied drugs, labs
in varied units, vaccines, infections; ~14 resources each) into one NDJSON file, then times
``assess_batch_lines`` over the file with every result serialised to an NDJSON output file (what the
CLI does, minus the terminal). Prints charts/s, ms per chart, the share of lines assessed, and the
floor of merely decoding every line with orjson, so the ratio says how far above parsing we are.
Model-based dose suggestions on out-of-range troughs are measured separately (``--dose-suggestions``,
the CLI default): each fits every usable population model (tens of ms), so they dominate a batch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))

from assess_gen import patient, to_fhir  # noqa: E402

from ipexrx.assess import assess_batch_lines  # noqa: E402

AS_OF = dt.date(2026, 11, 25)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dose-suggestions", action="store_true", help="also time the CLI default (with suggestions)")
    ap.add_argument("--ipex-plan", choices=["auto", "always", "never"], default="auto",
                    help="as the CLI's --ipex-plan/--no-ipex-plan (auto: plan for IPEX charts, as the CLI default)")
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()}; cpus: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "charts.ndjson"
        rng = random.Random(15)
        t = time.perf_counter()
        with src.open("wb") as fh:
            for i in range(args.n):
                fh.write(orjson.dumps(to_fhir(patient(rng, i))) + b"\n")
        print(f"generated {args.n:,} FHIR Bundles ({src.stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        with src.open("rb") as fh:
            for line in fh:
                orjson.loads(line)
        floor = time.perf_counter() - t
        print(f"parse floor (orjson.loads of every line, 1 process): {floor:.2f} s")
        runs = [(w, False) for w in args.workers] + ([(max(args.workers), True)] if args.dose_suggestions else [])
        for workers, doses in runs:
            out = Path(tmp) / "out.ndjson"
            t = time.perf_counter()
            ok = bad = 0
            with src.open("rb") as fh, out.open("wb") as sink:
                for res in assess_batch_lines(fh, as_of=AS_OF, workers=workers, dose_suggestions=doses,
                                              ipex_plan=args.ipex_plan):
                    sink.write(res.ndjson)
                    ok += res.counts is not None
                    bad += res.counts is None
            elapsed = time.perf_counter() - t
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"workers={workers} dose_suggestions={doses} ipex_plan={args.ipex_plan}: {elapsed:.1f} s, "
                  f"{args.n / elapsed:,.0f} charts/s, "
                  f"{elapsed / args.n * 1000:.2f} ms/chart; {ok:,} assessed, {bad} not; "
                  f"{elapsed / floor:.1f}x the parse floor; peak RSS (main process) {rss:.0f} MB; "
                  f"output {out.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
