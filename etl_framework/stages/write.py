"""Write (SPEC §5, §11): the partitioned, atomic write of the job's result, then the rows set aside.

What a commit is belongs to the target's table format (`etl_framework.tables`: Delta, Iceberg, Parquet); this
stage only checks the data against the target, hands the format the run's commit metadata (run id, bookmark
delta) and records what the format says it committed.

`ETL_FAULT_KILL_AT=<point>` (tests only) kills the process with SIGKILL at a named point of the commit.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from etl_framework.config.model import BAD_RECORDS_FORMAT
from etl_framework.errors import JobFailed
from etl_framework.faults import fault
from etl_framework.tables import CommitRequest, Storage, WriteResult, table_format
from etl_framework.tables.fs import is_local, strip_scheme
from etl_framework.tables.parquet import target_is_file

if TYPE_CHECKING:
    from etl_framework.config.model import JobConfig
    from etl_framework.engine.job import JobRunState

STAGE = "write"


def sibling_path(path: str, suffix: str) -> str:
    return path.rstrip("/") + suffix


def bad_records_path(config: JobConfig) -> str:
    return config.bad_records_location()


def preflight(config: JobConfig, storage: Storage | None = None) -> None:
    """Checks that need no Spark, run before anything is read: the target is a usable folder, and it and the job's
    quarantine and bad-records tables hold nothing but their own table."""
    t = config.target
    storage = storage or Storage()
    if is_local(t.path):
        p = strip_scheme(t.path).rstrip("/")
        if os.path.isfile(p):
            raise target_is_file(config.job, p)
        parent = os.path.dirname(p)
        while parent and parent != "/" and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if parent and os.path.isfile(parent):
            raise JobFailed(config.job, STAGE, f"target path {p} is inside {parent}, which is a file",
                            "point target.path at a folder, or move that file away")
    for path, fmt in config.tables_written().items():
        table_format(fmt).preflight(config.job, path, storage)


def commit_request(state: JobRunState) -> CommitRequest:
    """The run's metadata that rides in the target's commit (run id, bookmark delta; Delta's txn id)."""
    txn = None
    if "txnAppId" in state.write_options:
        txn = (str(state.write_options["txnAppId"]), int(state.write_options["txnVersion"]))
    return CommitRequest(run_id=state.run_id, metadata=dict(state.commit_metadata), txn=txn)


def _check_lock(state: JobRunState, path: str) -> None:
    """Before any commit: this run still holds the target's lock (another run may have taken it over)."""
    lost = state.lock.check() if state.lock is not None else None
    if lost:
        raise JobFailed(state.job, STAGE, f"{lost}; nothing of this run was committed to {path}",
                        f"run the job again: etl resume {state.run_id}")


def write_table(state: JobRunState, df: Any, path: str, *, fmt: str, mode: str, partition_by: list[str],
                merge_keys: list[str] | None = None, options: dict[str, Any] | None = None,
                commit: CommitRequest | None = None, evolve: bool = False) -> WriteResult:
    """Write any DataFrame of this run to a table (the target, bad records, quarantine) through its format."""
    _check_lock(state, path)
    storage = state.storage
    table_format(fmt).claim(state.spark, path)
    return table_format(fmt).write(state.spark, df, path, mode=mode, partition_by=partition_by,
                                   merge_keys=merge_keys, options=dict(options or {}), commit=commit,
                                   job=state.job, storage=storage, evolve=evolve)


def append_staged(state: JobRunState, path: str, staging: str, commit: CommitRequest) -> WriteResult | None:
    """Commit staged Parquet files of this run to a table as they are (`TableFormat.append_staged`), or None when
    its format cannot: the caller writes the rows with `write_table`."""
    from etl_framework.config.model import QUARANTINE_FORMAT
    from etl_framework.quality.staging import has_rows
    from etl_framework.tables.fs import path_exists

    _check_lock(state, path)
    fmt = table_format(QUARANTINE_FORMAT)
    if has_rows(state.spark, staging):
        fmt.claim(state.spark, path)
    elif not path_exists(state.spark, path):
        return None  # nothing staged and no table: nothing to commit (and no folder made for nothing)
    # an attempt that stopped after moving the staged files into the table's folder: they are found there
    return fmt.append_staged(state.spark, path, staging, commit)


def run_write(state: JobRunState) -> None:
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    from etl_framework.config.interpolate import resolve_secrets
    from etl_framework.redaction import protect_spark

    t = state.config.target
    preflight(state.config, state.storage)
    missing = [c for c in t.partition_by + t.merge_keys if c not in state.df.columns]
    if missing:
        raise JobFailed(state.job, STAGE, f"the data has no column {', '.join(missing)} named in target "
                        f"partition_by/merge_keys (columns: {', '.join(state.df.columns)})",
                        "produce that column in the transform, or fix target.partition_by / merge_keys")
    inline = state.extras.get("quality_inline")  # an inline quality gate counts the rows it lets through
    obs: Observation | None = None
    if inline is not None:
        df = state.df
    elif state.df is state.extras.get("transform_df") and "transform" in state.observations:
        obs, df = state.observations["transform"], state.df  # one count node fewer in the plan
    else:
        obs = Observation()
        df = obs._on(state.df, F.count(F.lit(1)).alias("rows"))
    options = resolve_secrets(dict(t.options))
    protect_spark(state.spark)
    state.log.info(f"{t.mode} to {t.format} {t.path}"
                   + (f" partitioned by {', '.join(t.partition_by)}" if t.partition_by else ""), STAGE)
    fault("write.start")
    try:
        evolve = check_schema(state, state.df)
        committed = write_table(state, df, t.path, fmt=t.format, mode=t.mode, partition_by=list(t.partition_by),
                                merge_keys=list(t.merge_keys), options=options, commit=commit_request(state),
                                evolve=evolve)
    except Exception as e:
        stop = _quality_stop(state, e)
        if stop is not None:
            raise stop from None
        raise
    fault("write.committed")
    from etl_framework.engine.job import observed

    if obs is None:
        rows = inline.rows_written()
    else:
        rows = observed(obs, wait=0.0 if t.mode == "merge" else 3.0)  # a merge reports its own source rows
    result = committed.metrics()
    if t.mode == "merge" and committed.merge:
        m = committed.merge
        rows = m.get("numSourceRows", rows)
        result["rows_inserted"] = m.get("numTargetRowsInserted")
        result["rows_updated"] = m.get("numTargetRowsUpdated")
    result["rows_written"] = rows
    state.write_result = result
    state.committed = committed
    state.metrics[STAGE].update(result)
    state.metrics[STAGE]["rows_in"] = rows
    state.metrics[STAGE]["rows_out"] = rows
    try:
        _write_set_aside(state)
    except JobFailed:
        raise
    except Exception as e:  # the target committed: say so, whatever failed after it
        raise JobFailed(state.job, STAGE, f"the target committed ({t.format} version {committed.version}, run "
                        f"{state.run_id}), but committing the rows set aside after it failed: "
                        f"{str(e).splitlines()[0][:300]}",
                        f"`etl resume {state.run_id}` commits them without writing the target again") from e


def check_schema(state: JobRunState, df: Any) -> bool:
    """Before any commit: the data's columns against the target's. A changed type always stops; new columns stop
    unless `schema_evolution: add_columns` (then the format adds them). Returns whether the write evolves."""
    t = state.config.target
    current = table_format(t.format).schema(state.spark, t.path, state.storage)
    if current is None:
        return False
    have = {f.name.lower(): f.dataType.simpleString() for f in current.fields}
    changed = [f"{f.name} ({have[f.name.lower()]} in the table, {f.dataType.simpleString()} in the data)"
               for f in df.schema.fields if f.name.lower() in have and f.dataType.simpleString() != "void"
               and f.dataType.simpleString() != have[f.name.lower()]]
    if changed:
        raise JobFailed(state.job, STAGE, f"column type changed: {'; '.join(changed)}",
                        "cast the column back in the transform, or write a new table (mode: overwrite of a new "
                        "path); nothing was committed")
    new = [f.name for f in df.schema.fields if f.name.lower() not in have]
    if new and t.schema_evolution == "fail":
        raise JobFailed(state.job, STAGE, f"the data has column(s) the target {t.path} lacks: {', '.join(new)}",
                        "set target.schema_evolution: add_columns to add them to the table (and its quarantine), "
                        "or drop them in the transform; nothing was committed")
    if new:
        state.log.info(f"schema evolution: adding column(s) {', '.join(new)} to the target", STAGE)
    return bool(new)


def _quality_stop(state: JobRunState, error: BaseException) -> JobFailed | None:
    """A quality gate checked inside this write (`quality.inline`) and stopped it: its QualityGateFailed."""
    if "quality_inline" not in state.extras:
        return None
    from etl_framework.stages.quality import gate_stop

    return gate_stop(state, error)


def _write_set_aside(state: JobRunState) -> None:
    """Right after the target's commit: the quality gate's quarantined rows (through the quality stage's own
    idempotent `write_quarantine` when it is installed), then malformed input rows (bad_records: quarantine)."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    from etl_framework.engine.job import observed

    if state.config.quality and not state.extras.get("quarantine_written"):
        try:
            from etl_framework.stages.quality import finish_gate, write_quarantine
        except ImportError:
            finish_gate = write_quarantine = None
        if finish_gate is not None and write_quarantine is not None:
            finish_gate(state)  # an inline gate's verdict, from the counts of the write's own pass
            write_quarantine(state)
            state.extras["quarantine_written"] = True
    if state.bad_records:
        bad = None
        for df in state.bad_records.values():
            bad = df if bad is None else bad.unionByName(df)
        obs = Observation()
        bad = obs._on(bad, F.count(F.lit(1)).alias("rows"))
        path = bad_records_path(state.config)
        res = write_table(state, bad, path, fmt=BAD_RECORDS_FORMAT, mode="append", partition_by=[],
                          commit=CommitRequest(run_id=state.run_id))
        n = observed(obs, wait=3.0)
        state.metrics[STAGE]["bad_records"] = n
        state.metrics[STAGE]["bad_records_path"] = res.path
        if n:
            state.log.warning(f"{n:,} malformed input row(s) set aside in {res.path}", STAGE)
    if state.quarantine_df is not None and not state.extras.get("quarantine_written"):
        obs = Observation()
        q = obs._on(state.quarantine_df, F.count(F.lit(1)).alias("rows"))
        from etl_framework.stages.quality import quarantine_location

        path = quarantine_location(state.config)
        res = write_table(state, q, path, fmt="delta", mode="append", partition_by=[])
        n = observed(obs, wait=3.0)
        state.metrics[STAGE]["quarantined_rows"] = n
        state.metrics[STAGE]["quarantine_path"] = res.path
