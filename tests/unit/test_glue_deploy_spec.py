"""The translation of the YAML into Glue API parameters, the checks made before any call, the diff, and the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

from etl_framework.config.model import DeployConfig, JobConfig, WorkflowConfig
from etl_framework.deploy.build import build_wheel
from etl_framework.deploy.plan import compared, field_diff, normalize
from etl_framework.deploy.spec import (
    check_worker_settings,
    crawler_spec,
    event_rule_spec,
    job_spec,
    trigger_spec,
    workflow_spec,
)

D = DeployConfig(s3_prefix="s3://b/etl", role="arn:aws:iam::123456789012:role/r", name_prefix="p_")

WF = WorkflowConfig.model_validate({
    "workflow": "wf",
    "jobs": {"a": "a.yaml", "b": "b.yaml"},
    "crawlers": {"raw": {"path": "s3a://data/raw/trips/", "database": "raw"}},
    "triggers": [
        {"name": "go", "type": "on_demand", "actions": [{"crawler": "raw"}]},
        {"name": "any", "type": "conditional", "logical": "any",
         "conditions": [{"crawler": "raw", "state": "FAILED"}, {"job": "a", "state": "TIMEOUT"}],
         "actions": [{"job": "b", "arguments": {"x": 1.5, "on": True}, "timeout_minutes": 9}]},
        {"name": "ev", "type": "event", "watch": {"path": "s3://data/in/"}, "actions": [{"job": "a"}]},
    ],
})


def test_schema_change_policies() -> None:
    log, _ = crawler_spec("c", "s3://d/x/", "raw", None, "log", D, "wf")
    assert log["SchemaChangePolicy"] == {"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"}
    assert log["RecrawlPolicy"] == {"RecrawlBehavior": "CRAWL_NEW_FOLDERS_ONLY"}
    upd, _ = crawler_spec("c", "s3://d/x/", "raw", None, "update", D, "wf")
    assert upd["SchemaChangePolicy"] == {"UpdateBehavior": "UPDATE_IN_DATABASE",
                                         "DeleteBehavior": "DEPRECATE_IN_DATABASE"}
    # Glue rejects UPDATE_IN_DATABASE with CRAWL_NEW_FOLDERS_ONLY: an updating crawler re-crawls everything
    assert upd["RecrawlPolicy"] == {"RecrawlBehavior": "CRAWL_EVERYTHING"}
    fail, _ = crawler_spec("c", "s3://d/x/", "raw", None, "fail", D, "wf")
    assert fail["SchemaChangePolicy"] == log["SchemaChangePolicy"]


def test_crawler_table_names_follow_glue() -> None:
    same, w = crawler_spec("c", "s3a://d/raw/trips/", "raw", "trips", "log", D, "wf")
    assert "TablePrefix" not in same and w is None
    assert same["Targets"] == {"S3Targets": [{"Path": "s3://d/raw/trips/"}]}
    assert same["Name"] == "p_c"
    pre, w = crawler_spec("c", "s3://d/raw/trips/", "raw", "raw_trips", "log", D, "wf")
    assert pre["TablePrefix"] == "raw_" and w is None
    other, w = crawler_spec("c", "s3://d/raw/trips/", "raw", "journeys", "log", D, "wf")
    assert "TablePrefix" not in other and w is not None and "raw.trips" in w


def test_triggers_translate_one_to_one() -> None:
    go, anyt, ev = (trigger_spec(WF, t, D) for t in WF.triggers)
    assert go == {"Name": "p_wf__go", "WorkflowName": "p_wf", "Type": "ON_DEMAND",
                  "Actions": [{"CrawlerName": "p_raw"}]}
    assert anyt["Predicate"] == {"Logical": "ANY", "Conditions": [
        {"LogicalOperator": "EQUALS", "CrawlerName": "p_raw", "CrawlState": "FAILED"},
        {"LogicalOperator": "EQUALS", "JobName": "p_a", "State": "TIMEOUT"}]}
    assert anyt["Actions"] == [{"JobName": "p_b", "Arguments": {"--x": "1.5", "--on": "true"}, "Timeout": 9}]
    assert ev["Type"] == "EVENT" and ev["EventBatchingCondition"] == {"BatchSize": 1, "BatchWindow": 900}


def test_workflow_without_limit_leaves_max_concurrent_runs_out() -> None:
    assert "MaxConcurrentRuns" not in workflow_spec(WF, D)
    wf2 = WF.model_copy(update={"max_concurrent_runs": 2, "run_properties": {"n": 1}})
    assert workflow_spec(wf2, D) == {"Name": "p_wf", "Description": "", "DefaultRunProperties": {"n": "1"},
                                     "MaxConcurrentRuns": 2}


def _job(**extra: object) -> JobConfig:
    return JobConfig.model_validate({"job": "j", "sources": {"s": {"format": "csv", "path": "s3://d/s/"}},
                                     "target": {"path": "s3://d/t"}, **extra})


def test_job_spec_defaults_and_overrides() -> None:
    kw = {"job_uri": "s3://b/etl/project/jobs/j.yaml", "project_uri": "s3://b/etl/project/",
          "script_uri": "s3://b/etl/scripts/etl_job.py", "wheel_uri": "s3://b/etl/wheels/w.whl",
          "temp_uri": "s3://b/t/"}
    spec = job_spec(_job(), {"k": 2}, D, "prod", **kw)
    assert (spec["MaxRetries"], spec["Timeout"], spec["WorkerType"], spec["NumberOfWorkers"]) == (0, 2880, "G.1X", 2)
    assert spec["DefaultArguments"]["--k"] == "2" and spec["DefaultArguments"]["--env"] == "prod"
    spec = job_spec(_job(retries={"max_attempts": 3}, timeout_minutes=30,
                         glue={"worker_type": "G.4X", "number_of_workers": 8}), {}, D, "prod", **kw)
    assert (spec["MaxRetries"], spec["Timeout"], spec["WorkerType"], spec["NumberOfWorkers"]) == (2, 30, "G.4X", 8)


def test_the_glue_settings_people_set_reach_the_job_and_the_job_wins_over_the_env() -> None:
    kw = {"job_uri": "s3://b/etl/project/jobs/j.yaml", "project_uri": "s3://b/etl/project/",
          "script_uri": "s3://b/etl/scripts/etl_job.py", "wheel_uri": "s3://b/etl/wheels/w.whl",
          "temp_uri": "s3://b/etl/tmp/"}
    d = DeployConfig(s3_prefix="s3://b/etl", role="arn:aws:iam::123456789012:role/r", execution_class="FLEX",
                     metrics=True, spark_ui=True, continuous_logging=True, job_insights=True,
                     spark_conf={"spark.sql.shuffle.partitions": 64, "spark.sql.adaptive.enabled": True},
                     default_arguments={"--enable-auto-scaling": "true"})
    spec = job_spec(_job(), {}, d, "prod", **kw)
    args = spec["DefaultArguments"]
    assert spec["ExecutionClass"] == "FLEX"
    assert {k: args[k] for k in ("--enable-metrics", "--enable-spark-ui", "--enable-continuous-cloudwatch-log",
                                 "--enable-job-insights", "--enable-auto-scaling")} == dict.fromkeys(
        ("--enable-metrics", "--enable-spark-ui", "--enable-continuous-cloudwatch-log", "--enable-job-insights",
         "--enable-auto-scaling"), "true")
    assert args["--spark-event-logs-path"] == "s3://b/etl/sparkui/"
    assert args["--conf"].endswith(" --conf spark.sql.shuffle.partitions=64 --conf spark.sql.adaptive.enabled=true")
    assert args["--conf"].startswith("spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension")
    assert "Connections" not in spec
    own = job_spec(_job(glue={"execution_class": "STANDARD", "metrics": False, "connections": ["vpc-a"],
                              "spark_conf": {"spark.sql.shuffle.partitions": 8}}), {}, d, "prod", **kw)
    assert own["ExecutionClass"] == "STANDARD" and own["DefaultArguments"]["--enable-metrics"] == "false"
    assert own["Connections"] == {"Connections": ["vpc-a"]}
    assert own["DefaultArguments"]["--conf"].endswith("spark.sql.shuffle.partitions=8 --conf "
                                                      "spark.sql.adaptive.enabled=true")
    plain = job_spec(_job(), {}, D, "prod", **kw)
    assert "ExecutionClass" not in plain and not any(k.startswith("--enable-") and k != "--enable-glue-datacatalog"
                                                     for k in plain["DefaultArguments"])


def test_default_arguments_cannot_override_what_the_framework_sets(tmp_path: Path) -> None:
    from etl_framework.config.errors import ConfigErrors
    from etl_framework.config.project import Project

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "prod.yaml").write_text(
        "deploy:\n  s3_prefix: s3://b/etl\n  role: arn:aws:iam::1:role/r\n"
        "  default_arguments: {'--job_config': s3://x/y.yaml}\n")
    try:
        Project.discover(tmp_path).env_config("prod")
    except ConfigErrors as e:
        text = str(e)
    else:
        raise AssertionError("accepted")
    assert "prod.yaml:4:" in text and "--job_config" in text and "set by the framework" in text


def test_worker_settings_glue_rejects(tmp_path: Path) -> None:
    env_file = tmp_path / "prod.yaml"
    env_file.write_text("deploy:\n  s3_prefix: s3://b/etl\n  worker_type: Z.2X\n  glue_version: '4.0'\n")
    spec = {"Name": "p_j", "WorkerType": "Z.2X", "NumberOfWorkers": 1, "GlueVersion": "4.0"}
    errors = check_worker_settings(spec, "jobs/j.yaml", {"number_of_workers": (7, 22)}, env_file, "conf/prod.yaml")
    text = [str(e) for e in errors]
    assert text[0].startswith("conf/prod.yaml:3:3: Glue job p_j: worker type Z.2X is for Ray jobs")
    assert text[1].startswith("jobs/j.yaml:7:22: Glue job p_j: number_of_workers 1 is below")
    assert text[2].startswith("conf/prod.yaml:4:3: Glue 4.0 runs Spark 3.3")
    ok = {"Name": "p_j", "WorkerType": "G.2X", "NumberOfWorkers": 2, "GlueVersion": "5.0"}
    assert check_worker_settings(ok, "j", {}, env_file, "e") == []


def test_diff_ignores_what_glue_leaves_empty_and_names_changed_fields() -> None:
    spec = {"Name": "n", "Role": "r", "DefaultArguments": {"--a": "1", "--b": "2"}, "Description": ""}
    actual = {"Name": "n", "Role": "r", "DefaultArguments": {"--a": "1", "--b": "3"}, "Description": None,
              "CreatedOn": "x", "MaxCapacity": 2.0}
    want, have = compared("job", spec, actual)
    assert field_diff(want, have) == {"DefaultArguments.--b": ("3", "2")}
    assert normalize({"a": {}, "b": [], "c": None, "d": {"e": None}}) == {}


def test_the_wheel_is_reproducible_installable_and_leaves_glue_provided_packages_out(tmp_path: Path) -> None:
    a, b = build_wheel(), build_wheel()
    assert a.data == b.data and a.filename == "etl_framework-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(BytesIO(a.data)) as zf:
        meta = zf.read("etl_framework-0.1.0.dist-info/METADATA").decode()
        names = zf.namelist()
    assert "Requires-Dist: great-expectations==1.24.1" in meta
    for provided in ("pyspark", "delta-spark", "boto3", "pandas", "numpy", "pyarrow"):
        assert f"Requires-Dist: {provided}" not in meta
    assert "etl_framework/runtime/args.py" in names and not any("__pycache__" in n for n in names)
    whl = tmp_path / a.filename
    whl.write_bytes(a.data)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                    str(target), str(whl)], check=True, capture_output=True)
    code = "import sys; sys.path.insert(0, sys.argv[1]); import etl_framework.runtime.args as m; print(m.__file__)"
    out = subprocess.run([sys.executable, "-I", "-c", code, str(target)],
                         check=True, capture_output=True, text=True).stdout
    assert out.startswith(str(target))
    assert (target / "bin" / "etl").is_file()  # the console script


def test_event_rule_watches_the_path_and_pattern() -> None:
    import json

    rule = event_rule_spec("p_wf__ev", "s3a://data/in", "*.csv", "p_wf", D)
    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.s3"], "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": ["data"]}, "object": {"key": [{"wildcard": "in/*.csv"}]}}}
    assert rule["State"] == "ENABLED"
    assert rule["Targets"] == [{"Id": "glue-workflow", "RoleArn": D.role,
                                "Arn": "arn:{partition}:glue:{region}:{account}:workflow/p_wf"}]
    every = event_rule_spec("r", "s3://data/in/", "*", "p_wf", D, enabled=False)
    assert json.loads(every["EventPattern"])["detail"]["object"] == {"key": [{"prefix": "in/"}]}
    assert every["State"] == "DISABLED"


def test_the_project_names_its_tags_and_its_own_upload_prefix(tmp_path: Path) -> None:
    from etl_framework.deploy.spec import DesiredState, default_project_name, project_name

    named = D.model_copy(update={"project": "trips"})
    assert project_name(tmp_path, named) == ("trips", True)
    assert project_name(tmp_path / "My Lake.ETL", D) == ("my-lake-etl", False)  # the directory's name, made valid
    assert default_project_name(tmp_path / "__") == "project"
    state = DesiredState(env="prod", deploy=named, project="trips")
    assert state.tags == {"etl:managed-by": "etl_framework", "etl:project": "trips", "etl:env": "prod"}
    assert state.s3_root == "s3://b/etl/trips/prod"
    assert DesiredState(env="dev", deploy=named, project="trips").s3_root == "s3://b/etl/trips/dev"


def test_a_project_name_that_cannot_be_a_tag_and_a_key_is_a_config_error(tmp_path: Path) -> None:
    import pytest

    from etl_framework.config.errors import ConfigErrors
    from etl_framework.config.project import Project

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "prod.yaml").write_text(
        "deploy:\n  project: Trips/Prod\n  s3_prefix: s3://b/etl\n  role: arn:aws:iam::123456789012:role/r\n")
    with pytest.raises(ConfigErrors) as e:
        Project(tmp_path).env_config("prod")
    assert "prod.yaml:2:" in str(e.value) and "project" in str(e.value)


def test_a_prune_that_deletes_more_than_it_creates_needs_confirmation() -> None:
    from etl_framework.deploy.plan import Change, Plan

    def plan(creates: int, orphans: int) -> Plan:
        return Plan([Change("job", f"c{i}", "create") for i in range(creates)]
                    + [Change("job", f"o{i}", "orphan") for i in range(orphans)])

    assert plan(0, 1).prunes_more_than_it_creates
    assert not plan(1, 1).prunes_more_than_it_creates  # a rename
    assert not plan(0, 0).prunes_more_than_it_creates


def test_init_names_the_project_in_its_cloud_env(tmp_path: Path) -> None:
    from etl_framework.cli.init import create_project
    from etl_framework.config.project import Project

    create_project(tmp_path / "sales_etl")
    deploy = Project(tmp_path / "sales_etl").env_config("dev").deploy
    assert deploy is not None and deploy.project == "sales_etl"


def test_a_glue_workflow_gets_one_start_trigger_and_the_others_start_runs() -> None:
    """AWS Glue: "each workflow has a start trigger". The event trigger is it (Glue batches its events); a second
    schedule calls StartWorkflowRun through EventBridge Scheduler; on demand is StartWorkflowRun itself."""
    from etl_framework.deploy.spec import start_run_schedule_spec
    from etl_framework.workflow_graph import WorkflowGraph

    starts = [{"name": "go", "type": "on_demand", "actions": [{"crawler": "raw"}]},
              {"name": "nightly", "type": "scheduled", "schedule": "cron(0 2 * * ? *)", "actions": [{"crawler": "raw"}]},
              {"name": "files", "type": "event", "watch": {"path": "s3://d/in/"}, "actions": [{"crawler": "raw"}]}]
    wf = WorkflowConfig.model_validate({"workflow": "wf", "jobs": {"a": "a.yaml"},
                                        "crawlers": {"raw": {"path": "s3://d/raw/", "database": "raw"}},
                                        "triggers": starts})
    primary, others = WorkflowGraph(wf).glue_start()
    assert primary is not None and primary.name == "files" and [t.name for t in others] == ["go", "nightly"]
    assert WorkflowGraph(wf).glue_problems() == []
    no_event = wf.model_copy(update={"triggers": wf.triggers[:2]})
    primary, others = WorkflowGraph(no_event).glue_start()
    assert primary is not None and primary.name == "nightly" and [t.name for t in others] == ["go"]
    spec = start_run_schedule_spec(wf, wf.triggers[1], D, "p_etl-proj-prod")
    assert spec["Target"]["Arn"] == "arn:{partition}:scheduler:::aws-sdk:glue:startWorkflowRun"
    assert spec["ScheduleExpression"] == "cron(0 2 * * ? *)" and spec["GroupName"] == "p_etl-proj-prod"

    # start triggers that start different nodes cannot share one Glue workflow: said, naming the trigger
    other = WorkflowConfig.model_validate({**wf.model_dump(exclude_none=True), "triggers": [
        starts[0], {**starts[1], "actions": [{"job": "a"}]}, starts[2],
        {**starts[2], "name": "more_files", "watch": {"path": "s3://d/more/"}}]})
    problems = dict(WorkflowGraph(other).glue_problems())
    assert set(problems) == {1, 3}
    assert "trigger 'nightly' starts other nodes than 'files'" in problems[1]
    assert "orchestrator: step_functions" in problems[1]
    assert "one event trigger" in problems[3]


def test_user_tags_reach_every_resource_and_ownership_tags_cannot_be_overridden() -> None:
    import pytest
    from pydantic import ValidationError

    from etl_framework.deploy.spec import DesiredState, Resource

    d = DeployConfig(s3_prefix="s3://b/etl", role="r", tags={"team": "data", "cost-center": "42"})
    state = DesiredState(env="prod", deploy=d, project="proj")
    job = Resource("job", "p_a", {}, tags={"team": "trips", "tier": "gold"})
    assert state.tags_for(job) == {"team": "trips", "cost-center": "42", "tier": "gold",
                                   "etl:managed-by": "etl_framework", "etl:project": "proj", "etl:env": "prod"}
    assert state.tags_for(Resource("crawler", "p_c", {}))["team"] == "data"
    for bad in ({"etl:project": "x"}, {"aws:cloudformation": "x"}, {"k" * 129: "v"},
                {f"t{i}": "v" for i in range(48)}):
        with pytest.raises(ValidationError):
            DeployConfig(s3_prefix="s3://b/etl", role="r", tags=bad)
