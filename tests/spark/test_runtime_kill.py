"""A run killed with SIGKILL in the middle of its write leaves the target unchanged and readable; a second run
started meanwhile refuses to write the same target; the next run cleans up and commits.

The killed run is a real `etl run` process (its own JVM, killed with its whole process group); the checks and the
follow-up runs use the shared test session.
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
from typing import Any

import pytest

from etl_framework.config.model import JobConfig
from tests.conftest import REPO
from tests.spark.test_runtime_helpers import delta_rows, parquet_rows, run, snapshot

ETL = str(Path(sys.executable).parent / "etl")


SLOW_STEP = """
def slow(df, ctx):
    import time

    from pyspark.sql import functions as F, types as T

    def pause(v):
        time.sleep(0.002)
        return v

    return df.withColumn("trip_id", F.udf(pause, T.LongType())("trip_id"))
"""


def make_project(root: Path, fmt: str, rows: int, slow: bool = False) -> tuple[Path, dict[str, Any]]:
    """A project with generated trips (`rows`), an example-like job writing `fmt`, and a tiny baseline input.
    `slow` adds a python step that makes every row take 2 ms, so that the write is surely running when killed."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from generate_data import generate
    finally:
        sys.path.pop(0)
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n")
    (root / "jobs").mkdir()
    generate(rows, 4, 2, root / "data" / "big", quiet=True)
    generate(20, 1, 1, root / "data" / "small", seed=7, quiet=True)
    spec = {
        "job": "kill_me",
        "params": {"input": str(root / "data" / "big" / "trips")},
        "sources": {"trips": {"format": "csv", "path": "${params.input}", "options": {"header": True},
                              "schema": {"trip_id": "long", "pickup_ts": "timestamp", "dropoff_ts": "timestamp",
                                         "pickup_zone_id": "int", "trip_distance": "double",
                                         "fare_amount": "double", "tip_amount": "double",
                                         "passenger_count": "int"}}},
        "transform": [{"with_columns": {"pickup_date": "to_date(pickup_ts)", "fare2": "fare_amount * 2"}}],
        "target": {"format": fmt, "path": str(root / "lake" / "trips"), "partition_by": ["pickup_date"],
                   "mode": "overwrite"},
    }
    if slow:
        (root / "rt_slow.py").write_text(SLOW_STEP)
        spec["transform"].insert(0, {"python": "rt_slow:slow"})
    (root / "jobs" / "kill_me.yaml").write_text(json.dumps(spec, indent=1))
    return root / "jobs" / "kill_me.yaml", spec


def config(spec: dict[str, Any], input_path: Path) -> JobConfig:
    data = json.loads(json.dumps(spec))
    data["sources"]["trips"]["path"] = str(input_path)
    data.pop("params")
    data["transform"] = [s for s in data["transform"] if "python" not in s]  # the follow-up runs go fast
    return JobConfig.model_validate(data)


def start(project: Path, job_file: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [ETL, "--project-dir", str(project), "run", str(job_file), "--no-report"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "ETL_QUIET": "1", **(env or {})},
    )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def wait_for(pred: Any, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc.poll() is not None:
            _out, err = proc.communicate()
            pytest.fail(f"the run ended (exit {proc.returncode}) before the point to kill it:\n{err.decode()[-2000:]}")
        time.sleep(0.02)
    kill_group(proc)
    pytest.fail("timed out waiting for the write to start")


def staged_files(target: Path) -> list[Path]:
    staging = target / "_staging"
    return [p for p in staging.rglob("*") if p.is_file()] if staging.exists() else []


def running_run_id(db: Path) -> str | None:
    import sqlite3

    if not db.exists():
        return None
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT run_id FROM job_runs WHERE status = 'RUNNING' AND job = 'kill_me'").fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()
    return row[0] if row else None


def committed(target: Path) -> dict[str, str]:
    return {k: v for k, v in snapshot(target).items() if not k.startswith("_staging")}


def test_sigkill_mid_parquet_write_leaves_the_target_unchanged(spark: Any, tmp_path: Path) -> None:
    from etl_framework.tables.parquet import read_committed_parquet

    project = tmp_path / "proj"
    job_file, spec = make_project(project, "parquet", rows=8_000, slow=True)
    target, db = project / "lake" / "trips", project / ".etl" / "state.db"
    small = project / "data" / "small" / "trips"
    assert run(spark, config(spec, small), db).ok
    old_rows = parquet_rows(target)
    before = committed(target)
    assert len(old_rows) == 20

    proc = start(project, job_file)
    try:
        wait_for(lambda: bool(staged_files(target)), proc)
        victim = running_run_id(db)
        assert victim is not None
        # a second run meanwhile: refused, naming the run that writes
        second = run(spark, config(spec, small), db)
        assert second.exit_code == 1 and second.error_stage == "write"
        assert f"run {victim} of job kill_me" in second.error
    finally:
        kill_group(proc)
    assert proc.returncode == -signal.SIGKILL

    assert committed(target) == before  # byte for byte, staging garbage aside
    assert parquet_rows(target) == old_rows
    assert read_committed_parquet(spark, str(target)).count() == 20
    assert spark.read.parquet(str(target)).count() == 20  # a plain directory reader too

    again = run(spark, config(spec, small), db)  # takes the dead run's lock over and cleans its garbage
    assert again.ok, again.error
    assert not (target / "_staging").exists() and parquet_rows(target) == old_rows
    from etl_framework.state.runs import SqliteRunStore

    store = SqliteRunStore(db)
    assert store.get_run(victim)["status"] == "FAILED"
    store.close()


@pytest.mark.parametrize("point", ["parquet.moved", pytest.param("parquet.committed", marks=pytest.mark.slow)])
def test_sigkill_inside_the_parquet_commit(spark: Any, tmp_path: Path, point: str) -> None:
    """Killed after the files moved but before the manifest (old table), or right after it (new table): a
    manifest reader never sees a mix, and the next run leaves exactly the manifest's files on disk."""
    from etl_framework.tables.parquet import read_committed_parquet

    project = tmp_path / "proj"
    job_file, spec = make_project(project, "parquet", rows=3_000)
    target, db = project / "lake" / "trips", project / ".etl" / "state.db"
    assert run(spark, config(spec, project / "data" / "small" / "trips"), db).ok
    proc = start(project, job_file, {"ETL_FAULT_KILL_AT": point})
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    expected = 20 if point == "parquet.moved" else 3_000
    assert len(parquet_rows(target)) == expected
    assert read_committed_parquet(spark, str(target)).count() == expected
    # `etl query` on the registered table reads through the manifest: the moved, uncommitted files are invisible
    from etl_framework.catalog.local import LocalCatalog
    from etl_framework.catalog.query import run_query
    from etl_framework.stages.register import register_target

    catalog = LocalCatalog(tmp_path / "query_catalog.db")
    fields = [(f.name, f.dataType.simpleString()) for f in read_committed_parquet(spark, str(target)).schema]
    register_target(catalog, "lake", "trips", "parquet", str(target), fields, ["pickup_date"])
    if point == "parquet.moved":
        assert len([p for p in target.rglob("*.parquet") if "_staging" not in str(p)]) > 1  # files beside the old
    assert run_query(catalog, "SELECT count(*) AS n FROM lake.trips").rows == [(expected,)]

    r = run(spark, config(spec, project / "data" / "small" / "trips"), db)
    assert r.ok, r.error
    manifest = json.loads((target / "_etl_manifest.json").read_text())
    on_disk = sorted(k for k in snapshot(target) if not k.startswith(("_", ".")) and "/." not in k)
    assert on_disk == sorted(f["path"] for f in manifest["files"])
    assert spark.read.parquet(str(target)).count() == 20


@pytest.mark.slow
def test_sigkill_mid_delta_write_leaves_the_table_unchanged(spark: Any, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    job_file, spec = make_project(project, "delta", rows=8_000, slow=True)
    target, db = project / "lake" / "trips", project / ".etl" / "state.db"
    assert run(spark, config(spec, project / "data" / "small" / "trips"), db).ok
    old_rows = delta_rows(target)
    log_before = sorted(p.name for p in (target / "_delta_log").iterdir())
    proc = start(project, job_file)
    try:
        # Delta writes straight into the table folder; its commit is the log entry. Kill once new data files
        # appear beside the baseline's.
        baseline = {p for p in target.rglob("*.parquet")}
        wait_for(lambda: any(p not in baseline for p in target.rglob("*.parquet")), proc)
    finally:
        kill_group(proc)
    assert sorted(p.name for p in (target / "_delta_log").iterdir()) == log_before
    assert delta_rows(target) == old_rows
    assert spark.read.format("delta").load(str(target)).count() == 20
    assert run(spark, config(spec, project / "data" / "small" / "trips"), db).ok


def locks(db: Path) -> list[tuple[str, str]]:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT target, run_id FROM target_locks").fetchall()
    finally:
        con.close()


def etl_stop(project: Path, run_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ETL, "--project-dir", str(project), "stop", run_id], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "etl stop"])
def test_ctrl_c_or_etl_stop_mid_write_stops_the_run_cleanly(spark: Any, tmp_path: Path, how: str) -> None:
    """Ctrl-C (SIGINT) or `etl stop RUN_ID` from a second process (SIGTERM) while Spark writes: the run's job group
    is cancelled, one line is printed (no py4j traceback), the run and its stage are STOPPED, exit 130, its lock is
    free at once, the table unchanged; the next run loads the input exactly once."""
    from etl_framework.state.runs import SqliteRunStore

    project = tmp_path / "proj"
    job_file, spec = make_project(project, "delta", rows=3_000, slow=True)
    target, db = project / "lake" / "trips", project / ".etl" / "state.db"
    assert run(spark, config(spec, project / "data" / "small" / "trips"), db).ok
    old_rows = delta_rows(target)

    proc = start(project, job_file)
    try:
        wait_for(lambda: bool(locks(db)), proc)
        (_, run_id), = locks(db)
        baseline = set(target.rglob("*.parquet"))
        wait_for(lambda: any(p not in baseline for p in target.rglob("*.parquet")), proc)  # mid-write
        if how == "SIGINT":
            os.kill(proc.pid, signal.SIGINT)
        else:
            stopped = etl_stop(project, run_id)
            assert stopped.returncode == 0 and "SIGTERM" in stopped.stderr, stopped.stderr
        _out, err_b = proc.communicate(timeout=60)
    finally:
        kill_group(proc)
    err = err_b.decode()
    assert proc.returncode == 130, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and f"run {run_id} of job kill_me stopped" in lines[0], err
    assert "Traceback" not in err and "py4j" not in err.lower()
    assert locks(db) == []
    store = SqliteRunStore(db)
    try:
        rec = store.get_run(run_id)
    finally:
        store.close()
    assert rec["status"] == "STOPPED" and rec["exit_code"] == 130
    assert [s["status"] for s in rec["stages"] if s["stage"] == "write"] == ["STOPPED"]
    assert delta_rows(target) == old_rows
    assert etl_stop(project, run_id).returncode == 2  # nothing left to stop, said so

    again = run(spark, config(spec, project / "data" / "big" / "trips"), db)
    assert again.ok, again.error
    assert len(delta_rows(target)) == 3_000  # the generated input's rows, once (it has duplicates of its own)


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["inline", "subprocess"])
def test_stopping_a_workflow_mid_write_stops_its_node_and_job_run(spark: Any, tmp_path: Path, executor: str) -> None:
    """Ctrl-C on `etl workflow run` (inline: the job runs in the workflow's process) or `etl stop WR_ID` from a second
    process (subprocess: the workflow cancels its spark-submit child with SIGTERM): the node and its job run are
    STOPPED (not FAILED), the workflow run STOPPED, exit 130, no traceback; the next run loads the input once."""
    import sqlite3

    project = tmp_path / "proj"
    _, spec = make_project(project, "delta", rows=3_000, slow=True)
    shutil.copytree(REPO / "spark-conf", project / "spark-conf")
    (project / "jobs" / "wf.yaml").write_text(
        "workflow: wf\njobs: {kill_me: kill_me.yaml}\n"
        "triggers:\n  - {name: go, type: on_demand, actions: [{job: kill_me}]}\n")
    target, db = project / "lake" / "trips", project / ".etl" / "state.db"
    proc = subprocess.Popen(
        [ETL, "--project-dir", str(project), "workflow", "run", str(project / "jobs" / "wf.yaml"), "--executor",
         executor, "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "ETL_QUIET": "1"}, cwd=project)

    def query(sql: str) -> list[tuple[Any, ...]]:
        if not db.exists():
            return []
        con = sqlite3.connect(db)
        try:
            return con.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            con.close()

    try:
        wait_for(lambda: target.exists() and any(target.rglob("*.parquet")), proc)  # mid-write
        if executor == "inline":
            os.kill(proc.pid, signal.SIGINT)
        else:
            (wr_id,), = query("SELECT run_id FROM workflow_runs WHERE state = 'RUNNING'")
            stopped = etl_stop(project, wr_id)
            assert stopped.returncode == 0, stopped.stderr
        _out, err_b = proc.communicate(timeout=120)
    finally:
        kill_group(proc)
    err = err_b.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "py4j" not in err.lower(), err
    assert "stopped" in err.splitlines()[-1], err
    (state,), = query("SELECT state FROM workflow_runs")
    assert state == "STOPPED"
    (node_state, job_run_id), = query("SELECT state, job_run_id FROM workflow_nodes WHERE node = 'kill_me'")
    assert node_state == "STOPPED"
    (job_status,), = query(f"SELECT status FROM job_runs WHERE run_id = '{job_run_id}'")
    assert job_status == "STOPPED"
    assert locks(db) == []

    again = run(spark, config(spec, project / "data" / "big" / "trips"), db)
    assert again.ok, again.error
    assert len(delta_rows(target)) == 3_000
