"""Secrets are never written down (issue 15, SPEC §4.2/§13): a `python:` step that reads `${secret:...}` through
`ctx.secret`, logs it (Python logging, `ctx.logger`, print to stderr) and raises with it, under plain
`etl run` and the `inline` and `subprocess` workflow executors. The secret is in no byte of any command's stdout or
stderr, and in no file of the project (reports/, the state database and its WAL, the subprocess logs).

And a param whose name only contains a sensitive word (`token_count`) is stored as given, so `etl resume` runs
with the override, not the default."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

SECRET = "s3cr3t-Vq7uYzP2-never-to-be-seen"
SECRET_ENV = "ETL_TEST_API_TOKEN"

STEPS = f'''
import logging
import sys
from pathlib import Path
from typing import Any


def leak(df, ctx):
    token = ctx.secret("{SECRET_ENV}")
    logging.getLogger("user.step").warning("calling the API with token=%s", token)
    logging.getLogger("user.step").error("and failing", exc_info=ValueError("bad token " + token))
    ctx.logger.info("ctx.logger says " + token)
    print("stderr says " + token, file=sys.stderr)
    raise RuntimeError("the API refused token " + token + " with 401")


def fail_once(df, ctx):
    marker = Path(ctx.project_root) / "failed_once"
    if not marker.exists():
        marker.write_text("x")
        raise RuntimeError("the first attempt fails")
    return df
'''

JOB = """job: {name}
params: {params}
sources:
  src: {{format: csv, path: "../data/in.csv", options: {{header: true}}, schema: {{a: int}}}}
transform:
{steps}
target: {{format: delta, path: "../data/lake/{name}", mode: overwrite}}
"""

WORKFLOW = """workflow: leaky_wf
jobs: {leaky: leaky.yaml}
triggers:
  - {name: start, type: on_demand, actions: [{job: leaky}]}
"""


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("secrets") / "proj"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n"
                                              "spark: {spark.sql.shuffle.partitions: 1}\n")
    shutil.copytree(REPO / "spark-conf", root / "spark-conf")
    (root / "data").mkdir()
    (root / "data" / "in.csv").write_text("a\n1\n2\n3\n")
    (root / "leaky_steps.py").write_text(STEPS)
    jobs = root / "jobs"
    jobs.mkdir()
    (jobs / "leaky.yaml").write_text(JOB.format(name="leaky", params="{n: 1}",
                                                steps="  - python: leaky_steps:leak"))
    (jobs / "counted.yaml").write_text(JOB.format(
        name="counted", params="{token_count: 1, passenger_min: 0}",
        steps='  - with_columns: {tokens: "int(${params.token_count})", pmin: "int(${params.passenger_min})"}\n'
              "  - python: leaky_steps:fail_once"))
    (jobs / "leaky_wf.yaml").write_text(WORKFLOW)
    return root


def etl(proj: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), SECRET_ENV: SECRET, "ETL_HEARTBEAT_SECONDS": "0"}
    env.pop("ETL_PROJECT_DIR", None)
    return subprocess.run([sys.executable, "-c", "from etl_framework.cli import main; main()", *args], cwd=proj,
                          capture_output=True, env=env, timeout=600, check=False)


def assert_nowhere(proj: Path, outputs: list[subprocess.CompletedProcess[bytes]]) -> None:
    needle = SECRET.encode()
    for r in outputs:
        assert needle not in r.stdout, (r.args, r.stdout[-2000:])
        assert needle not in r.stderr, (r.args, r.stderr[-2000:])
    leaked = [p for p in proj.rglob("*") if p.is_file() and needle in p.read_bytes()]
    assert leaked == [], leaked


@pytest.mark.slow  # three `etl` processes that start Spark (run, inline workflow, subprocess workflow)
def test_secret_in_logs_and_errors_is_never_written(proj: Path) -> None:
    outputs = []
    run = etl(proj, "run", "jobs/leaky.yaml", "--json")
    outputs.append(run)
    assert run.returncode == 1, run.stderr[-3000:]
    record = json.loads(run.stdout)
    # what the user sees names the failure, with the secret masked
    assert "the API refused token *** with 401" in record["error"]
    assert b"calling the API with token=***" in run.stderr and b"stderr says ***" in run.stderr
    assert b"ctx.logger says ***" in run.stderr
    assert (proj / "reports").is_dir() and any((proj / "reports").rglob("*.html"))

    for executor in ("inline", "subprocess"):
        wf = etl(proj, "workflow", "run", "jobs/leaky_wf.yaml", "--executor", executor, "--json")
        outputs.append(wf)
        assert wf.returncode == 1, wf.stderr[-3000:]
        wf_rec = json.loads(wf.stdout)
        node = wf_rec["nodes"][0]
        assert node["state"] == "FAILED" and "***" in (node.get("error") or ""), node
        outputs.append(etl(proj, "show", node["job_run_id"], "--json"))
        assert "the API refused token ***" in json.loads(outputs[-1].stdout)["error"]
        outputs.append(etl(proj, "workflow", "status", wf_rec["run_id"], "--json"))
        outputs.append(etl(proj, "report", "--workflow-run", wf_rec["run_id"]))
    sub_logs = list((proj / ".etl" / "logs").rglob("*.log"))
    assert sub_logs and b"stderr says ***" in b"".join(p.read_bytes() for p in sub_logs)

    outputs.append(etl(proj, "runs", "--json"))
    assert len(json.loads(outputs[-1].stdout)) >= 3
    assert (proj / ".etl" / "state.db").is_file()
    assert_nowhere(proj, outputs)


def test_param_named_like_a_secret_word_survives_resume(proj: Path, spark: Any) -> None:
    from etl_framework.config.project import Project
    from etl_framework.engine.job import run_job
    from etl_framework.engine.resume import resume_run
    from etl_framework.state.runs import SqliteRunStore

    project = Project.discover(proj)
    first = run_job(proj / "jobs" / "counted.yaml", project=project, params={"token_count": "3", "passenger_min": "7"},
                    spark=spark, quiet=True)
    assert first.exit_code == 1 and "the first attempt fails" in (first.error or "")
    store = SqliteRunStore(proj / ".etl" / "state.db")
    assert store.get_run(first.run_id)["params"] == {"token_count": 3, "passenger_min": 7}  # as given, not ***
    store.close()
    resumed = resume_run(first.run_id, project, "local")
    assert resumed.exit_code == 0, resumed.error

    import pyarrow.fs as pafs
    from deltalake import DeltaTable

    path = str(proj / "data" / "lake" / "counted")
    table = DeltaTable(path).to_pyarrow_table(filesystem=pafs.SubTreeFileSystem(path, pafs.LocalFileSystem()))
    assert set(table.column("tokens").to_pylist()) == {3}  # the override, not the default 1
    assert set(table.column("pmin").to_pylist()) == {7}
