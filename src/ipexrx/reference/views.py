"""Build the reader-facing views from the knowledge base.

Every function takes an optional ``kb`` (default: the embedded, validated knowledge base from
``get_kb``) so that tests and the service can pass their own. Every statement is returned with its
citations resolved to titles and section headings, because a clinician must be able to check any
line without knowing our source ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, cast

from pydantic import BaseModel

from ..knowledge import KnowledgeBase
from ..knowledge import schema as kbs
from ..knowledge.schema import (
    Citation,
    Drug,
    Manifestation,
    Safety,
    Statement,
    TherapyOption,
)
from . import models as m_
from ._kbcache import memo, resolve_kb
from .lookup import find_class, find_drug, find_manifestation
from .models import (
    AtcView,
    BrandView,
    CitationView,
    ClassMember,
    ClassView,
    CodesView,
    CodingView,
    ContentInfo,
    DoseRangeView,
    DrugMonograph,
    DrugUseView,
    FormulationView,
    GeneView,
    IdentifiersView,
    InstructionView,
    InteractionView,
    IpexLikeView,
    LiteratureFinding,
    LiteratureView,
    ManifestationView,
    MechanismRuleView,
    MonitoringView,
    OptionView,
    ProductView,
    Ref,
    ReviewView,
    RxNormView,
    SafetyView,
    ScreeningView,
    SectionNoteView,
    SectionView,
    SourcesView,
    SourceView,
    StatementView,
    SummaryView,
    TargetRangeView,
    VaccineView,
)


# Knowledge-base enums -> the literal types of the view models (same values; see models.py).
def _level(x: kbs.EvidenceLevel) -> m_.EvidenceLevel:
    return cast(m_.EvidenceLevel, x.value)


def _opt_level(x: kbs.EvidenceLevel | None) -> m_.EvidenceLevel | None:
    return _level(x) if x is not None else None


def _kind(x: kbs.SourceKind) -> m_.SourceKind:
    return cast(m_.SourceKind, x.value)


def _severity(x: kbs.InteractionSeverity) -> m_.InteractionSeverity:
    return cast(m_.InteractionSeverity, x.value)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------
class _Builder:
    """Converts knowledge-base pieces into view pieces for one knowledge base.

    Views are made with ``model_construct``: their inputs are the validated knowledge base, and
    skipping validation means a text lookup never builds a pydantic core schema (start-up budget).
    The tests re-validate every view's JSON against its model, so a construction error cannot hide.
    """

    def __init__(self, kb: KnowledgeBase):
        self.kb = kb
        self._cites: dict[tuple[str, str | None], CitationView] = {}

    def cite(self, c: Citation) -> CitationView:
        key = (c.source, c.locator)
        view = self._cites.get(key)
        if view is None:
            src = self.kb.sources[c.source]  # validation guarantees the source exists
            section = src.sections.get(c.locator) if c.locator else None
            if c.locator and section is None:
                section = f"section {c.locator}"
            label = f"{src.title}, {section}" if section else src.title
            view = CitationView.model_construct(
                source=src.id, locator=c.locator, kind=_kind(src.kind), title=src.title, section=section, label=label,
                citation=src.citation, doi=src.doi, pmid=src.pmid, url=src.url, verification=src.verification,
            )
            self._cites[key] = view
        return view

    def cites(self, cs: Iterable[Citation]) -> list[CitationView]:
        return [self.cite(c) for c in cs]

    def stmt(self, s: Statement) -> StatementView:
        return StatementView.model_construct(id=s.id, text=s.text, evidence=_opt_level(s.evidence),
                                             sources=self.cites(s.sources))

    def opt_stmt(self, s: Statement | None) -> StatementView | None:
        return self.stmt(s) if s is not None else None

    def stmts(self, ss: Iterable[Statement]) -> list[StatementView]:
        return [self.stmt(s) for s in ss]

    def drug_ref(self, did: str) -> Ref:
        d = self.kb.drugs.get(did)
        return Ref.model_construct(id=did, name=d.name if d else did)

    def class_ref(self, cid: str) -> Ref:
        c = self.kb.classes.get(cid)
        return Ref.model_construct(id=cid, name=c.name if c else cid)

    def instruction(self, i: Any) -> InstructionView:
        return InstructionView.model_construct(
            kind=i.kind, applies_to=self.drug_ref(i.applies_to) if i.applies_to else None,
            dose_fraction=i.dose_fraction, separation_hours=i.separation_hours, text=self.stmt(i.text))

    def mechanism_rule(self, victim: Drug, r: Any) -> MechanismRuleView:
        mech = self.kb.mechanisms.get(r.mechanism)
        return MechanismRuleView.model_construct(
            id=r.id, victim=self.drug_ref(victim.id),
            mechanism=Ref.model_construct(id=r.mechanism, name=mech.name if mech else r.mechanism),
            severity=_severity(r.severity), effect=self.stmt(r.effect),
            instructions=[self.instruction(i) for i in r.instructions],
            members=[self.drug_ref(m.drug) for m in mech.members] if mech else [])

    def product(self, p: Any) -> ProductView:
        def strength(st: Any) -> str:
            num = f"{st.value:g} {st.unit}" if st.unit != "%" else f"{st.value:g} %"
            if st.per_ml:
                num += f"/{st.per_ml:g} mL" if st.per_ml != 1 else "/mL"
            return num
        return ProductView.model_construct(
            id=p.id, form=p.form, route=p.route, strengths=[strength(st) for st in p.strengths], brands=list(p.brands),
            formulation=p.formulation,
            rxnorm=[RxNormView.model_construct(code=x.code, tty=x.tty, name=x.name) for x in p.rxnorm],
            sources=self.cites(p.sources))

    def dose_range(self, r: Any) -> DoseRangeView:
        return DoseRangeView.model_construct(
            id=r.id, routes=list(r.routes), formulation=r.formulation, age_min_years=r.age_min_years,
            age_max_years=r.age_max_years, context=r.context, basis=r.basis, low=r.low, high=r.high,
            maximum=r.maximum, absolute_max=r.absolute_max, statement=self.stmt(r.statement))

    def option(self, o: TherapyOption) -> OptionView:
        return OptionView.model_construct(
            id=o.id, label=o.label, role=o.role, condition=o.condition,
            drugs=[self.drug_ref(d) for d in o.drugs], drug_classes=[self.class_ref(c) for c in o.drug_classes],
            evidence_level=_level(o.evidence_level), evidence_rank=o.evidence_level.rank,
            statement=self.stmt(o.statement), evidence=self.stmts(o.evidence), on_source_page=o.on_source_page,
        )

    def options(self, opts: Iterable[TherapyOption]) -> list[OptionView]:
        return [self.option(o) for o in sorted(opts, key=lambda o: o.sort_key)]

    def manifestation(self, m: Manifestation) -> ManifestationView:
        return ManifestationView.model_construct(
            id=m.id, name=m.name, synonyms=list(m.synonyms),
            hpo=[CodingView.model_construct(system=h.system, code=h.code, label=h.label) for h in m.hpo],
            description=self.opt_stmt(m.description), frequency=self.stmts(m.frequency),
            options=self.options(m.therapy), caveats=self.stmts(m.caveats), on_source_page=m.on_source_page,
            review=ReviewView.model_construct(date=m.review.date, reviewer=m.review.reviewer),
        )


def _ancestors(kb: KnowledgeBase, cid: str) -> list[str]:
    out: list[str] = []
    cur = kb.classes.get(cid)
    while cur is not None and cur.parent and cur.parent not in out and cur.parent != cid:
        out.append(cur.parent)
        cur = kb.classes.get(cur.parent)
    return out


def _drug_class_closure(kb: KnowledgeBase, drug: Drug) -> list[str]:
    """The drug's classes followed by all their ancestors (no duplicates)."""
    out = list(dict.fromkeys(drug.classes))
    for c in drug.classes:
        for a in _ancestors(kb, c):
            if a not in out:
                out.append(a)
    return out


def _walk_citations(obj: Any) -> Iterator[Any]:
    """Every CitationView / Citation inside a model tree, in field order."""
    if isinstance(obj, CitationView | Citation):
        yield obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _walk_citations(getattr(obj, name))
    elif isinstance(obj, list | tuple):
        for item in obj:
            yield from _walk_citations(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _walk_citations(item)


def _distinct(cites: Iterable[CitationView]) -> list[CitationView]:
    seen: dict[tuple[str, str | None], CitationView] = {}
    for c in cites:
        seen.setdefault((c.source, c.locator), c)
    return list(seen.values())


def _review(r: Any) -> ReviewView:
    return ReviewView.model_construct(date=r.date, reviewer=r.reviewer)


# --------------------------------------------------------------------------------------------
# Public views
# --------------------------------------------------------------------------------------------
def summary(kb: KnowledgeBase | None = None) -> SummaryView:
    """The IPEX medication summary: cure, principles, manifestation -> options, caveats, identifiers."""
    kb = resolve_kb(kb)
    b = _Builder(kb)
    d = kb.disease
    ids = d.identifiers
    return SummaryView.model_construct(
        id=d.id, name=d.name, abbreviation=d.abbreviation, synonyms=list(d.synonyms),
        gene=GeneView.model_construct(symbol=d.gene.symbol, hgnc=d.gene.hgnc, location=d.gene.location,
                      sources=b.cites(d.gene.sources)),
        inheritance=b.stmt(d.inheritance),
        identifiers=IdentifiersView.model_construct(omim=ids.omim, orpha=ids.orpha, mondo=ids.mondo, umls=ids.umls,
                                    snomed=ids.snomed, icd10=list(ids.icd10), sources=b.cites(ids.sources)),
        cure=b.stmt(d.cure),
        principles=b.stmts(d.principles),
        manifestations=[b.manifestation(m) for m in kb.manifestations.values()],
        caveats=b.stmts(d.caveats),
        hsct_evidence=b.stmts(d.hsct_evidence),
        surveillance=b.stmts(d.surveillance),
        ipex_like=[
            IpexLikeView.model_construct(
                id=x.id, name=x.name, synonyms=list(x.synonyms),
                gene=GeneView.model_construct(symbol=x.gene.symbol, hgnc=x.gene.hgnc, location=x.gene.location,
                              sources=b.cites(x.gene.sources)),
                inheritance=b.stmt(x.inheritance),
                identifiers=[CodingView.model_construct(system=c.system, code=c.code, label=c.label)
                             for c in x.identifiers],
                features=b.stmts(x.features), therapies=b.options(x.therapies),
            )
            for x in kb.ipex_like.values()
        ],
        content=ContentInfo.model_construct(content_version=kb.meta.content_version, released=kb.meta.released,
                            source_page=kb.meta.source_page, disclaimer=kb.meta.disclaimer),
    )


def manifestation_view(query: str, kb: KnowledgeBase | None = None) -> ManifestationView:
    """A manifestation (by id, name, synonym or HPO id) with options strongest evidence first."""
    kb = resolve_kb(kb)
    return _Builder(kb).manifestation(find_manifestation(query, kb))


_SEVERITY_ORDER: dict[str, int] = {s.value: i for i, s in enumerate(kbs.InteractionSeverity)}


_SECTION_WORDS = {
    "boxed_warnings": "boxed warning", "contraindications": "contraindications", "warnings": "warnings and precautions",
    "adverse_reactions.common": "common adverse reactions", "adverse_reactions.serious": "serious adverse reactions",
    "pregnancy": "pregnancy", "lactation": "lactation", "monitoring": "monitoring",
}


def _section_notes(b: _Builder, sf: Safety) -> list[SectionNoteView]:
    """Every empty monograph section, said: an empty section never reads as 'nothing to know'."""
    filled = {"boxed_warnings": sf.boxed_warnings, "contraindications": sf.contraindications,
              "warnings": sf.warnings, "adverse_reactions.common": sf.adverse_reactions.common,
              "adverse_reactions.serious": sf.adverse_reactions.serious, "pregnancy": sf.pregnancy,
              "lactation": sf.lactation, "monitoring": sf.monitoring}
    none = {n.section: n for n in sf.none_in_label}
    notes = []
    for section, items in filled.items():
        if items:
            continue
        words = _SECTION_WORDS[section]
        if section in none:
            notes.append(SectionNoteView.model_construct(
                section=section, status="none-in-label", text=f"The label was read and has no {words}.",
                sources=b.cites(none[section].sources)))
        else:
            notes.append(SectionNoteView.model_construct(
                section=section, status="not-encoded",
                text=f"{words[0].upper()}{words[1:]}: not encoded in this release; read the label.", sources=[]))
    return notes


def drug_monograph(query: str, kb: KnowledgeBase | None = None) -> DrugMonograph:
    """The full monograph of a drug named by generic name, brand or synonym (any case)."""
    kb = resolve_kb(kb)
    drug = find_drug(query, kb)
    b = _Builder(kb)
    did = drug.id
    closure = _drug_class_closure(kb, drug)

    interactions: list[InteractionView] = []
    for iid, inter in kb.interactions.items():
        if did not in inter.drugs:
            continue
        other = next((x for x in inter.drugs if x != did), did)
        interactions.append(InteractionView.model_construct(
            id=iid, drug=b.drug_ref(did), other=b.drug_ref(other), severity=_severity(inter.severity),
            mechanism=b.stmt(inter.mechanism), effect=b.opt_stmt(inter.effect),
            instructions=[b.instruction(i) for i in inter.instructions],
        ))
    interactions.sort(key=lambda v: (_SEVERITY_ORDER[v.severity], v.other.name.casefold()))

    ipex = Ref.model_construct(id=kb.disease.id, name=kb.disease.abbreviation or kb.disease.name)
    uses: list[DrugUseView] = []

    def add_uses(disorder: Ref, manifestation: Ref | None, opts: Iterable[TherapyOption]) -> None:
        for o in opts:
            if did in o.drugs:
                via = None
            else:
                hit = next((c for c in o.drug_classes if c in closure), None)
                if hit is None:
                    continue
                via = b.class_ref(hit)
            uses.append(DrugUseView.model_construct(
                disorder=disorder, manifestation=manifestation, option_id=o.id, label=o.label,
                                    role=o.role, condition=o.condition, evidence_level=_level(o.evidence_level),
                                    via_class=via))

    for m in kb.manifestations.values():
        add_uses(ipex, Ref.model_construct(id=m.id, name=m.name), m.therapy)
    for x in kb.ipex_like.values():
        add_uses(Ref.model_construct(id=x.id, name=x.name), None, x.therapies)

    statement_ids = {s.id for s in _walk_statements(drug) if s.id}
    literature = [
        LiteratureView.model_construct(
            id=eid, title=ev.title, design=ev.design, population=ev.population,
            source=b.cite(Citation.model_construct(source=ev.source, locator=None)),
            findings=[LiteratureFinding.model_construct(id=f.id, text=f.text, evidence=_level(f.evidence))
                      for f in ev.findings],
        )
        for eid, ev in kb.evidence.items()
        if f"drug:{did}" in ev.supports or any(s.partition(":")[2] in statement_ids
                                               for s in ev.supports if s.startswith("statement:"))
    ]

    sf = drug.safety
    rules = [b.mechanism_rule(drug, r) for r in drug.interaction_rules]
    groups = {mid for mid, mech in kb.mechanisms.items() if any(m.drug == did for m in mech.members)}
    affects = [b.mechanism_rule(other, r) for other in kb.drugs.values() if other.id != did
               for r in other.interaction_rules if r.mechanism in groups]
    affects.sort(key=lambda v: (_SEVERITY_ORDER[v.severity], v.victim.name.casefold()))
    mono = DrugMonograph.model_construct(
        id=did, name=drug.name, synonyms=list(drug.synonyms),
        brands=[BrandView.model_construct(name=br.name, note=br.note, rxcui=br.rxcui, formulation=br.formulation,
                                          route=br.route, sources=b.cites(br.sources))
                for br in drug.brands],
        classes=[b.class_ref(c) for c in drug.classes],
        class_ancestors=[b.class_ref(c) for c in closure if c not in drug.classes],
        role=drug.role, on_source_page=drug.on_source_page, routes=list(drug.routes),
        immunosuppressive=drug.immunosuppressive, calcineurin_inhibitor=drug.calcineurin_inhibitor,
        identity=b.opt_stmt(drug.identity), mechanism=b.stmts(drug.mechanism), targets=list(drug.targets),
        pharmacology=b.stmts(drug.pharmacology), approvals=b.stmts(drug.approvals), uses=b.stmts(drug.uses),
        evidence_in_ipex=b.stmts(drug.evidence_in_ipex), literature=literature,
        codes=CodesView.model_construct(rxcui=drug.codes.rxcui, rxcui_note=drug.codes.rxcui_note,
                        rxcui_other=list(drug.codes.rxcui_other),
                        atc=[AtcView.model_construct(code=a.code, scope=a.scope, current=a.current, note=a.note)
                             for a in drug.codes.atc], atc_note=drug.codes.atc_note,
                        sources=b.cites(drug.codes.sources)),
        molar_mass=drug.molar_mass,
        formulations=[FormulationView.model_construct(id=f.id, name=f.name, switch=b.stmt(f.switch))
                      for f in drug.formulations],
        products=[b.product(p) for p in drug.products],
        dosing=b.stmts(drug.dosing),
        dose_ranges=[b.dose_range(r) for r in drug.dose_ranges],
        interaction_rules=rules, affects=affects,
        safety=SafetyView.model_construct(
            boxed_warnings=b.stmts(sf.boxed_warnings), contraindications=b.stmts(sf.contraindications),
            warnings=b.stmts(sf.warnings), adverse_reactions_common=b.stmts(sf.adverse_reactions.common),
            adverse_reactions_serious=b.stmts(sf.adverse_reactions.serious), pregnancy=b.stmts(sf.pregnancy),
            lactation=b.stmts(sf.lactation), section_notes=_section_notes(b, sf),
            screening=[ScreeningView.model_construct(
                id=s.id, parameter=s.parameter.value, tests=list(s.tests), when=s.when,
                                     action_if_positive=b.opt_stmt(s.action_if_positive),
                                     statement=b.stmt(s.statement)) for s in sf.screening],
            monitoring=[MonitoringView.model_construct(
                id=m.id, parameter=m.parameter.value, interval_days=m.interval_days,
                                       interval_basis=b.opt_stmt(m.interval_basis), statement=b.stmt(m.statement))
                        for m in sf.monitoring],
            vaccines=VaccineView.model_construct(live_vaccines=sf.vaccines.live_vaccines,
                                                 statement=b.stmt(sf.vaccines.statement))
            if sf.vaccines else None,
            target_ranges=[TargetRangeView.model_construct(parameter=t.parameter, low=t.low, high=t.high, unit=t.unit,
                                           matrix=t.matrix, context=t.context, statement=b.stmt(t.statement))
                           for t in sf.target_ranges],
        ),
        interactions=interactions, options=uses, dosing_caveat=b.opt_stmt(drug.dosing_caveat),
        review=_review(drug.review), sources=[],
    )
    mono.sources = _distinct(_walk_citations(mono))
    return mono


def _walk_statements(obj: Any) -> Iterator[Statement]:
    if isinstance(obj, Statement):
        yield obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _walk_statements(getattr(obj, name))
    elif isinstance(obj, list | tuple):
        for item in obj:
            yield from _walk_statements(item)


def class_view(query: str, kb: KnowledgeBase | None = None) -> ClassView:
    """A drug class (by id, name, synonym or unique prefix): summary, parent chain, subclasses, members."""
    kb = resolve_kb(kb)
    cls = find_class(query, kb)
    b = _Builder(kb)
    cid = cls.id
    members: list[ClassMember] = []
    for did, d in kb.drugs.items():
        via = next((c for c in d.classes if c == cid or cid in _ancestors(kb, c)), None)
        if via is not None:
            members.append(ClassMember.model_construct(id=did, name=d.name, via=b.class_ref(via)))
    members.sort(key=lambda m: m.name.casefold())
    return ClassView.model_construct(
        id=cid, name=cls.name, synonyms=list(cls.synonyms), atc=list(cls.atc), summary=b.stmts(cls.summary),
        parent=b.class_ref(cls.parent) if cls.parent else None,
        ancestors=[b.class_ref(a) for a in _ancestors(kb, cid)],
        subclasses=[b.class_ref(k) for k, c in kb.classes.items() if c.parent == cid],
        members=members, on_source_page=cls.on_source_page, review=_review(cls.review),
    )


def _citation_counts(kb: KnowledgeBase) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind, _rid, rec in kb.records():
        if kind == "source":
            continue
        for c in _walk_citations(rec):
            counts[c.source] = counts.get(c.source, 0) + 1
        if kind == "evidence":
            counts[rec.source] = counts.get(rec.source, 0) + 1  # type: ignore[attr-defined]
    return counts


_KIND_ORDER = {"seed": 0, "label": 1, "paper": 2, "guideline": 3, "database": 4}


def list_sources(kb: KnowledgeBase | None = None) -> SourcesView:
    """The sources registry: what each citation id stands for, how it was verified, how often it is cited."""
    kb = resolve_kb(kb)
    counts = memo(kb, "citation-counts", _citation_counts)
    views = [
        SourceView.model_construct(
            id=s.id, kind=_kind(s.kind), title=s.title, citation=s.citation, doi=s.doi, pmid=s.pmid, url=s.url,
            product=s.product, setid=s.setid, version=s.version,
            sections=[SectionView.model_construct(locator=k, heading=v) for k, v in s.sections.items()],
            accessed=s.accessed, verification=s.verification, note=s.note, cited=counts.get(s.id, 0),
        )
        for s in kb.sources.values()
    ]
    views.sort(key=lambda v: (_KIND_ORDER.get(v.kind, 9), v.id))
    return SourcesView.model_construct(sources=views)
