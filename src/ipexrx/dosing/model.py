"""Population-PK model files: schema, loading, and the compiled form the engine uses.

A model is a YAML file in ``dosing/models/`` (or any directory given by the caller). Adding a model
needs no code: the file states its citation, population, units, covariates with validated ranges,
compartments and first-order flows, typical values (``thetas``, each with its source), parameter
formulas, between-subject variability (OMEGA as variances; CV% is converted with
omega^2 = ln(1 + CV^2) and the conversion is recorded), residual error per observed output, targets
and dosage forms. Everything is validated when loaded; a malformed file is a :class:`ModelError`
naming the file and the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ModelError
from .expr import Expr, compile_expr

MODELS_DIR = Path(__file__).with_name("models")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Citation(_Strict):
    text: str
    doi: str | None = None
    pmid: str | None = None
    url: str | None = None
    transcription: str | None = Field(None, description="Where the parameters were read from, if not the paper.")


Context = Literal[
    "hsct", "immune-dysregulation", "inflammatory-bowel-disease", "autoimmune", "vascular-anomaly",
    "renal-transplant", "liver-transplant", "heart-transplant", "bone-marrow-failure", "epilepsy", "oncology",
]
"""Clinical settings a source population can come from. An IPEX child is closest to `hsct`,
`immune-dysregulation`, `inflammatory-bowel-disease` and `autoimmune` (see dosing/select.py)."""


class Population(_Strict):
    description: str
    n_subjects: int | None = None
    age_years: tuple[float, float] | None = None
    weight_kg: tuple[float, float] | None = None
    contexts: list[Context] = Field(
        [], description="Clinical settings of the source population, used to rank models for a patient.")
    assay: str | None = Field(None, description="Assay of the observations (e.g. 'EMIT immunoassay', 'LC-MS/MS').")


class Units(_Strict):
    time: Literal["h"] = "h"
    amount: Literal["mg", "ug", "g"] = "mg"
    volume: Literal["L", "mL"] = "L"
    concentration: str = Field(..., description="Unit of the observed concentrations, e.g. mg/L or ng/mL.")


class Covariate(_Strict):
    unit: str = Field(..., description="Unit, or '1' for a dimensionless code; never empty.")
    description: str
    label: str | None = Field(
        None, description="What the covariate says, in words that follow 'needs to know' (\"whether posaconazole is "
        "given\", \"the haematocrit\"): how a clinician reads what a model lacks. Without it, the description's "
        "first phrase.")
    min: float | None = None
    max: float | None = None
    allowed: list[float] | None = Field(None, description="For categorical codes: the permitted values.")
    default: float | None = Field(None, description="Used when the covariate is absent; None = required.")
    out_of_range: Literal["warn", "refuse"] = "warn"
    hard_min: float | None = Field(None, description="Physically impossible below this (wrong unit?): always refused.")
    hard_max: float | None = Field(None, description="Physically impossible above this (wrong unit?): always refused.")
    comedication: str | None = Field(
        None, description="For a 0/1 co-medication indicator: the drug it stands for (lowercase generic name, "
        "the knowledge-base id where the drug is in it). Set from a complete co-medication list (1 if listed, "
        "0 if not); never assumed without one.")

    @model_validator(mode="after")
    def _check(self) -> Covariate:
        if not self.unit.strip():
            raise ValueError("a covariate needs a unit ('1' if dimensionless)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        return self

    def in_words(self) -> str:
        """What the covariate says, for a reader: its ``label``, else its description up to the first
        parenthesis or semicolon ('body weight')."""
        if self.label:
            return self.label
        return self.description.split(" (", 1)[0].split(";", 1)[0].strip() or self.description


class Theta(_Strict):
    value: float
    unit: str
    source: str = Field(..., description="Where the value comes from (table, page, or 'fixed by design').")
    verified: bool = Field(True, description="False when the value could not be checked against the primary source.")


class Parameter(_Strict):
    expr: str = Field(..., description="Typical value as a formula of thetas, covariates and earlier parameters.")
    unit: str
    iiv: Literal["none", "exponential", "additive", "proportional"] = "none"


class Omega(_Strict):
    """Between-subject variability of the ETAs, in the order of ``etas``.

    Exactly one of ``variance`` (diagonal), ``matrix`` (full, symmetric) or ``cv_percent`` (diagonal, converted
    with omega^2 = ln(1 + CV^2), the log-normal identity) must be given.
    """

    etas: list[str]
    variance: list[float] | None = None
    matrix: list[list[float]] | None = None
    cv_percent: list[float] | None = None

    @model_validator(mode="after")
    def _check(self) -> Omega:
        given = [x is not None for x in (self.variance, self.matrix, self.cv_percent)]
        if sum(given) != 1:
            raise ValueError("give exactly one of variance, matrix, cv_percent")
        n = len(self.etas)
        if len(set(self.etas)) != n:
            raise ValueError("duplicate ETA names")
        if self.variance is not None and len(self.variance) != n:
            raise ValueError(f"variance has {len(self.variance)} values for {n} ETAs")
        if self.cv_percent is not None and len(self.cv_percent) != n:
            raise ValueError(f"cv_percent has {len(self.cv_percent)} values for {n} ETAs")
        if self.matrix is not None:
            if len(self.matrix) != n or any(len(r) != n for r in self.matrix):
                raise ValueError(f"matrix must be {n}x{n}")
            for i in range(n):
                for j in range(n):
                    if abs(self.matrix[i][j] - self.matrix[j][i]) > 1e-12 * (1 + abs(self.matrix[i][j])):
                        raise ValueError("matrix must be symmetric")
        return self

    def as_matrix(self) -> list[list[float]]:
        n = len(self.etas)
        if self.matrix is not None:
            return [list(r) for r in self.matrix]
        if self.variance is not None:
            d = list(self.variance)
        else:
            assert self.cv_percent is not None
            d = [math.log(1.0 + (c / 100.0) ** 2) for c in self.cv_percent]
        return [[d[i] if i == j else 0.0 for j in range(n)] for i in range(n)]


class ErrorTerm(_Strict):
    variance: float | None = None
    sd: float | None = None

    @model_validator(mode="after")
    def _check(self) -> ErrorTerm:
        if (self.variance is None) == (self.sd is None):
            raise ValueError("give exactly one of variance or sd")
        if (self.variance or 0) < 0 or (self.sd or 0) < 0:
            raise ValueError("error magnitudes must be >= 0")
        return self

    @property
    def var(self) -> float:
        return float(self.variance) if self.variance is not None else float(self.sd) ** 2  # type: ignore[arg-type]


class ResidualError(_Strict):
    """Residual error. ``proportional`` is relative (SD 0.2 = 20 %); ``additive`` is in the output's unit;
    ``log_additive`` is the SD on the log scale (data and predictions are both log-transformed)."""

    model: Literal["proportional", "additive", "combined", "log_additive"]
    proportional: ErrorTerm | None = None
    additive: ErrorTerm | None = None
    log_additive: ErrorTerm | None = None

    @model_validator(mode="after")
    def _check(self) -> ResidualError:
        need = {
            "proportional": {"proportional"}, "additive": {"additive"},
            "combined": {"proportional", "additive"}, "log_additive": {"log_additive"},
        }[self.model]
        have = {k for k in ("proportional", "additive", "log_additive") if getattr(self, k) is not None}
        if have != need:
            raise ValueError(f"error model {self.model!r} needs exactly {sorted(need)}, got {sorted(have)}")
        return self

    @property
    def prop_var(self) -> float:
        return self.proportional.var if self.proportional else 0.0

    @property
    def add_var(self) -> float:
        if self.log_additive is not None:
            return self.log_additive.var
        return self.additive.var if self.additive else 0.0


class Output(_Strict):
    name: str
    compartment: str
    scale: str = Field(..., description="Formula for the volume the amount is divided by.")
    unit_factor: float = Field(
        1.0, description="Multiplier from amount/volume units to the output unit (mg/L->ng/mL: 1000).")
    unit: str
    error: ResidualError


class Flow(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    source: str = Field(..., alias="from")
    to: str | None = None
    rate: str = Field(..., description="First-order rate constant formula (1/h).")


class DoseInput(_Strict):
    route: str = Field(..., description="Route label (oral, iv...).")
    bioavailability: str = "1"
    lag: str | None = None
    duration: str | None = Field(None, description="Modelled infusion duration, used by dose records with RATE=-2.")


class Target(_Strict):
    metric: Literal["trough", "peak", "auc24"]
    low: float
    high: float
    unit: str
    context: str
    source: str
    verified: bool = True
    origin: Literal["study", "user", "knowledge base"] = Field(
        "study", description="Where the range came from: the model's source study (the model file), typed by the "
        "user, or the knowledge base's range for the drug (set by the program, never in a model file).")


class DosageForm(_Strict):
    form: str
    strengths: list[float] | None = Field(None, description="Unit strengths (capsule/tablet), in `unit`.")
    concentration: float | None = Field(None, description="Oral solution/suspension strength, `unit` per mL.")
    unit: str = "mg"
    measurable_ml: float | None = Field(None, description="Smallest measurable volume step for liquids (mL).")
    source: str
    verified: bool = False


class ModelSpec(_Strict):
    id: str
    title: str
    drug: str
    kind: Literal["clinical", "reference"] = Field(
        ..., description="clinical = a published model for patient use; reference = validation/teaching model."
    )
    citation: Citation
    verification: str = Field(..., description="What was checked against the source, and what could not be.")
    population: Population
    units: Units
    covariates: dict[str, Covariate] = {}
    thetas: dict[str, Theta]
    compartments: list[str]
    flows: list[Flow]
    dosing: dict[str, DoseInput]
    parameters: dict[str, Parameter]
    omega: Omega
    outputs: list[Output]
    targets: list[Target] = []
    dosage_forms: list[DosageForm] = []
    default_interval_h: float | None = None
    allowed_intervals_h: list[float] = Field(
        [], description="Intervals the source population used; recommend() compares them when none is imposed.")
    caveats: list[str] = []

    @property
    def author_year(self) -> str:
        """The paper's author and year, from the title's closing parenthesis ('Chen 2022'); else the title."""
        hit = _AUTHOR_YEAR.search(self.title)
        return hit.group(1) if hit else self.title

    @property
    def citation_name(self) -> str:
        """How a reader is told which model: 'Chen 2022 tacrolimus model' (never the file's id)."""
        hit = _AUTHOR_YEAR.search(self.title)
        return f"{hit.group(1)} {self.drug} model" if hit else f"{self.title} model"


_AUTHOR_YEAR = re.compile(r"\(([^()]*\d{4}[a-z]?)\)\s*$")


# ----------------------------------------------------------------------------------------------
# Compiled model


@dataclass
class CompiledModel:
    """A validated model with compiled formulas and index maps, ready for the engine."""

    spec: ModelSpec
    path: Path | None
    cmt_index: dict[str, int]
    param_names: list[str]
    param_exprs: list[Expr]
    param_iiv: list[str]
    eta_names: list[str]
    eta_param_index: list[int]
    omega: Any  # numpy (n, n)
    omega_inv: Any
    logdet_omega: float
    flows: list[tuple[int, int | None, Expr]]
    dose_f: dict[int, Expr]
    dose_lag: dict[int, Expr]
    dose_dur: dict[int, Expr]
    outputs: list[tuple[int, Expr, float, ResidualError]]  # cmt index, scale, unit factor, error
    output_by_cmt: dict[int, int]
    blocks: list[list[int]] = field(default_factory=list)
    closed_form: bool = True

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def n_eta(self) -> int:
        return len(self.eta_names)

    def covariate_names(self) -> list[str]:
        return list(self.spec.covariates)


def _scc(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    """Strongly connected components (Tarjan), returned in topological order of the flow graph."""
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        adj[a].append(b)
    index = [0]
    idx = [-1] * n
    low = [0] * n
    on = [False] * n
    stack: list[int] = []
    out: list[list[int]] = []

    def visit(v: int) -> None:
        idx[v] = low[v] = index[0]
        index[0] += 1
        stack.append(v)
        on[v] = True
        for w in adj[v]:
            if idx[w] < 0:
                visit(w)
                low[v] = min(low[v], low[w])
            elif on[w]:
                low[v] = min(low[v], idx[w])
        if low[v] == idx[v]:
            comp = []
            while True:
                w = stack.pop()
                on[w] = False
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in range(n):
        if idx[v] < 0:
            visit(v)
    return out[::-1]


def compile_model(spec: ModelSpec, path: Path | None = None) -> CompiledModel:
    import numpy as np

    where = f"model {spec.id}"
    cmts = spec.compartments
    if len(set(cmts)) != len(cmts):
        raise ModelError(f"{where}: duplicate compartment names")
    cmt_index = {c: i for i, c in enumerate(cmts)}

    def cmt(name: str, ctx: str) -> int:
        if name not in cmt_index:
            raise ModelError(f"{where}: {ctx} names compartment {name!r}; expected one of {cmts}")
        return cmt_index[name]

    known: set[str] = set(spec.thetas) | set(spec.covariates)
    clash = set(spec.thetas) & set(spec.covariates)
    if clash:
        raise ModelError(f"{where}: names used both as theta and covariate: {sorted(clash)}")
    pnames: list[str] = []
    pexprs: list[Expr] = []
    piiv: list[str] = []
    for name, p in spec.parameters.items():
        if name in known:
            raise ModelError(f"{where}: parameter {name!r} shadows a theta or covariate")
        pexprs.append(compile_expr(p.expr, known, f"{where} parameter {name}"))
        pnames.append(name)
        piiv.append(p.iiv)
        known.add(name)

    etas = spec.omega.etas
    eta_idx = []
    for e in etas:
        if e not in spec.parameters:
            raise ModelError(f"{where}: omega ETA {e!r} must name a parameter; parameters: {pnames}")
        if spec.parameters[e].iiv == "none":
            raise ModelError(f"{where}: parameter {e!r} has an ETA in omega but iiv: none")
        eta_idx.append(pnames.index(e))
    for name, p in spec.parameters.items():
        if p.iiv != "none" and name not in etas:
            raise ModelError(f"{where}: parameter {name!r} declares iiv {p.iiv!r} but has no ETA in omega")
    om = np.array(spec.omega.as_matrix(), dtype=float)
    try:
        chol = np.linalg.cholesky(om)
    except np.linalg.LinAlgError:
        raise ModelError(f"{where}: omega is not positive definite") from None
    om_inv = np.linalg.inv(om)
    logdet = float(2.0 * np.sum(np.log(np.diag(chol))))

    flows: list[tuple[int, int | None, Expr]] = []
    edges: list[tuple[int, int]] = []
    for fl in spec.flows:
        a = cmt(fl.source, "a flow")
        b = cmt(fl.to, "a flow") if fl.to is not None else None
        if b == a:
            raise ModelError(f"{where}: a flow goes from {fl.source} to itself")
        flows.append((a, b, compile_expr(fl.rate, known, f"{where} flow {fl.source}->{fl.to}")))
        if b is not None:
            edges.append((a, b))
    blocks = _scc(len(cmts), edges)

    dose_f: dict[int, Expr] = {}
    dose_lag: dict[int, Expr] = {}
    dose_dur: dict[int, Expr] = {}
    for cname, d in spec.dosing.items():
        i = cmt(cname, "dosing")
        dose_f[i] = compile_expr(d.bioavailability, known, f"{where} dosing {cname} bioavailability")
        if d.lag is not None:
            dose_lag[i] = compile_expr(d.lag, known, f"{where} dosing {cname} lag")
        if d.duration is not None:
            dose_dur[i] = compile_expr(d.duration, known, f"{where} dosing {cname} duration")

    outs = []
    by_cmt: dict[int, int] = {}
    for k, o in enumerate(spec.outputs):
        i = cmt(o.compartment, f"output {o.name}")
        if i in by_cmt:
            raise ModelError(f"{where}: two outputs observe compartment {o.compartment}")
        by_cmt[i] = k
        outs.append((i, compile_expr(o.scale, known, f"{where} output {o.name} scale"), o.unit_factor, o.error))
    if not outs:
        raise ModelError(f"{where}: at least one output is required")
    for name, c in spec.covariates.items():
        if c.default is not None and c.allowed is not None and c.default not in c.allowed:
            raise ModelError(f"{where}: covariate {name} default {c.default} is not among allowed {c.allowed}")
    for t in spec.targets:
        if t.low >= t.high:
            raise ModelError(f"{where}: target {t.metric} low {t.low} >= high {t.high}")

    return CompiledModel(
        spec=spec, path=path, cmt_index=cmt_index, param_names=pnames, param_exprs=pexprs, param_iiv=piiv,
        eta_names=list(etas), eta_param_index=eta_idx, omega=om, omega_inv=om_inv, logdet_omega=logdet,
        flows=flows, dose_f=dose_f, dose_lag=dose_lag, dose_dur=dose_dur, outputs=outs, output_by_cmt=by_cmt,
        blocks=blocks, closed_form=all(len(b) <= 2 for b in blocks),
    )


def load_model_file(path: str | Path) -> CompiledModel:
    import yaml

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read model file {p}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ModelError(f"model file {p} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ModelError(f"model file {p}: expected a mapping at top level, got {type(raw).__name__}")
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as exc:
        msgs = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ModelError(f"model file {p}: {msgs}") from None
    if spec.id != p.stem:
        raise ModelError(f"model file {p}: id {spec.id!r} must equal the file name {p.stem!r}")
    return compile_model(spec, p)


def list_model_files(directory: Path | None = None) -> list[Path]:
    d = directory or MODELS_DIR
    return sorted(d.glob("*.yaml"))


@lru_cache(maxsize=64)
def _load_cached(path: str, mtime: float) -> CompiledModel:
    return load_model_file(path)


def get_model(name: str, directory: Path | None = None) -> CompiledModel:
    """Load a model by id (file stem) from the library, or by path to a YAML file."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return _load_cached(str(p.resolve()), p.stat().st_mtime)
    files = {f.stem: f for f in list_model_files(directory)}
    if name not in files:
        from difflib import get_close_matches

        close = get_close_matches(name, list(files), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"unknown model {name!r}; expected one of: {', '.join(sorted(files))}.{hint}")
    f = files[name]
    return _load_cached(str(f.resolve()), f.stat().st_mtime)


def all_models(directory: Path | None = None) -> list[CompiledModel]:
    return [get_model(f.stem, directory) for f in list_model_files(directory)]


def with_thetas(model: CompiledModel, **values: float) -> CompiledModel:
    """A copy of ``model`` with some typical values replaced (sensitivity analyses, validation tests)."""
    thetas = dict(model.spec.thetas)
    for k, v in values.items():
        if k not in thetas:
            raise ModelError(f"model {model.id} has no theta {k!r}; thetas: {', '.join(thetas)}")
        thetas[k] = thetas[k].model_copy(update={"value": float(v), "source": "overridden by the caller"})
    return compile_model(model.spec.model_copy(update={"thetas": thetas}), None)
