"""A workflow's `maintain: JOB` action (issue 22 part 8): its node in the graph, its checks at file:line:col (an
unknown job, a retention under a week, a cloud orchestrator), the engine running it in-process (a table not written
yet is nothing to maintain), `etl plan` and `etl export airflow`. No Spark here: tests/spark/test_maintain.py runs
one on a real Delta table."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from etl_framework.cli import cli
from etl_framework.cli.common import run_cli
from etl_framework.config.errors import ConfigErrors
from etl_framework.config.load import load_workflow
from etl_framework.config.model import WorkflowConfig
from etl_framework.config.project import Project
from etl_framework.workflow_graph import WorkflowGraph

WF = """\
workflow: zones_maint
jobs: {zones_load: zones_load.yaml, trip_stats: trip_stats.yaml}
triggers:
  - {name: start, type: on_demand, actions: [{job: zones_load}]}
  - name: compact
    type: conditional
    conditions: [{job: zones_load, state: SUCCEEDED}]
    actions: [{maintain: zones_load, zorder: [zone_id], retain_hours: 200}]
  - name: after
    type: conditional
    conditions: [{maintain: zones_load, state: SUCCEEDED}]
    actions: [{job: trip_stats}]
"""


def _cli(root: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run_cli(cli, ["--project-dir", str(root), *args])
    return rc, out.getvalue(), err.getvalue()


def _errors(path: Path, root: Path, env: str = "local") -> str:
    with pytest.raises(ConfigErrors) as e:
        load_workflow(path, Project(root), env)
    return "\n".join(str(x) for x in e.value.errors)


def test_maintain_nodes_in_the_graph_levels_and_downstream() -> None:
    cfg = WorkflowConfig(workflow="w", jobs={"a": "a.yaml", "b": "b.yaml"}, triggers=[
        {"name": "start", "type": "on_demand", "actions": [{"job": "a"}]},
        {"name": "m", "type": "conditional", "conditions": [{"job": "a", "state": "SUCCEEDED"}],
         "actions": [{"maintain": "a"}]},
        {"name": "then", "type": "conditional", "conditions": [{"maintain": "a", "state": "SUCCEEDED"}],
         "actions": [{"job": "b"}]},
    ])
    g = WorkflowGraph(cfg)
    assert g.nodes == {"a": "job", "b": "job", "maintain:a": "maintain"}
    assert g.kind("maintain:a") == "maintain" and g.maintain_nodes() == {"maintain:a": "a"}
    assert g.levels() == [["a"], ["maintain:a"], ["b"]]
    assert g.downstream({"a"}) == {"a", "maintain:a", "b"} and g.downstream({"maintain:a"}) == {"maintain:a", "b"}
    assert g.conditions_between("maintain:a", "b") == [("then", "SUCCEEDED")]
    assert g.reachable().reached == {"a", "maintain:a", "b"} and g.cycles() == []
    from etl_framework.graph import render

    text = render(cfg, "text")
    assert "-> maintain:a" in text and "2. maintain:a" in text
    assert 'm_maintain_a[["maintain: a"]]' in render(cfg, "mermaid")


def test_validate_names_an_unknown_job_a_short_retention_and_an_unmaintained_condition(project: Path) -> None:
    path = project / "jobs" / "zones_maint.yaml"
    path.write_text(WF.replace("actions: [{maintain: zones_load,", "actions: [{maintain: zones_lod,"))
    text = _errors(path, project)
    assert "zones_maint.yaml:8:26: unknown job 'zones_lod'" in text and "did you mean 'zones_load'?" in text
    path.write_text(WF.replace("retain_hours: 200", "retain_hours: 24"))
    text = _errors(path, project)
    assert "zones_maint.yaml:8:" in text and "retain_hours 24" in text and "give 168 or more" in text
    path.write_text(WF.replace("{maintain: zones_load, state: SUCCEEDED}", "{maintain: trip_stats, state: SUCCEEDED}"))
    text = _errors(path, project)
    assert "zones_maint.yaml:11:29:" in text and "no trigger maintains 'trip_stats'" in text
    path.write_text(WF.replace("actions: [{job: zones_load}]", "actions: [{job: zones_load, zorder: [a]}]"))
    assert "'zorder' and 'retain_hours' are only for maintain actions" in _errors(path, project)
    path.write_text(WF)
    load_workflow(path, Project(project), "local")  # valid locally


@pytest.mark.parametrize("orchestrator", ["glue_workflows", "step_functions"])
def test_a_cloud_env_refuses_a_maintain_action_at_its_position(project: Path, orchestrator: str) -> None:
    path = project / "jobs" / "zones_maint.yaml"
    path.write_text(WF)
    env = project / "conf" / "prod.yaml"
    env.write_text(env.read_text().replace("deploy:\n", f"deploy:\n  orchestrator: {orchestrator}\n"))
    text = _errors(path, project, "prod")
    assert f"zones_maint.yaml:8:16: trigger 'compact': a maintain action cannot be deployed (env prod: " \
           f"deploy.orchestrator {orchestrator})" in text
    assert "run `etl maintain jobs/zones_load.yaml --env prod`" in text
    rc, _, err = _cli(project, "--env", "prod", "validate", str(path))
    assert rc == 2 and "zones_maint.yaml:8:16: trigger 'compact': a maintain action" in err


def test_engine_runs_a_maintain_node_with_nothing_to_maintain_yet(project: Path) -> None:
    """No table written yet: SUCCEEDED, said in the log and the record (and no JVM started)."""
    path = project / "jobs" / "only_maint.yaml"
    path.write_text("workflow: only_maint\njobs: {zones_load: zones_load.yaml}\ntriggers:\n"
                    "  - {name: start, type: on_demand, actions: [{maintain: zones_load}]}\n")
    rc, out, err = _cli(project, "workflow", "run", str(path), "--json", "--no-report")
    assert rc == 0, err
    rec = json.loads(out)
    node = next(n for n in rec["nodes"] if n["kind"] == "maintain")
    assert (node["node"], node["kind"], node["state"], node["attempts"]) == ("maintain:zones_load", "maintain",
                                                                            "SUCCEEDED", 1)
    assert node["result"]["tables"] == [] and "nothing to maintain" in node["result"]["note"]
    assert "maintain maintain:zones_load SUCCEEDED" in err and "nothing to maintain" in err
    rc, out, _ = _cli(project, "workflow", "status", rec["run_id"])
    assert rc == 0 and "nothing to maintain" in out


def test_airflow_export_runs_etl_maintain_locally_and_refuses_a_cloud_env(project: Path) -> None:
    from etl_framework.export.airflow import ExportError, plan_dag, render

    path = project / "jobs" / "zones_maint.yaml"
    path.write_text(WF)
    loaded = load_workflow(path, Project(project), "local")
    plan = plan_dag(loaded, Project(project), "local", mode="local")
    task = plan.task("maintain_zones_load")
    assert task.kind == "maintain" and task.upstream == ["job_zones_load"]
    assert plan.task("job_trip_stats").upstream == ["maintain_zones_load"]
    text = render(plan)
    assert "maintain jobs/zones_load.yaml --zorder zone_id --retain-hours 200" in text
    compile(text, "dag.py", "exec")
    with pytest.raises(ExportError, match="a maintain action cannot be exported for a cloud env"):
        plan_dag(loaded, Project(project), "prod", mode="glue")


def test_engine_maintain_node_options_result_timeout_and_resume(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """In the engine a maintain node is a node like the others: its action's options reach the executor, its result
    is in the record, a timeout is TIMEOUT (not retried) and a condition can watch it; resume re-runs it."""
    from etl_framework.engine.workflow import NodeOutcome
    from etl_framework.state.workflows import WorkflowStore
    from tests.unit.test_workflow_fakes import FakeExecutor, run_engine, workflow

    monkeypatch.setenv("ETL_MINUTE_SECONDS", "0.3")
    cfg = workflow([
        {"name": "start", "type": "on_demand", "actions": [{"job": "a"}]},
        {"name": "m", "type": "conditional", "conditions": [{"job": "a", "state": "SUCCEEDED"}],
         "actions": [{"maintain": "a", "zorder": ["id"], "timeout_minutes": 1}]},
        {"name": "late", "type": "conditional", "conditions": [{"maintain": "a", "state": "TIMEOUT"}],
         "actions": [{"job": "b"}]},
    ], ["a", "b"])
    store = WorkflowStore(tmp_path / "state.db")
    try:
        ex = FakeExecutor({"maintain:a": [("hang",)]})
        res = run_engine(cfg, store, ex).start()
        assert res.nodes == {"a": "SUCCEEDED", "b": "SUCCEEDED", "maintain:a": "TIMEOUT"}
        assert ex.attempts("maintain:a") == 1 and "maintain:a" in ex.cancelled
        task = next(t for t in ex.tasks if t.node == "maintain:a")
        assert task.kind == "maintain" and task.arguments == {"zorder": ["id"]}

        class Done(FakeExecutor):
            def run(self, task: Any) -> NodeOutcome:
                out = super().run(task)
                if task.kind == "maintain":
                    return NodeOutcome("SUCCEEDED", result={"job": "a", "tables": [
                        {"table": "a target", "files_before": 4, "files_after": 1, "rows": 8}]}, summary="4 -> 1")
                return out

        again = run_engine(cfg, store, Done()).resume(res.run_id)
        rec = store.get_run(again.run_id)
        m = next(n for n in rec["nodes"] if n["node"] == "maintain:a")
        assert m["state"] == "SUCCEEDED" and m["copied_from"] is None
        assert m["result"]["tables"][0]["files_after"] == 1 and m["arguments"] == {"zorder": ["id"]}
        assert next(n for n in rec["nodes"] if n["node"] == "a")["copied_from"] == res.run_id
    finally:
        store.close()
