"""`etl deploy` with `deploy: {orchestrator: step_functions}` against a moto server that executes state machines
(opt-in: POST /moto-api/config), so the deployed definition is the one that runs: deploy the example project, start
an execution, wait for it, and check from moto's Glue job runs that every job ran with its arguments in an order the
graph allows, and that the execution SUCCEEDED with every node's state in its output."""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.e2e.test_deploy_glue import REGION, ROLE_NAME, client, deploy, wheel  # noqa: F401 - wheel: fixture

pytestmark = pytest.mark.slow


def _post(url: str, path: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()


@pytest.fixture(scope="module")
def sfn_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from moto.moto_api import recorder
    from moto.server import ThreadedMotoServer

    recorder._location = str(tmp_path_factory.mktemp("moto") / "recording.jsonl")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    old = os.environ.get("MOTO_PORT")
    os.environ["MOTO_PORT"] = str(port)  # moto's Step Functions integrations call back into this server
    url = f"http://{host}:{port}"
    _post(url, "/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
    # moto advances a crawl only when told; a real Glue crawl ends by itself
    _post(url, "/moto-api/state-manager/set-transition",
          {"model_name": "glue::crawl", "transition": {"progression": "immediate"}})
    yield url
    server.stop()
    if old is None:
        os.environ.pop("MOTO_PORT", None)
    else:
        os.environ["MOTO_PORT"] = old


@pytest.fixture
def sfn_cloud(project: Path, sfn_url: str, wheel: Path) -> dict[str, Any]:  # noqa: F811 - the imported fixture
    tag = uuid.uuid4().hex[:8]
    bucket, prefix = f"artifacts-{tag}", f"t{tag}_"
    conf = YAML().load((project / "conf" / "prod.yaml").read_text())
    conf["aws"] = {"region": REGION, "endpoint_url": sfn_url}
    conf["deploy"].update({"s3_prefix": f"s3://{bucket}/etl", "name_prefix": prefix,
                           "orchestrator": "step_functions", "poll_seconds": 1})
    with (project / "conf" / "prod.yaml").open("w") as f:
        YAML().dump(conf, f)
    (project / "scripts").mkdir(exist_ok=True)
    (project / "scripts" / "etl_job.py").write_text("# entry script placeholder\n")
    client("s3", sfn_url).create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    iam = client("iam", sfn_url)
    try:
        iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument="{}")
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    return {"root": project, "url": sfn_url, "bucket": bucket, "prefix": prefix, "wheel": wheel,
            "glue": client("glue", sfn_url), "sfn": client("stepfunctions", sfn_url)}


def run_execution(cloud: dict[str, Any], name: str, payload: dict[str, Any],
                  machine: str = "nightly_trips") -> dict[str, Any]:
    sfn = cloud["sfn"]
    arn = next(m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]
               if m["name"] == cloud["prefix"] + machine)
    ex = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(payload))["executionArn"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        d = sfn.describe_execution(executionArn=ex)
        if d["status"] != "RUNNING":
            return d
        time.sleep(0.5)
    raise AssertionError("the execution did not end in 120 s")


def test_step_functions_deploy_runs_the_example_workflow_on_moto(sfn_cloud: dict[str, Any]) -> None:
    r = deploy(sfn_cloud, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    kinds = {c["kind"] for c in out["changes"] if c["action"] == "create"}
    assert {"state_machine", "schedule", "event_rule", "job", "crawler"} <= kinds
    assert not kinds & {"workflow", "trigger"}  # no Glue workflow with step_functions
    g, p = sfn_cloud["glue"], sfn_cloud["prefix"]
    assert g.get_job(JobName=p + "trips_clean")["Job"]["MaxRetries"] == 0  # Retry lives in the state machine
    url, sfn = sfn_cloud["url"], sfn_cloud["sfn"]
    [machine] = [m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == p + "nightly_trips"]
    arn = machine["stateMachineArn"]
    tags = {t["key"]: t["value"] for t in sfn.list_tags_for_resource(resourceArn=arn)["tags"]}
    assert tags == {"etl:managed-by": "etl_framework", "etl:project": "nyc_trips", "etl:env": "prod"}
    sch = client("scheduler", url).get_schedule(Name=p + "nightly_trips__nightly", GroupName=f"{p}etl-nyc_trips-prod")
    assert (sch["ScheduleExpression"], sch["ScheduleExpressionTimezone"]) == ("cron(0 2 * * ? *)", "UTC")
    assert sch["Target"]["Arn"] == arn and json.loads(sch["Target"]["Input"]) == {"trigger": "nightly"}
    [target] = client("events", url).list_targets_by_rule(Rule=p + "nightly_trips__on_new_files")["Targets"]
    assert target["Arn"] == arn and '"trigger": "on_new_files"' in target["InputTransformer"]["InputTemplate"]
    assert any("batching (10 files or 900 s)" in w for w in out["warnings"])  # not kept, and said so

    again = deploy(sfn_cloud, "--json")  # idempotent
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["summary"].get("create", 0) == 0
    assert not json.loads(again.stdout)["applied"]

    # a job's retries change: the dry run shows the state machine's definition diff, and changes nothing
    job_file = sfn_cloud["root"] / "jobs" / "zones_load.yaml"
    job_file.write_text(job_file.read_text() + "\nretries: {max_attempts: 4, backoff_seconds: 2}\n")
    dry = deploy(sfn_cloud, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    [sm] = [c for c in json.loads(dry.stdout)["changes"] if c["kind"] == "state_machine"]
    assert sm["action"] == "update" and any(ln.startswith("+") and '"MaxAttempts": 3' in ln for ln in sm["diff"])
    assert "definition:" in dry.stderr and "MaxAttempts" in dry.stderr
    assert deploy(sfn_cloud).returncode == 0
    assert '"MaxAttempts":3' in sfn_cloud["sfn"].describe_state_machine(stateMachineArn=next(
        m["stateMachineArn"] for m in sfn_cloud["sfn"].list_state_machines()["stateMachines"]
        if m["name"] == p + "nightly_trips"))["definition"]

    d = run_execution(sfn_cloud, "run-1", {"trigger": "start", "run_properties": {"region": "eu"}})
    assert d["status"] == "SUCCEEDED", d
    nodes = json.loads(d["output"])["nodes"]
    assert {n: v["state"] for n, v in nodes.items()} == {
        "raw_trips": "SUCCEEDED", "zones_load": "SUCCEEDED", "trips_clean": "SUCCEEDED", "trip_stats": "SUCCEEDED"}
    runs = {j: g.get_job_runs(JobName=p + j)["JobRuns"] for j in ("zones_load", "trips_clean", "trip_stats")}
    assert all(len(v) == 1 for v in runs.values())
    args = {j: v[0]["Arguments"] for j, v in runs.items()}
    assert args["trips_clean"]["--min_distance"] == "0.1"  # the action's arguments
    for j in runs:
        assert args[j]["--WORKFLOW_RUN_ID"] == "run-1" and args[j]["--WORKFLOW_NAME"] == p + "nightly_trips"
        assert args[j]["--run_properties_uri"].endswith("/runs/nightly_trips/run-1.json")
    started = {j: v[0]["StartedOn"] for j, v in runs.items()}
    crawl = g.get_crawler(Name=p + "raw_trips")["Crawler"]["LastCrawl"]
    assert crawl["StartTime"] <= min(started.values())
    # the `and` join: trip_stats starts strictly after both (their polls' Wait lies between)
    assert started["trip_stats"] > max(started["zones_load"], started["trips_clean"])
    props = json.loads(client("s3", sfn_cloud["url"]).get_object(
        Bucket=sfn_cloud["bucket"], Key="etl/nyc_trips/prod/runs/nightly_trips/run-1.json")["Body"].read())
    assert props == {"region": "eu"}


GATE = """workflow: model_gate
jobs: {zones_load: zones_load.yaml, trip_stats: trip_stats.yaml}
triggers:
  - {name: start, type: on_demand, actions: [{job: zones_load}]}
  - name: good_enough
    type: conditional
    conditions:
      - {job: zones_load, state: SUCCEEDED}
      - {property: auc, op: ">=", value: 0.8}
    actions: [{job: trip_stats}]
"""


def test_property_condition_deploys_as_a_choice_that_takes_the_right_branch(sfn_cloud: dict[str, Any]) -> None:
    (sfn_cloud["root"] / "jobs" / "model_gate.yaml").write_text(GATE)
    r = deploy(sfn_cloud, "--json")
    assert r.returncode == 0, r.stderr
    g, p = sfn_cloud["glue"], sfn_cloud["prefix"]
    outcomes = {}
    for name, auc in (("good", 0.91), ("bad", 0.5), ("none", None)):
        payload: dict[str, Any] = {"run_properties": {} if auc is None else {"auc": auc}}
        d = run_execution(sfn_cloud, name, payload, machine="model_gate")
        assert d["status"] == "SUCCEEDED", d
        outcomes[name] = json.loads(d["output"])["nodes"]
    assert outcomes["good"]["trip_stats"]["state"] == "SUCCEEDED"
    assert outcomes["bad"]["trip_stats"] == {"state": "NOT_RUN"}
    assert outcomes["none"]["trip_stats"]["why"] == "run property auc is not set"  # false, and recorded why
    runs = g.get_job_runs(JobName=p + "trip_stats")["JobRuns"]
    assert [jr["Arguments"]["--WORKFLOW_RUN_ID"] for jr in runs] == ["good"]  # only the good run started it
    assert len(g.get_job_runs(JobName=p + "zones_load")["JobRuns"]) == 3
    bad = run_execution(sfn_cloud, "bad-trigger", {"trigger": "nope"}, machine="model_gate")
    assert (bad["status"], bad.get("error")) == ("FAILED", "UnknownTrigger")  # as the engine refuses it

    # the workflow file goes: --prune deletes its state machine (tagged as this project's), nothing else
    (sfn_cloud["root"] / "jobs" / "model_gate.yaml").unlink()
    pruned = deploy(sfn_cloud, "--prune", "--yes", "--json")
    assert pruned.returncode == 0, pruned.stderr
    deleted = {(c["kind"], c["name"]) for c in json.loads(pruned.stdout)["applied"] if c["action"] == "delete"}
    bucket = sfn_cloud["bucket"]
    assert deleted == {("state_machine", p + "model_gate"),
                       ("artifact", f"s3://{bucket}/etl/nyc_trips/prod/project/jobs/model_gate.yaml")}
    names = {m["name"] for m in sfn_cloud["sfn"].list_state_machines()["stateMachines"]}
    assert p + "nightly_trips" in names and p + "model_gate" not in names


def test_a_failed_node_is_caught_its_failed_condition_fires_and_an_any_join_starts_once(sfn_url: str) -> None:
    """Executed on moto: job `a` cannot start (no such Glue job: startJobRun fails), the node's Catch records it
    FAILED, the FAILED-condition starts `b`, and the `any` join over `a` and `b` starts `c` once; the execution
    SUCCEEDS (Glue: COMPLETED with a failed node) with every node's state in its output."""
    from etl_framework.config.model import WorkflowConfig
    from etl_framework.deploy.asl import definition_json, state_machine

    tag = uuid.uuid4().hex[:8]
    wf = WorkflowConfig(workflow="shapes", jobs={"a": "a.yaml", "b": "b.yaml", "c": "c.yaml"}, triggers=[
        {"name": "start", "type": "on_demand", "actions": [{"job": "a"}]},
        {"name": "on_fail", "type": "conditional", "conditions": [{"job": "a", "state": "FAILED"}],
         "actions": [{"job": "b"}]},
        {"name": "either", "type": "conditional", "logical": "any",
         "conditions": [{"job": "a", "state": "SUCCEEDED"}, {"job": "b", "state": "SUCCEEDED"}],
         "actions": [{"job": "c"}]}])
    bucket = f"runs-{tag}"
    client("s3", sfn_url).create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    g = client("glue", sfn_url)
    for j in ("b", "c"):
        g.create_job(Name=f"{tag}_{j}", Role="arn:aws:iam::123456789012:role/r",
                     Command={"Name": "glueetl", "ScriptLocation": f"s3://{bucket}/x.py"})
    machine = state_machine(wf, prefix=f"{tag}_", poll_seconds=1, properties_root=f"s3://{bucket}/runs")
    sfn = client("stepfunctions", sfn_url)
    arn = sfn.create_state_machine(name=f"{tag}_shapes", definition=definition_json(machine),
                                   roleArn="arn:aws:iam::123456789012:role/r")["stateMachineArn"]
    ex = sfn.start_execution(stateMachineArn=arn, name="r1", input="{}")["executionArn"]
    deadline = time.monotonic() + 120
    while (d := sfn.describe_execution(executionArn=ex))["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert d["status"] == "SUCCEEDED", d
    nodes = json.loads(d["output"])["nodes"]
    assert nodes["a"]["state"] == "FAILED" and nodes["a"]["error"] == "Glue.EntityNotFoundException"
    assert (nodes["b"]["state"], nodes["b"]["trigger"]) == ("SUCCEEDED", "on_fail")
    assert (nodes["c"]["state"], nodes["c"]["trigger"]) == ("SUCCEEDED", "either")
    assert len(g.get_job_runs(JobName=f"{tag}_c")["JobRuns"]) == 1  # the any join started it once
