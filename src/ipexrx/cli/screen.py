"""``ipexrx screen``: population screening of a FHIR Bulk Data directory; ``ipexrx screen synth``: a synthetic one.

``ipexrx screen PATH`` is shorthand for ``ipexrx screen run PATH`` (a directory literally named ``synth`` is
written ``./synth``). DuckDB, hpo3 and PySpark are imported inside the commands, so the CLI starts fast.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from . import app
from .options import date_option


class _DefaultRun(TyperGroup):
    """``screen PATH ...`` runs ``screen run PATH ...``; ``screen synth ...`` and ``screen --help`` are left alone."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


screen_app = typer.Typer(cls=_DefaultRun, no_args_is_help=True,
                         help="Population screening of FHIR Bulk Data (NDJSON): undiagnosed IPEX / IPEX-like "
                         "candidates and unsafe regimens. `ipexrx screen PATH` = `ipexrx screen run PATH`.")
app.add_typer(screen_app, name="screen")


def _as_of(value: str | None) -> dt.date:
    return date_option(value) or dt.date.today()


@screen_app.command("run")
def run(
    path: Path = typer.Argument(..., help="Directory of Bulk Data files (Patient.ndjson, Condition.ndjson, ... "
                                "or .ndjson.gz)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    out: Path | None = typer.Option(None, "--out", help="Write candidates.csv, known.csv, safety.csv and "
                                    "report.html to this directory."),
    as_of: str | None = typer.Option(None, "--as-of", help="Date the monitoring intervals and ages are measured "
                                     "to (YYYY-MM-DD; default today)."),
    top: int | None = typer.Option(None, "--top", min=1, help="Show only the N best candidates."),
    memory_limit: str = typer.Option("1GB", "--memory-limit", help="DuckDB memory limit (spills to disk beyond)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="DuckDB threads (default: all cores)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar (terminal output only)."),
    all_scored: bool = typer.Option(False, "--all", help="List every patient with a scored feature, below the "
                                    "candidate threshold too (to validate the ranking)."),
    engine: str = typer.Option("duckdb", "--engine", help="Query engine: duckdb (embedded, the default) or spark "
                               "(PySpark, the optional extra ipexrx[spark]: local mode or a cluster)."),
    spark_master: str | None = typer.Option(None, "--spark-master", help="Spark master URL for --engine spark "
                                            "(default: IPEXRX_SPARK_MASTER, else local[2]; e.g. spark://host:7077)."),
    strict: bool = typer.Option(False, "--strict", help="Drug-safety checks: validate every element of each "
                                "assessed patient's resources against the FHIR R4 models (slower), as "
                                "`ipexrx assess --strict`."),
) -> None:
    """Rank patients whose record suggests IPEX or an IPEX-like disorder, and list unsafe regimens."""
    if engine not in ("duckdb", "spark"):
        typer.echo(f"error: --engine expects 'duckdb' or 'spark', got {engine!r}", err=True)
        raise typer.Exit(2)
    if spark_master is not None and engine != "spark":
        typer.echo("error: --spark-master applies to --engine spark only (the engine given is 'duckdb')", err=True)
        raise typer.Exit(2)
    from rich.console import Console

    from ..screen.run import screen

    date = _as_of(as_of)
    err = Console(stderr=True)
    if as_json or not progress:
        result = screen(path, as_of=date, top=top, memory_limit=memory_limit, threads=threads, all_scored=all_scored,
                        engine=engine, spark_master=spark_master, strict=strict)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True) as bar:
            task = bar.add_task("reading", total=None)

            def show(stage: str, done: int, total: int) -> None:
                bar.update(task, description=stage, completed=done, total=total or None)

            result = screen(path, as_of=date, top=top, memory_limit=memory_limit, threads=threads,
                            progress=show, all_scored=all_scored, engine=engine, spark_master=spark_master,
                            strict=strict)
    if out is not None:
        from ..screen.report import write_outputs

        written = write_outputs(result, out)
        err.print(f"wrote {', '.join(str(p) for p in written)}")
    if as_json:  # orjson: a 100k-patient result is 5 MB, which json's indenting encoder takes 0.1 s over
        import orjson

        typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode("utf-8"))
        return
    _print(result)


def _reason_line(r: dict[str, Any], marker: str = "") -> str:
    from rich.markup import escape

    return escape(_reason_plain(r) + (f" {marker}" if marker else ""))


def _reason_plain(r: dict[str, Any]) -> str:
    if r.get("hpo"):
        age = f", age {r['age_at_onset_years']:g} y" if r.get("age_at_onset_years") is not None else ", age unknown"
        return f"{r['feature']} [{r.get('code') or 'text'}{age}] {r['points']:g}"
    if "points" in r:
        return f"{r['feature']} +{r['points']:g}"
    return f"{r['feature']} x{r.get('factor')}"


def _print(result: dict[str, Any]) -> None:
    """The worklists as tables, alerts first (the drug-safety worklist, then the candidates with their next steps,
    then the evidence); every cited statement carries numbers ([2]) into the Sources list at the end, numbered in
    the order they are printed (the shared rule of the other faces)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..reference.citations import CitationNumbers
    from ..screen.report import SEVERITY_ORDER, ScreenSource, plain_error, screen_source

    numbers: CitationNumbers[ScreenSource] = CitationNumbers()

    def marker(sources: list[Any]) -> str:
        return numbers.marker(screen_source(x) for x in sources)

    con = Console()
    s = result["stats"]
    con.print(f"[bold]Population screen[/bold] as of {s['as_of']}: {s['patients']} patients, "
              f"{s['safety_patients_with_alerts']} patient(s) with drug-safety alerts, "
              f"{s['candidates']} candidate(s), {s['known']} already diagnosed ({s['total_seconds']} s).")
    if result["safety"]:
        st = Table(title="Drug safety (the assessment's rules)", show_lines=True)
        for col in ("patient", "drugs", "alerts"):
            st.add_column(col)
        for e in result["safety"]:
            alerts = sorted(e["alerts"], key=lambda a: SEVERITY_ORDER.get(a["severity"], 3))
            lines = [escape(f"[{a['severity']}] {a['summary']} {marker(a['sources'])}".rstrip()) for a in alerts]
            if e.get("error"):
                lines.insert(0, escape(plain_error(e["error"])))
            st.add_row(escape(e["patient"]), ", ".join(e["drugs"]), "\n".join(lines))
        con.print(st)
    con.print("[italic]Candidates are a worklist for clinical review: a suggestion, not a diagnosis or an "
              "order.[/italic]")
    t = Table(title="Candidates (best first)", show_lines=True)
    for col in ("#", "patient", "score", "closest pattern", "sex/age"):
        t.add_column(col)
    t.add_column("features that scored \\[code, age at onset] points", ratio=3)
    steps: dict[str, list[int]] = {}
    for i, c in enumerate(result["candidates"], start=1):
        feats = "\n".join(_reason_line(r, marker(r.get("threshold_sources", []))) for r in c["reasons"])
        age = f"{c['age_years']} y" if c.get("age_years") is not None else "age unknown"
        t.add_row(escape(str(i)), escape(c["patient"]), f"{c['score']:.1f}", escape(c["pattern"]),
                  escape(f"{c['sex']}, {age}"), feats)
        steps.setdefault(c["next_step"]["text"], []).append(i)
    con.print(t)
    by_text = {c["next_step"]["text"]: c["next_step"]["sources"] for c in result["candidates"]}
    for text, ranks in steps.items():
        who = f"candidate {ranks[0]}" if len(ranks) == 1 else f"candidates {', '.join(map(str, ranks))}"
        con.print(f"Suggested next step ({who}): {escape(text)} {escape(marker(by_text[text]))}")
    if result["known"]:
        k = Table(title="Already diagnosed (not candidates)")
        for col in ("patient", "diagnosis", "recorded as", "date"):
            k.add_column(col)
        for x in result["known"]:
            k.add_row(escape(x["patient"]), escape(x["diagnosis"]), escape(x["evidence"]), x["date"] or "")
        con.print(k)
    for b in s["bad_lines"]:
        con.print(f"[yellow]skipped[/yellow] {escape(b['file'])}:{b['line']}: {escape(b['problem'])}")
    method = s["method"].replace("; see docs/screen.md", "")
    con.print(f"Method: {escape(method)}. {escape(marker(s['method_sources']))}")
    if numbers:
        con.print("Sources", style="bold")
        for n, src in numbers.items():
            ref = f" doi:{src.doi}" if src.doi else f" PMID {src.pmid}" if src.pmid else ""
            con.print(escape(f"[{n}] {src.citation}{ref}"), soft_wrap=True)


@screen_app.command("synth")
def synth(
    out_dir: Path = typer.Argument(..., help="Directory to write the NDJSON files into (created if needed)."),
    patients: int = typer.Option(1000, "--patients", min=60, help="Number of patients."),
    seed: int = typer.Option(1, "--seed", help="Random seed (same seed, same files)."),
    as_of: str | None = typer.Option(None, "--as-of", help="Reference date of the population (default 2026-06-30)."),
    gzip_types: list[str] = typer.Option([], "--gzip", help="Resource type to write as .ndjson.gz (repeatable)."),
    bad_lines: int = typer.Option(0, "--bad-lines", min=0, help="Malformed lines to insert (to test readers)."),
    routine: int = typer.Option(4, "--routine-observations", min=0, help="Mean routine Observations per patient."),
) -> None:
    """Write a synthetic Bulk Data population (IPEX, IPEX-like, look-alikes, unsafe regimens, background)."""
    from ..screen.synth import DEFAULT_AS_OF, generate

    try:
        truth = generate(out_dir, patients, seed, as_of=_as_of(as_of) if as_of else DEFAULT_AS_OF,
                         gzip_types=tuple(gzip_types), bad_lines=bad_lines, routine_observations=routine)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    groups: dict[str, int] = {}
    for t in truth:
        key = t.group.split(":")[0]
        groups[key] = groups.get(key, 0) + 1
    typer.echo(f"wrote {patients} synthetic patients to {out_dir} ("
               + ", ".join(f"{k} {v}" for k, v in sorted(groups.items())) + "); truth in synth-truth.csv")
