"""The run-record interface of the state store. The SQLite backend (`state/runs.py`) implements it locally; a
DynamoDB backend implements the same protocol for Glue, so the engine never knows which one it talks to.

Records are plain dicts (JSON-ready), so that `etl runs --json`, `etl show --json`, the report and a remote backend
all see the same shape:

    run:   run_id, job, env, job_path, params, status (RUNNING|SUCCEEDED|FAILED|STOPPED|TIMEOUT), attempt,
           started_at, ended_at, duration_s, error, error_stage, exit_code, workflow_run_id, host, pid,
           details (free JSON per concern: "quality", "bookmarks", ...), stages: [stage, ...]
    stage: stage, seq, attempt, status (RUNNING|SUCCEEDED|FAILED|SKIPPED), started_at, ended_at, duration_s,
           metrics (dict), error
"""

from __future__ import annotations

from typing import Any, Protocol

from etl_framework.errors import EtlError

RUN_STATES = ("RUNNING", "SUCCEEDED", "FAILED", "STOPPED", "TIMEOUT")
STAGE_STATES = ("RUNNING", "SUCCEEDED", "FAILED", "SKIPPED")


class TargetLocked(EtlError):
    """Another live run holds the write lock of a target."""

    def __init__(self, target: str, holder: dict[str, Any]) -> None:
        self.target, self.holder = target, holder
        super().__init__(
            f"target {target} is being written by run {holder.get('run_id')} of job {holder.get('job')} "
            f"(pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('acquired_at')})"
        )


class RunStore(Protocol):
    """Job runs, their stages and the write locks of targets."""

    def create_run(self, run: dict[str, Any]) -> None:
        """Insert a new run record (status RUNNING); `run` has at least run_id, job, env, started_at."""

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set top-level fields of a run (status, ended_at, error, ...)."""

    def set_detail(self, run_id: str, key: str, value: Any) -> None:
        """Store one concern's JSON under `details[key]` (quality results, bookmarks, ...)."""

    def start_stage(self, run_id: str, stage: str, seq: int, started_at: str, attempt: int = 1) -> None:
        """Record that a stage started."""

    def finish_stage(self, run_id: str, stage: str, *, status: str, ended_at: str | None = None,
                     duration_s: float | None = None, metrics: dict[str, Any] | None = None,
                     error: str | None = None, attempt: int = 1, seq: int | None = None) -> None:
        """Record a stage's outcome (creating the record when the stage never started, e.g. SKIPPED)."""

    def update_stage_metrics(self, run_id: str, stage: str, metrics: dict[str, Any], attempt: int = 1) -> None:
        """Merge metrics known only later (rows read are counted during the write)."""

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One run with its stages (of every attempt), or None."""

    def list_runs(self, job: str | None = None, limit: int = 50,
                  workflow_run_id: str | None = None) -> list[dict[str, Any]]:
        """Newest first, without stages."""

    def acquire_target_lock(self, target: str, run_id: str, job: str) -> None:
        """Take the write lock of `target` or raise TargetLocked naming the live holder (a dead holder's lock is
        taken over)."""

    def release_target_lock(self, target: str, run_id: str) -> None:
        """Release the lock if `run_id` holds it."""
