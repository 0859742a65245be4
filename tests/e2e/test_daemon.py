"""The warm development loop (`etl daemon`, issue 19): commands run in one warm Spark session, give what a cold run
gives, see nothing an earlier command left, stop on Ctrl-C like a cold run, a daemon of other code is replaced, and
a daemon killed mid-run is as safe as a killed `etl run` (exactly-once on the next run).

One daemon serves the module's first tests (its start is one JVM start); the stale-code test replaces it, and the
last test kills the replacement. The checks read the tables with delta-rs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etl_framework.runtime.daemon import alive
from tests.spark.test_runtime_helpers import delta_rows
from tests.spark.test_runtime_kill import ETL, kill_group, locks, make_project, wait_for

pytestmark = pytest.mark.slow

LEAK_STEP = """
def make(df, ctx):
    df.sparkSession.conf.set("spark.etl.test.leak", "yes")
    df.createOrReplaceTempView("leak_view")
    return df.withColumn("step", __import__("pyspark.sql.functions", fromlist=["lit"]).lit("{version}"))


def check(df, ctx):
    spark = df.sparkSession
    if spark.catalog.tableExists("leak_view"):
        raise RuntimeError("a temp view of an earlier command is visible")
    if spark.conf.get("spark.etl.test.leak", None) is not None:
        raise RuntimeError("a SQL conf of an earlier command is set")
    return df.withColumn("step", __import__("pyspark.sql.functions", fromlist=["lit"]).lit("{version}"))
"""


def job_yaml(root: Path, name: str, source: str, out: str, *, steps: list[dict[str, Any]] | None = None,
             incremental: bool = False, mode: str = "overwrite") -> Path:
    src: dict[str, Any] = {"format": "csv", "path": source, "options": {"header": True},
                           "schema": {"trip_id": "long", "pickup_ts": "timestamp", "dropoff_ts": "timestamp",
                                      "pickup_zone_id": "int", "trip_distance": "double", "fare_amount": "double",
                                      "tip_amount": "double", "passenger_count": "int"}}
    if incremental:
        src["incremental"] = {"mode": "files"}
    spec = {"job": name, "params": {"out": out}, "sources": {"trips": src},
            "transform": [*(steps or []), {"with_columns": {"fare2": "fare_amount * 2"}}],
            "target": {"format": "delta", "path": "${params.out}", "mode": mode}}
    path = root / "jobs" / f"{name}.yaml"
    path.write_text(json.dumps(spec, indent=1))
    return path


def etl(project: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ETL, "--project-dir", str(project), *args], capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=project, env={**os.environ, **(env or {})})


def info(project: Path) -> dict[str, Any]:
    return json.loads((project / ".etl" / "daemon-local.json").read_text())


def run_pid(project: Path, run_id: str) -> int:
    conn = sqlite3.connect(project / ".etl" / "state.db")
    try:
        return int(conn.execute("SELECT pid FROM job_runs WHERE run_id = ?", (run_id,)).fetchone()[0])
    finally:
        conn.close()


def run_id_of(stderr: str) -> str:
    return next(w for w in stderr.split() if w.startswith("jr_")).rstrip(";:,")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("daemon") / "proj"
    make_project(root, "delta", rows=2_000, slow=True)  # jobs/kill_me.yaml: a python step makes rows slow
    data = root / "data"
    job_yaml(root, "small", str(data / "small" / "trips"), str(root / "lake" / "small"))
    (root / "leak.py").write_text(LEAK_STEP.replace("{version}", "v1"))
    job_yaml(root, "make_leak", str(data / "small" / "trips"), str(root / "lake" / "leak1"),
             steps=[{"python": "leak:make"}])
    job_yaml(root, "check_leak", str(data / "small" / "trips"), str(root / "lake" / "leak2"),
             steps=[{"python": "leak:check"}])
    job_yaml(root, "inc", str(data / "big" / "trips"), str(root / "lake" / "inc"), incremental=True, mode="append")
    started = etl(root, "daemon", "start", "--json")
    assert started.returncode == 0, started.stderr
    yield root
    etl(root, "daemon", "stop")


def test_a_command_runs_in_the_warm_session_and_gives_what_a_cold_run_gives(project: Path, spark: Any) -> None:
    from etl_framework.config.project import Project
    from etl_framework.engine.job import run_job

    pid = info(project)["pid"]
    warm = etl(project, "run", "jobs/small.yaml", "--no-report")
    assert warm.returncode == 0, warm.stderr
    assert run_pid(project, run_id_of(warm.stderr)) == pid  # run by the daemon's process, not a new one
    again = etl(project, "run", "jobs/small.yaml", "--no-report", "--json")
    assert again.returncode == 0, again.stderr
    record = json.loads(again.stdout)  # --json: the run record alone on stdout, through the daemon too
    assert record["status"] == "SUCCEEDED" and record["pid"] == pid
    cold = run_job(project / "jobs" / "small.yaml", project=Project(project), spark=spark, quiet=True,
                   params={"out": str(project / "lake" / "small_cold")})
    assert cold.ok, cold.error
    assert delta_rows(project / "lake" / "small") == delta_rows(project / "lake" / "small_cold") != []
    off = etl(project, "run", "jobs/small.yaml", "--no-report", "--json", env={"ETL_NO_DAEMON": "1"}, timeout=900)
    assert off.returncode == 0 and json.loads(off.stdout)["pid"] != pid  # off: a process of its own


def test_a_command_sees_nothing_an_earlier_one_left_and_a_changed_step_is_imported_anew(project: Path) -> None:
    first = etl(project, "run", "jobs/make_leak.yaml", "--no-report")
    assert first.returncode == 0, first.stderr
    assert {r["step"] for r in delta_rows(project / "lake" / "leak1")} == {"v1"}
    (project / "leak.py").write_text(LEAK_STEP.replace("{version}", "v2"))
    second = etl(project, "run", "jobs/check_leak.yaml", "--no-report")
    assert second.returncode == 0, second.stderr  # no temp view, no SQL conf of the first command
    assert {r["step"] for r in delta_rows(project / "lake" / "leak2")} == {"v2"}  # the step as it is now


def test_ctrl_c_in_the_client_stops_the_run_in_the_daemon_which_serves_on(project: Path) -> None:
    db = project / ".etl" / "state.db"
    proc = subprocess.Popen([ETL, "--project-dir", str(project), "run", "jobs/kill_me.yaml", "--no-report"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, cwd=project)
    try:
        wait_for(lambda: any("lake/trips" in target for target, _ in locks(db)), proc)
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGINT)
        _out, err_b = proc.communicate(timeout=120)
    finally:
        kill_group(proc)
    err = err_b.decode()
    assert proc.returncode == 130, err
    assert "stopped" in err and "Traceback" not in err
    conn = sqlite3.connect(db)
    try:
        status = conn.execute("SELECT status FROM job_runs WHERE job = 'kill_me' ORDER BY started_at DESC").fetchone()
    finally:
        conn.close()
    assert status == ("STOPPED",)
    assert locks(db) == []
    assert etl(project, "run", "jobs/small.yaml", "--no-report").returncode == 0  # the daemon serves on


def test_a_daemon_of_other_code_is_replaced(project: Path) -> None:
    old = info(project)
    path = project / ".etl" / "daemon-local.json"
    path.write_text(json.dumps({**old, "code": "older-code"}))
    r = etl(project, "run", "jobs/small.yaml", "--no-report")
    assert r.returncode == 0, r.stderr
    assert "runs other framework code or Spark settings: replacing it" in r.stderr
    new = info(project)
    assert new["pid"] != old["pid"] and run_pid(project, run_id_of(r.stderr)) == new["pid"]
    assert not alive(old["pid"])


def test_a_daemon_killed_mid_run_is_as_safe_as_a_killed_run(project: Path, spark: Any) -> None:
    from etl_framework.config.project import Project
    from etl_framework.engine.job import run_job

    pid = info(project)["pid"]
    r = etl(project, "run", "jobs/inc.yaml", "--no-report", env={"ETL_FAULT_KILL_AT": "write.committed"})
    assert r.returncode == 1 and f"etl daemon (pid {pid}) ended during the command" in r.stderr, r.stderr
    assert not alive(pid)
    committed = len(delta_rows(project / "lake" / "inc"))
    assert committed > 0  # killed after its commit, before its run record said so
    again = run_job(project / "jobs" / "inc.yaml", project=Project(project), spark=spark, quiet=True)
    assert again.ok, again.error
    rows = delta_rows(project / "lake" / "inc")
    assert len(rows) == committed  # the files were read once: the bookmark rode in the killed run's commit
    # no daemon serves any more: status says so, and the next command runs in its own process
    assert json.loads(etl(project, "daemon", "status", "--json").stdout)["running"] is False
