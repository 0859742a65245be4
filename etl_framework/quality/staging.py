"""Quarantined rows staged (uncommitted) under `<quarantine>/_etl_staging/<run_id>/` until the target commits.

Both gates stage Parquet: the counting-first gate with a Spark write, the inline gate's JVM side output with Spark's
own Parquet writer, one file per task (`part-NNNNN.parquet`). A staging folder left by an earlier version holds one
JSON line per row beside `_schema.json` (the quarantine table's schema); the reader still takes it, so a crash
before an upgrade is recovered after it. Names starting with `_` are invisible to Spark's readers and to Delta, so
nothing staged is ever seen as data.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

SCHEMA_FILE = "_schema.json"
# Spark's JSON keeps timestamps to the millisecond by default: stage them to the microsecond, as Spark holds them.
JSON_OPTIONS = {
    "timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
    "timestampNTZFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSS",
}


def _fs(spark: Any, path: str) -> tuple[Any, Any]:
    jvm = spark._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark._jsc.hadoopConfiguration()), hpath


def has_rows(spark: Any, path: str) -> bool:
    """Whether the staging folder holds any staged data file (not just its schema)."""
    fs, hpath = _fs(spark, path)
    if not fs.exists(hpath):
        return False
    return any(not st.getPath().getName().startswith(("_", ".")) for st in fs.listStatus(hpath))


def read_staged(spark: Any, path: str, schema: Any = None) -> Any:
    """The staged rows of one run as a DataFrame (Parquet, or an earlier version's JSON lines with their schema), or
    None when there are none. `schema`, when the caller knows what was staged, spares Spark's schema inference (a
    Spark job that reads a footer)."""
    from pyspark.sql.types import StructType

    if not has_rows(spark, path):
        return None
    from etl_framework.tables.fs import filesystem

    text = filesystem(spark, path).read_text(posixpath.join(path, SCHEMA_FILE))
    if text is None:
        return (spark.read.schema(schema) if schema is not None else spark.read).parquet(path)
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructField

    doc = json.loads(text)
    schema = StructType.fromJson(doc["schema"])
    constants = doc.get("constants") or {}
    varying = [f for f in schema.fields if f.name not in constants]
    positional = StructType([StructField(str(i), f.dataType, True) for i, f in enumerate(varying)])
    rows = spark.read.schema(positional).options(**JSON_OPTIONS).json(path)
    by_name = {f.name: F.col(f"`{i}`").alias(f.name) for i, f in enumerate(varying)}
    return rows.select(*[by_name[f.name] if f.name in by_name else F.lit(constants[f.name]).cast(f.dataType)
                         .alias(f.name) for f in schema.fields])


# Spark types whose values pyarrow hands to Python exactly as Spark's collect() does (a timestamp's time zone, a
# binary's type, a struct's Row would differ: those are read by Spark)
_ARROW_SAME_AS_SPARK = {"string", "integer", "long", "short", "byte", "double", "float", "boolean", "date"}


def local_sample(path: str, schema: Any, rule: str, columns: list[str], limit: int) -> list[tuple[Any, ...]] | None:
    """The first `limit` staged rows that `rule` quarantined, as tuples of `columns`, read with pyarrow from the
    task files in task order — when the staging folder is on this machine's disk: a Spark job for a handful of
    rows is ~0.3 s of a small run. None when Spark must read them: a remote folder, an earlier version's JSON
    lines, no known schema, or a column whose Python value could differ from Spark's collect()."""
    from pathlib import Path
    from urllib.parse import urlparse

    if schema is None:
        return None
    url = urlparse(path)
    if url.scheme not in ("", "file"):
        return None
    folder = Path(url.path if url.scheme else path)
    types = {f.name: f.dataType.typeName() for f in schema.fields}
    wanted = list(dict.fromkeys(columns))
    if any(types.get(c) not in _ARROW_SAME_AS_SPARK for c in wanted) or "_failed_rules" not in types:
        return None
    try:
        names = sorted(n for n in (p.name for p in folder.iterdir()) if not n.startswith(("_", ".")))
    except OSError:
        return None
    if not names or (folder / SCHEMA_FILE).exists() or not all(n.endswith(".parquet") for n in names):
        return None
    import pyarrow.parquet as pq

    out: list[tuple[Any, ...]] = []
    for name in names:
        for batch in pq.ParquetFile(folder / name).iter_batches(batch_size=4096, columns=["_failed_rules", *wanted]):
            failed = batch.column(0).to_pylist()
            for i, rules in enumerate(failed):
                if rules and rule in rules:
                    values = {c: batch.column(j + 1)[i].as_py() for j, c in enumerate(wanted)}
                    out.append(tuple(values[c] for c in columns))
                    if len(out) >= limit:
                        return out
    return out


def delete_staged(spark: Any, path: str) -> None:
    """Delete one run's staging folder, then its parents (`_etl_staging`, the quarantine folder) if that left them
    empty: a gate that failed leaves no trace, not even an empty quarantine folder."""
    fs, hpath = _fs(spark, path)
    if fs.exists(hpath):
        fs.delete(hpath, True)
    parent = hpath.getParent()
    for _ in range(2):
        if parent is None or not fs.exists(parent):
            break
        if any(True for _ in fs.listStatus(parent)):
            break
        fs.delete(parent, False)
        parent = parent.getParent()
