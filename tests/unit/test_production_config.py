"""The pure parts of SPEC §13: the policy a job's YAML yields, the notification rules (which events a run raises,
env/workflow/job merging) and a run's headline numbers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from etl_framework.config.model import DeployConfig, EnvConfig, JobConfig, Notifications
from etl_framework.deploy import iam
from etl_framework.metrics import run_numbers
from etl_framework.notify import effective, events_of

ENV = EnvConfig.model_validate({
    "state": {"backend": "dynamodb", "table_prefix": "p_"}, "catalog": {"backend": "glue"},
    "deploy": {"s3_prefix": "s3://art/etl", "iam": "generate", "kms_key": "alias/k"}})


def job(**extra: Any) -> JobConfig:
    return JobConfig.model_validate({
        "job": "orders",
        "sources": {"o": {"format": "csv", "path": "s3a://raw/in/orders/",
                          "options": {"nullValue": "${secret:orders_token}"}},
                    "c": {"format": "catalog", "table": "ref.customers"}},
        "quality": [{"expect": "expect_column_values_to_not_be_null", "column": "id", "on_fail": "quarantine"}],
        "target": {"format": "delta", "path": "s3a://lake/curated/orders"},
        "register": {"database": "curated", "table": "orders"}, **extra})


def statements(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in policy["Statement"]}


def test_a_jobs_policy_names_exactly_what_its_yaml_uses() -> None:
    policy = iam.job_policy(job(), ENV, project="p", env="prod", s3_root="s3://art/etl/p/prod", glue_job="orders")
    st = statements(policy)
    assert st["ReadSourcesObjects"]["Resource"] == ["arn:{partition}:s3:::raw/in/orders",
                                                    "arn:{partition}:s3:::raw/in/orders/*"]
    assert st["ReadSourcesListRaw"]["Condition"] == {"StringLike": {"s3:prefix": ["in/orders", "in/orders/*"]}}
    written = st["WriteTablesObjects"]["Resource"]
    assert "arn:{partition}:s3:::lake/curated/orders_quarantine/*" in written  # quarantine rules: its table too
    assert not any("bad_records" in r for r in written)  # no bad_records: quarantine source
    assert "s3:PutObject" not in st["ReadCodeObjects"]["Action"]
    assert st["CatalogRead"]["Resource"] == ["arn:{partition}:glue:{region}:{account}:catalog",
                                             "arn:{partition}:glue:{region}:{account}:database/ref",
                                             "arn:{partition}:glue:{region}:{account}:table/ref/customers"]
    assert "glue:CreateTable" in st["CatalogWrite"]["Action"] and "glue:CreateTable" not in st["CatalogRead"]["Action"]
    assert st["Secrets"]["Resource"] == ["arn:{partition}:secretsmanager:{region}:{account}:secret:orders_token-??????"]
    assert st["StateTable"]["Resource"][0].endswith(":table/p_state")
    assert st["Kms"]["Resource"] == "{kms_key_arn}"
    filled = iam.fill(policy, partition="aws", region="eu-west-1", account="123456789012", kms_key_arn="arn:k")
    assert not [p for p in ("{partition}", "{region}", "{account}", "{kms_key_arn}") if p in json.dumps(filled)]


def test_a_secret_named_by_a_param_is_an_error_at_its_position(tmp_path: Any) -> None:
    from etl_framework.config.loader import load_yaml

    f = tmp_path / "j.yaml"
    f.write_text("job: j\nsources:\n  s:\n    format: csv\n    path: x\n"
                 "    options: {a: \"${secret:ok_${env.stage}}\", b: \"pw-${secret:t_${params.tenant}}\"}\n")
    errors = iam.dynamic_secret_errors(load_yaml(f, display="j.yaml"), "j", "j.yaml")
    assert [(e.line, e.message.split(":")[0]) for e in errors] == [(6, "job j, key sources.s.options.b")]
    assert "${params.tenant}" in errors[0].message


def test_deploy_takes_exactly_one_of_role_and_generated_iam() -> None:
    with pytest.raises(ValidationError, match="exactly one of 'role: ARN'"):
        DeployConfig.model_validate({"s3_prefix": "s3://b/p"})
    with pytest.raises(ValidationError, match="exactly one of 'role: ARN'"):
        DeployConfig.model_validate({"s3_prefix": "s3://b/p", "role": "arn:aws:iam::1:role/r", "iam": "generate"})


def test_which_events_a_run_raises() -> None:
    n = Notifications(quarantine_above="10%", late_after_minutes=1)
    q = {"quality": {"rows_in": 100, "rows_quarantined": 11}}
    assert events_of(n, "SUCCEEDED", 0, None, 5, q) == ["quarantine_above"]  # succeeded is opt-in
    assert events_of(n, "FAILED", 3, "gate", 90, {}) == ["quality_failed", "late"]
    assert events_of(n, "FAILED", 1, "Glue job timed out after 60 minutes", 5, {}) == ["timeout"]
    assert events_of(Notifications(events=["succeeded"], quarantine_above=10), "SUCCEEDED", 0, None, 1, q) == [
        "succeeded", "quarantine_above"]
    with pytest.raises(ValidationError, match="row count"):
        Notifications(quarantine_above="lots")


def test_notifications_merge_key_by_key() -> None:
    env = Notifications(webhook="http://127.0.0.1:1/h", events=["failed"])
    job_only = Notifications(events=["succeeded"])
    merged = effective(env, None, job_only)
    assert merged is not None and merged.webhook == env.webhook and merged.events == ["succeeded"]
    assert effective(None, None) is None


def test_run_numbers_from_stage_metrics() -> None:
    stages = {"extract": {"rows_out": 7}, "write": {"rows_written": 6, "bytes_written": 1234},
              "quality": {"rows_quarantined": 1}}
    bookmark = {"sources": {"s": {"files": {"s3://b/a.csv": [10, 1000.0], "s3://b/b.csv": [10, 1500.0]}}}}
    assert run_numbers(stages, 2.5, bookmark, ended_at=1600.0) == {
        "rows_read": 7, "rows_written": 6, "rows_quarantined": 1, "duration_s": 2.5, "bytes_written": 1234,
        "bookmark_lag_s": 100.0}


def test_etl_runs_metrics_prints_each_runs_numbers(tmp_path: Any) -> None:
    from etl_framework.state.runs import SqliteRunStore
    from tests.unit.test_config_cli import run as cli

    project = tmp_path / "proj"
    (project / "conf").mkdir(parents=True)
    (project / "conf" / "local.yaml").write_text(f"state: {{path: '{project / '.etl' / 'state.db'}'}}\n")
    (project / ".etl").mkdir()
    store = SqliteRunStore(project / ".etl" / "state.db")
    try:
        store.create_run({"run_id": "jr_1", "job": "orders", "started_at": "2026-12-02T03:00:00.000Z"})
        store.finish_stage("jr_1", "extract", status="SUCCEEDED", metrics={"rows_out": 7}, seq=1)
        store.finish_stage("jr_1", "write", status="SUCCEEDED", metrics={"rows_written": 6, "bytes_written": 2048},
                           seq=2)
        store.update_run("jr_1", status="SUCCEEDED", duration_s=3.5)
    finally:
        store.close()
    rc, out, err = cli("--project-dir", str(project), "runs", "--metrics", "--json")
    assert rc == 0, err
    assert json.loads(out) == [{"run_id": "jr_1", "job": "orders", "status": "SUCCEEDED", "rows_read": 7,
                                "rows_written": 6, "duration_s": 3.5, "bytes_written": 2048}]
    rc, out, err = cli("--project-dir", str(project), "runs", "--metrics")
    assert rc == 0 and "rows written" in out and "jr_1" in out, err
