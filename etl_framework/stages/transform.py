"""Transform (SPEC §4.3): the steps in order, each on the previous step's result.

The first step reads the first source. `sql` steps see every source as a view and the previous result as the view
`previous`; `join` and `union` name other source views. A `join` with a SQL condition sees the current data as
`previous` and the other side by its view name (`previous.zone_id = zones.zone_id`); a list of columns is an
equi-join on those names. `with_columns` is applied in the order written, so a later column can use an earlier one.
Every step is lazy: building the plan is cheap and Spark runs it once, in the write.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl_framework.errors import JobFailed

if TYPE_CHECKING:
    from etl_framework.config.model import TransformStep
    from etl_framework.engine.job import JobRunState

STAGE = "transform"


def q(name: str) -> str:
    """A column name quoted for SQL (names with spaces or dots stay one column)."""
    return "`" + name.replace("`", "``") + "`"


def step_label(i: int, step: TransformStep) -> str:
    return f"step {i} ({step.kind}{': ' + step.name if step.name else ''})"


def run_transform(state: JobRunState) -> None:
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    first = next(iter(state.config.sources))
    df = state.views[first]
    steps = state.config.transform
    for i, step in enumerate(steps, 1):
        label = step_label(i, step)
        try:
            df = apply_step(state, df, step, label)
            _ = df.schema  # analyse now: an unknown column fails here, naming the step
        except JobFailed:
            raise
        except Exception as e:  # noqa: BLE001
            from etl_framework.engine.errors import explain

            failed = explain(e, state, STAGE)
            raise JobFailed(state.job, STAGE, f"{label}: {failed.message}", failed.hint) from None
    obs = Observation()
    state.df = obs._on(df, F.count(F.lit(1)).alias("rows"))
    state.observations["transform"] = obs
    state.extras["transform_df"] = state.df  # the write reuses this count when nothing changed the data since
    state.metrics[STAGE]["steps"] = len(steps)
    state.metrics[STAGE]["columns"] = len(df.columns)
    if steps:
        state.log.info(f"{len(steps)} step(s), {len(df.columns)} columns out", STAGE)


def _need_columns(state: JobRunState, df: Any, cols: list[str], label: str) -> None:
    have = {c.lower() for c in df.columns}
    missing = [c for c in cols if c.lower() not in have]
    if missing:
        raise JobFailed(state.job, STAGE, f"{label}: no column {', '.join(repr(c) for c in missing)} "
                        f"(columns: {', '.join(df.columns)})", "fix the column name in the job file")


def _view(state: JobRunState, name: str, label: str) -> Any:
    if name not in state.views:
        raise JobFailed(state.job, STAGE, f"{label}: no source view '{name}' (sources: "
                        f"{', '.join(state.views)})", "name one of the job's sources")
    return state.views[name]


def apply_step(state: JobRunState, df: Any, step: TransformStep, label: str) -> Any:
    from pyspark.sql import functions as F

    spark = state.spark
    kind, arg = step.kind, step.arg
    if kind == "sql":
        df.createOrReplaceTempView("previous")
        return spark.sql(arg)
    if kind == "select":
        return df.selectExpr(*arg)
    if kind == "filter":
        return df.filter(F.expr(arg))
    if kind == "with_columns":
        for name, expr in arg.items():
            df = df.withColumn(name, F.expr(expr))
        return df
    if kind == "rename":
        _need_columns(state, df, list(arg), label)
        return df.withColumnsRenamed(dict(arg))
    if kind == "cast":
        _need_columns(state, df, list(arg), label)
        from etl_framework.stages.extract import parse_schema

        types = parse_schema(state, label, dict(arg))
        return df.withColumns({f.name: F.col(q(f.name)).cast(f.dataType) for f in types.fields})
    if kind == "drop":
        _need_columns(state, df, list(arg), label)
        return df.drop(*arg)
    if kind == "dedupe":
        _need_columns(state, df, list(arg.keys), label)
        if not arg.order_by:
            return df.dropDuplicates(list(arg.keys))
        order = arg.order_by if isinstance(arg.order_by, str) else ", ".join(arg.order_by)
        rn = "__etl_rn"
        w = f"row_number() OVER (PARTITION BY {', '.join(q(k) for k in arg.keys)} ORDER BY {order})"
        return df.withColumn(rn, F.expr(w)).filter(F.col(rn) == 1).drop(rn)
    if kind == "join":
        other_name = arg.with_
        other = _view(state, other_name, label)
        how = {"left_semi": "left_semi", "left_anti": "left_anti", "full": "full"}.get(arg.how, arg.how)
        if arg.how == "cross":
            return df.crossJoin(other)
        on = arg.on
        if isinstance(on, str) and on.replace("_", "").isalnum():
            on = [on]
        if isinstance(on, list):
            _need_columns(state, df, on, label)
            _need_columns(state, other, on, f"{label}, view {other_name}")
            return df.join(other, on=on, how=how)
        return df.alias("previous").join(other.alias(other_name), F.expr(on), how)
    if kind == "union":
        out = df
        for name in arg.with_:
            other = _view(state, name, label)
            if arg.by_name:
                out = out.unionByName(other, allowMissingColumns=arg.allow_missing_columns)
            else:
                out = out.union(other)
        return out.distinct() if arg.distinct else out
    if kind == "aggregate":
        groups = [F.expr(g) for g in arg.group_by]
        aggs = [F.expr(e).alias(name) for name, e in arg.aggs.items()]
        return df.groupBy(*groups).agg(*aggs)
    if kind == "python":
        return _python_step(state, df, arg, label)
    raise JobFailed(state.job, STAGE, f"{label}: unknown step kind '{kind}'")


def _module_name(ref: str) -> str:
    """The module of `package.module:function` (or of the older `package.module.function`)."""
    return ref.partition(":")[0] if ":" in ref else ref.rpartition(".")[0]


def load_callable(state: JobRunState, ref: str, label: str) -> Any:
    """`package.module:function`, importable from the project root or the job file's folder."""
    for base in (state.job_path.parent if state.job_path else None, state.project_root):
        if base is not None and str(base) not in sys.path:
            sys.path.insert(0, str(Path(base)))
    mod_name, fn_name = _module_name(ref), ref.partition(":")[2] or ref.rpartition(".")[2]
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 - import errors of user code, with their cause
        raise JobFailed(state.job, STAGE, f"{label}: cannot import module '{mod_name}': "
                        f"{type(e).__name__}: {e}", "put the module in the project (or install it) and check the "
                        "name; python steps are 'package.module:function'") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise JobFailed(state.job, STAGE, f"{label}: module '{mod_name}' has no function '{fn_name}'",
                        "check the function name after ':'")
    return fn


def _python_step(state: JobRunState, df: Any, ref: str, label: str) -> Any:
    from pyspark.sql import DataFrame

    fn = load_callable(state, ref, label)
    from etl_framework.runtime.cluster import ship_module

    # on a cluster, executors import the module too (its UDFs are pickled by reference): ship it to them
    roots = [Path(p) for p in (state.job_path.parent if state.job_path else None, state.project_root) if p]
    for name in {_module_name(ref), getattr(fn, "__module__", None)}:
        if name in sys.modules:
            ship_module(df.sparkSession, sys.modules[name], roots)
    state.ctx.views = state.views
    try:
        out = fn(df, state.ctx)
    except JobFailed:
        raise
    except Exception as e:
        where = ""
        tb = e.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
        raise JobFailed(state.job, STAGE, f"{label}: {ref} raised {type(e).__name__}: {e}{where}",
                        "fix the function (run with ETL_DEBUG=1 for the traceback); the target was not "
                        "changed") from e
    if not isinstance(out, DataFrame):
        raise JobFailed(state.job, STAGE, f"{label}: {ref} returned {type(out).__name__}, not a DataFrame",
                        "a python step is called as fn(df, ctx) and must return a Spark DataFrame")
    return out
