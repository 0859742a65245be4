"""`etl resume RUN_ID` (SPEC §6): re-run a failed job run from the first stage that did not complete, under the
same run id with the next attempt number.

No intermediate data is persisted between stages (a Spark DataFrame is a plan, not data), so a resume re-runs
extract -> transform -> quality -> write when the write did not complete. That is still exactly-once:
- the bookmark advanced only if the write committed (it is carried in the same commit), so incremental sources
  re-plan to exactly the input the failed attempt would have written;
- a write that committed but whose stage record was lost (a kill right after the commit) is recognised from the
  target itself — the run id travels in every commit (Delta userMetadata, Iceberg snapshot summary, Parquet
  manifest) — and is never redone; only the stages after it (register) run.
A completed crawl is not redone either.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl_framework.errors import UsageError

if TYPE_CHECKING:
    from etl_framework.config.model import JobConfig
    from etl_framework.config.project import Project
    from etl_framework.engine.job import JobRunResult
    from etl_framework.tables import Storage

BEFORE_WRITE = ("crawl", "extract", "transform", "quality", "write")


def target_has_run(config: JobConfig, run_id: str, storage: Storage | None = None) -> bool:
    """Did this run already commit to the target? Read from the table itself (its format's commits), without
    Spark, on local files and S3 alike."""
    from etl_framework.tables import Storage, table_format

    try:
        return table_format(config.target.format).has_run(config.target.path, run_id, storage or Storage())
    except Exception:  # noqa: BLE001 - an unreadable table is treated as "not written": the write re-checks
        return False


def stages_to_skip(record: dict[str, Any], config: JobConfig, storage: Storage | None = None) -> set[str]:
    done = {s["stage"] for s in record.get("stages", []) if s.get("status") == "SUCCEEDED"}
    if "write" in done or target_has_run(config, record["run_id"], storage):
        return set(BEFORE_WRITE)
    return {"crawl"} & done


def _process_gone(record: dict[str, Any]) -> bool:
    """A RUNNING run whose process, on this host, no longer exists."""
    import socket

    from etl_framework.state.db import pid_alive

    return record.get("host") == socket.gethostname() and not pid_alive(record.get("pid"))


def resume_run(run_id: str, project: Project, env: str) -> JobRunResult:
    from etl_framework.config.load import load_job
    from etl_framework.engine.job import run_job
    from etl_framework.state.runs import open_run_store

    env_config = project.env_config(env)
    store = open_run_store(env_config)
    try:
        record = store.get_run(run_id)
        if record is None:
            recent = [r["run_id"] for r in store.list_runs(limit=5)]
            raise UsageError(f"no job run {run_id}" + (f" (recent runs: {', '.join(recent)})" if recent else "")
                             + "\n  what to do: `etl runs` lists the runs")
        if record.get("status") == "RUNNING" and _process_gone(record):
            # killed (SIGKILL, OOM, a lost machine): its record says RUNNING forever unless someone says otherwise
            store.update_run(run_id, status="FAILED", error=f"the process (pid {record.get('pid')}) died while "
                             "the run was RUNNING", exit_code=1)
            record["status"] = "FAILED"
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()
    status = record.get("status")
    if status == "SUCCEEDED":
        raise UsageError(f"run {run_id} of job {record.get('job')} succeeded: there is nothing to resume\n"
                         f"  what to do: start a new run with `etl run {record.get('job_path') or 'JOB.yaml'}`")
    if status == "RUNNING":
        raise UsageError(f"run {run_id} of job {record.get('job')} is still RUNNING (pid {record.get('pid')} on "
                         f"{record.get('host')})\n  what to do: wait for it, or stop it, then resume")
    job_path = record.get("job_path")
    if not job_path or not Path(job_path).is_file():
        raise UsageError(f"run {run_id}: its job file {job_path} no longer exists")
    stored = record.get("params") or {}
    params = {k: v for k, v in stored.items() if v != "***"}  # secrets re-resolve
    masked = sorted(k for k, v in stored.items() if v == "***")
    if masked:  # a credential given on the command line is not stored: say that its default is used
        import sys

        print(f"note: run {run_id}: param{'s' if len(masked) > 1 else ''} {', '.join(masked)} "
              f"{'were' if len(masked) > 1 else 'was'} not stored (secret); the resumed run uses the job file's "
              "default", file=sys.stderr)
    loaded = load_job(Path(job_path), project, env=env, params=params)
    from etl_framework.tables import storage_for

    skip = stages_to_skip(record, loaded.config, storage_for(env_config, project.root))
    attempts = [int(s.get("attempt") or 1) for s in record.get("stages", [])] + [int(record.get("attempt") or 1)]
    return run_job(Path(job_path), project=project, env=env, params=params, run_id=run_id,
                   attempt=max(attempts) + 1, skip_stages=skip)
