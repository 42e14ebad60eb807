"""Model files and data: validation errors are specific, never silent guesses."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from ipexrx.dosing.data import Record, Subject, read_nmtran
from ipexrx.dosing.engine import build_design
from ipexrx.dosing.errors import CovariateError, DataError, ModelError
from ipexrx.dosing.model import MODELS_DIR, all_models, get_model, load_model_file


def test_every_library_model_loads_with_citation_units_and_verification_note():
    models = all_models()
    ids = {m.id for m in models}
    assert {"andrews2018-tacrolimus", "fan2024-sirolimus", "gao2022-cyclosporine", "mapbayr-001", "mapbayr-006",
            "mapbayr-301", "mapbayr-401", "nonmem-001", "nonmem-003", "nonmem-405"} <= ids
    for m in models:
        assert m.spec.citation.text and m.spec.verification
        assert all(t.source for t in m.spec.thetas.values())
        assert all(c.unit for c in m.spec.covariates.values())
        if m.spec.kind == "clinical":
            assert m.spec.citation.doi and m.spec.targets and m.spec.dosage_forms


def test_cv_percent_is_converted_to_log_normal_variance_explicitly():
    m = get_model("gao2022-cyclosporine")
    np.testing.assert_allclose(np.diag(m.omega), [math.log(1 + 0.28**2), math.log(1 + 0.621**2)])


def _write(tmp_path: Path, name: str, mutate) -> Path:
    raw = yaml.safe_load((MODELS_DIR / "mapbayr-001.yaml").read_text())
    raw["id"] = name
    mutate(raw)
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r["parameters"]["CL"].update(expr="TVCL * WT"), "unknown symbol"),
    (lambda r: r["parameters"]["CL"].update(expr="__import__('os')"), "not allowed|unknown function"),
    (lambda r: r["omega"].update(variance=[0.2, -0.1, 0.2]), "positive definite"),
    (lambda r: r["omega"].update(cv_percent=[20, 20, 20]), "exactly one of"),
    (lambda r: r["outputs"][0]["error"].update(model="combined"), "needs exactly"),
    (lambda r: r["flows"].append({"from": "GUT", "rate": "KA"}), "GUT"),
])
def test_malformed_model_files_are_rejected_with_the_field_named(tmp_path, mutate, message):
    with pytest.raises(ModelError, match=message):
        load_model_file(_write(tmp_path, "bad-model", mutate))


def test_a_user_model_file_works_without_code_changes(tmp_path):
    p = _write(tmp_path, "my-model", lambda r: r["thetas"]["TVCL"].update(value=8.0))
    m = get_model(str(p))
    assert m.spec.thetas["TVCL"].value == 8.0


def test_model_id_must_match_file_name(tmp_path):
    raw = yaml.safe_load((MODELS_DIR / "mapbayr-001.yaml").read_text())
    p = tmp_path / "other.yaml"
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(ModelError, match="must equal the file name"):
        load_model_file(p)


def test_unknown_model_suggests_close_names():
    with pytest.raises(ModelError, match="Did you mean .*mapbayr-001"):
        get_model("mapbayr-01")


@pytest.mark.parametrize(("csv", "message"), [
    ("ID,TIME,EVID,AMT,CMT,DV\n1,5,1,100,1,.\n1,2,0,0,2,3\n", "not sorted"),
    ("ID,TIME,EVID,AMT,CMT,DV\n1,0,1,-100,1,.\n", "negative dose"),
    ("ID,TIME,EVID,AMT,CMT,DV\n1,0,1,100,1,.\n1,2,0,0,2,.\n", "no DV"),
    ("ID,TIME,EVID,AMT,CMT,ADDL,DV\n1,0,1,100,1,3,.\n", "need an interval"),
    ("ID,TIME,EVID,AMT,CMT,DV\n1,0,1,abc,1,.\n", "expected a number"),
    ("ID,EVID,AMT\n1,1,100\n", "TIME"),
    ("ID,TIME,EVID,AMT,CMT,DV\n1,0,1,100,1,.\n2,0,1,100,1,.\n1,4,0,0,2,3\n", "not contiguous"),
])
def test_impossible_data_raise_specific_errors(tmp_path, csv, message):
    p = tmp_path / "d.csv"
    p.write_text(csv)
    with pytest.raises(DataError, match=message):
        read_nmtran(p)


def test_dose_into_a_compartment_the_model_does_not_dose_is_refused():
    m = get_model("mapbayr-001")
    with pytest.raises(DataError, match="doses only into"):
        build_design(m, Subject("1", [Record(time=0, evid=1, amt=10, cmt=2)]))


def test_covariates_outside_the_validated_range_warn_or_refuse_as_the_model_says():
    tac = get_model("andrews2018-tacrolimus")
    covs = {"WT": 95, "EGFR": 80, "HCT": 0.35, "DONOR_DECEASED": 1}
    d = build_design(tac, Subject("1", [Record(time=0, evid=1, amt=1, cmt=1, covariates=covs)]))
    assert any("outside the range" in w and "WT" in w for w in d.warnings)
    with pytest.raises(CovariateError, match="plausible"):  # haematocrit in % instead of L/L
        build_design(tac, Subject("1", [Record(time=0, evid=1, amt=1, cmt=1, covariates={**covs, "HCT": 35})]))
    with pytest.raises(CovariateError, match="DONOR_DECEASED"):  # required, no default
        build_design(tac, Subject("1", [Record(time=0, evid=1, amt=1, cmt=1, covariates={"WT": 20, "EGFR": 80,
                                                                                        "HCT": 0.35})]))
    cyc = get_model("gao2022-cyclosporine")
    with pytest.raises(CovariateError, match="refuses extrapolation"):
        build_design(cyc, Subject("1", [Record(time=0, evid=1, amt=1, cmt=1, covariates={"WT": 20, "TBIL": 150})]))
    with pytest.raises(CovariateError, match="expected one of"):
        build_design(tac, Subject("1", [Record(time=0, evid=1, amt=1, cmt=1, covariates={**covs, "CYP3A5_EXPR": 2})]))


def test_missing_covariate_values_are_carried_backward_and_reported():
    m = get_model("mapbayr-301")
    s = Subject("1", [Record(time=0, evid=1, amt=100, cmt=1), Record(time=2, cmt=2, dv=1.0, covariates={"BW": 80})])
    d = build_design(m, s)
    assert d.cov["BW"].tolist() == [80.0]
    assert any("filled from the next known value" in w for w in d.warnings)
