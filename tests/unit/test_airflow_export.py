"""`etl export airflow` without Airflow: the translation of Glue triggers into trigger rules, retries, schedules
and params; what Airflow cannot express; `--check`; the 2.10 rendering. The real Airflow runs in
tests/e2e/test_airflow_export.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

# every kind of condition: `any`, a FAILED condition, a trigger mixing SUCCEEDED and FAILED, a node that two
# triggers start
RULES_WORKFLOW = """\
workflow: rules
jobs: {zones_load: zones_load.yaml, trips_clean: trips_clean.yaml}
crawlers:
  a: {path: "${env.raw_root}/a/", database: raw}
  b: {path: "${env.raw_root}/b/", database: raw}
  c: {path: "${env.raw_root}/c/", database: raw}
triggers:
  - {name: start, type: on_demand, actions: [{crawler: a}, {crawler: b}]}
  - name: any_crawl
    type: conditional
    logical: any
    conditions: [{crawler: a, state: SUCCEEDED}, {crawler: b, state: SUCCEEDED}]
    actions: [{job: zones_load}]
  - name: on_failure
    type: conditional
    conditions: [{job: zones_load, state: FAILED}]
    actions: [{crawler: c}]
  - name: mixed
    type: conditional
    conditions: [{crawler: a, state: SUCCEEDED}, {job: zones_load, state: FAILED}]
    actions: [{job: trips_clean, arguments: {min_distance: 0.5}}]
  - name: plain
    type: conditional
    conditions: [{job: zones_load, state: SUCCEEDED}]
    actions: [{job: trips_clean, arguments: {min_distance: 0.5}}]
"""


def etl(proj: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("ETL_PROJECT_DIR", None)
    return subprocess.run([sys.executable, "-c", "from etl_framework.cli import main; main()", *args], cwd=proj,
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def plan_of(project: Path, file: str = "jobs/nightly_trips.yaml", env: str = "local") -> Any:
    from etl_framework.config.load import load_workflow
    from etl_framework.config.project import Project
    from etl_framework.export.airflow import mode_of, plan_dag

    proj = Project.discover(project)
    loaded = load_workflow(project / file, proj, env)
    return plan_dag(loaded, proj, env, mode=mode_of(proj.env_config(env), env, env))


def test_and_any_and_failed_conditions_become_trigger_rules(project: Path) -> None:
    example = plan_of(project)
    stats = example.task("job_trip_stats")  # after_curated: and of two SUCCEEDED
    assert (stats.trigger_rule, sorted(stats.upstream)) == ("all_success", ["job_trips_clean", "job_zones_load"])

    (project / "jobs" / "rules.yaml").write_text(RULES_WORKFLOW)
    plan = plan_of(project, "jobs/rules.yaml")
    ids = [t.task_id for t in plan.tasks]
    assert plan.task("crawler_a").upstream == [] and plan.task("crawler_b").upstream == []
    zl = plan.task("job_zones_load")  # any of two SUCCEEDED
    assert (zl.trigger_rule, zl.upstream) == ("one_success", ["crawler_a", "crawler_b"])
    c = plan.task("crawler_c")  # zones_load FAILED
    assert (c.trigger_rule, c.upstream) == ("all_failed", ["job_zones_load"])
    # trips_clean: two triggers, one of them mixes SUCCEEDED and FAILED -> a gate per trigger
    mixed, plain = plan.task("trigger_mixed"), plan.task("trigger_plain")
    assert (mixed.trigger_rule, mixed.upstream) == ("all_success", ["crawler_a", "job_zones_load__failed"])
    assert (plan.task("job_zones_load__failed").trigger_rule, plan.task("job_zones_load__failed").upstream) == (
        "all_failed", ["job_zones_load"])
    assert (plain.trigger_rule, plain.upstream) == ("all_success", ["job_zones_load"])
    tc = plan.task("job_trips_clean")
    assert (tc.trigger_rule, tc.upstream, tc.arguments) == ("one_success", ["trigger_mixed", "trigger_plain"],
                                                            {"min_distance": 0.5})
    # every task is defined after its upstream tasks
    for t in plan.tasks:
        assert all(ids.index(u) < ids.index(t.task_id) for u in t.upstream)


def test_retry_and_timeout_become_task_settings(project: Path) -> None:
    from etl_framework.export.airflow import render

    plan = plan_of(project)
    tc = plan.task("job_trips_clean")
    assert (tc.retries.max_attempts, tc.retries.backoff_seconds, tc.retries.backoff_rate) == (2, 5, 2.0)
    text3, text2 = render(plan, "3"), render(plan, "2.10")
    block3 = text3[text3.index("task_id='job_trips_clean'"):]
    block3 = block3[: block3.index(")\n")]
    assert "retries=1," in block3 and "retry_delay=timedelta(seconds=5)," in block3
    assert "retry_exponential_backoff=2.0," in block3  # Airflow 3: a multiplier
    assert "execution_timeout=timedelta(minutes=60)," in block3
    block2 = text2[text2.index("task_id='job_trips_clean'"):]
    assert "retry_exponential_backoff=True," in block2[: block2.index(")\n")]  # 2.10: a flag, doubling
    zl = text3[text3.index("task_id='job_zones_load'"):]
    assert "retries=0," in zl[: zl.index(")\n")]


def test_schedule_event_and_run_properties(project: Path) -> None:
    from etl_framework.export.airflow import airflow_cron, render

    plan = plan_of(project, env="prod")
    assert (plan.cron, plan.glue_schedule) == ("0 2 * * *", "cron(0 2 * * ? *)")
    assert plan.assets == [("on_new_files", "s3://etl-framework-prod-data/raw/trips/")]
    assert plan.params == {"region": "eu"} and plan.max_active_runs == 1 and plan.max_active_tasks == 2
    text = render(plan)
    assert "schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable('0 2 * * *', timezone='UTC'), " \
           "assets=Asset('s3://etl-framework-prod-data/raw/trips/'))" in text
    assert "params={'region': 'eu'}" in text and "max_active_runs=1," in text
    assert """RUN_PROPERTIES = '{"region": {{ params.region | tojson }}}'""" in text

    from etl_framework.config.model import Trigger

    def cron(expr: str) -> tuple[str, int | None, int | None]:
        return airflow_cron(Trigger(name="t", type="scheduled", schedule=expr, actions=[{"job": "x"}]))

    assert cron("cron(15 10 ? * MON-FRI *)") == ("15 10 * * 1-5", None, None)
    assert cron("cron(0/15 * * * ? *)") == ("0-59/15 * * * *", None, None)
    assert cron("cron(0 8 1 JAN,JUL ? 2026-2027)") == ("0 8 1 1,7 *", 2026, 2027)
    assert cron("cron(0 8 ? * 6L *)") == ("0 8 * * L5", None, None)  # the last Friday, in croniter's words


def test_cloud_dag_names_the_deployed_glue_resources(project: Path) -> None:
    from etl_framework.export.airflow import render

    plan = plan_of(project, env="prod")
    text = render(plan)
    assert plan.mode == "glue" and plan.region == "eu-west-1"
    # `etl deploy` names every Glue resource deploy.name_prefix + name (conf/prod.yaml: prod_)
    assert "job_name='prod_trips_clean'" in text and "crawler_name='prod_raw_trips'" in text
    assert "'--min_distance': '0.1', '--WORKFLOW_RUN_ID': '{{ run_id }}', '--RUN_PROPERTIES': RUN_PROPERTIES" in text
    assert text.count("deferrable=True") == 4
    # what Airflow parses: only Airflow and the standard library are imported, nothing of the project
    imports = {m.group(1) for m in re.finditer(r"^(?:from|import) ([\w.]+)", text, re.MULTILINE)}
    assert all(i.split(".")[0] in ("airflow", "os", "datetime", "__future__", "pathlib") for i in imports), imports
    compile(text, "nightly_trips.py", "exec")


def test_airflow_2_10_rendering_differs_only_where_airflow_does(project: Path) -> None:
    from etl_framework.export.airflow import render

    plan = plan_of(project, env="prod")
    t3, t2 = render(plan, "3"), render(plan, "2.10")
    assert "from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, DAG" in t3
    assert "from airflow import DAG" in t2 and "from airflow.datasets import Dataset" in t2
    assert "DatasetOrTimeSchedule(timetable=CronTriggerTimetable('0 2 * * *', timezone='UTC'), " \
           "datasets=[Dataset('s3://etl-framework-prod-data/raw/trips/')])" in t2
    assert "GlueCrawlerRunOperator(" in t3 and "crawler_name='prod_raw_trips'" in t3
    assert "GlueCrawlerOperator(" in t2 and "config={'Name': 'prod_raw_trips'}" in t2
    local2 = render(plan_of(project), "2.10")
    assert "from airflow.operators.bash import BashOperator" in local2
    assert "from airflow.providers.standard.operators.bash import BashOperator" in render(plan_of(project), "3")
    for text in (t2, local2):
        compile(text, "nightly_trips.py", "exec")


def test_bad_input_gets_a_clear_message(project: Path) -> None:
    # event batching by count: a warning naming the trigger and what the DAG does instead; --strict fails
    r = etl(project, "export", "airflow", "jobs/nightly_trips.yaml", "-o", "dags")
    assert r.returncode == 0, r.stderr
    assert "trigger on_new_files: event batching by count (batch.size 10" in r.stderr
    assert "the DAG runs at the first asset event" in r.stderr
    assert "event batching by count" in (project / "dags" / "nightly_trips.py").read_text()
    r = etl(project, "export", "airflow", "jobs/nightly_trips.yaml", "-o", "dags", "--strict")
    assert r.returncode == 2 and "--strict" in r.stderr

    # a cloud env without a deploy: block
    (project / "conf" / "cloud.yaml").write_text("catalog: {backend: glue}\nstate: {backend: dynamodb}\n"
                                                 "vars: {raw_root: s3://b/raw, lake_root: s3://b/lake}\n")
    r = etl(project, "export", "airflow", "jobs/nightly_trips.yaml", "--env", "cloud", "-o", "dags")
    assert r.returncode == 2 and "env cloud" in r.stderr and "no deploy: block" in r.stderr
    assert "Traceback" not in r.stderr

    # a schedule Airflow's cron cannot express, and start triggers that start different nodes
    wf = (project / "jobs" / "nightly_trips.yaml").read_text()
    (project / "jobs" / "nightly_trips.yaml").write_text(wf.replace("cron(0 2 * * ? *)", "cron(0 2 15W * ? *)"))
    r = etl(project, "export", "airflow", "jobs/nightly_trips.yaml", "-o", "dags")
    assert r.returncode == 2 and "trigger nightly" in r.stderr and "nearest weekday" in r.stderr
    (project / "jobs" / "nightly_trips.yaml").write_text(
        wf.replace("schedule: cron(0 2 * * ? *)\n    actions: [{crawler: raw_trips}]",
                   "schedule: cron(0 2 * * ? *)\n    actions: [{job: zones_load}]"))
    r = etl(project, "export", "airflow", "jobs/nightly_trips.yaml", "-o", "dags")
    assert r.returncode == 2 and "trigger nightly starts zones_load" in r.stderr
    assert "every root task" in r.stderr


def test_a_run_property_condition_is_refused(project: Path) -> None:
    """A trigger rule tests only upstream task states: a property condition names its trigger and where it runs."""
    wf = project / "jobs" / "nightly_trips.yaml"
    wf.write_text(wf.read_text().replace("      - {job: trips_clean, state: SUCCEEDED}\n",
                                         "      - {job: trips_clean, state: SUCCEEDED}\n"
                                         "      - {property: auc, op: \">=\", value: 0.8}\n"))
    from etl_framework.export.airflow import ExportError

    with pytest.raises(ExportError, match="trigger after_curated: the condition run property auc >= 0.8 cannot be"):
        plan_of(project)
    r = etl(project, "export", "airflow", "jobs/nightly_trips.yaml", "-o", "dags")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "trigger after_curated" in r.stderr and "run property auc" in r.stderr
    assert "Step Functions" in r.stderr and "locally" in r.stderr
    assert not (project / "dags" / "nightly_trips.py").exists()


def test_check_fails_on_a_stale_dag_file(project: Path) -> None:
    r = etl(project, "export", "airflow", "-o", "dags")  # every workflow of jobs/
    assert r.returncode == 0, r.stderr
    first = (project / "dags" / "nightly_trips.py").read_bytes()
    assert etl(project, "export", "airflow", "-o", "dags").returncode == 0
    assert (project / "dags" / "nightly_trips.py").read_bytes() == first  # deterministic
    r = etl(project, "export", "airflow", "--check", "-o", "dags")
    assert r.returncode == 0, r.stderr
    wf = project / "jobs" / "nightly_trips.yaml"
    wf.write_text(wf.read_text().replace("max_concurrent_runs: 1", "max_concurrent_runs: 2"))
    r = etl(project, "export", "airflow", "--check", "-o", "dags")
    assert r.returncode == 1 and "stale Airflow DAG file: dags/nightly_trips.py" in r.stderr
    (project / "dags" / "nightly_trips.py").unlink()
    assert etl(project, "export", "airflow", "--check", "-o", "dags").returncode == 1


def test_committed_example_dag_is_fresh_and_in_the_readme() -> None:
    """docs/airflow/nightly_trips.py is what `etl export airflow --env prod -o docs/airflow` gives; the README
    shows it verbatim."""
    r = etl(REPO, "export", "airflow", "jobs/nightly_trips.yaml", "--env", "prod", "-o", "docs/airflow", "--check")
    assert r.returncode == 0, r.stderr
    dag = (REPO / "docs" / "airflow" / "nightly_trips.py").read_text()
    assert dag in (REPO / "README.md").read_text()


def test_run_properties_reach_the_job_as_glue_passes_them() -> None:
    """What the cloud DAG's script args give the job entry: run properties (not params) and the DAG run id."""
    from etl_framework.errors import UsageError
    from etl_framework.runtime.args import parse_job_args
    from etl_framework.runtime.glue import run_properties_for

    args = parse_job_args(["etl_job.py", "--job_config", "jobs/x.yaml", "--min_distance", "0.1",
                           "--WORKFLOW_RUN_ID", "manual__2026-12-02T02:00:00+00:00",
                           "--RUN_PROPERTIES", '{"region": "eu"}'])
    assert args.params == {"min_distance": "0.1"}
    assert args.run_properties == {"region": "eu"} and args.workflow_run_id.startswith("manual__")
    props = run_properties_for(args, client=object())  # no Glue workflow run: never calls Glue
    assert props is not None and props.get("region") == "eu"
    with pytest.raises(UsageError, match="not JSON"):
        parse_job_args(["etl_job.py", "--job_config", "x.yaml", "--RUN_PROPERTIES", "{region: eu"])
