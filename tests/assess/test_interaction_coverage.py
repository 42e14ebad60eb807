"""The interaction coverage table (tests/cases/interactions/coverage.yaml), pair by pair.

Each row is one chart with two current systemic medications. It pins what the labels demand: which
rule speaks (the pair's own label text, or the victim's instruction for the perpetrator's mechanism
group), how loudly at least, that the alert cites a label section, and that a drug which is no
interaction partner (azithromycin with tacrolimus) stays silent.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from ipexrx.assess import assess

TABLE = yaml.safe_load((Path(__file__).parents[1] / "cases" / "interactions" / "coverage.yaml").read_text())
RANK = {"info": 0, "warning": 1, "critical": 2}
PAIR_RULES = ("interactions.", "duplication.two_calcineurin_inhibitors")


def _rows() -> list[tuple[str, str, str, str, dict[str, Any]]]:
    rows = [(r["victim"], "oral", r["perpetrator"], r["route"], r) for r in TABLE["pairs"]]
    rows += [(r["a"], r["a_route"], r["b"], r["b_route"], r) for r in TABLE["other_pairs"]]
    return rows


ROWS = _rows()


def _chart(a: str, a_route: str, b: str, b_route: str) -> dict[str, Any]:
    return {"demographics": dict(TABLE["patient"]), "diagnosis": {"type": "ipex"},
            "medications": [{"drug": a, "route": a_route}, {"drug": b, "route": b_route}]}


IDS = [f"{i}-{r[0]}+{r[2]}" for i, r in enumerate(ROWS)]


@pytest.mark.parametrize(("a", "a_route", "b", "b_route", "row"), ROWS, ids=IDS)
def test_label_pair(a: str, a_route: str, b: str, b_route: str, row: dict[str, Any]) -> None:
    result = assess(_chart(a, a_route, b, b_route), as_of=dt.date(2026, 12, 5))
    alerts = [x for x in result.alerts if x.rule.startswith(PAIR_RULES)]
    if row["rule"] == "none":
        assert not alerts, f"{a} + {b} must not alert: {[x.summary for x in alerts]}"
        return
    assert [x.rule for x in alerts] == [row["rule"]], [(x.rule, x.summary) for x in alerts]
    alert = alerts[0]
    assert RANK[alert.severity.value] >= RANK[row["severity"]], alert.summary
    assert {t.ref for t in alert.triggers} >= {a, b}
    cited = [s for s in alert.sources if s.source.startswith("label-") and s.section]
    assert cited, f"{a} + {b}: the alert cites no label section ({[s.citation for s in alert.sources]})"
    assert "Label instruction:" in alert.action


def test_table_covers_every_partner_the_issue_names() -> None:
    victims = {"tacrolimus", "cyclosporine", "sirolimus", "everolimus"}
    named = {"ketoconazole", "itraconazole", "voriconazole", "posaconazole", "fluconazole", "isavuconazonium",
             "clarithromycin", "erythromycin", "azithromycin", "rifampin", "rifabutin", "rifapentine",
             "carbamazepine", "phenytoin", "phenobarbital", "ritonavir", "cobicistat", "diltiazem", "verapamil",
             "nicardipine", "metoclopramide", "st-johns-wort", "grapefruit"}
    have = {(r["victim"], r["perpetrator"]) for r in TABLE["pairs"]}
    assert {(v, p) for v in victims for p in named} <= have
    silent = {(r["victim"], r["perpetrator"]) for r in TABLE["pairs"] if r["rule"] == "none"}
    assert {(v, "azithromycin") for v in victims} - {("cyclosporine", "azithromycin")} <= silent
