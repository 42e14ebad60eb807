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


def view_sql(view: View, source: str, keep_json: str | None = None, prefilter: str | None = None) -> str:
    """SQL over ``source`` (a relation with ``_file, _line, _raw``) giving the view's columns plus
    ``_file, _line, _ok`` (valid JSON of the view's resource type), ``_bad`` (the start of a line that
    is not JSON: blank for a blank line, which is neither a resource nor a bad line), ``_rtype`` (the
    line's resourceType) and ``_json`` (the raw line, only where ``keep_json`` -- an SQL condition over
    the view's columns -- holds).

    Each line is parsed once: one ``json_extract_string`` takes the resourceType, every column's path
    and the ``forEach`` collection (as JSON text, parsed again only for the lines flattened); a line
    that does not parse gives null there, which is how validity is known.

    ``prefilter``: an SQL condition deciding which valid lines of the type are flattened; it can read
    ``_each_text`` (the JSON text of the ``forEach`` collection, null without one) and ``_text_<column>``
    (a column's text before its cast and reference-key extraction). The other lines are checked and
    counted, their view columns null: it saves the work on lines no later query can use (most
    Observations are vital signs and blood counts)."""
    paths = [translate_path(view.name, c.path) for c in view.columns]
    wanted = ["$.resourceType"] + [p.json_path for p in paths]
    if view.for_each:
        wanted.append(translate_path(view.name, view.for_each).json_path)
    plist = ", ".join(f"'{w}'" for w in wanted)
    texts = [f"_v[{i}] AS _text_{c.name}" for i, c in enumerate(view.columns, start=2)]
    each_text = f"_v[{len(wanted)}]" if view.for_each else "NULL::VARCHAR"
    # a blank line does not parse either; its _bad is blank, which the caller skips (filtering blank lines
    # out here, on the parsed value, would be pushed below the projection and parse every line twice)
    parsed = (f"SELECT _file, _line, _raw, try(json_extract_string(_raw, [{plist}])) AS _v FROM {source} "
              "WHERE _raw IS NOT NULL")
    checked = (f"SELECT _file, _line, _raw, _v IS NOT NULL AND _v[1] IS NOT DISTINCT FROM '{view.resource}' AS _ok, "
               f"CASE WHEN _v IS NULL THEN left(_raw, 160) END AS _bad, _v[1] AS _rtype, {each_text} AS _each_text, "
               f"{', '.join(texts)} FROM ({parsed})")
    use = f"_ok AND coalesce({prefilter}, FALSE)" if prefilter else "_ok"
    cols = ["_file", "_line", "_ok", "_bad", "_rtype", "_use", "_raw"]
    for col, p in zip(view.columns, paths, strict=True):
        cols.append(f"{column_value(f'CASE WHEN _use THEN _text_{col.name} END', col, p.reference_type)} AS {col.name}")
    if view.for_each:
        items = "coalesce(TRY_CAST(_each_text::JSON AS JSON[]), []::JSON[])"
        # forEachOrNull: one row of nulls when the collection is missing *or empty* (a Condition with
        # "coding": [] and a text is kept); forEach: no row for an empty collection. A good line the
        # prefilter passes over has no row either (the caller counts lines read, not rows); every other
        # line -- not JSON, another type, blank -- has one row for its report.
        each = f"CASE WHEN len({items}) > 0 THEN {items} ELSE [NULL::JSON] END" if view.for_each_or_null else items
        skip = "WHEN _ok THEN []::JSON[] " if prefilter else ""
        cols.append(f"unnest(CASE WHEN _use THEN {each} {skip}ELSE [NULL::JSON] END) AS _e")
    flat = f"SELECT {', '.join(cols)} FROM (SELECT *, {use} AS _use FROM ({checked}))"
    outer = ["_file", "_line", "_ok", "_bad", "_rtype", *[c.name for c in view.columns]]
    for col in view.each_columns:
        p = translate_path(view.name, col.path)
        got = f"json_extract_string(_e, '{p.json_path}')"
        outer.append(f"{column_value(got, col, p.reference_type)} AS {col.name}")
    keep_sql = keep_json or "FALSE"
    return (f"SELECT * EXCLUDE (_use, _raw), CASE WHEN _use AND _ok AND ({keep_sql}) THEN _raw END AS _json FROM "
            f"(SELECT {', '.join(outer)}, _use, _raw FROM ({flat}))")
