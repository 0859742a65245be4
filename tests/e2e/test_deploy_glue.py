"""`etl deploy` end to end: the example project deployed by the CLI to a real moto server on 127.0.0.1, read back
with boto3, and the moto server's own request recording as the witness of which calls were made."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.conftest import REPO

REGION = "eu-west-1"
ROLE_NAME = "etl-framework-prod-glue"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
WRITE_PREFIXES = ("Create", "Update", "Delete", "Put", "Start", "Stop", "Tag", "Untag", "Batch")


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from moto.moto_api import recorder
    from moto.server import ThreadedMotoServer

    recorder._location = str(tmp_path_factory.mktemp("moto") / "recording.jsonl")  # not the working dir
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def client(service: str, url: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


class Recording:
    """The moto server's request log between start() and requests()."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _post(self, what: str) -> bytes:
        return urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/recorder/{what}",
                                                             method="POST" if what != "download-recording"
                                                             else "GET")).read()

    def start(self) -> None:
        self._post("reset-recording")
        self._post("start-recording")

    def requests(self) -> list[str]:
        """'Glue:CreateJob' style names; S3 as 'S3:PUT /key'."""
        self._post("stop-recording")
        out = []
        for line in self._post("download-recording").decode().splitlines():
            if not line.strip():
                continue
            e = json.loads(line)
            target = e["headers"].get("X-Amz-Target")
            body = e.get("body") or ""
            if e.get("body_encoded"):
                body = base64.b64decode(body).decode("utf-8", "replace")
            if target:  # AWSGlue.CreateJob, DynamoDB_20120810.DescribeTable
                service, op = target.split(".", 1)
                out.append(f"{service.replace('AWSGlue', 'Glue')}:{op}")
            elif "Action=" in body:  # STS / IAM query protocol
                action = next(p for p in body.split("&") if p.startswith("Action="))[7:]
                out.append(f"Query:{action}")
            else:
                out.append(f"S3:{e['method']} {e['url'].split('?')[0]}")
        return out

    def writes(self) -> list[str]:
        reqs = self.requests()
        return [r for r in reqs if r.split(":", 1)[1].startswith(WRITE_PREFIXES)
                or r.startswith(("S3:PUT", "S3:POST", "S3:DELETE"))]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once: the working tree may change under a long test run, and each deploy would then upload anew."""
    from etl_framework.deploy.build import build_wheel

    w = build_wheel()
    path = tmp_path_factory.mktemp("wheel") / w.filename
    path.write_bytes(w.data)
    return path


@pytest.fixture
def cloud(project: Path, moto_url: str, wheel: Path) -> dict[str, Any]:
    """The example project with a prod env on the moto server: its own bucket and name prefix per test."""
    tag = uuid.uuid4().hex[:8]
    bucket = f"artifacts-{tag}"
    prefix = f"t{tag}_"
    conf = YAML().load((project / "conf" / "prod.yaml").read_text())
    conf["aws"] = {"region": REGION, "endpoint_url": moto_url}
    conf["deploy"]["s3_prefix"] = f"s3://{bucket}/etl"
    conf["deploy"]["name_prefix"] = prefix
    with (project / "conf" / "prod.yaml").open("w") as f:
        YAML().dump(conf, f)
    entry = REPO / "scripts" / "etl_job.py"
    (project / "scripts").mkdir(exist_ok=True)
    if entry.is_file():
        shutil.copy(entry, project / "scripts" / "etl_job.py")
    else:  # the runtime engineer's entry script may not be there yet
        (project / "scripts" / "etl_job.py").write_text("# entry script placeholder\n")
    client("s3", moto_url).create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    iam = client("iam", moto_url)
    try:
        iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument="{}")
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    return {"root": project, "url": moto_url, "bucket": bucket, "prefix": prefix,
            "glue": client("glue", moto_url), "s3": client("s3", moto_url), "rec": Recording(moto_url),
            "wheel": wheel}


def etl(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    base.update(env if env is not None else CREDS)
    return subprocess.run([sys.executable, "-c", "from etl_framework.cli import main; main()",
                           "--project-dir", str(root), *args], check=False, capture_output=True, text=True,
                          env=base,
                          timeout=120)


def deploy(cloud: dict[str, Any], *args: str, env: dict[str, str] | None = None,
           build: bool = False) -> subprocess.CompletedProcess[str]:
    wheel = [] if build else ["--wheel", str(cloud["wheel"])]
    return etl(cloud["root"], "deploy", "--env", "prod", *wheel, *args, env=env)


def yaml_of(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def test_deploy_creates_every_resource_as_the_yaml_says(cloud: dict[str, Any]) -> None:
    r = deploy(cloud, "--json", build=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["changed"] and not out["dry_run"]
    g, p, root = cloud["glue"], cloud["prefix"], cloud["root"]
    s3uri = f"s3://{cloud['bucket']}/etl/nyc_trips/prod"  # <s3_prefix>/<deploy.project>/<env>
    assert (out["project"], out["s3_root"]) == ("nyc_trips", s3uri)

    # jobs
    for name in ("trips_clean", "zones_load", "trip_stats"):
        src = yaml_of(root / "jobs" / f"{name}.yaml")
        job = g.get_job(JobName=p + name)["Job"]
        assert job["Command"] == {"Name": "glueetl", "ScriptLocation": f"{s3uri}/scripts/etl_job.py",
                                  "PythonVersion": "3"}
        assert job["GlueVersion"] == "5.0"
        assert (job["WorkerType"], job["NumberOfWorkers"]) == ("G.2X", 5)  # conf/prod.yaml
        assert job["Role"] == f"arn:aws:iam::123456789012:role/{ROLE_NAME}"
        assert job["MaxRetries"] == src.get("retries", {}).get("max_attempts", 1) - 1
        assert job["ExecutionProperty"] == {"MaxConcurrentRuns": 1}  # nightly_trips: max_concurrent_runs 1
        assert job["Timeout"] == src.get("timeout_minutes", 2880)
        args = job["DefaultArguments"]
        # the formats the job uses (its quarantine is Delta); Iceberg's session extension where it writes Iceberg
        iceberg = src["target"].get("format") == "iceberg"
        assert args["--datalake-formats"] == ("delta,iceberg" if iceberg else "delta")
        assert ("IcebergSparkSessionExtensions" in args["--conf"]) == iceberg
        assert args["--additional-python-modules"] == f"{s3uri}/wheels/etl_framework-0.1.0-py3-none-any.whl"
        assert args["--extra-jars"] == f"{s3uri}/jars/etl-framework-spark.jar"  # the quality gate's side output
        assert args["--job_config"] == f"{s3uri}/project/jobs/{name}.yaml"
        assert args["--env"] == "prod"
        for k, v in (src.get("params") or {}).items():
            assert args[f"--{k}"] == str(v)
    assert g.get_job(JobName=p + "trips_clean")["Job"]["MaxRetries"] == 1

    # crawler
    wf_src = yaml_of(root / "jobs" / "nightly_trips.yaml")
    crawler = g.get_crawler(Name=p + "raw_trips")["Crawler"]
    assert crawler["Targets"] == {"S3Targets": [{"Path": "s3://etl-framework-prod-data/raw/trips/"}]}
    assert crawler["DatabaseName"] == "raw"
    assert crawler["SchemaChangePolicy"] == {"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"}
    assert crawler["RecrawlPolicy"] == {"RecrawlBehavior": "CRAWL_NEW_FOLDERS_ONLY"}
    assert {d["Name"] for d in g.get_databases()["DatabaseList"]} >= {"raw", "curated"}

    # workflow
    wf = g.get_workflow(Name=p + "nightly_trips")["Workflow"]
    assert wf["MaxConcurrentRuns"] == wf_src["max_concurrent_runs"]
    assert wf["DefaultRunProperties"] == {k: str(v) for k, v in wf_src["run_properties"].items()}

    # triggers, 1:1 with the YAML but for the start triggers: Glue gives a workflow one start trigger, the event
    # trigger here; the schedule calls StartWorkflowRun through EventBridge Scheduler; on demand is StartWorkflowRun
    crawlers = set(wf_src["crawlers"])
    starts = [t for t in wf_src["triggers"] if t["type"] != "conditional"]
    assert [t["type"] for t in starts] == ["on_demand", "scheduled", "event"]
    listed = set(g.list_triggers()["TriggerNames"])
    assert f"{p}nightly_trips__start" not in listed and f"{p}nightly_trips__nightly" not in listed
    sch = client("scheduler", cloud["url"]).get_schedule(Name=f"{p}nightly_trips__nightly",
                                                         GroupName=f"{p}etl-nyc_trips-prod")
    assert sch["ScheduleExpression"] == starts[1]["schedule"] and sch["ScheduleExpressionTimezone"] == "UTC"
    assert sch["Target"]["Arn"] == "arn:aws:scheduler:::aws-sdk:glue:startWorkflowRun"
    assert json.loads(sch["Target"]["Input"]) == {
        "Name": p + "nightly_trips",
        "RunProperties": {"scheduled_time": "<aws.scheduler.scheduled-time>", "trigger": "nightly"}}
    assert sch["Target"]["RoleArn"] == f"arn:aws:iam::123456789012:role/{ROLE_NAME}"
    assert sch["State"] == "ENABLED"
    for t in wf_src["triggers"]:
        if t["name"] in ("start", "nightly"):
            continue
        got = g.get_trigger(Name=f"{p}nightly_trips__{t['name']}")["Trigger"]
        assert got["WorkflowName"] == p + "nightly_trips"
        assert got["Type"] == t["type"].upper()
        want_actions = []
        for a in t["actions"]:
            if "crawler" in a:
                want_actions.append({"CrawlerName": p + a["crawler"]})
            else:
                act: dict[str, Any] = {"JobName": p + a["job"]}
                if a.get("arguments"):
                    act["Arguments"] = {f"--{k}": str(v) for k, v in a["arguments"].items()}
                want_actions.append(act)
        assert got["Actions"] == want_actions
        if t["type"] == "scheduled":
            assert got["Schedule"] == t["schedule"]
            assert got["State"] == "ACTIVATED"
        if t["type"] == "conditional":
            conds = []
            for c in t["conditions"]:
                if "crawler" in c:
                    assert c["crawler"] in crawlers
                    conds.append({"LogicalOperator": "EQUALS", "CrawlerName": p + c["crawler"],
                                  "CrawlState": c["state"]})
                else:
                    conds.append({"LogicalOperator": "EQUALS", "JobName": p + c["job"], "State": c["state"]})
            assert got["Predicate"] == {"Logical": {"and": "AND", "any": "ANY"}[t.get("logical", "and")],
                                        "Conditions": conds}
        if t["type"] == "event":
            assert got["EventBatchingCondition"] == {"BatchSize": t["batch"]["size"],
                                                     "BatchWindow": t["batch"]["window_seconds"]}
            assert got["State"] != "ACTIVATED"  # Glue cannot start an EVENT trigger: the rule turns it on
            # and the EventBridge rule that feeds it: new files under the watched path, matching its pattern
            ev = client("events", cloud["url"])
            rule = ev.describe_rule(Name=f"{p}nightly_trips__{t['name']}")
            pattern = json.loads(rule["EventPattern"])
            assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
            assert pattern["detail"] == {"bucket": {"name": ["etl-framework-prod-data"]},
                                         "object": {"key": [{"wildcard": "raw/trips/" + t["watch"]["pattern"]}]}}
            target = ev.list_targets_by_rule(Rule=rule["Name"])["Targets"]
            assert [(x["Arn"], x["RoleArn"]) for x in target] == [
                (f"arn:aws:glue:{REGION}:123456789012:workflow/{p}nightly_trips",
                 f"arn:aws:iam::123456789012:role/{ROLE_NAME}")]

    # the DynamoDB state table of the env (conf/prod.yaml: state.backend dynamodb)
    ddb = client("dynamodb", cloud["url"])
    table = ddb.describe_table(TableName="etl_prod_state")["Table"]
    assert {k["AttributeName"] for k in table["KeySchema"]} == {"pk", "sk"}

    # every resource carries the project's and env's tags: what --prune goes by
    ours = {"etl:managed-by": "etl_framework", "etl:project": "nyc_trips", "etl:env": "prod"}
    arn = f"arn:aws:glue:{REGION}:123456789012"
    for kind, name in [("job", p + "trips_clean"), ("crawler", p + "raw_trips"), ("workflow", p + "nightly_trips"),
                       ("trigger", f"{p}nightly_trips__after_crawl")]:
        assert g.get_tags(ResourceArn=f"{arn}:{kind}/{name}")["Tags"] == ours, (kind, name)
    ev = client("events", cloud["url"])
    rule_arn = ev.describe_rule(Name=f"{p}nightly_trips__on_new_files")["Arn"]
    assert {t["Key"]: t["Value"] for t in ev.list_tags_for_resource(ResourceARN=rule_arn)["Tags"]} == ours

    # artifacts, under the project's and env's own prefix
    keys = {o["Key"] for o in cloud["s3"].list_objects_v2(Bucket=cloud["bucket"])["Contents"]}
    assert all(k.startswith("etl/nyc_trips/prod/") for k in keys)
    assert {"etl/nyc_trips/prod/scripts/etl_job.py", "etl/nyc_trips/prod/wheels/etl_framework-0.1.0-py3-none-any.whl",
            "etl/nyc_trips/prod/jars/etl-framework-spark.jar",
            "etl/nyc_trips/prod/project/conf/prod.yaml", "etl/nyc_trips/prod/project/jobs/trips_clean.yaml",
            "etl/nyc_trips/prod/project/jobs/nightly_trips.yaml"} <= keys
    assert not any("/conf/local.yaml" in k or "/conf/dev.yaml" in k for k in keys)  # only the deployed env


def test_second_deploy_reports_no_change_and_makes_no_write_call(cloud: dict[str, Any]) -> None:
    assert deploy(cloud).returncode == 0
    cloud["rec"].start()
    r = deploy(cloud, "--json")
    writes = cloud["rec"].writes()
    assert r.returncode == 0, r.stderr
    assert "nothing to change" in r.stderr
    assert writes == []
    out = json.loads(r.stdout)
    assert out["changed"] is False and out["write_calls"] == 0
    assert set(out["summary"]) == {"unchanged"}


def test_the_glue_job_settings_people_set_are_deployed_and_read_back(cloud: dict[str, Any]) -> None:
    prod = cloud["root"] / "conf" / "prod.yaml"
    conf = YAML().load(prod.read_text())
    conf["deploy"].update({"execution_class": "FLEX", "metrics": True, "spark_ui": True, "job_insights": True,
                           "spark_conf": {"spark.sql.shuffle.partitions": 64},
                           "default_arguments": {"--enable-auto-scaling": "true"},
                           "tags": {"team": "data", "cost-center": "42"}})
    with prod.open("w") as f:
        YAML().dump(conf, f)
    job_file = cloud["root"] / "jobs" / "trip_stats.yaml"
    job_file.write_text(job_file.read_text() + "glue: {execution_class: STANDARD, connections: [vpc-lake], "
                                               "tags: {team: marts, tier: gold}}\n")
    assert deploy(cloud).returncode == 0
    # the user's tags on every resource, the job's own over the env's, beside the ownership tags
    arn, p = f"arn:aws:glue:{REGION}:123456789012", cloud["prefix"]
    ours = {"etl:managed-by": "etl_framework", "etl:project": "nyc_trips", "etl:env": "prod"}
    assert cloud["glue"].get_tags(ResourceArn=f"{arn}:job/{p}trip_stats")["Tags"] == {
        **ours, "team": "marts", "cost-center": "42", "tier": "gold"}
    for kind, name in [("job", p + "trips_clean"), ("crawler", p + "raw_trips"), ("workflow", p + "nightly_trips"),
                       ("trigger", f"{p}nightly_trips__after_crawl")]:
        assert cloud["glue"].get_tags(ResourceArn=f"{arn}:{kind}/{name}")["Tags"] == {
            **ours, "team": "data", "cost-center": "42"}, (kind, name)
    ev = client("events", cloud["url"])
    rule_arn = ev.describe_rule(Name=f"{p}nightly_trips__on_new_files")["Arn"]
    assert {t["Key"]: t["Value"] for t in ev.list_tags_for_resource(ResourceARN=rule_arn)["Tags"]}["team"] == "data"
    s3uri = f"s3://{cloud['bucket']}/etl/nyc_trips/prod"
    job = cloud["glue"].get_job(JobName=cloud["prefix"] + "trips_clean")["Job"]
    args = job["DefaultArguments"]
    assert job["ExecutionClass"] == "FLEX"
    assert [args[k] for k in ("--enable-metrics", "--enable-spark-ui", "--enable-job-insights",
                              "--enable-auto-scaling")] == ["true"] * 4
    assert args["--spark-event-logs-path"] == f"{s3uri}/sparkui/"
    assert args["--conf"].endswith(" --conf spark.sql.shuffle.partitions=64")
    stats = cloud["glue"].get_job(JobName=cloud["prefix"] + "trip_stats")["Job"]
    assert stats["ExecutionClass"] == "STANDARD" and stats["Connections"] == {"Connections": ["vpc-lake"]}
    again = deploy(cloud)
    assert again.returncode == 0 and "nothing to change" in again.stderr, again.stderr
    # a changed tag value is an update by TagResource, nothing re-created
    prod.write_text(prod.read_text().replace("cost-center: '42'", "cost-center: '43'").replace(
        "cost-center: \"42\"", "cost-center: \"43\""))
    cloud["rec"].start()
    assert deploy(cloud).returncode == 0
    writes = cloud["rec"].writes()
    assert "Glue:TagResource" in writes and not [w for w in writes if any(
        v in w for v in ("Create", "Delete", "Update", "Put"))], writes
    assert cloud["glue"].get_tags(ResourceArn=f"{arn}:job/{p}trips_clean")["Tags"]["cost-center"] == "43"


def test_dry_run_after_a_yaml_change_shows_exactly_that_change_and_changes_nothing(cloud: dict[str, Any]) -> None:
    assert deploy(cloud).returncode == 0
    job_file = cloud["root"] / "jobs" / "zones_load.yaml"
    job_file.write_text(job_file.read_text() + "glue: {number_of_workers: 10}\n")
    cloud["rec"].start()
    r = deploy(cloud, "--dry-run", "--json")
    assert cloud["rec"].writes() == []
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    changed = [c for c in out["changes"] if c["action"] != "unchanged"]
    name = cloud["prefix"] + "zones_load"
    [job] = [c for c in changed if c["kind"] != "artifact"]
    assert job.pop("spec")["NumberOfWorkers"] == 10  # the whole job as it will be, beside the diff
    assert job == {"kind": "job", "name": name, "action": "update",
                   "fields": {"NumberOfWorkers": {"from": 5, "to": 10}}}
    assert [c["name"] for c in changed if c["kind"] == "artifact"] == [
        f"s3://{cloud['bucket']}/etl/nyc_trips/prod/project/jobs/zones_load.yaml"]
    assert "NumberOfWorkers: 5 -> 10" in r.stderr and "nothing was changed" in r.stderr
    assert f"= unchanged job      {cloud['prefix']}trips_clean" in r.stderr
    assert cloud["glue"].get_job(JobName=name)["Job"]["NumberOfWorkers"] == 5

    r = deploy(cloud)
    assert r.returncode == 0, r.stderr
    assert cloud["glue"].get_job(JobName=name)["Job"]["NumberOfWorkers"] == 10
    r = deploy(cloud)
    assert "nothing to change" in r.stderr


def test_orphans_are_listed_and_removed_only_with_prune(cloud: dict[str, Any]) -> None:
    root, g, p = cloud["root"], cloud["glue"], cloud["prefix"]
    extra = root / "jobs" / "zones_copy.yaml"
    extra.write_text((root / "jobs" / "zones_load.yaml").read_text().replace("job: zones_load", "job: zones_copy"))
    assert deploy(cloud).returncode == 0
    assert g.get_job(JobName=p + "zones_copy")["Job"]["Name"] == p + "zones_copy"
    # someone else's job with our prefix but without our tags is never touched
    g.create_job(Name=p + "handmade", Role="r", Command={"Name": "glueetl", "ScriptLocation": "s3://x/y.py"})
    extra.unlink()
    wf = root / "jobs" / "nightly_trips.yaml"
    doc = YAML().load(wf.read_text())
    doc["triggers"] = [t for t in doc["triggers"] if t["name"] != "on_new_files"]
    with wf.open("w") as f:
        YAML().dump(doc, f)

    r = deploy(cloud, "--json")
    assert r.returncode == 0, r.stderr
    orphans = {(c["kind"], c["name"]) for c in json.loads(r.stdout)["changes"] if c["action"] == "orphan"}
    # without the event trigger, the schedule is the Glue workflow's start trigger: its EventBridge Scheduler
    # schedule (StartWorkflowRun) is an orphan, found in the project's own schedule group
    assert orphans == {("job", p + "zones_copy"), ("trigger", f"{p}nightly_trips__on_new_files"),
                       ("event_rule", f"{p}nightly_trips__on_new_files"),
                       ("schedule", f"{p}etl-nyc_trips-prod/{p}nightly_trips__nightly"),
                       ("artifact", f"s3://{cloud['bucket']}/etl/nyc_trips/prod/project/jobs/zones_copy.yaml")}
    assert "--prune" in r.stderr
    assert p + "zones_copy" in g.list_jobs()["JobNames"]

    r = deploy(cloud, "--prune", "--yes")  # 5 to delete, 1 to create (the nightly Glue trigger): confirmed
    assert r.returncode == 0, r.stderr
    names = g.list_jobs()["JobNames"]
    assert p + "zones_copy" not in names and p + "handmade" in names and p + "trips_clean" in names
    assert f"{p}nightly_trips__on_new_files" not in g.list_triggers()["TriggerNames"]
    assert not client("events", cloud["url"]).list_rules(NamePrefix=f"{p}nightly_trips__on_new")["Rules"]
    assert g.get_trigger(Name=f"{p}nightly_trips__nightly")["Trigger"]["Type"] == "SCHEDULED"
    assert not client("scheduler", cloud["url"]).list_schedules(GroupName=f"{p}etl-nyc_trips-prod")["Schedules"]
    assert "nothing to change" in deploy(cloud).stderr


def _nothing_created(cloud: dict[str, Any]) -> None:
    p = cloud["prefix"]
    assert not [n for n in cloud["glue"].list_jobs()["JobNames"] if n.startswith(p)]
    assert not [n for n in cloud["glue"].list_workflows()["Workflows"] if n.startswith(p)]
    assert "Contents" not in cloud["s3"].list_objects_v2(Bucket=cloud["bucket"])


def test_missing_credentials_is_a_clear_message_and_nothing_is_created(cloud: dict[str, Any], tmp_path: Path) -> None:
    no_creds = {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
                "AWS_EC2_METADATA_DISABLED": "true"}
    r = deploy(cloud, env=no_creds)
    assert r.returncode == 1
    assert "no AWS credentials found" in r.stderr and "Traceback" not in r.stderr
    _nothing_created(cloud)


def test_missing_role_is_a_clear_message_and_nothing_is_created(cloud: dict[str, Any]) -> None:
    conf = cloud["root"] / "conf" / "prod.yaml"
    conf.write_text(conf.read_text().replace(ROLE_NAME, "no-such-role"))
    r = deploy(cloud)
    assert r.returncode == 1
    assert "IAM role arn:aws:iam::123456789012:role/no-such-role does not exist" in r.stderr
    _nothing_created(cloud)


def test_missing_bucket_is_a_clear_message(cloud: dict[str, Any]) -> None:
    conf = cloud["root"] / "conf" / "prod.yaml"
    conf.write_text(conf.read_text().replace(cloud["bucket"], "no-such-bucket-here"))
    r = deploy(cloud)
    assert r.returncode == 1
    assert "S3 bucket no-such-bucket-here" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    _nothing_created(cloud)


def test_worker_settings_glue_would_reject_are_caught_before_any_call(cloud: dict[str, Any]) -> None:
    job_file = cloud["root"] / "jobs" / "zones_load.yaml"
    job_file.write_text(job_file.read_text() + "glue:\n  worker_type: G.025X\n  number_of_workers: 1\n")
    cloud["rec"].start()
    r = deploy(cloud)
    assert cloud["rec"].requests() == []  # not a single AWS call
    assert r.returncode == 2, r.stderr
    n = len(job_file.read_text().splitlines())
    assert f"zones_load.yaml:{n - 1}:16: Glue job {cloud['prefix']}zones_load: worker type G.025X is for " \
           "streaming jobs" in r.stderr
    assert f"zones_load.yaml:{n}:22:" in r.stderr and "below Glue's minimum of 2" in r.stderr


def test_local_paths_cannot_be_deployed(cloud: dict[str, Any]) -> None:
    conf = cloud["root"] / "conf" / "prod.yaml"
    conf.write_text(conf.read_text().replace("s3://etl-framework-prod-data/raw", "../data/raw"))
    r = deploy(cloud)
    assert r.returncode == 2
    assert "is not on S3" in r.stderr and "trips_clean.yaml" in r.stderr


def _aws_with_fault(monkeypatch: pytest.MonkeyPatch, cloud: dict[str, Any], api: str, fault: Any) -> Any:
    """The deploy's own clients, with `fault(params)` run before every `api` call (a botocore hook)."""
    from etl_framework.deploy.plan import Aws

    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    aws = Aws(REGION, cloud["url"])
    aws.glue.meta.events.register(f"before-parameter-build.glue.{api}", lambda params, **kw: fault(params))
    return aws


def test_glue_api_error_names_the_call_and_resource_and_the_next_deploy_completes(
        cloud: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    from etl_framework.config.project import Project
    from etl_framework.deploy.plan import DeployError
    from etl_framework.deploy.run import deploy as run_deploy

    bad = f"{cloud['prefix']}nightly_trips__after_curated"

    def fault(params: dict[str, Any]) -> None:
        if params["Name"] == bad:
            raise ClientError({"Error": {"Code": "InvalidInputException", "Message": "Predicate is invalid"}},
                              "CreateTrigger")

    project = Project(cloud["root"])
    aws = _aws_with_fault(monkeypatch, cloud, "CreateTrigger", fault)
    with pytest.raises(DeployError) as e:
        run_deploy(project, "prod", aws=aws, wheel_path=cloud["wheel"])
    msg = str(e.value)
    assert f"Glue CreateTrigger for trigger {bad} failed: InvalidInputException: Predicate is invalid" in msg
    assert "run `etl deploy` again" in msg
    triggers = cloud["glue"].list_triggers()["TriggerNames"]
    assert bad not in triggers and f"{cloud['prefix']}nightly_trips__after_crawl" in triggers

    r = deploy(cloud, "--json")  # the CLI, a new process, no fault
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    created = {c["name"] for c in out["applied"]}
    assert bad in created
    assert f"{cloud['prefix']}trips_clean" not in created  # made by the first deploy: left alone
    assert "nothing to change" in deploy(cloud).stderr


def test_a_deploy_killed_in_the_middle_is_completed_by_the_next(cloud: dict[str, Any],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from etl_framework.config.project import Project
    from etl_framework.deploy.run import deploy as run_deploy

    calls: list[str] = []

    def fault(params: dict[str, Any]) -> None:
        calls.append(params["Name"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a Ctrl-C between two API calls

    aws = _aws_with_fault(monkeypatch, cloud, "CreateJob", fault)
    with pytest.raises(KeyboardInterrupt):
        run_deploy(Project(cloud["root"]), "prod", aws=aws, wheel_path=cloud["wheel"])
    jobs = [n for n in cloud["glue"].list_jobs()["JobNames"] if n.startswith(cloud["prefix"])]
    assert len(jobs) == 1
    assert not [t for t in cloud["glue"].list_triggers()["TriggerNames"] if t.startswith(cloud["prefix"])]

    r = deploy(cloud, "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)["summary"]
    assert summary["unchanged"] >= 1 + 10  # the first job and every uploaded file stayed
    n_jobs = sum(1 for f in (cloud["root"] / "jobs").glob("*.yaml") if f.read_text().startswith(("job:", "#")) and
                 "\njob:" in "\n" + f.read_text())
    assert summary["create"] == (n_jobs - 1) + 1 + 1 + 5 + 1  # the other jobs, crawler, workflow, 5 triggers, rule
    jobs = [n for n in cloud["glue"].list_jobs()["JobNames"] if n.startswith(cloud["prefix"])]
    assert len(jobs) == n_jobs
    assert "nothing to change" in deploy(cloud).stderr


def test_secrets_stay_placeholders_in_glue_and_on_s3(cloud: dict[str, Any]) -> None:
    job_file = cloud["root"] / "jobs" / "zones_load.yaml"
    text = job_file.read_text()
    assert "params:" not in text
    job_file.write_text(text.replace("job: zones_load\n", "job: zones_load\nparams: {api_key: '${secret:ZONES_KEY}'}\n"))
    r = deploy(cloud, env={**CREDS, "ZONES_KEY": "hunter2-very-secret"})
    assert r.returncode == 0, r.stderr
    args = cloud["glue"].get_job(JobName=cloud["prefix"] + "zones_load")["Job"]["DefaultArguments"]
    assert args["--api_key"] == "${secret:ZONES_KEY}"  # resolved by the job at run time, never deployed
    assert "hunter2" not in r.stderr
    for o in cloud["s3"].list_objects_v2(Bucket=cloud["bucket"])["Contents"]:
        if not o["Key"].endswith(".whl"):
            assert b"hunter2" not in cloud["s3"].get_object(Bucket=cloud["bucket"], Key=o["Key"])["Body"].read()


def test_an_env_without_deploy_block_is_a_usage_error(cloud: dict[str, Any]) -> None:
    r = etl(cloud["root"], "deploy", "--env", "local")
    assert r.returncode == 2
    assert "conf/local.yaml has no 'deploy:' block" in r.stderr and "Traceback" not in r.stderr


def test_workflow_concurrency_reaches_its_jobs(cloud: dict[str, Any]) -> None:
    assert deploy(cloud).returncode == 0
    wf = cloud["root"] / "jobs" / "nightly_trips.yaml"
    wf.write_text(wf.read_text().replace("max_concurrent_runs: 1", "max_concurrent_runs: 3"))
    r = deploy(cloud, "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    p = cloud["prefix"]
    glue_changes = {(c["name"], f, v["from"], v["to"]) for c in json.loads(r.stdout)["changes"]
                    if c["action"] == "update" and c["kind"] != "artifact" for f, v in c["fields"].items()}
    assert glue_changes == {(p + "nightly_trips", "MaxConcurrentRuns", 1, 3)} | {
        (p + j, "ExecutionProperty.MaxConcurrentRuns", 1, 3) for j in ("trips_clean", "zones_load", "trip_stats")}


# ------------------------------------------------------------------------------------------ prune: only our own

FLEET = {"nightly_trips": "fleet_nightly", "trips_clean": "fleet_clean", "zones_load": "fleet_zones",
         "trip_stats": "fleet_stats", "raw_trips": "raw_fleet", "shop_orders": "fleet_orders"}


def _second_project(cloud: dict[str, Any], root: Path, name: str, rename: bool = True) -> dict[str, Any]:
    """Another project in the same account: same env name, bucket, s3_prefix and name_prefix, its own
    `deploy.project`; with `rename`, its own job, workflow and crawler names."""
    shutil.copytree(cloud["root"], root)
    if rename:
        for f in sorted((root / "jobs").glob("*.yaml")):
            text = f.read_text()
            for a, b in FLEET.items():
                text = text.replace(a, b)
            f.unlink()
            (root / "jobs" / f"{FLEET.get(f.stem, f.stem)}.yaml").write_text(text)
    conf = root / "conf" / "prod.yaml"
    conf.write_text(conf.read_text().replace("project: nyc_trips", f"project: {name}"))
    return {**cloud, "root": root}


def _footprint(cloud: dict[str, Any], jobs: list[str], crawler: str, workflow: str, s3_root: str) -> dict[str, Any]:
    """Everything of one project a user would look at: each Glue resource as Get* returns it (a re-created one
    differs), its tags, and each S3 object under its prefix with its ETag."""
    g, p, ev = cloud["glue"], cloud["prefix"], client("events", cloud["url"])
    arn = f"arn:aws:glue:{REGION}:123456789012"
    get = {"job": lambda n: g.get_job(JobName=n)["Job"], "crawler": lambda n: g.get_crawler(Name=n)["Crawler"],
           "workflow": lambda n: g.get_workflow(Name=n)["Workflow"], "trigger": lambda n: g.get_trigger(Name=n)["Trigger"]}
    triggers = [t[len(p):] for t in g.list_triggers()["TriggerNames"] if t.startswith(f"{p}{workflow}__")]
    out: dict[str, Any] = {}
    for kind, names in (("job", jobs), ("crawler", [crawler]), ("workflow", [workflow]), ("trigger", triggers)):
        for n in names:
            out[f"{kind} {p}{n}"] = (get[kind](p + n), g.get_tags(ResourceArn=f"{arn}:{kind}/{p}{n}")["Tags"])
    for rule in ev.list_rules(NamePrefix=f"{p}{workflow}__")["Rules"]:
        out[f"rule {rule['Name']}"] = rule
    sch, group = client("scheduler", cloud["url"]), f"{p}etl-{s3_root.split('/')[1]}-prod"
    for x in sch.list_schedules(GroupName=group)["Schedules"]:  # the schedules beside the Glue start trigger
        got = sch.get_schedule(Name=x["Name"], GroupName=group)
        out[f"schedule {x['Name']}"] = {k: v for k, v in got.items() if k != "ResponseMetadata"}
    objs = cloud["s3"].list_objects_v2(Bucket=cloud["bucket"], Prefix=s3_root).get("Contents", [])
    out["s3"] = {o["Key"]: (o["ETag"], o["LastModified"]) for o in objs}
    return out


def test_prune_in_one_project_leaves_another_projects_resources_alone(cloud: dict[str, Any], tmp_path: Path) -> None:
    root, g, p = cloud["root"], cloud["glue"], cloud["prefix"]
    fleet = _second_project(cloud, tmp_path / "fleet", "fleet")
    extra = root / "jobs" / "zones_copy.yaml"
    extra.write_text((root / "jobs" / "zones_load.yaml").read_text().replace("job: zones_load", "job: zones_copy"))
    assert deploy(cloud).returncode == 0
    r = deploy(fleet, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["s3_root"] == f"s3://{cloud['bucket']}/etl/fleet/prod"
    # neither sees the other's resources as its own orphans
    for proj in (cloud, fleet):
        r = deploy(proj, "--prune", "--dry-run", "--json")
        assert r.returncode == 0, r.stderr
        assert [c for c in json.loads(r.stdout)["changes"] if c["action"] != "unchanged"] == []
    fleet_of = ([FLEET["trips_clean"], FLEET["zones_load"], FLEET["trip_stats"]], FLEET["raw_trips"],
                FLEET["nightly_trips"], "etl/fleet/prod/")
    before = _footprint(cloud, *fleet_of)
    # 5 triggers in the YAML: the event start trigger and the 2 conditional ones are Glue triggers, the schedule
    # an EventBridge Scheduler schedule, on demand is StartWorkflowRun
    assert len([k for k in before if k.startswith("trigger ")]) == 3 and len(before["s3"]) >= 8
    assert {"crawler " + p + "raw_fleet", "workflow " + p + "fleet_nightly",
            f"trigger {p}fleet_nightly__after_curated", f"rule {p}fleet_nightly__on_new_files",
            f"schedule {p}fleet_nightly__nightly"} <= set(before)
    ours_of = (["trips_clean", "zones_load", "trip_stats"], "raw_trips", "nightly_trips", "etl/nyc_trips/prod/")
    mine = _footprint(cloud, *ours_of)

    extra.unlink()  # the job leaves nyc_trips
    cloud["rec"].start()
    r = deploy(cloud, "--prune", "--yes", "--json")
    writes = cloud["rec"].writes()
    assert r.returncode == 0, r.stderr
    assert {(c["kind"], c["name"], c["action"]) for c in json.loads(r.stdout)["applied"]} == {
        ("job", p + "zones_copy", "delete"),
        ("artifact", f"s3://{cloud['bucket']}/etl/nyc_trips/prod/project/jobs/zones_copy.yaml", "delete")}
    assert len(writes) == 2 and writes[0] == "Glue:DeleteJob"
    assert writes[1].startswith("S3:DELETE") and writes[1].endswith("/etl/nyc_trips/prod/project/jobs/zones_copy.yaml")
    assert p + "zones_copy" not in g.list_jobs()["JobNames"]
    # the other project: every job, crawler, workflow, trigger, rule and file as it was
    assert _footprint(cloud, *fleet_of) == before
    # and ours, apart from the dropped job's file
    after = _footprint(cloud, *ours_of)
    del mine["s3"]["etl/nyc_trips/prod/project/jobs/zones_copy.yaml"]
    assert after == mine
    assert "nothing to change" in deploy(fleet, "--prune").stderr


def test_a_prune_that_deletes_more_than_it_creates_asks_for_yes(cloud: dict[str, Any]) -> None:
    root, g, p = cloud["root"], cloud["glue"], cloud["prefix"]
    extra = root / "jobs" / "zones_copy.yaml"
    extra.write_text((root / "jobs" / "zones_load.yaml").read_text().replace("job: zones_load", "job: zones_copy"))
    assert deploy(cloud).returncode == 0
    extra.unlink()

    r = deploy(cloud, "--prune", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["needs_yes"] is True
    assert "without --dry-run it needs --yes" in r.stderr

    cloud["rec"].start()
    r = deploy(cloud, "--prune")
    assert cloud["rec"].writes() == []  # refused before any write
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "deploy --prune would delete 2 resources of project 'nyc_trips', env 'prod', and create 0" in r.stderr
    assert f"  - job {p}zones_copy\n" in r.stderr
    assert f"  - artifact s3://{cloud['bucket']}/etl/nyc_trips/prod/project/jobs/zones_copy.yaml\n" in r.stderr
    assert "run again with --yes" in r.stderr
    assert p + "zones_copy" in g.list_jobs()["JobNames"]

    # a rename deletes no more than it creates: no question asked
    renamed = root / "jobs" / "zones_copy2.yaml"
    renamed.write_text((root / "jobs" / "zones_load.yaml").read_text().replace("job: zones_load", "job: zones_copy2"))
    r = deploy(cloud, "--prune", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["needs_yes"] is False
    names = g.list_jobs()["JobNames"]
    assert p + "zones_copy2" in names and p + "zones_copy" not in names


def test_missing_tags_are_added_by_the_next_deploy(cloud: dict[str, Any]) -> None:
    g, p = cloud["glue"], cloud["prefix"]
    assert deploy(cloud).returncode == 0
    arn = f"arn:aws:glue:{REGION}:123456789012"
    g.untag_resource(ResourceArn=f"{arn}:job/{p}zones_load", TagsToRemove=["etl:project"])  # as deployed before
    g.untag_resource(ResourceArn=f"{arn}:trigger/{p}nightly_trips__after_crawl",
                     TagsToRemove=["etl:project", "etl:env"])

    r = deploy(cloud, "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    changed = {c["name"]: c.get("fields") for c in json.loads(r.stdout)["changes"] if c["action"] != "unchanged"}
    assert changed == {p + "zones_load": {"Tags.etl:project": {"from": None, "to": "nyc_trips"}},
                       f"{p}nightly_trips__after_crawl": {"Tags.etl:env": {"from": None, "to": "prod"},
                                                          "Tags.etl:project": {"from": None, "to": "nyc_trips"}}}
    cloud["rec"].start()
    r = deploy(cloud)
    assert r.returncode == 0, r.stderr
    assert cloud["rec"].writes() == ["Glue:TagResource", "Glue:TagResource"]  # tagged, not re-created
    assert g.get_tags(ResourceArn=f"{arn}:trigger/{p}nightly_trips__after_crawl")["Tags"]["etl:project"] == "nyc_trips"
    assert "nothing to change" in deploy(cloud).stderr


def test_a_resource_of_another_project_is_never_taken_over(cloud: dict[str, Any], tmp_path: Path) -> None:
    p = cloud["prefix"]
    assert deploy(cloud).returncode == 0
    twin = _second_project(cloud, tmp_path / "twin", "twin", rename=False)  # the same job names: a clash
    cloud["rec"].start()
    r = deploy(twin)
    assert cloud["rec"].writes() == []
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "would take over resources that another project or env deployed; nothing was deployed" in r.stderr
    assert f"job {p}trips_clean belongs to project 'nyc_trips', env 'prod' (etl:project=nyc_trips)" in r.stderr
    assert "deploy.name_prefix" in r.stderr
    arn = f"arn:aws:glue:{REGION}:123456789012:job/{p}trips_clean"
    assert cloud["glue"].get_tags(ResourceArn=arn)["Tags"]["etl:project"] == "nyc_trips"
