"""The rule registry: each rule is a small named function ``rule(ctx) -> list[Alert]``.

Families (one module each): interactions, duplication, screening, monitoring, results (out of
range), vaccines, infections, dosing. ``RULES`` fixes the order alerts are produced in; the
assessment then sorts by severity. Documentation of each rule: docs/rules.md.
"""

from __future__ import annotations

from collections.abc import Callable

from ..context import Ctx
from ..models import Alert
from . import dosing, duplication, infections, interactions, monitoring, results, screening, vaccines

Rule = Callable[[Ctx], list[Alert]]

RULES: dict[str, Rule] = {
    "interactions.label_instruction": interactions.label_instruction,
    "duplication.two_calcineurin_inhibitors": duplication.two_calcineurin_inhibitors,
    "duplication.cni_switch_interval": duplication.cni_switch_interval,
    "duplication.same_class": duplication.same_class,
    "screening.required_screening": screening.required_screening,
    "monitoring.monitoring_due": monitoring.monitoring_due,
    "results.trough_out_of_range": results.trough_out_of_range,
    "results.creatinine_rise_on_cni": results.creatinine_rise_on_cni,
    "results.neutropenia_on_immunosuppression": results.neutropenia_on_immunosuppression,
    "vaccines.live_vaccine_under_immunosuppression": vaccines.live_vaccine_under_immunosuppression,
    "infections.infection_under_immunosuppression": infections.infection_under_immunosuppression,
    "dosing.dosing_not_established": dosing.dosing_not_established,
}

__all__ = ["RULES", "Rule"]
