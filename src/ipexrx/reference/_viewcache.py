"""Compiled view cache: every reference view, precomputed per content release.

Why: a lookup must answer well under 0.3 s from a cold process, and merely importing the
knowledge-base schema (~50 pydantic models) costs a large share of that. The views themselves
need only :mod:`ipexrx.reference.models`. So, next to the compiled knowledge base (see
``ipexrx.knowledge.loader``), we keep every view (summary, sources, each drug, manifestation and
class) pickled, plus the name tables that resolve what a user types. A lookup then loads
neither YAML nor the schema: it fingerprints the content files, resolves the name and unpickles
one view.

Never stale: the fingerprint covers every content file (path, size, mtime, ctime, inode), the
code that builds the views, and the package / Python / pydantic versions, and it is checked at
the first lookup of every process. Any change rebuilds the whole cache from the validated
knowledge base, with the same functions that compute views directly. ``IPEXRX_NO_CACHE=1``
turns it off.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..knowledge import cachefile
from .names import ALLOW_PREFIX, NameTable, resolve_in

FORMAT = 1
ENV_DATA_DIR = "IPEXRX_KB_DIR"  # same variables as ipexrx.knowledge.loader
_PKG = Path(__file__).resolve().parent.parent
_CODE = ("knowledge/schema.py", "knowledge/loader.py", "knowledge/validate.py", "knowledge/cachefile.py",
         "reference/models.py",
         "reference/views.py", "reference/lookup.py", "reference/names.py", "reference/_viewcache.py")


@dataclass
class ViewStore:
    tables: dict[str, NameTable]
    views: dict[str, bytes]  # "summary", "sources", "drug:<id>", "manifestation:<id>", "class:<id>"


_stores: dict[str, ViewStore | None] = {}


cache_dir = cachefile.cache_dir


def data_dir() -> str:
    """The knowledge-base directory ``get_kb()`` would load (``$IPEXRX_KB_DIR`` or the embedded one)."""
    chosen = os.environ.get(ENV_DATA_DIR) or str(_PKG / "knowledge" / "data")
    return str(Path(chosen).resolve())


def fingerprint(base: str) -> str:
    return cachefile.fingerprint(f"views|{FORMAT}", base, [(_PKG / rel, rel) for rel in _CODE])


def build(base: str) -> ViewStore:
    """Compute every view from the validated knowledge base in ``base``."""
    from ..knowledge import get_kb
    from . import views
    from .lookup import name_tables

    kb = get_kb(base)

    def blob(view: Any) -> bytes:
        return pickle.dumps(view, protocol=pickle.HIGHEST_PROTOCOL)

    out = {"summary": blob(views.summary(kb)), "sources": blob(views.list_sources(kb))}
    for did in kb.drugs:
        out[f"drug:{did}"] = blob(views.drug_monograph(did, kb))
    for mid in kb.manifestations:
        out[f"manifestation:{mid}"] = blob(views.manifestation_view(mid, kb))
    for cid in kb.classes:
        out[f"class:{cid}"] = blob(views.class_view(cid, kb))
    return ViewStore(tables=name_tables(kb), views=out)


def _store(base: str) -> ViewStore | None:
    if base in _stores:
        return _stores[base]
    try:
        fp = fingerprint(base)
    except OSError:  # e.g. the directory does not exist: the direct path reports it properly
        return None
    path = cachefile.cache_file("views", base)
    store = cachefile.read(path, fp, ViewStore)
    if store is None:
        store = build(base)  # KnowledgeBaseError propagates: invalid content is reported, not hidden
        cachefile.write(path, fp, store)
    _stores[base] = store
    return store


def cached_view(kind: str, query: str | None = None) -> Any | None:
    """The precomputed view, or None when the cache is off or unavailable (the caller computes it).

    ``kind`` is "summary", "sources", "drug", "manifestation" or "class". An unknown or ambiguous
    name raises the same errors as the direct lookup, with the same suggestions.
    """
    if cachefile.disabled():
        return None
    store = _store(data_dir())
    if store is None:
        return None
    if query is None:
        key = kind
    else:
        rid = resolve_in(store.tables, kind, query, allow_prefix=ALLOW_PREFIX[kind])
        key = f"{kind}:{rid}"
    data = store.views.get(key)
    return pickle.loads(data) if data is not None else None  # noqa: S301 - see _read


def clear() -> None:
    """Forget the in-process copies (the files are self-checking)."""
    _stores.clear()
