"""The quality gate inside the target write's own pass: the default whenever the rules allow it.

Counting first (`gate.evaluate_gate`) reads the data once to count and once more to write, or caches it; on
4,000,000 CSV rows that was +40 to +50 % of the job's wall time. Here the target write *is* the gate's pass:

- every row-level rule's predicate is computed on the rows as they stream to the writer, and counted there by the
  framework's JVM helper (`etl_framework.spark.GateCounter`: a UDF call inside the write's generated code, its counts
  an accumulator; a Spark Observation would run outside whole-stage code generation, +1 to 1.5 s on 4M rows);
- a row that breaks a `fail` rule stops the write (`raise_error`) before anything is committed: without `mostly`,
  GX fails such a rule on its first unexpected row, so no count is needed to decide. The gate then counts, to
  report every failed rule with its observed value (`QualityGateFailed`, exit 3);
- a row that breaks a `quarantine` rule goes to the framework's JVM side output (`etl_framework.spark.
  QuarantineTee`: a Catalyst expression evaluated only for those rows, on Spark's own row, so nothing is
  converted), which stages it with Spark's own Parquet writer under `<quarantine>/_etl_staging/<run_id>/`, and
  is dropped from the target write;
- after the target commit, the counts go to GX (success, `mostly` and the result dicts are GX's own) and the staged
  rows are committed to the quarantine table, exactly as in the counting-first mode.

`blocker()` says why a job cannot use it, and the gate then counts first: a `fail` rule with `mostly` < 1, a
table-level `fail` rule, or a rule GX validates itself (their verdict needs counts before the commit; the row
count of a `warn` table rule is the write's own, `quality.native`), a predicate that needs a window
over the whole data, a MERGE target (it reads its source more than once), more predicates than the counter's 62
bits, or no helper JAR on the classpath.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from etl_framework.quality.gate import GatePlan, GateResult, RuleOutcome, decide, plan_gate, validate_plan
from etl_framework.quality.staging import delete_staged, local_sample, read_staged
from etl_framework.tables import table_format

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from etl_framework.config.model import Expectation, JobConfig

TEE_CLASS = "etl_framework.spark.QuarantineTee"
COUNTER_UDF = "etl_gate_count"
MASK = "__etl_gate_mask"  # bit i: the row breaks the plan's i-th counted predicate
MARKER = "etl-quality-gate:"  # in the raise_error message: tells a gate stop from any other write failure
MAX_BITS = 62  # GateCounter.MAX_BITS: the predicates one long mask holds
MODE_ENV = "ETL_QUALITY_MODE"  # `count-first` turns the inline gate off (benches and tests compare the two)


def config_blocker(config: JobConfig) -> str | None:
    """Why the job's config rules the inline gate out, from the config alone (no Spark needed)."""
    if os.environ.get(MODE_ENV, "").lower() in ("count-first", "count_first"):
        return f"{MODE_ENV}=count-first"
    if config.target.mode == "merge":
        return "a merge reads its source more than once"
    for e in config.quality:
        try:
            mostly = float(e.kwargs["mostly"]) if e.kwargs.get("mostly") is not None else None
        except (TypeError, ValueError):
            continue  # not a number: building GX's expectation reports it, naming the rule
        if e.on_fail == "fail" and mostly is not None and mostly < 1:
            return f"rule '{e.rule_name}' fails on a share of rows (mostly {mostly}): its count decides the commit"
    return None


def tee_available(spark: Any) -> bool:
    from etl_framework.runtime.spark import helper_available

    return helper_available(spark, TEE_CLASS)


class InlineGate:
    """A gate planned on the transformed data; `write_df` is what the write stage writes."""

    def __init__(self, plan: GatePlan, staging_path: str | None, target_path: str, target_format: str) -> None:
        self.plan = plan
        self.staging_path = staging_path
        self.target_path = target_path
        self.target_format = target_format
        # what the target held before: a stopped write removes exactly the files it left (tables.abort_write)
        self.write_token = table_format(target_format).begin_write(plan.data.sparkSession, target_path)
        self.counts: Any = None  # the JVM counter's accumulator, once write_df built the write
        self.staged_schema: Any = None  # the columns the side output stages
        self.timings: dict[str, float] = {}

    @classmethod
    def prepare(cls, df: DataFrame, expectations: list[Expectation], config: JobConfig, run_id: str,
                staging_path: str | None) -> tuple[InlineGate | None, str | None]:
        """Plan the gate on `df` (no data read). Returns (gate, None), or (None, why not inline)."""
        spark = df.sparkSession
        t0 = time.perf_counter()
        plan = plan_gate(df, expectations, config.job, run_id)
        if plan.fallback:
            o = plan.fallback[0]
            return None, f"rule '{o.rule}' ({o.expectation}) is validated by GX itself, over the whole data"
        table_fail = [o for o in plan.outcomes if not o.row_level and o.on_fail == "fail"]
        if table_fail:
            o = table_fail[0]
            return None, f"rule '{o.rule}' ({o.expectation}) is table-level with on_fail: fail: its count decides the commit"
        if plan.windowed:
            return None, "a rule's predicate needs a window over the whole data"
        if plan.any_q is not None and staging_path is None:
            return None, "no staging folder for the quarantined rows"
        if len(plan.counted) > MAX_BITS:
            return None, f"{len(plan.counted)} rule predicates to count, more than the counter's {MAX_BITS}"
        if not tee_available(spark):
            return None, f"the helper JAR ({TEE_CLASS}) is not on Spark's classpath"
        gate = cls(plan, staging_path, config.target.path, config.target.format)
        gate.timings["gx_setup_s"] = round(time.perf_counter() - t0, 3)
        return gate, None

    def write_df(self) -> DataFrame:
        """The data to write: counted as it streams, stopped at the first row breaking a `fail` rule, with the rows
        breaking a `quarantine` rule staged by the side output and left out."""
        from functools import reduce

        from pyspark.sql import functions as F

        p = self.plan
        spark = p.data.sparkSession
        keys = p.counted
        qbits = sum(1 << keys.index(o.pred) for o in p.outcomes if o.on_fail == "quarantine" and o.pred is not None)
        hbits = sum(1 << keys.index(o.pred) for o in p.outcomes if o.on_fail == "fail" and o.pred is not None)
        self.counts = spark._jvm.etl_framework.spark.GateCounter.register(
            spark._jsparkSession, COUNTER_UDF, len(keys), qbits)
        zero = F.lit(0).cast("bigint")
        mask = reduce(lambda a, b: a.bitwiseOR(b),
                      [F.when(F.col(k), F.lit(1 << i).cast("bigint")).otherwise(zero) for i, k in enumerate(keys)], zero)
        # the counter runs on every row, in a projection the filter below cannot be pushed through (non-deterministic)
        df = p.tagged.select("*", F.call_udf(COUNTER_UDF, mask).alias(MASK))
        m = F.col(MASK)
        keep = None
        if hbits:
            stop = F.raise_error(F.lit(f"{MARKER} a row broke an on_fail: fail rule of job {p.job}"))
            keep = F.when((m.bitwiseAND(F.lit(hbits))) != 0, stop)
        if p.any_q is not None:
            assert self.staging_path is not None
            from pyspark.sql.column import Column

            from etl_framework.tables.fs import delete_path

            delete_path(spark, self.staging_path)  # a retry of this run: rows staged by its failed attempt go
            schema = self.staged_schema = p.tagged.select(*p.q_select).schema
            tee = Column(spark._jvm.etl_framework.spark.QuarantineTee.column(
                spark._jsparkSession, self.staging_path, schema.json(), F.struct(*p.q_select)._jc))
            is_q = (m.bitwiseAND(F.lit(qbits))) != 0
            keep = F.when(is_q, tee) if keep is None else keep.when(is_q, tee)
        # referencing the mask keeps the counting projection (an unused column would be pruned with its counter)
        keep = (F.when(m < 0, F.lit(False)) if keep is None else keep).otherwise(F.lit(True))
        return df.filter(keep).select(*p.original)

    def rows_written(self) -> int:
        """After the target commit: the rows the write took (counted rows, less the quarantined ones)."""
        rows, quarantined = list(self.counts.value())[:2]
        return int(rows) - int(quarantined)

    def is_stop(self, error: BaseException) -> bool:
        """Whether a failed write was stopped by this gate (a row broke a `fail` rule)."""
        return MARKER in str(error)

    def discard(self) -> None:
        """The write failed: drop the staged rows, and the files the stopped write left in the target (Delta writes
        its data files before its commit: a crawler or a plain Parquet reader would see the rejected rows). The
        target's format removes only files no commit references that were not there before the write."""
        spark = self.plan.data.sparkSession
        if self.staging_path:
            delete_staged(spark, self.staging_path)
        table_format(self.target_format).abort_write(spark, self.target_path, self.write_token)

    def finish(self) -> GateResult:
        """After the target commit: GX's verdict from the counts of the write's own pass."""
        from pyspark.sql import functions as F

        t0 = time.perf_counter()
        p = self.plan
        values = list(self.counts.value())
        counts = {"__rows": values[0], "__quarantined": values[1], **dict(zip(self.plan.counted, values[2:], strict=True))}
        staged = read_staged(p.data.sparkSession, self.staging_path, self.staged_schema) if self.staging_path else None

        def samples(o: RuleOutcome, key: str, accessor: dict[str, Any], limit: int) -> list[Any]:
            from etl_framework.quality.gate import _unexpected_values, sample_columns, shape_sample

            if staged is not None and o.on_fail == "quarantine" and key == o.pred:
                assert self.staging_path is not None
                local = local_sample(self.staging_path, self.staged_schema, o.rule, sample_columns(accessor), limit)
                if local is not None:
                    return shape_sample(accessor, local)
                rows = staged.filter(F.array_contains("_failed_rules", o.rule))  # small: read the staged rows
            else:
                rows = p.tagged.filter(F.col(key))  # filter + limit: stops at the first rows found
            return _unexpected_values(rows, accessor, limit)

        validate_plan(p, counts, samples)
        records, failed, warned = decide(p.outcomes)
        self.timings["gx_validate_s"] = round(time.perf_counter() - t0, 3)
        quarantined = int(counts.get("__quarantined", 0))
        return GateResult(p.job, p.run_id, records, p.data, staged if quarantined else None,
                          int(counts["__rows"]), quarantined, failed, warned, None,
                          self.staging_path if quarantined else None, dict(self.timings))
