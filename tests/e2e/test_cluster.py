"""The cluster path (issue 21): a Spark standalone master and two workers, started by this module on 127.0.0.1 from
the installed pyspark's own launcher classes (`spark-class ...deploy.master.Master` / `...deploy.worker.Worker`),
each worker with its own work and local folders, so that driver and executors are different JVMs in different
working directories, as on EMR or Glue.

- A job with a `python:` step (whose Python UDF the executors import from the shipped module) and a quarantine rule
  (the JVM side output, written by executors) runs with `spark://` as `etl run` subprocesses; its target and
  quarantine equal, row by row as delta-rs reads them, one `local[2]` run of the same job over the same files.
- Its second run loses a worker to SIGKILL (worker, executor and Python workers: the whole process group) while
  the write's tasks run on it; Spark retries them on the other worker; the table is still right, the quarantine
  holds each bad row once and the bookmark lists each file once.
- `etl doctor` names a dead master and a Python minor version mismatch of the executors.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.spark.test_runtime_helpers import delta_rows

pytestmark = pytest.mark.slow

ETL = str(Path(sys.executable).parent / "etl")
JARS = REPO / ".jars"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A standalone master and its workers, each in its own process group (a SIGKILL takes its executors too)."""

    def __init__(self, root: Path) -> None:
        import pyspark

        self.root = root
        self.home = Path(pyspark.__file__).parent
        self.port, self.ui = free_port(), free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.work: dict[str, Path] = {}
        from etl_framework.runtime.spark import java_home

        self.env = {**os.environ, "SPARK_HOME": str(self.home), "SPARK_LOCAL_IP": "127.0.0.1",
                    "SPARK_DAEMON_MEMORY": "256m", "SPARK_NO_DAEMONIZE": "1",
                    "JAVA_HOME": java_home() or os.environ.get("JAVA_HOME", "")}

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the process's life
        self.procs[name] = subprocess.Popen([str(self.home / "bin" / "spark-class"), *args], stdout=log,
                                            stderr=subprocess.STDOUT, env={**self.env, **(env or {})},
                                            start_new_session=True)

    def start(self, workers: int = 2) -> None:
        self._start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port",
                               str(self.port), "--webui-port", str(self.ui)])
        for i in range(workers):
            name = f"worker{i}"
            work = self.root / name
            (work / "local").mkdir(parents=True)
            self.work[name] = work
            self._start(name, ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--webui-port",
                               str(free_port()), "--cores", "1", "--memory", "1g", "--work-dir", str(work),
                               self.url], {"SPARK_LOCAL_DIRS": str(work / "local")})
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.alive_workers() == workers:
                return
            time.sleep(0.5)
        logs = "\n".join((self.root / f"{n}.log").read_text(errors="replace")[-1500:] for n in self.procs)
        raise RuntimeError(f"the standalone cluster did not come up:\n{logs}")

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui}/json/", timeout=5) as r:
            return dict(json.loads(r.read()))

    def alive_workers(self) -> int:
        try:
            return sum(1 for w in self.state()["workers"] if w["state"] == "ALIVE")
        except OSError:
            return 0

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(timeout=30)

    def stop(self) -> None:
        for name, p in reversed(list(self.procs.items())):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(timeout=20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


STEPS = '''\
"""python: steps of the cluster test. `band` runs on the executors (a Python UDF, pickled by reference: the
executors import this module from the zip the framework ships); it leaves a marker naming its working folder (the
executor's, under its worker's work dir) and, while the `slow` flag file exists, takes its time."""
import os
import time
from pathlib import Path

MARKS = Path({marks!r})


def band(fare):
    MARKS.mkdir(exist_ok=True)
    mark = MARKS / ("cwd-%d" % os.getpid())
    if not mark.exists():
        mark.write_text(os.getcwd() + "\\n" + __file__)
    if (MARKS / "slow").exists():
        time.sleep(0.01)
    if fare is None:
        return None
    return "high" if fare >= 20 else "low"


def add_band(df, ctx):
    from pyspark.sql import functions as F

    udf = F.udf(band, "string")
    return df.repartition(4, "trip_id").withColumn("band", udf(F.col("fare")))
'''

JOB = {
    "job": "scaled",
    "sources": {"trips": {"format": "csv", "path": "${env.raw}", "options": {"header": True},
                          "incremental": {"mode": "files"},
                          "schema": {"trip_id": "long", "pickup_ts": "timestamp", "zone": "int", "fare": "double"}}},
    "transform": [{"python": "cluster_steps.steps:add_band"}, {"with_columns": {"day": "to_date(pickup_ts)"}}],
    "quality": [
        {"expect": "expect_column_values_to_not_be_null", "column": "trip_id", "on_fail": "fail"},
        {"expect": "expect_column_values_to_be_between", "column": "fare", "min_value": 0, "max_value": 100,
         "on_fail": "quarantine", "name": "fare_in_range"},
    ],
    "target": {"format": "delta", "path": "${env.lake}/trips", "partition_by": ["day"], "mode": "append"},
}


def spark_map(master: str) -> dict[str, str]:
    """The env's `spark:` map for the cluster: only the JARs this job needs (Delta and the framework's helper; the
    default list, ~380 MB, is shipped the same way but costs seconds per executor), small executors."""
    jars = [JARS / "delta-spark_2.12-3.3.0.jar", JARS / "delta-storage-3.3.0.jar", JARS / "etl-framework-spark.jar"]
    return {"spark.master": master, "spark.jars": ",".join(map(str, jars)),
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.executor.memory": "512m", "spark.cores.max": "2", "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1", "spark.sql.shuffle.partitions": "4"}


def land(raw: Path, index: int, rows: int) -> None:
    """One CSV file: fares 0..39 with every 10th row out of range (quarantined)."""
    lines = ["trip_id,pickup_ts,zone,fare"]
    for i in range(index * rows, (index + 1) * rows):
        fare = 250.0 + i if i % 10 == 0 else float(i % 40)
        lines.append(f"{i},2024-01-0{i % 3 + 1} 10:00:00,{i % 7},{fare}")
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f"part-{index:03d}.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Path:
    root = tmp_path_factory.mktemp("proj")
    (root / "jobs").mkdir()
    (root / "conf").mkdir()
    pkg = root / "cluster_steps"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "steps.py").write_text(STEPS.format(marks=str(root / "marks")))
    (root / "jobs" / "scaled.yaml").write_text(yaml.safe_dump(JOB, sort_keys=False))
    for env, spark in (("cluster", spark_map(cluster.url)), ("local", {"spark.master": "local[2]"})):
        (root / "conf" / f"{env}.yaml").write_text(yaml.safe_dump({
            "vars": {"raw": str(root / "raw"), "lake": str(root / f"lake_{env}")},
            "state": {"path": str(root / f".etl_{env}" / "state.db")},
            "catalog": {"path": str(root / f".etl_{env}" / "catalog.db")}, "spark": spark}))
    return root


RUNS: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_leftover_runs() -> Iterator[None]:
    yield
    while RUNS:
        p = RUNS.pop()
        if p.poll() is None:  # a failed test left it running: it and its JVM go
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)


def etl(root: Path, env: str, *args: str) -> subprocess.Popen[str]:
    p = subprocess.Popen([ETL, "--project-dir", str(root), "--env", env, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "ETL_QUIET": "1"}, cwd=root,
                         start_new_session=True)
    RUNS.append(p)
    return p


def finished(p: subprocess.Popen[str], timeout: float = 400) -> dict[str, Any]:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]
    return dict(json.loads(out))


def gate_mode(record: dict[str, Any]) -> str:
    """How the run's quality gate ran: `inline` means the quarantined rows went through the helper JAR's side
    output on the executors (`count-first` would mean the JAR was not found)."""
    return str(next(s for s in record["stages"] if s["stage"] == "quality")["metrics"].get("mode"))


def quarantine(path: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in ("_run_id", "_quarantined_at")} for r in delta_rows(path)]


def test_cluster_run_equals_local_and_survives_a_lost_worker(proj: Path, cluster: Cluster) -> None:
    raw = proj / "raw"
    for i in range(2):
        land(raw, i, 100)
    first = finished(etl(proj, "cluster", "run", "jobs/scaled.yaml", "--json", "--no-report"))
    assert first["status"] == "SUCCEEDED" and gate_mode(first) == "inline", first  # executors ran the JVM tee
    marks = [Path(p).read_text().split("\n") for p in (proj / "marks").glob("cwd-*")]
    # the UDF ran in the executors' folders under the workers' work dirs, never in the driver's, and imported the
    # step module from the zip the driver shipped (the executor's copy of it), not from the project folder
    assert marks and all(cwd.startswith(str(cluster.root)) for cwd, _ in marks), marks
    assert all(os.path.normpath(os.path.join(cwd, f)).startswith(cwd + "/cluster_steps-")
               and f.endswith(".zip/cluster_steps/steps.py") for cwd, f in marks), marks

    # second batch: one worker is SIGKILLed while the write's tasks run; a local[2] run of both batches meanwhile
    for i in range(2, 6):
        land(raw, i, 150)
    for m in (proj / "marks").glob("cwd-*"):
        m.unlink()
    (proj / "marks" / "slow").touch()
    run = etl(proj, "cluster", "run", "jobs/scaled.yaml", "--json", "--no-report")
    victim = None
    deadline = time.time() + 300
    while victim is None and time.time() < deadline and run.poll() is None:
        for m in (proj / "marks").glob("cwd-*"):
            where = m.read_text().split("\n")[0]
            victim = next((n for n, w in cluster.work.items() if where.startswith(str(w))), None)
            if victim:
                break
        time.sleep(0.2)
    assert victim is not None, f"no task of the second run reached an executor: {run.poll()} " + (
        run.communicate()[1][-3000:] if run.poll() is not None else "")
    cluster.kill(victim)
    local = etl(proj, "local", "run", "jobs/scaled.yaml", "--json", "--no-report")
    second = finished(run)
    (proj / "marks" / "slow").unlink()
    finished(local)
    assert second["status"] == "SUCCEEDED" and gate_mode(second) == "inline", second

    target, local_target = delta_rows(proj / "lake_cluster" / "trips"), delta_rows(proj / "lake_local" / "trips")
    ids = [r["trip_id"] for r in target]
    assert len(ids) == len(set(ids)) == 2 * 100 + 4 * 150 - 80  # every 10th row is quarantined
    assert target == local_target
    q, local_q = (quarantine(proj / f"lake_{e}" / "trips_quarantine") for e in ("cluster", "local"))
    assert len(q) == len({r["trip_id"] for r in q}) == 80 and q == local_q
    assert all(r["_failed_rules"] == ["fare_in_range"] for r in q)
    # the gate's counts (an accumulator merged once per partition) ignore the lost worker's attempts
    stages = {s["stage"]: s["metrics"] for s in second["stages"]}
    mine = [r for r in delta_rows(proj / "lake_cluster" / "trips_quarantine") if r["_run_id"] == second["run_id"]]
    assert stages["quality"]["rows_quarantined"] == len(mine) > 0, stages
    assert stages["quality"]["rows_in"] == stages["write"]["rows_written"] + len(mine), stages

    shown = subprocess.run([ETL, "--project-dir", str(proj), "--env", "cluster", "bookmarks", "show", "scaled",
                            "--json"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    files = [f for f in json.dumps(json.loads(shown.stdout)).split('"') if f.endswith(".csv")]
    assert sorted(Path(f).name for f in files) == [f"part-{i:03d}.csv" for i in range(6)], shown.stdout


def test_doctor_names_a_dead_master_and_a_python_mismatch(proj: Path, cluster: Cluster, tmp_path: Path) -> None:
    dead = yaml.safe_load((proj / "conf" / "cluster.yaml").read_text())
    dead["spark"]["spark.master"] = f"spark://127.0.0.1:{free_port()}"
    (proj / "conf" / "dead.yaml").write_text(yaml.safe_dump(dead))
    p = subprocess.run([ETL, "--project-dir", str(proj), "--env", "dead", "doctor", "--json"], capture_output=True,
                       text=True, check=False)
    checks = {c["check"]: c for c in json.loads(p.stdout)}
    assert p.returncode == 1 and not checks["spark master"]["ok"], p.stdout
    assert "not reachable" in checks["spark master"]["detail"] and dead["spark"]["spark.master"] in \
        checks["spark master"]["detail"]

    other = next((str(c) for c in (*sorted(Path("/root/.pyenv/versions").glob("3.1[02]*/bin/python3")),
                                   *(Path(shutil.which(f"python3.{m}") or "/nonexistent") for m in (10, 12, 13)))
                  if c.is_file()), None)
    if other is None:
        pytest.skip("no Python of another minor version on this machine")
    mixed = yaml.safe_load((proj / "conf" / "cluster.yaml").read_text())
    mixed["spark"]["spark.pyspark.python"] = other
    (proj / "conf" / "mixed.yaml").write_text(yaml.safe_dump(mixed))
    p = subprocess.run([ETL, "--project-dir", str(proj), "--env", "mixed", "doctor", "--json"], capture_output=True,
                       text=True, check=False, timeout=240)
    checks = {c["check"]: c for c in json.loads(p.stdout)}
    assert checks["spark master"]["ok"], p.stdout
    py = checks["executor python"]
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert p.returncode == 1 and not py["ok"] and f"driver {minor}" in py["detail"] and other in py["detail"], py
