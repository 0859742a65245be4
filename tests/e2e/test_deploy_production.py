"""`etl deploy` for production on a real moto server on 127.0.0.1: the alerting rules (EventBridge on Glue's state
change events of exactly the project's jobs, and on the jobs' own quality events, to SNS), checked with
TestEventPattern and with a PutEvents that reaches an SQS target; and the bad input: an SNS topic in another
region, a KMS alias that does not exist (nothing written), a dynamic secret name under `iam: generate`."""

from __future__ import annotations

import json
import textwrap
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from etl_framework.config.errors import ConfigErrors
from tests.e2e.test_deploy_glue import REGION, client, moto_url  # noqa: F401 - a moto server per module

ACCOUNT = "123456789012"


@pytest.fixture
def proj(tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:  # noqa: F811
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    tag = uuid.uuid4().hex[:8]
    bucket = f"prodart-{tag}"
    client("s3", moto_url).create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    role = client("iam", moto_url).create_role(RoleName=f"glue-{tag}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    topic = client("sns", moto_url).create_topic(Name=f"alerts-{tag}")["TopicArn"]
    root = tmp_path / "proj"
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    for name in ("orders", "customers"):
        (root / "jobs" / f"{name}.yaml").write_text(textwrap.dedent(f"""
            job: {name}
            sources: {{src: {{format: csv, path: "s3://data-{tag}/raw/{name}/"}}}}
            target: {{format: delta, path: "s3://data-{tag}/lake/{name}"}}
        """))
    whl = tmp_path / "etl_framework-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("etl_framework-0.0.0.dist-info/METADATA", "Name: etl_framework\n")
    return {"root": root, "tag": tag, "bucket": bucket, "role": role, "topic": topic, "url": moto_url,
            "wheel": whl}


def write_env(p: dict[str, Any], deploy_extra: str = "", notifications: str | None = None) -> None:
    n = notifications if notifications is not None else f'notifications: {{sns: "{p["topic"]}"}}'
    (p["root"] / "conf" / "prod.yaml").write_text(textwrap.dedent(f"""
        aws: {{region: {REGION}, endpoint_url: "{p['url']}"}}
        deploy:
          project: prodtest
          s3_prefix: s3://{p['bucket']}/etl
          name_prefix: "t{p['tag']}_"
          role: "{p['role']}"
        """) + textwrap.indent(deploy_extra, "  ") + "\n" + n + "\n")


def do_deploy(p: dict[str, Any], **kw: Any) -> Any:
    from etl_framework.config.project import Project
    from etl_framework.deploy.run import deploy

    return deploy(Project(p["root"]), "prod", wheel_path=p["wheel"], **kw)


def glue_event(job: str, state: str) -> str:
    return json.dumps({
        "version": "0", "id": "3c8b8a2e-0000-0000-0000-000000000000", "detail-type": "Glue Job State Change",
        "source": "aws.glue", "account": ACCOUNT, "time": "2026-12-02T03:00:00Z", "region": REGION,
        "resources": [], "detail": {"jobName": job, "severity": "ERROR", "state": state,
                                    "jobRunId": "jr_0123", "message": "boom"}})


def test_alert_rules_match_exactly_the_projects_jobs_and_deliver(proj: dict[str, Any]) -> None:
    (proj["root"] / "jobs" / "customers.yaml").write_text(
        (proj["root"] / "jobs" / "customers.yaml").read_text() + "notifications: {events: [failed, succeeded]}\n")
    write_env(proj, deploy_extra="alarms: [{metric: rows_written, below: 1, period_minutes: 1440}]\n",
              notifications=f'notifications: {{sns: "{proj["topic"]}", late_after_minutes: 90}}')
    do_deploy(proj)
    ev, prefix = client("events", proj["url"]), f"t{proj['tag']}_"
    alarms = client("cloudwatch", proj["url"]).describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]
    assert sorted((a["MetricName"], a["Namespace"], a["ComparisonOperator"], a["Threshold"], a["AlarmActions"][0],
                   {d["Name"]: d["Value"] for d in a["Dimensions"]}["job"]) for a in alarms) == [
        ("RowsWritten", "etl_framework", "LessThanThreshold", 1.0, proj["topic"], job)
        for job in ("customers", "orders")]
    rules = {r["Name"]: r for r in ev.list_rules(NamePrefix=f"{prefix}etl-prodtest-prod-alert")["Rules"]}
    # orders (failed, timeout), customers (its own: failed + succeeded), quality, late
    assert len(rules) == 4, sorted(rules)
    job = client("glue", proj["url"]).get_job(JobName=prefix + "orders")["Job"]
    assert job["NotificationProperty"] == {"NotifyDelayAfter": 90}  # Glue's own "late" event

    def matching(event: str) -> list[str]:
        """TestEventPattern of each rule; moto 5.2 answers it with nothing, so its own matcher decides then
        (events.models.EventPattern: the one that routes PutEvents to the targets)."""
        from moto.events.models import EventPattern

        out = []
        for n, r in rules.items():
            got = ev.test_event_pattern(EventPattern=r["EventPattern"], Event=event)
            hit = got["Result"] if "Result" in got else \
                EventPattern.load(r["EventPattern"]).matches_event(json.loads(event))
            if hit:
                out.append(n)
        return sorted(out)

    assert len(matching(glue_event(prefix + "orders", "FAILED"))) == 1
    assert len(matching(glue_event(prefix + "orders", "TIMEOUT"))) == 1
    assert matching(glue_event(prefix + "orders", "SUCCEEDED")) == []  # succeeded is opt-in
    assert len(matching(glue_event(prefix + "customers", "SUCCEEDED"))) == 1  # the job's own override
    assert matching(glue_event("another_team_orders", "FAILED")) == []  # exactly the project's jobs
    assert matching(glue_event(prefix + "orders_backup", "FAILED")) == []
    quality = json.dumps({"version": "0", "id": "1", "detail-type": "Quality Gate Result", "source": "etl_framework",
                          "account": ACCOUNT, "time": "2026-12-02T03:00:00Z", "region": REGION, "resources": [],
                          "detail": {"job": "orders", "env": "prod", "run_id": "r1", "state": "FAILED",
                                     "notify": True, "summary": "1 of 5 rows broke not_null(id)"}})
    assert len(matching(quality)) == 1
    late = json.dumps({"version": "0", "id": "2", "detail-type": "Glue Job Run Status", "source": "aws.glue",
                       "account": ACCOUNT, "time": "2026-12-02T03:00:00Z", "region": REGION, "resources": [],
                       "detail": {"jobName": prefix + "orders", "jobRunId": "jr_1", "state": "RUNNING",
                                  "message": "Job run exceeded the notify delay of 90 minutes"}})
    assert len(matching(late)) == 1
    for name in rules:  # the SNS topic is every rule's target, with a readable message
        (target,) = ev.list_targets_by_rule(Rule=name)["Targets"]
        assert target["Arn"] == proj["topic"] and "<job>" in target["InputTransformer"]["InputTemplate"]

    # moto delivers EventBridge to SQS, not SNS (its SNS delivery fails): the deployed rule, its SNS target swapped
    # for an SQS queue with the same input transformer, receives a sample failure as the readable line
    sqs = client("sqs", proj["url"])
    queue = sqs.create_queue(QueueName=f"alerts-{proj['tag']}")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    (failed_rule,) = matching(glue_event(prefix + "orders", "FAILED"))
    (sns_target,) = ev.list_targets_by_rule(Rule=failed_rule)["Targets"]
    ev.remove_targets(Rule=failed_rule, Ids=["sns"])
    ev.put_targets(Rule=failed_rule, Targets=[{**sns_target, "Id": "sqs-probe", "Arn": qarn}])
    sample = json.loads(glue_event(prefix + "orders", "FAILED"))
    ev.put_events(Entries=[{"Source": "aws.glue", "DetailType": "Glue Job State Change",
                            "Detail": json.dumps(sample["detail"])}])
    msgs = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2).get("Messages", [])
    assert len(msgs) == 1
    assert json.loads(msgs[0]["Body"]).endswith(f"Glue job {prefix}orders run jr_0123 FAILED: boom")
    ev.put_events(Entries=[{"Source": "aws.glue", "DetailType": "Glue Job State Change",
                            "Detail": json.dumps({**sample["detail"], "jobName": "another_team_orders"})}])
    assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", []) == []

    # the next deploy puts the SNS target back (the rules are part of the diff), and then nothing is left to do
    ev.remove_targets(Rule=failed_rule, Ids=["sqs-probe"])
    assert [c.name for c in do_deploy(proj).applied] == [failed_rule]
    assert ev.list_targets_by_rule(Rule=failed_rule)["Targets"][0]["Arn"] == proj["topic"]
    assert not do_deploy(proj, dry_run=True).plan.pending  # the rules are part of the idempotent diff


def test_an_sns_topic_in_another_region_is_a_config_error(proj: dict[str, Any]) -> None:
    other = f"arn:aws:sns:us-west-2:{ACCOUNT}:alerts"
    write_env(proj, notifications=f'notifications: {{sns: "{other}"}}')
    with pytest.raises(ConfigErrors) as e:
        do_deploy(proj)
    (err,) = e.value.errors
    assert err.file.endswith("prod.yaml") and err.line > 1
    assert "us-west-2" in err.message and REGION in err.message


def test_a_kms_alias_that_does_not_exist_fails_before_any_write(proj: dict[str, Any]) -> None:
    from etl_framework.deploy.plan import DeployError

    write_env(proj, deploy_extra=f"kms_key: alias/missing-{proj['tag']}\n")
    with pytest.raises(DeployError) as e:
        do_deploy(proj)
    assert f"alias/missing-{proj['tag']}" in str(e.value) and "nothing was deployed" in str(e.value)
    assert client("s3", proj["url"]).list_objects_v2(Bucket=proj["bucket"]).get("KeyCount") == 0
    assert not [j for j in client("glue", proj["url"]).list_jobs()["JobNames"] if proj["tag"] in j]


def test_a_dynamic_secret_name_cannot_be_granted(proj: dict[str, Any]) -> None:
    import subprocess
    import sys

    (proj["root"] / "jobs" / "orders.yaml").write_text(textwrap.dedent(f"""
        job: orders
        params: {{tenant: acme}}
        sources:
          src:
            format: csv
            path: "s3://data-{proj['tag']}/raw/orders/"
            options: {{nullValue: "${{secret:token_${{params.tenant}}}}"}}
        target: {{format: delta, path: "s3://data-{proj['tag']}/lake/orders"}}
    """))
    write_env(proj)
    conf = proj["root"] / "conf" / "prod.yaml"
    conf.write_text(conf.read_text().replace(f'role: "{proj["role"]}"', "iam: generate"))
    etl = str(Path(sys.executable).parent / "etl")
    done = subprocess.run([etl, "--env", "prod", "validate"],
                          cwd=proj["root"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    line = next(ln for ln in done.stderr.splitlines() if "params.tenant" in ln)
    assert line.startswith("jobs/orders.yaml:8:") and "job orders, key sources.src.options.nullValue" in line


def test_dry_run_and_iam_show_print_the_generated_policies(proj: dict[str, Any]) -> None:
    import os
    import subprocess
    import sys

    write_env(proj)
    conf = proj["root"] / "conf" / "prod.yaml"
    conf.write_text(conf.read_text().replace(f'role: "{proj["role"]}"', "iam: generate"))
    etl = str(Path(sys.executable).parent / "etl")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    shown = subprocess.run([etl, "--env", "prod", "iam", "show", "orders", "--account", ACCOUNT],
                           cwd=proj["root"], capture_output=True, text=True, timeout=120, check=False, env=env)
    assert shown.returncode == 0, shown.stderr
    role = json.loads(shown.stdout)
    assert role["role"] == f"t{proj['tag']}_etl-prodtest-prod-job-orders" and role["purpose"] == "job:orders"
    assert role["arn"] == f"arn:aws:iam::{ACCOUNT}:role/etl/{role['role']}"
    written = next(s for s in role["policy"]["Statement"] if s["Sid"] == "WriteTablesObjects")
    assert written["Resource"] == [f"arn:aws:s3:::data-{proj['tag']}/lake/orders",
                                   f"arn:aws:s3:::data-{proj['tag']}/lake/orders/*"]

    dry = subprocess.run([etl, "--env", "prod", "deploy", "--dry-run", "--wheel", str(proj["wheel"])],
                         cwd=proj["root"], capture_output=True, text=True, timeout=120, check=False, env=env)
    assert dry.returncode == 0, dry.stderr
    assert f"create    role     t{proj['tag']}_etl-prodtest-prod-job-orders" in dry.stderr
    assert dry.stderr.count("      policy:") == 2  # one per job role (no crawlers, no orchestrator here)
    assert f'"arn:aws:s3:::data-{proj["tag"]}/lake/orders/*"' in dry.stderr
    roles = client("iam", proj["url"]).list_roles(PathPrefix="/etl/")["Roles"]
    assert not [r for r in roles if proj["tag"] in r["RoleName"]]  # a dry run creates nothing
