"""Glue/Hive column types: inference from text and JSON values, from Arrow schemas, widening, and rendering.

A type is a Hive type name (`bigint`, `string`, `decimal(10,2)`...) or a tree for nested types:
`("struct", ((name, T), ...))`, `("array", T)`, `("map", K, V)`.
"""

from __future__ import annotations

import re
from typing import Any

T = Any  # str | tuple

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TS = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$")

NUMERIC_ORDER = ["tinyint", "smallint", "int", "bigint", "float", "double"]


def infer_text(value: str) -> T | None:
    """The type of one CSV field or partition value, as Glue's classifiers see it; None for an empty value."""
    v = value.strip()
    if v == "":
        return None
    if v.lower() in ("true", "false"):
        return "boolean"
    if _INT.match(v):
        return "bigint" if -(2**63) <= int(v) < 2**63 else "double"
    if _FLOAT.match(v) and v.lower() not in ("nan", "inf"):
        return "double"
    if _DATE.match(v):
        return "date"
    if _TS.match(v):
        return "timestamp"
    return "string"


def infer_json(value: Any) -> T | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        fields = []
        for k, v in value.items():
            fields.append((k, infer_json(v) or "string"))
        return ("struct", tuple(fields))
    if isinstance(value, list):
        elem: T | None = None
        for item in value:
            elem = widen(elem, infer_json(item))
        return ("array", elem or "string")
    return "string"


def widen(a: T | None, b: T | None) -> T | None:
    """The narrowest type holding values of both (as Glue merges schemas across files); string when nothing
    narrower fits."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    if isinstance(a, str) and isinstance(b, str):
        if a in NUMERIC_ORDER and b in NUMERIC_ORDER:
            if {a, b} & {"float", "double"}:
                return "double"
            return max(a, b, key=NUMERIC_ORDER.index)
        if a.startswith("decimal") and b in NUMERIC_ORDER or b.startswith("decimal") and a in NUMERIC_ORDER:
            return "double"
        if {a, b} == {"date", "timestamp"}:
            return "timestamp"
        return "string"
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0]:
        if a[0] == "array":
            return ("array", widen(a[1], b[1]))
        if a[0] == "map":
            return ("map", widen(a[1], b[1]), widen(a[2], b[2]))
        if a[0] == "struct":
            merged = dict(a[1])
            for name, t in b[1]:
                merged[name] = widen(merged.get(name), t)
            return ("struct", tuple(merged.items()))
    return "string"


def render(t: T | None) -> str:
    """The Hive type string Glue stores (`struct<a:bigint,b:array<string>>`)."""
    if t is None:
        return "string"
    if isinstance(t, str):
        return t
    if t[0] == "array":
        return f"array<{render(t[1])}>"
    if t[0] == "map":
        return f"map<{render(t[1])},{render(t[2])}>"
    return "struct<" + ",".join(f"{n}:{render(ft)}" for n, ft in t[1]) + ">"


def from_arrow(dt: Any) -> T:
    """An Arrow type (Parquet footer, Delta schema) as a Glue type."""
    import pyarrow as pa
    import pyarrow.types as pt

    if pt.is_boolean(dt):
        return "boolean"
    if pt.is_int8(dt) or pt.is_uint8(dt):
        return "tinyint"
    if pt.is_int16(dt) or pt.is_uint16(dt):
        return "smallint"
    if pt.is_int32(dt) or pt.is_uint32(dt):
        return "int"
    if pt.is_integer(dt):
        return "bigint"
    if pt.is_float16(dt) or pt.is_float32(dt):
        return "float"
    if pt.is_float64(dt):
        return "double"
    if pt.is_decimal(dt):
        return f"decimal({dt.precision},{dt.scale})"
    if pt.is_string(dt) or pt.is_large_string(dt) or getattr(pt, "is_string_view", lambda _x: False)(dt):
        return "string"
    if pt.is_binary(dt) or pt.is_large_binary(dt) or pt.is_fixed_size_binary(dt):
        return "binary"
    if pt.is_date(dt):
        return "date"
    if pt.is_timestamp(dt):
        return "timestamp"
    if pt.is_list(dt) or pt.is_large_list(dt) or pt.is_fixed_size_list(dt):
        return ("array", from_arrow(dt.value_type))
    if pt.is_map(dt):
        return ("map", from_arrow(dt.key_type), from_arrow(dt.item_type))
    if pt.is_struct(dt):
        return ("struct", tuple((dt.field(i).name, from_arrow(dt.field(i).type)) for i in range(dt.num_fields)))
    if pt.is_dictionary(dt):
        return from_arrow(dt.value_type)
    if isinstance(dt, pa.DataType) and pt.is_null(dt):
        return "string"
    return "string"


def spark_ddl(columns: list[tuple[str, str]]) -> str:
    """A Spark DDL schema string (`a BIGINT, b STRING`) from Glue columns; Hive type names parse in Spark."""
    return ", ".join(f"`{name.replace('`', '``')}` {typ}" for name, typ in columns)


def duckdb_type(hive: str) -> str:
    """Partition key types for DuckDB's hive_types."""
    h = hive.lower()
    return {
        "bigint": "BIGINT", "int": "INTEGER", "smallint": "SMALLINT", "tinyint": "TINYINT", "double": "DOUBLE",
        "float": "FLOAT", "boolean": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMP", "string": "VARCHAR",
    }.get(h, "DECIMAL" + h[7:] if h.startswith("decimal") else "VARCHAR")


# ------------------------------------------------------------------------------ the grammar of a Glue type

PRIMITIVES = {"tinyint", "smallint", "int", "integer", "bigint", "float", "double", "real", "boolean", "string",
              "binary", "date", "timestamp", "void"}
_TOKEN = re.compile(r"\s*(?:(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<num>\d+)|(?P<quoted>`(?:[^`]|``)*`)|(?P<p>[<>(),:]))")
_FIELD = re.compile(r"\s*(?P<name>`(?:[^`]|``)+`|[^\s:<>,`]+)\s*:")


class TypeSyntaxError(ValueError):
    """A column type that is not a Glue/Hive type (catalog metadata is data: it is never pasted into SQL)."""


def parse_type(text: str) -> T:
    """A Glue/Hive type string as a type tree (`decimal(10,2)`, `array<struct<a:int,b:string>>`, ...); anything
    else (trailing text, a quote, a `;`) raises TypeSyntaxError."""
    if not isinstance(text, str) or len(text) > 100_000:
        raise TypeSyntaxError("not a type")
    pos, t = _parse_at(text, 0)
    if text[pos:].strip():
        raise TypeSyntaxError(f"unexpected text after the type at character {pos + 1}")
    return t


def _tok(text: str, pos: int) -> tuple[str, str, int]:
    m = _TOKEN.match(text, pos)
    if not m:
        raise TypeSyntaxError(f"unexpected {text[pos:pos + 1].strip() or 'end'!r} at character {pos + 1}")
    kind = m.lastgroup or ""
    return kind, m.group(kind), m.end()


def _expect(text: str, pos: int, char: str) -> int:
    kind, val, end = _tok(text, pos)
    if kind != "p" or val != char:
        raise TypeSyntaxError(f"expected {char!r} at character {pos + 1}")
    return end


def _ints(text: str, pos: int, most: int) -> tuple[int, list[int]]:
    nums: list[int] = []
    pos = _expect(text, pos, "(")
    while True:
        kind, val, pos = _tok(text, pos)
        if kind != "num" or len(val) > 5:
            raise TypeSyntaxError(f"expected a number at character {pos}")
        nums.append(int(val))
        kind, val, pos = _tok(text, pos)
        if val == ")":
            break
        if val != "," or len(nums) >= most:
            raise TypeSyntaxError(f"expected ')' at character {pos}")
    return pos, nums


def _parse_at(text: str, pos: int) -> tuple[int, T]:
    kind, word, pos = _tok(text, pos)
    if kind != "word":
        raise TypeSyntaxError(f"expected a type name at character {pos}")
    name = word.lower()
    nxt = _TOKEN.match(text, pos)
    opens = nxt is not None and nxt.group("p") in ("(", "<")
    if name in ("decimal", "numeric"):
        if nxt is not None and nxt.group("p") == "(":
            pos, nums = _ints(text, pos, 2)
            precision, scale = (nums + [0])[:2]
            if not 1 <= precision <= 38 or scale > precision:
                raise TypeSyntaxError(f"decimal({precision},{scale}): precision 1..38, scale <= precision")
            return pos, f"decimal({precision},{scale})"
        return pos, "decimal(10,0)"
    if name in ("varchar", "char"):
        pos, nums = _ints(text, pos, 1)
        return pos, f"{name}({nums[0]})"
    if name == "array":
        pos = _expect(text, pos, "<")
        pos, elem = _parse_at(text, pos)
        return _expect(text, pos, ">"), ("array", elem)
    if name == "map":
        pos = _expect(text, pos, "<")
        pos, key = _parse_at(text, pos)
        pos = _expect(text, pos, ",")
        pos, value = _parse_at(text, pos)
        return _expect(text, pos, ">"), ("map", key, value)
    if name == "struct":
        pos = _expect(text, pos, "<")
        fields: list[tuple[str, T]] = []
        while True:
            m = _FIELD.match(text, pos)
            if not m:
                raise TypeSyntaxError(f"expected 'name:type' at character {pos + 1}")
            fname = m.group("name")
            if fname.startswith("`"):
                fname = fname[1:-1].replace("``", "`")
            pos, ft = _parse_at(text, m.end())
            fields.append((fname, ft))
            kind, val, pos = _tok(text, pos)
            if val == ">":
                return pos, ("struct", tuple(fields))
            if val != ",":
                raise TypeSyntaxError(f"expected ',' or '>' at character {pos}")
    if name == "uniontype":
        pos = _expect(text, pos, "<")
        members: list[T] = []
        while True:
            pos, mt = _parse_at(text, pos)
            members.append(mt)
            kind, val, pos = _tok(text, pos)
            if val == ">":
                return pos, ("uniontype", tuple(members))
            if val != ",":
                raise TypeSyntaxError(f"expected ',' or '>' at character {pos}")
    if name in PRIMITIVES and not opens:
        return pos, {"integer": "int", "real": "float"}.get(name, name)
    raise TypeSyntaxError(f"{word!r} is not a Glue/Hive type")


def duckdb_sql_type(t: T) -> str:
    """The DuckDB spelling of a parsed type (`parse_type`), built from the tree, never from the catalog's text."""
    if isinstance(t, tuple):
        return "JSON" if t[0] != "map" else "VARCHAR"  # nested values only reach DuckDB as text in CSV/empty views
    if t.startswith("decimal("):
        p, s = t[8:-1].split(",")
        return f"DECIMAL({int(p)},{int(s)})"
    if t.startswith(("varchar(", "char(")):
        return "VARCHAR"
    return duckdb_type(t)
