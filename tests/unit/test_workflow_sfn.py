"""The Step Functions translation (ASL) for the graph shapes that matter, and conditions on data (run properties):
locally in the engine, in the ASL as Choice rules, refused for Glue Workflows by validate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from etl_framework.config.model import JobConfig, WorkflowConfig
from etl_framework.deploy.asl import AslError, definition_json, state_machine
from etl_framework.state.workflows import WorkflowStore
from tests.unit.test_workflow_fakes import FakeExecutor, run_engine, workflow

START = {"name": "start", "type": "on_demand", "actions": [{"job": "a"}]}


def cond(name: str, conds: list[tuple[str, str]], actions: list[str], logical: str = "and") -> dict[str, Any]:
    return {"name": name, "type": "conditional", "logical": logical,
            "conditions": [{"job": n, "state": s} for n, s in conds], "actions": [{"job": a} for a in actions]}


def wf(triggers: list[dict[str, Any]], jobs: tuple[str, ...] = ("a", "b", "c", "d")) -> WorkflowConfig:
    return WorkflowConfig(workflow="w", jobs={j: f"{j}.yaml" for j in jobs}, triggers=triggers)


def job(name: str, **kw: Any) -> JobConfig:
    return JobConfig(job=name, sources={"s": {"format": "csv", "path": "s3://b/x"}}, target={"path": "s3://b/y"}, **kw)


def waves(m: dict[str, Any]) -> list[list[str]]:
    out = []
    for name, st in m["States"].items():
        if name.startswith("Wave "):
            out.append([b["StartAt"].rstrip("?") for b in st["Branches"]])
    return out


def branch(m: dict[str, Any], wave: int, node: str) -> dict[str, Any]:
    return next(b for b in m["States"][f"Wave {wave}"]["Branches"] if b["StartAt"] == f"{node}?")


def test_the_execution_input_names_a_start_trigger() -> None:
    m = state_machine(wf([START, {"name": "nightly", "type": "scheduled", "schedule": "cron(0 2 * * ? *)",
                                  "actions": [{"job": "a"}]}], jobs=("a",)))
    assert m["States"]["Defaults"]["Result"]["trigger"] == "start"  # default: the first on-demand trigger
    known = m["States"]["Known start trigger?"]
    assert known["Choices"][0]["Or"] == [{"Variable": "$.run.trigger", "StringEquals": "start"},
                                         {"Variable": "$.run.trigger", "StringEquals": "nightly"}]
    assert m["States"][known["Default"]] == {"Type": "Fail", "Error": "UnknownTrigger", "Cause": m["States"][
        "UnknownTrigger"]["Cause"]}


def test_parallel_branches_and_the_and_join() -> None:
    m = state_machine(wf([START, cond("fan", [("a", "SUCCEEDED")], ["b", "c"]),
                          cond("join", [("b", "SUCCEEDED"), ("c", "SUCCEEDED")], ["d"])]))
    assert waves(m) == [["a"], ["b", "c"], ["d"]]
    choice = branch(m, 2, "d")["States"]["d?"]["Choices"]
    assert choice[0] == {"Not": {"Variable": "$.nodes.d.state", "StringEquals": "NOT_RUN"}, "Next": "d: not started"}
    assert choice[1] == {"And": [{"Variable": "$.nodes.b.state", "StringEquals": "SUCCEEDED"},
                                 {"Variable": "$.nodes.c.state", "StringEquals": "SUCCEEDED"}], "Next": "d <- join"}


def test_max_concurrent_runs_counts_running_executions_and_fails_beyond_it() -> None:
    m = state_machine(wf([START]).model_copy(update={"max_concurrent_runs": 2}))
    count = m["States"]["Count running executions"]
    assert count["Resource"] == "arn:aws:states:::aws-sdk:sfn:listExecutions"
    assert count["Parameters"] == {"stateMachineArn.$": "$$.StateMachine.Id", "statusFilter": "RUNNING"}
    assert count["Next"] == "Within max_concurrent_runs?"
    [over] = m["States"]["Within max_concurrent_runs?"]["Choices"]
    assert over == {"Variable": "$.running.count", "NumericGreaterThan": 2, "Next": "ConcurrentRunsExceeded"}
    assert m["States"]["ConcurrentRunsExceeded"]["Type"] == "Fail"
    assert m["States"]["ConcurrentRunsExceeded"]["Error"] == "ConcurrentRunsExceeded"
    assert "Count running executions" not in state_machine(wf([START]))["States"]  # no limit: no count


def test_any_join_has_a_slot_after_each_watched_node() -> None:
    m = state_machine(wf([START, cond("next", [("a", "SUCCEEDED")], ["b"]),
                          cond("either", [("a", "FAILED"), ("b", "SUCCEEDED")], ["c"], logical="any")]))
    assert waves(m) == [["a"], ["b", "c"], ["c"]]
    rule = branch(m, 1, "c")["States"]["c?"]["Choices"][1]
    assert rule["Or"] == [{"Variable": "$.nodes.a.state", "StringEquals": "FAILED"},
                          {"Variable": "$.nodes.b.state", "StringEquals": "SUCCEEDED"}]
    # the second slot starts c only if the first did not: the first rule keeps a node that already ran
    assert branch(m, 2, "c")["States"]["c?"]["Choices"][0]["Next"] == "c: not started"


def test_a_failed_job_is_caught_into_its_state_and_a_failed_condition_fires() -> None:
    m = state_machine(wf([START, cond("on_fail", [("a", "FAILED")], ["b"])]))
    run = branch(m, 0, "a")["States"]["a"]
    catches = {tuple(c["ErrorEquals"]): c["Next"] for c in run["Catch"]}
    assert catches[("States.ALL",)] == "a: FAILED" and catches[("Glue.TIMEOUT",)] == "a: TIMEOUT"
    failed = branch(m, 0, "a")["States"]["a: FAILED"]
    assert failed["Parameters"]["state"] == "FAILED" and failed["End"]
    assert branch(m, 1, "b")["States"]["b?"]["Choices"][1]["Variable"] == "$.nodes.a.state"
    assert m["States"]["Wave 0"]["ResultSelector"] == {"a.$": "$[0]"}  # the execution keeps per-node states


def test_retries_and_timeout_of_the_job() -> None:
    jobs = {"a": job("a", retries={"max_attempts": 3, "backoff_seconds": 30, "backoff_rate": 2.0},
                     timeout_minutes=60)}
    m = state_machine(wf([START], jobs=("a",)), jobs, poll_seconds=10)
    run = branch(m, 0, "a")["States"]["a"]
    assert run["Retry"] == [{"ErrorEquals": ["Glue.FAILED"], "IntervalSeconds": 30, "BackoffRate": 2.0,
                             "MaxAttempts": 2}]
    assert run["TimeoutSeconds"] == 60 * 60 + 2 * 10 + 60
    via = branch(m, 0, "a")["States"]["a <- start"]["Parameters"]
    assert via["timeout"] == 60 and via["args"]["--WORKFLOW_RUN_ID.$"] == "$.run.run_id"
    start = run["Branches"][0]["States"]["a: start job run"]
    assert start["Resource"] == "arn:aws:states:::glue:startJobRun"  # request-response, polled (not .sync)


def test_definition_over_the_size_limit_is_refused_with_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from etl_framework.deploy import asl

    monkeypatch.setattr(asl, "SFN_DEFINITION_LIMIT", 1000)
    with pytest.raises(AslError, match=r"the state machine definition is [\d,]+ characters, over Step Functions' "
                                       r"limit of 1,000"):
        definition_json(state_machine(wf([START])))


# ----------------------------------------------------------------------------------- conditions on data

PROP = [START, {"name": "good_enough", "type": "conditional",
                "conditions": [{"job": "a", "state": "SUCCEEDED"}, {"property": "auc", "op": ">=", "value": 0.8}],
                "actions": [{"job": "b"}]}]


@pytest.fixture
def store(tmp_path: Path) -> WorkflowStore:
    s = WorkflowStore(tmp_path / "state.db")
    yield s
    s.close()


@pytest.mark.parametrize(("auc", "ran"), [(0.91, True), (0.5, False), (None, False), ("high", False)])
def test_second_job_runs_only_if_the_first_wrote_auc_at_least_0_8(store: WorkflowStore, auc: Any,
                                                                   ran: bool) -> None:
    cfg = workflow(PROP, ["a", "b"])
    ex = FakeExecutor()
    if auc is not None:
        ex.hooks["a"] = lambda task: task.run_properties.put("auc", str(auc))
    res = run_engine(cfg, store, ex).start()
    assert (res.nodes["b"] == "SUCCEEDED") == ran
    trig = {t["trigger"]: t for t in store.get_run(res.run_id)["triggers"]}["good_enough"]
    if ran:
        assert trig["state"] == "FIRED"
    else:
        assert trig["state"] == "NOT_FIRED"
        why = {None: "run property auc is not set", 0.5: "does not meet >= 0.8",
               "high": "run property auc = 'high' is not a number"}[auc]
        assert why in trig["reason"]
        assert ("ERROR:" in trig["reason"]) == (auc == "high")  # a non-number at run time is an ERROR


def test_property_condition_is_a_choice_rule_in_asl() -> None:
    m = state_machine(wf(PROP, jobs=("a", "b")))
    assert "Read run properties 1" in m["States"]
    rules = branch(m, 1, "b")["States"]["b?"]["Choices"]
    assert rules[1]["And"][1] == {"And": [{"Variable": "$.props.values.auc", "IsPresent": True},
                                          {"Variable": "$.props.values.auc", "IsNumeric": True},
                                          {"Variable": "$.props.values.auc", "NumericGreaterThanEquals": 0.8}]}
    whys = [s.get("Result", {}).get("why", "") for s in branch(m, 1, "b")["States"].values()]
    assert any("is not set" in w for w in whys) and any("is not a number" in w for w in whys)


def test_validate_refuses_property_conditions_for_glue_workflows_and_non_numbers(project: Path) -> None:
    from etl_framework.config.errors import ConfigErrors
    from etl_framework.config.load import load_workflow
    from etl_framework.config.project import Project

    (project / "jobs" / "gate.yaml").write_text(
        "workflow: gate\njobs: {zones_load: zones_load.yaml}\ntriggers:\n"
        "  - {name: start, type: on_demand, actions: [{job: zones_load}]}\n"
        "  - name: good\n    type: conditional\n    conditions:\n"
        "      - {property: auc, op: \">=\", value: high}\n    actions: [{crawler: c}]\n"
        "crawlers: {c: {path: 's3://b/x/', database: raw}}\n")
    with pytest.raises(ConfigErrors) as e:
        load_workflow(project / "jobs" / "gate.yaml", Project(project), "prod")
    text = "\n".join(str(x) for x in e.value.errors)
    assert "'>=' compares numbers, but value 'high' is not a number" in text
    assert "cannot be deployed to Glue Workflows" in text and "orchestrator: step_functions" in text
    assert "gate.yaml:8:" in text  # positioned at the condition
    # locally (no deploy block) the same property condition is fine once its value is a number
    (project / "jobs" / "gate.yaml").write_text((project / "jobs" / "gate.yaml").read_text().replace("high", "0.8"))
    load_workflow(project / "jobs" / "gate.yaml", Project(project), "local")


def test_jobs_of_a_step_functions_execution_read_and_write_run_properties_in_s3() -> None:
    import boto3
    from moto import mock_aws

    from etl_framework.runtime.args import parse_job_args
    from etl_framework.runtime.glue import S3RunProperties, run_properties_for

    uri = "s3://bkt-props/etl/p/prod/runs/w/run-1.json"
    args = parse_job_args(["etl_job.py", "--job_config", "jobs/a.yaml", "--WORKFLOW_NAME", "w",
                           "--WORKFLOW_RUN_ID", "run-1", "--run_properties_uri", uri])
    assert args.run_properties_uri == uri and "run_properties_uri" not in args.params
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bkt-props")
        props = run_properties_for(args, client=s3)
        assert isinstance(props, S3RunProperties) and props.as_dict() == {}
        s3.put_object(Bucket="bkt-props", Key="etl/p/prod/runs/w/run-1.json", Body=b'{"region": "eu"}')
        props.put("auc", "0.91")  # text that reads as a number is stored as one, for the numeric Choice
        props.update({"rows_quarantined": 3, "model": "m1"})
        assert props.as_dict() == {"region": "eu", "auc": 0.91, "rows_quarantined": 3, "model": "m1"}
        assert props.run_vars()["id"] == "run-1"


def test_validate_refuses_what_step_functions_cannot_express_naming_the_trigger(project: Path) -> None:
    """A conditional trigger with run-property conditions only watches no node: the state machine would not know
    when to test it. Locally it runs (tested after every node); for a step_functions env validate refuses it."""
    from ruamel.yaml import YAML

    from etl_framework.config.errors import ConfigErrors
    from etl_framework.config.load import load_workflow
    from etl_framework.config.project import Project

    conf = YAML().load((project / "conf" / "prod.yaml").read_text())
    conf["deploy"]["orchestrator"] = "step_functions"
    with (project / "conf" / "prod.yaml").open("w") as f:
        YAML().dump(conf, f)
    (project / "jobs" / "gate.yaml").write_text(
        "workflow: gate\njobs: {zones_load: zones_load.yaml, trip_stats: trip_stats.yaml}\ntriggers:\n"
        "  - {name: start, type: on_demand, actions: [{job: zones_load}]}\n"
        "  - name: whenever_good\n    type: conditional\n    conditions: [{property: auc, op: \">=\", value: 0.8}]\n"
        "    actions: [{job: trip_stats}]\n")
    with pytest.raises(ConfigErrors) as e:
        load_workflow(project / "jobs" / "gate.yaml", Project(project), "prod")
    [err] = e.value.errors
    assert err.line == 5 and err.message.startswith("trigger 'whenever_good' has only run-property conditions")
    assert "deploy.orchestrator step_functions" in err.message
    load_workflow(project / "jobs" / "gate.yaml", Project(project), "local")  # fine locally
    with pytest.raises(AslError, match="whenever_good"):
        state_machine(load_workflow(project / "jobs" / "gate.yaml", Project(project), "local").config)


def test_worst_case_history_events_are_counted_for_the_deploy_warning() -> None:
    from etl_framework.deploy.asl import HISTORY_LIMIT, worst_case_events

    jobs = {"a": job("a", timeout_minutes=60, retries={"max_attempts": 2})}
    assert worst_case_events(wf([START], jobs=("a",)), jobs, 30) == 2 * 120 * 9  # attempts x polls x events
    assert worst_case_events(wf([START], jobs=("a",)), {}, 30) > HISTORY_LIMIT  # Glue's default 2880 minutes


def test_etl_plan_format_asl_prints_the_state_machine_of_the_env(project: Path) -> None:
    import json

    from tests.unit.test_config_cli import run

    wf_file = str(project / "jobs" / "nightly_trips.yaml")
    rc, out, err = run("--project-dir", str(project), "--env", "prod", "plan", wf_file, "--format", "asl")
    assert rc == 0, err
    m = json.loads(out)
    assert m["StartAt"] == "Defaults" and [k for k in m["States"] if k.startswith("Wave ")] == ["Wave 0", "Wave 1",
                                                                                                  "Wave 2"]
    start = m["States"]["Wave 1"]["Branches"][0]["States"]["trips_clean"]["Branches"][0]["States"]
    assert start["trips_clean: start job run"]["Parameters"]["JobName"] == "prod_trips_clean"  # prod's name_prefix
    assert m["States"]["Wave 1"]["Branches"][0]["States"]["trips_clean"]["Retry"][0]["MaxAttempts"] == 1
