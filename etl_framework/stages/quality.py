"""Quality gate stage (SPEC §5): Great Expectations on the transformed data, between transform and write.

`run_quality` evaluates the job's `quality:` rules (see `etl_framework.quality.gate` for how: one pass, GX's own
results), then
- any `fail` rule failed: nothing is written, not even the quarantine; QualityGateFailed (exit 3) names each
  failed rule and its observed value;
- `quarantine` rules: the rows that broke one are set aside, labelled with every row-level rule they broke; the
  rest is what the write stage writes;
- `warn` rules: recorded, printed, the job goes on.
Per-rule results are kept on the run (`state.quality_result` and the stage's metrics, so `etl show` has them).

The quarantine rows are staged (uncommitted Parquet under `<quarantine>/_etl_staging/<run_id>`, hidden from
readers) during the gate's one pass. `write_quarantine` commits them to the quarantine Delta table right after
the target commit, with Delta's idempotent-write transaction id (`txnAppId` = job + run id): a retry or resume
after a crash between the two commits completes the quarantine exactly once, and never twice.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from etl_framework.config.model import QUARANTINE_FORMAT
from etl_framework.errors import QualityGateFailed
from etl_framework.quality.report import format_quality_table

if TYPE_CHECKING:
    from etl_framework.config.model import JobConfig
    from etl_framework.engine.job import JobRunState
    from etl_framework.tables import WriteResult

__all__ = ["evaluate_gate", "format_quality_table", "quarantine_location", "run_quality", "staging_location",
           "write_quarantine"]

STAGE = "quality"
STAGING_DIR = "_etl_staging"
APP_ID_PREFIX = "etl_framework:quarantine:"
# The quarantine table is Delta whatever the target's format: its idempotent per-run commit (txnAppId) makes the
# "target committed, quarantine not yet" recovery exactly-once, and it is an append-only side table
# (`config.model.QUARANTINE_FORMAT`).


def evaluate_gate(df: Any, expectations: list[Any], job_name: str, run_id: str, **kwargs: Any) -> Any:
    """The gate as a pure function (no writes unless `staging_path` is given): see quality.gate.evaluate_gate."""
    from etl_framework.quality.gate import evaluate_gate as _evaluate

    return _evaluate(df, expectations, job_name, run_id, **kwargs)


def quarantine_location(config: JobConfig) -> str:
    """`target.quarantine_path`, else `<target.path>_quarantine` (a Delta table beside the target)."""
    return config.quarantine_location()


def staging_location(config: JobConfig, run_id: str) -> str:
    return f"{quarantine_location(config).rstrip('/')}/{STAGING_DIR}/{run_id}"


def run_quality(state: JobRunState) -> None:
    """Plan the gate inline, in the target write's own pass (`quality.inline`), when the rules allow it; else
    count first, and fail or split the data before the write stage starts."""
    from etl_framework.quality.gate import evaluate_gate as _evaluate
    from etl_framework.quality.inline import InlineGate, config_blocker

    cfg = state.config
    rules = list(cfg.quality)
    has_quarantine = any(r.on_fail == "quarantine" for r in rules)
    staging = staging_location(cfg, state.run_id) if has_quarantine else None
    if has_quarantine:
        recover_quarantines(state)
    m = state.metrics.setdefault(STAGE, {})
    why = config_blocker(cfg)
    if why is None:
        inline, why = InlineGate.prepare(state.df, rules, cfg, state.run_id, staging)
        if inline is not None:
            state.extras["quality_inline"] = inline
            state.df = inline.write_df()
            m.update({"mode": "inline", "expectations": len(rules), **inline.timings,
                      "reason": "checked in the target write's own pass"})
            if has_quarantine:
                m["quarantine_path"] = quarantine_location(cfg)
            return
    m.update({"mode": "count-first", "inline_blocked_by": why})
    gate = _evaluate(state.df, rules, cfg.job, state.run_id, staging_path=staging)
    _record_gate(state, gate)
    if not gate.ok:
        gate.discard()
        state.df = None
        state.quarantine_df = None
        raise _gate_failed(state, gate)
    state.df = gate.passed_df
    state.quarantine_df = gate.quarantine_df


def _record_gate(state: JobRunState, gate: Any) -> None:
    """The gate's verdict on the run: stage metrics, per-rule results in the run's details (`etl show`), the
    warnings in the log."""
    from etl_framework.quality.gate import describe_failure

    cfg = state.config
    state.quality_result = gate.results
    state.extras["quality_gate"] = gate  # write_quarantine: its row count, and the persisted data to release
    m = state.metrics.setdefault(STAGE, {})
    m.update({
        "rows_in": gate.row_count,
        "rows_out": gate.row_count - gate.quarantined_rows if gate.ok else 0,
        "rows_quarantined": gate.quarantined_rows,
        "expectations": len(gate.results),
        "passed": sum(1 for r in gate.results if r["success"]),
        "failed": [r["rule"] for r in gate.failed],
        "warned": [r["rule"] for r in gate.warned],
        "reason": gate.summary().removeprefix("quality gate: "),
        "persisted": gate.persisted is not None,
        **gate.timings,
    })
    if any(r.on_fail == "quarantine" for r in cfg.quality):
        m["quarantine_path"] = quarantine_location(cfg)
    if state.store is not None:  # with the run, failed or not: `etl show RUN_ID` prints them (quality.show)
        state.store.set_detail(state.run_id, "quality", {
            "summary": gate.summary(), "rows_in": gate.row_count, "rows_quarantined": gate.quarantined_rows,
            "quarantine_path": m.get("quarantine_path"), "ok": gate.ok, "results": gate.results,
        })
        if state.stage != STAGE:  # an inline gate's verdict comes during the write stage
            state.store.update_stage_metrics(state.run_id, STAGE, m, attempt=state.attempt)
    for r in gate.warned:
        state.log.warning("rule " + describe_failure(r), STAGE)
    if gate.ok and gate.quarantined_rows:
        every = " — every row: the target write commits 0 rows" if gate.quarantined_rows == gate.row_count else ""
        state.log.warning(f"{gate.quarantined_rows:,} row(s) quarantined to {quarantine_location(cfg)}{every}",
                          STAGE)


def _gate_failed(state: JobRunState, gate: Any) -> QualityGateFailed:
    return QualityGateFailed(
        state.config.job, STAGE, gate.failure_message(),
        f"inspect the data (etl show {state.run_id} lists every rule's result), fix the source or the "
        "transform, or relax the rule (mostly, on_fail: warn|quarantine); then run the job again",
        run_id=state.run_id,
    )


def finish_gate(state: JobRunState) -> None:
    """Right after the target commit of an inline gate: GX's verdict from the write's own counts, recorded on the
    run; the staged quarantine rows are what `write_quarantine` commits next."""
    inline = state.extras.pop("quality_inline", None)
    if inline is None:
        return
    gate = inline.finish()
    state.quarantine_df = gate.quarantine_df
    _record_gate(state, gate)
    if not gate.ok:  # only a non-deterministic transform can get here: its rows changed between two reads
        state.log.warning("a fail rule failed on rows the target write had accepted: "
                          + gate.failure_message(), STAGE)


def gate_stop(state: JobRunState, error: BaseException) -> QualityGateFailed | None:
    """The target write failed: if an inline gate stopped it (a row broke a `fail` rule), clean up what the write
    left and count, to report every failed rule with its observed value. None for any other failure."""
    from etl_framework.quality.gate import evaluate_gate as _evaluate

    inline = state.extras.get("quality_inline")
    if inline is None:
        return None
    state.extras.pop("quality_inline")
    inline.discard()
    if not inline.is_stop(error):
        return None
    gate = _evaluate(inline.plan.data, list(state.config.quality), state.config.job, state.run_id)
    state.metrics.setdefault(STAGE, {})["stopped_write"] = True
    try:
        _record_gate(state, gate)
    finally:
        gate.release()
    state.df = None
    return _gate_failed(state, gate)


def quarantine_app_id(job: str, run_id: str) -> str:
    return f"{APP_ID_PREFIX}{job}:{run_id}"


def write_quarantine(state: JobRunState) -> dict[str, Any] | None:
    """Commit this run's quarantined rows to the quarantine Delta table; call right after the target commit.

    Idempotent per run (Delta `txnAppId`/`txnVersion`): calling it again, in a retry or a resume, after the
    quarantine committed writes nothing. When the gate's DataFrame is gone (a new process), the staged rows of
    this run are read back. Returns the write's metrics, or None when there was nothing to quarantine."""
    gate = state.extras.get("quality_gate")
    try:
        return _commit_quarantine(state, gate)
    finally:
        if gate is not None:
            gate.release()  # the persisted transformed data, when the gate persisted it


def _commit_quarantine(state: JobRunState, gate: Any) -> dict[str, Any] | None:
    from etl_framework.quality.staging import delete_staged, read_staged

    cfg, spark = state.config, state.spark
    staging = staging_location(cfg, state.run_id)
    if state.quarantine_df is None and not any(r.on_fail == "quarantine" for r in cfg.quality):
        return None
    t0 = time.perf_counter()
    rows = gate.quarantined_rows if gate is not None else None
    if rows is None:  # a resume in a new process: the rows this run staged
        staged = read_staged(spark, staging)
        rows = staged.count() if staged is not None else 0
    done = _commit_staged(state, state.run_id, state.quarantine_df)
    delete_staged(spark, staging)  # also when nothing was quarantined (or only the schema was staged)
    if done is None:
        return None
    res = done.metrics()
    res["rows_written"] = rows
    state.extras["quarantine_written"] = True
    m = state.metrics.setdefault("write", {})
    m["quarantined_rows"] = res["rows_written"]
    m["quarantine_path"] = res.get("path", quarantine_location(cfg))
    m["quarantine_commit_s"] = round(time.perf_counter() - t0, 3)
    return res


def _commit_staged(state: JobRunState, run_id: str, df: Any = None) -> WriteResult | None:
    """Commit run `run_id`'s quarantined rows, exactly once (the run's Delta transaction id): the staged files
    themselves when the format can add them as they are, else `df` (or the staged rows read back) written. None
    when nothing was staged."""
    from etl_framework.quality.staging import read_staged
    from etl_framework.stages.write import append_staged, write_table
    from etl_framework.tables import CommitRequest

    cfg = state.config
    path, staging = quarantine_location(cfg), staging_location(cfg, run_id)
    commit = CommitRequest(run_id, txn=(quarantine_app_id(cfg.job, run_id), 0))
    done = append_staged(state, path, staging, commit)
    if done is not None:
        return done
    df = df if df is not None else read_staged(state.spark, staging)
    if df is None:
        return None
    return write_table(state, df, path, fmt=QUARANTINE_FORMAT, mode="append", partition_by=[], evolve=True,
                       commit=commit)


def pending_quarantines(spark: Any, config: JobConfig) -> list[str]:
    """Run ids whose quarantine rows are staged but not (known to be) committed: left by a crash."""
    from etl_framework.tables.fs import path_exists

    root = f"{quarantine_location(config).rstrip('/')}/{STAGING_DIR}"
    if not path_exists(spark, root):
        return []
    jvm = spark._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(root)
    fs = hpath.getFileSystem(spark._jsc.hadoopConfiguration())
    return sorted(st.getPath().getName() for st in fs.listStatus(hpath) if st.isDirectory())


def recover_quarantines(state: JobRunState) -> list[str]:
    """Finish the quarantine commit of earlier runs that crashed between their target and quarantine commits
    (the target's own commits name their run: `engine.resume.target_has_run`), and drop the staged rows of runs
    whose target never committed. Exactly once either way, thanks to the per-run Delta transaction id.
    Returns the run ids whose quarantine was completed."""
    from etl_framework.engine.resume import target_has_run
    from etl_framework.quality.staging import delete_staged

    cfg, spark = state.config, state.spark
    recovered = []
    for run_id in pending_quarantines(spark, cfg):
        if run_id == state.run_id:
            continue  # this run's own staging (a retry): the gate rewrites it
        staging = staging_location(cfg, run_id)
        if target_has_run(cfg, run_id, state.storage):
            try:
                if _commit_staged(state, run_id) is None:
                    delete_staged(spark, staging)
                    continue
            except Exception as e:  # noqa: BLE001 - staged rows never block later runs: kept aside, never lost
                aside = set_aside(spark, cfg, run_id)
                state.log.warning(f"the quarantined rows of earlier run {run_id} cannot join the quarantine table "
                                  f"({str(e).splitlines()[0][:200]}); they are kept in {aside}", STAGE)
                continue
            recovered.append(run_id)
            state.log.info(f"committed the quarantine of earlier run {run_id} (it stopped after its target commit)",
                           STAGE)
        delete_staged(spark, staging)
    return recovered


def set_aside(spark: Any, config: JobConfig, run_id: str) -> str:
    """Move a run's staged quarantine rows to `<quarantine>/_etl_rejected/<run_id>` (hidden from readers)."""
    from etl_framework.tables.fs import filesystem

    src = staging_location(config, run_id)
    dst = f"{quarantine_location(config).rstrip('/')}/_etl_rejected/{run_id}"
    fs = filesystem(spark, src)
    fs.delete(dst)
    fs.rename(src, dst)
    return dst
