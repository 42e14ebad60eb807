"""Append-only, hash-chained audit log.

Each entry stores ``prev_hash`` and ``hash = sha256(prev_hash + canonical JSON of the entry)``.
Editing any field of any entry breaks its hash; deleting or inserting an entry breaks the sequence
and the link of the next one; truncating the tail disagrees with the head row (``reg_audit_head``),
and, against an attacker who can rewrite the head too, with a head hash noted outside the database
(``ipexrx registry audit verify --expect-head``). Appends lock the head row, so concurrent writers
(several web workers, several centres on PostgreSQL) extend one chain in one order.

The entry is written in the same transaction as the change it describes: either both are committed
or neither is.

Data rows are sealed too (migration 0140): an entry that writes data rows stores ``row_hashes``,
``{"<table>:<id>": sha256 of the row's canonical content as read back from the database}`` (``null``
for a deleted row), and that field is part of the entry's hash. :func:`verify` replays the chain to
the last sealed version of every row and compares it with the row as it is now, so a row edited,
deleted or inserted with SQL, outside the application, is reported by table and id. An entry with
no ``row_hashes`` (reads, refusals, entries older than 0140) hashes exactly as before.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from ..storage import chain
from ..storage.chain import GENESIS, HASHED_FIELDS, canonical, entry_hash, row_digest
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

__all__ = ["GENESIS", "HASHED_FIELDS", "canonical", "entry_hash", "row_digest"]


# ----------------------------------------------------------------------------------------------
# Data-row seals
# ----------------------------------------------------------------------------------------------
SEALED_MODELS: tuple[Any, ...] = (Centre, User, ApiToken, Patient, ManifestationEpisode, Course, TroughLevel, Visit,
                                  AdverseEvent, Hsct)
SEALED_TABLES: dict[str, Table] = {m.__tablename__: m.__table__ for m in SEALED_MODELS}
if tuple(SEALED_TABLES) != chain.SEALED_TABLE_NAMES:  # pragma: no cover - a programming error
    raise RuntimeError("ipexrx.storage.chain.SEALED_TABLE_NAMES must list the tables of SEALED_MODELS")
RowRef = tuple[Any, int]  # (model or table name, id)


def _table_name(model: Any) -> str:
    return model if isinstance(model, str) else str(model.__tablename__)


def seal(session: Session, refs: list[RowRef]) -> dict[str, str | None]:
    """``{"<table>:<id>": digest}`` of the given rows as the database now holds them (``None`` for a row
    that no longer exists). Read with Core, not through the ORM's identity map, so the digest is of
    the stored values (a dose entered as 5 is stored and read back as 5.0)."""
    by_table: dict[str, set[int]] = {}
    for model, row_id in refs:
        by_table.setdefault(_table_name(model), set()).add(int(row_id))
    out: dict[str, str | None] = {}
    for name, ids in by_table.items():
        table = SEALED_TABLES[name]
        found = {}
        id_list = sorted(ids)
        for start in range(0, len(id_list), 500):
            stmt = select(*table.c).where(table.c.id.in_(id_list[start:start + 500]))
            for row in session.execute(stmt).mappings():
                found[int(row["id"])] = row_digest(row)
        for i in id_list:
            out[f"{name}:{i}"] = found.get(i)
    return out


def seal_baseline(session: Session) -> int:
    """Seal every data row as it is now in one ``seal-baseline`` entry (see
    :func:`ipexrx.storage.chain.seal_baseline`); the session's pending writes are flushed first and
    its objects expired after, so a later :func:`append` sees the new head."""
    session.flush()
    n = chain.seal_baseline(session.connection())
    session.expire_all()
    return n


@dataclass(frozen=True)
class AuditActor:
    user_id: int | None
    username: str
    role: str


def append(
    session: Session,
    actor: AuditActor,
    action: str,
    entity: str,
    entity_id: str | int,
    *,
    centre_id: int | None = None,
    before: Any = None,
    after: Any = None,
    rows: list[RowRef] | None = None,
    sealed: dict[str, str | None] | None = None,
) -> AuditEntry:
    """Append one entry. ``rows``: the data rows this transaction wrote, sealed as they now are
    (or pass ``sealed``, digests already computed)."""
    if rows:
        sealed = {**(sealed or {}), **seal(session, rows)}
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    values: dict[str, Any] = {
        "seq": head.seq + 1,
        "ts": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "user_id": actor.user_id,
        "username": actor.username,
        "role": actor.role,
        "action": action,
        "entity": entity,
        "entity_id": str(entity_id),
        "centre_id": centre_id,
        "before": canonical(before),
        "after": canonical(after),
        "prev_hash": head.hash,
        "row_hashes": canonical(sealed) if sealed else None,
    }
    _fit(values)
    values["hash"] = entry_hash(values)
    entry = AuditEntry(**values)
    session.add(entry)
    head.seq = values["seq"]
    head.hash = values["hash"]
    session.flush()
    return entry


_LIMITS: dict[str, int] = {c.name: getattr(c.type, "length", 0) for c in AuditEntry.__table__.columns
                           if isinstance(getattr(c.type, "length", None), int)}


def _fit(values: dict[str, Any]) -> None:
    """Keep user-supplied text (a username typed at sign-in, a target named in a refused request)
    within its column, so that recording an attempt can never fail on PostgreSQL's length check.
    The faces validate lengths first (422); this is the last line, not the rule."""
    for name, limit in _LIMITS.items():
        v = values.get(name)
        if isinstance(v, str) and len(v) > limit:
            values[name] = v[: limit - 1] + "\u2026"


def append_many(session: Session, actor: AuditActor,
                entries: list[tuple[str, str, str | int, int | None, Any, Any]],
                row_refs: list[list[RowRef]] | None = None) -> None:
    """Several entries (action, entity, entity_id, centre_id, before, after) under one head lock and
    one multi-row INSERT: the bulk-import path. Same chain as calling :func:`append` repeatedly.
    ``row_refs[i]``: the data rows entry ``i`` wrote (sealed as they now are)."""
    if not entries:
        return
    from sqlalchemy import insert

    sealed_all = seal(session, [r for rs in row_refs for r in rs]) if row_refs else {}

    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    seq, prev = head.seq, head.hash
    rows = []
    ts = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    for i, (action, entity, entity_id, centre_id, before, after) in enumerate(entries):
        seq += 1
        mine = {f"{_table_name(m)}:{int(r)}": sealed_all[f"{_table_name(m)}:{int(r)}"] for m, r in row_refs[i]} \
            if row_refs else {}
        values: dict[str, Any] = {"seq": seq, "ts": ts, "user_id": actor.user_id, "username": actor.username,
                                  "role": actor.role, "action": action, "entity": entity, "entity_id": str(entity_id),
                                  "centre_id": centre_id, "before": canonical(before), "after": canonical(after),
                                  "prev_hash": prev, "row_hashes": canonical(mine) if mine else None}
        _fit(values)
        values["hash"] = prev = entry_hash(values)
        rows.append(values)
    session.execute(insert(AuditEntry), rows)
    head.seq, head.hash = seq, prev
    session.flush()


@dataclass
class VerifyResult:
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    problems: list[str] = field(default_factory=list)


def verify(session: Session, expect_head: str | None = None, max_problems: int = 50,
           rows: bool = True) -> VerifyResult:
    """Recompute the whole chain, then (``rows``) compare every data row with its last sealed version.

    Streams the audit rows; the row check holds one 32-byte digest per data row in memory."""
    problems: list[str] = []
    prev = GENESIS
    expected_seq = 1
    count = 0
    seen_expected = expect_head in (None, GENESIS)
    sealed: dict[str, dict[int, bytes | None]] = {name: {} for name in SEALED_TABLES}
    stmt = select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=2000)
    for e in session.scalars(stmt):
        count += 1
        values = {k: getattr(e, k) for k in (*HASHED_FIELDS, "row_hashes")}
        if e.seq != expected_seq:
            problems.append(f"entry {expected_seq}..{e.seq - 1} missing (deleted?): sequence jumps to {e.seq}")
        if e.prev_hash != prev:
            problems.append(f"entry {e.seq}: prev_hash does not match the hash of the entry before it")
        if entry_hash(values) != e.hash:
            problems.append(f"entry {e.seq}: content does not match its hash (edited?) "
                            f"[{e.action} {e.entity} {e.entity_id} by {e.username}]")
        if e.row_hashes:
            try:
                for key, digest in json.loads(e.row_hashes).items():
                    name, _, row_id = key.rpartition(":")
                    sealed.setdefault(name, {})[int(row_id)] = None if digest is None else bytes.fromhex(digest)
            except (ValueError, AttributeError):
                problems.append(f"entry {e.seq}: row_hashes is not a table:id -> hash object")
        prev = e.hash
        seen_expected = seen_expected or e.hash == expect_head
        expected_seq = e.seq + 1
        if len(problems) >= max_problems:
            problems.append("... stopped after too many problems")
            break
    head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
    last_seq = expected_seq - 1
    if (head.seq, head.hash) != (last_seq, prev):
        problems.append(f"head says entry {head.seq} ({head.hash[:12]}...), the log ends at entry {last_seq} "
                        f"({prev[:12]}...): entries removed from the end, or the head was altered")
    if not seen_expected:
        problems.append(f"the noted head hash {(expect_head or '')[:12]}... is not in the chain: the log was "
                        "rewritten or truncated since that hash was noted")
    if rows:
        problems += _check_rows(session, sealed, max(0, max_problems - len(problems)))
    return VerifyResult(not problems, count, head.seq, head.hash, problems)


def _check_rows(session: Session, sealed: dict[str, dict[int, bytes | None]], budget: int) -> list[str]:
    """Every data row as it is now against its last sealed digest, table by table."""
    out: list[str] = []
    for name, table in SEALED_TABLES.items():
        expected = dict(sealed.get(name, {}))
        for row in session.execute(select(*table.c).order_by(table.c.id).execution_options(yield_per=2000)).mappings():
            row_id = int(row["id"])
            want = expected.pop(row_id, None) if row_id in expected else False
            if want is False or want is None:
                out.append(f"{name} id {row_id}: the row is not in the audit trail (inserted outside the "
                           "application, or re-inserted after its deletion was audited)")
            elif bytes.fromhex(row_digest(row)) != want:
                out.append(f"{name} id {row_id}: the row differs from its last audited version (changed outside "
                           "the application)")
            if len(out) >= budget:
                return [*out, "... stopped after too many problems"]
        for row_id, want in sorted(expected.items()):
            if want is not None:
                out.append(f"{name} id {row_id}: the row is missing, but the audit trail has no deletion of it "
                           "(deleted outside the application)")
                if len(out) >= budget:
                    return [*out, "... stopped after too many problems"]
    return out
