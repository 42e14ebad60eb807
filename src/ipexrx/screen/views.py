"""SQL-on-FHIR v2 ViewDefinitions (``views/*.json``) translated to DuckDB SQL over NDJSON text lines.

Why ViewDefinitions as data: the flattening -- which element of which resource becomes which column --
is the part a health system may need to adapt to its export, and SQL-on-FHIR v2 is the standard way
to write it down (https://build.fhir.org/ig/FHIR/sql-on-fhir-v2/). The same definitions can be run by
any SQL-on-FHIR engine; here a small translator turns them into DuckDB JSON functions, and
``spark_engine`` turns the same parsed views and paths (:func:`parse_view`, :func:`translate_path`,
:func:`column_value`) into Spark SQL over its VARIANT type.

The supported subset (anything else is refused with the view and column named, never half-translated):

* ``select`` entries with ``column`` lists, at most one of them with ``forEach`` or ``forEachOrNull``;
* paths of element names joined by ``.``, with ``first()``, ``ofType(T)`` (a FHIR choice element:
  ``onset.ofType(dateTime)`` is the JSON key ``onsetDateTime``), ``getResourceKey()`` (the resource's
  ``id``) and ``getReferenceKey(T)`` (the id in a ``T/<id>`` reference, also inside an absolute URL);
* column ``type`` decimal and boolean are cast (a value that does not cast becomes null); every other
  type stays text (dates keep their FHIR partial precision).

FHIRPath flattens repeated elements; JSON paths do not, so a repeated element that is not the
``forEach`` must be narrowed with ``first()`` (``clinicalStatus.coding.first().code``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .errors import ScreenInputError

_SEGMENT = re.compile(r"^(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<fn>first|ofType|getResourceKey|getReferenceKey)"
                      r"\((?P<arg>[A-Za-z]*)\))$")
CASTS = {"decimal": "DOUBLE", "integer": "BIGINT", "boolean": "BOOLEAN"}


@dataclass(frozen=True)
class Column:
    name: str
    path: str
    type: str


@dataclass(frozen=True)
class View:
    name: str
    resource: str
    columns: tuple[Column, ...]
    for_each: str | None = None
    for_each_or_null: bool = False
    each_columns: tuple[Column, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns] + [c.name for c in self.each_columns]


def _fail(view: str, what: str) -> ScreenInputError:
    return ScreenInputError(f"view {view!r}: {what}")


def parse_view(data: dict[str, Any]) -> View:
    """A :class:`View` from ViewDefinition JSON; unsupported constructs are refused."""
    name = str(data.get("name") or "?")
    if data.get("resourceType") != "ViewDefinition":
        raise _fail(name, f"expected resourceType 'ViewDefinition', got {data.get('resourceType')!r}")
    if not isinstance(data.get("resource"), str):
        raise _fail(name, "expected a 'resource' (the FHIR resource type flattened)")
    for key in ("where", "constant"):
        if data.get(key):
            raise _fail(name, f"'{key}' is not supported by this translator")
    columns: list[Column] = []
    each: tuple[str, bool] | None = None
    each_cols: list[Column] = []
    for sel in data.get("select") or []:
        extra = set(sel) - {"column", "forEach", "forEachOrNull"}
        if extra:
            raise _fail(name, f"select with {', '.join(sorted(extra))} is not supported")
        cols = [Column(str(c["name"]), str(c["path"]), str(c.get("type", "string"))) for c in sel.get("column", [])]
        loop = sel.get("forEach") or sel.get("forEachOrNull")
        if loop:
            if each is not None:
                raise _fail(name, "more than one forEach/forEachOrNull is not supported")
            each = (str(loop), "forEachOrNull" in sel)
            each_cols = cols
        else:
            columns.extend(cols)
    if not columns and not each_cols:
        raise _fail(name, "no columns")
    seen: set[str] = set()
    for c in columns + each_cols:
        if c.name in seen or not re.fullmatch(r"[a-z_][a-z0-9_]*", c.name):
            raise _fail(name, f"column name {c.name!r} is repeated or not a lower-case SQL name")
        seen.add(c.name)
    return View(name, str(data["resource"]), tuple(columns), each[0] if each else None,
                bool(each and each[1]), tuple(each_cols))


def load_views() -> dict[str, View]:
    """The shipped views, by resource type."""
    out: dict[str, View] = {}
    for entry in sorted(resources.files("ipexrx.screen").joinpath("views").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            view = parse_view(json.loads(entry.read_text(encoding="utf-8")))
            out[view.resource] = view
    return out


@dataclass(frozen=True)
class _Path:
    json_path: str  # '$.a.b[0].c' ('$' for the root)
    reference_type: str | None = None  # getReferenceKey(T)


def translate_path(view: str, path: str) -> _Path:
    """A FHIRPath of the supported subset -> a JSON path (and a reference-key marker)."""
    parts = [p.strip() for p in path.split(".")]
    out = "$"
    ref: str | None = None
    for i, seg in enumerate(parts):
        m = _SEGMENT.match(seg)
        if not m:
            raise _fail(view, f"path {path!r}: {seg!r} is not supported (element names, first(), ofType(T), "
                        "getResourceKey(), getReferenceKey(T))")
        if m.group("name"):
            if ref is not None:
                raise _fail(view, f"path {path!r}: nothing may follow getReferenceKey()")
            out += f".{m.group('name')}"
            continue
        fn, arg = m.group("fn"), m.group("arg")
        if fn == "first":
            out += "[0]"
        elif fn == "ofType":
            if out == "$" or out.endswith("]") or not arg:
                raise _fail(view, f"path {path!r}: ofType(T) must follow a choice element name")
            out += arg[0].upper() + arg[1:]
        elif fn == "getResourceKey":
            if i != 0 or len(parts) != 1:
                raise _fail(view, f"path {path!r}: getResourceKey() stands alone")
            out = "$.id"
        else:  # getReferenceKey
            if not arg:
                raise _fail(view, f"path {path!r}: getReferenceKey needs the resource type")
            out += ".reference"
            ref = arg
    return _Path(out, ref)


def reference_key_pattern(rtype: str) -> str:
    """The regular expression whose group 1 is the id in a ``<rtype>/<id>`` reference (relative, absolute or
    versioned); the same text works in DuckDB's RE2 and Spark's Java regular expressions."""
    return f"(?:^|/){rtype}/([^/]+?)(?:/_history/[^/]*)?$"


def column_value(expr: str, col: Column, ref: str | None, try_cast: str = "TRY_CAST") -> str:
    """SQL turning an extracted text ``expr`` into the column's value: the reference key where the path
    ends in ``getReferenceKey(T)``, a cast (null when it fails) for decimal, integer and boolean columns.
    The SQL is shared by the DuckDB and Spark engines (``try_cast`` is the dialect's spelling)."""
    if ref is not None:
        expr = f"nullif(regexp_extract({expr}, '{reference_key_pattern(ref)}', 1), '')"
    cast = CASTS.get(col.type)
    return f"{try_cast}({expr} AS {cast})" if cast else expr


def resource_type_pattern(rtype: str) -> str:
    """The regular expression a raw line of an ``rtype`` resource matches (its ``resourceType`` member)."""
    return f'"resourceType"\\s*:\\s*"{rtype}"'


def view_sql(view: View, source: str, keep_json: str | None = None, prefilter: str | None = None) -> str:
    """SQL over ``source`` (a relation with ``_file, _line, _raw``) giving the view's columns plus
    ``_file, _line, _ok`` (valid JSON of the view's resource type), ``_bad`` (the start of a bad line),
    ``_rtype`` and ``_json`` (the raw line, only where ``keep_json`` -- an SQL condition over the
    view's columns -- holds).

    ``prefilter``: an SQL condition over the raw line (``_raw``, or another column of ``source``); valid
    lines failing it are checked for their resourceType and counted but not flattened (their view columns
    are null). It saves the JSON work on lines no later query can use (most Observations are vital
    signs)."""
    paths = [translate_path(view.name, c.path) for c in view.columns]
    plist = ", ".join(["'$.resourceType'"] + [f"'{p.json_path}'" for p in paths])
    inner_cols = ["_file", "_line", "_ok", "_use", "_raw",
                  f"CASE WHEN _use THEN json_extract_string(_raw, [{plist}]) END AS _v",
                  "CASE WHEN _ok THEN NULL ELSE left(_raw, 160) END AS _bad"]
    if view.for_each:
        loop = translate_path(view.name, view.for_each)
        items = f"coalesce(TRY_CAST(json_extract(_raw, '{loop.json_path}') AS JSON[]), []::JSON[])"
        # forEachOrNull: one row of nulls when the collection is missing *or empty* (a Condition with
        # "coding": [] and a text is kept); forEach: no row for an empty collection
        keep = f" AND len({items}) > 0" if view.for_each_or_null else ""
        inner_cols.append(f"unnest(CASE WHEN _use{keep} THEN {items} ELSE [NULL::JSON] END) AS _e")
    rtype_rx = resource_type_pattern(view.resource)
    outer = ["_file", "_line",
             f"_ok AND CASE WHEN _use THEN _v[1] IS NOT DISTINCT FROM '{view.resource}' "
             f"ELSE regexp_matches(_raw, '{rtype_rx}') END AS _ok", "_bad",
             "CASE WHEN _use THEN _v[1] END AS _rtype"]
    for i, (col, p) in enumerate(zip(view.columns, paths, strict=True), start=2):
        outer.append(f"{column_value(f'_v[{i}]', col, p.reference_type)} AS {col.name}")
    for col in view.each_columns:
        p = translate_path(view.name, col.path)
        got = f"json_extract_string(_e, '{p.json_path}')"
        outer.append(f"{column_value(got, col, p.reference_type)} AS {col.name}")
    use = f"_ok AND ({prefilter})" if prefilter else "_ok"
    # blank lines are skipped (the trim only runs on the rare lines that are not JSON)
    checked = (f"(SELECT *, {use} AS _use FROM (SELECT *, json_valid(_raw) AS _ok FROM {source} "
               "WHERE _raw IS NOT NULL) WHERE _ok OR trim(_raw) <> '')")
    sql = f"SELECT {', '.join(outer)}, _use, _raw FROM (SELECT {', '.join(inner_cols)} FROM {checked})"
    keep = keep_json or "FALSE"
    names = ", ".join(["_file", "_line", "_ok", "_bad", "_rtype"] + view.column_names)
    return f"SELECT {names}, CASE WHEN _use AND _ok AND ({keep}) THEN _raw END AS _json FROM ({sql})"
