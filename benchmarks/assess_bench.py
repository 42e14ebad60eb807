"""Assessment speed: in-process time per patient (goal: median < 5 ms) and batch throughput.

    /work/venv/bin/python benchmarks/assess_bench.py            # 10,000-patient batch
    /work/venv/bin/python benchmarks/assess_bench.py --n 2000   # quicker

Measures, after a warm-up (KB loaded, indexes built):
* per patient: ``assess(record_dict)`` for the examples and for generated patients (JSON), and for
  the generated patients' FHIR Bundle twins (read with the typed FHIR views of ipexrx.patient.fhir_types);
* batch: ``assess_batch`` over N NDJSON lines including writing each result as a JSON line (what
  ``ipexrx assess --batch`` does, minus the terminal).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from assess_gen import patient, to_fhir  # noqa: E402

from ipexrx.assess import assess, assess_batch  # noqa: E402
from ipexrx.knowledge import get_kb  # noqa: E402

AS_OF = dt.date(2026, 11, 25)
EXAMPLES = Path(__file__).parents[1] / "examples"


def _times(docs: list[object], repeat: int = 1) -> list[float]:
    out = []
    for _ in range(repeat):
        for d in docs:
            t = time.perf_counter()
            assess(d, as_of=AS_OF)  # type: ignore[arg-type]
            out.append((time.perf_counter() - t) * 1000)
    return out


def _fmt(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[int(len(ms) * 0.95) - 1]
    return f"{name:<34} n={len(ms):>6}  median {statistics.median(ms):6.2f} ms  p95 {p95:6.2f} ms  max {ms[-1]:7.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000, help="patients in the batch")
    args = ap.parse_args()
    kb = get_kb()
    rng = random.Random(7)
    examples = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]
    gen = [patient(rng, i) for i in range(1000)]
    fhir = [to_fhir(r) for r in gen[:300]]
    _times(examples + gen[:50] + fhir[:20])  # warm-up: imports, KB, indexes, validators
    print(f"knowledge base {kb.meta.content_version}: {len(kb.drugs)} drugs, {len(kb.interactions)} interactions")
    print(_fmt("examples (JSON + FHIR files)", _times(examples, repeat=20)))
    print(_fmt("generated patients, JSON dict", _times(gen)))
    print(_fmt("generated patients, FHIR Bundle", _times(fhir)))

    lines = [json.dumps(patient(rng, i)) for i in range(args.n)]
    sink = io.StringIO()
    t = time.perf_counter()
    ok = err = 0
    for res in assess_batch(lines, as_of=AS_OF, kb=kb):
        sink.write(res.to_json() + "\n")
        ok += res.ok
        err += not res.ok
    elapsed = time.perf_counter() - t
    print(f"batch of {args.n} NDJSON lines (JSON records, results serialised): {elapsed:.2f} s, "
          f"{args.n / elapsed:,.0f} patients/s, {elapsed / args.n * 1000:.2f} ms/patient; {ok} ok, {err} errors; "
          f"{sink.tell() / 1e6:.0f} MB of NDJSON")


if __name__ == "__main__":
    main()
