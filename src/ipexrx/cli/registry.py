"""``ipexrx registry``: set up, fill (synthetic demo), verify, report, export, back up, restore.

Local operator commands (init, demo, audit verify, backup, restore) act as the ``system`` operator:
whoever can open the database file or URL already holds everything. Commands that read patient
data as a user (report, export) take that user's API token (``--token`` or
``$IPEXRX_REGISTRY_TOKEN``) so that the same roles and centre scoping apply as in the web API.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from . import app

registry_app = typer.Typer(help="Multi-centre IPEX registry (pseudonymised, audited). See docs/registry.md.",
                           no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
registry_app.add_typer(audit_app, name="audit")
app.add_typer(registry_app, name="registry")

AS_OF_OPT = typer.Option(None, "--as-of", help="Report date YYYY-MM-DD, printed on the report and the day follow-up "
                         "is measured to (default: now); the same data and date give the same report.")
DB_OPT = typer.Option(None, "--db", help="Database URL (default: $IPEXRX_DATABASE_URL or SQLite in the user data dir).")


def _open(db: str | None) -> Any:
    """The registry, or one clear line when the database URL is wrong or the server is unreachable."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    from ..registry import Registry

    try:
        return Registry(db)
    except ModuleNotFoundError as exc:
        typer.echo(f"error: no database driver '{exc.name}' for {db or 'the configured URL'}; for PostgreSQL use "
                   "postgresql+psycopg://user:password@host/db", err=True)
    except ArgumentError as exc:
        typer.echo(f"error: not a database URL: {db!r} ({exc}); expected e.g. sqlite:////path/file.sqlite3 or "
                   "postgresql+psycopg://user:password@host/db", err=True)
    except OperationalError as exc:
        typer.echo(f"error: cannot open the database: {str(exc.orig).strip().splitlines()[0]}", err=True)
    raise typer.Exit(1)


def _run(fn: Any) -> Any:
    from ..registry.errors import RegistryError

    try:
        return fn()
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _actor(reg: Any, token: str | None) -> Any:
    from ..registry import SYSTEM

    token = token or os.environ.get("IPEXRX_REGISTRY_TOKEN")
    if not token:
        return SYSTEM
    return reg.actor_for_token(token)


@registry_app.command("init")
def init(
    admin: str = typer.Option(..., help="Username of the first administrator."),
    password_env: str = typer.Option("IPEXRX_ADMIN_PASSWORD", help="Environment variable holding the password "
                                     "(not a command-line argument: it would land in shell history)."),
    db: str | None = DB_OPT,
) -> None:
    """Create the schema and the first administrator (only when the registry has no user yet)."""
    from ..registry import SYSTEM

    password = _secret(password_env, "Password", confirm=True)
    reg = _open(db)
    if reg.has_users():
        typer.echo("error: the registry already has users; add more with the API as an administrator", err=True)
        raise typer.Exit(1)
    _run(lambda: reg.create_user(SYSTEM, {"username": admin, "password": password, "role": "admin"}))
    typer.echo(f"registry ready at {reg.url}; administrator '{admin}' created")


def _secret(env: str, prompt: str, confirm: bool = False) -> str:
    return os.environ.get(env) or typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)


def _token_actor(reg: Any, token: str | None) -> Any:
    token = token or os.environ.get("IPEXRX_REGISTRY_TOKEN")
    if not token:
        typer.echo("error: this command acts as a registry user: give --token or set $IPEXRX_REGISTRY_TOKEN "
                   "(get one with `ipexrx registry token --user NAME`)", err=True)
        raise typer.Exit(2)
    return _run(lambda: reg.actor_for_token(token))


TOKEN_OPT = typer.Option(None, "--token", help="API token of the acting user (default $IPEXRX_REGISTRY_TOKEN).")


@registry_app.command("token")
def token_cmd(
    user: str = typer.Option(..., "--user", help="Your registry username."),
    label: str = typer.Option("cli", help="What the token is for (shown in the audit log)."),
    days: int = typer.Option(90, min=1, max=3650, help="Validity in days."),
    db: str | None = DB_OPT,
) -> None:
    """Log in (password from $IPEXRX_PASSWORD or a prompt) and print a new API token, once."""
    reg = _open(db)
    password = _secret("IPEXRX_PASSWORD", "Password")
    actor = _run(lambda: reg.authenticate(user, password))
    typer.echo(_run(lambda: reg.issue_token(actor, label, ttl_days=days)))


centre_app = typer.Typer(help="Centres (administrators).", no_args_is_help=True)
user_app = typer.Typer(help="Users and their roles (administrators).", no_args_is_help=True)
registry_app.add_typer(centre_app, name="centre")
registry_app.add_typer(user_app, name="user")


@centre_app.command("add")
def centre_add(
    code: str = typer.Argument(..., help="Short upper-case code, e.g. MIL-TIGET."),
    name: str = typer.Argument(..., help="Centre name."),
    country: str | None = typer.Option(None, help="ISO 3166-1 alpha-2 country code."),
    token: str | None = TOKEN_OPT,
    db: str | None = DB_OPT,
) -> None:
    """Add a centre."""
    reg = _open(db)
    actor = _token_actor(reg, token)
    _run(lambda: reg.create_centre(actor, {"code": code, "name": name, "country": country}))
    typer.echo(f"centre {code} added")


@centre_app.command("list")
def centre_list(token: str | None = TOKEN_OPT, db: str | None = DB_OPT) -> None:
    """List centres."""
    reg = _open(db)
    actor = _token_actor(reg, token)
    for c in _run(lambda: reg.centres(actor)):
        typer.echo(f"{c['code']}\t{c['name']}" + ("\t(synthetic)" if c["synthetic"] else ""))


@user_app.command("add")
def user_add(
    username: str = typer.Argument(...),
    role: str = typer.Option(..., help="clinician, data_manager, analyst or admin."),
    centre: str | None = typer.Option(None, help="Centre code (clinicians and data managers)."),
    token: str | None = TOKEN_OPT,
    db: str | None = DB_OPT,
) -> None:
    """Add a user; the new user's password comes from $IPEXRX_NEW_PASSWORD or a prompt."""
    reg = _open(db)
    actor = _token_actor(reg, token)
    password = _secret("IPEXRX_NEW_PASSWORD", f"Password for {username}", confirm=True)
    _run(lambda: reg.create_user(actor, {"username": username, "password": password, "role": role,
                                         "centre_code": centre}))
    typer.echo(f"user {username} ({role}{', ' + centre if centre else ''}) added")


@user_app.command("set")
def user_set(
    username: str = typer.Argument(...),
    role: str | None = typer.Option(None, help="New role."),
    centre: str | None = typer.Option(None, help="New centre code."),
    active: bool | None = typer.Option(None, "--active/--inactive", help="Reactivate or deactivate (revokes "
                                       "the user's tokens)."),
    token: str | None = TOKEN_OPT,
    db: str | None = DB_OPT,
) -> None:
    """Change a user's role, centre or active flag (audited as a permission change)."""
    reg = _open(db)
    actor = _token_actor(reg, token)
    _run(lambda: reg.change_user(actor, username, role=role, centre_code=centre, active=active))
    typer.echo(f"user {username} changed")


@registry_app.command("demo")
def demo(
    patients: int = typer.Option(500, min=1, max=200_000, help="Synthetic patients."),
    centres: int = typer.Option(20, min=1, max=99, help="Synthetic centres."),
    seed: int = typer.Option(20180101, help="Random seed (same seed, same cohort)."),
    report_dir: Path | None = typer.Option(None, help="Also write the analytics report here."),
    as_of: str | None = AS_OF_OPT,
    db: str | None = DB_OPT,
) -> None:
    """Load a SYNTHETIC multi-centre cohort (flagged synthetic everywhere) so every screen has data."""
    from ..registry import SYSTEM, ops
    from ..registry.synthetic import SYNTHETIC_LABEL

    _report_date(as_of)  # a malformed date is refused before anything is loaded
    if report_dir:  # so is a report that could not be written (the analytics extra not installed)
        from ..extras import require

        require("lifelines", "analytics", "The demo's report (--report-dir)")
    reg = _open(db)
    counts = _run(lambda: ops.load_demo(reg, SYSTEM, patients, centres, seed))
    typer.echo(f"{SYNTHETIC_LABEL}\nloaded {counts['patients']} synthetic patients in {counts['centres']} "
               f"synthetic centres into {reg.url}")
    if report_dir:
        _write_report(reg, SYSTEM, report_dir, as_of)


def _report_date(value: str | None) -> Any:
    from .options import date_option

    return date_option(value)


def _write_report(reg: Any, actor: Any, out: Path, as_of: str | None = None) -> None:
    from ..registry import ops
    from ..registry.report import write_report

    day = _report_date(as_of)
    rep = _run(lambda: ops.analytics_report(reg, actor, day))
    paths = write_report(rep, out)
    typer.echo(f"report: {paths[0]} (printable, {len(paths) - 2} PNG figures) and {paths[-1]} (interactive)")


@registry_app.command("report")
def report(
    out: Path = typer.Option(Path("registry-report"), "--out", help="Output directory."),
    token: str | None = typer.Option(None, help="API token of the acting user (default $IPEXRX_REGISTRY_TOKEN)."),
    as_of: str | None = AS_OF_OPT,
    db: str | None = DB_OPT,
) -> None:
    """Printable HTML report with Kaplan-Meier plots (analysts: pooled; centre users: their centre)."""
    _report_date(as_of)  # a malformed date is refused before the database is opened
    reg = _open(db)
    _write_report(reg, _run(lambda: _actor(reg, token)), out, as_of)


@registry_app.command("export")
def export(
    out: Path = typer.Option(..., "--out", help="Output directory (one CSV per table, or bundle.json)."),
    fmt: str = typer.Option("csv", "--format", help="csv (with data dictionary) or fhir (R4 collection Bundle; "
                            "pseudonymised, data managers)."),
    deidentified: bool = typer.Option(True, "--deidentified/--pseudonymised",
                                      help="De-identified (dates shifted per patient, identifiers dropped) or "
                                      "the centre's pseudonymised data (data managers)."),
    token: str | None = typer.Option(None, help="API token of the acting user (default $IPEXRX_REGISTRY_TOKEN)."),
    db: str | None = DB_OPT,
) -> None:
    """Export as CSV, with the data dictionary alongside."""
    from ..registry import ops

    reg = _open(db)
    actor = _run(lambda: _actor(reg, token))
    if fmt == "fhir":
        doc = _run(lambda: ops.export_fhir(reg, actor))
        out.mkdir(parents=True, exist_ok=True)
        (out / "bundle.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
        typer.echo(f"wrote {out / 'bundle.json'} ({len(doc.get('entry', []))} resources, pseudonymised)")
        return
    if fmt != "csv":
        typer.echo(f"error: --format expects csv or fhir, got '{fmt}'", err=True)
        raise typer.Exit(2)
    tables = _run(lambda: ops.export_deidentified(reg, actor) if deidentified else ops.export_centre(reg, actor))
    paths = ops.write_csv(tables, out)
    (out / "data-dictionary.csv").write_text(ops.data_dictionary_csv(), encoding="utf-8")
    typer.echo(f"wrote {len(paths)} tables and data-dictionary.csv to {out} "
               f"({len(tables['patient'])} patients, {'de-identified' if deidentified else 'pseudonymised'})")


@registry_app.command("import")
def import_(
    src: Path = typer.Argument(..., exists=True, file_okay=False, help="Directory with patient.csv and optional "
                               "manifestation/course/trough/visit/adverse_event/hsct.csv (the export format)."),
    token: str | None = typer.Option(None, help="API token of the acting data manager (default "
                                     "$IPEXRX_REGISTRY_TOKEN)."),
    db: str | None = DB_OPT,
) -> None:
    """Import patients from CSV, all or nothing; prints each record key with its new pseudonym."""
    from ..registry import ops

    reg = _open(db)
    actor = _run(lambda: _actor(reg, token))
    mapping = _run(lambda: ops.import_csv(reg, actor, src))
    for k, p in mapping.items():
        typer.echo(f"{k}\t{p}")
    typer.echo(f"imported {len(mapping)} patients", err=True)


@registry_app.command("data-dictionary")
def data_dictionary(out: Path | None = typer.Option(None, "--out", help="File (default: stdout).")) -> None:
    """The REDCap-style data dictionary (one row per field), generated from the input models."""
    from ..registry import ops

    text = ops.data_dictionary_csv()
    if out:
        out.write_text(text, encoding="utf-8")
    else:
        typer.echo(text, nl=False)


@audit_app.command("verify")
def audit_verify(
    expect_head: str | None = typer.Option(None, help="A head hash noted earlier (outside the database): it must "
                                           "still be in the chain."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable result."),
    db: str | None = DB_OPT,
) -> None:
    """Recompute the audit hash chain and compare every data row with its last audited version; exit 1 if
    any entry was edited, deleted or inserted, or any row changed outside the application."""
    from ..registry import SYSTEM

    reg = _open(db)
    r = _run(lambda: reg.verify_audit(SYSTEM, expect_head))
    if as_json:
        typer.echo(json.dumps({"ok": r.ok, "entries": r.entries, "head_seq": r.head_seq, "head_hash": r.head_hash,
                               "problems": r.problems}))
    elif r.ok:
        typer.echo(f"audit chain OK: {r.entries} entries, every data row as audited, head {r.head_hash} "
                   "(note it somewhere safe)")
    else:
        typer.echo(f"audit chain BROKEN ({len(r.problems)} problem(s)):", err=True)
        for p in r.problems:
            typer.echo(f"  - {p}", err=True)
    if not r.ok:
        raise typer.Exit(1)


@registry_app.command("backup")
def backup(out: Path = typer.Argument(..., help="Backup file (gzipped JSON lines)."), db: str | None = DB_OPT) -> None:
    """Logical backup of the whole registry, audit log included (restores on SQLite or PostgreSQL)."""
    from ..registry import SYSTEM, ops

    reg = _open(db)
    counts = _run(lambda: ops.backup(reg, SYSTEM, out))
    typer.echo(f"backup written to {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@registry_app.command("restore")
def restore(src: Path = typer.Argument(..., exists=True, dir_okay=False, help="Backup file."),
            db: str | None = DB_OPT) -> None:
    """Restore a backup into an EMPTY registry; the audit chain is verified before anything is committed."""
    from ..registry import SYSTEM, ops

    reg = _open(db)
    counts = _run(lambda: ops.restore(reg, SYSTEM, src))
    typer.echo(f"restored into {reg.url}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) +
               "; audit chain verified")
