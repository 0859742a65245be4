"""What a job's columns are, known without data: the declared source schemas carried through the transform steps
(sqlglot's qualification for `sql`/`select`, plain bookkeeping for the other steps), so that `etl validate` can
stop a `partition_by` column no run could produce before Spark starts.

Every answer is either the exact column list or None ("cannot know": an inferred schema, a python step, a
folder whose partitions cannot be listed, an expression Spark names by itself). None means say nothing: a check
built on this module never reports an error it is not sure of.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from etl_framework.config.model import JobConfig, Source, TransformStep

Columns = list[str]
_HIVE_DIR = re.compile(r"^([^=/]+)=")


def hive_partition_columns(path: str) -> Columns | None:
    """The columns Spark's partition discovery adds for `key=value` folders under a source folder (e.g. `dt`
    for `orders/dt=2024-01-01/part.csv`), in folder order; [] for a file or a folder without them; None when the
    folder cannot be listed here (not local, not there yet, or a `${...}` left for run time)."""
    if "${" in path or "://" in path.removeprefix("file://") or any(ch in path for ch in "*?["):
        return None
    root = path.removeprefix("file://")
    if os.path.isfile(root):
        return []
    if not os.path.isdir(root):
        return None
    out: Columns = []
    for _dirpath, dirnames, _files in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(("_", "."))]
        for d in dirnames:
            m = _HIVE_DIR.match(d)
            if m and m.group(1) not in out:
                out.append(m.group(1))
        if len(out) > 20:
            break
    return out


def source_columns(src: Source, catalog_columns: Any = None) -> Columns | None:
    """A source's columns as the extract stage gives them: the declared schema plus the Hive partition columns of
    its folders; a catalog source's columns from `catalog_columns(database.table)` when given."""
    if src.format == "catalog":
        if catalog_columns is None or not src.table:
            return None
        return catalog_columns(src.table)
    if not isinstance(src.schema_, dict) or src.format == "jdbc" or not src.path:
        return None
    declared = list(src.schema_)
    extra = hive_partition_columns(src.path)
    if extra is None:
        return None
    return declared + [c for c in extra if c.lower() not in {d.lower() for d in declared}]


def _sql_columns(sql: str, views: dict[str, Columns | None]) -> Columns | None:
    """Output columns of a Spark SQL query over the given views (qualified by sqlglot), or None."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.optimizer.qualify import qualify

    tree = sqlglot.parse_one(sql, read="spark")
    if not isinstance(tree, exp.Query):
        return None
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    for t in tree.find_all(exp.Table):
        if t.name and t.name not in ctes and (t.db or views.get(t.name) is None):
            return None  # a catalog table or a view whose columns are unknown
    outer = tree.selects if isinstance(tree, exp.Select) else None
    if outer is None:
        return None  # a UNION etc.: Spark names the columns after its first branch; not worth guessing
    for e in outer:
        if not isinstance(e, exp.Alias | exp.Column | exp.Star):
            return None  # Spark names an unaliased expression itself (`upper(id)`), not sqlglot's `_col_0`
    schema = {name: dict.fromkeys(cols, "string") for name, cols in views.items() if cols is not None}
    qualified = qualify(tree, schema=schema, dialect="spark", validate_qualify_columns=True)
    names = list(qualified.named_selects)
    if any(n == "*" or not n for n in names):
        return None
    return names


def _replace(cols: Columns, name: str) -> Columns:
    """Spark's withColumn: replaces a column of the same name (case-insensitive), else appends."""
    low = name.lower()
    return [name if c.lower() == low else c for c in cols] if low in {c.lower() for c in cols} else [*cols, name]


def step_columns(step: TransformStep, cols: Columns, views: dict[str, Columns | None]) -> Columns | None:
    """The columns after one step, given those before it (None: cannot know)."""
    kind, arg = step.kind, step.arg
    if kind in ("filter", "dedupe", "cast"):
        return cols
    if kind == "with_columns":
        for name in arg:
            cols = _replace(cols, name)
        return cols
    if kind == "rename":
        low = {k.lower(): v for k, v in arg.items()}
        return [low.get(c.lower(), c) for c in cols]
    if kind == "drop":
        gone = {c.lower() for c in arg}
        return [c for c in cols if c.lower() not in gone]
    if kind == "select":
        return _sql_columns("SELECT " + ", ".join(arg) + " FROM previous", {**views, "previous": cols})
    if kind == "sql":
        return _sql_columns(arg, {**views, "previous": cols})
    if kind == "aggregate":
        groups = _sql_columns("SELECT " + ", ".join(arg.group_by) + " FROM previous",
                              {**views, "previous": cols}) if arg.group_by else []
        return None if groups is None else [*groups, *arg.aggs]
    if kind == "join":
        other = views.get(arg.with_)
        if arg.how in ("left_semi", "left_anti"):
            return cols
        if other is None:
            return None
        on = arg.on
        if isinstance(on, str) and on.replace("_", "").isalnum():
            on = [on]
        if isinstance(on, list):
            keys = {k.lower() for k in on}
            return [*on, *[c for c in cols if c.lower() not in keys], *[c for c in other if c.lower() not in keys]]
        return [*cols, *other]
    if kind == "union":
        if not arg.allow_missing_columns:
            return cols
        out = list(cols)
        for name in arg.with_:
            other = views.get(name)
            if other is None:
                return None
            out += [c for c in other if c.lower() not in {o.lower() for o in out}]
        return out
    return None  # python: whatever the function returns


def output_columns(cfg: JobConfig, catalog_columns: Any = None) -> Columns | None:
    """The columns the transform hands to the write stage, or None when they cannot be known without data."""
    try:
        views = {name: (source_columns(src, catalog_columns) if src is not None else None)
                 for name, src in cfg.sources.items()}
        cols = views.get(next(iter(cfg.sources)))
        for step in cfg.transform:
            if cols is None or step is None:
                return None
            cols = step_columns(step, cols, views)
        return cols
    except Exception:  # noqa: BLE001 - sqlglot could not follow the SQL: then nothing is known
        return None
