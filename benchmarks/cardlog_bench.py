"""CPU the card log's writer spends per logged CDS call, by how many calls' cards one transaction holds.

Why: every card a CDS call returns is written to ``cds_card`` by a thread of the worker that answered it
(``ipexrx.service.cardlog``), on the same cores that answer the calls. The card uuids are random, so each
row lands on a random page of the uuid index; rows committed together share pages. The writer ticks once a
second, so at 500 calls a second per worker a transaction holds about 500 calls' cards.

What it does: the packaged patient-view sample is judged once (its cards and templates are real), then
``--calls`` calls' worth of cards (fresh hookInstances, so fresh uuids) are queued and written through the card
log's own batch path into a new SQLite file under ``--workdir``, ``N`` calls at a time for each ``N`` of
``--per-transaction``. Prints the process CPU (the writer's work, done here on the calling thread) and the wall
time per logged call, and the rows in the table at the end. Usage::

    python benchmarks/cardlog_bench.py [--calls 20000] [--per-transaction 100 250 500]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
import uuid
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000, help="calls written per setting (after 2,000 to warm up)")
    ap.add_argument("--per-transaction", type=int, nargs="+", default=[100, 250, 500],
                    help="calls whose cards are queued before each write")
    ap.add_argument("--workdir", default=str(Path.home() / ".cache"), help="where the SQLite files go (a disk)")
    args = ap.parse_args()

    from ipexrx.service.cardlog import CardLog
    from ipexrx.service.cds import engine, samples
    from ipexrx.service.cds.models import CdsRequest
    from ipexrx.service.cds.services import SERVICES
    from ipexrx.storage import Database

    svc = SERVICES["ipexrx-patient-view"]
    body = CdsRequest.model_validate(samples.load("patient_view"))
    issued = engine.evaluate(svc, body, dict(body.prefetch or {}), "http://localhost")
    templates = [t for _, t in issued]
    print(f"cards per call: {len(templates)} (the packaged patient-view sample)")
    print("\n| calls per transaction | CPU per logged call | wall per logged call (with the writer's pauses) "
          "| rows at the end |\n|---|---|---|---|")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    for per in args.per_transaction:
        tmp = Path(tempfile.mkdtemp(prefix="ipexrx-cardlog-bench-", dir=args.workdir))
        db = Database(f"sqlite:///{tmp / 'cards.sqlite3'}")
        db.migrate()
        log = CardLog(db)
        log._ensure_thread = lambda: None  # type: ignore[method-assign]  # the batches are written here, below

        def queue(n: int, log: CardLog = log) -> None:
            for _ in range(n):
                hook = str(uuid.uuid4())
                log.record_call(svc.id, hook, [(t.instantiate(hook), t) for t in templates],
                                "https://ehr.example.org", None)

        def drain(log: CardLog = log) -> None:  # what the writer thread does on a tick (without its pauses)
            while log._write_batch():
                pass

        for start in range(0, 2_000, per):  # warm up
            queue(min(per, 2_000 - start))
            drain()
        cpu = wall = 0.0  # the cards are queued outside the timing: the rows and the SQL are the writer's
        for start in range(0, args.calls, per):
            queue(min(per, args.calls - start))
            c0, w0 = time.process_time(), time.perf_counter()
            drain()
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
        with db.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT count(*) FROM cds_card").scalar_one()
        print(f"| {per} | {cpu * 1e6 / args.calls:.0f} us | {wall * 1e6 / args.calls:.0f} us | {rows:,} |")
        db.dispose()
    print(f"\n{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {args.calls:,} calls per setting")


if __name__ == "__main__":
    main()
