"""kill -9 in the middle of writing: every acknowledged commit is there, nothing is corrupt, and
the audit chain still verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from ipexrx.registry import SYSTEM, Registry
from ipexrx.registry.models import Course, Patient, TroughLevel


def test_sigkill_mid_write_loses_no_acknowledged_commit(db_url: str) -> None:
    reg = Registry(db_url)
    reg.create_centre(SYSTEM, {"code": "CTR-A", "name": "Centre A"})
    reg.close()
    writer = Path(__file__).with_name("durability_writer.py")
    acked: list[str] = []
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, str(writer), db_url], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        target = 15 + 7 * round_  # kill at a different point each round
        n = 0
        while n < target and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked.append(line.strip())
            n += 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        acked += [ln.strip() for ln in proc.stdout.read().splitlines() if ln.strip()]
        assert n == target, "the writer did not produce enough commits (see its stderr)"
    reg = Registry(db_url)
    try:
        with reg.tx() as s:
            stored = set(s.scalars(select(Patient.pseudonym)))
            # no half-written patient: every patient has its course and its trough
            n_pat = len(stored)
            n_course = len(s.scalars(select(Course.id)).all())
            n_trough = len(s.scalars(select(TroughLevel.id)).all())
        assert set(acked) <= stored
        assert n_course == n_pat and n_trough == n_pat
        if reg.engine.dialect.name == "sqlite":
            with reg.engine.connect() as c:
                assert c.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
        r = reg.verify_audit(SYSTEM)
        assert r.ok, r.problems
        assert r.entries >= 1 + len(acked)
    finally:
        reg.close()
