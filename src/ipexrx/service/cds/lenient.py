"""Repairs for the ways real EHRs (and the official examples) bend FHIR R4, applied to a copy of
each resource before the patient reader validates it.

Only repairs that cannot change meaning are made: an STU3-style ``dosage.doseQuantity`` is moved
into ``doseAndRate[0]``; a ``doseAndRate`` object becomes a one-item list; a draft
MedicationRequest without ``intent`` is an order; a Bundle without ``type`` is a collection.
Anything else that is invalid is left for the reader, which skips it with a located warning.
"""

from __future__ import annotations

import copy
from typing import Any

_DOSE_FIELDS = ("doseQuantity", "doseRange")
_RATE_FIELDS = ("rateQuantity", "rateRange", "rateRatio")


def _fix_dosage(d: Any, fixes: list[str], where: str) -> None:
    if not isinstance(d, dict):
        return
    dar = d.get("doseAndRate")
    if isinstance(dar, dict):
        d["doseAndRate"] = [dar]
        fixes.append(f"{where}.doseAndRate: object wrapped in a list")
    moved = {k: d.pop(k) for k in (*_DOSE_FIELDS, *_RATE_FIELDS) if k in d}
    if moved:
        items = d.setdefault("doseAndRate", [])
        if isinstance(items, list):
            if items and isinstance(items[0], dict):
                for k, v in moved.items():
                    items[0].setdefault(k, v)
            else:
                items.insert(0, moved)
            fixes.append(f"{where}: STU3-style {', '.join(moved)} moved into doseAndRate[0]")


def _needs_repair(res: dict[str, Any], draft: bool) -> bool:
    rtype = res.get("resourceType")
    if rtype == "MedicationRequest":
        if "intent" not in res or (draft and "status" not in res):
            return True
        dosages = res.get("dosageInstruction")
    elif rtype == "MedicationStatement":
        dosages = res.get("dosage")
    else:
        return False
    for d in dosages if isinstance(dosages, list) else []:
        if isinstance(d, dict) and (isinstance(d.get("doseAndRate"), dict)
                                    or any(k in d for k in (*_DOSE_FIELDS, *_RATE_FIELDS))):
            return True
    return False


def repair_resource(res: dict[str, Any], where: str, fixes: list[str], draft: bool = False) -> dict[str, Any]:
    """The resource, or a repaired deep copy of it (the request body is never modified)."""
    if not _needs_repair(res, draft):
        return res
    res = copy.deepcopy(res)
    rtype = res.get("resourceType")
    if rtype == "MedicationRequest":
        if "intent" not in res:
            res["intent"] = "order"
            fixes.append(f"{where}.intent: missing, read as 'order'")
        if draft and "status" not in res:
            res["status"] = "draft"
            fixes.append(f"{where}.status: missing on a draft order, read as 'draft'")
        for i, d in enumerate(res.get("dosageInstruction") or []):
            _fix_dosage(d, fixes, f"{where}.dosageInstruction[{i}]")
    elif rtype == "MedicationStatement":
        for i, d in enumerate(res.get("dosage") or []):
            _fix_dosage(d, fixes, f"{where}.dosage[{i}]")
    return res


def bundle_entries(value: Any) -> list[dict[str, Any]]:
    """Resources of a Bundle-like prefetch value (missing ``type`` tolerated; outcome entries dropped)."""
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") != "Bundle":
        return [value] if isinstance(value.get("resourceType"), str) else []
    out = []
    for e in value.get("entry") or []:
        if not isinstance(e, dict):
            continue
        if (e.get("search") or {}).get("mode") == "outcome":
            continue
        r = e.get("resource")
        if isinstance(r, dict) and r.get("resourceType") not in (None, "OperationOutcome"):
            out.append(r)
    return out
