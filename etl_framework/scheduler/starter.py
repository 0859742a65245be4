"""The real starter: each workflow run is its own `etl workflow run` process (Glue-like isolation: a run's Spark
session, memory and crash stay its own), started from a given trigger with the run id the scheduler chose.

- max_concurrent_runs is checked before spawning (the workflow store's live RUNNING runs plus our own children that
  have not registered yet); the engine checks it again atomically, and a child refused there is reported as
  'refused' so its firing waits again;
- a child is killed when the scheduler dies (Linux PR_SET_PDEATHSIG), even by SIGKILL: no run goes on without
  its scheduler, and the run it leaves RUNNING is marked STOPPED with the reason (resumable) by `recover()` on
  restart — deterministic, where a graceful stop in a dying process could be cut half-way;
- a clean stop (SIGTERM to the scheduler) gives runs `--grace-seconds`, then sends SIGTERM to each run's process
  (the engine stops its nodes and ends the run STOPPED), and SIGKILL to its process group if it is still there;
- each child's output goes to `<state dir>/scheduler-runs/<run_id>.log`, so the scheduler's own log stays
  structured.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl_framework.scheduler.service import RunEnded, SchedulerLog, WorkflowEntry

REFUSED_MARK = "max_concurrent_runs"
KILL_AFTER_TERM_SECONDS = 15.0


# The run's process binds its life to the scheduler itself, first thing (no preexec_fn: forking a process with
# threads — watchdog's — and running Python before exec can deadlock).
LAUNCHER = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except Exception:
    pass  # not Linux: the run outlives a killed scheduler; its record is marked if its own process dies
if os.getppid() != int(os.environ.get("ETL_SCHEDULER_PID", os.getppid())):
    sys.exit(75)  # the scheduler died before this line: do not run unsupervised
from etl_framework.cli import main
main()
"""


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


@dataclass
class Child:
    proc: subprocess.Popen
    run_id: str
    workflow: str
    trigger: str
    log_path: Path
    started: float


class SubprocessStarter:
    def __init__(self, project_root: Path, env: str, state_path: Path, *, python: str = sys.executable,
                 extra_env: dict[str, str] | None = None) -> None:
        self.project_root, self.env, self.state_path = Path(project_root), env, Path(state_path)
        self.python = python
        self.extra_env = extra_env or {}
        self.log_dir = self.state_path.parent / "scheduler-runs"
        self.children: dict[str, Child] = {}
        self.abort = threading.Event()  # set by a second SIGTERM/SIGINT: skip the rest of the grace period
        self._store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from etl_framework.state.workflows import WorkflowStore

            self._store = WorkflowStore(self.state_path)
        return self._store

    def command(self, wf: WorkflowEntry, trigger: str, properties: dict[str, Any], run_id: str) -> list[str]:
        props = [a for k, v in properties.items() for a in ("--property", f"{k}={json.dumps(v, default=str)}")]
        return [
            self.python, "-c", LAUNCHER,
            "--project-dir", str(self.project_root), "--env", self.env,
            "workflow", "run", str(wf.path), "--trigger", trigger, "--run-id", run_id, *props,
        ]

    def live_runs(self, workflow: str) -> set[str]:
        from etl_framework.state.workflows import owner_alive

        with self.store.lock:
            rows = self.store.conn.execute(
                "SELECT * FROM workflow_runs WHERE workflow = ? AND state = 'RUNNING'", (workflow,)
            ).fetchall()
        live = {r["run_id"] for r in rows if owner_alive(r)}
        mine = {c.run_id for c in self.children.values() if c.workflow == workflow and c.proc.poll() is None}
        return live | mine

    def start(self, wf: WorkflowEntry, trigger: str, properties: dict[str, Any], run_id: str) -> str | None:
        limit = wf.config.max_concurrent_runs
        if limit is not None and len(self.live_runs(wf.name)) >= limit:
            return None
        if wf.path is None:
            raise RuntimeError(f"workflow {wf.name} has no file to run")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{run_id}.log"
        env = {**os.environ, **self.extra_env, "ETL_SCHEDULER_PID": str(os.getpid())}
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                self.command(wf, trigger, properties, run_id), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, cwd=str(self.project_root), env=env, start_new_session=True,
            )
        self.children[run_id] = Child(proc, run_id, wf.name, trigger, log_path, time.monotonic())
        return run_id

    def _tail(self, path: Path, n: int = 4000) -> str:
        try:
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - n))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _outcome(self, c: Child) -> RunEnded:
        run = self.store.get_run(c.run_id)
        if run is None:
            tail = self._tail(c.log_path)
            if REFUSED_MARK in tail:
                return RunEnded(c.run_id, c.workflow, c.trigger, "refused")
            last = next((ln for ln in reversed(tail.strip().splitlines()) if ln.strip()), "")
            return RunEnded(c.run_id, c.workflow, c.trigger, "not started",
                            f"exit {c.proc.returncode}: {last} (output: {c.log_path})")
        if run["state"] == "RUNNING":
            from etl_framework.state.workflows import mark_orphaned_runs

            mark_orphaned_runs(self.store, c.workflow)
            run = self.store.get_run(c.run_id) or run
        stats = run.get("statistics") or {}
        detail = ""
        if stats:
            detail = (f"{stats.get('SucceededActions', 0)}/{stats.get('TotalActions', 0)} actions succeeded, "
                      f"{stats.get('FailedActions', 0)} failed")
        if run.get("error"):
            detail += ("; " if detail else "") + str(run["error"]).splitlines()[0]
        return RunEnded(c.run_id, c.workflow, c.trigger, run["state"], detail + f" (output: {c.log_path})")

    def poll(self) -> list[RunEnded]:
        ended = []
        for run_id, c in list(self.children.items()):
            if c.proc.poll() is None:
                continue
            del self.children[run_id]
            ended.append(self._outcome(c))
        return ended

    def active(self) -> list[str]:
        return [r for r, c in self.children.items() if c.proc.poll() is None]

    def run_exists(self, run_id: str) -> bool:
        return self.store.get_run(run_id) is not None

    def recover(self) -> list[str]:
        from etl_framework.state.workflows import mark_orphaned_runs

        mine = set(self.active())
        self._wait_for_zombies(mine)
        marked = mark_orphaned_runs(self.store)
        return [r for r in marked if r not in mine]

    def _wait_for_zombies(self, mine: set[str], timeout: float = 5.0) -> None:
        """A run killed with its scheduler may still be a zombie (dead, not yet reaped) for a moment, and a zombie
        looks alive to a pid check; give the reaper a few seconds so that the restart marks the run at once."""
        import socket

        with self.store.lock:
            rows = self.store.conn.execute(
                "SELECT run_id, owner_pid, owner_host FROM workflow_runs WHERE state = 'RUNNING'").fetchall()
        pids = [r["owner_pid"] for r in rows
                if r["run_id"] not in mine and r["owner_pid"] and r["owner_host"] == socket.gethostname()]
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _is_zombie(p)]
            if pids:
                time.sleep(0.1)

    def stop(self, grace_seconds: float, log: SchedulerLog) -> list[str]:
        deadline = time.monotonic() + max(0.0, grace_seconds)
        while self.active() and time.monotonic() < deadline and not self.abort.is_set():
            time.sleep(0.2)
        late = {r: self.children[r] for r in self.active()}
        for c in late.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.proc.pid, signal.SIGTERM)  # the engine itself: it cancels its Spark jobs and marks the run
        kill_at = time.monotonic() + KILL_AFTER_TERM_SECONDS
        while any(c.proc.poll() is None for c in late.values()) and time.monotonic() < kill_at:
            time.sleep(0.2)
        for c in late.values():
            if c.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGKILL)
                c.proc.wait(10)
        if late:
            from etl_framework.state.workflows import mark_orphaned_runs

            mark_orphaned_runs(self.store)
            reason = (f"stopped by the scheduler's shutdown after its grace period of {grace_seconds:g}s; resume it "
                      "with `etl workflow resume {run_id}`")
            with self.store.tx() as conn:
                for run_id in late:
                    conn.execute(
                        "UPDATE workflow_runs SET error = ? WHERE run_id = ? AND state = 'STOPPED'",
                        (reason.replace("{run_id}", run_id), run_id),
                    )
        return list(late)
