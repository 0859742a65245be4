"""`etl validate`, `etl plan`, `etl schema`, `etl init` as a user runs them; two through a real subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from etl_framework.cli import cli
from etl_framework.cli.common import run_cli
from etl_framework.config.load import load_workflow
from etl_framework.config.project import Project
from etl_framework.graph import levels, render
from tests.conftest import REPO

ETL = str(Path(sys.executable).parent / "etl")


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run_cli(cli, list(args))
    return rc, out.getvalue(), err.getvalue()


def test_validate_example_project(project: Path) -> None:
    rc, out, err = run("--project-dir", str(project), "validate")
    assert rc == 0, err
    assert out == ""  # progress on stderr only
    for name in ("trips_clean", "zones_load", "trip_stats", "nightly_trips"):
        assert "ok  " in err and f"{name}.yaml" in err


def test_validate_json(project: Path) -> None:
    bad = project / "jobs" / "zones_load.yaml"
    bad.write_text(bad.read_text().replace("mode: overwrite", "mode: replace"))
    rc, out, err = run("--project-dir", str(project), "validate", "--json")
    assert rc == 2
    results = {Path(r["file"]).name: r for r in json.loads(out)}
    assert results["trips_clean.yaml"]["ok"] is True
    assert results["zones_load.yaml"]["ok"] is False
    e = results["zones_load.yaml"]["errors"][0]
    assert e["line"] == bad.read_text().splitlines().index("  mode: replace") + 1 and e["col"] == 9
    assert "zones_load.yaml" in err  # the errors on stderr too


def test_validate_missing_file_and_unknown_kind(project: Path) -> None:
    (project / "jobs" / "notes.yaml").write_text("title: not a job\n")
    rc, _, err = run("--project-dir", str(project), "validate", str(project / "jobs" / "nope.yaml"),
                     str(project / "jobs" / "notes.yaml"))
    assert rc == 2
    assert "nope.yaml:1:1: file not found" in err
    assert "notes.yaml:1:1: neither a job file" in err


def test_validate_env_config_file(project: Path) -> None:
    conf = project / "conf" / "dev.yaml"
    conf.write_text(conf.read_text().replace("backend: glue", "backend: hive"))
    rc, _, err = run("--project-dir", str(project), "validate", str(conf))
    assert rc == 2 and "dev.yaml:" in err and "local, glue" in err
    rc, _, err = run("--project-dir", str(project), "validate", str(project / "conf" / "prod.yaml"))
    assert rc == 0, err


def test_validate_against_another_env(project: Path) -> None:
    rc, _, err = run("--project-dir", str(project), "--env", "prod", "validate")
    assert rc == 0, err
    rc, _, err = run("--project-dir", str(project), "--env", "nope", "validate")
    assert rc == 2 and "environment 'nope'" in err


def test_plan_formats(project: Path) -> None:
    wf = str(project / "jobs" / "nightly_trips.yaml")
    rc, text, _ = run("--project-dir", str(project), "plan", wf)
    assert rc == 0
    assert "after_curated: when zones_load SUCCEEDED and trips_clean SUCCEEDED" in text
    assert "1. crawler raw_trips" in text and "3. job trip_stats" in text
    assert "next 20" in text  # the scheduled trigger's next fire time
    rc, mermaid, _ = run("--project-dir", str(project), "plan", wf, "--format", "mermaid")
    assert rc == 0 and mermaid.startswith("flowchart LR")
    assert "c_raw_trips -- SUCCEEDED --> t_after_crawl" in mermaid
    assert "j_trips_clean -- SUCCEEDED --> t_after_curated" in mermaid
    rc, dot, _ = run("--project-dir", str(project), "plan", wf, "--format", "dot")
    assert rc == 0 and dot.startswith('digraph "nightly_trips"') and dot.rstrip().endswith("}")
    assert '"trigger:after_curated" -> "job:trip_stats"' in dot


def test_plan_refuses_invalid_workflow(project: Path) -> None:
    wf = project / "jobs" / "nightly_trips.yaml"
    wf.write_text(wf.read_text().replace("{job: trip_stats}", "{job: trip_statz}"))
    rc, out, err = run("--project-dir", str(project), "plan", str(wf))
    assert rc == 2 and out == ""
    assert "unknown job 'trip_statz'" in err


def test_graph_states_and_levels(project: Path) -> None:
    wf = load_workflow(project / "jobs" / "nightly_trips.yaml", Project.discover(project)).config
    assert levels(wf) == [["raw_trips"], ["trips_clean", "zones_load"], ["trip_stats"]]
    states = {"raw_trips": "SUCCEEDED", "trips_clean": "FAILED"}
    assert "-> job trips_clean (min_distance=0.1)  [FAILED]" in render(wf, "text", states)
    assert "class j_trips_clean failed" in render(wf, "mermaid", states)
    assert 'fillcolor="#ffcdd2"' in render(wf, "dot", states)


def test_init_creates_a_project_that_validates(tmp_path: Path) -> None:
    target = tmp_path / "newproj"
    rc, _, err = run("init", str(target))
    assert rc == 0, err
    for rel in ("conf/local.yaml", "jobs/orders_clean.yaml", "jobs/daily.yaml", "spark-conf/spark-defaults.conf",
                "jobs/.schemas/job.schema.json", "data/raw/orders/part-0.csv"):
        assert (target / rel).is_file(), rel
    rc, _, err = run("--project-dir", str(target), "validate")
    assert rc == 0, err
    assert "orders_clean.yaml" in err and "daily.yaml" in err
    rc, _, err = run("init", str(target))
    assert rc == 2 and "already holds" in err
    assert "reports/" in (target / ".gitignore").read_text().splitlines()
    # a mistyped job path: did-you-mean names the user's own job, never the example project's
    rc, _, err = run("--project-dir", str(target), "run", str(target / "jobs" / "order_clean.yaml"))
    assert rc == 2 and "did you mean `etl run" in err and "jobs/orders_clean.yaml`" in err, err
    assert "trips_clean" not in err


def test_schema_kinds() -> None:
    for kind in ("job", "workflow", "env"):
        rc, out, _ = run("schema", "--kind", kind)
        assert rc == 0 and json.loads(out)["type"] == "object"


def test_subprocess_validate_imports_neither_spark_nor_gx() -> None:
    code = (
        "import sys\n"
        "from etl_framework.cli import cli\n"
        "from etl_framework.cli.common import run_cli\n"
        f"rc = run_cli(cli, ['--project-dir', {str(REPO)!r}, 'validate'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'great_expectations', 'py4j'))\n"
        "print(rc, heavy)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                         cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "0 []", res.stdout + res.stderr


def test_subprocess_exit_code_and_position(project: Path) -> None:
    bad = project / "jobs" / "trips_clean.yaml"
    text = bad.read_text().replace("on_fail: fail}", "on_fail: explode}")
    bad.write_text(text)
    res = subprocess.run([ETL, "validate"], check=False, capture_output=True, text=True, timeout=120,
                         cwd=project / "jobs")
    assert res.returncode == 2
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "explode" in t)
    assert f"trips_clean.yaml:{line}:" in res.stderr
    assert "fail, quarantine, warn" in res.stderr and "Traceback" not in res.stderr
    assert res.stdout == ""


def test_a_resume_that_loaded_nothing_says_so() -> None:
    """A run refused because another run held the target, resumed after that run loaded the input: not
    "succeeded on resume" but what happened."""
    from etl_framework.cli.resume import outcome_line

    refused_then_resumed = {
        "attempt": 2, "details": {"no_new_input": "source 'orders': no new file (3 already loaded)"},
        "stages": [{"stage": "write", "status": "FAILED", "attempt": 1}]}
    line = outcome_line(refused_then_resumed, "jr_1")
    assert "loaded nothing" in line and "no new file" in line and "succeeded" not in line
    written = {"attempt": 2, "details": {}, "stages": [{"stage": "write", "status": "SUCCEEDED", "attempt": 2}]}
    assert outcome_line(written, "jr_1").startswith("run jr_1 succeeded on resume")


def test_etl_stop_on_glue_calls_batch_stop_job_run_and_stop_workflow_run(project: Path, monkeypatch: Any) -> None:
    """In an env with a `deploy:` block, a run that is no process of this host is stopped by Glue."""
    import etl_framework.aws
    import etl_framework.cli.stop as stop_cli

    calls: list[tuple[str, dict[str, Any]]] = []

    class FakeGlue:
        def batch_stop_job_run(self, **kw: Any) -> dict[str, Any]:
            calls.append(("BatchStopJobRun", kw))
            return {"SuccessfulSubmissions": [{"JobName": kw["JobName"], "JobRunId": kw["JobRunIds"][0]}], "Errors": []}

        def stop_workflow_run(self, **kw: Any) -> dict[str, Any]:
            calls.append(("StopWorkflowRun", kw))
            return {}

    monkeypatch.setattr(etl_framework.aws, "client", lambda service, *a, **k: FakeGlue())
    monkeypatch.setattr(stop_cli, "_records", lambda env_config, run_id: (None, None))  # a run Glue started
    rc, _, err = run("--project-dir", str(project), "--env", "dev", "stop", "jr_abc", "--job", "trips_clean")
    assert rc == 0, err
    rc, _, err = run("--project-dir", str(project), "--env", "dev", "stop", "wr_abc", "--workflow", "nightly_trips")
    assert rc == 0, err
    assert calls == [("BatchStopJobRun", {"JobName": "dev_trips_clean", "JobRunIds": ["jr_abc"]}),
                     ("StopWorkflowRun", {"Name": "dev_nightly_trips", "RunId": "wr_abc"})]
    rc, _, err = run("--project-dir", str(project), "stop", "jr_nope")  # local env, unknown run: said, exit 2
    assert rc == 2 and "no job run or workflow run jr_nope" in err


def test_a_dry_run_without_credentials_prints_every_resource_in_full(project: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A reviewer's dry run needs no AWS account: every resource as it would be created, in full, and `--json`
    carries the whole spec of each (the job's Glue settings included)."""
    from etl_framework import aws

    for k in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(aws, "_SESSIONS", {})  # no session that resolved credentials before this test
    monkeypatch.setenv("AWS_CONFIG_FILE", str(project / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(project / "no-aws-credentials"))
    prod = project / "conf" / "prod.yaml"
    prod.write_text(prod.read_text().replace("deploy:\n", "deploy:\n  execution_class: FLEX\n  metrics: true\n"
                                             "  spark_conf: {spark.sql.shuffle.partitions: 64}\n", 1))
    rc, out, err = run("--project-dir", str(project), "deploy", "--env", "prod", "--dry-run", "--json")
    assert rc == 0, err
    assert "no AWS credentials found: an offline dry run" in err and "Traceback" not in err
    plan = json.loads(out)
    assert plan["offline"] and plan["dry_run"] and not plan["changed"]
    assert {c["action"] for c in plan["changes"]} == {"create"}
    jobs = {c["name"]: c["spec"] for c in plan["changes"] if c["kind"] == "job"}
    assert set(jobs) == {"prod_trips_clean", "prod_zones_load", "prod_trip_stats", "prod_shop_orders"}
    spec = jobs["prod_trips_clean"]
    assert spec["ExecutionClass"] == "FLEX" and spec["DefaultArguments"]["--enable-metrics"] == "true"
    assert spec["DefaultArguments"]["--conf"].endswith("--conf spark.sql.shuffle.partitions=64")
    assert spec["Command"]["ScriptLocation"].endswith("/scripts/etl_job.py") and spec["WorkerType"]
    assert '"ExecutionClass": "FLEX"' in err  # the text plan prints the same spec for a reader
    rc, _, err = run("--project-dir", str(project), "deploy", "--env", "prod", "--offline")
    assert rc == 2 and "--offline" in err and "--dry-run" in err
