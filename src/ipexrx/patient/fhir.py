"""Read a FHIR R4 Bundle into a patient record: the one FHIR reader of every face (``assess``, the
CDS service, the population screen's safety check; dosing parses with the same typed models).

Each entry becomes a typed view (:mod:`.fhir_types`) that checks the elements the rules read, in
FHIR's JSON types, and ignores the rest (microseconds a resource). ``strict=True`` (the commands'
``--strict``) also validates every element with fhir.resources' R4B models first (R4B changed
nothing in the resources we read), and skips an entry that fails, with the same kind of warning.

Policy -- real EHR exports are imperfect:

* each entry is validated on its own; an invalid or unsupported entry is skipped with a warning
  saying where it was and why, the rest is used;
* a lab value without a usable unit, date or code is skipped with a warning (it is never guessed);
  the monitoring rules then see it as missing, which is the safe reading;
* only what would make the whole assessment unsafe is an error: not a Bundle, no usable Patient,
  a negative or absurd dose, an impossible weight. Errors are located by Bundle path
  (``$.entry[3].resource.dosage[0]...``).

The result is the same :class:`PatientRecord` our JSON format produces, so both inputs go through
exactly the same resolution and rules.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any

from ..knowledge.loader import KnowledgeBase, get_kb
from .codes import HsctCode, hsct_code, manifestation_for_code, might_be_transplant
from .errors import InputIssue, MalformedInputError, PatientInputError, UnitError, element_words
from .fhir_types import InvalidResource, parse, strict_issue
from .hsct import HsctEvidence, combine, format_date, read_date, read_hsct_text
from .labs import QUALITATIVE, lab_by_loinc, lab_by_name
from .medtext import read_product_text
from .normalize import InputWarning
from .units import QUANTITIES, accepts, norm_unit, normalize_dose, volume_ml
from .words import Words

LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
ATC_SYSTEMS = ("http://www.whocc.no/atc", "https://www.whocc.no/atc", "http://www.whocc.no/atc/",
               "urn:oid:2.16.840.1.113883.6.73")
UCUM = "http://unitsofmeasure.org"
HPO_SYSTEMS = ("http://purl.obolibrary.org/obo/hp.owl", "http://human-phenotype-ontology.org",
               "https://hpo.jax.org", "http://purl.obolibrary.org/obo/hp")
SNOMED = "http://snomed.info/sct"
ICD10_SYSTEMS = ("http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm")
WEIGHT_LOINC = {"29463-7", "3141-9"}
HEIGHT_LOINC = {"8302-2", "8306-3"}
ROUTE_SNOMED = {"26643006": "oral", "47625008": "iv", "34206005": "sc", "78421000": "im", "6064005": "topical",
                "37161004": "rectal", "447694001": "inhaled", "54485002": "ophthalmic",
                "46713006": "nasal", "45890007": "transdermal", "127490009": "enteral", "72607000": "intrathecal",
                "127492001": "enteral"}
ROUTE_TEXT = {"oral": "oral", "po": "oral", "by mouth": "oral", "iv": "iv", "intravenous": "iv", "sc": "sc",
              "subcutaneous": "sc", "subcut": "sc", "im": "im", "intramuscular": "im", "topical": "topical",
              "cutaneous": "topical", "skin": "topical", "rectal": "rectal", "pr": "rectal", "inhalation": "inhaled",
              "inhaled": "inhaled", "ophthalmic": "ophthalmic", "eye": "ophthalmic", "nasal": "nasal",
              "intranasal": "nasal", "transdermal": "transdermal", "enteral": "enteral", "nasogastric": "enteral",
              "ng tube": "enteral", "g tube": "enteral", "gastrostomy": "enteral", "intrathecal": "intrathecal"}
INFECTION_WORDS = Words(r"(infect|sepsis|septic|pneumonia|viremia|viraemia|bacteremia|bacteraemia|fungemia|"
                        r"candidiasis|aspergillosis|tuberculosis|abscess|cellulitis|colitis due to|"
                        r"cmv|cytomegalovirus|ebv|epstein|adenovir|varicella|herpes|zoster|pneumocystis|"
                        r"hepatitis b|covid|influenza|rsv)")
PATHOGEN_WORDS = re.compile(r"(cytomegalovirus|cmv|epstein[- ]barr|ebv|adenovirus|candida\w*|aspergill\w*|"
                            r"pseudomonas\w*|staphylococc\w*|klebsiella\w*|e\. ?coli|escherichia coli|"
                            r"pneumocystis\w*|mycobacterium tuberculosis|tuberculosis|hepatitis b|hbv|"
                            r"sars-cov-2|influenza|rsv|respiratory syncytial virus|varicella[- ]zoster|norovirus|"
                            r"rotavirus|clostridi\w* difficile)", re.I)
IPEX_WORDS = Words(r"\bipex\b|immun\w* dysregulation,? polyendocrinopathy")
FOXP3_VARIANT = re.compile(r"\b(c\.[0-9_+\-*]+[^\s,;)]*|p\.\(?[A-Z][a-z]{2}\d+[^\s,;]*)")

SUPPORTED = ("Patient", "Condition", "MedicationStatement", "MedicationRequest", "Medication", "Observation",
             "Procedure", "Immunization")


class _Ctx:
    def __init__(self) -> None:
        self.issues: list[InputIssue] = []
        self.warnings: list[InputWarning] = []
        self.locations: dict[str, str] = {}
        self.hsct: list[HsctEvidence] = []
        self.hsct_unclear: list[str] = []  # HSCT named with no status that can be read (hsct.unclear)

    def warn(self, path: str, message: str, code: str = "skipped") -> None:
        self.warnings.append(InputWarning(path=path, code=code, message=message))  # type: ignore[arg-type]


def _date(value: Any) -> dt.date | None:
    if isinstance(value, str):
        return _date_text(value[:10])
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return None


# Patterns of the hot paths, compiled once (a module-level pattern skips the re module's cache lookup).
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_IPEX_LIKE = Words(r"ipex[- ]like")
_IPEX_LIKE_GENE = re.compile(r"\b(IL2RA|CD25|STAT5B|LRBA|CTLA4|STAT1|STAT3|DEF6|BACH2)\b", re.I)
_HPO_ID = re.compile(r"HP:\d{7}")
_CVX_CODE = re.compile(r"\d{1,3}")
_RXCUI = re.compile(r"\d{1,8}")
_ATC_CODE = re.compile(r"[A-Z]\d{2}[A-Z]{2}\d{2}")


@lru_cache(maxsize=8192)
def _date_text(value: str) -> dt.date | None:
    """The day of a FHIR date/dateTime (its first 10 characters); None for a partial date. Cached:
    a chart repeats the same few dates across its resources."""
    if _FULL_DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _num(value: Any) -> float | None:
    if isinstance(value, Decimal | int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _codings(cc: Any) -> Sequence[Any]:
    """The codings of a CodeableConcept (none for a missing one); the typed view's own list, not a copy."""
    return (getattr(cc, "coding", None) or ()) if cc is not None else ()


def _text(cc: Any) -> str | None:
    if cc is None:
        return None
    if getattr(cc, "text", None):
        return str(cc.text)
    for c in _codings(cc):
        if c.display:
            return str(c.display)
    return None


def _code(cc: Any, *systems: str) -> str | None:
    for c in _codings(cc):
        if c.system in systems and c.code:
            return str(c.code)
    return None


def _validate(raw: dict[str, Any], path: str, ctx: _Ctx, strict: bool = False) -> Any | None:
    """The typed view of a resource, or None (and a located warning) when what we read of it is not
    FHIR R4 -- or, with ``strict``, when any element is not."""
    rtype = raw["resourceType"]
    issue = strict_issue(raw, path) if strict else None
    if issue is None:
        try:
            return parse(raw, path)
        except InvalidResource as exc:
            issue = exc.issue
    ctx.warn(path, f"{rtype} skipped: not valid FHIR R4 ({element_words(issue.path, path)}: expected "
                   f"{issue.expected}, got {issue.got})")  # the element in words; the warning's path is the resource
    return None


def _quantity_unit(q: Any) -> str | None:
    if q is None:
        return None
    if q.code and (q.system in (None, UCUM)):
        return str(q.code)
    return str(q.unit) if q.unit else None


def read_bundle(data: dict[str, Any], kb: KnowledgeBase | None = None, *, strict: bool = False,
                ) -> tuple[dict[str, Any], list[InputWarning], dict[str, str]]:
    """Convert a Bundle into our record dict, warnings, and a map record-path -> Bundle-path.

    ``kb`` supplies the SNOMED CT / ICD-10 condition codings (default: the standard knowledge base).
    ``strict``: validate every element of every entry with fhir.resources (slower; see module doc).
    """
    ctx = _Ctx()
    if data.get("resourceType") != "Bundle":
        raise MalformedInputError(InputIssue("$.resourceType", "'Bundle' (a FHIR R4 Bundle) or an ipexrx patient "
                                             "record", repr(data.get("resourceType"))), "not a FHIR Bundle")
    entries = data.get("entry")
    if not isinstance(entries, list):
        raise MalformedInputError(InputIssue("$.entry", "a list of Bundle entries", type(entries).__name__),
                                  "the Bundle has no entries")
    by_type: dict[str, list[tuple[str, Any]]] = {t: [] for t in SUPPORTED}
    for i, entry in enumerate(entries):
        path = f"$.entry[{i}].resource"
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            ctx.warn(f"$.entry[{i}]", "entry skipped: no resource with a resourceType")
            continue
        rtype = res["resourceType"]
        if rtype not in SUPPORTED:
            ctx.warn(path, f"{rtype} skipped: resource type not used by the assessment")
            continue
        model = _validate(res, path, ctx, strict)
        if model is not None:
            by_type[rtype].append((path, model))

    record: dict[str, Any] = {"format": "ipexrx-patient/1", "demographics": {}, "hsct": {},
                              "manifestations": [], "medications": [], "labs": [], "immunizations": [],
                              "infections": []}
    _patient(by_type["Patient"], record, ctx)
    _conditions(by_type["Condition"], record, ctx, kb)
    meds_by_ref = {f"Medication/{m.id}": m for _, m in by_type["Medication"] if m.id}
    for path, m in by_type["MedicationStatement"] + by_type["MedicationRequest"]:
        _medication(path, m, meds_by_ref, record, ctx, kb)
    for path, o in by_type["Observation"]:
        _observation(path, o, record, ctx)
    for path, p in by_type["Procedure"]:
        _procedure(path, p, record, ctx)
    for path, imm in by_type["Immunization"]:
        _immunization(path, imm, record, ctx)
    _hsct_record(record, ctx)
    if ctx.issues:
        raise PatientInputError(ctx.issues, "the FHIR Bundle cannot be assessed safely")
    return record, ctx.warnings, ctx.locations


def _patient(patients: list[tuple[str, Any]], record: dict[str, Any], ctx: _Ctx) -> None:
    if not patients:
        raise PatientInputError(InputIssue("$.entry", "one Patient resource", "none"), "the Bundle has no Patient")
    path, p = patients[0]
    for other, _ in patients[1:]:
        ctx.warn(other, "additional Patient skipped: a Bundle must describe one patient (the first is used)")
    record["id"] = p.id
    demo = record["demographics"]
    ctx.locations["$.demographics"] = path
    if p.gender in ("male", "female", "other", "unknown"):
        demo["sex"] = p.gender
    if p.birthDate is not None:
        d = _date(p.birthDate)
        if d is None and isinstance(p.birthDate, str) and re.fullmatch(r"\d{4}-\d{2}", p.birthDate):
            d = dt.date.fromisoformat(p.birthDate + "-15")
            ctx.warn(f"{path}.birthDate", f"partial birth date {p.birthDate}: the 15th of the month is used",
                     "incomplete")
        if d:
            demo["birth_date"] = d.isoformat()
            ctx.locations["$.demographics.birth_date"] = f"{path}.birthDate"


def _conditions(conds: list[tuple[str, Any]], record: dict[str, Any], ctx: _Ctx,
                kb: KnowledgeBase | None = None) -> None:
    diagnosis: dict[str, Any] | None = None
    for path, c in conds:
        vstatus = _code(c.verificationStatus, "http://terminology.hl7.org/CodeSystem/condition-ver-status")
        if vstatus in ("refuted", "entered-in-error"):
            ctx.warn(path, f"Condition skipped: verification status '{vstatus}'")
            continue
        cstatus = _code(c.clinicalStatus, "http://terminology.hl7.org/CodeSystem/condition-clinical")
        text = _text(c.code) or ""
        notes = " ".join(str(n.text) for n in (c.note or []) if n.text)
        if _IPEX_LIKE.found(text):
            gene = _IPEX_LIKE_GENE.search(text + " " + notes)
            diagnosis = {"type": "ipex-like", "disorder": gene.group(1) if gene else text}
            continue
        if IPEX_WORDS.found(text) or _is_ipex_code(c.code):
            # A provisional / differential IPEX Condition is suspected IPEX ('unconfirmed'); it never
            # downgrades a confirmed one read earlier.
            suspected = vstatus in ("provisional", "differential", "unconfirmed")
            if suspected and diagnosis is not None and diagnosis["type"] == "ipex":
                continue
            diagnosis = {"type": "unconfirmed" if suspected else "ipex"}
            m = FOXP3_VARIANT.search(notes) or FOXP3_VARIANT.search(text)
            if m:
                diagnosis["foxp3_variant"] = m.group(1)
            continue
        if _hsct_condition(path, c, text, ctx):  # history of HSCT: read whatever the clinical status
            continue
        if cstatus in ("resolved", "inactive", "remission"):
            continue
        if INFECTION_WORDS.found(text):
            pathogen = PATHOGEN_WORDS.search(text + " " + notes)
            onset = _date(c.onsetDateTime)
            inf: dict[str, Any] = {"name": text, "active": True}
            if pathogen:
                inf["pathogen"] = pathogen.group(1)
            if onset:
                inf["since"] = onset.isoformat()
            ctx.locations[f"$.infections[{len(record['infections'])}]"] = path
            record["infections"].append(inf)
            continue
        hpo = _code(c.code, *HPO_SYSTEMS)
        if hpo is None:
            for cd in _codings(c.code):
                if cd.code and _HPO_ID.fullmatch(str(cd.code)):
                    hpo = str(cd.code)
        entry: dict[str, Any] = {"hpo": hpo} if hpo else {}
        if text:
            entry["name"] = text
        if not hpo:
            mapped = next((mid for cd in _codings(c.code) if (mid := manifestation_for_code(cd.system, cd.code, kb))),
                          None)
            if mapped:
                entry["name"] = mapped  # a KB manifestation id, resolved like a name
            elif not text:
                first = next((cd for cd in _codings(c.code) if cd.code), None)
                if first is not None:
                    entry["name"] = f"{first.system or 'code'} {first.code}"
        if not entry:
            ctx.warn(path, "Condition skipped: no code or text")
            continue
        ctx.locations[f"$.manifestations[{len(record['manifestations'])}]"] = path
        record["manifestations"].append(entry)
    if diagnosis is None:
        ctx.warn("$.entry", "no IPEX or IPEX-like diagnosis Condition found: a chart without IPEX (drug-safety "
                 "checks only, no IPEX plan unless asked for)", "incomplete")
        diagnosis = {"type": "none"}
    record["diagnosis"] = diagnosis


_IPEX_CODES = {("http://snomed.info/sct", "724276006")}


def _is_ipex_code(cc: Any) -> bool:
    for c in _codings(cc):
        if (c.system, c.code) in _IPEX_CODES:
            return True
        if c.system and "orpha" in c.system.lower() and str(c.code).endswith("37042"):
            return True
        if c.system and "omim" in c.system.lower() and str(c.code).strip("#") == "304790":
            return True
    return False


_STATEMENT_STATUS = {"active": "active", "intended": "planned", "completed": "stopped", "stopped": "stopped",
                     "on-hold": "stopped", "not-taken": None, "entered-in-error": None, "unknown": "active"}
_REQUEST_STATUS = {"active": "active", "draft": "planned", "on-hold": "stopped", "completed": "stopped",
                   "stopped": "stopped", "cancelled": None, "entered-in-error": None, "unknown": "active"}


def _best_rxcui(codes: list[str], kb: KnowledgeBase | None) -> str | None:
    """Of a concept's RxNorm codings, the most specific one the knowledge base knows (a product before a
    brand before an ingredient), else the first: an EHR often sends the SCD beside its ingredient."""
    if len(codes) <= 1:
        return codes[0] if codes else None
    from .resolve import kb_index

    table = kb_index(kb or get_kb()).drugs.by_rxcui
    rank = {"product": 0, "brand": 1, "ingredient": 2}
    known = sorted((rank[table[c].kind], i, c) for i, c in enumerate(codes) if c in table)
    return known[0][2] if known else codes[0]


def _concentration_known(name: str | None, rxcui: str | None, kb: KnowledgeBase | None) -> bool:
    """Whether a dose in mL can become mg: the text gives a concentration, or the coded product has one."""
    if name and read_product_text(name).mg_per_ml is not None:
        return True
    if not rxcui:
        return False
    from .resolve import kb_index

    drugs = kb_index(kb or get_kb()).drugs
    hit = drugs.by_rxcui.get(rxcui)
    if hit is None or hit.product_id is None:
        return False
    product = drugs.products[hit.product_id][1]
    return len({c for st in product.strengths if (c := st.mg_per_ml()) is not None}) == 1


def _contained_medication(path: str, m: Any, ref: str, ctx: _Ctx) -> Any | None:
    """The contained Medication ``ref`` ('#id') points to, read with the same typed view."""
    for j, r in enumerate(m.contained or []):
        if r.get("resourceType") == "Medication" and f"#{r.get('id')}" == ref:
            return _validate(r, f"{path}.contained[{j}]", ctx)
    return None


def _medication(path: str, m: Any, meds_by_ref: dict[str, Any], record: dict[str, Any], ctx: _Ctx,
                kb: KnowledgeBase | None = None) -> None:
    rtype = m.get_resource_type()
    is_request = rtype == "MedicationRequest"
    status = (_REQUEST_STATUS if is_request else _STATEMENT_STATUS).get(m.status)
    if status is None:
        ctx.warn(path, f"{rtype} skipped: status '{m.status}'")
        return
    if is_request and m.intent in ("proposal", "plan") and status == "active":
        status = "planned"
    concept = m.medicationCodeableConcept
    name: str | None = None
    if concept is None and m.medicationReference is not None:
        ref = str(m.medicationReference.reference or "")
        med = _contained_medication(path, m, ref, ctx) if ref.startswith("#") else meds_by_ref.get(ref)
        concept = med.code if med is not None else None
        if concept is None and m.medicationReference.display:
            name = str(m.medicationReference.display)
    name = _text(concept) or name
    cvx = (_code(concept, CVX) or "").strip()
    if _CVX_CODE.fullmatch(cvx):  # a vaccine ordered as a medication (CVX-coded): read as a vaccination
        _vaccine_order(path, rtype, name, cvx, status, record, ctx)
        return
    rxcuis = [str(c.code) for c in _codings(concept) if c.system == RXNORM and c.code]
    rxcui = _best_rxcui(rxcuis, kb)
    atc = _code(concept, *ATC_SYSTEMS)
    if not name and not rxcui and not atc:
        ctx.warn(path, f"{rtype} skipped: no medication code or text")
        return
    i = len(record["medications"])
    rec: dict[str, Any] = {"drug": name or rxcui or atc, "status": status}
    if rxcui and _RXCUI.fullmatch(rxcui):
        rec["rxcui"] = rxcui
    if atc and _ATC_CODE.fullmatch(atc.strip().upper()):
        rec["atc"] = atc.strip().upper()
    dosages = (m.dosageInstruction if is_request else m.dosage) or []
    dkey = "dosageInstruction" if is_request else "dosage"
    if dosages:
        d = dosages[0]
        dr = (d.doseAndRate or [None])[0]
        q = getattr(dr, "doseQuantity", None) if dr is not None else None
        if q is not None and q.value is not None:
            qpath = f"{path}.{dkey}[0].doseAndRate[0].doseQuantity"
            unit = _quantity_unit(q)
            try:
                if volume_ml(float(q.value), unit) is not None and _concentration_known(name, rxcui, kb):
                    pass  # a volume of a known concentration: converted to mg when the record is normalised
                else:
                    normalize_dose(float(q.value), unit, qpath)
            except UnitError:
                ctx.warn(qpath, f"dose {q.value} {unit or '(no unit)'} not used: a dose needs a mass, mass/kg, mass/m2 "
                         "or IU unit (a volume needs the concentration); the drug is still checked, its dose is not")
            else:
                rec["dose"] = {"value": float(q.value), "unit": unit}
                ctx.locations[f"$.medications[{i}].dose"] = qpath
        route = _code(d.route, SNOMED)
        rtext = (_text(d.route) or "").strip().lower()
        if route in ROUTE_SNOMED:
            rec["route"] = ROUTE_SNOMED[route]
        elif rtext in ROUTE_TEXT:
            rec["route"] = ROUTE_TEXT[rtext]
        freq = _frequency(d)
        if freq:
            rec["frequency"] = freq
        bounds = getattr(getattr(getattr(d, "timing", None), "repeat", None), "boundsPeriod", None)
        if bounds is not None and _date(bounds.start):
            rec["start_date"] = _date(bounds.start).isoformat()  # type: ignore[union-attr]
    if not is_request:
        start = _date(m.effectiveDateTime) or _date(getattr(m.effectivePeriod, "start", None))
        end = _date(getattr(m.effectivePeriod, "end", None))
        if start:
            rec["start_date"] = start.isoformat()
        if end:
            rec["end_date"] = end.isoformat()
    elif "start_date" not in rec and _date(m.authoredOn) and status == "active":
        rec["start_date"] = _date(m.authoredOn).isoformat()  # type: ignore[union-attr]
    ctx.locations[f"$.medications[{i}]"] = path
    record["medications"].append(rec)


def _vaccine_order(path: str, rtype: str, name: str | None, cvx: str, status: str, record: dict[str, Any],
                   ctx: _Ctx) -> None:
    """A CVX-coded MedicationRequest/Statement: a current or draft order is a planned vaccination; a stopped
    or completed one does not say whether (or when) the dose was given, so it is named back, not read."""
    if status == "stopped":
        ctx.warn(path, f"{rtype} for vaccine CVX {cvx} skipped: a stopped or completed order does not say whether "
                 "or when it was given (send the Immunization)")
        return
    ctx.locations[f"$.immunizations[{len(record['immunizations'])}]"] = path
    record["immunizations"].append({"vaccine": name or cvx, "cvx": cvx, "status": "planned"})


def _frequency(d: Any) -> str | None:
    timing = getattr(d, "timing", None)
    if timing is None:
        return str(d.text) if getattr(d, "text", None) else None
    if timing.code is not None and _text(timing.code):
        return _text(timing.code)
    rep = timing.repeat
    if rep is not None and rep.frequency and rep.period and rep.periodUnit:
        unit = {"d": "day", "h": "hour", "wk": "week", "mo": "month"}.get(rep.periodUnit, rep.periodUnit)
        period = _num(rep.period)
        per = f"{int(period) if period and period == int(period) else period} {unit}s" if period != 1 else unit
        return f"{rep.frequency} per {per}"
    return str(d.text) if getattr(d, "text", None) else None


def _observation(path: str, o: Any, record: dict[str, Any], ctx: _Ctx) -> None:
    if o.status in ("entered-in-error", "cancelled"):
        ctx.warn(path, f"Observation skipped: status '{o.status}'")
        return
    date = _date(o.effectiveDateTime) or _date(getattr(o.effectivePeriod, "start", None)) or _date(o.issued)
    loinc = _code(o.code, LOINC)
    if loinc in WEIGHT_LOINC or loinc in HEIGHT_LOINC:
        _body(path, o, loinc, date, record, ctx)
        return
    parts: list[tuple[str, Any, str | None, str]] = []
    if o.component:
        for j, comp in enumerate(o.component):
            parts.append((f"{path}.component[{j}]", comp, _code(comp.code, LOINC), _text(comp.code) or ""))
    if o.valueQuantity is not None or o.valueString is not None or o.valueCodeableConcept is not None \
            or o.valueBoolean is not None or not o.component:
        parts.append((path, o, loinc, _text(o.code) or ""))
    for ppath, src, code, text in parts:
        kind = (lab_by_loinc(code) if code else None) or (lab_by_name(text) if text else None)
        if kind is None:
            ctx.warn(ppath, f"Observation '{text or code}' skipped: not a lab the rules use", "unknown-lab")
            continue
        if date is None:
            ctx.warn(ppath, f"{kind.label} skipped: no usable effective date (monitoring needs the date)")
            continue
        lab: dict[str, Any] = {"test": kind.id, "date": date.isoformat()}
        if kind.quantity == QUALITATIVE:
            value = _qualitative(src)
            if value is None:
                ctx.warn(ppath, f"{kind.label} skipped: no qualitative result")
                continue
            lab["value"] = value
        else:
            q = src.valueQuantity
            if q is None or q.value is None:
                ctx.warn(ppath, f"{kind.label} skipped: no numeric value")
                continue
            unit = _quantity_unit(q)
            # A drug level in nmol/L is read when the drug has a molar mass (checked again, with the
            # knowledge base, when the record is normalised; a drug without one is an error there).
            if not accepts(kind.quantity, unit, molar_mass=1.0 if kind.drug else None):
                ctx.warn(ppath, f"{kind.label} {q.value} skipped: unit {unit!r} is missing or not one we convert "
                         f"({', '.join(QUANTITIES[kind.quantity].accepted())}); never guessed")
                continue
            lab["value"] = float(q.value)
            lab["unit"] = unit
            high = _upper_limit(src, unit or "")
            if high is not None:
                lab["upper_limit"] = high
        if code:
            lab["loinc"] = code
        ctx.locations[f"$.labs[{len(record['labs'])}]"] = ppath
        record["labs"].append(lab)


def _upper_limit(src: Any, unit: str) -> float | None:
    """The upper reference limit of an Observation (or component) when it is given in the result's own
    unit (or without a unit); another unit is not converted here and the limit is left out."""
    for rr in getattr(src, "referenceRange", None) or []:
        high = getattr(rr, "high", None)
        if high is None or high.value is None or float(high.value) <= 0:
            continue
        hu = _quantity_unit(high)
        if hu is None or norm_unit(hu) == norm_unit(unit):
            return float(high.value)
    return None


def _qualitative(src: Any) -> str | bool | None:
    """A qualitative result from valueString, valueCodeableConcept, valueBoolean or interpretation."""
    if src.valueString:
        return str(src.valueString)
    if _text(src.valueCodeableConcept):
        return _text(src.valueCodeableConcept)
    if src.valueBoolean is not None:
        return bool(src.valueBoolean)
    for interp in getattr(src, "interpretation", None) or []:
        text = _text(interp)
        if text:
            return text
        code = _code(interp, "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation")
        if code in ("POS", "NEG", "IND"):
            return {"POS": "positive", "NEG": "negative", "IND": "indeterminate"}[code]
    return None


def _body(path: str, o: Any, loinc: str, date: dt.date | None, record: dict[str, Any], ctx: _Ctx) -> None:
    q = o.valueQuantity
    kind, field, key = ("weight", "weight_kg", "weight") if loinc in WEIGHT_LOINC else ("length", "height_cm", "height")
    if q is None or q.value is None:
        ctx.warn(path, f"{key} skipped: no value")
        return
    unit = _quantity_unit(q)
    fn = QUANTITIES[kind].convert.get(norm_unit(unit)) if unit else None
    if fn is None:
        ctx.warn(path, f"{key} skipped: unit {unit!r} is missing or unknown")
        return
    demo = record["demographics"]
    prev = demo.get(f"_{field}_date")
    if prev is not None and date is not None and date < prev:
        return
    demo[field] = fn(float(q.value))
    if date is not None:
        demo[f"_{field}_date"] = date
    ctx.locations[f"$.demographics.{field}"] = f"{path}.valueQuantity.value"


def _hsct_codes(cc: Any) -> list[HsctCode]:
    return [h for c in _codings(cc) if (h := hsct_code(c.system, c.code)) is not None]


def _code_names(codes: list[HsctCode]) -> str:
    return "; ".join(f"{h.system} {h.code} '{h.label}'" for h in codes)


# Procedure.status -> what it says about the transplant. A procedure not done, entered in error,
# stopped part-way or of unknown status is not a transplant.
_PROCEDURE_HSCT = {"completed": "done", "preparation": "planned", "in-progress": "planned"}


def _procedure(path: str, p: Any, record: dict[str, Any], ctx: _Ctx) -> None:
    """An HSCT Procedure, by SNOMED CT, ICD-10-PCS or CPT code, or by its text (codes first).

    Every other procedure is noted as not used, as before; one whose code or name mentions a
    transplant, graft or stem cells that is not read as an HSCT (a kidney transplant, a donor
    lymphocyte infusion, a harvest, an unknown code) is named back as such."""
    text = _text(p.code) or ""
    codes = _hsct_codes(p.code)
    transplant = [h for h in codes if h.meaning in ("transplant", "status")]
    related = [h for h in codes if h.meaning == "related"]
    mention = read_hsct_text(text) if text else None
    if not transplant and mention is None:
        raw = " ".join([text, *(f"{c.display or ''}" for c in _codings(p.code))])
        if related:
            ctx.warn(path, f"Procedure {_code_names(related)} is not a transplant: not read as one (HSCT status "
                     "unchanged; such procedures follow or prepare a transplant - check the HSCT record)", "hsct")
            ctx.hsct_unclear.append(f"Procedure {_code_names(related)}, status {p.status}")
        elif might_be_transplant(raw):
            coded = "; ".join(f"{c.system or 'code'} {c.code}" for c in _codings(p.code) if c.code)
            ctx.warn(path, f"Procedure '{text or coded}'{f' ({coded})' if coded and text else ''} names a transplant "
                     "or graft that is not read as an HSCT (code and words not recognised as one): HSCT status "
                     "unchanged - check it", "hsct")
        else:
            ctx.warn(path, f"Procedure '{text}' skipped: only HSCT is used")
        return
    status = _PROCEDURE_HSCT.get(str(p.status))
    what = _code_names(transplant) if transplant else f"'{text}'"
    if status is None:
        ctx.warn(path, f"HSCT Procedure {what} not read as a transplant: status '{p.status}' (a procedure not done, "
                 "entered in error, stopped or of unknown status is not a transplant)", "hsct")
        ctx.hsct_unclear.append(f"HSCT Procedure {what}, status {p.status}")
        return
    if status == "done" and mention is not None and mention.status in ("planned", "not-done"):
        ctx.warn(path, f"HSCT Procedure {what} is 'completed' but its text says {mention.status} ('{text}'): "
                 "read as done from the status - check", "hsct")
    date = _date(p.performedDateTime) or _date(getattr(p.performedPeriod, "start", None))
    precision = "day"
    if date is None:
        d, precision = read_date(str(p.performedString or "") + " " + text)
        date = d
    kind = next((h.kind for h in transplant if h.kind), None) or (mention.kind if mention else None)
    when = format_date(date, precision)
    basis = f"Procedure {what}, status {p.status}{f', {when}' if when else ''}"
    if status == "planned":
        ctx.warn(path, f"HSCT Procedure {what} with status '{p.status}': read as planned, not as a transplant", "hsct")
    ctx.hsct.append(HsctEvidence(status, date, precision, kind, basis, path))


def _hsct_condition(path: str, c: Any, text: str, ctx: _Ctx) -> bool:
    """A Condition saying the patient was transplanted (status, history or complication code, or text);
    True when the Condition was about HSCT (read or named back), so it is not also a manifestation."""
    codes = _hsct_codes(c.code)
    read = [h for h in codes if h.meaning in ("status", "transplant")]
    related = [h for h in codes if h.meaning == "related"]
    mention = read_hsct_text(text) if text else None
    if not read and mention is None:
        if related:
            ctx.warn(path, f"Condition {_code_names(related)}: a transplant status that does not say which tissue; "
                     "not read as HSCT - check the HSCT record", "hsct")
            ctx.hsct_unclear.append(f"Condition {_code_names(related)}")
            return True
        return False
    status = mention.status if mention is not None and mention.status in ("planned", "not-done") else "done"
    what = _code_names(read) if read else f"'{text}'"
    onset = _date(c.onsetDateTime) or _date(getattr(c.onsetPeriod, "start", None))
    precision = "day"
    if onset is None and mention is not None and mention.date is not None:
        onset, precision = mention.date, mention.date_precision
    kind = next((h.kind for h in read if h.kind), None) or (mention.kind if mention else None)
    when = format_date(onset, precision)
    bare = not read and (mention is None or mention.status is None)
    how = " (a Condition naming a transplant: read as history)" if bare else ""
    ctx.hsct.append(HsctEvidence(status, onset, precision, kind,
                                 f"Condition {what}{how}{f', {when}' if when else ''}", path))
    return True


def _hsct_record(record: dict[str, Any], ctx: _Ctx) -> None:
    """All HSCT readings of the Bundle -> one ``hsct`` entry with what it was read from."""
    if not ctx.hsct:
        if ctx.hsct_unclear:  # named, but no status: the assessment says unclear, not "not transplanted"
            record["hsct"] = {"unclear": [u[:500] for u in ctx.hsct_unclear][:50]}
        return
    reading = combine(ctx.hsct)
    hsct: dict[str, Any] = {"status": reading.status, "basis": [b[:500] for b in reading.basis or []][:50]}
    if reading.date is not None:
        hsct["date"] = reading.date.isoformat()
        hsct["date_precision"] = reading.date_precision
    if reading.kind:
        hsct["kind"] = reading.kind
    for npath, msg in reading.notes or []:
        ctx.warn(npath, msg, "hsct")
    record["hsct"] = hsct
    if reading.path:
        ctx.locations["$.hsct"] = reading.path


def _immunization(path: str, imm: Any, record: dict[str, Any], ctx: _Ctx) -> None:
    if imm.status != "completed":
        ctx.warn(path, f"Immunization skipped: status '{imm.status}'")
        return
    name = _text(imm.vaccineCode)
    cvx = _code(imm.vaccineCode, CVX)
    if not name and not cvx:
        ctx.warn(path, "Immunization skipped: no vaccine code or text")
        return
    rec: dict[str, Any] = {"vaccine": name or cvx, "status": "given"}
    if cvx and _CVX_CODE.fullmatch(cvx):
        rec["cvx"] = cvx
    d = _date(imm.occurrenceDateTime)
    if d:
        rec["date"] = d.isoformat()
    ctx.locations[f"$.immunizations[{len(record['immunizations'])}]"] = path
    record["immunizations"].append(rec)


def strip_private(record: dict[str, Any]) -> dict[str, Any]:
    """Remove bookkeeping keys (``_weight_kg_date``...) before the record is validated."""
    demo = record.get("demographics", {})
    for k in [k for k in demo if k.startswith("_")]:
        del demo[k]
    return record


def relocate(path: str, locations: dict[str, str]) -> str:
    """Map a record path (``$.labs[2].unit``) back to the Bundle path it came from."""
    best = ""
    for prefix in locations:
        inside = path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")
        if inside and len(prefix) > len(best):
            best = prefix
    if not best:
        return path
    rest = path[len(best):].lstrip(".")
    return f"{locations[best]} (field {rest})" if rest else locations[best]
