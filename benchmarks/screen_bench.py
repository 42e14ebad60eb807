"""Benchmark ``ipexrx screen`` on a synthetic 100k-patient Bulk Data population.

    python benchmarks/screen_bench.py [--patients 100000] [--seed 1] [--routine 20] [--threads 2] [--dir DIR]
                                      [--engine duckdb|spark]

Prints, for the screen (DuckDB engine by default, run in a child process so its peak RSS is its own; with
``--engine spark`` the peak RSS is the Python driver's, not the JVM's):
wall time, patients/s, peak RSS, and the ratio to a Python floor that merely parses every NDJSON line
with orjson (also in a child process); then precision-at-k of the generator population (k = the number
of undiagnosed IPEX and IPEX-like patients). The population is cached under /tmp, keyed by the
generator's source, size, seed and routine-observation count, so a re-run measures only the screen.
Target (issue 15): 100k patients in under 60 s on 2 cores, no slower than the parse floor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR = r"""
import gzip, sys, orjson
from pathlib import Path
n = 0
for path in sorted(Path(sys.argv[1]).iterdir()):
    if not (path.name.endswith(".ndjson") or path.name.endswith(".ndjson.gz")):
        continue
    fh = gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")
    with fh:
        for line in fh:
            if line.strip():
                orjson.loads(line)
                n += 1
print(n)
"""


def _child(cmd: list[str], stdout_path: Path | None = None) -> tuple[float, float, str]:
    """Run ``cmd``; return wall seconds, the child's peak RSS (MB) and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    if stdout_path is not None:
        with stdout_path.open("wb") as fh:
            subprocess.run(cmd, check=True, stdout=fh)
        out = ""
    else:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far; runs are ordered smallest first (see main)
    return wall, max(peak, before) / 1024, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--routine", type=int, default=20, help="mean routine Observations per patient")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-limit", default="1GB")
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb")
    args = ap.parse_args()

    from ipexrx.screen import synth

    key = hashlib.sha256(Path(synth.__file__).read_bytes()).hexdigest()[:10]
    name = f"ipexrx-screen-bench-{args.patients}-{args.seed}-{args.routine}-{key}"
    data = args.dir or Path(tempfile.gettempdir()) / name
    if not (data / "synth-truth.csv").exists():
        t0 = time.perf_counter()
        synth.generate(data, args.patients, args.seed, gzip_types=("Observation",), routine_observations=args.routine)
        print(f"generated {args.patients} patients in {time.perf_counter() - t0:.1f} s -> {data}")
    size = sum(p.stat().st_size for p in data.iterdir()) / 1e6
    floor_wall, floor_rss, out = _child([sys.executable, "-c", FLOOR, str(data)])
    lines = int(out.strip())
    result_path = data.parent / f"{data.name}-result.json"
    cmd = [sys.executable, "-m", "ipexrx", "screen", "run", str(data), "--json", "--as-of", "2026-06-30",
           "--threads", str(args.threads), "--memory-limit", args.memory_limit, "--engine", args.engine]
    screen_wall, screen_rss, _ = _child(cmd, result_path)
    result = json.loads(result_path.read_text(encoding="utf-8"))
    stats = result["stats"]

    truth = synth.read_truth(data)
    positives = {p for p, g in truth.items() if g == "ipex" or g.startswith("ipex-like:")}
    k = len(positives)
    ranked = [c["patient"] for c in result["candidates"]]
    p_at_k = sum(p in positives for p in ranked[:k]) / k if k else float("nan")
    recall = sum(p in positives for p in ranked) / k if k else float("nan")
    precision_list = sum(p in positives for p in ranked) / len(ranked) if ranked else float("nan")
    lookalikes_in_list = sum(truth[p].startswith("lookalike:") for p in ranked)

    print(f"population: {args.patients} patients, {lines} NDJSON lines, {size:.0f} MB on disk "
          f"(Observation gzipped), cpus={os.cpu_count()}, DuckDB threads={args.threads}")
    print(f"parse floor (orjson.loads per line): {floor_wall:.1f} s, {lines / floor_wall:,.0f} lines/s, "
          f"peak RSS {floor_rss:.0f} MB")
    print(f"ipexrx screen ({args.engine}, whole CLI run incl. start-up): {screen_wall:.1f} s, "
          f"{args.patients / screen_wall:,.0f} patients/s, peak RSS {screen_rss:.0f} MB, "
          f"ratio to parse floor {screen_wall / floor_wall:.2f}")
    beside = (f"in a forked worker beside the scoring, {stats['safety_wait_seconds']} s waited for after it"
              if stats.get("safety_beside_scoring") else "after the scoring")
    print(f"  phases: read {stats['read_seconds']} s, score {stats['score_seconds']} s, "
          f"safety {stats['safety_seconds']} s ({beside}; {stats['safety_patients_checked']} patients on "
          f"knowledge-base drugs assessed, {stats['safety_patients_with_alerts']} with alerts)")
    print(f"  bad lines {len(stats['bad_lines'])}; candidates {stats['candidates']}; known {stats['known']}")
    print(f"precision at k={k} (undiagnosed IPEX + IPEX-like): {p_at_k:.3f}; recall of the candidate list "
          f"{recall:.3f}; precision of the whole candidate list {precision_list:.3f}; look-alikes in the list "
          f"{lookalikes_in_list}")
    print(f"target: < 60 s for 100k patients on 2 cores -> {'met' if screen_wall < 60 else 'NOT met'}; "
          f"no slower than the parse floor -> {'met' if screen_wall <= floor_wall else 'NOT met'}")


if __name__ == "__main__":
    main()
