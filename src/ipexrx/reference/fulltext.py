"""Ranked, typo-tolerant full-text search over the whole knowledge base.

The index is a flat list of *entries*: one (record, field, text) each, with a weight that says
how much a hit in that field tells about the record (a brand name is decisive, a word in a
mechanism sentence less so). Two kinds of field are scored differently:

* name-like fields (names, brands, synonyms, codes, targets) are compared as a whole: exact,
  prefix, or fuzzy ratio on the whole string and on each of its words;
* text fields (statements) are scored per query word: the best word of the text for each query
  word (exact 100, prefix 92, fuzzy ratio if >= 80 for words of 4+ letters), averaged.

A record's score is its best entry, plus a small bonus (max 5) when several fields match.
The index is built once per knowledge base; rapidfuzz is imported only when searching.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..knowledge import KnowledgeBase
from ..knowledge.schema import Statement
from ._kbcache import memo, resolve_kb
from .models import SearchHit, SearchKind, SearchResults

_WORD = re.compile(r"[0-9a-zα-ω]+(?:[:.][0-9a-z]+)*")
_STOP = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "of", "on", "or", "the", "to",
    "with",
})

NAME, TEXT, CODE = "name", "text", "code"
MIN_SCORE = 50.0
FUZZY_MIN = 80.0


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


@dataclass
class Entry:
    kind: SearchKind
    rid: str
    title: str
    fld: str
    text: str
    weight: float
    mode: str
    command: str
    display: str | None = None  # snippet text when the matched text is not informative on its own
    folded: str = ""
    words: list[str] = field(default_factory=list)


@dataclass
class SearchIndex:
    entries: list[Entry]
    vocabulary: dict[str, list[int]]  # word -> indices of NAME and TEXT entries containing it


def _statement_entries(add: _Adder, path: str, obj: object) -> None:
    """Add every Statement found in ``obj`` as a TEXT entry named by its field path."""
    from pydantic import BaseModel

    if isinstance(obj, Statement):
        add(path, obj.text, 0.6, TEXT)
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            _statement_entries(add, name if not path else f"{path}.{name}", getattr(obj, name))
    elif isinstance(obj, list | tuple):
        for item in obj:
            _statement_entries(add, path, item)


class _Adder:
    def __init__(self, out: list[Entry], kind: SearchKind, rid: str, title: str, command: str):
        self.out, self.kind, self.rid, self.title, self.command = out, kind, rid, title, command

    def __call__(self, fld: str, text: str | None, weight: float, mode: str = NAME, display: str | None = None) -> None:
        if text and text.strip():
            self.out.append(Entry(self.kind, self.rid, self.title, fld, text.strip(), weight, mode, self.command,
                                  display))

    def names(self, fld: str, texts: list[str] | list[str | None], weight: float) -> None:
        for t in texts:
            self(fld, t, weight)

    def codes(self, fld: str, texts: list[str] | list[str | None], weight: float) -> None:
        """Identifiers match exactly (or by prefix): HP:0002028 is not 'nearly' HP:0002027."""
        for t in texts:
            self(fld, t, weight, CODE)


def _build(kb: KnowledgeBase) -> SearchIndex:
    out: list[Entry] = []
    d = kb.disease
    a = _Adder(out, "disease", d.id, f"{d.name} ({d.abbreviation})" if d.abbreviation else d.name, "ipexrx summary")
    a("name", d.name, 1.0)
    a("abbreviation", d.abbreviation, 1.0)
    a.names("synonym", list(d.synonyms), 0.95)
    a("gene", d.gene.symbol, 0.9)
    a.codes("identifier", [d.identifiers.omim, d.identifiers.orpha, d.identifiers.mondo], 0.9)
    for fld in ("cure", "principles", "caveats", "hsct_evidence", "surveillance", "inheritance"):
        _statement_entries(a, fld, getattr(d, fld))

    for did, drug in kb.drugs.items():
        a = _Adder(out, "drug", did, drug.name, f"ipexrx drug {did}")
        a("name", drug.name, 1.0)
        a.names("synonym", list(drug.synonyms), 0.95)
        a.names("brand", [b.name for b in drug.brands], 0.95)
        a.names("target", list(drug.targets), 0.9)
        a.codes("code", [drug.codes.rxcui, *(x.code for x in drug.codes.atc)], 0.9)
        for sc in drug.safety.screening:
            a("screening", f"screening {sc.when}: {', '.join(sc.tests)} ({sc.parameter.value})", 0.7, TEXT)
        a.names("monitoring", [m.parameter.value for m in drug.safety.monitoring], 0.6)
        a.names("class", [kb.classes[c].name for c in drug.classes if c in kb.classes], 0.75)
        a.names("class", [s for c in drug.classes if c in kb.classes for s in kb.classes[c].synonyms], 0.7)
        _statement_entries(a, "", drug)

    for cid, cls in kb.classes.items():
        a = _Adder(out, "class", cid, cls.name, f"ipexrx class {cid}")
        a("name", cls.name, 1.0)
        a.names("synonym", list(cls.synonyms), 0.95)
        a.codes("code", list(cls.atc), 0.9)
        _statement_entries(a, "summary", cls.summary)

    for mid, man in kb.manifestations.items():
        a = _Adder(out, "manifestation", mid, man.name, f"ipexrx manifestation {mid}")
        a("name", man.name, 1.0)
        a.names("synonym", list(man.synonyms), 0.95)
        a.codes("hpo", [h.code for h in man.hpo], 1.0)
        a.names("hpo label", [h.label for h in man.hpo], 0.9)
        a.names("option", [o.label for o in man.therapy], 0.6)
        _statement_entries(a, "", man)

    for iid, inter in kb.interactions.items():
        names = [kb.drugs[x].name if x in kb.drugs else x for x in inter.drugs]
        a = _Adder(out, "interaction", iid, " + ".join(names), f"ipexrx drug {inter.drugs[0]}")
        a.names("drug", names, 0.6)
        a("drugs", " ".join(names), 0.8, TEXT, display=f"{inter.severity.value}: {inter.mechanism.text}")
        _statement_entries(a, "", inter)

    for xid, x in kb.ipex_like.items():
        a = _Adder(out, "ipex-like", xid, x.name, "ipexrx summary")
        a("name", x.name, 1.0)
        a.names("synonym", list(x.synonyms), 0.95)
        a("gene", x.gene.symbol, 0.9)
        a.codes("identifier", [c.code for c in x.identifiers], 0.9)
        _statement_entries(a, "", x)

    for eid, ev in kb.evidence.items():
        drugs = [s.partition(":")[2] for s in ev.supports if s.startswith("drug:")]
        a = _Adder(out, "evidence", eid, ev.title, f"ipexrx drug {drugs[0]}" if drugs else "ipexrx summary")
        a("title", ev.title, 0.8, TEXT)
        a("population", ev.population, 0.6, TEXT)
        for f in ev.findings:
            a("finding", f.text, 0.6, TEXT)

    for sid, src in kb.sources.items():
        a = _Adder(out, "source", sid, src.title, "ipexrx sources")
        a("id", sid, 0.9)
        a("title", src.title, 0.8, TEXT)
        a("citation", src.citation, 0.6, TEXT)
        a.codes("identifier", [src.doi, src.pmid], 0.9)
        a("product", src.product, 0.8)

    vocabulary: dict[str, list[int]] = {}
    for i, e in enumerate(out):
        e.folded = e.text.casefold()
        e.words = _words(e.text)
        if e.mode != CODE:  # names too: a query may mix a name and a word ("tacrolimus trough")
            for w in set(e.words):
                vocabulary.setdefault(w, []).append(i)
    return SearchIndex(out, vocabulary)


def search_index(kb: KnowledgeBase) -> SearchIndex:
    return memo(kb, "search-index", _build)


def _word_score(token: str, word: str, ratio: object) -> float:
    if token == word:
        return 100.0
    if len(token) >= 3 and word.startswith(token):
        return 92.0
    if len(token) >= 4 and len(word) >= 4:
        s: float = ratio(token, word)  # type: ignore[operator]
        return s if s >= FUZZY_MIN else 0.0
    return 0.0


def _name_score(query: str, tokens: list[str], e: Entry, ratio: object) -> float:
    q, f = query, e.folded
    if q == f:
        return 100.0
    if len(q) >= 3 and f.startswith(q):
        return 90.0 + 10.0 * len(q) / len(f)
    best: float = ratio(q, f) if len(q) >= 4 else 0.0  # type: ignore[operator]
    best = best if best >= FUZZY_MIN else 0.0
    if tokens and e.words:
        per = [max(_word_score(t, w, ratio) for w in e.words) for t in tokens]
        best = max(best, 0.9 * sum(per) / len(per))
    return best


def _code_score(query: str, e: Entry) -> float:
    q, f = query.replace(" ", ""), e.folded
    if q == f:
        return 100.0
    if len(q) >= 3 and f.startswith(q):
        return 80.0 + 10.0 * len(q) / len(f)
    return 0.0


def _snippet(e: Entry, tokens: list[str], width: int = 110) -> str:
    if e.display:
        return e.display if len(e.display) <= width else e.display[: width - 3].rstrip() + "..."
    if e.mode == NAME:
        return f"{e.fld}: {e.text}"
    text = e.text
    if len(text) <= width:
        return text
    pos = -1
    for t in tokens:
        pos = e.folded.find(t[: max(3, len(t) - 2)])
        if pos >= 0:
            break
    start = max(0, min(pos - width // 3, len(text) - width)) if pos >= 0 else 0
    out = text[start:start + width].strip()
    return ("..." if start > 0 else "") + out + ("..." if start + width < len(text) else "")


def search(text: str, limit: int = 10, kb: KnowledgeBase | None = None) -> SearchResults:
    """Records matching ``text`` best first (drugs, brands, classes, manifestations, HPO ids,
    statements, interactions, IPEX-like disorders, sources), tolerant of typos."""
    from rapidfuzz import fuzz, process

    kb = resolve_kb(kb)
    index = search_index(kb)
    query = " ".join(text.casefold().split())
    tokens = [t for t in _words(query) if t not in _STOP] or _words(query)
    if not query or not tokens:
        return SearchResults(query=text, results=[])

    # TEXT entries: per query token, the best matching word of each entry
    per_token: list[dict[int, float]] = []
    vocab = list(index.vocabulary)
    for t in tokens:
        word_scores: dict[str, float] = {}
        for w in vocab:
            if w == t or (len(t) >= 3 and w.startswith(t)):
                word_scores[w] = _word_score(t, w, fuzz.ratio)
        if len(t) >= 4:
            for w, s, _ in process.extract(t, vocab, scorer=fuzz.ratio, score_cutoff=FUZZY_MIN, limit=None):
                if len(w) >= 4:
                    word_scores[w] = max(word_scores.get(w, 0.0), float(s))
        best: dict[int, float] = {}
        for w, s in word_scores.items():
            for i in index.vocabulary[w]:
                if s > best.get(i, 0.0):
                    best[i] = s
        per_token.append(best)

    # per record: best name/code entry, and per-token best text entry (tokens may match different
    # statements of the same record: "hepatitis B screening" over a boxed warning and a screening)
    name_best: dict[tuple[str, str], tuple[float, int]] = {}
    for i, e in enumerate(index.entries):
        if e.mode == TEXT:
            continue
        s = _code_score(query, e) if e.mode == CODE else _name_score(query, tokens, e, fuzz.ratio)
        s *= e.weight
        key = (e.kind, e.rid)
        if s > 0 and s > name_best.get(key, (0.0, -1))[0]:
            name_best[key] = (s, i)
    token_best: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for ti, best in enumerate(per_token):
        for i, s in best.items():
            e = index.entries[i]
            key = (e.kind, e.rid)
            slots = token_best.setdefault(key, [(0.0, -1)] * len(tokens))
            # a word inside a name counts less than the whole name (see _name_score)
            ws = s * e.weight * (0.9 if e.mode == NAME else 1.0)
            if ws > slots[ti][0]:
                slots[ti] = (ws, i)

    by_record: dict[tuple[str, str], tuple[float, int, int]] = {}  # -> (score, entry shown, fields matched)
    for rkey in set(name_best) | set(token_best):
        n_score, n_entry = name_best.get(rkey, (0.0, -1))
        slots = token_best.get(rkey, [])
        t_score = sum(x[0] for x in slots) / len(tokens) if slots else 0.0
        matched = {x[1] for x in slots if x[0] > 0} | ({n_entry} if n_entry >= 0 else set())
        if n_score >= t_score:
            by_record[rkey] = (n_score, n_entry, len(matched))
        else:
            shown = max(slots, key=lambda x: x[0])[1]
            by_record[rkey] = (t_score, shown, len(matched))

    hits: list[SearchHit] = []
    for (_kind, _rid), (s, i, n) in by_record.items():
        score = min(100.0, s + min(5.0, (n - 1) * 1.0))
        if score < MIN_SCORE:
            continue
        e = index.entries[i]
        hits.append(SearchHit(kind=e.kind, id=e.rid, title=e.title, field=e.fld or "text",
                              snippet=_snippet(e, tokens), score=round(score, 1), command=e.command))
    hits.sort(key=lambda h: (-h.score, h.kind, h.id))
    return SearchResults(query=text, results=hits[:limit])
