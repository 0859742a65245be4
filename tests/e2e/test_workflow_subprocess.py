"""The subprocess executor: each job attempt is its own `spark-submit scripts/etl_job.py` with Glue-style
arguments; a timeout kills the job's process group; the job run id the engine chose is the job's run id."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

STEPS = '''
import os
import time
from pathlib import Path


def note_region(df, ctx):
    # Glue's get/put_workflow_run_properties, from a job in its own spark-submit process
    ctx.put_run_property("seen_region", ctx.get_run_property("region"))
    return df


def record_pid(df, ctx):
    (Path(__file__).parent / "slow.pid").write_text(str(os.getpid()))
    time.sleep(600)  # plain Python, not a Spark job: only killing the process stops it
    return df
'''

JOB = """job: {name}
sources:
  src: {{format: csv, path: "../data/in.csv", options: {{header: true}}, schema: {{a: int}}}}
transform:
{steps}
target: {{format: delta, path: "../data/lake/{name}", mode: overwrite}}
"""

WORKFLOW = """workflow: isolated
executor: inline
concurrency: 2
run_properties: {region: eu}
jobs: {fast: fast.yaml, slow: slow.yaml}
triggers:
  - {name: start, type: on_demand, actions: [{job: fast, arguments: {min_a: 2}}, {job: slow}]}
"""


def test_subprocess_executor_runs_spark_submit_and_kills_on_timeout(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "conf").mkdir(parents=True)
    (proj / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n"
                                              "spark: {spark.sql.shuffle.partitions: 1}\n")
    shutil.copytree(REPO / "spark-conf", proj / "spark-conf")
    (proj / "data").mkdir()
    (proj / "data" / "in.csv").write_text("a\n1\n2\n3\n")
    (proj / "wfsteps2.py").write_text(STEPS)
    jobs = proj / "jobs"
    jobs.mkdir()
    (jobs / "fast.yaml").write_text(JOB.format(name="fast", steps="  - filter: a >= ${params.min_a}\n  - python: wfsteps2:note_region")
                                    + "params: {min_a: 1}\n")
    (jobs / "slow.yaml").write_text(JOB.format(name="slow", steps="  - python: wfsteps2:record_pid")
                                    + "timeout_minutes: 1\n")
    (jobs / "isolated.yaml").write_text(WORKFLOW)

    env = {**os.environ, "PYTHONPATH": str(REPO), "ETL_MINUTE_SECONDS": "40"}
    env.pop("ETL_PROJECT_DIR", None)
    r = subprocess.run([sys.executable, "-c", "from etl_framework.cli import main; main()", "workflow", "run",
                        "jobs/isolated.yaml", "--executor", "subprocess", "--json"],
                       cwd=proj, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert r.returncode == 1, r.stderr[-3000:]
    rec = json.loads(r.stdout)
    assert rec["executor"] == "subprocess"
    nodes = {n["node"]: n for n in rec["nodes"]}
    assert nodes["fast"]["state"] == "SUCCEEDED", nodes["fast"]
    assert nodes["slow"]["state"] == "TIMEOUT"
    assert rec["properties"]["seen_region"] == "eu"  # run properties reach a subprocess job, both ways

    # the job ran as its own spark-submit, with the engine's job run id; its output is in the node's log
    fast_log = proj / ".etl" / "logs" / rec["run_id"] / "fast.1.log"
    assert fast_log.is_file()
    assert nodes["fast"]["job_run_id"] and nodes["fast"]["job_run_id"] in fast_log.read_text()

    # the param given as a Glue argument (--min_a 2) reached the job: rows with a >= 2 only
    import pyarrow.fs as pafs
    from deltalake import DeltaTable

    path = str(proj / "data" / "lake" / "fast")
    table = DeltaTable(path).to_pyarrow_table(filesystem=pafs.SubTreeFileSystem(path, pafs.LocalFileSystem()))
    assert sorted(table.column("a").to_pylist()) == [2, 3]

    # the timed-out job's process (sleeping in plain Python) was killed, not left running
    pid = int((proj / "slow.pid").read_text())
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the timed-out job's process {pid} is still running")
    assert not (proj / "data" / "lake" / "slow" / "_delta_log").exists()  # nothing was committed
