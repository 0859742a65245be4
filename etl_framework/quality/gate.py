"""The quality gate's core: Great Expectations results for a transformed Spark DataFrame, in one pass over it.

Why not just `batch.validate(suite)`: GX on Spark computes a row-level (map) expectation with several queries of
its own (counts, then a sample of unexpected values), and gives no way back to *which* rows failed — which the
quarantine needs. So the gate asks GX for what only GX knows — each rule's unexpected-row condition (the
`<map_metric>.condition` metric, a Spark `Column`) and its domain filters (nulls, `row_condition`,
`ignore_row_if`) — turns each rule into one boolean predicate column, counts every rule in ONE aggregation over
the persisted DataFrame, and hands those counts back to GX (`Expectation.metrics_validate`), so success, `mostly`
and the result dict are GX's own. Table-level and aggregate expectations (row count, mean, ...) are validated by
GX itself in one bundled `graph_validate` on the same persisted data. The predicate columns then label the
quarantined rows with the rules they broke; the transform runs once.

Heavy libraries (pyspark, great_expectations) are imported inside functions: a job whose rules are all common ones
(`quality.native`: the same predicates and verdicts, built without GX) never pays GX's ~4 s import, and for the
others `preload_gx()` lets the engine overlap that import with Spark's start-up.
"""

from __future__ import annotations

import difflib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from etl_framework.errors import JobFailed
from etl_framework.quality import native

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from etl_framework.config.model import Expectation

STAGE = "quality"
RESULT_FORMAT = "BASIC"  # counts + a 20-value sample; COMPLETE would collect every failing value to the driver
QUARANTINE_COLUMNS = ("_failed_rules", "_run_id", "_quarantined_at")
_PRED_PREFIX = "__etl_q"
COLUMN_KWARGS = ("column", "column_A", "column_B")
_GX_LOCK = threading.Lock()
_GX_THREAD: threading.Thread | None = None


def preload_gx() -> None:
    """Start importing great_expectations in a background thread (it takes ~5 s); call when a job with a
    `quality:` block starts, so the import overlaps JVM start-up, extract and transform instead of adding to them."""
    global _GX_THREAD
    import pyspark.sql  # noqa: F401 - GX imports pyspark: import it here first, never in two threads at once

    with _GX_LOCK:
        if _GX_THREAD is None:
            _GX_THREAD = threading.Thread(target=_import_gx, name="etl-gx-import", daemon=True)
            _GX_THREAD.start()


def wait_gx() -> None:
    """Wait for a background import started by `preload_gx` to finish: a module half-imported by another thread
    has a half-filled expectation registry ("expectation ... not found")."""
    thread = _GX_THREAD
    if thread is not None and thread.is_alive():
        thread.join()


def _import_gx() -> None:
    try:
        import great_expectations.expectations.expectation  # noqa: F401
    except Exception:  # noqa: BLE001, S110 - the gate's own import reports it, with context
        pass


# --------------------------------------------------------------------------------------------------- results


@dataclass
class RuleOutcome:
    """One expectation of the gate with GX's result for it."""

    index: int
    rule: str
    expectation: str
    kwargs: dict[str, Any]
    on_fail: str
    row_level: bool
    gx: Any = None  # the ExpectationValidationResult
    pred: str | None = None  # predicate column of the unexpected rows (row-level rules)

    @property
    def success(self) -> bool:
        return bool(self.gx.success)

    def to_record(self, action: str) -> dict[str, Any]:
        res = dict(self.gx.result or {})
        observed = res.get("observed_value")
        if observed is None and self.row_level:
            observed = res.get("partial_unexpected_list")
        return _jsonable({
            "rule": self.rule,
            "expectation": self.expectation,
            "kwargs": self.kwargs,
            "on_fail": self.on_fail,
            "success": self.success,
            "observed_value": observed,
            "element_count": res.get("element_count"),
            "unexpected_count": res.get("unexpected_count"),
            "unexpected_percent": res.get("unexpected_percent"),
            "missing_count": res.get("missing_count"),
            "partial_unexpected_list": res.get("partial_unexpected_list"),
            "action": action,
            "gx_result": res,
        })


@dataclass
class GateResult:
    """What the gate decided. `passed_df` is what the write stage writes; `quarantine_df` (or None) goes to the
    quarantine table; `failed` lists the `fail` rules that failed (then nothing may be written)."""

    job: str
    run_id: str
    results: list[dict[str, Any]]
    passed_df: DataFrame
    quarantine_df: DataFrame | None
    row_count: int
    quarantined_rows: int
    failed: list[dict[str, Any]] = field(default_factory=list)
    warned: list[dict[str, Any]] = field(default_factory=list)
    persisted: DataFrame | None = None
    staging_path: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds: gx setup, counting pass, GX, staging

    @property
    def ok(self) -> bool:
        return not self.failed

    def failure_message(self) -> str:
        lines = [(f"{len(self.failed)} quality rule(s) with on_fail: fail failed; nothing was written "
                  "(neither the target nor the quarantine):")]
        lines += ["  - " + describe_failure(r) for r in self.failed]
        return "\n".join(lines)

    def summary(self) -> str:
        n_ok = sum(1 for r in self.results if r["success"])
        text = f"quality gate: {n_ok}/{len(self.results)} expectations passed on {self.row_count} rows"
        if self.quarantined_rows:
            text += f"; {self.quarantined_rows} rows quarantined, {self.row_count - self.quarantined_rows} to write"
            if self.quarantined_rows == self.row_count:
                text += " (every row was quarantined: the target write commits 0 rows)"
        if self.warned:
            text += f"; {len(self.warned)} warning(s): " + ", ".join(r["rule"] for r in self.warned)
        return text

    def release(self) -> None:
        """Drop the persisted copy of the transformed data (after the writes, or when the gate failed)."""
        if self.persisted is not None:
            self.persisted.unpersist()
            self.persisted = None

    def discard(self) -> None:
        """The gate failed: drop the staged quarantine rows and the persisted data; nothing is committed."""
        if self.staging_path:
            from etl_framework.tables.fs import delete_path

            delete_path(self.passed_df.sparkSession, self.staging_path)
        self.release()


def describe_failure(r: dict[str, Any]) -> str:
    """One line per failed expectation: its rule, GX type and observed value (what a user needs to act)."""
    text = f"{r['rule']} [{r['expectation']}]"
    if r.get("unexpected_count") is not None:
        pct = r.get("unexpected_percent")
        text += f": {r['unexpected_count']} of {r.get('element_count')} rows unexpected"
        if pct is not None:
            text += f" ({pct:.4g}%)"
        sample = r.get("partial_unexpected_list")
        if sample:
            text += f", e.g. {_short(sample)}"
    else:
        text += f": observed value {_short(r.get('observed_value'))}"
    if r.get("exception"):
        text += f" ({r['exception']})"
    return text


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _jsonable(value: Any) -> Any:
    """Results are stored with the run as JSON: NaN/inf and dates become JSON-safe values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return str(value)


# ----------------------------------------------------------------------------------------------- the checks


def check_columns(schema_names: list[str], expectations: list[Expectation], job: str) -> None:
    """Every column a rule names must exist in the transformed data: checked on `df.schema` (no data read) so a
    typo fails in a second, not after the transform ran, and names the rule."""
    problems = []
    for exp in expectations:
        kw = exp.kwargs
        cols: list[Any] = [kw[k] for k in COLUMN_KWARGS if k in kw]
        if isinstance(kw.get("column_list"), list):
            cols += kw["column_list"]
        for col in cols:
            if not isinstance(col, str) or col in schema_names:
                continue
            low = col.lower()
            near = (
                [n for n in schema_names if n.lower() == low]
                or difflib.get_close_matches(col, schema_names, n=1)
                or [n for n in schema_names if n.lower().startswith(low) or low.startswith(n.lower())]
            )
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            problems.append(f"rule '{exp.rule_name}': column '{col}' does not exist in the transformed data{hint}")
    if problems:
        raise JobFailed(
            job, STAGE,
            "; ".join(problems) + ". Columns of the transformed data: " + ", ".join(schema_names),
            "fix the column name in the job's quality: block, or make the transform produce that column",
        )


def _unique_names(expectations: list[Expectation]) -> list[str]:
    """Rule names label quarantined rows, so they must be distinct: a repeated derived name gets '#2', '#3'."""
    seen: dict[str, int] = {}
    names = []
    for exp in expectations:
        base = exp.rule_name
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


def build_expectations(expectations: list[Expectation], job: str) -> list[Any]:
    """GX domain objects of the rules; a wrong keyword or a wrong type fails here, naming the rule."""
    wait_gx()
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    built = []
    for i, exp in enumerate(expectations):
        try:
            cfg = ExpectationConfiguration(type=exp.expect, kwargs=exp.kwargs, meta={"etl_rule_index": i})
            built.append(cfg.to_domain_obj())
        except Exception as e:  # noqa: BLE001 - GX raises pydantic ValidationError or its own errors
            raise JobFailed(
                job, STAGE,
                f"rule '{exp.rule_name}' ({exp.expect}) has invalid arguments {exp.kwargs}: {_gx_error(e)}",
                "fix the expectation's keyword arguments in the job's quality: block (they are GX's own: "
                "https://greatexpectations.io/expectations/)",
            ) from None
    return built


def _gx_error(e: Exception) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):
        try:
            parts = []
            for err in errors():
                loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
                parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
            if parts:
                return "; ".join(parts)
        except Exception:  # noqa: BLE001, S110 - fall back to the plain message
            pass
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _exception_text(info: Any) -> str:
    """GX's aborted-metric info is an ExceptionInfo, a dict of them, or a set of them: its first message."""
    if info is None:
        return "Great Expectations could not compute it"
    if isinstance(info, dict):
        if "exception_message" in info:
            return str(info["exception_message"]).splitlines()[0]
        info = next(iter(info.values()), None)
    elif isinstance(info, (set, list, tuple)):
        info = next(iter(info), None)
    msg = getattr(info, "exception_message", None) or str(info)
    return str(msg).splitlines()[0]


def is_row_level(gx_exp: Any) -> bool:
    """Row-level (map) expectations are those GX evaluates per row through one map metric."""
    return isinstance(getattr(type(gx_exp), "map_metric", None), str)


# ------------------------------------------------------------------------------------------------ the gate


class _FilterRecorder:
    """Stands in for a DataFrame so GX's own row-condition code tells us its filter instead of applying it."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.conditions: list[Any] = []

    def filter(self, condition: Any) -> _FilterRecorder:
        self.conditions.append(condition)
        return self


def _domain_predicate(engine: Any, domain: dict[str, Any], schema: Any) -> Column | None:
    """The rows GX's `get_domain_records(domain)` keeps, as one Column (mirrors SparkDFExecutionEngine)."""
    from functools import reduce

    from pyspark.sql import functions as F

    preds: list[Column] = []
    if domain.get("row_condition"):
        rec = _FilterRecorder(schema)
        engine._apply_row_condition_filter(rec, domain["row_condition"], domain)
        preds += [c if not isinstance(c, str) else F.expr(c) for c in rec.conditions]
    if domain.get("filter_conditions"):
        preds.append(F.expr(engine._combine_row_conditions(domain["filter_conditions"]).condition))
    if "column" not in domain:
        ignore = domain.get("ignore_row_if")
        if "column_A" in domain and "column_B" in domain and ignore:
            a, b = F.col(domain["column_A"]).isNull(), F.col(domain["column_B"]).isNull()
            if ignore == "both_values_are_missing":
                preds.append(~(a & b))
            elif ignore == "either_value_is_missing":
                preds.append(~(a | b))
        elif "column_list" in domain and ignore:
            nulls = [F.col(c).isNull() for c in domain["column_list"]]
            if ignore == "all_values_are_missing":
                preds.append(~reduce(lambda x, y: x & y, nulls))
            elif ignore == "any_value_is_missing":
                preds.append(~reduce(lambda x, y: x | y, nulls))
    if not preds:
        return None
    return reduce(lambda x, y: x & y, preds)


def _gx_batch(df: DataFrame) -> tuple[Any, Any]:
    """An ephemeral GX context (no project files, no progress bars) with `df` as its one batch: (validator, engine)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    # persist=False: GX would otherwise cache the whole DataFrame itself (compressed: the slowest way, measured
    # 10x the cost of the counting pass); the gate decides on persisting (`should_persist`)
    asset = ctx.data_sources.add_spark(name="etl", persist=False).add_dataframe_asset(name="transformed")
    batch = asset.add_batch_definition_whole_dataframe("gate").get_batch(batch_parameters={"dataframe": df})
    validator = batch._create_validator(result_format=RESULT_FORMAT)._wrapped_validator
    return validator, validator.execution_engine


_SCHEMA_ONLY = {"table.row_count", "table.row_count.aggregate_fn", "table.columns", "table.column_types"}


def _resolve_conditions(validator: Any, configs: list[Any]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """GX's condition metrics (Spark Columns) without a pass over the data.

    GX declares `table.row_count` as a dependency of every map condition, although no condition uses it: left
    alone, resolving the conditions costs a full count of the data (a whole extra CSV parse on text sources).
    When the graph holds nothing but conditions and table schema/row-count metrics, the row count is seeded with
    a placeholder; a condition with real data dependencies (e.g. z-scores need mean and stddev) is resolved
    normally."""
    calc = validator._metrics_calculator
    graph = calc.build_metric_dependency_graph(metric_configurations=configs, runtime_configuration=None)
    nodes = [m for e in graph.edges for m in (e.left, e.right) if m is not None]
    if not all(m.metric_name in _SCHEMA_ONLY or m.metric_name.endswith(".condition") for m in nodes):
        return validator.compute_metrics(configs)
    resolved: dict[Any, Any] = {m.id: -1 for m in nodes if m.metric_name == "table.row_count"}
    aborted = graph._resolve(metrics=resolved, runtime_configuration=None, min_graph_edges_pbar_enable=0,
                             show_progress_bars=False)
    return resolved, aborted


def _uses_window(cond: Any, kind: str) -> bool:
    text = str(cond).lower()
    return " over (" in text and (kind == "any" or "lag(" in text or "lead(" in text)


@dataclass
class GatePlan:
    """The rules compiled against one DataFrame without reading it: GX's expectation objects, one predicate column
    per row-level rule (`tagged` = the data + those columns), the aggregations that count them, and what a
    quarantined row looks like. Both ways of running the gate use it: counting first (`evaluate_gate`) or inside
    the target write's own pass (`quality.inline`)."""

    job: str
    run_id: str
    data: DataFrame
    outcomes: list[RuleOutcome]
    gx_exps: list[Any]
    deps: dict[int, Any]
    plan: dict[int, dict[str, Any]]  # rule index -> its metrics: GX's metric name -> (kind, column, extra)
    fallback: list[RuleOutcome]
    tagged: DataFrame
    original: list[Column]
    any_q: Column | None
    aggs: list[Column]
    q_select: list[Column]
    validator: Any
    engine: Any
    windowed: bool = False  # a predicate needs a window over the whole data (e.g. uniqueness)
    native: list[Expectation] | None = None  # every rule is checked without GX (`quality.native`)

    @property
    def counted(self) -> list[str]:
        """The predicate columns `aggs` counts (besides `__rows` and `__quarantined`), in `tagged`'s order."""
        return self.tagged.columns[len(self.original):]

    @property
    def row_level_exact(self) -> list[RuleOutcome]:
        return [o for o in self.outcomes if o.index in self.plan]

    def quarantine_df(self) -> DataFrame | None:
        return None if self.any_q is None else self.tagged.filter(self.any_q).select(*self.q_select)


def plan_gate(df: DataFrame, expectations: list[Expectation], job_name: str, run_id: str,
              quarantined_at: datetime | None = None) -> GatePlan:
    """Check the rules against `df.schema`, build GX's expectations and each row-level rule's predicate column.
    Reads no data (GX's condition metrics are Spark Columns). Raises JobFailed for a rule that cannot run."""
    from pyspark.sql import functions as F

    names = _unique_names(expectations)
    check_columns(df.schema.names, expectations, job_name)
    if native.covers(expectations):
        return _plan_native(df, expectations, names, job_name, run_id, quarantined_at)
    gx_exps = build_expectations(expectations, job_name)
    outcomes = [
        RuleOutcome(i, names[i], e.expect, e.kwargs, e.on_fail, is_row_level(g)) for i, (e, g) in
        enumerate(zip(expectations, gx_exps, strict=True))
    ]
    _refuse_table_quarantine(outcomes, job_name)
    validator, engine = _gx_batch(df)
    row_level = [o for o in outcomes if o.row_level]
    fallback: list[RuleOutcome] = [o for o in outcomes if not o.row_level]

    # 1. ask GX for every metric the row-level rules need, and each map metric's condition
    deps = {o.index: gx_exps[o.index].get_validation_dependencies(
        execution_engine=engine, runtime_configuration={"result_format": RESULT_FORMAT}) for o in row_level}
    cond_cfgs: dict[str, tuple[Any, RuleOutcome]] = {}
    from great_expectations.validator.metric_configuration import MetricConfiguration

    for o in row_level:
        for name, mc in deps[o.index].metric_configurations.items():
            if name.endswith((".unexpected_count", ".unexpected_values", ".filtered_row_count")):
                base = name.rsplit(".", 1)[0]
                value_kwargs = {k: v for k, v in (mc.metric_value_kwargs or {}).items() if k != "result_format"}
                cc = MetricConfiguration(f"{base}.condition", mc.metric_domain_kwargs, value_kwargs)
                cond_cfgs.setdefault(str(cc.id), (cc, o))
    conds: dict[str, Any] = {}
    if cond_cfgs:
        resolved, aborted = _resolve_conditions(validator, [cc for cc, _ in cond_cfgs.values()])
        for cid, (cc, o) in cond_cfgs.items():
            if cc.id not in resolved:
                info = (aborted.get(cc.id) or {}).get("exception_info")
                raise JobFailed(job_name, STAGE, f"rule '{o.rule}' ({o.expectation}) could not be evaluated: "
                                f"{_exception_text(info)}", "check the rule's arguments against the column's type")
            conds[cid] = resolved[cc.id]

    # 2. one predicate column per (map metric, domain): unexpected rows; one per domain: rows in the domain
    schema = df.schema
    pred_cols: dict[str, Column] = {}
    domain_cols: dict[str, Column] = {}
    row_count_cols: dict[str, Column] = {}
    pred_key_by_cid: dict[str, str] = {}  # rules sharing a condition share its column
    shared_key: dict[str, str] = {}  # likewise the row counts and domain counts
    plan: dict[int, dict[str, tuple[str, str, Any]]] = {}
    windowed = False
    for o in list(row_level):
        mine: dict[str, tuple[str, str, Any]] = {}
        exact = True
        for name, mc in deps[o.index].metric_configurations.items():
            if name == "table.row_count":
                key = shared_key.setdefault(str(mc.id), f"{_PRED_PREFIX}_rows_{len(row_count_cols)}")
                if key not in row_count_cols:
                    dp = _domain_predicate(engine, dict(mc.metric_domain_kwargs), schema)
                    row_count_cols[key] = F.lit(True) if dp is None else F.coalesce(dp, F.lit(False))
                mine[name] = ("count", key, mc)
                continue
            base, _, suffix = name.rpartition(".")
            if suffix not in ("unexpected_count", "unexpected_values", "filtered_row_count"):
                exact = False
                break
            value_kwargs = {k: v for k, v in (mc.metric_value_kwargs or {}).items() if k != "result_format"}
            cid = str(MetricConfiguration(f"{base}.condition", mc.metric_domain_kwargs, value_kwargs).id)
            cond, compute_kw, accessor_kw = conds[cid]
            if _uses_window(cond, "lag") or (_uses_window(cond, "any") and compute_kw.get("row_condition")):
                exact = False  # a window over the domain's rows only: not expressible on the whole data
                break
            windowed = windowed or _uses_window(cond, "any")
            dp = _domain_predicate(engine, {**compute_kw, **accessor_kw}, schema)
            if suffix == "filtered_row_count":
                key = shared_key.setdefault(f"dom:{cid}", f"{_PRED_PREFIX}_dom_{len(domain_cols)}")
                domain_cols[key] = F.lit(True) if dp is None else F.coalesce(dp, F.lit(False))
                mine[name] = ("count", key, mc)
            else:
                key = pred_key_by_cid.setdefault(cid, f"{_PRED_PREFIX}_{len(pred_key_by_cid)}")
                if key not in pred_cols:
                    p = cond if dp is None else (dp & cond)
                    pred_cols[key] = F.coalesce(p, F.lit(False))
                mine[name] = ("count" if suffix == "unexpected_count" else "values", key, (mc, accessor_kw))
        if exact:
            plan[o.index] = mine
        else:
            if o.on_fail == "quarantine":
                raise JobFailed(job_name, STAGE, f"rule '{o.rule}' ({o.expectation}) cannot quarantine rows "
                                "here (its unexpected rows depend on row order or on a row_condition window)",
                                "use on_fail: fail or warn for this rule")
            fallback.append(o)

    for o in row_level:
        if o.index in plan:
            o.pred = plan[o.index][_main_metric(gx_exps[o.index])][1]
    return _assemble(df, job_name, run_id, outcomes, {**pred_cols, **domain_cols, **row_count_cols}, quarantined_at,
                     gx_exps=gx_exps, deps=deps, plan=plan, fallback=fallback, validator=validator, engine=engine,
                     windowed=windowed)


def _plan_native(df: DataFrame, expectations: list[Expectation], names: list[str], job_name: str, run_id: str,
                 quarantined_at: datetime | None) -> GatePlan:
    """The plan of a gate whose rules are all in `native.RULES`: the same predicate columns, built without GX."""
    from pyspark.sql import functions as F

    outcomes = [RuleOutcome(i, names[i], e.expect, e.kwargs, e.on_fail, not native.is_table(e))
                for i, e in enumerate(expectations)]
    _refuse_table_quarantine(outcomes, job_name)
    columns: dict[str, Column] = {}
    plan: dict[int, dict[str, Any]] = {}
    null_keys: dict[str, str] = {}  # one null count per column, shared by its rules
    for o, e in zip(outcomes, expectations, strict=True):
        if not o.row_level:
            plan[o.index] = {"table": True}  # the row count, counted with the predicates
            continue
        o.pred = f"{_PRED_PREFIX}_{len(columns)}"
        columns[o.pred] = F.coalesce(native.unexpected(e), F.lit(False))
        nulls = native.nulls(e)
        key = None
        if nulls is not None:
            key = null_keys.get(e.kwargs["column"])
            if key is None:
                key = null_keys[e.kwargs["column"]] = f"{_PRED_PREFIX}_nulls_{len(null_keys)}"
                columns[key] = nulls
        plan[o.index] = {"unexpected": o.pred, "nulls": key}
    windowed = any(native.RULES[e.expect].window for e in expectations)
    return _assemble(df, job_name, run_id, outcomes, columns, quarantined_at, plan=plan, native_rules=expectations,
                     windowed=windowed)


def _refuse_table_quarantine(outcomes: list[RuleOutcome], job_name: str) -> None:
    for o in outcomes:
        if o.on_fail == "quarantine" and not o.row_level:
            raise JobFailed(job_name, STAGE, f"rule '{o.rule}' ({o.expectation}) is table-level: it cannot quarantine "
                            "rows", "use on_fail: fail or warn for it")


def _assemble(df: DataFrame, job_name: str, run_id: str, outcomes: list[RuleOutcome], columns: dict[str, Column],
              quarantined_at: datetime | None, *, plan: dict[int, Any], native_rules: list[Expectation] | None = None,
              gx_exps: list[Any] | None = None, deps: dict[int, Any] | None = None,
              fallback: list[RuleOutcome] | None = None, validator: Any = None, engine: Any = None,
              windowed: bool = False) -> GatePlan:
    """The data with every predicate column; the aggregation that counts them all in one pass (it reads only the
    rules' columns and runs as generated code); what a quarantined row looks like."""
    from pyspark.sql import functions as F

    tagged = df.select("*", *[c.alias(k) for k, c in columns.items()])
    original = [F.col(f"`{c}`") for c in df.columns]
    any_q = None
    for o in outcomes:
        if o.on_fail == "quarantine" and o.pred is not None:
            any_q = F.col(o.pred) if any_q is None else (any_q | F.col(o.pred))
    aggs = [F.count(F.lit(1)).alias("__rows")]
    aggs += [F.count(F.when(F.col(k), True)).alias(k) for k in columns]
    q_select: list[Column] = []
    if any_q is not None:
        aggs.append(F.count(F.when(any_q, True)).alias("__quarantined"))
        # concat of one-element arrays, not filter(array, x -> x is not null): a lambda is interpreted only
        # (CodegenFallback), which takes the inline gate's whole filter out of whole-stage code generation
        none = F.array().cast("array<string>")
        failed_rules = F.concat(*[F.when(F.col(o.pred), F.array(F.lit(o.rule))).otherwise(none)
                                  for o in outcomes if o.pred is not None])
        at = (quarantined_at or datetime.now(UTC)).astimezone(UTC)  # the session time zone is UTC
        q_select = [
            *original,
            failed_rules.alias("_failed_rules"),
            F.lit(run_id).alias("_run_id"),
            F.lit(at.strftime("%Y-%m-%d %H:%M:%S.%f")).cast("timestamp").alias("_quarantined_at"),
        ]
    return GatePlan(job_name, run_id, df, outcomes, gx_exps or [], deps or {}, plan, fallback or [], tagged, original,
                    any_q, aggs, q_select, validator, engine, windowed, native_rules)


SampleReader = Callable[[RuleOutcome, str, dict[str, Any], int], list[Any]]


def validate_plan(p: GatePlan, counts: dict[str, Any], samples: SampleReader | None = None) -> None:
    """Hand GX the metrics it asked for (the counts, and a sample of unexpected values read only for rules that
    have some), so success, `mostly` and the result dict are GX's own; then let GX validate the table-level rules
    itself, bundled into one graph. Sets each outcome's `gx`."""
    def default_samples(o: RuleOutcome, key: str, accessor: dict[str, Any], limit: int) -> list[Any]:
        from pyspark.sql import functions as F

        return _unexpected_values(p.tagged.filter(F.col(key)), accessor, limit)

    read = samples or default_samples
    if p.native is not None:
        rows = int(counts["__rows"])
        for o in p.outcomes:
            e, keys = p.native[o.index], p.plan[o.index]
            if not o.row_level:
                o.gx = native.validate_table(e, rows)
                continue
            bad = int(counts[keys["unexpected"]])
            sample = read(o, keys["unexpected"], {"column": e.kwargs["column"]},
                          native.PARTIAL_UNEXPECTED_COUNT) if bad else []
            o.gx = native.validate(e, rows, bad, None if keys["nulls"] is None else int(counts[keys["nulls"]]),
                                   sample)
        return
    for o in p.row_level_exact:
        exp = p.gx_exps[o.index]
        metrics: dict[Any, Any] = {}
        for name, mc in p.deps[o.index].metric_configurations.items():
            kind, key, extra = p.plan[o.index][name]
            if kind == "count":
                metrics[mc.id] = int(counts[key])
            else:
                mc_v, accessor_kw = extra
                limit = int((mc_v.metric_value_kwargs.get("result_format") or {}).get("partial_unexpected_count", 20))
                metrics[mc.id] = read(o, key, accessor_kw, limit) if counts.get(key, 0) else []
        try:
            o.gx = exp.metrics_validate(metrics, runtime_configuration={"result_format": RESULT_FORMAT},
                                        execution_engine=p.engine)
        except Exception as e:  # noqa: BLE001
            raise JobFailed(p.job, STAGE, f"rule '{o.rule}' ({o.expectation}) could not be evaluated: "
                            f"{_gx_error(e)}", "check the rule's arguments against the column's type") from None
    if p.fallback:
        evrs = p.validator.graph_validate(
            configurations=[p.gx_exps[o.index].configuration for o in p.fallback],
            runtime_configuration={"result_format": RESULT_FORMAT, "catch_exceptions": True},
        )
        by_index = {int(e.expectation_config.meta["etl_rule_index"]): e for e in evrs}
        for o in p.fallback:
            o.gx = by_index[o.index]
            info = o.gx.exception_info or {}
            if info.get("raised_exception"):
                raise JobFailed(p.job, STAGE, f"rule '{o.rule}' ({o.expectation}) could not be evaluated: "
                                f"{str(info.get('exception_message')).splitlines()[0]}",
                                "check the rule's arguments against the data's columns and types")


def decide(outcomes: list[RuleOutcome]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Each rule's record with the action taken; the failed `fail` rules and the failed `warn` rules."""
    records, failed, warned = [], [], []
    for o in outcomes:
        unexpected = int((o.gx.result or {}).get("unexpected_count") or 0)
        if o.on_fail == "quarantine" and unexpected:
            action = f"quarantined {unexpected} rows"
        elif o.success:
            action = "passed"
        else:
            action = {"fail": "failed", "warn": "warned", "quarantine": "failed"}[o.on_fail]
        rec = o.to_record(action)
        records.append(rec)
        if not o.success and o.on_fail == "fail":
            failed.append(rec)
        elif not o.success and o.on_fail == "warn":
            warned.append(rec)
    if failed:  # fail wins: nothing is quarantined either
        for rec in records:
            if rec["action"].startswith("quarantined"):
                rec["action"] = f"not quarantined: the gate failed ({rec['unexpected_count']} rows broke it)"
    return records, failed, warned


def evaluate_gate(
    df: DataFrame,
    expectations: list[Expectation],
    job_name: str,
    run_id: str,
    *,
    staging_path: str | None = None,
    persist: bool | None = None,
    quarantined_at: datetime | None = None,
) -> GateResult:
    """Validate `df` against the rules and split it into rows to write and rows to quarantine: the counting
    pass runs before anything is written.

    With `staging_path`, the rows to quarantine are written there once after the counting pass (Parquet,
    uncommitted; never when a `fail` rule failed): they survive a crash between the target and quarantine
    commits, and the quarantine commit reads only them.
    `persist`: None decides by the plan (see `should_persist`). Raises JobFailed for rules that cannot be
    evaluated (missing column, bad arguments, quarantine on a table-level rule); failing `fail` rules are
    reported in `GateResult.failed` (the stage raises)."""
    from pyspark.storagelevel import StorageLevel

    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    data = df
    persisted = None
    if persist is None:
        persist = should_persist(df)
    if persist and not df.storageLevel.useMemory and not df.storageLevel.useDisk:
        data = persisted = _persist(df, StorageLevel.MEMORY_AND_DISK)
    try:  # persisting is lazy: a rule that cannot run fails in plan_gate before any data is read
        p = plan_gate(data, expectations, job_name, run_id, quarantined_at)
        lap("gx_setup_s")
        counts = p.tagged.agg(*p.aggs).collect()[0].asDict()
        lap("count_pass_s")
        validate_plan(p, counts)
    except Exception:
        if persisted is not None:
            persisted.unpersist()
        raise
    lap("gx_validate_s")
    records, failed, warned = decide(p.outcomes)
    row_count = int(counts["__rows"])
    quarantined = int(counts.get("__quarantined", 0))
    quarantine_df = p.quarantine_df()
    staged = False
    if quarantined and p.any_q is not None:
        passed_df = p.tagged.filter(~p.any_q).select(*p.original)
        if staging_path and not failed and quarantine_df is not None:
            # the rows to quarantine, written once (uncommitted) so the quarantine commit reads only them
            quarantine_df.write.mode("overwrite").parquet(staging_path)
            quarantine_df = data.sparkSession.read.parquet(staging_path)
            staged = True
            lap("staging_s")
    else:
        passed_df, quarantine_df = data, None
    return GateResult(job_name, run_id, records, passed_df, quarantine_df, row_count, quarantined, failed, warned,
                      persisted, staging_path if staged else None, timings)


CACHE_COMPRESSED = "spark.sql.inMemoryColumnarStorage.compressed"


def _persist(df: DataFrame, level: Any) -> DataFrame:
    """Persist without compressing the in-memory column batches: the data is read back two or three times within
    seconds, and compressing it cost more CPU than the rest of the gate (measured: 4M rows, 2 cores). The setting
    is taken when the cache is planned, on this run's own session, and restored at once."""
    conf = df.sparkSession.conf
    before = conf.get(CACHE_COMPRESSED, None)
    conf.set(CACHE_COMPRESSED, "false")
    try:
        return df.persist(level)
    finally:
        if before is None:
            conf.unset(CACHE_COMPRESSED)
        else:
            conf.set(CACHE_COMPRESSED, before)


def should_persist(df: DataFrame) -> bool:
    """Persist the transformed data only when recomputing it costs more than caching it: a text source (CSV,
    JSON: every re-read parses every line again), a shuffle (join, aggregate, window, dedupe, sort), Python code,
    or non-deterministic expressions (the counting pass and the write must see the same rows). A columnar scan
    (Parquet, Delta, ORC) + projections + filters is cheaper to read again than to cache (the counting pass reads
    only the rules' columns): measured on 4M rows, 2 cores: cache build ~5 s, pruned Parquet scan ~1.5 s.
    """
    qe = df._jdf.queryExecution()
    try:
        if not qe.analyzed().deterministic():
            return True
    except Exception:  # noqa: BLE001 - older Spark: be safe
        return True
    costly = ("Join", "Aggregate", "Window", "Deduplicate", "Sort", "Repartition", "RebalancePartitions", "Expand",
              "BatchEvalPython", "ArrowEvalPython", "MapInPandas", "MapInArrow", "PythonMapInArrow",
              "FlatMapGroupsInPandas", "FlatMapCoGroupsInPandas", "AggregateInPandas", "WindowInPandas",
              "MapPartitionsInR", "MapElements", "MapPartitions")
    for line in qe.optimizedPlan().toString().splitlines():
        node = line.lstrip(" :+-|")
        token = node.split(" ", 1)[0].split("(", 1)[0]
        if token.startswith(costly):
            return True
        if token == "Relation" and node.rstrip().rsplit(" ", 1)[-1].lower() in ("csv", "json", "text", "xml"):
            return True
    return False


def _main_metric(exp: Any) -> str:
    return f"{type(exp).map_metric}.unexpected_count"


def sample_columns(accessor: dict[str, Any]) -> list[str]:
    """The columns GX samples for a rule: its column, its pair, or its column list."""
    if "column" in accessor:
        return [accessor["column"]]
    if "column_A" in accessor:
        return [accessor["column_A"], accessor["column_B"]]
    return list(accessor["column_list"])


def shape_sample(accessor: dict[str, Any], rows: list[tuple[Any, ...]]) -> list[Any]:
    """Rows of `sample_columns` in GX's form: a column's values, a pair's tuples, a column list's dicts."""
    if "column" in accessor:
        return [r[0] for r in rows]
    if "column_A" in accessor:
        return [(r[0], r[1]) for r in rows]
    return [dict(zip(accessor["column_list"], r, strict=True)) for r in rows]


def _unexpected_values(rows: DataFrame, accessor: dict[str, Any], limit: int) -> list[Any]:
    """GX's sample of unexpected values, read the way GX reads it (filter + limit) from the unexpected `rows`."""
    from pyspark.sql import functions as F

    got = rows.select(*[F.col(f"`{c}`") for c in sample_columns(accessor)]).limit(limit).collect()
    return shape_sample(accessor, [tuple(r) for r in got])
