"""The real starter's process handling with stand-in commands (no Spark, no engine): limit pre-check against the
workflow store, refusal and failed-start detection, the grace-period stop."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Any

from etl_framework.config.model import WorkflowConfig
from etl_framework.scheduler.service import SchedulerLog, WorkflowEntry
from etl_framework.scheduler.starter import SubprocessStarter
from etl_framework.state.workflows import WorkflowStore


class ScriptStarter(SubprocessStarter):
    """Runs a given Python snippet instead of `etl workflow run`."""

    script = ""

    def command(self, wf: WorkflowEntry, trigger: str, properties: dict[str, Any], run_id: str) -> list[str]:
        return [sys.executable, "-c", self.script]


def entry(tmp_path: Path, limit: int | None = None) -> WorkflowEntry:
    cfg = WorkflowConfig.model_validate({
        "workflow": "wf", "max_concurrent_runs": limit, "crawlers": {"c": {"path": "/x", "database": "raw"}},
        "triggers": [{"name": "t", "type": "event", "watch": {"path": "/x"}, "actions": [{"crawler": "c"}]}]})
    path = tmp_path / "wf.yaml"
    path.write_text("workflow: wf\n")
    return WorkflowEntry("wf", cfg, path)


def wait_ended(starter: SubprocessStarter, timeout: float = 20) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ended = starter.poll()
        if ended:
            return ended
        time.sleep(0.05)
    raise AssertionError("child did not end")


def test_limit_counts_live_runs_of_any_process(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    store = WorkflowStore(state)
    store.begin_run("wf", max_concurrent_runs=None, nodes={"c": "crawler"}, properties={}, run_id="wr_manual")
    starter = ScriptStarter(tmp_path, "local", state)
    starter.script = "import time; time.sleep(3)"  # alive through the next start, however loaded the machine
    assert starter.start(entry(tmp_path, limit=1), "t", {}, "wr_1") is None
    assert starter.start(entry(tmp_path, limit=2), "t", {}, "wr_2") == "wr_2"
    assert starter.start(entry(tmp_path, limit=2), "t", {}, "wr_3") is None  # wr_2 has not registered yet
    wait_ended(starter)


def test_refused_and_failed_starts_are_told_apart(tmp_path: Path) -> None:
    starter = ScriptStarter(tmp_path, "local", tmp_path / "state.db")
    starter.script = ("import sys; sys.stderr.write('error: workflow wf: max_concurrent_runs is 1 and 1 run(s) are "
                      "running\\n'); sys.exit(1)")
    starter.start(entry(tmp_path), "t", {}, "wr_refused")
    (ended,) = wait_ended(starter)
    assert (ended.run_id, ended.outcome) == ("wr_refused", "refused")
    starter.script = "import sys; print('jobs/wf.yaml:3:1: unknown key'); sys.exit(2)"
    starter.start(entry(tmp_path), "t", {}, "wr_bad")
    (ended,) = wait_ended(starter)
    assert ended.outcome == "not started" and "exit 2" in ended.detail and "unknown key" in ended.detail
    assert (tmp_path / "scheduler-runs" / "wr_bad.log").read_text().strip() == "jobs/wf.yaml:3:1: unknown key"


def test_stop_waits_the_grace_period_then_terminates(tmp_path: Path) -> None:
    starter = ScriptStarter(tmp_path, "local", tmp_path / "state.db")
    starter.script = "import time; time.sleep(0.5)"
    starter.start(entry(tmp_path), "t", {}, "wr_quick")
    log = SchedulerLog(stream=io.StringIO())
    assert starter.stop(5, log) == []  # finished within the grace period
    starter.script = "import time; time.sleep(60)"
    starter.start(entry(tmp_path), "t", {}, "wr_slow")
    t0 = time.monotonic()
    assert starter.stop(0.5, log) == ["wr_slow"]
    assert time.monotonic() - t0 < 10
    assert starter.active() == []
