"""The state interfaces: job runs and target locks (`RunStore`), workflow runs and their slots
(`WorkflowRunStore`), bookmarks (`BookmarkStore`), crawler runs (`CrawlerStore`). SQLite (`runs.py`,
`workflows.py`, `bookmarks.py`, `crawlers.py`) and DynamoDB (`dynamodb.py`) implement each; `state.open_state`
is the one factory, and `state.view.StateView` the read-only view the report uses. Nothing outside `state/`
knows a table or an item key.

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

    def acquire_target_lock(self, targets: str | list[str], run_id: str, job: str) -> None:
        """Take the write locks of `targets` (all or none) or raise TargetLocked naming a live holder of the same
        or an enclosing/enclosed path (a dead or expired holder's lock is taken over, its run marked)."""

    def release_target_lock(self, targets: str | list[str], run_id: str) -> None:
        """Release the locks that `run_id` holds."""

    def target_lock(self, target: str) -> dict[str, Any] | None: ...

    def renew_target_lock(self, targets: list[str], run_id: str) -> bool:
        """Extend the lease of the run's locks; False when one is no longer held by `run_id`."""

    def list_locks(self) -> list[dict[str, Any]]:
        """Every held lock: target, run_id, job, host, pid, acquired_at, lease_until, heartbeat_at."""

    def force_unlock(self, target: str, by: str) -> list[dict[str, Any]]:
        """Release the locks on `target` and inside it by hand; their RUNNING runs are marked FAILED."""

    def close(self) -> None: ...


class WorkflowRunStore(Protocol):
    """Workflow runs: nodes, triggers, run properties, and the `max_concurrent_runs` slots (SPEC §7). A slot
    belongs to a live owner: its process on this host, a heartbeat lease elsewhere."""

    def begin_run(self, workflow: str, *, max_concurrent_runs: int | None, nodes: dict[str, str],
                  properties: dict[str, Any], workflow_path: str | None = None, env: str | None = None,
                  executor: str | None = None, started_by: str | None = None, previous_run_id: str | None = None,
                  run_id: str | None = None) -> str: ...
    def heartbeat(self, run_id: str) -> None: ...
    def finish_run(self, run_id: str, state: str, statistics: dict[str, int], error: str | None = None) -> None: ...
    def update_node(self, run_id: str, node: str, **fields: Any) -> None: ...
    def set_trigger(self, run_id: str, trigger: str, state: str, reason: str | None = None) -> None: ...
    def get_run(self, run_id: str) -> dict[str, Any] | None: ...
    def latest_run_id(self, workflow: str | None = None) -> str | None: ...
    def list_runs(self, workflow: str | None = None, limit: int = 20) -> list[dict[str, Any]]: ...
    def get_properties(self, run_id: str) -> dict[str, Any]: ...
    def put_properties(self, run_id: str, values: dict[str, Any]) -> dict[str, Any]: ...
    def mark_orphaned_runs(self, workflow: str | None = None) -> list[str]: ...
    def close(self) -> None: ...


class BookmarkStore(Protocol):
    """The cache of job bookmarks (the target table is the truth) and its history."""

    def get(self, job: str) -> Any: ...
    def put(self, bookmark: Any, action: str = "commit") -> None: ...
    def history(self, job: str) -> list[dict]: ...
    def entries(self, job: str) -> list[dict[str, Any]]:
        """The history with each entry's bookmark (`data`), oldest first."""
    def at_run(self, job: str, run_id: str) -> Any: ...


class CrawlerStore(Protocol):
    """Crawler runs and the files each crawler has read."""

    def start(self, crawler: str, database: str, table: str | None, path: str, policy: str) -> int: ...
    def finish(self, run_id: int, result: Any) -> None: ...
    def seen(self, crawler: str) -> dict[str, tuple[int, float]]: ...
    def last_path(self, crawler: str) -> str | None: ...
    def forget(self, crawler: str) -> None: ...
    def remember(self, crawler: str, files: list[Any]) -> None: ...
    def runs(self, crawler: str | None = None, limit: int = 50) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...
