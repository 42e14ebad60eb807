"""Append-only, hash-chained audit log.

Each entry stores ``prev_hash`` and ``hash = sha256(prev_hash + canonical JSON of the entry)``.
Editing any field of any entry breaks its hash; deleting or inserting an entry breaks the sequence
and the link of the next one; truncating the tail disagrees with the head row (``reg_audit_head``),
and, against an attacker who can rewrite the head too, with a head hash noted outside the database
(``ipexrx registry audit verify --expect-head``). Appends lock the head row, so concurrent writers
(several web workers, several centres on PostgreSQL) extend one chain in one order.

The entry is written in the same transaction as the change it describes: either both are committed
or neither is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AuditEntry, AuditHead

GENESIS = "0" * 64
HASHED_FIELDS = ("seq", "ts", "user_id", "username", "role", "action", "entity", "entity_id", "centre_id",
                 "before", "after", "prev_hash")


def canonical(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, dates as ISO strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def _default(o: Any) -> Any:
    if isinstance(o, dt.date | dt.datetime):
        return o.isoformat()
    raise TypeError(f"not JSON-serialisable in an audit entry: {type(o).__name__}")


def entry_hash(values: dict[str, Any]) -> str:
    payload = canonical({k: values[k] for k in HASHED_FIELDS})
    return hashlib.sha256((values["prev_hash"] + payload).encode()).hexdigest()


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
) -> AuditEntry:
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
    }
    values["hash"] = entry_hash(values)
    entry = AuditEntry(**values)
    session.add(entry)
    head.seq = values["seq"]
    head.hash = values["hash"]
    session.flush()
    return entry


def append_many(session: Session, actor: AuditActor,
                entries: list[tuple[str, str, str | int, int | None, Any, Any]]) -> None:
    """Several entries (action, entity, entity_id, centre_id, before, after) under one head lock and
    one multi-row INSERT: the bulk-import path. Same chain as calling :func:`append` repeatedly."""
    if not entries:
        return
    from sqlalchemy import insert

    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    seq, prev = head.seq, head.hash
    rows = []
    ts = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    for action, entity, entity_id, centre_id, before, after in entries:
        seq += 1
        values: dict[str, Any] = {"seq": seq, "ts": ts, "user_id": actor.user_id, "username": actor.username,
                                  "role": actor.role, "action": action, "entity": entity, "entity_id": str(entity_id),
                                  "centre_id": centre_id, "before": canonical(before), "after": canonical(after),
                                  "prev_hash": prev}
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


def verify(session: Session, expect_head: str | None = None, max_problems: int = 50) -> VerifyResult:
    """Recompute the whole chain. Streams the rows, so memory stays flat on a long log."""
    problems: list[str] = []
    prev = GENESIS
    expected_seq = 1
    count = 0
    seen_expected = expect_head in (None, GENESIS)
    stmt = select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=2000)
    for e in session.scalars(stmt):
        count += 1
        values = {k: getattr(e, k) for k in HASHED_FIELDS}
        if e.seq != expected_seq:
            problems.append(f"entry {expected_seq}..{e.seq - 1} missing (deleted?): sequence jumps to {e.seq}")
        if e.prev_hash != prev:
            problems.append(f"entry {e.seq}: prev_hash does not match the hash of the entry before it")
        if entry_hash(values) != e.hash:
            problems.append(f"entry {e.seq}: content does not match its hash (edited?) "
                            f"[{e.action} {e.entity} {e.entity_id} by {e.username}]")
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
    return VerifyResult(not problems, count, head.seq, head.hash, problems)
