"""The loading API others build on: project discovery, env configs, interpolation, params, paths, secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from etl_framework.config.errors import ConfigErrors
from etl_framework.config.interpolate import redact, resolve_secrets
from etl_framework.config.load import coerce_param, load_job, load_workflow
from etl_framework.config.project import Project
from etl_framework.errors import EtlError, UsageError

JOB = """\
job: demo
params: {min_distance: 0, flag: false, label: x, day: "${run.date}"}
sources:
  trips: {format: csv, path: "${env.raw_root}/trips/", options: {password: "${secret:DB_PASSWORD}"}}
  local: {format: parquet, path: ../data/local}
transform:
  - sql: SELECT * FROM trips WHERE d > ${params.min_distance} AND r = '${run.region}' AND l = '${params.label}'
quality:
  - {expect: expect_column_values_to_be_between, column: fare, max_value: "${params.min_distance}"}
target: {path: out/demo, quarantine_path: /abs/q}
"""


@pytest.fixture
def proj(project: Path) -> Project:
    (project / "jobs" / "demo.yaml").write_text(JOB)
    (project / "jobs" / "flow.yaml").write_text(
        "workflow: flow\nrun_properties: {region: eu}\njobs: {demo: demo.yaml}\n"
        "triggers: [{name: go, type: on_demand, actions: [{job: demo}]}]\n")
    return Project.discover(project)


def test_discover_explicit_env_and_parents(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETL_PROJECT_DIR", raising=False)
    assert Project.discover(project).root == project.resolve()
    deep = project / "jobs" / "sub"
    deep.mkdir()
    monkeypatch.chdir(deep)
    assert Project.discover().root == project.resolve()  # nearest parent holding conf/
    assert Project.discover(start=deep / "x.yaml").root == project.resolve()
    monkeypatch.setenv("ETL_PROJECT_DIR", str(project))
    monkeypatch.chdir("/")
    assert Project.discover().root == project.resolve()
    monkeypatch.delenv("ETL_PROJECT_DIR")
    with pytest.raises(UsageError, match="no project found"):
        Project.discover()
    with pytest.raises(UsageError, match="does not exist"):
        Project.discover(project / "nope")


def test_env_config_paths_resolve_against_the_conf_file(proj: Project) -> None:
    cfg = proj.env_config()
    assert cfg.vars["raw_root"] == str(proj.root / "data" / "raw")
    assert cfg.state.path == str(proj.root / ".etl" / "state.db")
    assert cfg.catalog.path == str(proj.root / ".etl" / "catalog.db")
    prod = proj.env_config("prod")
    assert prod.vars["raw_root"].startswith("s3://") and prod.state.backend == "dynamodb"
    assert prod.deploy is not None and prod.deploy.role.startswith("arn:aws:iam::")
    with pytest.raises(UsageError, match="environment 'staging'"):
        proj.env_config("staging")


def test_env_config_errors_have_positions(proj: Project) -> None:
    (proj.root / "conf" / "local.yaml").write_text("vars: {a: 1}\nstate: {backend: postgres}\n")
    with pytest.raises(ConfigErrors) as e:
        Project(proj.root).env_config()
    assert str(e.value.errors[0]).startswith("conf/local.yaml:2:18:") or ":2:18:" in str(e.value.errors[0])
    assert "sqlite, dynamodb" in str(e.value)


def test_load_job_interpolates_and_resolves_paths(proj: Project) -> None:
    job = load_job(proj.jobs_dir / "demo.yaml", proj)
    trips = job.config.sources["trips"]
    assert trips.path == str(proj.root / "data" / "raw" / "trips") + "/"
    assert job.config.sources["local"].path == str(proj.root / "data" / "local")
    assert job.config.target.path == str(proj.jobs_dir / "out" / "demo")
    assert job.config.target.quarantine_path == "/abs/q"
    sql = job.config.transform[0].sql
    assert "d > 0 AND" in sql and "l = 'x'" in sql
    assert "${run.region}" in sql  # no run yet: left as text
    assert trips.options["password"] == "${secret:DB_PASSWORD}"  # secrets: never resolved at load time
    assert job.config.quality[0].kwargs["max_value"] == 0  # a whole-string reference keeps its type
    assert job.params["day"] == "${run.date}"


def test_params_override_and_run(proj: Project) -> None:
    job = load_job(proj.jobs_dir / "demo.yaml", proj, params={"min_distance": "2.5", "flag": "true"},
                   run={"id": "r1", "date": "2026-01-02", "region": "eu"})
    assert job.params["min_distance"] == 2.5 and job.params["flag"] is True
    assert job.params["day"] == "2026-01-02"
    assert "d > 2.5 AND r = 'eu'" in job.config.transform[0].sql
    with pytest.raises(ConfigErrors, match="unknown run property"):
        load_job(proj.jobs_dir / "demo.yaml", proj, run={"id": "r1"})  # no 'region' in this run
    with pytest.raises(UsageError, match="unknown param min_dist"):
        load_job(proj.jobs_dir / "demo.yaml", proj, params={"min_dist": 1})


def test_coerce_param() -> None:
    assert coerce_param("3", 0) == 3 and coerce_param("0.5", 0) == 0.5 and coerce_param("no", True) is False
    assert coerce_param("abc", 1) == "abc" and coerce_param("7", "x") == "7"


def test_load_workflow_loads_its_jobs(project: Path) -> None:
    proj = Project.discover(project)
    wf = load_workflow(project / "jobs" / "nightly_trips.yaml", proj)
    assert set(wf.jobs) == {"zones_load", "trips_clean", "trip_stats"}
    assert wf.job_paths["trips_clean"] == project / "jobs" / "trips_clean.yaml"
    assert wf.jobs["trips_clean"].config.job == "trips_clean"
    assert wf.config.crawlers["raw_trips"].path == str(project / "data" / "raw" / "trips") + "/"


def test_resolve_secrets_from_env_and_redact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    opts = {"user": "u", "password": "${secret:DB_PASSWORD}", "url": "jdbc:x?pw=${secret:DB_PASSWORD}"}
    resolved = resolve_secrets(opts)
    assert resolved["password"] == "hunter2" and resolved["url"].endswith("pw=hunter2")
    assert opts["password"] == "${secret:DB_PASSWORD}"  # the input is not changed
    safe = redact({"msg": "login with hunter2 failed", "opts": opts, "token": "abc"})
    assert "hunter2" not in str(safe) and safe["msg"] == "login with *** failed"
    assert safe["opts"]["url"] == "jdbc:x?pw=***" and safe["token"] == "***"


def test_missing_secret_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_SECRET_X", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: fails fast, offline
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(EtlError, match="NO_SUCH_SECRET_X") as e:
        resolve_secrets("${secret:NO_SUCH_SECRET_X}")
    assert "environment variable" in str(e.value)
    assert os.environ.get("NO_SUCH_SECRET_X") is None
