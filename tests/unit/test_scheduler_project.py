"""The scheduler over a real project directory: workflow files loaded with the real loader, edited while it runs."""

from __future__ import annotations

import io
from pathlib import Path

from etl_framework.config.project import Project
from etl_framework.scheduler.service import ProjectWorkflows, Scheduler, SchedulerLog
from etl_framework.scheduler.store import SchedulerStore
from tests.unit.test_scheduler_core import Clock, FakeStarter, land

WF = """workflow: {name}
crawlers:
  c: {{path: ../data/{name}/, database: raw}}
triggers:
  - name: files
    type: event
    watch: {{path: ../data/{name}/, pattern: "*.csv"}}
    batch: {{size: 1, window_seconds: 5}}
    actions: [{{crawler: c}}]
"""


def setup(tmp_path: Path) -> tuple[Path, Scheduler, FakeStarter, SchedulerLog, Clock]:
    root = tmp_path / "proj"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "local.yaml").write_text("vars: {}\n")
    (root / "jobs").mkdir()
    for name in ("alpha", "beta"):
        (root / "jobs" / f"{name}.yaml").write_text(WF.format(name=name))
        (root / "data" / name).mkdir(parents=True)
    (root / "jobs" / "notes.yaml").write_text("just: a file that is no workflow\n")
    clock = Clock()
    log = SchedulerLog(stream=io.StringIO(), clock=clock)
    starter = FakeStarter()
    project = Project.discover(root)
    sched = Scheduler(SchedulerStore(root / ".etl" / "state.db"), starter,
                      ProjectWorkflows(project, "local", project.jobs_dir), clock=clock, log=log,
                      wall=lambda: 0.0, use_notifications=False, backfill=True)  # files land before the first look
    sched.recover()
    return root, sched, starter, log, clock


def two_looks(sched: Scheduler, clock: Clock) -> None:
    clock.advance(1)
    sched.tick()
    clock.advance(2.5)
    sched.tick()


def test_every_workflow_file_of_the_project_is_served(tmp_path: Path) -> None:
    root, sched, starter, _, clock = setup(tmp_path)
    land(root / "data" / "alpha", "1.csv")
    land(root / "data" / "beta", "1.csv")
    two_looks(sched, clock)
    assert sorted(s["workflow"] for s in starter.started) == ["alpha", "beta"]
    assert sorted(sched.workflows) == ["alpha", "beta"]


def test_workflow_file_that_becomes_invalid_is_reported_and_skipped_the_others_keep_running(tmp_path: Path) -> None:
    root, sched, starter, log, clock = setup(tmp_path)
    sched.tick()
    alpha = root / "jobs" / "alpha.yaml"
    alpha.write_text(WF.format(name="alpha").replace("batch:", "batchh:"))
    land(root / "data" / "alpha", "1.csv")
    land(root / "data" / "beta", "1.csv")
    two_looks(sched, clock)
    two_looks(sched, clock)
    assert [s["workflow"] for s in starter.started] == ["beta"]
    errors = [line for line in log.lines if line["level"] == "error"]
    assert len(errors) == 1  # reported once, not every pass
    assert "alpha.yaml:8:5" in errors[0]["message"] and "batchh" in errors[0]["message"]
    assert "skipped until fixed" in errors[0]["message"]
    # fixed: the files that landed meanwhile are picked up
    alpha.write_text(WF.format(name="alpha"))
    two_looks(sched, clock)
    assert sorted(s["workflow"] for s in starter.started) == ["alpha", "beta"]
    assert any("valid again" in line["message"] for line in log.lines)


def test_an_edited_env_config_is_picked_up(tmp_path: Path) -> None:
    root, sched, starter, _, clock = setup(tmp_path)
    (root / "jobs" / "beta.yaml").unlink()
    (root / "jobs" / "alpha.yaml").write_text(WF.format(name="alpha").replace("../data/alpha/", "'${env.inbox}'"))
    (root / "conf" / "local.yaml").write_text("vars: {inbox: ../data/alpha/}\n")
    sched.tick()
    (root / "data" / "beta").mkdir(exist_ok=True)
    (root / "conf" / "local.yaml").write_text("vars: {inbox: ../data/beta/}\n")
    land(root / "data" / "beta", "moved.csv")
    two_looks(sched, clock)
    assert [Path(s["properties"]["event_files"][0]).parent.name for s in starter.started] == ["beta"]
