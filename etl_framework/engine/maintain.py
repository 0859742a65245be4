"""`etl maintain` and a workflow's `maintain:` action: table maintenance through the table-format seam
(`TableFormat.maintain`: Delta OPTIMIZE + VACUUM, Iceberg rewrite_data_files + expire_snapshots, Parquet compaction
into a new manifest).

What this module adds around the format: which tables (a job's target, quarantine and bad-records tables, or a
catalog table by name), a retention that covers every running job (never less than the format's default, and
raised to the age of the oldest RUNNING job run, so no file a started reader may still open is deleted), the
bookmark versions the state store holds (commits carrying newer bookmark deltas are kept), and the table's write
lock for the duration (a job writing the table and its maintenance exclude each other, as two writers do).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl_framework.errors import JobFailed, UsageError
from etl_framework.tables.base import DEFAULT_RETAIN_HOURS, MaintainRequest, MaintainResult

STAGE = "maintain"


@dataclass(frozen=True)
class MaintainTarget:
    """One table to maintain: its location, format, and how the user named it."""

    path: str
    format: str
    label: str


def job_targets(job_file: Path, project: Any, env: str) -> tuple[str, list[MaintainTarget]]:
    """(job name, its written tables that exist): target, quarantine and bad-records tables."""
    from etl_framework.config.load import load_job
    from etl_framework.tables import storage_for, table_format

    loaded = load_job(job_file, project, env)
    cfg = loaded.config
    storage = storage_for(project.env_config(env), project.root)
    out = []
    labels = {cfg.target.path: "target", cfg.quarantine_location(): "quarantine",
              cfg.bad_records_location(): "bad records"}
    for path, fmt in cfg.tables_written().items():
        if table_format(fmt).detect(path.rstrip("/"), storage):
            out.append(MaintainTarget(path, fmt, f"{cfg.job} {labels.get(path, 'table')}"))
    return cfg.job, out


def catalog_target(catalog: Any, ref: str) -> MaintainTarget:
    """A catalog table `database.table` written by a table format (Delta, Iceberg, the framework's Parquet)."""
    from etl_framework.catalog.base import require_table
    from etl_framework.tables import FORMATS

    t = require_table(catalog, ref)
    if t.format not in FORMATS:
        raise UsageError(f"table {t.full_name} is a {t.format} table: `etl maintain` compacts Delta, Iceberg and "
                         "this framework's Parquet tables")
    return MaintainTarget(t.location, t.format, t.full_name)


def retention_hours(runs: Any, requested: float | None, now: datetime | None = None) -> tuple[float, str | None]:
    """(hours, why raised): the requested retention (default the format's 168 h), raised above the age of the
    oldest RUNNING job run, whose reads may have begun on files a compaction replaces."""
    hours = float(requested if requested is not None else DEFAULT_RETAIN_HOURS)
    now = now or datetime.now(UTC)
    oldest: dict[str, Any] | None = None
    for r in runs.list_runs(limit=1000):
        if r.get("status") == "RUNNING" and r.get("started_at") and (
                oldest is None or str(r["started_at"]) < str(oldest["started_at"])):
            oldest = r
    if oldest is None:
        return hours, None
    started = datetime.fromisoformat(str(oldest["started_at"]))
    started = started.replace(tzinfo=UTC) if started.tzinfo is None else started
    age = (now - started).total_seconds() / 3600 + 1
    if age <= hours:
        return hours, None
    return age, (f"retention raised to {age:.1f} h: run {oldest['run_id']} of job {oldest.get('job')} has been "
                 f"running since {oldest['started_at']}")


def check_retention(retain_hours: float | None) -> None:
    """A retention under the format's default is refused (a usage error, before anything runs)."""
    if retain_hours is not None and retain_hours < DEFAULT_RETAIN_HOURS:
        raise UsageError(f"--retain-hours {retain_hours:g}: files replaced less than {DEFAULT_RETAIN_HOURS:g} hours "
                         "ago may still be read (a reader of an older version, a job that began before); give "
                         f"{DEFAULT_RETAIN_HOURS:g} or more")


def maintain_tables(targets: list[MaintainTarget], *, project: Any, env: str, zorder: list[str] | None = None,
                    retain_hours: float | None = None, spark: Any = None, log: Any = None,
                    job: str = "maintain") -> list[MaintainResult]:
    """Maintain each table in turn under its write lock. Raises JobFailed (stage maintain) naming the table."""
    from etl_framework.state import open_state
    from etl_framework.state.base import TargetLocked
    from etl_framework.tables import storage_for, table_format
    from etl_framework.tables.fs import target_key

    check_retention(retain_hours)
    env_config = project.env_config(env)
    storage = storage_for(env_config, project.root)
    state = open_state(env_config)
    results: list[MaintainResult] = []
    try:
        hours, why = retention_hours(state.runs, retain_hours)
        if why and log is not None:
            log(why)
        if spark is None and targets:
            from etl_framework.runtime.spark import get_spark

            spark = get_spark(project.root, env_config.spark or None)
        for t in targets:
            fmt = table_format(t.format)
            jobs = {str(c.bookmark["job"]) for c in fmt.commits(t.path, storage) if c.bookmark and c.bookmark.get("job")}
            bookmarks = {j: int(state.bookmarks.get(j).version) for j in jobs}
            request = MaintainRequest(zorder=list(zorder or []), retain_hours=hours, bookmarks=bookmarks, job=job)
            lock_id = f"maintain-{uuid.uuid4().hex[:12]}"
            key = target_key(t.path)
            try:
                state.runs.acquire_target_lock([key], lock_id, f"maintain {t.label}")
            except TargetLocked as e:
                h = e.holder
                raise JobFailed(job, STAGE, f"{t.label} ({t.path}) is being written: run {h.get('run_id')} of "
                                f"{h.get('job')} holds its lock since {h.get('acquired_at')}",
                                "run `etl maintain` again when that run has finished") from None
            try:
                if log is not None:
                    log(f"maintaining {t.label} ({t.format}, {t.path})")
                results.append(fmt.maintain(spark, t.path, request, storage))
            except JobFailed:
                raise
            except Exception as e:  # noqa: BLE001 - Spark's errors, made readable with the table named
                from etl_framework.engine.errors import error_text

                raise JobFailed(job, STAGE, f"{t.label} ({t.path}): {error_text(e)}") from None
            finally:
                state.runs.release_target_lock([key], lock_id)
    finally:
        state.close()
    return results
