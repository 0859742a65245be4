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
    return ", ".join(f"`{name}` {typ}" for name, typ in columns)


def duckdb_type(hive: str) -> str:
    """Partition key types for DuckDB's hive_types."""
    h = hive.lower()
    return {
        "bigint": "BIGINT", "int": "INTEGER", "smallint": "SMALLINT", "tinyint": "TINYINT", "double": "DOUBLE",
        "float": "FLOAT", "boolean": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMP", "string": "VARCHAR",
    }.get(h, "DECIMAL" + h[7:] if h.startswith("decimal") else "VARCHAR")
