"""``ipexrx assess``: one patient (terminal report, --json, --html, --fhir) or a whole NDJSON batch.

The library does the work (:func:`ipexrx.assess.assess`); this module reads files, chooses the
output face and turns input errors into a located message and exit code 1 (no traceback).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from . import app
from .options import date_option

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from ..assess.models import Alert, Assessment, PlanChoice, SourceRef
    from ..patient.errors import PatientInputError
    from ..reference.citations import CitationNumbers

SEV_STYLE = {"critical": "bold white on red", "warning": "bold black on yellow", "info": "bold white on blue"}


def _as_of(value: str | None) -> dt.date:
    return date_option(value) or dt.date.today()


def _read(path: Path, as_json: bool = False) -> bytes:
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except OSError as exc:
        typer.echo(f"error: cannot read {path}: {exc.strerror or exc}", err=True)
        if as_json:
            from ..patient.errors import InputIssue, PatientInputError
            from .errors import echo_json_error

            echo_json_error(PatientInputError(InputIssue("$", "a readable file", str(exc.strerror or exc)),
                                              f"cannot read {path}"), [str(path)])
        raise typer.Exit(1) from None


def _input_error(exc: PatientInputError, where: str, data: bytes | None = None, as_json: bool = False) -> None:
    """Each problem as 'FILE, line N, field "x": what is wrong' on stderr (the JSON paths stay in --json outputs);
    with ``as_json`` also the error as JSON on stdout (message, every issue with its path, expected, got and
    where in words)."""
    from ..patient.errors import issue_lines, issue_places

    typer.echo(f"error: {where}: {exc.summary}", err=True)
    for text in issue_lines(exc, where, data):
        typer.echo(f"  - {text}", err=True)
    if as_json:
        from .errors import echo_json_error

        echo_json_error(exc, issue_places(exc, where, data, limit=len(exc.issues)))
    raise typer.Exit(1)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"written: {output}", err=True)


@app.command("assess")
def assess_cmd(
    file: Path | None = typer.Argument(None, help="Patient JSON or FHIR R4 Bundle ('-' for stdin)."),
    as_json: bool = typer.Option(False, "--json", help="Print the assessment as JSON (schema: ipexrx schema "
                                 "assessment)."),
    as_html: bool = typer.Option(False, "--html", help="Print a self-contained printable HTML page."),
    as_fhir: bool = typer.Option(False, "--fhir", help="Print a FHIR R4 Bundle (DetectedIssue + RequestGroup)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
    as_of: str | None = typer.Option(None, "--as-of", help="Assessment date YYYY-MM-DD (default: today)."),
    batch: Path | None = typer.Option(None, "--batch", help="NDJSON file: one patient or Bundle per line."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar in batch mode."),
    save: bool = typer.Option(False, "--save", help="Keep the assessment in the local database (see "
                              "`ipexrx assessments`; $IPEXRX_DATABASE_URL selects another database)."),
    ipex_plan: bool | None = typer.Option(
        None, "--ipex-plan/--no-ipex-plan", show_default=False,
        help="Show the IPEX plan (HSCT, options per manifestation) for any chart / for none. Default: only when "
        "the chart has IPEX or an IPEX-like disorder. Drug-safety checks run either way."),
    strict: bool = typer.Option(False, "--strict", help="Validate every element of a FHIR Bundle against the FHIR "
                                "R4 models before reading (slower); an entry that fails is skipped and named. "
                                "Default: the elements the checks read are validated."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Batch mode: assess on this many processes "
                                "(output order is kept)."),
    dose_suggestions: bool = typer.Option(False, "--dose-suggestions/--no-dose-suggestions", help="Batch mode: "
                                          "also fit the population models for each out-of-range trough (tens of "
                                          "ms per such patient; a single assessment always does). Without it "
                                          "the alert says the suggestion was not calculated."),
) -> None:
    """Assess a patient: safety alerts with sources for every chart; for IPEX or an IPEX-like disorder also
    HSCT status and options per manifestation (the report says which mode it is in, at the top)."""
    date = _as_of(as_of)
    plan = plan_choice(ipex_plan)
    if batch is not None:
        if file is not None:
            typer.echo("error: give either FILE or --batch FILE.ndjson, not both", err=True)
            raise typer.Exit(2)
        _run_batch(batch, output, date, progress, plan, strict=strict, workers=workers,
                   dose_suggestions=dose_suggestions)
        return
    if file is None:
        typer.echo("error: missing FILE (a patient JSON or FHIR Bundle), or use --batch FILE.ndjson", err=True)
        raise typer.Exit(2)
    if sum((as_json, as_html, as_fhir)) > 1:
        typer.echo("error: choose one of --json, --html, --fhir", err=True)
        raise typer.Exit(2)
    from ..assess import assess
    from ..patient.errors import PatientInputError

    data = _read(file, as_json)
    try:
        result = assess(data, as_of=date, ipex_plan=plan, strict=strict)
    except PatientInputError as exc:
        _input_error(exc, "standard input" if str(file) == "-" else str(file), data, as_json=as_json)
        return
    if save:
        _save(result, data)
    if as_json:
        _write(result.model_dump_json(indent=2), output)
    elif as_html:
        from ..report import render_assessment_html

        _write(render_assessment_html(result), output)
    elif as_fhir:
        import json

        _write(json.dumps(result.to_fhir(), indent=2), output)
    else:
        from rich.console import Console

        if output is not None:
            with output.open("w", encoding="utf-8") as fh:
                render_assessment(result, Console(file=fh, highlight=False, width=110))
            typer.echo(f"written: {output}", err=True)
        else:
            render_assessment(result, Console(highlight=False))
    counts = result.counts()
    if counts["critical"] and not (as_json or as_html or as_fhir):
        typer.echo(f"{counts['critical']} critical alert(s).", err=True)


def plan_choice(flag: bool | None) -> PlanChoice:
    """--ipex-plan -> 'always', --no-ipex-plan -> 'never', neither -> 'auto'."""
    return "auto" if flag is None else "always" if flag else "never"


def _save(result: Any, raw: bytes) -> None:
    import json

    from .. import __version__
    from ..storage import Database

    db = Database()
    db.migrate()
    aid = db.save_assessment(json.loads(result.model_dump_json()), raw, __version__)
    typer.echo(f"saved as assessment #{aid} in {db.url} (ipexrx assessments show {aid})", err=True)


assessments_app = typer.Typer(help="Saved assessments (made with `ipexrx assess FILE --save`).",
                              no_args_is_help=True)
app.add_typer(assessments_app, name="assessments")


@assessments_app.command("list")
def assessments_list(
    patient: str | None = typer.Option(None, "--patient", help="Only this patient id."),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Saved assessments, newest first: when, which patient, knowledge-base version, alert counts."""
    import json

    from ..storage import Database

    db = Database()
    db.migrate()
    rows = db.saved_assessments(patient, limit)
    if as_json:
        typer.echo(json.dumps([{
            "id": r.id, "saved_at": r.saved_at.isoformat(), "patient_id": r.patient_id, "as_of": r.as_of.isoformat(),
            "kb_version": r.kb_version, "software_version": r.software_version, "input_sha256": r.input_sha256,
            "critical": r.critical, "warning": r.warning, "info": r.info} for r in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"saved assessments ({db.url})")
    for col in ("id", "saved", "patient", "as of", "knowledge base", "critical", "warning", "info"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r.id), r.saved_at.strftime("%Y-%m-%d %H:%M"), r.patient_id or "-", r.as_of.isoformat(),
                  r.kb_version, str(r.critical), str(r.warning), str(r.info))
    Console().print(t)


@assessments_app.command("show")
def assessments_show(
    assessment_id: int = typer.Argument(..., help="Id printed by `--save` or `ipexrx assessments list`."),
    as_json: bool = typer.Option(False, "--json", help="Print the stored assessment JSON."),
) -> None:
    """One saved assessment, exactly as it was produced (with the knowledge-base version it was made with)."""
    from ..assess.models import Assessment
    from ..storage import Database

    db = Database()
    db.migrate()
    row = db.saved_assessment(assessment_id)
    if row is None:
        typer.echo(f"error: no saved assessment #{assessment_id} in {db.url}", err=True)
        raise typer.Exit(1)
    result = Assessment.model_validate(row.assessment)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    from rich.console import Console

    typer.echo(f"saved assessment #{row.id}, {row.saved_at:%Y-%m-%d %H:%M} UTC, software {row.software_version}, "
               f"input sha256 {row.input_sha256[:12]}...")
    render_assessment(result, Console(highlight=False))


# ---------------------------------------------------------------------------------------------
# Terminal report
# ---------------------------------------------------------------------------------------------
def _alert(console: Console, al: Alert, cites: CitationNumbers[SourceRef]) -> None:
    from rich.text import Text

    head = Text()
    head.append(f" {al.severity.value.upper()} ", style=SEV_STYLE[al.severity.value])
    head.append(f" {al.summary} ", style="bold")
    head.append(cites.marker(al.sources), style="dim")
    console.print(head)
    console.print(Text(f"   Why: {al.reasoning}"))
    console.print(Text(f"   Action: {al.action}", style="italic"))
    if al.evidence:
        console.print(Text(f"   Note: {al.evidence}", style="dim"))
    console.print(Text(f"   Triggered by: {'; '.join(trigger_text(t) for t in al.triggers)}", style="dim"))
    if not al.sources:
        console.print(Text("   (no published source: this alert reports what the record lacks)", style="dim"))


def trigger_text(t: Any) -> str:
    """'lab tacrolimus trough (lab result 1)': what set off an alert and where it is in the record, in words."""
    from ..patient.errors import plain_location

    where = plain_location(t.path)
    return f"{t.kind} {t.label}" + (f" ({where})" if where else "")


MODE_LABEL = {"ipex": "IPEX", "ipex-like": "IPEX-like disorder", "ipex-unconfirmed": "IPEX suspected (unconfirmed)",
              "ipex-plan-on-request": "IPEX plan on request", "drug-safety-only": "drug-safety checks only"}


def report_title(a: Assessment) -> str:
    return "IPEX medication assessment" if a.ipex_plan else "Medication safety assessment (ipexrx)"


def figure_text(f: Any) -> str:
    """'73.2% (95% CI 59.4-83.0)' or 'P = 0.055'."""
    from ..patient.units import fmt_number

    if f.unit == "p-value":
        return f"P = {f.value:g}"
    ci = f" (95% CI {fmt_number(f.ci_low)}-{fmt_number(f.ci_high)})" if f.ci_low is not None else ""
    return f"{fmt_number(f.value)}{'%' if f.unit == '%' else ' ' + f.unit}{ci}"


def render_assessment(a: Assessment, console: Console) -> None:
    """The readable terminal report."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from ..assess.citations import assessment_citations

    cites = assessment_citations(a)  # the numbers the web page and the printout show too
    p = a.patient
    dx = "no IPEX or IPEX-like diagnosis" if p.diagnosis == "none" else p.diagnosis
    who = f"Patient {p.id or '(no id)'}: {dx}"
    if p.foxp3_variant:
        who += f", FOXP3 {p.foxp3_variant}"
    if p.ipex_like:
        who += f" ({p.ipex_like})"
    age = f"{p.age_years:.1f} y" if p.age_years is not None else "age not recorded"
    weight = f"{p.weight_kg} kg" if p.weight_kg is not None else "weight not recorded"
    console.print(Text(f"{report_title(a)} - as of {a.as_of} - knowledge base {a.kb_version}", style="bold"))
    console.print(Text(f"Mode: {MODE_LABEL.get(a.mode, a.mode)}. {a.mode_reason}", style="bold"))
    console.print(Text(f"{who}; {age}; {p.sex}; {weight}"))
    console.print(Text(a.disclaimer, style="dim"))

    # Alerts first (critical, then warning, then info); the IPEX plan and its evidence after them.
    counts = a.counts()
    console.print(Text(f"Alerts: {counts['critical']} critical, {counts['warning']} warning, {counts['info']} info",
                       style="bold underline"))
    if not a.alerts:
        console.print("  none")
    for al in a.alerts:
        _alert(console, al, cites)

    h = a.hsct
    if h is not None:
        body = Text()
        body.append(f"Status: {h.status_text}{f' ({h.when()})' if h.date else ''}. ", style="bold")
        body.append(h.curative_statement + " " + cites.marker(h.sources))
        if h.recommendation:
            body.append("\n" + h.recommendation, style="bold")
        body.append("\n" + h.applies_to_diagnosis, style="dim")
        for f in h.figures:
            body.append(f"\n  - {f.name}: {figure_text(f)} {cites.marker([f.source])}")
        if h.read_from:
            body.append("\nRead from: " + "; ".join(h.read_from), style="dim")
        for note in h.notes:
            body.append(f"\n  {note}", style="dim")
        if h.followup:
            body.append("\nAfter HSCT:", style="bold")
        for st in h.followup:
            body.append(f"\n  - {st.text} {cites.marker(st.sources)}" + (f" ({st.evidence})" if st.evidence else ""))
        console.print(Panel(body, title="Curative therapy (HSCT)", title_align="left"))

    if a.ipex_plan:
        console.print(Text("Manifestations: options, strongest evidence first", style="bold underline"))
        if not a.manifestations:
            console.print("  no active manifestations recorded")
    for m in a.manifestations:
        title = f"{m.name}" + (f" ({', '.join(m.hpo)})" if m.hpo else "")
        console.print(Text(f"\n{title}", style="bold"))
        if m.note:
            console.print(Text(f"  {m.note}", style="dim"))
        for n, o in enumerate(m.options, start=1):
            line = Text(f"  {n}. {o.label}", style="bold")
            line.append(f"  {o.evidence_level}, {o.role}" + (f", {o.condition}" if o.condition else ""), style="")
            if o.patient_receives:
                line.append("  [patient receives]", style="bold green")
            elif o.patient_planned:
                line.append("  [planned]", style="bold cyan")
            console.print(line)
            console.print(Text(f"     {o.statement} {cites.marker(o.sources)}"))
            for c in o.caveats:
                console.print(Text(f"     Caveat: {c}", style="dim"))
        for c in m.caveats:
            console.print(Text(f"  Caveat: {c}", style="dim"))

    if a.medications:
        table = Table(title="Medications as read", title_justify="left", expand=True)
        for col in ("Input", "Read as", "Status", "Dose", "Route/frequency"):
            table.add_column(col)
        for med in a.medications:
            table.add_row(med.input, med.drug_name or med.drug_id or "not in the knowledge base; not checked",
                          med.status, med.dose or "", " ".join(x for x in (med.route, med.frequency) if x))
        console.print(table)
    if a.warnings:
        from ..patient.errors import plain_location

        console.print(Text("Input warnings", style="bold underline"))
        for w in a.warnings:
            console.print(Text(f"  {plain_location(w.path)}: {w.message}"))
    if cites:
        console.print(Text("Sources", style="bold underline"))
        for n, s in cites.items():
            console.print(Text(f"  [{n}] {s.short()}", style="dim"))


# ---------------------------------------------------------------------------------------------
# Batch
# ---------------------------------------------------------------------------------------------
def _run_batch(path: Path, output: Path | None, as_of: dt.date, show_progress: bool,
               plan: PlanChoice = "auto", strict: bool = False, workers: int = 1,
               dose_suggestions: bool = False) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from ..assess import assess_batch_lines

    try:
        fh = path.open("rb")
    except OSError as exc:
        typer.echo(f"error: cannot read {path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    with fh:
        total = sum(1 for _ in fh)
        fh.seek(0)
        err = Console(stderr=True, highlight=False)
        if output:
            out: Any = output.open("wb")
        else:  # the lines are UTF-8 bytes: straight to stdout's buffer when it has one
            sys.stdout.flush()
            out = getattr(sys.stdout, "buffer", None) or _TextSink(sys.stdout)
        stats = {"patients": 0, "errors": 0, "critical": 0, "warning": 0, "info": 0, "with_critical": 0}
        errors: list[tuple[int, str]] = []
        try:
            with Progress(TextColumn("assessing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          console=err, disable=not show_progress, transient=True) as bar:
                task = bar.add_task("batch", total=total)
                last = 0
                for res in assess_batch_lines(fh, as_of=as_of, ipex_plan=plan, strict=strict, workers=workers,
                                              dose_suggestions=dose_suggestions):
                    out.write(res.ndjson)
                    if res.counts is not None:
                        stats["patients"] += 1
                        c = res.counts
                        for k in ("critical", "warning", "info"):
                            stats[k] += c[k]
                        stats["with_critical"] += 1 if c["critical"] else 0
                    else:
                        stats["errors"] += 1
                        errors.append((res.line, res.error or "not assessed"))
                    bar.advance(task, res.line - last)
                    last = res.line
        finally:
            if output:
                out.close()
            else:
                out.flush()
    table = Table(title=f"Batch {path.name} (as of {as_of})", title_justify="left")
    table.add_column("Measure")
    table.add_column("Count", justify="right")
    for label, key in (("patients assessed", "patients"), ("lines with errors", "errors"),
                       ("patients with a critical alert", "with_critical"), ("critical alerts", "critical"),
                       ("warning alerts", "warning"), ("info alerts", "info")):
        table.add_row(label, str(stats[key]))
    err.print(table)
    for line, msg in errors[:20]:
        err.print(Text_(f"{path}, line {line}, {msg}"))
    if len(errors) > 20:
        err.print(Text_(f"... and {len(errors) - 20} more line errors (see the NDJSON output)"))
    if output:
        err.print(Text_(f"results written: {output}"))
    if stats["patients"] == 0 and stats["errors"]:
        raise typer.Exit(1)


class _TextSink:
    """Writes UTF-8 lines to a text stream that has no byte buffer (a redirected sys.stdout)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data.decode("utf-8"))

    def flush(self) -> None:
        self.stream.flush()


def Text_(s: str) -> Any:  # noqa: N802 - tiny helper so messages are never parsed as markup
    from rich.text import Text

    return Text(s)
