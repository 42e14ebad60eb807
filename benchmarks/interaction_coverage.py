"""How many label-named interaction partners the knowledge base covers, and how many controls stay silent.

Reads benchmarks/data/label_interaction_pairs.yaml (partners each victim's label names, with the label
section, plus controls no label names), assesses a minimal chart holding each pair (both drugs active
and oral unless the drug has no oral route), and counts a pair as covered when an interaction or
duplication alert names both drugs. Prints a table per victim and the totals.

    python benchmarks/interaction_coverage.py            # table
    python benchmarks/interaction_coverage.py --missing  # also list the pairs not covered
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import yaml

from ipexrx.assess import assess
from ipexrx.knowledge import get_kb

DATA = Path(__file__).parent / "data" / "label_interaction_pairs.yaml"
FAMILIES = {"interaction", "duplication"}


ROUTES: dict[str, str] = yaml.safe_load(DATA.read_text(encoding="utf-8")).get("routes", {})


def _route(kb, drug_id: str) -> str | None:
    if drug_id in ROUTES:
        return ROUTES[drug_id]  # the route the label's warning is about (IV vancomycin, not oral)
    routes = kb.drugs[drug_id].routes
    if not routes or "oral" in routes:
        return "oral"
    return next((r for r in routes if r in ("iv", "sc", "im")), routes[0])


def flagged(kb, victim: str, partner: str) -> bool | None:
    """True/False when both drugs are in the KB; None when one is missing."""
    if victim not in kb.drugs or partner not in kb.drugs:
        return None
    meds = [{"drug": d, "route": _route(kb, d)} for d in (victim, partner)]
    res = assess({"diagnosis": {"type": "ipex"}, "demographics": {"age_years": 10, "weight_kg": 30},
                  "medications": meds}, as_of=dt.date(2026, 12, 5), kb=kb, dose_suggestions=False)
    for a in res.alerts:
        refs = {t.ref for t in a.triggers}
        if a.family in FAMILIES and {victim, partner} <= refs:
            return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--missing", action="store_true", help="list the pairs not covered")
    args = ap.parse_args()
    kb = get_kb()
    spec = yaml.safe_load(DATA.read_text(encoding="utf-8"))["victims"]
    t0 = time.perf_counter()
    tot_named = tot_cov = tot_absent = tot_ctrl = tot_false = 0
    missing: list[str] = []
    head = ("victim", "label partners", "covered", "not in KB", "controls", "false alerts")
    print(f"{head[0]:<14} {head[1]:>14} {head[2]:>8} {head[3]:>10} {head[4]:>9} {head[5]:>13}")
    for victim, row in spec.items():
        named = row["partners"]
        cov = absent = 0
        for p in named:
            got = flagged(kb, victim, p)
            if got is None:
                absent += 1
                missing.append(f"{victim} + {p}: partner or victim not in the knowledge base")
            elif got:
                cov += 1
            else:
                missing.append(f"{victim} + {p}: both in the KB, no alert ({row['source']})")
        false = sum(1 for c in row.get("controls", []) if flagged(kb, victim, c))
        ctrl = len(row.get("controls", []))
        print(f"{victim:<14} {len(named):>14} {cov:>8} {absent:>10} {ctrl:>9} {false:>13}")
        tot_named += len(named)
        tot_cov += cov
        tot_absent += absent
        tot_ctrl += ctrl
        tot_false += false
    elapsed = time.perf_counter() - t0
    print(f"{'total':<14} {tot_named:>14} {tot_cov:>8} {tot_absent:>10} {tot_ctrl:>9} {tot_false:>13}")
    print(f"coverage: {tot_cov}/{tot_named} label-named pairs = {100 * tot_cov / tot_named:.1f}%; "
          f"false alerts on controls: {tot_false}/{tot_ctrl}; {elapsed:.2f} s for "
          f"{tot_named + tot_ctrl} assessments")
    if args.missing and missing:
        print("\nnot covered:")
        for m in missing:
            print(f"  {m}")


if __name__ == "__main__":
    main()
