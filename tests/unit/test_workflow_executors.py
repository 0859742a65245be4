"""Executors without Spark: a job that cannot start is ERROR (with file:line:col), crawlers run in-process and can
be cancelled, the subprocess executor passes Glue-style arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from etl_framework.config.load import load_workflow
from etl_framework.config.project import Project
from etl_framework.engine.executors import InlineExecutor, SubprocessExecutor, outcome_of
from etl_framework.engine.workflow import WorkflowRun, build_node_specs
from etl_framework.state.workflows import WorkflowStore

JOB = """job: {name}
params: {{limit: 1}}
sources:
  src: {{format: csv, path: ../data/in.csv, options: {{header: true}}}}
transform:
  - filter: "a >= ${{params.limit}} AND '${{run.{prop}}}' = 'eu'"
target: {{format: delta, path: ../data/out/{name}}}
"""

WF = """workflow: ex
run_properties: {region: eu}
jobs: {good: good.yaml, needs_missing: needs_missing.yaml, after: after.yaml}
crawlers:
  raw: {path: ../data/raw, database: raw}
triggers:
  - {name: start, type: on_demand, actions: [{job: good, arguments: {limit: 2}}, {job: needs_missing}, {crawler: raw}]}
  - {name: then, type: conditional, logical: any, conditions: [{job: needs_missing, state: FAILED}], actions: [{job: after}]}
"""


class Ok:
    run_id, status, error, exit_code = "jr_x", "SUCCEEDED", None, 0


class NoSpark(InlineExecutor):
    """Inline executor whose jobs are stubs: no JVM in unit tests."""

    def spark(self) -> Any:
        from etl_framework.engine.bench import _NoSpark

        return _NoSpark()


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n")
    (root / "data" / "raw").mkdir(parents=True)
    (root / "data" / "in.csv").write_text("a\n1\n")
    (root / "data" / "raw" / "x.csv").write_text("id,v\n1,2\n")
    jobs = root / "jobs"
    jobs.mkdir()
    (jobs / "good.yaml").write_text(JOB.format(name="good", prop="region"))
    (jobs / "needs_missing.yaml").write_text(JOB.format(name="needs_missing", prop="workflow"))
    (jobs / "after.yaml").write_text(JOB.format(name="after", prop="region"))
    (jobs / "ex.yaml").write_text(WF)
    return root


def test_job_that_cannot_start_is_error_and_others_run(proj: Path) -> None:
    project = Project.discover(proj)
    loaded = load_workflow(proj / "jobs" / "ex.yaml", project)
    # edited after the workflow was loaded: the job now needs a run property nobody sets
    (proj / "jobs" / "needs_missing.yaml").write_text(JOB.format(name="needs_missing", prop="not_set"))
    calls: list[dict[str, Any]] = []

    def runner(job_path: Path, **kw: Any) -> Ok:
        calls.append({"job": Path(job_path).stem, **kw})
        res = Ok()
        res.run_id = kw["run_id"]
        return res

    store = WorkflowStore(project.env_config().state.path)
    ex = NoSpark(project, job_runner=runner)
    res = WorkflowRun(loaded.config, build_node_specs(loaded.config, loaded.jobs, loaded.job_paths), store, ex,
                      progress=None).start()
    # `${run.not_set}` cannot resolve when the job starts: ERROR, not retried, never handed to the runtime
    assert res.nodes == {"good": "SUCCEEDED", "needs_missing": "ERROR", "after": None, "raw": "SUCCEEDED"}
    assert res.statistics["ErroredActions"] == 1
    rec = store.get_run(res.run_id)
    err = next(n for n in rec["nodes"] if n["node"] == "needs_missing")["error"]
    assert "cannot start" in err and "needs_missing.yaml:6:" in err and "not_set" in err
    assert sorted(c["job"] for c in calls) == ["good"]
    assert calls[0]["params"] == {"limit": 2} and calls[0]["workflow_run_id"] == res.run_id
    assert calls[0]["run_properties"].get("region") == "eu"
    good = next(n for n in rec["nodes"] if n["node"] == "good")
    assert good["job_run_id"] == calls[0]["run_id"]  # the job run id the runtime was told to use


def test_deleted_job_file_is_error(proj: Path) -> None:
    project = Project.discover(proj)
    loaded = load_workflow(proj / "jobs" / "ex.yaml", project)
    (proj / "jobs" / "good.yaml").unlink()
    store = WorkflowStore(project.env_config().state.path)
    res = WorkflowRun(loaded.config, build_node_specs(loaded.config, loaded.jobs, loaded.job_paths), store,
                      NoSpark(project, job_runner=lambda *a, **k: Ok()), progress=None).start()
    assert res.nodes["good"] == "ERROR"
    assert "does not exist" in next(n for n in store.get_run(res.run_id)["nodes"] if n["node"] == "good")["error"]


def test_cancelled_crawler_is_cancelled(proj: Path) -> None:
    import threading

    from etl_framework.engine.workflow import NodeSpec, NodeTask

    project = Project.discover(proj)
    loaded = load_workflow(proj / "jobs" / "ex.yaml", project)
    spec = NodeSpec("raw", "crawler", crawler=loaded.config.crawlers["raw"])
    task = NodeTask("wr_1", "ex", "raw", "crawler", 1, {}, spec, None, None, "g", cancelled=threading.Event())
    task.cancelled.set()
    out = InlineExecutor(project).run(task)
    assert out.state == "CANCELLED"


def test_outcome_mapping_of_job_results() -> None:
    class R:
        def __init__(self, status: str, code: int, error: str | None = None) -> None:
            self.run_id, self.status, self.exit_code, self.error = "jr_1", status, code, error

    ok = outcome_of(R("SUCCEEDED", 0))
    assert ok.state == "SUCCEEDED" and ok.job_run_id == "jr_1" and ok.error is None
    gate = outcome_of(R("FAILED", 3, "quality gate failed"))
    assert gate.state == "FAILED" and not gate.retryable and gate.error == "quality gate failed"
    assert outcome_of(R("FAILED", 1, "boom")).retryable


def test_subprocess_command_is_glue_style(proj: Path) -> None:
    from etl_framework.engine.workflow import NodeSpec, NodeTask

    project = Project.discover(proj)
    ex = SubprocessExecutor(project)
    try:
        ex.entry_script()
    except Exception:  # noqa: BLE001
        pytest.skip("scripts/etl_job.py is not there")
    spec = NodeSpec("good", "job", job_path=proj / "jobs" / "good.yaml")
    task = NodeTask("wr_9", "ex", "good", "job", 1, {"limit": 2, "flag": True}, spec, None, None, "g")
    cmd = ex.command(task, "jr_5")
    assert Path(cmd[0]).name == "spark-submit" and cmd[1] == "--properties-file"
    assert Path(cmd[3]).name == "etl_job.py"
    args = dict(zip(cmd[4::2], cmd[5::2], strict=True))
    assert args == {
        "--JOB_NAME": "good", "--JOB_RUN_ID": "jr_5", "--job_config": str(proj / "jobs" / "good.yaml"),
        "--env": "local", "--project_dir": str(proj), "--WORKFLOW_NAME": "ex", "--WORKFLOW_RUN_ID": "wr_9",
        "--limit": "2", "--flag": "true",
    }
    conf = Path(cmd[2]).read_text()
    assert "spark.sql.extensions" in conf and "spark.jars /" in conf  # JAR paths made absolute
