"""Whole-knowledge-base checks that a single record's schema cannot express.

Each check returns :class:`Problem` objects located by file, record and field path, so that
``ipexrx kb validate`` can tell an editor exactly what to fix. The checks:

* every :class:`Statement` cites at least one source, and every citation names a known source
  (and, where the source declares sections, a known section);
* cross-references resolve: therapy -> drug / class, drug -> class, class -> parent,
  interaction -> drug, instruction.applies_to -> one of the interacting drugs,
  evidence -> source and supported records;
* names used for lookup (generic, brand, synonym) and RxNorm codes (ingredient, brand, product) are
  unambiguous across drugs;
* every drug has an RxCUI and an ATC code, or a note saying why it has none (a food has no ATC code);
* every interaction instruction (pair records and victims' mechanism rules) cites a source section,
  and mechanism groups, victim rules and dose ranges point at things that exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from .loader import KnowledgeBase, Problem
from .schema import Citation, Statement


def _walk(obj: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Yield (field path, value) for every nested model / list element."""
    yield path, obj
    if isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            value = getattr(obj, name)
            if value is None:
                continue
            yield from _walk(value, f"{path}.{name}" if path else name)
    elif isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            yield from _walk(item, f"{path}[{i}]")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, BaseModel | list):
                yield from _walk(v, f"{path}.{k}")


def _check_citations(kb: KnowledgeBase) -> list[Problem]:
    problems: list[Problem] = []
    for kind, rid, rec in kb.records():
        if kind == "source":
            continue
        file = kb.origin.get((kind, rid), "?")
        for path, value in _walk(rec, ""):
            if isinstance(value, Statement) and not value.sources:
                problems.append(Problem(file, rid, path, "statement has no source"))
            if isinstance(value, Citation):
                src = kb.sources.get(value.source)
                if src is None:
                    problems.append(Problem(file, rid, path, f"unknown source id '{value.source}'"))
                elif value.locator and src.sections and value.locator not in src.sections:
                    known = ", ".join(sorted(src.sections))
                    problems.append(Problem(
                        file, rid, path,
                        f"source '{value.source}' has no section '{value.locator}' (known: {known})",
                    ))
    return problems


def _check_references(kb: KnowledgeBase) -> list[Problem]:
    problems: list[Problem] = []

    def need(table: dict[str, Any], ref: str, kind: str, file: str, rid: str, path: str) -> None:
        if ref not in table:
            problems.append(Problem(file, rid, path, f"references unknown {kind} '{ref}'"))

    for mid, man in kb.manifestations.items():
        file = kb.origin[("manifestation", mid)]
        for i, opt in enumerate(man.therapy):
            for j, d in enumerate(opt.drugs):
                need(kb.drugs, d, "drug", file, mid, f"therapy[{i}].drugs[{j}]")
            for j, c in enumerate(opt.drug_classes):
                need(kb.classes, c, "drug class", file, mid, f"therapy[{i}].drug_classes[{j}]")
    for did, ild in kb.ipex_like.items():
        file = kb.origin[("ipex-like", did)]
        for i, opt in enumerate(ild.therapies):
            for j, d in enumerate(opt.drugs):
                need(kb.drugs, d, "drug", file, did, f"therapies[{i}].drugs[{j}]")
            for j, c in enumerate(opt.drug_classes):
                need(kb.classes, c, "drug class", file, did, f"therapies[{i}].drug_classes[{j}]")
    for cid, cls in kb.classes.items():
        if cls.parent:
            need(kb.classes, cls.parent, "drug class", kb.origin[("class", cid)], cid, "parent")
    for did, drug in kb.drugs.items():
        file = kb.origin[("drug", did)]
        for j, c in enumerate(drug.classes):
            need(kb.classes, c, "drug class", file, did, f"classes[{j}]")
    for iid, inter in kb.interactions.items():
        file = kb.origin[("interaction", iid)]
        for j, d in enumerate(inter.drugs):
            need(kb.drugs, d, "drug", file, iid, f"drugs[{j}]")
        if len(set(inter.drugs)) != 2:
            problems.append(Problem(file, iid, "drugs", "an interaction needs two different drugs"))
        for j, ins in enumerate(inter.instructions):
            if ins.applies_to and ins.applies_to not in inter.drugs:
                problems.append(Problem(file, iid, f"instructions[{j}].applies_to",
                                        f"'{ins.applies_to}' is not one of the interacting drugs {inter.drugs}"))
    for mid, mech in kb.mechanisms.items():
        file = kb.origin[("mechanism", mid)]
        seen_members: set[str] = set()
        for j, mem in enumerate(mech.members):
            need(kb.drugs, mem.drug, "drug", file, mid, f"members[{j}].drug")
            if mem.drug in seen_members:
                problems.append(Problem(file, mid, f"members[{j}].drug", f"'{mem.drug}' is listed twice"))
            seen_members.add(mem.drug)
    for did, drug in kb.drugs.items():
        file = kb.origin[("drug", did)]
        for j, rule in enumerate(drug.interaction_rules):
            need(kb.mechanisms, rule.mechanism, "mechanism", file, did, f"interaction_rules[{j}].mechanism")
        seen_rules = [r.mechanism for r in drug.interaction_rules]
        for j, rule in enumerate(drug.interaction_rules):
            if seen_rules.index(rule.mechanism) != j:
                problems.append(Problem(file, did, f"interaction_rules[{j}].mechanism",
                                        f"a second rule for mechanism '{rule.mechanism}' (merge them)"))
        for j, r in enumerate(drug.dose_ranges):
            off = [x for x in r.routes if drug.routes and x not in drug.routes]
            if off:
                problems.append(Problem(file, did, f"dose_ranges[{j}].routes",
                                        f"route(s) {off} not among the drug's routes {drug.routes}"))
    seen_pairs: dict[frozenset[str], str] = {}
    for iid, inter in kb.interactions.items():
        pair = frozenset(inter.drugs)
        if pair in seen_pairs:
            problems.append(Problem(kb.origin[("interaction", iid)], iid, "drugs",
                                    f"same drug pair already described by '{seen_pairs[pair]}'"))
        seen_pairs[pair] = iid
    statement_ids = {
        v.id for _, _, rec in kb.records() for _, v in _walk(rec, "") if isinstance(v, Statement) and v.id
    }
    for eid, ev in kb.evidence.items():
        file = kb.origin[("evidence", eid)]
        need(kb.sources, ev.source, "source", file, eid, "source")
        for j, ref in enumerate(ev.supports):
            kind, _, target = ref.partition(":")
            tables: dict[str, Any] = {
                "drug": kb.drugs, "manifestation": kb.manifestations, "class": kb.classes,
                "interaction": kb.interactions, "ipex-like": kb.ipex_like,
                "disease": {kb.disease.id: kb.disease}, "statement": dict.fromkeys(statement_ids),
            }
            if kind not in tables:
                problems.append(Problem(file, eid, f"supports[{j}]",
                                        f"'{ref}' must be kind:id with kind in {sorted(tables)}"))
            else:
                need(tables[kind], target, kind, file, eid, f"supports[{j}]")
    return problems


def _check_statement_ids(kb: KnowledgeBase) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for kind, rid, rec in kb.records():
        for path, value in _walk(rec, ""):
            if isinstance(value, Statement) and value.id:
                if value.id in seen:
                    problems.append(Problem(kb.origin.get((kind, rid), "?"), rid, path,
                                            f"duplicate statement id '{value.id}' (first in {seen[value.id]})"))
                else:
                    seen[value.id] = f"{kind}:{rid}"
    return problems


def _check_names(kb: KnowledgeBase) -> list[Problem]:
    """A name typed by a user must lead to exactly one drug."""
    problems: list[Problem] = []
    owner: dict[str, str] = {}
    for did, drug in kb.drugs.items():
        names = [drug.name, *drug.synonyms, *(b.name for b in drug.brands)]
        for n in names:
            key = n.casefold()
            if key in owner and owner[key] != did:
                problems.append(Problem(kb.origin[("drug", did)], did, "synonyms/brands",
                                        f"name '{n}' is also used by drug '{owner[key]}'"))
            owner[key] = did
    return problems


def _check_codes(kb: KnowledgeBase) -> list[Problem]:
    """Every drug is codable: an EHR names it by RxNorm and registries by ATC; a gap must say why."""
    problems: list[Problem] = []
    for did, drug in kb.drugs.items():
        file = kb.origin[("drug", did)]
        if not drug.codes.rxcui and not drug.codes.rxcui_note:
            problems.append(Problem(file, did, "codes.rxcui", "a drug needs an RxNorm ingredient RxCUI "
                                    "(or an rxcui_note saying why it has none)"))
        if not drug.codes.atc and not drug.codes.atc_note:
            problems.append(Problem(file, did, "codes.atc", "a drug needs an ATC code (or an atc_note saying why "
                                    "it has none)"))
        if (drug.codes.rxcui or drug.codes.atc) and not drug.codes.sources:
            problems.append(Problem(file, did, "codes.sources", "codes need a source"))
    return problems


def _check_instructions(kb: KnowledgeBase) -> list[Problem]:
    """An interaction instruction is the label's: it must cite the section that says it."""
    problems: list[Problem] = []

    def check(ins_list: list[Any], file: str, rid: str, path: str) -> None:
        for j, ins in enumerate(ins_list):
            if not any(c.locator for c in ins.text.sources):
                problems.append(Problem(file, rid, f"{path}[{j}].text.sources",
                                        "an interaction instruction must cite the section that gives it "
                                        "(source#section)"))

    for iid, inter in kb.interactions.items():
        check(inter.instructions, kb.origin[("interaction", iid)], iid, "instructions")
    for did, drug in kb.drugs.items():
        for k, rule in enumerate(drug.interaction_rules):
            check(rule.instructions, kb.origin[("drug", did)], did, f"interaction_rules[{k}].instructions")
    return problems


def _check_unique_codes(kb: KnowledgeBase) -> list[Problem]:
    """A CVX code, a vaccine name or an EHR condition code must lead to exactly one record."""
    problems: list[Problem] = []
    owner: dict[tuple[str, str], str] = {}

    def claim(key: tuple[str, str], rid: str, kind: str, path: str) -> None:
        if key in owner and owner[key] != rid:
            problems.append(Problem(kb.origin[(kind, rid)], rid, path,
                                    f"{key[0]} '{key[1]}' is also used by '{owner[key]}'"))
        owner.setdefault(key, rid)

    for vid, vac in kb.vaccines.items():
        for j, code in enumerate(vac.cvx):
            claim(("CVX code", code.lstrip("0").zfill(2)), vid, "vaccine", f"cvx[{j}]")
        for j, name in enumerate(vac.names):
            claim(("vaccine name", name), vid, "vaccine", f"names[{j}]")
    for mid, man in kb.manifestations.items():
        for j, c in enumerate(man.codings):
            claim((f"{c.system} code", c.code.upper()), mid, "manifestation", f"codings[{j}]")
    for did, drug in kb.drugs.items():
        if drug.codes.rxcui:
            claim(("RxCUI", drug.codes.rxcui), did, "drug", "codes.rxcui")
        for j, code in enumerate(drug.codes.rxcui_other):
            claim(("RxCUI", code), did, "drug", f"codes.rxcui_other[{j}]")
        for j, br in enumerate(drug.brands):
            if br.rxcui:
                claim(("RxCUI", br.rxcui), did, "drug", f"brands[{j}].rxcui")
        for j, prod in enumerate(drug.products):
            for k, rx in enumerate(prod.rxnorm):
                claim(("RxCUI", rx.code), did, "drug", f"products[{j}].rxnorm[{k}]")
    return problems


def validate_kb(kb: KnowledgeBase) -> list[Problem]:
    """Run every cross-record check; an empty list means the knowledge base is valid."""
    return [
        *_check_citations(kb),
        *_check_references(kb),
        *_check_statement_ids(kb),
        *_check_names(kb),
        *_check_codes(kb),
        *_check_instructions(kb),
        *_check_unique_codes(kb),
    ]
