"""Cold-process start-up time of an ``ipexrx`` command (budget: a lookup well under 0.3 s).

Runs the command N times, each in a fresh process via subprocess, and prints min / median / p95
wall time. The first (untimed) run warms the compiled knowledge-base cache and the bytecode
cache, as a user's second invocation would find them.

    python benchmarks/startup.py                       # ipexrx drug sirolimus, 20 runs
    python benchmarks/startup.py -n 50 -- search FKBP12
    python benchmarks/startup.py --no-warm -- drug Neoral   # include a cache rebuild in run 1
    python benchmarks/startup.py --budget 0.3          # exit 1 if the median exceeds the budget
    python benchmarks/startup.py --baseline            # also time `ipexrx schema` (framework floor)

``--baseline`` times a command that loads the CLI framework and registers every command but
touches no content, so the difference is what the lookup itself costs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def _command(args: list[str]) -> list[str]:
    exe = shutil.which("ipexrx", path=os.path.dirname(sys.executable)) or shutil.which("ipexrx")
    # the installed console script is what users run; fall back to the module form
    return [exe, *args] if exe else [sys.executable, "-m", "ipexrx", *args]


def _report(cmd: list[str], runs: int, warm: bool) -> float | None:
    """Time ``cmd`` ``runs`` times in fresh processes; print the statistics; return the median."""
    if warm:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    times: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr.decode(errors="replace"))
            print(f"command failed with exit code {proc.returncode}: {' '.join(cmd)}", file=sys.stderr)
            return None
    times.sort()
    p95 = times[min(len(times) - 1, max(0, round(0.95 * len(times)) - 1))]
    median = statistics.median(times)
    print(f"command: {' '.join(cmd)}")
    print(f"runs: {len(times)}  min {times[0]:.3f} s  median {median:.3f} s  p95 {p95:.3f} s  max {times[-1]:.3f} s")
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=20, help="timed runs (default 20)")
    parser.add_argument("--no-warm", action="store_true", help="do not run once untimed first")
    parser.add_argument("--budget", type=float, default=None, help="fail (exit 1) if the median exceeds this (s)")
    parser.add_argument("--baseline", action="store_true", help="also time `ipexrx schema` for comparison")
    parser.add_argument("args", nargs="*", default=["drug", "sirolimus"], help="ipexrx arguments")
    opts = parser.parse_args()
    cmd = _command(opts.args or ["drug", "sirolimus"])

    median = _report(cmd, opts.runs, warm=not opts.no_warm)
    if median is None:
        return 2
    if opts.baseline:
        _report(_command(["schema"]), opts.runs, warm=not opts.no_warm)
    if opts.budget is not None and median > opts.budget:
        print(f"median {median:.3f} s exceeds the budget of {opts.budget:.3f} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
