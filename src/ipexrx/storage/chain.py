"""The hashing rules of the registry's audit chain, below the registry so that migrations can use them.

``ipexrx.registry.audit`` writes and verifies the chain; this module only says how an entry and a
data row are hashed (canonical JSON, SHA-256), and seals every existing data row in one
``seal-baseline`` entry with SQLAlchemy Core on reflected tables (migration 0140, and a restore of
a backup made before 0140). Changing anything here changes every hash: it would need a migration
that re-seals, and old chains would stop verifying.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import Connection, MetaData, insert, select, update

GENESIS = "0" * 64
HASHED_FIELDS = ("seq", "ts", "user_id", "username", "role", "action", "entity", "entity_id", "centre_id",
                 "before", "after", "prev_hash")
# data tables whose rows each audited write seals (ipexrx.registry.audit.SEALED_MODELS, same order)
SEALED_TABLE_NAMES = ("reg_centre", "reg_user", "reg_api_token", "reg_patient", "reg_manifestation", "reg_course",
                      "reg_trough", "reg_visit", "reg_adverse_event", "reg_hsct")


def canonical(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, dates as ISO strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def _default(o: Any) -> Any:
    if isinstance(o, dt.date | dt.datetime):
        return o.isoformat()
    raise TypeError(f"not JSON-serialisable in an audit entry: {type(o).__name__}")


def entry_hash(values: dict[str, Any]) -> str:
    fields = {k: values[k] for k in HASHED_FIELDS}
    if values.get("row_hashes") is not None:  # absent before 0140 and on entries that wrote no data row
        fields["row_hashes"] = values["row_hashes"]
    return hashlib.sha256((values["prev_hash"] + canonical(fields)).encode()).hexdigest()


def _cell(v: Any) -> Any:
    """A column value as the same JSON on SQLite and PostgreSQL (datetimes in UTC, microseconds)."""
    if isinstance(v, dt.datetime):
        v = v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v.astimezone(dt.UTC)  # SQLite: naive UTC
        return v.isoformat(timespec="microseconds")
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def row_digest(row: Any) -> str:
    """SHA-256 of a data row (a mapping of column name to value, as read from the database)."""
    return hashlib.sha256(canonical({k: _cell(v) for k, v in row.items()}).encode()).hexdigest()


def seal_baseline(conn: Connection) -> int:
    """Seal every data row as it is now in one ``seal-baseline`` entry by the local operator, appended
    to the chain (head row locked). Nothing is appended when there is no data row. Returns the
    number of rows sealed. Works on the tables as the database has them (reflected)."""
    meta = MetaData()
    meta.reflect(conn, only=[*SEALED_TABLE_NAMES, "reg_audit", "reg_audit_head"])
    hashes: dict[str, str] = {}
    for name in SEALED_TABLE_NAMES:
        table = meta.tables[name]
        for row in conn.execute(select(table).order_by(table.c.id)).mappings():
            hashes[f"{name}:{int(row['id'])}"] = row_digest(row)
    if not hashes:
        return 0
    head_t, audit_t = meta.tables["reg_audit_head"], meta.tables["reg_audit"]
    head = conn.execute(select(head_t.c.seq, head_t.c.hash).where(head_t.c.id == 1).with_for_update()).one()
    values: dict[str, Any] = {
        "seq": head.seq + 1, "ts": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"), "user_id": None,
        "username": "system", "role": "system", "action": "seal-baseline", "entity": "registry", "entity_id": "*",
        "centre_id": None, "before": canonical(None), "after": canonical({"rows": len(hashes)}),
        "prev_hash": head.hash, "row_hashes": canonical(hashes),
    }
    values["hash"] = entry_hash(values)
    conn.execute(insert(audit_t).values(**values))
    conn.execute(update(head_t).where(head_t.c.id == 1).values(seq=values["seq"], hash=values["hash"]))
    return len(hashes)
