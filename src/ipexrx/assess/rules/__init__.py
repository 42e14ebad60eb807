"""The rule registry: each rule is a small named function ``rule(ctx) -> list[Alert]``.

Families (one module each): interactions, duplication, screening, monitoring, results (out of
range), vaccines, infections, dosing (caveat and dose range), records (what could not be checked).
``RULES`` fixes the order alerts are produced in; the
assessment then sorts by severity. Documentation of each rule: docs/rules.md.
"""

from __future__ import annotations

from collections.abc import Callable

from ..context import Ctx
from ..models import Alert
from . import (
    dose_range,
    dosing,
    duplication,
    infections,
    interactions,
    monitoring,
    records,
    results,
    screening,
    vaccines,
)

Rule = Callable[[Ctx], list[Alert]]

RULES: dict[str, Rule] = {
    "interactions.label_instruction": interactions.label_instruction,
    "interactions.mechanism_rule": interactions.mechanism_rule,
    "interactions.after_stop": interactions.after_stop,
    "duplication.two_calcineurin_inhibitors": duplication.two_calcineurin_inhibitors,
    "duplication.cni_switch_interval": duplication.cni_switch_interval,
    "duplication.same_class": duplication.same_class,
    "duplication.formulation_switch": duplication.formulation_switch,
    "screening.required_screening": screening.required_screening,
    "screening.boxed_warnings_before_start": screening.boxed_warnings_before_start,
    "monitoring.monitoring_due": monitoring.monitoring_due,
    "results.trough_out_of_range": results.trough_out_of_range,
    "results.creatinine_rise_on_cni": results.creatinine_rise_on_cni,
    "results.neutropenia_on_immunosuppression": results.neutropenia_on_immunosuppression,
    "results.lab_toxicity": results.lab_toxicity,
    "results.blood_pressure": results.blood_pressure,
    "vaccines.live_vaccine_under_immunosuppression": vaccines.live_vaccine_under_immunosuppression,
    "vaccines.live_vaccine_after_hsct": vaccines.live_vaccine_after_hsct,
    "vaccines.live_vaccine_after_stopping": vaccines.live_vaccine_after_stopping,
    "vaccines.live_vaccine_after_in_utero_exposure": vaccines.live_vaccine_after_in_utero_exposure,
    "infections.infection_under_immunosuppression": infections.infection_under_immunosuppression,
    "infections.start_during_active_infection": infections.start_during_active_infection,
    "dosing.dose_range": dose_range.dose_range,
    "dosing.dosing_not_established": dosing.dosing_not_established,
    "dosing.topical_cni_age": dosing.topical_cni_age,
    "records.unrecognised_medication": records.unrecognised_medication,
    "records.medications_not_checked": records.medications_not_checked,
}

__all__ = ["RULES", "Rule"]
