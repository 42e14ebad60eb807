"""HSCT status from free text: "allogeneic HSCT 2024-03", "s/p BMT", "post cord blood transplant".

Why a reader of its own: a chart says a child was transplanted in many places -- a coded Procedure,
a status Condition, a problem-list line, a note in our JSON format -- and a transplant missed means a
transplanted child is offered a transplant referral. The coded readings live in :mod:`.codes`
(:func:`~.codes.hsct_code`); this module reads the words, and both FHIR and our JSON format use it,
so the same words mean the same thing whichever format they arrive in.

What a text says is read conservatively:

* words of history ("s/p", "status post", "post-HSCT", "history of", "underwent", "received",
  "day +100") make it *done*, even beside words of intent or absence ("post-HSCT evaluation",
  "s/p BMT, no second transplant");
* words of absence ("no HSCT", "not transplanted", "HSCT not done") make it *not-done*;
* words of intent ("planned", "referral for", "candidate", "pre-transplant", "donor search") make it
  *planned*;
* weaker signs ("performed", "engrafted", "chimerism", "GvHD") or a date make it *done*;
* a bare mention ("HSCT") says nothing about status (``status`` None); the caller decides what its
  place in the record means (a problem-list entry is history) and says so.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from .words import Words

HSCT_TERM = Words(
    r"\b(?:allo[- ]?|auto[- ]?)?(?:hsct|hct|sct|pbsct|ucbt|bmt)s?\b"
    r"|\b(?:ha?ematopoietic|hemopoietic|haemopoietic)\s+(?:stem\s+|progenitor\s+)?cells?\s+transplant\w*"
    r"|\bstem[- ]cells?\s+transplant\w*"
    r"|\b(?:bone\s+)?marrow\s+transplant\w*"
    r"|\bcord[- ]blood\s+(?:stem\s+cells?\s+)?transplant\w*"
    r"|\bperipheral\s+blood\s+stem\s+cells?\s+transplant\w*"
    r"|\bhaplo(?:identical)?\s+transplant\w*")
# "HCT" alone is also haematocrit: it counts only beside a transplant word or a donor type.
_BARE_HCT = re.compile(r"^\s*hct\s*[:=]?\s*\d", re.I)

_NOT_DONE = re.compile(
    r"\b(?:no|never|not|without|declined|refused)\b[^.;]{0,25}?\b(?:hsct|hct|sct|bmt|transplant\w*)"
    r"|\b(?:hsct|hct|sct|bmt|transplant\w*)\b[^.;]{0,15}?\b(?:not\s+(?:done|performed|yet)|none)\b"
    r"|\bnot\s+transplanted\b|\bun-?transplanted\b", re.I)
_PLANNED = re.compile(
    r"\b(?:plan(?:ned|ning)?|scheduled|referr(?:al|ed)|refer\b|candidate|evaluat\w*|work[- ]?up|assessment for|"
    r"awaiting|await|listed for|consider\w*|discuss\w*|eligib\w*|upcoming|intended|proposed|pending|"
    r"donor search|search for a donor|pre[- ]?(?:hsct|hct|sct|bmt|transplant\w*)|before (?:hsct|hct|sct|bmt|"
    r"transplant\w*)|bridge to|bridging)\b", re.I)
# History words: the transplant has happened, whatever else the text plans ("post-HSCT evaluation").
_DONE = re.compile(
    r"\bs/p\b|\bs\.p\.|\bstatus[- ]post\b|\bpost[- ]?(?:allo\w*[- ]?|auto\w*[- ]?|haplo\w*[- ]?)?(?:hsct|hct|sct|bmt|"
    r"transplant\w*|cord|bone|stem|ha?ematopoietic|haplo)|\bhistory of\b|\bh/o\b|\bhx\b|"
    r"\bunderwent\b|\breceived\b|\bhad (?:an? )?(?:allo\w*\s+|auto\w*\s+)?(?:hsct|hct|sct|bmt|\w+ transplant)|"
    r"\btransplant\w*\s+status\b|\btransplanted\b|\brecipient\b|\b(?:day|d)\s*\+\s*\d+", re.I)
# Weaker signs of a transplant that has happened: they yield to words of intent ("GvHD prophylaxis planned").
_DONE_WEAK = re.compile(r"\bperformed\b|\bdone\b|\bcompleted\b|\bengraft\w*|\bchimerism\b|\bgvhd\b|"
                        r"\bgraft[- ]versus[- ]host", re.I)
_ALLO = re.compile(r"\ballo\w*|\bhaplo\w*|\bsibling\b|\bunrelated\b|\bmatched\b|\bmud\b|\bmsd\b|\bmrd\b|"
                   r"\bdonor\b", re.I)  # cord blood is usually, not always, allogeneic: not inferred
_AUTO = re.compile(r"\bauto(?:logous)?\b|\bauto[- ]?(?:hsct|hct|sct)\b|\basct\b", re.I)

_MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_DAY = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_MONTH = re.compile(r"\b(\d{4})-(\d{2})\b|\b(\d{1,2})/(\d{4})\b")
_MONTH_NAME = re.compile(r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(\d{4})\b", re.I)
_YEAR = re.compile(r"\b(?:in\s+)?((?:19|20)\d{2})\b")


@dataclass(frozen=True)
class HsctMention:
    """What one piece of text says about HSCT."""

    text: str
    status: str | None  # done | planned | not-done | None (mentioned, status not said)
    kind: str | None  # allogeneic | autologous | None
    date: dt.date | None
    date_precision: str  # day | month | year


def read_date(text: str) -> tuple[dt.date | None, str]:
    """The first date written in the text: full (day), year-month or month name (month), or a year."""
    try:
        if m := _DAY.search(text):
            return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))), "day"
        if m := _MONTH.search(text):
            year, month = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
            return dt.date(int(year), int(month), 1), "month"
        if m := _MONTH_NAME.search(text):
            return dt.date(int(m.group(2)), _MONTHS[m.group(1).lower()[:3]], 1), "month"
        if m := _YEAR.search(text):
            return dt.date(int(m.group(1)), 1, 1), "year"
    except ValueError:
        return None, "day"
    return None, "day"


_HCT_TRANSPLANT_CONTEXT = Words(r"transplant|allo|auto|donor|cord|haplo|graft")


def mentions_hsct(text: str | None) -> bool:
    """Whether the text names a haematopoietic stem cell / bone marrow / cord blood transplant."""
    if not text or _BARE_HCT.match(text):
        return False
    term = HSCT_TERM.first(text)
    if term is None:
        return False
    if term.rstrip("s") == "hct":  # haematocrit unless something else says transplant
        return _HCT_TRANSPLANT_CONTEXT.found(text)
    return True


def donor_kind(text: str | None) -> str | None:
    """Allogeneic / autologous from a donor description ('matched unrelated donor', 'autologous')."""
    if not text:
        return None
    return "autologous" if _AUTO.search(text) else "allogeneic" if _ALLO.search(text) else None


def read_hsct_text(text: str | None) -> HsctMention | None:
    """What the text says about HSCT, or None when it does not name one."""
    if not text or not mentions_hsct(text):
        return None
    if _DONE.search(text):
        status: str | None = "done"
    elif _NOT_DONE.search(text):
        status = "not-done"
    elif _PLANNED.search(text):
        status = "planned"
    else:
        status = "done" if _DONE_WEAK.search(text) or read_date(text)[0] is not None else None
    kind = "autologous" if _AUTO.search(text) else "allogeneic" if _ALLO.search(text) else None
    date, precision = read_date(text)
    return HsctMention(text=text, status=status, kind=kind, date=date, date_precision=precision)


def format_date(date: dt.date | None, precision: str) -> str | None:
    """A transplant date as precise as it was given ('2024-03' for a month)."""
    if date is None:
        return None
    if precision == "month":
        return date.strftime("%Y-%m")
    if precision == "year":
        return str(date.year)
    return date.isoformat()


_RANK = {"not-done": 0, "planned": 1, "done": 2}
# The status values in plain words, for every face (terminal, web, printout, warnings); the JSON keeps the values.
STATUS_WORDS = {"not-done": "not transplanted", "planned": "transplant planned", "done": "transplanted"}
# What a ``not-done`` status rests on (``status_basis``): the record says so (``recorded``), the record says
# nothing about HSCT (``not-recorded``), or it names HSCT without a status that can be read (``unclear``).
# A missing value is "cannot judge", never "not transplanted".
BASIS_WORDS = {"not-recorded": "no transplant recorded", "unclear": "HSCT mentioned, status unclear"}


def status_words(status: str | None, basis: str = "recorded") -> str:
    """``not-done`` -> ``not transplanted`` (see :data:`STATUS_WORDS`); an unknown value as it is. With
    ``basis`` other than ``recorded`` a not-done status is what was assumed, and is said so (:data:`BASIS_WORDS`)."""
    if status == "not-done" and basis in BASIS_WORDS:
        return BASIS_WORDS[basis]
    return STATUS_WORDS.get(status or "", status or "not stated")


@dataclass(frozen=True)
class HsctEvidence:
    """One place in a record that says something about HSCT, already read."""

    status: str  # done | planned | not-done
    date: dt.date | None
    date_precision: str
    kind: str | None
    basis: str  # what it was read from, for the user
    path: str


@dataclass
class HsctReading:
    """The transplant status a whole record gives, with what it was read from and what is unclear."""

    status: str = "not-done"  # with nothing read; see status_basis in the caller (normalize) for what it rests on
    date: dt.date | None = None
    date_precision: str = "day"
    kind: str | None = None
    basis: list[str] | None = None
    path: str | None = None
    notes: list[tuple[str, str]] | None = None  # (path, message) for the input warnings
    status_basis: str = "recorded"  # recorded | not-recorded | unclear: see BASIS_WORDS


def combine(evidence: list[HsctEvidence], as_of: dt.date | None = None) -> HsctReading:
    """One status from many readings: done beats planned beats not-done (a transplanted child must not
    be offered a referral because one record still shows the plan); the date is the latest transplant's
    (a second transplant restarts the clock). Disagreements are returned as notes, never dropped."""
    out = HsctReading(basis=[], notes=[])
    assert out.basis is not None and out.notes is not None
    usable: list[HsctEvidence] = []
    for ev in evidence:
        if as_of is not None and ev.status == "done" and ev.date is not None and ev.date > as_of:
            out.notes.append((ev.path, f"{ev.basis}: the date {format_date(ev.date, ev.date_precision)} is after the "
                              f"assessment date, so it is read as planned, not as a transplant"))
            ev = HsctEvidence("planned", ev.date, ev.date_precision, ev.kind, ev.basis, ev.path)
        usable.append(ev)
    if not usable:
        return out
    best = max(_RANK[e.status] for e in usable)
    winners = [e for e in usable if _RANK[e.status] == best]
    out.status = winners[0].status
    dated = [e for e in winners if e.date is not None]
    chosen = max(dated, key=lambda e: e.date) if dated else winners[0]  # type: ignore[arg-type,return-value]
    out.date, out.date_precision, out.path = chosen.date, chosen.date_precision, chosen.path
    kinds = {e.kind for e in winners if e.kind}
    out.kind = kinds.pop() if len(kinds) == 1 else None
    if len(kinds) > 1:
        out.notes.append((chosen.path, "the records disagree on the donor type (allogeneic and autologous): "
                          "donor type left unstated"))
    out.basis.extend(e.basis for e in usable)
    losers = [e for e in usable if _RANK[e.status] < best]
    for e in losers:
        out.notes.append((e.path, f"{e.basis} reads as {status_words(e.status)}, but another record reads as "
                          f"{status_words(out.status)} ({chosen.basis}): '{status_words(out.status)}' is used - "
                          "check the transplant history"))
    return out


def evidence_from_text(text: str, path: str, where: str) -> tuple[HsctEvidence | None, str | None]:
    """Evidence from a free-text HSCT mention, or a note saying why none could be taken.

    ``where``: ``list`` for an entry in a list of what the patient has or had (a manifestation, a
    Condition): a bare mention there is transplant history. ``note`` for a free-text note: a bare
    mention says nothing about status."""
    m = read_hsct_text(text)
    if m is None:
        return None, None
    status = m.status
    how = f"'{text}'"
    if status is None:
        if where == "list":
            status = "done"
            how += " (listed as a condition: read as transplant history)"
        else:
            return None, (f"'{text}' names HSCT without saying whether it was done or planned: HSCT status "
                          "cannot be judged from it; give hsct.status")
    return HsctEvidence(status, m.date, m.date_precision, m.kind, how, path), None
