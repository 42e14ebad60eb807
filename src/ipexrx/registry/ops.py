"""Operations over the whole registry: demo cohort, analytics, de-identified and CSV export, data
dictionary, backup and restore. Each goes through the same permission check and audit as a
single-record write."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import secrets
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select, text

from . import audit
from .analytics import Report, build_report
from .core import Actor, Registry, row_dict
from .errors import Conflict, PermissionDenied, ValidationFailed
from .models import (
    AdverseEvent,
    ApiToken,
    AuditEntry,
    AuditHead,
    Centre,
    Course,
    Hsct,
    ManifestationEpisode,
    Patient,
    TroughLevel,
    User,
    Visit,
)
from .schemas import (
    RANGES,
    AdverseEventIn,
    CentreIn,
    CourseIn,
    HsctIn,
    ManifestationIn,
    PatientIn,
    TroughIn,
    VisitIn,
)
from .synthetic import centres as synthetic_centres
from .synthetic import cohort

BACKUP_FORMAT = "ipexrx-registry-backup/1"
# Dump/restore order respects foreign keys.
TABLES: list[Any] = [Centre, User, ApiToken, Patient, ManifestationEpisode, Course, TroughLevel, Visit, AdverseEvent,
                     Hsct, AuditEntry]


def load_demo(reg: Registry, actor: Actor, n_patients: int = 500, n_centres: int = 20, seed: int = 20180101,
              chunk: int = 200) -> dict[str, int]:
    """Load the synthetic cohort (idempotent per centre set: refuses if synthetic patients exist)."""
    with reg.tx() as s:
        if s.scalar(select(func.count()).select_from(Patient).where(Patient.synthetic.is_(True))):
            raise Conflict("synthetic patients are already loaded; use a fresh database for another demo")
        have = set(s.scalars(select(Centre.code)))
    for c in synthetic_centres(n_centres):
        if c["code"] not in have:
            reg.create_centre(actor, c)
    batch: list[Any] = []
    done = 0
    for b in cohort(n_patients, n_centres, seed):
        batch.append(b)
        if len(batch) >= chunk:
            done += len(reg.add_bundles(actor, batch, action="import"))
            batch = []
    if batch:
        done += len(reg.add_bundles(actor, batch, action="import"))
    return {"centres": n_centres, "patients": done}


def analytics_report(reg: Registry, actor: Actor, as_of: dt.date | None = None,
                     centre_code: str | None = None,
                     diagnosed: tuple[dt.date | None, dt.date | None] = (None, None)) -> Report:
    """Analysts get the pooled registry (de-identified aggregates); centre roles their own centre.
    ``as_of`` fixes the report date (default: now). ``centre_code`` narrows an analyst's report to one
    centre (still naming no patient); a centre user may name only their own centre. ``diagnosed``
    (from, to; both included, either may be None) keeps the patients diagnosed in that period."""
    reg.require(actor, "analytics")
    if diagnosed[0] and diagnosed[1] and diagnosed[0] > diagnosed[1]:
        raise ValidationFailed([f"diagnosed: expected the first date on or before the second, got "
                                f"{diagnosed[0]} to {diagnosed[1]}"], "analytics filters")
    own = actor.role in ("clinician", "data_manager")
    centre_id = actor.centre_id if own else None
    with reg.read_tx() as s:  # the report only reads: no write lock is held while it is built
        if centre_code is not None:
            wanted = reg._centre_id(s, centre_code)  # NotFound lists the known codes
            if own and wanted != actor.centre_id:
                raise PermissionDenied(f"{actor.username} ({actor.role}) reads the analyses of their own centre "
                                       f"only, and '{centre_code}' is another centre")
            centre_id = wanted
        scope = "all centres (pooled)" if centre_id is None else \
            f"centre {s.scalar(select(Centre.code).where(Centre.id == centre_id))}"
        if diagnosed != (None, None):
            scope += ", diagnosed " + (f"from {diagnosed[0]} " if diagnosed[0] else "") + \
                (f"to {diagnosed[1]}" if diagnosed[1] else "onwards")
        if diagnosed == (None, None):
            r = build_report(s, centre_id, scope, as_of)  # positional: the report day (None: now)
        else:
            r = build_report(s, centre_id, scope, as_of, diagnosed=diagnosed)
    if not own:
        r.followup_due = []  # an analyst's report names no patient, one centre or all
    with reg.tx() as s:
        audit.append(s, actor.audit(), "analytics", "report", "*", centre_id=centre_id,
                     after={"scope": scope, "patients": r.patients})
    return r


# ----------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------
DATE_FIELDS = {"onset_date", "diagnosis_date", "consent_date", "consent_withdrawn_date", "death_date",
               "last_followup_date", "resolution_date", "start_date", "stop_date", "date", "chimerism_date"}
DROPPED_DEID = {"pseudonym", "centre_id", "variant_hgvs", "reason_other", "created_at", "updated_at", "id",
                "patient_id", "course_id"}


def _patient_rows(reg: Registry, centre_id: int | None) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    with reg.read_tx() as s:  # reads only: no write lock held during an export
        ps = select(Patient).where(Patient.consent_withdrawn_date.is_(None)).order_by(Patient.id)
        if centre_id is not None:
            ps = ps.where(Patient.centre_id == centre_id)
        patients = list(s.scalars(ps))
        ids = [p.id for p in patients]
        codes = {cid: code for cid, code in s.execute(select(Centre.id, Centre.code))}
        out["patient"] = [{**row_dict(p), "centre_code": codes[p.centre_id]} for p in patients]
        pseud = {p.id: p.pseudonym for p in patients}
        models: list[tuple[str, Any]] = [("manifestation", ManifestationEpisode), ("course", Course),
                                         ("visit", Visit), ("adverse_event", AdverseEvent), ("hsct", Hsct)]
        for name, model in models:
            out[name] = [{"pseudonym": pseud[r.patient_id], **row_dict(r)} for r in
                         s.scalars(select(model).where(model.patient_id.in_(ids)).order_by(model.id))] if ids else []
        course_patient = {c["id"]: c["pseudonym"] for c in out["course"]}
        out["trough"] = [{"pseudonym": course_patient[t.course_id], **row_dict(t)} for t in
                         s.scalars(select(TroughLevel).where(TroughLevel.course_id.in_(list(course_patient)))
                                   .order_by(TroughLevel.id))] if course_patient else []
    return out


def export_centre(reg: Registry, actor: Actor) -> dict[str, list[dict[str, Any]]]:
    """The data manager's own centre, pseudonymised (exact dates): for the centre's own use."""
    reg.require(actor, "export.centre")
    rows = _patient_rows(reg, actor.centre_id if actor.role != "system" else None)
    with reg.tx() as s:
        audit.append(s, actor.audit(), "export", "patient", "*", centre_id=actor.centre_id,
                     after={"kind": "pseudonymised", "patients": len(rows["patient"])})
    return rows


def deidentify(rows: dict[str, list[dict[str, Any]]], rng: secrets.SystemRandom | None = None) -> dict[str, Any]:
    """Shift every date of a patient by one random offset (-365..+365 days, intervals kept), shift birth
    year/month with it, replace the pseudonym with a fresh export-only id, drop identifiers and free text."""
    rng = rng or secrets.SystemRandom()
    shift: dict[str, int] = {}
    new_id: dict[str, str] = {}
    order = list(range(len(rows["patient"])))
    rng.shuffle(order)
    for n, i in enumerate(order):
        p = rows["patient"][i]
        shift[p["pseudonym"]] = rng.randint(-365, 365)
        new_id[p["pseudonym"]] = f"DEID-{n + 1:06d}"
    out: dict[str, Any] = {}
    for table, rs in rows.items():
        new_rows = []
        for r in rs:
            d = shift[r["pseudonym"]]
            nr: dict[str, Any] = {"subject": new_id[r["pseudonym"]]}
            for k, v in r.items():
                if k in DROPPED_DEID or k == "centre_code":
                    continue
                if k in DATE_FIELDS and v:
                    v = (dt.date.fromisoformat(v) + dt.timedelta(days=d)).isoformat()
                nr[k] = v
            if table == "patient":
                born = dt.date(r["birth_year"], r["birth_month"], 15) + dt.timedelta(days=d)
                nr["birth_year"], nr["birth_month"] = born.year, born.month
            new_rows.append(nr)
        new_rows.sort(key=lambda x: (x["subject"], x.get("date") or x.get("start_date") or x.get("onset_date") or ""))
        out[table] = new_rows
    return out


def export_deidentified(reg: Registry, actor: Actor) -> dict[str, list[dict[str, Any]]]:
    reg.require(actor, "export.deidentified")
    centre_id = actor.centre_id if actor.role in ("clinician", "data_manager") else None
    rows = deidentify(_patient_rows(reg, centre_id))
    with reg.tx() as s:
        audit.append(s, actor.audit(), "export", "patient", "*", centre_id=centre_id,
                     after={"kind": "de-identified", "patients": len(rows["patient"])})
    return rows


def write_csv(tables: dict[str, list[dict[str, Any]]], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rs in tables.items():
        p = out_dir / f"{name}.csv"
        cols: list[str] = []
        for r in rs:
            cols += [k for k in r if k not in cols]
        with p.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(rs)
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------------------------
# data dictionary (REDCap-style: one row per field), generated from the input models
# ----------------------------------------------------------------------------------------------
DICTIONARY_COLUMNS = ["Variable / Field Name", "Form Name", "Field Type", "Field Label", "Choices", "Units",
                      "Text Validation Type", "Min", "Max", "Required Field?", "Identifier?"]
FORMS: list[tuple[str, type[BaseModel]]] = [
    ("centre", CentreIn), ("patient", PatientIn), ("manifestation", ManifestationIn), ("course", CourseIn),
    ("trough", TroughIn), ("visit", VisitIn), ("adverse_event", AdverseEventIn), ("hsct", HsctIn)]
RANGE_OF = {"stool_ml_kg_day": "stool_ml_kg_day", "weight_z": "weight_z", "insulin_u_kg_day": "insulin_u_kg_day",
            "oi_score": "oi_score", "pre_hsct_oi_score": "oi_score", "value_ng_ml": "trough_ng_ml",
            "chimerism_donor_pct": "chimerism_donor_pct"}
LABELS = {
    "variant_hgvs": "FOXP3 variant in HGVS notation (required for IPEX)",
    "hpo_code": "HPO code (one of the knowledge-base manifestation codings)",
    "drug_id": "Knowledge-base drug id",
    "ipex_like_id": "Knowledge-base IPEX-like disorder id",
    "oi_score": "Organ-involvement score (Barzaghi 2018, doi:10.1016/j.jaci.2017.10.041), as computed by the centre",
    "pre_hsct_oi_score": "Organ-involvement score before HSCT (Barzaghi 2018)",
}


def data_dictionary() -> list[dict[str, str]]:
    rows = []
    for form, model in FORMS:
        schema = model.model_json_schema()
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            if name in ("troughs",):
                continue
            opts = prop.get("anyOf", [prop])
            typ = next((o for o in opts if o.get("type") != "null"), prop)
            enum = typ.get("enum") or (typ.get("items", {}) or {}).get("enum")
            fmt = typ.get("format", "")
            ftype = "dropdown" if enum and typ.get("type") != "array" else "checkbox" if enum else \
                "yesno" if typ.get("type") == "boolean" else "text"
            validation = {"date": "date_ymd", "integer": "integer", "number": "number"}.get(
                fmt or typ.get("type", ""), "")
            lo, hi, unit = RANGES.get(RANGE_OF.get(name, ""), ("", "", ""))
            lo = typ.get("minimum", typ.get("exclusiveMinimum", lo))
            hi = typ.get("maximum", hi)
            rows.append({
                "Variable / Field Name": name, "Form Name": form, "Field Type": ftype,
                "Field Label": LABELS.get(name) or prop.get("description") or name.replace("_", " "),
                "Choices": " | ".join(str(e) for e in enum) if enum else (typ.get("pattern") or ""),
                "Units": unit, "Text Validation Type": validation, "Min": str(lo), "Max": str(hi),
                "Required Field?": "y" if name in required else "", "Identifier?": "",
            })
    return rows


def data_dictionary_csv() -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=DICTIONARY_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(data_dictionary())
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# backup / restore (logical, dialect-neutral: a SQLite backup restores into PostgreSQL and back)
# ----------------------------------------------------------------------------------------------
def _json(v: Any) -> Any:
    return v.isoformat() if isinstance(v, dt.date | dt.datetime) else v


def backup(reg: Registry, actor: Actor, path: Path) -> dict[str, int]:
    """Write every registry table (audit log included) to a gzipped JSON-lines file, from one snapshot."""
    counts: dict[str, int] = {}
    with reg.tx() as s:
        audit.append(s, actor.audit(), "backup", "registry", "*", after={"file": path.name})
    tmp = path.with_suffix(path.suffix + ".part")
    with reg.tx() as s, gzip.open(tmp, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"format": BACKUP_FORMAT, "created": dt.datetime.now(dt.UTC).isoformat()}) + "\n")
        for model in TABLES:
            n = 0
            for obj in s.scalars(select(model).execution_options(yield_per=2000)):
                row = {c.key: _json(getattr(obj, c.key)) for c in model.__table__.columns}
                fh.write(json.dumps({"t": model.__tablename__, "r": row}) + "\n")
                n += 1
            counts[model.__tablename__] = n
    tmp.replace(path)
    return counts


def restore(reg: Registry, actor: Actor, path: Path) -> dict[str, int]:
    """Load a backup into an EMPTY registry, then verify the audit chain; refuse a broken chain."""
    from sqlalchemy import Date, DateTime, insert

    with reg.tx() as s:
        for model in TABLES:
            if s.scalar(select(func.count()).select_from(model)):
                raise Conflict(f"restore needs an empty registry, but {model.__tablename__} has rows")
    counts: dict[str, int] = {}
    by_name = {m.__tablename__: m for m in TABLES}
    with reg.tx() as s, gzip.open(path, "rt", encoding="utf-8") as fh:
        header = json.loads(fh.readline() or "{}")
        if header.get("format") != BACKUP_FORMAT:
            raise ValidationFailed([f"expected a {BACKUP_FORMAT} file, got {header.get('format')!r}"], "backup file")
        batch: list[dict[str, Any]] = []
        current: str | None = None
        last: dict[str, Any] | None = None

        def flush() -> None:
            if batch and current:
                s.execute(insert(by_name[current]), batch)
                counts[current] = counts.get(current, 0) + len(batch)
                batch.clear()

        for line in fh:  # the file is in foreign-key order, one table after another
            rec = json.loads(line)
            if rec["t"] != current or len(batch) >= 1000:
                flush()
                current = rec["t"]
            model = by_name[rec["t"]]
            row = rec["r"]
            for c in model.__table__.columns:
                v = row.get(c.key)
                if v is not None and isinstance(c.type, DateTime):
                    row[c.key] = dt.datetime.fromisoformat(v)
                elif v is not None and isinstance(c.type, Date):
                    row[c.key] = dt.date.fromisoformat(v)
            batch.append(row)
            if model is AuditEntry:
                last = row
        flush()
        if last is not None:
            head = s.get(AuditHead, 1)
            assert head is not None
            head.seq, head.hash = last["seq"], last["hash"]
        if reg.engine.dialect.name == "postgresql":  # keep sequences ahead of the restored ids
            for model in TABLES:
                if model is not AuditEntry:
                    t = model.__tablename__
                    s.execute(text(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), "
                                   f"COALESCE((SELECT MAX(id) FROM {t}), 0) + 1, false)"))
        # A backup made before data rows were sealed (migration 0140) has no seals: its chain is
        # verified, then its rows are sealed as restored (one seal-baseline entry, as 0140 does).
        sealed = s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.row_hashes.is_not(None)))
        result = audit.verify(s, rows=bool(sealed))
        if not result.ok:
            raise ValidationFailed(result.problems, "backup (audit chain broken; nothing restored)")
        if not sealed:
            audit.seal_baseline(s)
        audit.append(s, actor.audit(), "restore", "registry", "*", after={"file": path.name, "rows": counts})
    return counts


def export_fhir(reg: Registry, actor: Actor) -> dict[str, Any]:
    """The data manager's own centre (system: all) as one FHIR R4 collection Bundle, pseudonymised."""
    from .core import patient_record
    from .fhir import bundle

    reg.require(actor, "export.centre")
    with reg.tx() as s:
        stmt = select(Patient).where(Patient.consent_withdrawn_date.is_(None)).order_by(Patient.id)
        if actor.role != "system":
            stmt = stmt.where(Patient.centre_id == actor.centre_id)
        records = [patient_record(s, p) for p in s.scalars(stmt)]
        audit.append(s, actor.audit(), "export", "patient", "*", centre_id=actor.centre_id,
                     after={"kind": "fhir", "patients": len(records)})
    return bundle(records)


# ----------------------------------------------------------------------------------------------
# CSV import (the pseudonymised CSV export format; rows linked by a record key that is not stored)
# ----------------------------------------------------------------------------------------------
IMPORT_FILES = ("patient", "manifestation", "course", "trough", "visit", "adverse_event", "hsct")
IMPORT_IGNORED = {"id", "patient_id", "course_id", "pseudonym", "record", "created_at", "updated_at", "centre_id",
                  "manifestation_id"}


def _read_csv(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line, row) of an import CSV, ``line`` the file line the row is on (where it ends, for a quoted
    field over several lines): UTF-8 (with or without byte-order mark) or Windows-1252/Latin-1 (logged as
    assumed); UTF-16 or binary files are refused naming the file and line (:mod:`ipexrx.textio`)."""
    import logging

    from ..textio import TextEncodingError, read_text_file

    try:
        decoded = read_text_file(path, csv_fields=True)
    except TextEncodingError as exc:
        raise ValidationFailed([str(exc)], "import") from None
    if decoded.warning:
        logging.getLogger("ipexrx.registry").warning(decoded.warning)
    reader = csv.DictReader(io.StringIO(decoded.text, newline=""))
    return [(reader.line_num, {k: (v if v != "" else None) for k, v in row.items()}) for row in reader]


def read_csv_bundles(directory: Path) -> tuple[list[str], list[Any]]:
    """(record keys, validated bundles) from ``patient.csv`` and the optional follow-up files.

    Rows are linked by ``record`` (or ``pseudonym``, as the export writes it); troughs and adverse
    events name their course by the course row's ``id``. Keys only link rows within the files; the
    registry assigns new pseudonyms. Every problem is reported with its file, line and column
    (``course.csv, line 3, column "drug_id": ...``).
    """
    from .schemas import PatientBundle, describe_error

    tables = {name: _read_csv(directory / f"{name}.csv") for name in IMPORT_FILES
              if (directory / f"{name}.csv").exists()}
    if "patient" not in tables:
        raise ValidationFailed([f"{directory / 'patient.csv'}: required file not found"], "import")
    problems: list[str] = []

    def key(row: dict[str, Any], where: str) -> str:
        k = row.get("record") or row.get("pseudonym")
        if not k:
            problems.append(f"{where}: expected a 'record' (or 'pseudonym') column linking the row, got none")
        return str(k or "")

    def clean(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k not in IMPORT_IGNORED}

    bundles: dict[str, dict[str, Any]] = {}
    # where each part of a bundle came from: ("patient",) / ("courses", 0) / ("courses", 0, "troughs", 1) -> file, line
    origin: dict[str, dict[tuple[str | int, ...], tuple[str, int]]] = {}
    for i, row in tables["patient"]:
        k = key(row, f"patient.csv, line {i}")
        if k in bundles:
            problems.append(f"patient.csv, line {i}: record '{k}' appears twice")
        bundles[k] = {"patient": clean(row), "manifestations": [], "courses": [], "visits": [], "adverse_events": [],
                      "hsct": []}
        origin[k] = {("patient",): ("patient.csv", i)}
    course_pos: dict[tuple[str, str], int] = {}
    plural = {"manifestation": "manifestations", "course": "courses", "visit": "visits", "hsct": "hsct"}
    for name, field in plural.items():
        for i, row in tables.get(name, []):
            k = key(row, f"{name}.csv, line {i}")
            if k not in bundles:
                problems.append(f"{name}.csv, line {i}: record '{k}' is not in patient.csv")
                continue
            origin[k][(field, len(bundles[k][field]))] = (f"{name}.csv", i)
            r = clean(row)
            if name == "visit":
                r["organs"] = [o for o in (r.get("organs") or "").split(";") if o]
            if name == "course":
                r["troughs"] = []
                if row.get("id"):
                    course_pos[(k, str(row["id"]))] = len(bundles[k]["courses"])
            bundles[k][field].append(r)
    for name in ("trough", "adverse_event"):
        for i, row in tables.get(name, []):
            k = key(row, f"{name}.csv, line {i}")
            if k not in bundles:
                problems.append(f"{name}.csv, line {i}: record '{k}' is not in patient.csv")
                continue
            pos = course_pos.get((k, str(row.get("course_id")))) if row.get("course_id") else None
            if name == "trough":
                if pos is None:
                    problems.append(f"trough.csv, line {i}, column \"course_id\": '{row.get('course_id')}' is not "
                                    f"a course row 'id' of record '{k}'")
                    continue
                troughs = bundles[k]["courses"][pos]["troughs"]
                origin[k][("courses", pos, "troughs", len(troughs))] = ("trough.csv", i)
                troughs.append({"date": row.get("date"), "value_ng_ml": row.get("value_ng_ml")})
            else:
                origin[k][("adverse_events", len(bundles[k]["adverse_events"]))] = ("adverse_event.csv", i)
                bundles[k]["adverse_events"].append({**clean(row), "course_index": pos})
    out: list[Any] = []
    for k, b in bundles.items():
        try:
            out.append(PatientBundle.model_validate(b))
        except ValidationError as exc:
            problems += [f"{_csv_place(origin[k], e['loc'])}: {describe_error(e)}" for e in exc.errors()]
    if problems:
        raise ValidationFailed(problems, f"import from {directory}")
    return list(bundles), out


def _csv_place(origin: dict[tuple[str | int, ...], tuple[str, int]], loc: tuple[str | int, ...]) -> str:
    """A validation error's place in the import files: the longest part of ``loc`` that came from a row
    gives the file and line, what follows names the column (``course.csv, line 3, column "drug_id"``)."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in origin:
            file, line = origin[loc[:n]]
            column = ".".join(str(x) for x in loc[n:])
            return f"{file}, line {line}" + (f', column "{column}"' if column else "")
    file, line = origin[("patient",)]  # a problem of the whole record (a check across its rows)
    return f"{file}, line {line}" + (f", {'.'.join(str(x) for x in loc)}" if loc else "")


def import_csv(reg: Registry, actor: Actor, directory: Path) -> dict[str, str]:
    """Import all patients of a CSV directory in ONE transaction; returns record key -> new pseudonym."""
    reg.require(actor, "import")
    keys, bundles = read_csv_bundles(directory)
    return dict(zip(keys, reg.add_bundles(actor, bundles, action="import"), strict=True))
