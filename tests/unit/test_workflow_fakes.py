"""A scripted executor for the workflow engine's unit tests (no tests here: helpers shared by test_workflow_*)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from etl_framework.config.model import Retries, WorkflowConfig
from etl_framework.engine.workflow import NodeOutcome, NodeSpec, NodeTask, WorkflowRun
from etl_framework.state.workflows import WorkflowStore
from etl_framework.workflow_graph import WorkflowGraph


class FakeExecutor:
    """`script[node]` is a list of steps, one per attempt (the last repeats): ("ok"|"fail"|"error", seconds) or
    ("hang",). Records every attempt's start/end and the peak number of attempts running at once."""

    name = "fake"

    def __init__(self, script: dict[str, list[tuple[Any, ...]]] | None = None, default: float = 0.0) -> None:
        self.script = script or {}
        self.default = default
        self.lock = threading.Lock()
        self.starts: list[tuple[str, int, float]] = []
        self.ends: list[tuple[str, int, float]] = []
        self.tasks: list[NodeTask] = []
        self.cancelled: list[str] = []
        self.active = 0
        self.peak = 0
        self.hooks: dict[str, Any] = {}
        self.start_delay: dict[str, float] = {}  # seconds spent STARTING before the attempt reports RUNNING

    def run(self, task: NodeTask) -> NodeOutcome:
        steps = self.script.get(task.node, [("ok", self.default)])
        step = steps[min(task.attempt, len(steps)) - 1]
        with self.lock:
            self.starts.append((task.node, task.attempt, time.monotonic()))
            self.tasks.append(task)
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.start_delay.get(task.node, 0.0))
            task.on_running(f"jr_{task.node}_{task.attempt}" if task.kind == "job" else None)
            if task.node in self.hooks:
                self.hooks[task.node](task)
            kind = step[0]
            if kind == "hang":
                task.cancelled.wait(30)
                return NodeOutcome("FAILED", "cancelled", job_run_id=f"jr_{task.node}_{task.attempt}")
            task.cancelled.wait(step[1] if len(step) > 1 else 0)
            state = {"ok": "SUCCEEDED", "fail": "FAILED", "error": "ERROR"}[kind]
            if task.kind == "crawler" and state == "ERROR":
                state = "FAILED"
            return NodeOutcome(
                state, None if state == "SUCCEEDED" else f"{task.node} {kind} on attempt {task.attempt}",
                job_run_id=f"jr_{task.node}_{task.attempt}" if task.kind == "job" else None,
                retryable=kind != "error",
            )
        finally:
            with self.lock:
                self.active -= 1
                self.ends.append((task.node, task.attempt, time.monotonic()))

    def cancel(self, task: NodeTask) -> None:
        with self.lock:
            self.cancelled.append(task.node)
        task.cancelled.set()

    def attempts(self, node: str) -> int:
        return sum(1 for n, _a, _t in self.starts if n == node)


def workflow(triggers: list[dict[str, Any]], jobs: list[str], crawlers: list[str] = (), **extra: Any) -> WorkflowConfig:
    return WorkflowConfig.model_validate({
        "workflow": extra.pop("name", "wf"),
        "jobs": {j: f"{j}.yaml" for j in jobs},
        "crawlers": {c: {"path": f"/data/{c}", "database": "raw"} for c in crawlers},
        "triggers": triggers,
        **extra,
    })


def specs(config: WorkflowConfig, retries: dict[str, Retries] | None = None,
          timeouts: dict[str, int] | None = None) -> dict[str, NodeSpec]:
    out: dict[str, NodeSpec] = {}
    for j in config.jobs:
        out[j] = NodeSpec(j, "job", job_path=Path(f"{j}.yaml"), retries=(retries or {}).get(j, Retries()),
                          timeout_minutes=(timeouts or {}).get(j))
    for c, cr in config.crawlers.items():
        out[c] = NodeSpec(c, "crawler", crawler=cr)
    for m, j in WorkflowGraph(config).maintain_nodes().items():
        out[m] = NodeSpec(m, "maintain", job_path=Path(f"{j}.yaml"), timeout_minutes=(timeouts or {}).get(m))
    return out


def run_engine(config: WorkflowConfig, store: WorkflowStore, executor: FakeExecutor, **kw: Any) -> WorkflowRun:
    progress = kw.pop("progress", None)
    return WorkflowRun(config, kw.pop("node_specs", None) or specs(config), store, executor, progress=progress, **kw)
