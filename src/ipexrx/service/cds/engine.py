"""Hook call -> patient model -> assessment -> cards.

The prefetch entries (plus the draft orders of order-select / order-sign) are assembled into one
FHIR Bundle and read by the same reader as an uploaded Bundle, so a CDS call and the assessment
page can never disagree about a patient. Each record item remembers which Bundle entry it came
from; that is how an alert is traced back to the draft order that caused it (for order hooks
only alerts involving a draft order are shown; for order-select only the selected ones).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...assess.engine import assess_alerts
from ...knowledge import get_kb
from ...patient import PatientInputError
from ...patient.fhir import relocate
from ...patient.normalize import normalize
from ...patient.reader import load_record
from ..errors import ApiError
from ..settings import Settings
from .cards import (
    INDICATOR_RANK,
    CardTemplate,
    DraftOrder,
    alert_template,
    unassessable_template,
    unchecked_template,
)
from .fhir import gather
from .lenient import bundle_entries, repair_resource
from .models import CdsRequest
from .services import PREFETCH, SERVICES, ServiceDef

log = logging.getLogger("ipexrx.service.cds")

_ENTRY = re.compile(r"^\$\.entry\[(\d+)\]")
ORDER_HOOKS = ("order-select", "order-sign")


@dataclass
class Assembled:
    bundle: dict[str, Any]
    drafts: dict[int, DraftOrder] = field(default_factory=dict)  # entry index -> draft order
    fixes: list[str] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)  # entry index -> where the EHR sent it

    def origin(self, path: str) -> str:
        """Translate a path into our assembled Bundle back to the request (``$.prefetch.x.entry[i]...``)."""
        m = _ENTRY.match(path)
        if not m or int(m.group(1)) >= len(self.origins):
            return path
        rest = path[m.end():]
        rest = rest[len(".resource"):] if rest.startswith(".resource") else rest
        return self.origins[int(m.group(1))] + rest


def _bad(path: str, expected: str, got: str, message: str) -> ApiError:
    return ApiError(422, "invalid_request", message, issues=[{"path": path, "expected": expected, "got": got}])


def _draft_label(res: dict[str, Any]) -> str:
    cc = res.get("medicationCodeableConcept") or {}
    text = cc.get("text") if isinstance(cc, dict) else None
    if not text and isinstance(cc, dict):
        for c in cc.get("coding") or []:
            if isinstance(c, dict) and c.get("display"):
                text = c["display"]
                break
    if not text:
        ref = res.get("medicationReference") or {}
        text = ref.get("display") if isinstance(ref, dict) else None
    return " ".join(str(text or res.get("resourceType", "order")).split())[:80]


def assemble(svc: ServiceDef, body: CdsRequest, values: dict[str, Any]) -> Assembled:
    """One collection Bundle: prefetch resources first, then the draft orders."""
    ctx = body.context
    patient_id = ctx.get("patientId")
    out = Assembled(bundle={"resourceType": "Bundle", "type": "collection", "entry": []})
    entries: list[dict[str, Any]] = out.bundle["entry"]
    patient = values.get("patient")
    if isinstance(patient, dict) and patient.get("id") not in (None, str(patient_id)):
        raise _bad("$.prefetch.patient.id", f"the patient of the hook ('{patient_id}')", repr(patient.get("id")),
                   "the prefetched Patient is not the patient of the hook context")
    for key in PREFETCH:
        value = values.get(key)
        for i, res in enumerate(bundle_entries(value)):
            where = f"$.prefetch.{key}" if res is value else f"$.prefetch.{key}.entry[{i}].resource"
            entries.append({"resource": repair_resource(res, where, out.fixes)})
            out.origins.append(where)
    if svc.hook in ORDER_HOOKS:
        draft_bundle = ctx.get("draftOrders")
        if not isinstance(draft_bundle, dict) or not isinstance(draft_bundle.get("entry", []), list):
            raise _bad("$.context.draftOrders", "a Bundle of draft orders", type(draft_bundle).__name__,
                       f"the {svc.hook} hook needs context.draftOrders")
        selections = ctx.get("selections")
        if svc.hook == "order-select" and selections is not None and not (
                isinstance(selections, list) and all(isinstance(s, str) for s in selections)):
            raise _bad("$.context.selections", "a list of references such as 'MedicationRequest/103'",
                       type(selections).__name__, "context.selections is malformed")
        chosen = set(selections) if svc.hook == "order-select" and selections is not None else None
        for i, res in enumerate(bundle_entries(draft_bundle)):
            ref = f"{res.get('resourceType')}/{res.get('id')}" if res.get("id") else None
            idx = len(entries)
            where = f"$.context.draftOrders.entry[{i}].resource"
            entries.append({"resource": repair_resource(res, where, out.fixes, draft=True)})
            out.origins.append(where)
            if ref and res.get("resourceType") in ("MedicationRequest", "MedicationStatement"):
                out.drafts[idx] = DraftOrder(reference=ref, drug_label=_draft_label(res),
                                             selected=chosen is None or ref in chosen)
    return out


def _entry_of(path: str | None, locations: dict[str, str]) -> int | None:
    if not path:
        return None
    m = _ENTRY.match(path)
    if m:
        return int(m.group(1))
    best = ""
    for prefix in locations:
        inside = path == prefix or path.startswith((prefix + ".", prefix + "["))
        if inside and len(prefix) > len(best):
            best = prefix
    if best:
        m = _ENTRY.match(locations[best])
        if m:
            return int(m.group(1))
    return None


class _EntryFinder:
    """:func:`_entry_of` for many paths of one record (the same answers; a test compares them): the
    record's locations are indexed once, and a path is looked up by its own prefixes, longest first,
    rather than by scanning every location for every path."""

    _STEP = re.compile(r"(\.[^.\[]+|\[\d+\])$")

    def __init__(self, locations: dict[str, str]):
        self.entry: dict[str, int | None] = {}
        for prefix, loc in locations.items():
            m = _ENTRY.match(loc)
            self.entry[prefix] = int(m.group(1)) if m else None

    def find(self, path: str | None) -> int | None:
        if not path:
            return None
        m = _ENTRY.match(path)
        if m:
            return int(m.group(1))
        while path:
            if path in self.entry:
                return self.entry[path]
            cut = self._STEP.search(path)
            if cut is None:
                return None
            path = path[: cut.start()]
        return None


@dataclass(frozen=True)
class Analysis:
    """What a hook call concluded, before it is dressed as cards (cards carry the hookInstance)."""

    # (alert, selected draft orders it involves, reference of the draft whose removal is recommended)
    alerts: tuple[tuple[Any, tuple[DraftOrder, ...], str | None], ...]
    unchecked: tuple[tuple[DraftOrder, str], ...]  # draft orders that could not be read, and why
    problems: tuple[dict[str, str], ...] = ()  # a record that cannot be assessed safely
    mode: str = "drug-safety-only"  # Assessment.mode: said at the top of every card


_analysis_cache: OrderedDict[bytes, Analysis] = OrderedDict()
CACHE_SIZE = 512
_cache_lock = threading.Lock()  # analyses run on pool threads; the caches are shared with the event loop


def _cache_key(svc: ServiceDef, body: CdsRequest, values: dict[str, Any], as_of: dt.date) -> bytes:

    # Unsorted: the same request body gives the same bytes (JSON objects keep their order), and
    # sorting tripled the cost; a body with its keys reordered merely misses the cache.
    raw = orjson.dumps([svc.id, as_of.isoformat(), id(get_kb()), body.context, values], default=str)
    return hashlib.sha256(raw).digest()


def cached_analysis(key: bytes) -> Analysis | None:
    with _cache_lock:
        hit = _analysis_cache.get(key)
        if hit is not None:
            _analysis_cache.move_to_end(key)
        return hit


def analyse(svc: ServiceDef, body: CdsRequest, values: dict[str, Any], as_of: dt.date,
            key: bytes | None = None) -> Analysis:
    """Read the patient and assess. The result depends only on the inputs, the knowledge base and
    ``as_of``, so identical calls (an EHR reopening the same chart) reuse it from a bounded cache.

    Every chart is assessed: the drug-safety rules run whatever the diagnosis (the service sees every
    patient an EHR opens); the IPEX plan is never a card. The request's structure is checked first
    (the same 422s for every patient)."""
    asm = assemble(svc, body, values)
    key = key or _cache_key(svc, body, values, as_of)
    hit = cached_analysis(key)
    if hit is not None:
        return hit
    result = _analyse(svc, body, asm, as_of)
    with _cache_lock:
        _analysis_cache[key] = result
        if len(_analysis_cache) > CACHE_SIZE:
            _analysis_cache.popitem(last=False)
    return result


def _analyse(svc: ServiceDef, body: CdsRequest, asm: Assembled, as_of: dt.date) -> Analysis:

    kb = get_kb()
    if asm.fixes:
        log.debug("hook %s: %d lenient repair(s): %s", body.hookInstance, len(asm.fixes), "; ".join(asm.fixes[:5]))
    locations: dict[str, str] = {}
    try:
        record, warnings, locations = load_record(asm.bundle)
        data = normalize(record, kb, as_of)
    except PatientInputError as exc:
        # A record that cannot be read safely: say so; silence would read as "no problem".
        from ...patient.errors import InputIssue, issue_in_words

        issues = tuple({"path": asm.origin(relocate(i.path, locations)), "expected": i.expected, "got": i.got,
                        # in clinical words for the card: 'the draft order for X (MedicationRequest m1): its dose ...'
                        "sentence": issue_in_words(InputIssue(relocate(i.path, locations), i.expected, i.got),
                                                   asm.bundle)}
                       for i in exc.issues)
        log.info("hook %s: patient data cannot be assessed (%d issue(s))", body.hookInstance, len(issues))
        return Analysis((), (), issues)
    data.warnings = warnings + data.warnings
    # 'auto': the mode of an assessment; the IPEX plan itself never becomes a card (cards are alerts).
    mode, found = assess_alerts(data, kb=kb, as_of=as_of, ipex_plan="auto")
    order_hook = svc.hook in ORDER_HOOKS
    # Which draft orders an alert involves; a call without drafts (patient-view) involves none.
    entries = _EntryFinder(locations if asm.drafts else {})
    alerts = []
    for alert in found:
        involved = []
        vaccine_drafts: set[str] = set()  # drafts that order a vaccine
        for t in alert.triggers if asm.drafts else ():
            idx = entries.find(t.path)
            if idx is not None and idx in asm.drafts:
                if asm.drafts[idx] not in involved:
                    involved.append(asm.drafts[idx])
                if t.kind == "vaccine":
                    vaccine_drafts.add(asm.drafts[idx].reference)
        if order_hook and not any(d.selected for d in involved):
            continue
        chosen = tuple(d for d in involved if d.selected)
        alerts.append((alert, chosen, _preferred(chosen, vaccine_drafts)))
    unchecked = []
    if order_hook:
        read = {_entry_of(p, {}) for p in locations.values()}
        for idx, d in asm.drafts.items():
            if d.selected and idx not in read:
                why = _invalid_draft(asm.bundle, idx) or next(
                    (w.message for w in warnings if _entry_of(w.path, {}) == idx),
                    "the order could not be read as a medication")
                unchecked.append((d, why))
    return Analysis(tuple(alerts), tuple(unchecked), mode=mode)


def _invalid_draft(bundle: dict[str, Any], idx: int) -> str | None:
    """Why a draft order is not valid FHIR R4, in clinical words ('its dose (doseQuantity.value) should be a
    number; it is "ten"'), or None when it is (then the reader's warning says why it was not read)."""
    from ...patient.errors import issue_in_words
    from ...patient.fhir_types import MODELS, InvalidResource, parse

    entries = bundle.get("entry") or []
    raw = entries[idx].get("resource") if 0 <= idx < len(entries) and isinstance(entries[idx], dict) else None
    if not isinstance(raw, dict) or raw.get("resourceType") not in MODELS:
        return None
    try:
        parse(raw, f"$.entry[{idx}].resource")
    except InvalidResource as exc:
        return f"the order is not valid FHIR R4: {issue_in_words(exc.issue, bundle, named=False)}."
    return None


def _preferred(drafts: tuple[DraftOrder, ...], vaccine_drafts: set[str]) -> str | None:
    """Of several draft orders an alert involves, the one whose removal is recommended; None when no
    single option is clearly the smaller change (then all are offered as equal). Today one case: a
    live vaccine drafted with an immunosuppressant, where the vaccine is the one to drop (the labels
    contraindicate the live vaccine under immunosuppression; it can be given later, while the
    immunosuppressant treats the disease)."""
    if len(drafts) < 2:
        return None
    vaccines = [d.reference for d in drafts if d.reference in vaccine_drafts]
    return vaccines[0] if len(vaccines) == 1 else None


_template_cache: OrderedDict[tuple[int, str, bool], tuple[CardTemplate, ...]] = OrderedDict()


def _templates(analysis: Analysis, base: str, smart: bool = True) -> tuple[CardTemplate, ...]:

    key = (id(analysis), base, smart)
    with _cache_lock:
        hit = _template_cache.get(key)
        if hit is not None and _template_owner.get(key) is analysis:
            return hit
    names = _drug_names()
    out = tuple(alert_template(alert, base=base, drug_names=names, drafts=list(drafts), mode=analysis.mode,
                               preferred=preferred, smart=smart)
                for alert, drafts, preferred in analysis.alerts)
    out += tuple(unchecked_template(base, d.reference, d.drug_label, why) for d, why in analysis.unchecked)
    if analysis.problems:
        out += (unassessable_template(base, list(analysis.problems)),)
    # Critical cards first, then warning, then info (stable: alerts keep the assessment's order).
    out = tuple(sorted(out, key=lambda t: INDICATOR_RANK.get(t.card.get("indicator", "info"), 2)))
    with _cache_lock:
        _template_cache[key] = out
        _template_owner[key] = analysis
        if len(_template_cache) > CACHE_SIZE:
            old, _ = _template_cache.popitem(last=False)
            _template_owner.pop(old, None)
    return out


_template_owner: dict[tuple[int, str, bool], Analysis] = {}
_names: list[tuple[Any, dict[str, str]]] = []  # [(knowledge base, drug id -> name)], the current one only


def _drug_names() -> dict[str, str]:
    kb = get_kb()
    if not _names or _names[0][0] is not kb:
        _names[:] = [(kb, {d.id: d.name for d in kb.drugs.values()})]
    return _names[0][1]


def evaluate(svc: ServiceDef, body: CdsRequest, values: dict[str, Any], base: str,
             as_of: dt.date | None = None, key: bytes | None = None,
             smart: bool = True) -> list[tuple[dict[str, Any], CardTemplate]]:
    """The synchronous, CPU-bound part: read the patient, assess, build cards (with their templates,
    which name the alert and rule behind each card)."""
    as_of = as_of or dt.datetime.now(dt.UTC).date()
    analysis = analyse(svc, body, values, as_of, key)
    return [(t.instantiate(body.hookInstance), t) for t in _templates(analysis, base, smart)]


async def run_hook(svc: ServiceDef, body: CdsRequest, settings: Settings, base: str, issuer: str | None = None,
                   pool: Any = None, *, inline: bool = False) -> list[tuple[dict[str, Any], CardTemplate]]:
    """Gather the prefetch (fetching what is missing from a FHIR server listed for ``issuer``), then
    judge. A chart judged before (an EHR reopening it) is answered from the cache on the event loop;
    a new one is analysed on ``pool`` (:class:`~ipexrx.service.pool.AnalysisPool`: bounded, 503 when
    saturated), so a large chart never stalls the other requests. ``inline``: the request carried a
    small chart whole, which may be judged on the event loop; a chart with fetched data never is (the
    server may have sent megabytes however small the request was)."""
    ctx = body.context
    pid = ctx.get("patientId")
    if not isinstance(pid, str) or not pid.strip():
        raise _bad("$.context.patientId", "the FHIR id of the patient (a non-empty string)", repr(pid),
                   "context.patientId is required")
    gathered = await gather(body, settings, issuer)
    as_of = dt.datetime.now(dt.UTC).date()
    key = _cache_key(svc, body, gathered.values, as_of)
    # a "smart" link to the app only when the app can be launched (issuers and a client id configured)
    smart = bool(settings.smart_issuers and settings.smart_client_id)
    analysis = cached_analysis(key)
    if analysis is not None:  # same context and prefetch as a call that was assembled and judged before
        return [(t.instantiate(body.hookInstance), t) for t in _templates(analysis, base, smart)]
    if pool is None or (inline and not gathered.fetched):
        return evaluate(svc, body, gathered.values, base, as_of, key, smart)
    result: list[tuple[dict[str, Any], CardTemplate]] = await pool.run(
        evaluate, svc, body, gathered.values, base, as_of, key, smart)
    return result


def warm_up(base: str = "http://localhost") -> int:
    """Evaluate the packaged sample request of every service once, the whole way to cards.

    Why: pydantic builds each validator, and our readers import their helpers, on first use;
    without this the first real CDS call of each worker stalls for a hundred milliseconds or
    more, which is exactly the tail latency an EHR notices. Returns the number of cards produced
    (a sanity check: the samples are IPEX patients with alerts)."""
    from . import samples

    cards = 0
    for svc in SERVICES.values():
        body = CdsRequest.model_validate(samples.load(svc.hook.replace("-", "_")))
        cards += len(evaluate(svc, body, dict(body.prefetch or {}), base))
    _analysis_cache.clear()
    _template_cache.clear()
    _template_owner.clear()
    return cards
