"""Load the YAML knowledge base into typed models.

Layout of a knowledge-base directory (the embedded default is ``ipexrx/knowledge/data``)::

    meta.yaml            ContentMeta
    disease.yaml         Disease
    drugs/<id>.yaml      Drug (one file per drug, so editors touch one file per change)
    sources.yaml         list[Source]            and/or sources/*.yaml
    manifestations.yaml  list[Manifestation]     and/or manifestations/*.yaml
    classes.yaml         list[DrugClass]         and/or classes/*.yaml
    interactions.yaml    list[Interaction]       and/or interactions/*.yaml
    evidence.yaml        list[EvidenceRecord]    and/or evidence/*.yaml
    ipex_like.yaml       list[IpexLikeDisorder]  and/or ipex_like/*.yaml
    vaccines.yaml        list[Vaccine]           optional: which vaccines are live (ACIP), CVX codes
    thresholds.yaml      list[LabThreshold]      optional: drug-independent lab thresholds (neutropenia...)
    mechanisms.yaml      list[Mechanism]         and/or mechanisms/*.yaml, optional: interaction mechanism groups

A list kind may be split over several files (``<kind>.yaml`` plus ``<kind>/*.yaml``) so that
topics (e.g. label sources vs papers) live apart; ids stay unique across all of them.

Loading collects *every* problem before failing, each located by file, record and field, because an
editor fixing content wants the whole list at once, not one error per run.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from . import cachefile
from .schema import (
    ContentMeta,
    Disease,
    Drug,
    DrugClass,
    EvidenceRecord,
    Interaction,
    IpexLikeDisorder,
    LabThreshold,
    Manifestation,
    Mechanism,
    Source,
    Vaccine,
)

DEFAULT_DATA_DIR = Path(__file__).parent / "data"
ENV_DATA_DIR = "IPEXRX_KB_DIR"

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Problem:
    """One content problem, located precisely enough for an editor to fix it."""

    file: str
    record: str
    field: str
    message: str
    line: int | None = None  # the line in ``file`` (set by ``kb validate``, see :mod:`.yamlpos`)

    def __str__(self) -> str:
        where = self.file + (f", line {self.line}" if self.line is not None else "")
        if self.record:
            where += f" [{self.record}]"
        if self.field:
            where += f" {self.field}"
        return f"{where}: {self.message}"


class KnowledgeBaseError(Exception):
    """Raised when the knowledge base cannot be loaded or fails validation."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"knowledge base has {len(problems)} problem(s):\n{lines}{more}")


@dataclass
class KnowledgeBase:
    """The loaded content plus where each record came from (for error messages)."""

    meta: ContentMeta
    disease: Disease
    sources: dict[str, Source]
    manifestations: dict[str, Manifestation]
    classes: dict[str, DrugClass]
    drugs: dict[str, Drug]
    interactions: dict[str, Interaction]
    evidence: dict[str, EvidenceRecord]
    ipex_like: dict[str, IpexLikeDisorder]
    origin: dict[tuple[str, str], str] = field(default_factory=dict)
    data_dir: Path = DEFAULT_DATA_DIR
    vaccines: dict[str, Vaccine] = field(default_factory=dict)
    thresholds: dict[str, LabThreshold] = field(default_factory=dict)
    mechanisms: dict[str, Mechanism] = field(default_factory=dict)

    def records(self) -> Iterator[tuple[str, str, BaseModel]]:
        """Yield (kind, id, record) for every record, in a stable order."""
        yield "disease", self.disease.id, self.disease
        for kind, table in (
            ("source", self.sources),
            ("manifestation", self.manifestations),
            ("class", self.classes),
            ("drug", self.drugs),
            ("interaction", self.interactions),
            ("evidence", self.evidence),
            ("ipex-like", self.ipex_like),
            ("vaccine", self.vaccines),
            ("threshold", self.thresholds),
            ("mechanism", self.mechanisms),
        ):
            for rid, rec in table.items():
                yield kind, rid, rec


def _read_yaml(path: Path, problems: list[Problem], base: Path | None = None) -> Any:
    # imported here: a lookup served from the compiled cache never parses YAML
    import yaml

    loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ~10x faster
    name = str(path.relative_to(base)) if base else path.name
    try:
        with path.open("r", encoding="utf-8") as fh:
            return yaml.load(fh, Loader=loader)  # noqa: S506 - SafeLoader / CSafeLoader
    except FileNotFoundError:
        problems.append(Problem(name, "", "", "file is missing"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problems.append(Problem(name, "", "", f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"))
    return None


def _loc(err_loc: Iterable[int | str]) -> str:
    out = ""
    for part in err_loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validate(model: type[M], data: Any, file: str, problems: list[Problem]) -> M | None:
    record = str(data.get("id", "")) if isinstance(data, dict) else ""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            msg = err["msg"]
            if err["type"] == "missing":
                msg = "required field is missing"
            elif err["type"] == "extra_forbidden":
                msg = "unknown field (check spelling; see docs/content-model.md)"
            problems.append(Problem(file, record, _loc(err["loc"]), msg))
    return None


def _load_list(
    stem: str, model: type[M], kind: str, base: Path, problems: list[Problem],
    origin: dict[tuple[str, str], str], required: bool = True,
) -> dict[str, M]:
    """Load ``<stem>.yaml`` and every ``<stem>/*.yaml``; at least one of them must exist if ``required``."""
    paths = [base / f"{stem}.yaml"] if (base / f"{stem}.yaml").exists() else []
    if (base / stem).is_dir():
        paths += sorted((base / stem).glob("*.yaml"))
    if not paths and required:
        problems.append(Problem(f"{stem}.yaml", "", "", f"no {kind} file ({stem}.yaml or {stem}/*.yaml)"))
    out: dict[str, M] = {}
    for path in paths:
        rel = str(path.relative_to(base))
        data = _read_yaml(path, problems, base)
        if data is None:
            continue
        if not isinstance(data, list):
            problems.append(Problem(rel, "", "", f"expected a list of {kind} records, got {type(data).__name__}"))
            continue
        for i, item in enumerate(data):
            rec = _validate(model, item, rel, problems)
            if rec is None:
                continue
            rid = rec.id  # type: ignore[attr-defined]
            if rid in out:
                problems.append(Problem(rel, rid, "id", f"duplicate {kind} id '{rid}' (record #{i + 1}; "
                                        f"first in {origin[(kind, rid)]})"))
                continue
            out[rid] = rec
            origin[(kind, rid)] = rel
    return out


def load_kb(data_dir: str | Path | None = None) -> KnowledgeBase:
    """Load and schema-check a knowledge base directory; raise KnowledgeBaseError on any problem.

    Cross-record checks (dangling references, unknown sources) are in ``validate.validate_kb``;
    ``get_kb`` runs both.
    """
    base = Path(data_dir) if data_dir else DEFAULT_DATA_DIR
    problems: list[Problem] = []
    origin: dict[tuple[str, str], str] = {}
    if not base.is_dir():
        raise KnowledgeBaseError([Problem(str(base), "", "", "knowledge-base directory does not exist")])

    meta_raw = _read_yaml(base / "meta.yaml", problems)
    meta = _validate(ContentMeta, meta_raw, "meta.yaml", problems) if meta_raw is not None else None
    disease_raw = _read_yaml(base / "disease.yaml", problems)
    disease = _validate(Disease, disease_raw, "disease.yaml", problems) if disease_raw is not None else None
    if disease is not None:
        origin[("disease", disease.id)] = "disease.yaml"

    sources = _load_list("sources", Source, "source", base, problems, origin)
    manifestations = _load_list("manifestations", Manifestation, "manifestation", base, problems, origin)
    classes = _load_list("classes", DrugClass, "class", base, problems, origin)
    interactions = _load_list("interactions", Interaction, "interaction", base, problems, origin)
    evidence = _load_list("evidence", EvidenceRecord, "evidence", base, problems, origin)
    ipex_like = _load_list("ipex_like", IpexLikeDisorder, "ipex-like", base, problems, origin)
    vaccines = _load_list("vaccines", Vaccine, "vaccine", base, problems, origin, required=False)
    thresholds = _load_list("thresholds", LabThreshold, "threshold", base, problems, origin, required=False)
    mechanisms = _load_list("mechanisms", Mechanism, "mechanism", base, problems, origin, required=False)

    drugs: dict[str, Drug] = {}
    drug_dir = base / "drugs"
    for path in sorted(drug_dir.glob("*.yaml")) if drug_dir.is_dir() else []:
        rel = str(path.relative_to(base))
        raw = _read_yaml(path, problems, base)
        if raw is None:
            continue
        drug = _validate(Drug, raw, rel, problems)
        if drug is None:
            continue
        if drug.id in drugs:
            problems.append(Problem(rel, drug.id, "id", f"duplicate drug id '{drug.id}' "
                                    f"(also in {origin[('drug', drug.id)]})"))
            continue
        if path.stem != drug.id:
            problems.append(Problem(rel, drug.id, "id", f"file name must match the drug id ('{drug.id}.yaml')"))
        drugs[drug.id] = drug
        origin[("drug", drug.id)] = rel

    if problems or meta is None or disease is None:
        raise KnowledgeBaseError(problems or [Problem(str(base), "", "", "incomplete knowledge base")])
    return KnowledgeBase(
        meta=meta, disease=disease, sources=sources, manifestations=manifestations, classes=classes,
        drugs=drugs, interactions=interactions, evidence=evidence, ipex_like=ipex_like,
        origin=origin, data_dir=base, vaccines=vaccines, thresholds=thresholds, mechanisms=mechanisms,
    )


# --------------------------------------------------------------------------------------------
# Compiled cache. Parsing ~50 YAML files and validating them with pydantic costs far more than the
# CLI's start-up budget (a lookup must answer well under 0.3 s), so ``get_kb`` keeps the validated
# knowledge base pickled in the user's cache directory. The cache is keyed by a fingerprint of
# every data file (path, size, mtime, ctime, inode), of the code that defines the pickled classes
# and of the package/Python/pydantic versions, and that fingerprint is re-checked on every load:
# a changed file can never be served stale. ``load_kb`` (and so ``ipexrx kb validate``) never
# reads the cache.
# --------------------------------------------------------------------------------------------
CACHE_FORMAT = 2
_CODE_FILES = ("schema.py", "loader.py", "validate.py", "cachefile.py")
cache_dir = cachefile.cache_dir


def content_fingerprint(data_dir: str | Path) -> str:
    """A hash that changes whenever any content file (or the code that loads it) changes."""
    here = Path(__file__).parent
    return cachefile.fingerprint(f"kb|{CACHE_FORMAT}", data_dir, [(here / n, n) for n in _CODE_FILES])


def _load_validated(data_dir: str) -> KnowledgeBase:
    from .validate import validate_kb

    kb = load_kb(data_dir)
    problems = validate_kb(kb)
    if problems:
        raise KnowledgeBaseError(problems)
    return kb


@functools.lru_cache(maxsize=4)
def _cached(data_dir: str) -> KnowledgeBase:
    if cachefile.disabled():
        return _load_validated(data_dir)
    try:
        fingerprint = content_fingerprint(data_dir)
    except OSError:  # e.g. the directory does not exist: let load_kb report it
        return _load_validated(data_dir)
    path = cachefile.cache_file("kb", data_dir)
    kb = cachefile.read(path, fingerprint, KnowledgeBase)
    if kb is None:
        kb = _load_validated(data_dir)
        cachefile.write(path, fingerprint, kb)
    return kb


def clear_cache() -> None:
    """Forget the in-process copies (the on-disk cache is self-checking and needs no clearing)."""
    _cached.cache_clear()
    _resolved.clear()


def get_kb(data_dir: str | Path | None = None) -> KnowledgeBase:
    """The validated knowledge base (cached per directory). ``$IPEXRX_KB_DIR`` overrides the default.

    Served from the compiled cache when every content file is unchanged (see ``cache_dir``);
    set ``$IPEXRX_NO_CACHE=1`` to always parse the YAML.
    """
    chosen = str(data_dir or os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR)
    resolved = _resolved.get(chosen)
    if resolved is None:
        resolved = str(Path(chosen).resolve())
        if os.path.isabs(chosen):  # resolving costs system calls and the service asks on every request;
            _resolved[chosen] = resolved  # a relative path depends on the working directory: never kept
    return _cached(resolved)


_resolved: dict[str, str] = {}
