"""Map what a record says (names, brands, synonyms, RxNorm and ATC codes, HPO ids) onto knowledge-base ids.

Why exact matching only (no fuzzy): a typo-tolerant match is fine for a search box but not for a
medication list -- "cyclosporin" is a synonym we list, "cyclophosphamide" is not a near miss of
anything we should pretend to know. A name that matches nothing is reported back with the closest
names as a *question* (:mod:`ipexrx.patient.lexicon`), never silently dropped and never guessed.

A medication is identified, in this order, by: an RxNorm code of one of the drug's products (SCD or
SBD: gives the drug, the product, its route and strength), a brand RxCUI, the ingredient RxCUI, an
ATC code (a topical ATC code says the product is topical), then the text: the whole text as a name,
brand or synonym, or the single knowledge-base drug named in it as a whole word ("Prograf 0.5 mg
capsule"). A text naming two drugs is identified only when one of them is a combination product
whose name holds the others ("sulfamethoxazole ... / trimethoprim ..." is trimethoprim-sulfamethoxazole);
otherwise it is ambiguous and reported with both candidates.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from ..knowledge.loader import KnowledgeBase
from ..knowledge.schema import Brand, Product
from ..memo import remembered

_SPLIT = re.compile(r"[\s/\-,+]+|\band\b|\bwith\b")


_ATC = re.compile(r"[A-Z]\d\d[A-Z]{2}\d\d")  # a full (level-5) ATC code written as the drug text


def name_key(text: str) -> str:
    """The text without trade marks, lower-cased, its whitespace runs made one space and trimmed (every drug
    name is looked up by it; str methods, three times faster than the two regular expressions it replaced)."""
    return " ".join(text.replace("®", "").replace("™", "").replace("©", "").lower().split())


@dataclass(frozen=True)
class CodeHit:
    """What an RxNorm or ATC code says about a record."""

    drug_id: str
    kind: str  # ingredient | brand | product | atc
    product_id: str | None = None
    brand: str | None = None
    route: str | None = None  # product route, or a topical/ophthalmic ATC scope


@dataclass(frozen=True)
class Identification:
    """How a medication record was identified (``drug_id`` None: not identified; ``candidates`` then
    lists drugs the text names ambiguously)."""

    drug_id: str | None
    via: str | None = None  # rxnorm-product | rxnorm-brand | rxnorm-ingredient | atc | name | brand | text
    brand: str | None = None
    product_id: str | None = None
    route: str | None = None
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class DrugIndex:
    by_name: dict[str, str]
    by_rxcui: dict[str, CodeHit]
    by_atc: dict[str, CodeHit]
    brands: dict[str, tuple[str, str]]  # name key -> (drug id, brand name as written in the KB)
    products: dict[str, tuple[str, Product]]  # product id -> (drug id, product)
    components: dict[str, frozenset[str]]  # drug id -> its name words (for combination products)
    pattern: re.Pattern[str] | None = field(default=None)

    def resolve(self, text: str | None = None, rxcui: str | None = None) -> str | None:
        """KB drug id for an exact name/brand/synonym or a known RxCUI (any kind)."""
        if rxcui and rxcui.strip() in self.by_rxcui:
            return self.by_rxcui[rxcui.strip()].drug_id
        if text:
            key = name_key(text)
            if key in self.by_name:
                return self.by_name[key]
            if key.isdigit() and key in self.by_rxcui:
                return self.by_rxcui[key].drug_id
        return None

    def named_in(self, text: str) -> dict[str, set[str]]:
        """Drug id -> the names of it that occur in ``text`` as whole words."""
        found: dict[str, set[str]] = {}
        if self.pattern is None:
            return found
        for m in self.pattern.finditer(name_key(text)):
            found.setdefault(self.by_name[m.group(0)], set()).add(m.group(0))
        return found

    def resolve_text(self, text: str) -> str | None:
        """The single KB drug named as a whole word in free text; None if none or several."""
        return self.identify_text(text).drug_id

    def identify_text(self, text: str) -> Identification:
        key = name_key(text)
        if key in self.by_name:
            did = self.by_name[key]
            brand = self.brands.get(key)
            return Identification(did, "brand" if brand else "name", brand=brand[1] if brand else None)
        if key.isdigit() and key in self.by_rxcui:
            return self._from_code(self.by_rxcui[key], "rxnorm")
        if _ATC.fullmatch(text.strip().upper()) and text.strip().upper() in self.by_atc:
            return self._from_code(self.by_atc[text.strip().upper()], "atc")
        found = self.named_in(text)
        if not found:
            return Identification(None)
        if len(found) > 1:
            combo = self._combination(found)
            if combo is None:
                return Identification(None, candidates=tuple(sorted(found)))
            found = {combo: found[combo]}
        did, names = next(iter(found.items()))
        brand_name = next((self.brands[n][1] for n in sorted(names) if n in self.brands), None)
        return Identification(did, "text", brand=brand_name)

    def _combination(self, found: dict[str, set[str]]) -> str | None:
        """The one drug among ``found`` whose name words cover every name found (a fixed combination)."""
        every = set().union(*found.values())
        covering = [d for d in found if all(n in self.components[d] or n in found[d] for n in every)]
        return covering[0] if len(covering) == 1 else None

    def _from_code(self, hit: CodeHit, system: str) -> Identification:
        via = {"product": f"{system}-product", "brand": f"{system}-brand", "ingredient": f"{system}-ingredient",
               "atc": "atc"}[hit.kind]
        return Identification(hit.drug_id, via, brand=hit.brand, product_id=hit.product_id, route=hit.route)

    def identify(self, text: str | None, rxcuis: list[str] | tuple[str, ...] = (),
                 atcs: list[str] | tuple[str, ...] = ()) -> Identification:
        """Identify a record from its codes first (most specific code wins), then from its text."""
        hits = [self.by_rxcui[c.strip()] for c in rxcuis if c and c.strip() in self.by_rxcui]
        order = {"product": 0, "brand": 1, "ingredient": 2}
        hits.sort(key=lambda h: order[h.kind])
        if hits:
            return self._from_code(hits[0], "rxnorm")
        atc_hits = [self.by_atc[c.strip().upper()] for c in atcs if c and c.strip().upper() in self.by_atc]
        if atc_hits:
            return self._from_code(atc_hits[0], "atc")
        if text:
            return self.identify_text(text)
        return Identification(None)

    def containing(self, text: str) -> tuple[str, ...]:
        """Drugs with a name that contains the text's words as whole words but is longer ("insulin" is in
        "insulin human" and "insulin glargine"): the text names a group of products, not one drug."""
        words = [w for w in _SPLIT.split(name_key(text)) if w]
        if not words:
            return ()
        found = {did for n, did in self.by_name.items()
                 if n != name_key(text) and all(re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", n) for w in words)}
        return tuple(sorted(found))

    def kb_names(self) -> dict[str, str]:
        """Every lookup name -> drug id (for did-you-mean suggestions)."""
        return self.by_name


@dataclass(frozen=True)
class ManifestationIndex:
    by_name: dict[str, str]
    by_hpo: dict[str, str]

    def resolve(self, hpo: str | None = None, name: str | None = None) -> str | None:
        if hpo and hpo in self.by_hpo:
            return self.by_hpo[hpo]
        if name:
            key = name_key(name)
            return self.by_name.get(key) or self.by_name.get(key.replace(" ", "-")) \
                or self.by_hpo.get(name.strip().upper())
        return None


@dataclass(frozen=True)
class KbIndex:
    drugs: DrugIndex
    manifestations: ManifestationIndex
    ipex_like: dict[str, str]


_BRACKET = re.compile(r"\[([^\]]+)\]\s*$")


def _sbd_brand(tty: str, name: str | None, product_brands: list[str], drug_brands: list[Brand]) -> str | None:
    """The brand a branded code names: the product's only brand, else the '[Brand]' its RxNorm name ends in.

    Why: one product (methotrexate auto-injector) has several brands (Otrexup, Rasuvo); the bracket
    in the SBD's name says which one the order is for.
    """
    if tty not in ("SBD", "SBDF", "BPCK", "SBDG"):
        return None
    if len(product_brands) == 1:
        return product_brands[0]
    m = _BRACKET.search(name or "")
    if m:
        key = name_key(m.group(1))
        for b in drug_brands:
            if name_key(b.name) == key:
                return b.name
        for b in drug_brands:  # "Envarsus" names the brand the KB spells "Envarsus XR"
            if name_key(b.name).split(" ")[0] == key.split(" ")[0]:
                return b.name
    return None


def _drug_index(kb: KnowledgeBase) -> DrugIndex:
    by_name: dict[str, str] = {}
    brands: dict[str, tuple[str, str]] = {}
    by_rxcui: dict[str, CodeHit] = {}
    by_atc: dict[str, CodeHit] = {}
    products: dict[str, tuple[str, Product]] = {}
    components: dict[str, frozenset[str]] = {}
    for drug in kb.drugs.values():
        for n in (drug.id, drug.name, *drug.synonyms):
            by_name.setdefault(name_key(n), drug.id)
        for b in drug.brands:
            by_name.setdefault(name_key(b.name), drug.id)
            brands.setdefault(name_key(b.name), (drug.id, b.name))
            if b.rxcui:
                by_rxcui.setdefault(b.rxcui, CodeHit(drug.id, "brand", brand=b.name, route=b.route))
        if drug.codes.rxcui:
            by_rxcui.setdefault(drug.codes.rxcui, CodeHit(drug.id, "ingredient"))
        for code in drug.codes.rxcui_other:
            by_rxcui.setdefault(code, CodeHit(drug.id, "ingredient"))
        for prod in drug.products:
            products[prod.id] = (drug.id, prod)
            for rx in prod.rxnorm:
                brand = _sbd_brand(rx.tty, rx.name, prod.brands, drug.brands)
                by_rxcui.setdefault(rx.code, CodeHit(drug.id, "product", product_id=prod.id, brand=brand,
                                                     route=prod.route))
        for a in drug.codes.atc:
            local = a.scope if a.scope in ("topical", "ophthalmic", "nasal", "inhaled", "rectal") else None
            by_atc.setdefault(a.code.upper(), CodeHit(drug.id, "atc", route=local))
        components[drug.id] = frozenset(w for n in (drug.name, *drug.synonyms) for w in _SPLIT.split(name_key(n)) if w)
    names = sorted(by_name, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n in names) + r")(?![\w-])") if names else None
    return DrugIndex(by_name, by_rxcui, by_atc, brands, products, components, pattern)


def _build(kb: KnowledgeBase) -> KbIndex:
    m_name: dict[str, str] = {}
    m_hpo: dict[str, str] = {}
    for man in kb.manifestations.values():
        for n in (man.id, man.name, *man.synonyms):
            m_name.setdefault(name_key(n), man.id)
        for c in man.hpo:
            m_hpo.setdefault(c.code, man.id)
            if c.label:
                m_name.setdefault(name_key(c.label), man.id)
    like: dict[str, str] = {}
    for dis in kb.ipex_like.values():
        for n in (dis.id, dis.name, *dis.synonyms, dis.gene.symbol):
            like.setdefault(name_key(n), dis.id)
    return KbIndex(_drug_index(kb), ManifestationIndex(m_name, m_hpo), like)


_CACHE: dict[int, tuple[object, KbIndex]] = {}
_LOCK = threading.Lock()


def kb_index(kb: KnowledgeBase) -> KbIndex:
    """The lookup index of a knowledge base, built once per KB object."""
    return remembered(_CACHE, id(kb), kb, lambda: _build(kb), limit=8, lock=_LOCK)
