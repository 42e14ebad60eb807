"""Assessment alerts -> CDS Hooks cards.

A card must stand on its own in an EHR side panel: a one-sentence summary under 140 characters,
the indicator taken from the alert severity, a Markdown detail with what to do, why, and every
source, and a link (``source.url``) to our page for the drug or rule so the clinician can read the
full monograph. Suggestions are offered only where the action is obvious and reversible (removing
a draft order that duplicates or is contraindicated with what the patient takes); they are
options, never orders. When a card offers several and one is clearly the smaller change (today:
removing a drafted live vaccine rather than the immunosuppressant drafted with it; see
``engine._preferred``), that one is ``isRecommended``.

Links: a ``smart`` link opens the ipexrx SMART app (``{base}/smart/launch``) with an ``appContext``
naming the drug, the rule and the levels the card is about; ``absolute`` links open the monograph
and the rule on this server.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from ...memo import remembered
from ...patient.errors import InputIssue, issue_in_words
from .models import Card, Coding, Source

CARD_NAMESPACE = uuid.UUID("5b0f3f7e-8f57-4f4e-9a34-1f1f0ad1c0de")
TOPIC_SYSTEM = "https://ipexrx.org/fhir/CodeSystem/alert-rule"
OVERRIDE_SYSTEM = "https://ipexrx.org/fhir/CodeSystem/override-reason"
SUMMARY_MAX = 139  # the spec asks for "<140 characters"
INDICATOR_RANK = {"critical": 0, "warning": 1, "info": 2}
# The first line of every alert card's detail: which mode the assessment ran in (Assessment.mode).
MODE_LINE = {
    "ipex": "_IPEX (FOXP3) chart: medication safety check._",
    "ipex-like": "_IPEX-like disorder in the chart: medication safety check._",
    "ipex-unconfirmed": "_IPEX suspected (not genetically confirmed): medication safety check._",
    "ipex-plan-on-request": "_Medication safety check (no IPEX or IPEX-like diagnosis in this chart)._",
    "drug-safety-only": "_Medication safety check only: no IPEX or IPEX-like diagnosis in this chart, so no IPEX "
                        "plan._",
}
NO_SOURCE = "No source is recorded for this alert in the knowledge base (a content gap); check the monograph."

# Editorial set (ipexrx's own, not from a terminology): why a clinician may go ahead despite a card.
# Offered on warning and critical cards (OVERRIDE_INDICATORS); info cards need no reason to be passed by.
OVERRIDE_INDICATORS = ("critical", "warning")
OVERRIDE_REASONS = [
    Coding(system=OVERRIDE_SYSTEM, code="benefit-outweighs-risk", display="Benefit outweighs the risk; will monitor"),
    Coding(system=OVERRIDE_SYSTEM, code="already-addressed", display="Already addressed (plan or monitoring in place)"),
    Coding(system=OVERRIDE_SYSTEM, code="specialist-decision", display="Decided with the IPEX / transplant team"),
    Coding(system=OVERRIDE_SYSTEM, code="record-incomplete", display="The record is incomplete or wrong"),
    Coding(system=OVERRIDE_SYSTEM, code="not-applicable", display="Does not apply to this patient"),
]
_OVERRIDE_WIRE = tuple(c.model_dump() for c in OVERRIDE_REASONS)

_FAMILY_ANCHOR = {"interaction": "interactions", "duplication": "identity", "screening": "screening",
                  "monitoring": "monitoring", "result": "monitoring", "vaccine": "safety", "infection": "safety",
                  "dosing": "evidence"}
_FAMILY_TITLE = {"interaction": "Drug interaction", "duplication": "Duplicate therapy", "screening": "Screening",
                 "monitoring": "Monitoring", "result": "Result out of range", "vaccine": "Vaccination",
                 "infection": "Infection", "dosing": "Dosing", "record": "Record"}


_NAMESPACE_BYTES = CARD_NAMESPACE.bytes


def card_uuid(hook_instance: str, seed: str) -> str:
    """Card and suggestion uuids: stable within one hook call, un-guessable across calls.

    The RFC 4122 name-based (SHA-1) uuid of ``uuid.uuid5(CARD_NAMESPACE, hook_instance + seed)``, written
    out without building ``uuid.UUID`` objects (a call makes two uuids per card; the objects cost five
    times the hash). A test compares it with ``uuid.uuid5``."""
    h = bytearray(hashlib.sha1(_NAMESPACE_BYTES + (hook_instance + seed).encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50  # version 5
    h[8] = (h[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


@dataclass(frozen=True)
class CardTemplate:
    """A wired card without its uuids, so a cached analysis is dressed per call in microseconds."""

    card: dict[str, Any]
    seed: str
    suggestion_seeds: tuple[str, ...] = ()
    alert_id: str = ""
    rule: str = ""

    def instantiate(self, hook_instance: str) -> dict[str, Any]:
        out = {**self.card, "uuid": card_uuid(hook_instance, self.seed)}
        if "suggestions" in out:
            out["suggestions"] = [{**sg, "uuid": card_uuid(hook_instance, seed)}
                                  for sg, seed in zip(out["suggestions"], self.suggestion_seeds, strict=True)]
        return out


@dataclass(frozen=True)
class DraftOrder:
    """A draft order of an order-select / order-sign call, as the EHR names it."""

    reference: str  # "MedicationRequest/103"
    drug_label: str
    selected: bool


def shorten(text: str, limit: int = SUMMARY_MAX) -> str:
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:.") + "…"


EHR_TEXT_MAX = 60
_MARKUP = str.maketrans("", "", "<>`*_[]|\\#{}")


def plain_text(text: str, limit: int = EHR_TEXT_MAX) -> str:
    """Text that came from the EHR (a drug name typed into an order), made safe to show back in a
    card's summary, suggestion label or action: no control, format or bidirectional-override
    characters, no markup characters, whitespace collapsed, at most ``limit`` characters."""
    out = []
    for ch in str(text):
        cat = unicodedata.category(ch)
        if cat == "Cf":  # zero-width and bidi controls: dropped
            continue
        out.append(" " if cat[0] in "CZ" else ch)
    return shorten("".join(out).translate(_MARKUP), limit) or "an unnamed medicine"


_MD: dict[str, str] = {}


def _md(text: str) -> str:
    """Plain text safe inside GitHub-flavoured Markdown (no raw HTML, no accidental links).

    Remembered per text (bounded): most texts of a card are the knowledge base's own (what to do, evidence,
    rule names) and come back on every chart that raises the same alert."""
    hit = _MD.get(text)
    if hit is None:
        hit = " ".join(str(text).split()).replace("<", "&lt;").replace(">", "&gt;").replace("[", "\\[") \
            .replace("]", "\\]")
        if len(_MD) >= 4_000:  # a few MB at most
            _MD.clear()
        _MD[text] = hit
    return hit


def _code(text: str) -> str:
    """Text for inside a Markdown code span (no escapes apply there; only backticks must go)."""
    return " ".join(str(text).split()).replace("`", "'")


_SOURCE_LINES: dict[Any, tuple[object, Any]] = {}


def _source_line(ref: Any, base: str) -> str:
    """The Markdown line citing ``ref``; made once per source and server (the references are the
    knowledge base's shared, frozen objects, and a few dozen sources are cited on every card)."""
    return remembered(_SOURCE_LINES, (id(ref), base), ref, lambda: _new_source_line(ref, base))


def _new_source_line(ref: Any, base: str) -> str:
    title = ref.title or ref.source
    if ref.section:
        title += f", {ref.section}"
    elif ref.locator:
        title += f" §{ref.locator}"
    anchor = f"src-{ref.source}-{ref.locator}" if ref.locator else f"src-{ref.source}"
    line = f"- [{_md(title)}]({base}/sources#{anchor})"
    if ref.doi:
        line += f" — [doi:{_md(ref.doi)}](https://doi.org/{ref.doi})"
    elif ref.pmid:
        line += f" — [PMID {ref.pmid}](https://pubmed.ncbi.nlm.nih.gov/{ref.pmid}/)"
    return line


def detail_markdown(alert: Any, base: str, extra: list[str] | None = None, mode: str | None = None) -> str:
    parts = [MODE_LINE[mode]] if mode in MODE_LINE else []
    parts += [f"**What to do:** {_md(alert.action)}", f"**Why:** {_md(alert.reasoning)}"]
    if alert.evidence:
        parts.append(f"**Evidence:** {_md(alert.evidence)}")
    parts.extend(extra or [])
    if alert.sources:
        seen: set[str] = set()
        lines = []
        for ref in alert.sources:
            line = _source_line(ref, base)
            if line not in seen:
                seen.add(line)
                lines.append(line)
        parts.append("**Sources**\n\n" + "\n".join(lines))
    else:  # never silently: the reader must know this line is unsupported by a citation
        parts.append(f"**Sources**\n\n{NO_SOURCE}")
    # the rule by its readable name (as on the /rules page); its id stays in the link's anchor only
    title = alert.rule.split(".", 1)[-1].replace("_", " ").capitalize()
    parts.append(f"Rule: [{_md(title)}]({base}/rules#rule-{alert.rule}) · "
                 "_ipexrx supports, and never replaces, clinical judgement._")
    return "\n\n".join(parts)


def card_source(alert: Any, base: str, drug_names: dict[str, str]) -> dict[str, Any]:
    """The card's ``source`` (wire form): the monograph of the alert's drug, else the rules page."""
    drug = next((t.ref for t in alert.triggers if t.kind == "drug" and t.ref in drug_names), None)
    topic = {"system": TOPIC_SYSTEM, "code": alert.rule,
             "display": _FAMILY_TITLE.get(alert.family, alert.family.title())}
    if drug is not None:
        anchor = _FAMILY_ANCHOR.get(alert.family, "")
        return {"label": f"ipexrx: {drug_names[drug]} monograph",
                "url": f"{base}/drugs/{drug}" + (f"#{anchor}" if anchor else ""), "topic": topic}
    return {"label": "ipexrx assessment rules", "url": f"{base}/rules#rule-{alert.rule}", "topic": topic}


SMART_LAUNCH_PATH = "/smart/launch"


def app_context(alert: Any, drug_names: dict[str, str]) -> str:
    """The ``appContext`` of the card's SMART link: what the card is about, so the app opens on it.
    A compact JSON object: ``rule``, ``drugs`` (knowledge-base ids), ``levels`` (each lab result the
    alert cites, as the record gave it, value with unit and date)."""
    ctx: dict[str, Any] = {"rule": alert.rule}
    drugs = [t.ref for t in alert.triggers if t.kind == "drug" and t.ref in drug_names]
    if drugs:
        ctx["drugs"] = list(dict.fromkeys(drugs))
    levels = [{"test": t.ref, "result": t.detail} for t in alert.triggers if t.kind == "lab" and t.detail]
    if levels:
        ctx["levels"] = levels
    try:  # orjson writes what json.dumps(separators=(",", ":"), ensure_ascii=False) writes, 20 times faster
        return orjson.dumps(ctx).decode()
    except TypeError:  # a lone surrogate (text read by a parser other than orjson): the standard library copes
        return json.dumps(ctx, separators=(",", ":"), ensure_ascii=False)


def card_links(alert: Any, base: str, drug_names: dict[str, str], smart: bool = True) -> list[dict[str, Any]]:
    """A ``smart`` link to the ipexrx app (the EHR adds ``iss`` and ``launch`` and hands the app the
    ``appContext``) when the app can be launched, then ``absolute`` links to the monograph of the card's
    drug and to its rule (wire form)."""
    links = [{"label": "Open the ipexrx app for this patient", "url": f"{base}{SMART_LAUNCH_PATH}", "type": "smart",
              "appContext": app_context(alert, drug_names)}] if smart else []
    drug = next((t.ref for t in alert.triggers if t.kind == "drug" and t.ref in drug_names), None)
    if drug is not None:
        links.append({"label": shorten(f"{drug_names[drug]} monograph (ipexrx reference)", 80),
                      "url": f"{base}/drugs/{drug}", "type": "absolute"})
    links.append({"label": "The rule behind this card", "url": f"{base}/rules#rule-{alert.rule}", "type": "absolute"})
    return links


def alert_wire(
    alert: Any,
    *,
    hook_instance: str | None,
    base: str,
    drug_names: dict[str, str],
    drafts: list[DraftOrder] | None = None,
    mode: str | None = None,
    preferred: str | None = None,
    smart: bool = True,
) -> dict[str, Any]:
    """One card for one alert, as the JSON the EHR receives; ``drafts`` are the draft orders the alert
    involves; ``mode`` (the assessment's) is said on the detail's first line; ``preferred`` is the
    reference of the draft whose removal is recommended (see the module docstring), marked only among
    two or more options. ``hook_instance`` None: a template's card, whose uuids are left empty for
    :meth:`CardTemplate.instantiate` to fill (hashing them here would be thrown away).

    Why a plain dict, not a :class:`Card`: a CDS call builds a card for every alert of every chart an
    EHR opens, and building and dumping the pydantic models was a third of the card's cost. The wire
    form is exactly what ``Card(...).wire()`` gives (optional fields left out, never null, the model's
    key order); :func:`alert_card` validates it, and the tests check every card the services send
    against the strict models."""
    drafts = drafts or []
    suggestions: list[dict[str, Any]] = []
    removable = alert.family == "duplication" or (
        alert.severity.value == "critical" and alert.family in ("interaction", "vaccine"))
    if removable:
        for d in drafts:
            label = f"Remove the draft order for {plain_text(d.drug_label)}"
            sg: dict[str, Any] = {"label": shorten(label, 100), "uuid": "" if hook_instance is None else
                                  card_uuid(hook_instance, f"|{alert.id}|delete|{d.reference}")}
            if len(drafts) > 1 and d.reference == preferred:
                sg["isRecommended"] = True
            # The EHR shows the description; it names the drug, the resourceId says which order.
            sg["actions"] = [{"type": "delete", "description": label, "resourceId": d.reference}]
            suggestions.append(sg)
    card: dict[str, Any] = {
        "uuid": "" if hook_instance is None else card_uuid(hook_instance, f"|{alert.id}"),
        "summary": shorten(alert.summary),
        "detail": detail_markdown(alert, base, mode=mode),
        "indicator": alert.severity.value,
        "source": card_source(alert, base, drug_names),
    }
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one"
    if alert.severity.value in OVERRIDE_INDICATORS:
        card["overrideReasons"] = [dict(c) for c in _OVERRIDE_WIRE]
    card["links"] = card_links(alert, base, drug_names, smart)
    return card


def alert_card(alert: Any, **kwargs: Any) -> Card:
    """:func:`alert_wire` as a validated :class:`Card` (arguments as there)."""
    return Card.model_validate(alert_wire(alert, **kwargs))


def alert_template(alert: Any, *, base: str, drug_names: dict[str, str], drafts: list[DraftOrder],
                   mode: str | None = None, preferred: str | None = None, smart: bool = True) -> CardTemplate:
    card = alert_wire(alert, hook_instance=None, base=base, drug_names=drug_names, drafts=drafts, mode=mode,
                      preferred=preferred, smart=smart)
    seeds = tuple(f"|{alert.id}|delete|{s['actions'][0]['resourceId']}" for s in card.get("suggestions", ()))
    return CardTemplate(card, f"|{alert.id}", seeds, alert_id=alert.id, rule=alert.rule)


def unchecked_template(base: str, reference: str, label: str, why: str) -> CardTemplate:
    return CardTemplate(unchecked_order_card("", base, reference, label, why).wire(), f"|unchecked|{reference}",
                        alert_id=f"unchecked:{reference}", rule="unchecked-order")


def unassessable_template(base: str, problems: list[dict[str, str]]) -> CardTemplate:
    """A warning card for a record that cannot be assessed safely (e.g. a negative dose, an impossible
    weight, a lab value without a unit): the checks did not run, and the EHR must say so."""
    lines = [f"- {_md(_sentence(p))}" for p in problems[:10]]
    more = f"\n- ... and {len(problems) - 10} more problems not shown" if len(problems) > 10 else ""
    card = Card(
        uuid=card_uuid("", "|unassessable"),
        summary=shorten(f"ipexrx could not check this patient's medicines: {len(problems)} "
                        f"problem{'' if len(problems) == 1 else 's'} in the record"),
        detail="**Why:** the record holds data that cannot be used safely, so no interaction, duplication, "
        "screening or monitoring check was made.\n\n" + "\n".join(lines) + more
        + "\n\n**What to do:** correct the record, or check the medicines against the labels (and, for IPEX, "
        "the IPEX reference) by hand."
        "\n\n_ipexrx supports, and never replaces, clinical judgement._",
        indicator="warning",
        source=Source(label="ipexrx IPEX medication reference", url=f"{base}/assess"),
        overrideReasons=list(OVERRIDE_REASONS),
    )
    return CardTemplate(card.wire(), "|unassessable", alert_id="unassessable", rule="unassessable-record")


def _sentence(problem: dict[str, str]) -> str:
    """One problem of an unassessable record as a sentence: the engine's, in clinical words (the resource, then
    the element in words, see ``patient.errors.issue_in_words``), else made here from its expected and got."""
    text = problem.get("sentence") or issue_in_words(InputIssue(problem["path"], problem["expected"], problem["got"]))
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def unchecked_order_card(hook_instance: str, base: str, reference: str, label: str, why: str) -> Card:
    """An info card for a draft order we could not read, so silence is never mistaken for "no problem"."""
    return Card(
        uuid=card_uuid(hook_instance, f"|unchecked|{reference}"),
        summary=shorten(f"ipexrx could not check the draft order for {plain_text(label)}"),
        detail=f"**Why:** {_md(why)}\n\nThe order was not compared with the patient's current medicines; check it "
        "against the IPEX medication reference by hand.\n\n_ipexrx supports, and never replaces, clinical judgement._",
        indicator="info",
        source=Source(label="ipexrx IPEX medication reference", url=f"{base}/drugs"),
    )
