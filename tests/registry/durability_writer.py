"""Subprocess for the kill -9 test: adds patients in a loop and prints each pseudonym only AFTER
its transaction committed (an acknowledged write)."""

from __future__ import annotations

import sys

from ipexrx.registry import SYSTEM, Registry

url = sys.argv[1]
reg = Registry(url, migrate=False)
i = 0
while True:
    i += 1
    p = reg.add_patient(SYSTEM, {"patient": {
        "centre_code": "CTR-A", "birth_year": 2019, "birth_month": 5, "sex": "male", "diagnosis": "ipex",
        "gene": "FOXP3", "variant_hgvs": "c.1150G>A", "diagnosis_date": "2019-09-01", "consent_date": "2019-09-02",
        "consent_scope": "registry"},
        "courses": [{"drug_id": "sirolimus", "start_date": "2019-09-10", "troughs": [
            {"date": "2019-09-20", "value_ng_ml": 8.0}]}],
        "visits": [{"date": f"2019-{(i % 3) + 10}-01", "oi_score": i % 5}]})
    print(p, flush=True)
