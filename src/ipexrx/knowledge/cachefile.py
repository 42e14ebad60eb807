"""Self-checking pickle files in the user's cache directory, shared by the compiled knowledge base
(``loader``) and the compiled reference views (``ipexrx.reference._viewcache``).

Standard library only, so that the view cache can use it without importing the knowledge-base
schema (the point of that cache is to skip that import). A file starts with a fingerprint line;
it is served only when the fingerprint still matches, and it is written atomically (temp file +
rename), so a concurrent reader never sees half a file and a change is never served stale.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

ENV_CACHE_DIR = "IPEXRX_CACHE_DIR"
ENV_NO_CACHE = "IPEXRX_NO_CACHE"

T = TypeVar("T")


def cache_dir() -> Path:
    """``$IPEXRX_CACHE_DIR``, else ``$XDG_CACHE_HOME/ipexrx``, else ``~/.cache/ipexrx``."""
    explicit = os.environ.get(ENV_CACHE_DIR)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ipexrx"


def disabled() -> bool:
    return bool(os.environ.get(ENV_NO_CACHE))


def _stat_line(path: Path, rel: str) -> str:
    st = path.stat()
    return f"{rel}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}\n"


def fingerprint(tag: str, data_dir: str | Path, code_files: Iterable[tuple[Path, str]]) -> str:
    """A hash that changes whenever a YAML content file under ``data_dir``, one of ``code_files``
    (path, name), or the package / Python / pydantic version changes. Raises FileNotFoundError
    when ``data_dir`` is not a directory."""
    from pydantic.version import VERSION as PYDANTIC_VERSION

    from .. import __version__

    base = Path(data_dir)
    if not base.is_dir():
        raise FileNotFoundError(str(base))
    h = hashlib.sha256()
    h.update(f"{tag}|{__version__}|{sys.version}|{PYDANTIC_VERSION}|{base}\n".encode())
    for path, name in code_files:
        h.update(_stat_line(path, name).encode())
    for root, dirs, files in os.walk(base):
        dirs.sort()
        for name in sorted(files):
            if name.endswith((".yaml", ".yml")):
                path = Path(root) / name
                h.update(_stat_line(path, os.path.relpath(path, base)).encode())
    return h.hexdigest()


def cache_file(prefix: str, data_dir: str) -> Path:
    return cache_dir() / f"{prefix}-{hashlib.sha256(data_dir.encode()).hexdigest()[:16]}.pickle"


def read(path: Path, fp: str, expected: type[T]) -> T | None:
    """The object in ``path`` if its fingerprint is ``fp`` and it is an ``expected``; else None."""
    try:
        with path.open("rb") as fh:
            if fh.readline().rstrip(b"\n") != fp.encode():
                return None
            obj = pickle.load(fh)  # noqa: S301 - our own file in the user's cache directory
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - a corrupt or incompatible cache is rebuilt, never fatal
        return None
    return obj if isinstance(obj, expected) else None


def write(path: Path, fp: str, obj: Any) -> None:
    """Write atomically; a read-only or full cache directory just means running without the cache."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(fp.encode() + b"\n")
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
