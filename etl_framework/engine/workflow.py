"""The trigger engine: runs one workflow run with AWS Glue Workflow semantics (SPEC §7).

One thread (the caller's) owns the run's state and decides everything; node attempts run in worker threads through
an `Executor` and report back through a queue. That keeps the semantics (at-most-once firing, retries, timeouts,
the end of the run) in one place, independent of how a node runs, so the unit tests drive it with fake executors.

Glue semantics followed:
- the run starts by firing its start trigger(s) (the workflow's on-demand triggers, or the scheduled/event trigger
  the scheduler fired);
- after every node completion each conditional trigger that has not fired yet is evaluated (`and`: every condition
  holds; `any`: one does) and fires at most once per run; its actions start together, queued up to `concurrency`;
- a job attempt that fails is retried (`retries`) after `backoff_seconds * backoff_rate**(attempt-1)`; a timeout is
  final (Glue does not retry a TIMEOUT); a job whose config cannot be loaded is ERROR and not retried;
- the run ends when nothing runs and nothing more can fire, as COMPLETED (even with failed nodes);
- resume (Glue ResumeWorkflowRun) is a new run that re-runs the failed nodes and everything downstream of them and
  copies the other nodes' results.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from etl_framework.config.model import Action, Retries, Trigger, WorkflowConfig, WorkflowCrawler
from etl_framework.errors import EtlError
from etl_framework.state.workflows import (
    COMPLETED,
    ERROR,
    RUNNING,
    STOPPED,
    RunProperties,
    WorkflowStore,
    mark_orphaned_runs,
    now_iso,
    owner_alive,
    statistics_of,
)
from etl_framework.workflow_graph import WorkflowGraph, kind_of

OK_STATES = ("SUCCEEDED",)
FAILED_STATES = ("FAILED", "TIMEOUT", "STOPPED", "ERROR", "CANCELLED")
HEARTBEAT_SECONDS = 10.0


def minute_seconds() -> float:
    """Seconds in a `timeout_minutes` minute: 60, or ETL_MINUTE_SECONDS (a test hook that keeps timeout tests short)."""
    try:
        return float(os.environ.get("ETL_MINUTE_SECONDS", "60"))
    except ValueError:
        return 60.0


# ------------------------------------------------------------------------------------------ nodes and tasks


@dataclass
class NodeSpec:
    """What the engine needs to know about a node before running it."""

    name: str
    kind: str  # "job" | "crawler" | "maintain" (the tables of the job at job_path)
    job_path: Path | None = None
    retries: Retries = field(default_factory=Retries)
    timeout_minutes: int | None = None
    crawler: WorkflowCrawler | None = None


@dataclass
class NodeTask:
    """One attempt of one node, handed to an executor."""

    run_id: str
    workflow: str
    node: str
    kind: str
    attempt: int
    arguments: dict[str, Any]
    spec: NodeSpec
    run_properties: RunProperties | None
    timeout_seconds: float | None
    group_id: str
    on_running: Callable[[str | None], None] = lambda job_run_id=None: None
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass
class NodeOutcome:
    """How an attempt ended: SUCCEEDED, FAILED or ERROR (jobs, maintain nodes); SUCCEEDED, FAILED or CANCELLED
    (crawlers). `result`: what a maintain node did (stored in its node record, shown by status and the report);
    `summary`: one line of it for the run's log."""

    state: str
    error: str | None = None
    job_run_id: str | None = None
    exit_code: int | None = None
    retryable: bool = True
    result: dict[str, Any] | None = None
    summary: str | None = None


class Executor(Protocol):
    name: str

    def run(self, task: NodeTask) -> NodeOutcome:
        """Run the attempt to its end in the calling (worker) thread; call `task.on_running` once started."""
        ...

    def cancel(self, task: NodeTask) -> None:
        """Stop a running attempt (timeout or workflow stop); may be called repeatedly."""
        ...


def build_node_specs(config: WorkflowConfig, jobs: dict[str, Any], job_paths: dict[str, Path]) -> dict[str, NodeSpec]:
    """Node specs from a loaded workflow: `jobs` maps job name -> object with `.config` (a LoadedJob)."""
    specs: dict[str, NodeSpec] = {}
    for name in config.jobs:
        loaded = jobs.get(name)
        cfg = getattr(loaded, "config", None)
        specs[name] = NodeSpec(
            name=name, kind="job", job_path=job_paths.get(name),
            retries=cfg.retries if cfg is not None else Retries(),
            timeout_minutes=cfg.timeout_minutes if cfg is not None else None,
        )
    for name, crawler in config.crawlers.items():
        specs[name] = NodeSpec(name=name, kind="crawler", crawler=crawler)
    for name, job in WorkflowGraph(config).maintain_nodes().items():
        specs[name] = NodeSpec(name=name, kind="maintain", job_path=job_paths.get(job))
    return specs


def start_triggers(config: WorkflowConfig, names: list[str] | None = None) -> list[Trigger]:
    """The triggers that start a run: the named ones, else every enabled on-demand trigger."""
    graph = WorkflowGraph(config)
    if names:
        missing = [n for n in names if graph.trigger(n) is None]
        if missing:
            raise EtlError(f"workflow {config.workflow}: no trigger named {', '.join(missing)}")
        return [t for n in names if (t := graph.trigger(n)) is not None]
    found = graph.on_demand()
    if not found:
        raise EtlError(
            f"workflow {config.workflow} has no enabled on_demand trigger to start it\n"
            "  what to do: add `{name: start, type: on_demand, actions: [...]}` to its triggers"
        )
    return found


def downstream(config: WorkflowConfig, nodes: set[str]) -> set[str]:
    """Every node reachable from `nodes` through conditional triggers that watch them (nodes themselves included)."""
    return WorkflowGraph(config).downstream(nodes)


def stderr_progress(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {message}\n")
    sys.stderr.flush()


# ------------------------------------------------------------------------------------------------ the engine


@dataclass
class _Node:
    spec: NodeSpec
    state: str | None = None
    attempts: int = 0
    arguments: dict[str, Any] = field(default_factory=dict)
    trigger: str | None = None
    timeout_minutes: int | None = None
    first_start: float | None = None
    not_before: float = 0.0
    task: NodeTask | None = None
    attempt_start: float = 0.0
    running_since: float | None = None  # the timeout counts from RUNNING (not while the job starts)
    job_run_ids: list[str] = field(default_factory=list)
    error: str | None = None
    copied: bool = False
    thread: threading.Thread | None = None


@dataclass
class RunResult:
    run_id: str
    state: str
    statistics: dict[str, int]
    nodes: dict[str, str | None]

    @property
    def ok(self) -> bool:
        """Every action of this run succeeded (nodes copied by a resume are not actions of this run)."""
        return self.state == COMPLETED and self.statistics["TotalActions"] == self.statistics["SucceededActions"]


class WorkflowRun:
    """One run of a workflow. Create it, then call `start()` or `resume(previous_run_id)`; both block until the
    run ends and return a RunResult. `stop(reason)` (any thread) stops it: running nodes are cancelled and marked
    STOPPED, nothing more fires, the run ends STOPPED."""

    def __init__(
        self,
        config: WorkflowConfig,
        specs: dict[str, NodeSpec],
        store: WorkflowStore,
        executor: Executor,
        *,
        workflow_path: str | None = None,
        env: str | None = None,
        concurrency: int | None = None,
        progress: Callable[[str], None] | None = stderr_progress,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config, self.specs, self.store, self.executor = config, specs, store, executor
        self.workflow_path, self.env = workflow_path, env
        self.concurrency = concurrency or config.concurrency
        self.progress = progress or (lambda _m: None)
        self.now = now
        self.run_id = ""
        self.nodes = {name: _Node(spec) for name, spec in specs.items()}
        self.fired: set[str] = set()
        self.waiting: deque[str] = deque()
        self.running: dict[str, _Node] = {}
        self.zombies: list[tuple[NodeTask, threading.Thread]] = []
        # SimpleQueue, not Queue: `stop()` is called from signal handlers, and Queue.put can deadlock on the lock
        # that the interrupted Queue.get in the same thread holds; SimpleQueue.put is reentrant.
        self.events: queue.SimpleQueue[tuple[str, str, int, Any]] = queue.SimpleQueue()
        self.properties: RunProperties | None = None
        self._stop_reason: str | None = None
        self.graph = WorkflowGraph(config)
        self._conditional = self.graph.in_run()
        self._errors_logged: set[str] = set()  # triggers whose property condition was an ERROR (logged once)

    # -------------------------------------------------------------------------------------------- public

    def start(
        self, properties: dict[str, Any] | None = None, trigger_names: list[str] | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        triggers = start_triggers(self.config, trigger_names)
        props = {**self.config.run_properties, **(properties or {})}
        self._begin(props, started_by=",".join(t.name for t in triggers), run_id=run_id)
        try:
            for t in triggers:
                self._fire(t, f"started by {kind_of(t).name} trigger")
            return self._loop()
        finally:
            self._cleanup()

    def resume(self, previous_run_id: str, properties: dict[str, Any] | None = None,
               nodes: list[str] | None = None) -> RunResult:
        """Glue ResumeWorkflowRun: `nodes` (Glue's NodeIds) default to every failed, timed-out, stopped or errored
        node of the previous run; they and everything downstream of them run again, the rest is copied."""
        prev = self.store.get_run(previous_run_id)
        if prev is None:
            raise EtlError(f"workflow run {previous_run_id} not found\n  what to do: `etl workflow status` lists runs")
        if prev["workflow"] != self.config.workflow:
            raise EtlError(f"run {previous_run_id} belongs to workflow {prev['workflow']}, not {self.config.workflow}")
        if prev["state"] == RUNNING:
            if prev["owner_alive"]:
                raise EtlError(f"workflow run {previous_run_id} is RUNNING: only a finished run can be resumed\n"
                               "  what to do: wait for it to end (`etl workflow status " + previous_run_id + "`)")
            mark_orphaned_runs(self.store, self.config.workflow)  # its process died: mark it STOPPED first
            prev = self.store.get_run(previous_run_id) or prev
        if prev["state"] not in (COMPLETED, STOPPED):
            raise EtlError(
                f"workflow run {previous_run_id} is {prev['state']}: only a COMPLETED or STOPPED run can be resumed"
            )
        prev_nodes = {n["node"]: n for n in prev["nodes"]}
        if nodes:
            bad = sorted(n for n in nodes if n not in self.nodes or not (prev_nodes.get(n) or {}).get("state"))
            if bad:
                raise EtlError(
                    f"cannot resume {', '.join(bad)}: a node to restart must have run in {previous_run_id} (as in Glue)"
                    f"\n  what to do: pick among {', '.join(n for n, r in prev_nodes.items() if r['state'])}"
                )
            failed = set(nodes)
        else:
            failed = {n for n, r in prev_nodes.items() if r["state"] in FAILED_STATES and n in self.nodes}
        if not failed:
            raise EtlError(
                f"workflow run {previous_run_id} has no failed, timed-out, stopped or errored node: nothing to resume"
            )
        rerun = self.graph.downstream(failed)
        prev_fired = {t["trigger"] for t in prev["triggers"] if t["state"] == "FIRED"}
        reset = self.graph.watching(rerun)
        props = {**prev["properties"], **(properties or {})}
        self._begin(props, started_by=f"resume of {previous_run_id}", previous_run_id=previous_run_id)
        try:
            self.progress(f"[{self.run_id}] resuming {previous_run_id}: re-running {', '.join(sorted(rerun))}")
            for name, rec in prev_nodes.items():
                node = self.nodes.get(name)
                if node is None or name in rerun or not rec["state"]:
                    continue
                node.state, node.copied, node.attempts = rec["state"], True, rec["attempts"]
                node.arguments, node.trigger = rec["arguments"], rec["trigger"]
                self.store.update_node(
                    self.run_id, name, state=rec["state"], trigger=rec["trigger"], arguments=rec["arguments"],
                    started_at=rec["started_at"], ended_at=rec["ended_at"], duration=rec["duration"],
                    attempts=rec["attempts"], job_run_id=rec["job_run_id"], job_run_ids=rec["job_run_ids"],
                    error=rec["error"], copied_from=previous_run_id,
                    **({"result": rec["result"]} if rec.get("result") is not None else {}),
                )
            for t in self.config.triggers:
                if t.name in prev_fired and t.name not in reset:
                    self.fired.add(t.name)
                    self.store.set_trigger(self.run_id, t.name, "FIRED", f"fired in {previous_run_id} (copied)")
            # Restart the failed nodes that no reset trigger will start again (Glue: the selected NodeIds).
            for name in sorted(failed):
                rec = prev_nodes[name]
                if rec["trigger"] in reset:
                    continue
                orig = next((a for t in self.config.triggers if t.name == rec["trigger"] for a in t.actions
                             if a.node == name), None)
                # the action's own arguments (the record holds a redacted copy of them)
                action = orig if orig is not None else _action_of(self.specs[name], rec["arguments"] or {})
                self._enqueue(action, rec["trigger"] or "resume")
            return self._loop()
        finally:
            self._cleanup()

    @property
    def stopping(self) -> bool:
        return self._stop_reason is not None

    def stop(self, reason: str = "stopped") -> None:
        self.events.put(("stop", "", 0, reason))

    # ----------------------------------------------------------------------------------------- internals

    def _begin(self, props: dict[str, Any], *, started_by: str, previous_run_id: str | None = None,
               run_id: str | None = None) -> None:
        self.run_id = self.store.begin_run(
            self.config.workflow,
            max_concurrent_runs=self.config.max_concurrent_runs,
            nodes={n: s.kind for n, s in self.specs.items()},
            properties=props,
            workflow_path=self.workflow_path,
            env=self.env,
            executor=getattr(self.executor, "name", type(self.executor).__name__),
            started_by=started_by,
            previous_run_id=previous_run_id,
            run_id=run_id,
        )
        self.properties = RunProperties(self.store, self.run_id)
        self._last_beat = self.now()
        self.progress(f"[{self.run_id}] workflow {self.config.workflow} started ({started_by})")

    def _log(self, message: str) -> None:
        self.progress(_redact(f"[{self.run_id}] {message}"))

    def _fire(self, trigger: Trigger, reason: str) -> None:
        self.fired.add(trigger.name)
        self.store.set_trigger(self.run_id, trigger.name, "FIRED", reason)
        self._log(f"trigger {trigger.name} fired ({reason}): " + ", ".join(a.node for a in trigger.actions))
        for action in trigger.actions:
            self._enqueue(action, trigger.name)

    def _enqueue(self, action: Action, trigger: str) -> None:
        node = self.nodes.get(action.node)
        if node is None:
            raise EtlError(f"workflow {self.config.workflow}: trigger {trigger} names unknown node {action.node}")
        if node.state is not None:
            how = "was copied from the resumed run" if node.copied else "already ran in this run"
            self._log(f"{node.spec.kind} {action.node} {how}; trigger {trigger} does not start it again")
            return
        args = action.maintain_options() if action.maintain else dict(action.arguments)
        node.state, node.arguments, node.trigger = "WAITING", args, trigger
        node.timeout_minutes = action.timeout_minutes or node.spec.timeout_minutes
        node.attempts, node.not_before, node.job_run_ids, node.error, node.first_start = 0, 0.0, [], None, None
        self.waiting.append(action.node)
        self.store.update_node(
            self.run_id, action.node, state="WAITING", trigger=trigger, arguments=_redact(node.arguments), attempts=0,
            copied_from=None, started_at=None, ended_at=None, error=None, job_run_id=None, job_run_ids=[],
            **({"result": None} if node.spec.kind == "maintain" else {}),
        )

    def _dispatch(self) -> None:
        if self._stop_reason is not None:
            return
        now = self.now()
        for _ in range(len(self.waiting)):
            if len(self.running) >= self.concurrency:
                return
            name = self.waiting.popleft()
            node = self.nodes[name]
            if node.not_before > now:
                self.waiting.append(name)
                continue
            self._start_attempt(name, node)

    def _start_attempt(self, name: str, node: _Node) -> None:
        node.attempts += 1
        node.attempt_start = self.now()
        node.running_since = node.attempt_start if node.spec.kind != "job" else None
        if node.first_start is None:
            node.first_start = node.attempt_start
        timeout = node.timeout_minutes * minute_seconds() if node.timeout_minutes else None
        attempt = node.attempts
        task = NodeTask(
            run_id=self.run_id, workflow=self.config.workflow, node=name, kind=node.spec.kind, attempt=attempt,
            arguments=dict(node.arguments), spec=node.spec, run_properties=self.properties,
            timeout_seconds=timeout, group_id=f"{self.run_id}:{name}:{attempt}",
        )
        task.on_running = lambda job_run_id=None, n=name, a=attempt: self.events.put(("running", n, a, job_run_id))
        node.task = task
        self.running[name] = node
        node.state = "STARTING" if node.spec.kind == "job" else "RUNNING"
        fields: dict[str, Any] = {"state": node.state, "attempts": attempt}
        if attempt == 1:
            fields["started_at"] = now_iso()
        self.store.update_node(self.run_id, name, **fields)
        self._log(f"{node.spec.kind} {name} {node.state}" + (f" (attempt {attempt})" if attempt > 1 else ""))
        node.thread = threading.Thread(target=self._work, args=(task,), name=f"wf-{name}", daemon=True)
        node.thread.start()

    def _work(self, task: NodeTask) -> None:
        try:
            outcome = self.executor.run(task)
        except EtlError as e:
            outcome = NodeOutcome("FAILED", str(e))
        except BaseException as e:  # noqa: BLE001 - a node's crash must never kill the run
            outcome = NodeOutcome("FAILED", f"{type(e).__name__}: {e}")
        self.events.put(("done", task.node, task.attempt, outcome))

    def _loop(self) -> RunResult:
        while True:
            self._dispatch()
            if not self.running and not self.waiting:
                break
            try:
                kind, name, attempt, payload = self.events.get(timeout=self._wait_time())
            except queue.Empty:
                kind = ""
            if kind == "stop":
                self._log(f"{payload}: stopping the run (again to abort)")
                self._stop_all(str(payload))
            elif kind == "running":
                self._on_running(name, attempt, payload)
            elif kind == "done":
                self._on_done(name, attempt, payload)
            self._check_deadlines()
            self._beat()
        return self._finish()

    def _wait_time(self) -> float:
        now = self.now()
        wake = now + 1.0
        for node in self.running.values():
            if node.task and node.task.timeout_seconds and node.running_since is not None:
                wake = min(wake, node.running_since + node.task.timeout_seconds)
        for name in self.waiting:
            nb = self.nodes[name].not_before
            if nb > now:
                wake = min(wake, nb)
        return max(0.0, min(wake - now, HEARTBEAT_SECONDS)) if self.running or self.waiting else 0.0

    def _beat(self) -> None:
        if self.now() - self._last_beat >= HEARTBEAT_SECONDS:
            self._last_beat = self.now()
            self.store.heartbeat(self.run_id)
        self.zombies = [(t, th) for t, th in self.zombies if th.is_alive()]
        for task, _th in self.zombies:  # keep stopping timed-out attempts that are still running Spark jobs
            self._cancel(task)

    def _cancel(self, task: NodeTask) -> None:
        task.cancelled.set()
        try:
            self.executor.cancel(task)
        except Exception as e:  # noqa: BLE001 - cancelling is best effort; the node is marked either way
            if not getattr(task, "_cancel_logged", False):
                self._log(f"could not cancel {task.node}: {type(e).__name__}: {e}")
                task.__dict__["_cancel_logged"] = True

    def _current(self, name: str, attempt: int) -> _Node | None:
        node = self.running.get(name)
        if node is None or node.task is None or node.task.attempt != attempt:
            return None
        return node

    def _on_running(self, name: str, attempt: int, job_run_id: str | None) -> None:
        node = self._current(name, attempt)
        if node is None:
            return
        fields: dict[str, Any] = {}
        if node.running_since is None:
            node.running_since = self.now()
        if node.state == "STARTING":
            node.state = fields["state"] = "RUNNING"
        if job_run_id:
            node.job_run_ids.append(job_run_id)
            fields.update(job_run_id=job_run_id, job_run_ids=node.job_run_ids)
        self.store.update_node(self.run_id, name, **fields)

    def _on_done(self, name: str, attempt: int, outcome: NodeOutcome) -> None:
        node = self._current(name, attempt)
        if node is None:  # a timed-out or stopped attempt that ended later: keep only its job run id
            late = self.nodes.get(name)
            if late is not None and outcome.job_run_id and outcome.job_run_id not in late.job_run_ids:
                late.job_run_ids.append(outcome.job_run_id)
                self.store.update_node(self.run_id, name, job_run_ids=late.job_run_ids,
                                       job_run_id=outcome.job_run_id)
            return
        del self.running[name]
        if outcome.job_run_id and outcome.job_run_id not in node.job_run_ids:
            node.job_run_ids.append(outcome.job_run_id)
        elapsed = self.now() - node.attempt_start
        retries = node.spec.retries
        if (
            outcome.state == "FAILED" and node.spec.kind == "job" and outcome.retryable
            and node.attempts < retries.max_attempts and self._stop_reason is None
        ):
            delay = retries.backoff_seconds * retries.backoff_rate ** (node.attempts - 1)
            node.state, node.not_before, node.error = "WAITING", self.now() + delay, outcome.error
            self.waiting.append(name)
            self.store.update_node(
                self.run_id, name, state="WAITING", error=_redact(outcome.error), job_run_id=outcome.job_run_id,
                job_run_ids=node.job_run_ids,
            )
            self._log(f"job {name} FAILED on attempt {node.attempts}/{retries.max_attempts} after {elapsed:.1f}s:"
                      f" {_first_line(outcome.error)}; retrying in {delay:g}s")
            return
        self._final(name, node, outcome.state, outcome.error, outcome.job_run_id, outcome)

    def _final(self, name: str, node: _Node, state: str, error: str | None, job_run_id: str | None = None,
               outcome: NodeOutcome | None = None) -> None:
        node.state, node.error = state, error
        duration = self.now() - (node.first_start or node.attempt_start)
        fields: dict[str, Any] = {
            "state": state, "ended_at": now_iso(), "duration": round(duration, 3), "error": _redact(error),
            "job_run_ids": node.job_run_ids,
        }
        if job_run_id or node.job_run_ids:
            fields["job_run_id"] = job_run_id or node.job_run_ids[-1]
        if outcome is not None and outcome.result is not None:
            fields["result"] = outcome.result
        self.store.update_node(self.run_id, name, **fields)
        msg = f"{node.spec.kind} {name} {state} in {duration:.1f}s"
        if node.attempts > 1:
            msg += f" after {node.attempts} attempts"
        if error and state != "SUCCEEDED":
            msg += f": {_first_line(error)}"
        elif outcome is not None and outcome.summary:
            msg += f": {outcome.summary}"
        self._log(msg)
        if self._stop_reason is None:
            self._evaluate()

    def _evaluate(self) -> None:
        """Glue evaluates conditional triggers when a watched node completes; each fires at most once per run.
        Property conditions read the run properties a job wrote (beyond Glue)."""
        states = {n: x.state for n, x in self.nodes.items()}
        for t in self._conditional:
            if t.name in self.fired:
                continue
            verdict, _met = self.graph.evaluate(t, states, self._properties)
            if verdict.holds:
                self._fire(t, verdict.why)
            elif verdict.error and t.name not in self._errors_logged:
                self._errors_logged.add(t.name)
                self._log(f"trigger {t.name} {verdict.why}")

    def _properties(self) -> dict[str, Any]:
        return self.properties.as_dict() if self.properties is not None else {}

    def _check_deadlines(self) -> None:
        now = self.now()
        for name, node in list(self.running.items()):
            task = node.task
            if (task is None or not task.timeout_seconds or node.running_since is None
                    or now - node.running_since < task.timeout_seconds):
                continue
            del self.running[name]
            task.cancelled.set()
            self._cancel(task)
            if node.thread is not None:
                self.zombies.append((task, node.thread))
            state = "CANCELLED" if node.spec.kind == "crawler" else "TIMEOUT"
            self._final(name, node, state, f"timed out after {node.timeout_minutes} min (timeout_minutes)")

    def _stop_all(self, reason: str) -> None:
        self._stop_reason = reason
        for name, node in list(self.running.items()):
            del self.running[name]
            if node.task is not None:
                node.task.cancelled.set()
                self._cancel(node.task)
                if node.thread is not None:
                    self.zombies.append((node.task, node.thread))
            self._final(name, node, _stopped(node.spec.kind), f"stopped: {reason}")
        while self.waiting:
            name = self.waiting.popleft()
            self.nodes[name].state = None
            self.store.update_node(self.run_id, name, state=None, error=f"not started: {reason}")

    def _finish(self) -> RunResult:
        for t in self._conditional:
            if t.name not in self.fired:
                self.store.set_trigger(self.run_id, t.name, "NOT_FIRED", self._why_not(t))
        self._join_zombies(grace=5.0)
        stats = statistics_of([
            {"state": n.state, "copied_from": n.copied or None} for n in self.nodes.values()
        ])
        state = STOPPED if self._stop_reason is not None else COMPLETED
        self.store.finish_run(self.run_id, state, stats, self._stop_reason)
        s = stats
        self._log(
            f"workflow {self.config.workflow} {state}: {s['SucceededActions']}/{s['TotalActions']} actions"
            f" succeeded, {s['FailedActions']} failed, {s['TimeoutActions']} timed out, {s['StoppedActions']}"
            f" stopped, {s['ErroredActions']} errored"
        )
        return RunResult(self.run_id, state, stats, {n: x.state for n, x in self.nodes.items()})

    def _why_not(self, t: Trigger) -> str:
        if self._stop_reason is not None:
            return f"not fired: the run was stopped ({self._stop_reason})"
        verdict, _ = self.graph.evaluate(t, {n: x.state for n, x in self.nodes.items()}, self._properties)
        return verdict.why

    def _join_zombies(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        for task, thread in self.zombies:
            while thread.is_alive() and time.monotonic() < deadline:
                self._cancel(task)
                thread.join(0.2)
        if any(th.is_alive() for _, th in self.zombies):
            self._log("warning: a timed-out or stopped attempt is still running in its thread; it is abandoned")

    def _cleanup(self) -> None:
        """If the run is left RUNNING (an exception or Ctrl-C in the engine itself), end it STOPPED with the reason."""
        if not self.run_id:
            return
        run = self.store.get_run(self.run_id)
        if run is None or run["state"] != RUNNING:
            return
        exc = sys.exc_info()[1]
        reason = f"interrupted: {type(exc).__name__}: {exc}" if exc else "interrupted"
        self._stop_reason = reason
        # Also nodes a second interrupt caught half-way through _stop_all (out of `running`, not yet final):
        # a node left RUNNING in a stopped run could never be resumed.
        unfinished = dict(self.running)
        unfinished.update({n: x for n, x in self.nodes.items() if x.state in ("STARTING", "RUNNING")})
        for name, node in unfinished.items():
            if node.task is not None:
                self._cancel(node.task)
            node.state = _stopped(node.spec.kind)
            self.store.update_node(self.run_id, name, state=node.state, ended_at=now_iso(), error=reason)
        self.running.clear()
        for name in self.waiting:
            self.nodes[name].state = None
            self.store.update_node(self.run_id, name, state=None)
        stats = statistics_of([{"state": n.state, "copied_from": n.copied or None} for n in self.nodes.values()])
        self.store.finish_run(self.run_id, STOPPED if exc is not None else ERROR, stats, reason)


def _stopped(kind: str) -> str:
    """A stopped node's state: CANCELLED for a crawler (Glue's crawl states), STOPPED for a job or maintain node."""
    return "CANCELLED" if kind == "crawler" else "STOPPED"


def _action_of(spec: NodeSpec, arguments: dict[str, Any]) -> Action:
    """The action that restarts a node on resume when no trigger of the workflow names it any more."""
    if spec.kind == "maintain":
        from etl_framework.workflow_graph import maintained_job

        return Action(maintain=maintained_job(spec.name), zorder=list(arguments.get("zorder") or []),
                      retain_hours=arguments.get("retain_hours"))
    return Action(**{spec.kind: spec.name}, arguments=arguments)


def _redact(value: Any) -> Any:
    """Secrets never reach the run record (SPEC §4.2): placeholders and resolved values become ***."""
    from etl_framework.config.interpolate import redact

    return redact(value)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


__all__ = [
    "Executor", "NodeOutcome", "NodeSpec", "NodeTask", "RunResult", "WorkflowRun", "build_node_specs",
    "downstream", "minute_seconds", "owner_alive", "start_triggers",
]
