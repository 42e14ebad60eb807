"""Every brand in tests/cases/names/brands.yaml resolves to its drug when a chart sends the brand alone."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from ipexrx.knowledge import get_kb
from ipexrx.patient.reader import read_patient

TABLE: dict[str, list[str]] = yaml.safe_load(
    (Path(__file__).parents[1] / "cases" / "names" / "brands.yaml").read_text(encoding="utf-8"))
ROWS = [(drug, brand) for drug, brands in TABLE.items() for brand in brands]


@pytest.mark.parametrize(("drug", "brand"), ROWS, ids=[b for _, b in ROWS])
def test_brand_alone_resolves_to_its_drug(drug: str, brand: str) -> None:
    record = {"demographics": {"age_years": 10, "sex": "male", "weight_kg": 30}, "diagnosis": {"type": "ipex"},
              "medications": [{"drug": brand}]}
    patient = read_patient(record, get_kb(), dt.date(2026, 12, 5))
    assert [m.drug_id for m in patient.meds] == [drug]
    assert not [w for w in patient.warnings if w.code in ("unknown-drug", "ambiguous-drug", "outside-kb-drug")]
