"""Rich rendering of the reference views for the terminal.

Sources stay visible without drowning the text: each statement ends with bracketed numbers
(``[1, 3]``) and an evidence tag, and a numbered legend at the end of the view spells out each
citation (source title, section heading, DOI/PMID). Numbers are assigned in order of first
appearance, so the same view always prints the same numbers.

Consoles are made by :func:`console` with markup and emoji codes off: content text is data, and a
bracket or colon pair in a statement must print as written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from ..reference.citations import CitationNumbers
from ..reference.models import (
    CitationView,
    ClassView,
    DrugMonograph,
    ManifestationView,
    OptionView,
    Ref,
    SearchResults,
    SourcesView,
    StatementView,
    SummaryView,
)


def console() -> Console:
    return Console(highlight=False, markup=False, emoji=False)


class Legend:
    """Numbers citations in order of first use (the numbering the web pages and printouts use:
    :mod:`ipexrx.reference.citations`)."""

    def __init__(self) -> None:
        self.numbers: CitationNumbers[CitationView] = CitationNumbers()

    @property
    def cites(self) -> list[CitationView]:
        return self.numbers.entries()

    def refs(self, cites: Iterable[CitationView]) -> str:
        return self.numbers.marker(cites)

    def table(self) -> Group:
        rows: list[RenderableType] = []
        for c in self.cites:
            ident = "; ".join(x for x in (f"DOI {c.doi}" if c.doi else "", f"PMID {c.pmid}" if c.pmid else "") if x)
            line = Text(c.label)
            line.append(f"  ({c.kind}", style="dim")
            line.append(f"; {ident}" if ident else "", style="dim")
            verification = c.verification
            if verification and verification != "primary":
                line.append(f"; read via a {verification} source" if verification == "secondary"
                            else f"; {verification}", style="dim")
            line.append(")", style="dim")
            rows.append(line)
        marks = [f"[{i}]" for i in range(1, len(rows) + 1)]
        return Group(Text("Sources", style="bold"), Hang(rows, marks=marks, mark_style="cyan"))


class Renderer:
    def __init__(self, console: Console):
        self.console = console
        self.legend = Legend()

    # -- pieces -------------------------------------------------------------------------------
    def stmt(self, s: StatementView, style: str = "") -> Text:
        t = Text(s.text, style=style)
        refs = self.legend.refs(s.sources)
        if refs:
            t.append(f" {refs}", style="cyan")
        if s.evidence:
            t.append(f" ({s.evidence})", style="dim italic")
        return t

    def bullets(self, items: Iterable[StatementView], style: str = "", mark: str = "-") -> Hang | None:
        """A hanging-indent list: wrapped lines stay aligned under their text."""
        rows = [self.stmt(s, style) for s in items]
        return hang(rows, mark) if rows else None

    def section(self, title: str, body: RenderableType | None, style: str = "bold") -> None:
        if body is None or (isinstance(body, Text) and not body.plain):
            return
        self.console.print(Text(title, style=style))
        self.console.print(body)
        self.console.print()

    def refs_text(self, label: str, values: str, cites: Iterable[CitationView] = ()) -> Text:
        t = Text(f"{label}: ", style="bold")
        t.append(values)
        r = self.legend.refs(cites)
        if r:
            t.append(f" {r}", style="cyan")
        return t

    def options_block(self, options: list[OptionView]) -> Hang:
        """Options as numbered blocks: a heading line (label, role, evidence level, drugs), then the
        statement and its evidence with hanging indents. Tables squeeze long sentences at 80 columns."""
        blocks: list[RenderableType] = []
        for o in options:
            head = Text(o.label, style="bold")
            head.append(f"  {o.role}", style="magenta")
            if o.condition:
                head.append(f" (if {o.condition})", style="magenta")
            head.append(f"  evidence: {o.evidence_level}", style="green")
            if not o.on_source_page:
                head.append("  [beyond source page]", style="dim")
            names = ", ".join(r.name for r in [*o.drugs, *o.drug_classes])
            if names:
                head.append(f"\n{names}", style="dim")
            body: list[RenderableType] = [head, self.stmt(o.statement)]
            ev = self.bullets(o.evidence, "", "*")
            if ev is not None:
                body.append(ev)
            blocks.append(Group(*body))
        return Hang(blocks, marks=[f"{n}." for n in range(1, len(blocks) + 1)], mark_style="bold")

    def finish(self, footer: str | None = None) -> None:
        if self.legend.cites:
            self.console.print(self.legend.table())
        if footer:
            self.console.print(Text(footer, style="dim"))


class Hang:
    """A hanging-indent list (marker, then wrapped lines aligned under the text).

    Written as a renderable rather than a ``Table.grid`` because grids measure every cell several
    times, which made rendering a monograph cost more than the whole knowledge-base load.
    ``marks`` gives one marker per row (e.g. ``1.``, ``[12]``); otherwise every row gets ``mark``.
    """

    def __init__(self, rows: Sequence[RenderableType], mark: str = "-", marks: Sequence[str] | None = None,
                 mark_style: str = ""):
        self.rows = rows
        self.marks = list(marks) if marks is not None else [mark] * len(rows)
        self.mark_style = mark_style

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        indent = max((len(m) for m in self.marks), default=0) + 1
        inner = options.update(width=max(10, options.max_width - indent))
        rest, newline = Segment(" " * indent), Segment.line()
        style = console.get_style(self.mark_style) if self.mark_style else None
        out: list[Segment] = []  # a list, not a generator: far fewer frame switches per segment
        for mark, row in zip(self.marks, self.rows, strict=True):
            first = Segment(mark.ljust(indent), style)
            for i, line in enumerate(console.render_lines(row, inner, pad=False)):
                out.append(first if i == 0 else rest)
                out.extend(line)
                out.append(newline)
        return out


def hang(rows: Sequence[RenderableType], mark: str = "-") -> Hang:
    return Hang(rows, mark)


def _names(refs: Iterable[Ref]) -> str:
    return ", ".join(r.name for r in refs)


# --------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------
def render_summary(v: SummaryView, console: Console) -> None:
    r = Renderer(console)
    head = Text(f"{v.name} ({v.abbreviation})" if v.abbreviation else v.name, style="bold")
    head.append("\n")
    head.append_text(r.refs_text("Gene", f"{v.gene.symbol} ({v.gene.location or '?'}; {v.gene.hgnc or '-'})",
                                 v.gene.sources))
    head.append("\n")
    head.append_text(r.refs_text("Inheritance", "", []))
    head.append_text(r.stmt(v.inheritance))
    ids = v.identifiers
    id_text = ", ".join(x if ":" in x else f"{k} {x}" for k, x in (
        ("OMIM", ids.omim), ("ORPHA", ids.orpha), ("MONDO", ids.mondo), ("UMLS", ids.umls), ("SNOMED", ids.snomed),
    ) if x)
    if ids.icd10:
        id_text += f", ICD-10 {' '.join(ids.icd10)}"
    head.append("\n")
    head.append_text(r.refs_text("Identifiers", id_text, ids.sources))
    console.print(Panel(head, title="IPEX medication summary", title_align="left"))
    r.section("Cure", r.stmt(v.cure, "bold green"))
    r.section("Principles", r.bullets(v.principles))
    for m in v.manifestations:
        hpo = ", ".join(h.code for h in m.hpo)
        console.print(Text(f"{m.name}", style="bold magenta") + Text(f"  {m.id}; {hpo}", style="dim"))
        if m.options:
            console.print(r.options_block(m.options))
        else:
            console.print(Text("  no therapy options in the knowledge base", style="dim"))
        if m.caveats:
            console.print(Text("Caveats", style="yellow"))
            console.print(r.bullets(m.caveats, "yellow"))
        console.print()
    r.section("Caveats", r.bullets(v.caveats, "yellow"))
    r.section("HSCT evidence", r.bullets(v.hsct_evidence))
    r.section("Surveillance", r.bullets(v.surveillance))
    if v.ipex_like:
        console.print(Text("IPEX-like disorders (beyond the source page)", style="bold"))
        for x in v.ipex_like:
            console.print(Text(f"{x.name}", style="bold magenta") + Text(f"  gene {x.gene.symbol}", style="dim"))
            console.print(r.bullets(x.features))
            if x.therapies:
                console.print(r.options_block(x.therapies))
        console.print()
    r.finish(f"Content {v.content.content_version} ({v.content.released}). {v.content.disclaimer}")


def render_manifestation(v: ManifestationView, console: Console) -> None:
    r = Renderer(console)
    head = Text(v.name, style="bold")
    head.append(f"  ({v.id})", style="dim")
    head.append("\n")
    head.append_text(r.refs_text("HPO", ", ".join(f"{h.code} {h.label or ''}".strip() for h in v.hpo)))
    if v.synonyms:
        head.append("\n")
        head.append_text(r.refs_text("Synonyms", ", ".join(v.synonyms)))
    if v.description:
        head.append("\n")
        head.append_text(r.stmt(v.description))
    for f in v.frequency:
        head.append("\n")
        head.append_text(r.stmt(f))
    console.print(Panel(head, title="Manifestation", title_align="left"))
    if v.options:
        console.print(Text("Options (strongest evidence first; options to consider, not orders)", style="bold"))
        console.print(r.options_block(v.options))
    else:
        console.print(Text("No therapy options in the knowledge base.", style="dim"))
    console.print()
    r.section("Caveats", r.bullets(v.caveats, "yellow"))
    r.finish(f"Reviewed {v.review.date} by {v.review.reviewer}.")


def render_drug(v: DrugMonograph, console: Console) -> None:
    r = Renderer(console)
    head = Text(v.name, style="bold")
    if v.brands:
        head.append(f"  ({', '.join(b.name for b in v.brands)})")
    lines: list[Text] = []
    if v.synonyms:
        lines.append(r.refs_text("Synonyms", ", ".join(v.synonyms)))
    for b in v.brands:
        lines.append(r.refs_text("Brand", b.name + (f" - {b.note}" if b.note else ""), b.sources))
    cls = _names(v.classes) + (f" (within {_names(v.class_ancestors)})" if v.class_ancestors else "")
    lines.append(r.refs_text("Classes", cls))
    flags = [x for x, on in (("immunosuppressive", v.immunosuppressive),
                             ("calcineurin inhibitor", v.calcineurin_inhibitor)) if on]
    lines.append(r.refs_text("Role", v.role + ("" if v.on_source_page else " (beyond source page)")
                             + (f"; {', '.join(flags)}" if flags else "")))
    if v.routes:
        lines.append(r.refs_text("Routes", ", ".join(v.routes)))
    codes = []
    if v.codes.rxcui:
        codes.append(f"RxCUI {v.codes.rxcui}")
    elif v.codes.rxcui_note:
        codes.append(f"RxCUI: {v.codes.rxcui_note}")
    codes += [f"ATC {a.code}" + (f" ({a.scope})" if a.scope else "") + ("" if a.current else " [superseded]")
              for a in v.codes.atc]
    if codes:
        lines.append(r.refs_text("Codes", "; ".join(codes), v.codes.sources))
    if v.targets:
        lines.append(r.refs_text("Targets", ", ".join(v.targets)))
    for ln in lines:
        head.append("\n")
        head.append_text(ln)
    console.print(Panel(head, title="Drug", title_align="left"))

    if v.identity:
        r.section("Identity", r.stmt(v.identity))
    r.section("Mechanism", r.bullets(v.mechanism))
    r.section("Pharmacology", r.bullets(v.pharmacology))
    r.section("Approvals", r.bullets(v.approvals))
    r.section("Uses", r.bullets(v.uses))
    r.section("Evidence in IPEX", r.bullets(v.evidence_in_ipex))
    if v.literature:
        blocks: list[RenderableType] = []
        for x in v.literature:
            head = Text(x.title, style="bold")
            head.append(f" {r.legend.refs([x.source])}", style="cyan")
            head.append(f"\n{x.design}; {x.population}", style="dim")
            finds = [Text(f.text) + Text(f" ({f.evidence})", style="dim italic") for f in x.findings]
            blocks.append(Group(head, hang(finds, "*")))
        r.section("Literature", hang(blocks))
    if v.options:
        t = Table(box=box.SIMPLE_HEAD)
        for col in ("disorder", "manifestation", "option", "role", "evidence"):
            t.add_column(col)
        for u in v.options:
            t.add_row(u.disorder.name, u.manifestation.name if u.manifestation else "-",
                      u.label + (f"\n(via class {u.via_class.name})" if u.via_class else ""),
                      u.role + (f"\nif {u.condition}" if u.condition else ""), u.evidence_level)
        r.section("Therapy options naming this drug", t)

    if v.formulations:
        frows = [Group(Text(f.name, style="bold"), r.stmt(f.switch)) for f in v.formulations]
        r.section("Formulations (not interchangeable mg for mg)", hang(frows))
    if v.products:
        pt = Table(box=box.SIMPLE_HEAD)
        for col in ("form", "route", "strengths", "brands", "RxNorm"):
            pt.add_column(col)
        for p in v.products:
            pt.add_row(p.form, p.route, ", ".join(p.strengths), ", ".join(p.brands) or "generic",
                       "\n".join(f"{x.code} {x.tty}" for x in p.rxnorm) or "-")
        r.section("Dosage forms and strengths", pt)
    r.section("Dosing", r.bullets(v.dosing))
    if v.dose_ranges:
        dt_ = Table(box=box.SIMPLE_HEAD)
        for col in ("route", "ages", "context", "usual", "maximum"):
            dt_.add_column(col)
        for d in v.dose_ranges:
            ages = (f"{d.age_min_years or 0:g}-{d.age_max_years:g} y" if d.age_max_years is not None
                    else f"{d.age_min_years or 0:g} y and over")
            usual = (f"{d.low:g}-" if d.low is not None else "up to ") + f"{d.high:g} {d.basis}"
            mx = [f"{d.maximum:g} {d.basis}"] if d.maximum else []
            if d.absolute_max:
                mx.append(f"{d.absolute_max:g} {d.basis.split('/')[0]}/{d.basis.split('/')[-1]} at most")
            dt_.add_row(", ".join(d.routes), ages, d.context + (f" ({d.formulation})" if d.formulation else ""),
                        usual, "; ".join(mx) or "-")
        notes = r.bullets([d.statement for d in v.dose_ranges])
        r.section("Labelled dose ranges (checked by the assessment; not orders)",
                  Group(dt_, notes) if notes is not None else dt_)
    sf = v.safety
    r.section("Boxed warnings", r.bullets(sf.boxed_warnings, "bold red"), "bold red")
    r.section("Contraindications", r.bullets(sf.contraindications))
    r.section("Warnings", r.bullets(sf.warnings))
    r.section("Common adverse reactions", r.bullets(sf.adverse_reactions_common))
    r.section("Serious adverse reactions", r.bullets(sf.adverse_reactions_serious))
    r.section("Pregnancy", r.bullets(sf.pregnancy))
    r.section("Lactation", r.bullets(sf.lactation))
    if sf.section_notes:
        gap_lines = []
        for n in sf.section_notes:
            line = Text(f"- {n.text}", style="yellow" if n.status == "not-encoded" else "")
            if n.sources:
                line.append(" " + r.legend.refs(n.sources), style="cyan")
            gap_lines.append(line)
        r.section("Sections with nothing shown above", Group(*gap_lines), "bold yellow")
    if sf.screening:
        srows: list[RenderableType] = []
        for sc in sf.screening:
            head = Text(f"{sc.parameter}: {', '.join(sc.tests)}", style="bold")
            head.append(f"  {sc.when}", style="magenta")
            sparts: list[RenderableType] = [head, r.stmt(sc.statement)]
            if sc.action_if_positive:
                sparts.append(Text("If positive: ", style="bold") + r.stmt(sc.action_if_positive))
            srows.append(Group(*sparts))
        r.section("Screening before treatment", hang(srows))
    if sf.monitoring:
        rows: list[RenderableType] = []
        for m in sf.monitoring:
            head = Text(m.parameter, style="bold")
            head.append(f"  at least every {m.interval_days} days" if m.interval_days else "  no fixed interval",
                        style="magenta")
            mparts: list[RenderableType] = [head, r.stmt(m.statement)]
            if m.interval_basis:
                mparts.append(Text("Interval: ", style="dim") + r.stmt(m.interval_basis, "dim"))
            rows.append(Group(*mparts))
        r.section("Monitoring", hang(rows))
    if sf.vaccines:
        vt = Text(f"Live vaccines: {sf.vaccines.live_vaccines}. ", style="bold")
        vt.append_text(r.stmt(sf.vaccines.statement))
        r.section("Vaccines", vt)
    if sf.target_ranges:
        trows: list[RenderableType] = []
        for tr in sf.target_ranges:
            head = Text(f"{tr.parameter} {tr.low:g}-{tr.high:g} {tr.unit} ({tr.matrix})", style="bold")
            head.append(f"  {tr.context}", style="magenta")
            trows.append(Group(head, r.stmt(tr.statement)))
        r.section("Reported target ranges (context-specific; not orders)", hang(trows))
    if v.interactions:
        iblocks: list[RenderableType] = []
        for it in v.interactions:
            sev_style = {"contraindicated": "bold red", "major": "red", "moderate": "yellow"}[it.severity]
            head = Text(f"with {it.other.name}", style="bold") + Text(f"  {it.severity}", style=sev_style)
            parts: list[RenderableType] = [head, r.stmt(it.mechanism)]
            if it.effect:
                parts.append(r.stmt(it.effect))
            instr: list[Text] = []
            for ins in it.instructions:
                line = Text(ins.kind, style="bold")
                extra = []
                if ins.applies_to:
                    extra.append(f"applies to {ins.applies_to.name}")
                if ins.dose_fraction is not None:
                    extra.append(f"dose x {ins.dose_fraction:.3g}")
                if ins.separation_hours is not None:
                    extra.append(f"{ins.separation_hours:g} h apart")
                if extra:
                    line.append(f" ({'; '.join(extra)})")
                line.append(": ")
                line.append_text(r.stmt(ins.text))
                instr.append(line)
            parts.append(hang(instr, ">"))
            iblocks.append(Group(*parts))
        r.section("Interactions", hang(iblocks))
    for title, rules in (("Interactions by mechanism (this drug's label)", v.interaction_rules),
                         ("Drugs whose labels name this drug's group", v.affects)):
        if not rules:
            continue
        mblocks: list[RenderableType] = []
        for mr in rules:
            sev_style = {"contraindicated": "bold red", "major": "red", "moderate": "yellow"}[mr.severity]
            head = Text(f"{mr.victim.name} with {mr.mechanism.name}", style="bold") + Text(f"  {mr.severity}",
                                                                                         style=sev_style)
            mparts2: list[RenderableType] = [head, Text("Group: " + _names(mr.members), style="dim"),
                                             r.stmt(mr.effect)]
            mparts2.append(hang([Text(ins.kind, style="bold") + Text(": ") + r.stmt(ins.text)
                                 for ins in mr.instructions], ">"))
            mblocks.append(Group(*mparts2))
        r.section(title, hang(mblocks))
    if v.dosing_caveat:
        r.section("Dosing in IPEX", r.stmt(v.dosing_caveat, "yellow"))
    r.finish(f"Reviewed {v.review.date} by {v.review.reviewer}. Supports, never replaces, clinical judgement "
             "and the full product label.")


def render_class(v: ClassView, console: Console) -> None:
    r = Renderer(console)
    head = Text(v.name, style="bold")
    head.append(f"  ({v.id})", style="dim")
    if v.synonyms:
        head.append("\n")
        head.append_text(r.refs_text("Synonyms", ", ".join(v.synonyms)))
    if v.atc:
        head.append("\n")
        head.append_text(r.refs_text("ATC", ", ".join(v.atc)))
    if v.ancestors:
        head.append("\n")
        head.append_text(r.refs_text("Within", " > ".join(a.name for a in v.ancestors)))
    if v.subclasses:
        head.append("\n")
        head.append_text(r.refs_text("Subclasses", _names(v.subclasses)))
    console.print(Panel(head, title="Drug class", title_align="left"))
    r.section("Summary", r.bullets(v.summary))
    if v.members:
        t = Table(box=box.SIMPLE_HEAD)
        t.add_column("drug", style="bold")
        t.add_column("via class")
        for m in v.members:
            t.add_row(m.name, m.via.name if m.via.id != v.id else "-")
        r.section("Members", t)
    else:
        r.section("Members", Text("no drugs of this class in the knowledge base", style="dim"))
    r.finish(f"Reviewed {v.review.date} by {v.review.reviewer}.")


def render_sources(v: SourcesView, console: Console) -> None:
    console.print(Text(f"Sources registry ({len(v.sources)} sources)", style="bold"))
    console.print()
    for s in v.sources:
        head = Text(s.id, style="bold cyan")
        head.append(f"  {s.kind}; verified {s.verification}", style="magenta")
        if s.accessed:
            head.append(f" (accessed {s.accessed})", style="magenta")
        head.append(f"; cited {s.cited} time(s)", style="dim")
        body = Text(s.title, style="bold")
        body.append(f"\n{s.citation}")
        for line in (f"DOI {s.doi}" if s.doi else "", f"PMID {s.pmid}" if s.pmid else "", s.url or "",
                     f"DailyMed set id {s.setid}" if s.setid else "",
                     f"version read: {s.version}" if s.version else ""):
            if line:
                body.append(f"\n{line}", style="dim")
        if s.sections:
            body.append("\nsections: " + "; ".join(f"{x.locator} = {x.heading}" for x in s.sections), style="dim")
        if s.note:
            body.append(f"\n{s.note}", style="dim italic")
        console.print(head)
        console.print(hang([body], " "))
    console.print(Text("verified: primary = read in the source itself; curated = via a curated database; "
                       "secondary = via a source that quotes it.", style="dim"))


def render_search(v: SearchResults, console: Console) -> None:
    if not v.results:
        console.print(f"No matches for '{v.query}'.")
        return
    console.print(Text(f"Search: {v.query}  ({len(v.results)} best matches)", style="bold"))
    rows: list[RenderableType] = []
    for h in v.results:
        # the id only where it is a name one can type (a drug, class, manifestation); never a record id
        shown = f"{h.kind}" if h.kind == "interaction" or h.id == h.title else f"{h.kind} {h.id}"
        head = Text(h.title, style="bold") + Text(f"  {shown}", style="dim")
        body = Text(h.snippet) + Text(f"  ({h.field})", style="dim")
        rows.append(Group(head, body, Text(f"-> {h.command}", style="cyan")))
    console.print(Hang(rows, marks=[f"{h.score:.0f}" for h in v.results], mark_style="green"))
