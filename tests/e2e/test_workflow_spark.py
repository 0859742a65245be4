"""Workflow runs with real jobs on real local Spark and Delta, through the CLI as a user runs them:

- two processes racing a `max_concurrent_runs: 1` workflow: exactly one runs, the other is refused with its id;
- in that run: a job failing in the middle (downstream `and` trigger never fires), retries with backoff, a timeout
  (the Spark job group is cancelled, node TIMEOUT), `any` firing once, statistics, exit 1;
- a run whose process is killed (SIGKILL) stays RUNNING, `status` says it is orphaned, and it resumes;
- resume runs only the failed nodes and what is downstream of them; run properties put by a job reach later jobs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etl_framework.state.workflows import WorkflowStore
from tests.conftest import REPO

pytestmark = pytest.mark.slow

STEPS = '''
"""python: steps of the e2e workflow: each leaves a trace in flags/ so the test sees what ran."""
import time
from pathlib import Path

FLAGS = Path(__file__).parent / "flags"


def _log(name):
    FLAGS.mkdir(exist_ok=True)
    with open(FLAGS / name, "a") as f:
        f.write(f"{time.time()}\\n")


def put_rows(df, ctx):
    ctx.run_properties.put("a_rows", df.count())
    return df


def fail_first(df, ctx):
    _log("flaky")
    if len((FLAGS / "flaky").read_text().split()) == 1:
        raise RuntimeError("flaky: the first attempt fails")
    return df


def fail_unless_fixed(df, ctx):
    _log("broken")
    if not (FLAGS / "fixed").exists():
        raise RuntimeError("broken: not fixed yet")
    return df


def slow(df, ctx):
    _log("slow")
    if (FLAGS / "fixed").exists():
        return df
    from pyspark.sql import functions as F

    def sleepy(x):
        import time as t
        t.sleep(60)
        return x

    df.select(F.udf(sleepy, "int")(F.col("a"))).collect()  # a long Spark job: cancelled at the timeout
    return df


def read_rows(df, ctx):
    _log("both")
    (FLAGS / "seen_a_rows").write_text(str(ctx.run_properties.get("a_rows")))
    return df


def mark(df, ctx):
    _log("either")
    return df
'''

JOB = """job: {name}
sources:
  src: {{format: csv, path: "${{env.data}}/in.csv", options: {{header: true}}, schema: {{a: int, b: string}}}}
transform:
  - filter: "'${{run.region}}' = 'eu'"
  - python: wfsteps:{step}
target: {{format: delta, path: "${{env.data}}/lake/{name}", mode: overwrite}}
{extra}"""

WORKFLOW = """workflow: semantics
max_concurrent_runs: 1
concurrency: 2
run_properties: {region: eu}
jobs: {load_a: load_a.yaml, flaky: flaky.yaml, broken: broken.yaml, slow: slow.yaml, both: both.yaml,
       either: either.yaml}
triggers:
  - {name: start, type: on_demand, actions: [{job: load_a}, {job: flaky}, {job: broken}, {job: slow}]}
  - name: t_and
    type: conditional
    logical: and
    conditions: [{job: load_a, state: SUCCEEDED}, {job: broken, state: SUCCEEDED}]
    actions: [{job: both}]
  - name: t_any
    type: conditional
    logical: any
    conditions: [{job: load_a, state: SUCCEEDED}, {job: flaky, state: SUCCEEDED}]
    actions: [{job: either}]
"""


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "local.yaml").write_text(
        "vars: {data: ../data}\nstate: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n"
        "spark: {spark.sql.shuffle.partitions: 1}\n")
    shutil.copytree(REPO / "spark-conf", root / "spark-conf")
    (root / "data").mkdir()
    (root / "data" / "in.csv").write_text("a,b\n1,x\n2,y\n3,z\n")
    (root / "wfsteps.py").write_text(STEPS)
    jobs = root / "jobs"
    jobs.mkdir()
    specs = {
        "load_a": ("put_rows", ""), "flaky": ("fail_first", "retries: {max_attempts: 2, backoff_seconds: 2}\n"),
        "broken": ("fail_unless_fixed", "retries: {max_attempts: 1}\n"), "slow": ("slow", "timeout_minutes: 1\n"),
        "both": ("read_rows", ""), "either": ("mark", ""),
    }
    for name, (step, extra) in specs.items():
        (jobs / f"{name}.yaml").write_text(JOB.format(name=name, step=step, extra=extra))
    (jobs / "semantics.yaml").write_text(WORKFLOW)
    return root


def env(**extra: str) -> dict[str, str]:
    e = {**os.environ, "PYTHONPATH": str(REPO), "ETL_MINUTE_SECONDS": "6", "ETL_QUIET": "1", **extra}
    e.pop("ETL_PROJECT_DIR", None)
    return e


def etl_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from etl_framework.cli import main; main()", *args]


def etl(proj: Path, *args: str, timeout: float = 400, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(etl_cmd(*args), cwd=proj, capture_output=True, text=True, env=env(**extra_env),
                          timeout=timeout, check=False)


def spawn(proj: Path, *args: str, **extra_env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(etl_cmd(*args), cwd=proj, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(**extra_env))


def status(proj: Path, run_id: str | None = None) -> dict:
    r = etl(proj, "workflow", "status", *([run_id] if run_id else []), "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def states(rec: dict) -> dict[str, str | None]:
    return {n["node"]: n["state"] for n in rec["nodes"]}


def node(rec: dict, name: str) -> dict:
    return next(n for n in rec["nodes"] if n["node"] == name)


def flag_lines(proj: Path, name: str) -> list[float]:
    p = proj / "flags" / name
    return [float(x) for x in p.read_text().split()] if p.exists() else []


def test_race_failure_retry_timeout_kill_and_resume(proj: Path) -> None:
    # Two processes start the same max_concurrent_runs: 1 workflow at once: exactly one runs.
    a = spawn(proj, "workflow", "run", "jobs/semantics.yaml", "--json")
    b = spawn(proj, "workflow", "run", "jobs/semantics.yaml", "--json")
    outs = [p.communicate(timeout=600) for p in (a, b)]
    codes = [a.returncode, b.returncode]
    assert codes == [1, 1], outs
    ran = [i for i, (out, _e) in enumerate(outs) if out.strip()]
    assert len(ran) == 1, outs
    first = json.loads(outs[ran[0]][0])
    refused_err = outs[1 - ran[0]][1]
    assert "max_concurrent_runs is 1" in refused_err and first["run_id"] in refused_err

    # The run: a failure in the middle, a retry with backoff, a timeout, `and` vs `any`.
    assert first["state"] == "COMPLETED"
    assert states(first) == {"load_a": "SUCCEEDED", "flaky": "SUCCEEDED", "broken": "FAILED", "slow": "TIMEOUT",
                             "both": None, "either": "SUCCEEDED"}
    assert first["statistics"] == {
        "TotalActions": 5, "RunningActions": 0, "SucceededActions": 3, "FailedActions": 1, "TimeoutActions": 1,
        "StoppedActions": 0, "ErroredActions": 0, "WaitingActions": 0,
    }
    flaky = node(first, "flaky")
    assert flaky["attempts"] == 2 and len(flaky["job_run_ids"]) == 2
    tries = flag_lines(proj, "flaky")
    assert len(tries) == 2 and tries[1] - tries[0] >= 2.0  # backoff_seconds: 2
    assert "broken: not fixed yet" in node(first, "broken")["error"]
    assert "timed out after 1 min" in node(first, "slow")["error"]
    assert len(flag_lines(proj, "either")) == 1  # `any` fired once although both conditions came true
    trig = {t["trigger"]: t for t in first["triggers"]}
    assert trig["t_and"]["state"] == "NOT_FIRED" and "broken ended FAILED" in trig["t_and"]["reason"]
    assert first["properties"] == {"region": "eu", "a_rows": 3}
    # each job node links to its job run, which `etl show` knows
    shown = etl(proj, "show", node(first, "load_a")["job_run_id"], "--json", timeout=60)
    assert shown.returncode == 0, shown.stderr
    job_run = json.loads(shown.stdout)
    assert job_run["status"] == "SUCCEEDED" and job_run["workflow_run_id"] == first["run_id"]
    retried = [json.loads(etl(proj, "show", jr, "--json", timeout=60).stdout) for jr in flaky["job_run_ids"]]
    assert [j["status"] for j in retried] == ["FAILED", "SUCCEEDED"] and [j["attempt"] for j in retried] == [1, 2]

    # A resume whose process is killed mid-run (slow's timeout made long here, so it is surely RUNNING when
    # killed): the record stays RUNNING, status says the run is orphaned.
    killed = spawn(proj, "workflow", "resume", first["run_id"], ETL_MINUTE_SECONDS="600")
    store = WorkflowStore(proj / ".etl" / "state.db")
    deadline = time.monotonic() + 300
    killed_id = None
    while time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.5)
        latest = store.latest_run_id("semantics")
        if latest != first["run_id"] and node(store.get_run(latest), "slow")["state"] == "RUNNING":
            killed_id = latest
            break
    assert killed_id is not None, killed.communicate()
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    rec = status(proj, killed_id)
    assert rec["state"] == "RUNNING" and rec["owner_alive"] is False
    assert f"etl workflow resume {killed_id}" in rec["hint"]
    text = etl(proj, "workflow", "status", killed_id).stdout
    assert "orphaned" in text

    # Fix the cause and resume the killed run: only the failed nodes and what depends on them run again.
    (proj / "flags" / "fixed").write_text("")
    before = {n: len(flag_lines(proj, n)) for n in ("flaky", "either", "broken", "slow", "both")}
    r = etl(proj, "workflow", "resume", killed_id, "--json", ETL_MINUTE_SECONDS="600")
    assert r.returncode == 0, r.stderr
    final = json.loads(r.stdout)
    assert status(proj, killed_id)["state"] == "STOPPED"  # marked before being resumed
    assert final["previous_run_id"] == killed_id
    assert all(s == "SUCCEEDED" for s in states(final).values()), states(final)
    rerun = {n["node"] for n in final["nodes"] if not n["copied_from"]}
    assert rerun == {"broken", "slow", "both"}
    after = {n: len(flag_lines(proj, n)) for n in before}
    assert after["flaky"] == before["flaky"] and after["either"] == before["either"]  # not re-run
    assert after["broken"] == before["broken"] + 1 and after["both"] == before["both"] + 1
    assert (proj / "flags" / "seen_a_rows").read_text() == "3"  # a property put in the first run, read now
