"""Bad input (issue 3): each failure names the job, the stage and what to do, exits 1, and leaves the target
exactly as it was (byte for byte), for a Delta and a Parquet target written by an earlier good run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from etl_framework.state.runs import SqliteRunStore
from tests.spark.test_runtime_helpers import HEADER, SCHEMA, job, run, snapshot, trips, write_csv


def committed(path: Path) -> dict[str, str]:
    """What any reader can see, byte for byte. A Delta table is its log (the data files it names never change):
    a failed task may leave an uncommitted data file behind, invisible to every reader, as Spark Delta does."""
    snap = snapshot(path)
    if (path / "_delta_log").is_dir():
        return {k: v for k, v in snap.items() if k.startswith("_delta_log")}
    return snap


@pytest.fixture(scope="module")
def base(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Good input and two targets (Delta, Parquet) written once by a successful run."""
    root = tmp_path_factory.mktemp("rt_errors")
    good = root / "good"
    write_csv(good, trips(range(1, 6)))
    out = {"root": root, "good": good, "db": root / "state.db"}
    for fmt in ("delta", "parquet"):
        target = root / f"target_{fmt}"
        r = run(spark, job(good, target, fmt=fmt), out["db"])
        assert r.ok, r.error
        out[fmt] = target
    return out


def check_failed(r: Any, stage: str, *needles: str) -> None:
    assert r.status == "FAILED" and r.exit_code == 1, (r.status, r.error)
    assert r.error_stage == stage, (r.error_stage, r.error)
    text = r.exception.render()
    assert text.startswith(f"job rt_job, stage {stage}: ")
    assert "what to do: " in text and r.hint
    for n in needles:
        assert n in text, (n, text)


@pytest.fixture(params=["delta", "parquet"])
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_missing_input_path(spark: Any, base: dict[str, Any], fmt: str) -> None:
    before = committed(base[fmt])
    missing = base["root"] / "nope" / "trips"
    r = run(spark, job(missing, base[fmt], fmt=fmt), base["db"])
    check_failed(r, "extract", "source 'trips'", str(missing), "does not exist")
    assert committed(base[fmt]) == before


def test_unreadable_file(spark: Any, base: dict[str, Any], fmt: str) -> None:
    folder = base["root"] / f"broken_parquet_{fmt}"
    folder.mkdir()
    spark.read.options(header=True).schema(", ".join(f"{c} {t}" for c, t in SCHEMA.items())).csv(
        str(base["good"])).write.parquet(str(folder / "ok"))
    (folder / "ok" / "part-99999-damaged.parquet").write_bytes(b"PAR1 this is not parquet at all")
    before = committed(base[fmt])
    cfg = job(folder / "ok", base[fmt], fmt=fmt, source={"format": "parquet", "options": {}})
    r = run(spark, cfg, base["db"])
    check_failed(r, "extract", "source 'trips'", "cannot be read", "damaged")
    assert committed(base[fmt]) == before


def test_csv_header_does_not_match_the_schema(spark: Any, base: dict[str, Any], fmt: str) -> None:
    folder = base["root"] / f"moved_columns_{fmt}"
    write_csv(folder, ["1,1,2024-01-01 10:00:00,1.0,2.0"], header="trip_id,zone_id,pickup_ts,distance,fare")
    before = committed(base[fmt])
    r = run(spark, job(folder, base[fmt], fmt=fmt), base["db"])
    check_failed(r, "extract", "source 'trips'", "header does not match the declared schema")
    assert committed(base[fmt]) == before


def test_parquet_source_schema_mismatch(spark: Any, base: dict[str, Any], fmt: str) -> None:
    folder = base["root"] / f"typed_{fmt}"
    spark.createDataFrame([("x", "2024-01-01 00:00:00")], "trip_id string, pickup_ts string").write.parquet(
        str(folder))
    before = committed(base[fmt])
    cfg = job(folder, base[fmt], fmt=fmt, source={"format": "parquet", "options": {}})
    r = run(spark, cfg, base["db"])
    check_failed(r, "extract", "does not match its declared schema", "missing columns zone_id, distance, fare",
                 "column 'trip_id' is string in the data, declared bigint")
    assert committed(base[fmt]) == before


def test_value_that_does_not_convert_fails_naming_the_file(spark: Any, base: dict[str, Any], fmt: str) -> None:
    folder = base["root"] / f"bad_value_{fmt}"
    write_csv(folder, [*trips(range(1, 4)), "9,2024-01-01 10:00:00,1,not-a-number,3.0"])
    before = committed(base[fmt])
    r = run(spark, job(folder, base[fmt], fmt=fmt), base["db"])
    check_failed(r, "extract", "source 'trips' has a malformed row", "part-0.csv", "bad_records: quarantine")
    assert committed(base[fmt]) == before


def test_type_that_cannot_be_cast(spark: Any, base: dict[str, Any], fmt: str) -> None:
    before = committed(base[fmt])
    cfg = job(base["good"], base[fmt], fmt=fmt, transform=[
        {"with_columns": {"day": "to_date(pickup_ts)"}}, {"cast": {"pickup_ts": "array<int>"}}])
    r = run(spark, cfg, base["db"])
    check_failed(r, "transform", "step 2 (cast)", "cannot be cast")
    assert committed(base[fmt]) == before


def test_python_step_that_raises(spark: Any, base: dict[str, Any], fmt: str, tmp_path: Path) -> None:
    mod = tmp_path / "rt_raising_step.py"
    mod.write_text("def boom(df, ctx):\n    raise ValueError('zone table is empty')\n")
    before = committed(base[fmt])
    cfg = job(base["good"], base[fmt], fmt=fmt, transform=[{"python": "rt_raising_step:boom"}])
    r = run(spark, cfg, base["db"], project_root=tmp_path)
    check_failed(r, "transform", "rt_raising_step:boom raised ValueError: zone table is empty",
                 "rt_raising_step.py:2")
    assert committed(base[fmt]) == before


def test_target_path_is_a_file(spark: Any, base: dict[str, Any], fmt: str) -> None:
    target = base["root"] / f"a_file_{fmt}"
    target.write_text("not a table\n")
    r = run(spark, job(base["good"], target, fmt=fmt), base["db"])
    check_failed(r, "write", f"target path {target} is a file")
    assert target.read_text() == "not a table\n"


def test_two_runs_writing_the_same_target(spark: Any, base: dict[str, Any], fmt: str) -> None:
    """A live run holds the target's lock: the second run refuses, naming it. (tests/e2e does it with two real
    processes; here the holder is this very process, so it is alive.)"""
    store = SqliteRunStore(base["db"])
    from etl_framework.tables.fs import target_key

    holder = "jr_20240101T000000_aaaaaa"
    store.create_run({"run_id": holder, "job": "other_job", "env": "local", "started_at": "2024-01-01T00:00:00Z"})
    store.acquire_target_lock(target_key(str(base[fmt])), holder, "other_job")
    before = committed(base[fmt])
    try:
        r = run(spark, job(base["good"], base[fmt], fmt=fmt), base["db"])
        check_failed(r, "write", "another run is writing the same table", holder, "other_job",
                     f"pid {os.getpid()}")
        assert committed(base[fmt]) == before
    finally:
        store.release_target_lock(target_key(str(base[fmt])), holder)
        store.update_run(holder, status="SUCCEEDED")
        store.close()


def test_a_dead_holders_lock_is_taken_over(spark: Any, base: dict[str, Any]) -> None:
    import subprocess

    from etl_framework.tables.fs import target_key

    dead = subprocess.Popen(["true"])
    dead.wait()
    store = SqliteRunStore(base["db"])
    holder = "jr_20240101T000000_bbbbbb"
    store.create_run({"run_id": holder, "job": "rt_job", "env": "local", "started_at": "2024-01-01T00:00:00Z",
                      "pid": dead.pid})
    store.conn.execute("INSERT OR REPLACE INTO target_locks (target, run_id, job, host, pid, acquired_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (target_key(str(base["parquet"])), holder, "rt_job", __import__("socket").gethostname(),
                        dead.pid, "2024-01-01T00:00:00Z"))
    try:
        r = run(spark, job(base["good"], base["parquet"], fmt="parquet"), base["db"])
        assert r.ok, r.error
        old = store.get_run(holder)
        assert old is not None and old["status"] == "FAILED" and "ended without finishing" in old["error"]
        assert store.target_lock(target_key(str(base["parquet"]))) is None
    finally:
        store.close()


def test_header_only_input_writes_nothing_new(spark: Any, base: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "part-0.csv").write_text(HEADER + "\n")
    r = run(spark, job(tmp_path / "empty", tmp_path / "out", fmt="parquet"), base["db"])
    assert r.ok and r.metrics["write"]["rows_written"] == 0


def test_unparsable_timestamp_is_a_bad_record(spark: Any, tmp_path: Path) -> None:
    """Spark 3.5 fails the whole job on 2024-02-30 by default (INCONSISTENT_BEHAVIOR_CROSS_VERSION); under the
    framework's CORRECTED parser policy it is a malformed row: quarantined with its raw text, or, in `fail` mode,
    an extract failure naming the file, the line and the column — whole in the record, the JSON and the log."""
    import contextlib
    import io
    import json

    from etl_framework.cli import cli
    from etl_framework.cli.common import run_cli
    from etl_framework.tables.parquet import read_committed_parquet

    bad_line = "9,2024-02-30 10:00:00,1,2.0,3.0"
    src = tmp_path / "in"
    write_csv(src, [*trips(range(1, 4)), bad_line])
    db = tmp_path / ".etl" / "state.db"
    opts = {"header": True, "timestampFormat": "yyyy-MM-dd HH:mm:ss"}
    quarantine = job(src, tmp_path / "out", source={"bad_records": "quarantine", "options": opts})
    r = run(spark, quarantine, db)
    assert r.ok, r.error
    assert spark.read.format("delta").load(str(tmp_path / "out")).count() == 3
    bad = read_committed_parquet(spark, str(tmp_path / "out") + "_bad_records").collect()
    assert [b["raw_record"] for b in bad] == [bad_line] and bad[0]["file"].endswith("part-0.csv")

    r = run(spark, job(src, tmp_path / "out2", source={"options": opts}), db)
    assert r.status == "FAILED" and r.error_stage == "extract", r.error
    assert "part-0.csv, line 5, column 'pickup_ts' ('2024-02-30 10:00:00' is not a valid timestamp)" in r.error
    assert not r.exception.retryable  # deterministic: a retry would fail the same way

    # the whole error (Spark's message and its Java cause) in the record, `etl show --json` and the run's log
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\n")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert run_cli(cli, ["--project-dir", str(tmp_path), "show", r.run_id, "--json"]) == 0
    rec = json.loads(out.getvalue())
    detail = r.exception.detail
    assert "SparkException" in detail and "MALFORMED_RECORD_IN_PARSING" in detail and len(detail) > 600
    assert rec["details"]["error_detail"] == detail and rec["details"]["retryable"] is False
    assert rec["error"] == r.exception.render()  # never cut in JSON
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert run_cli(cli, ["--project-dir", str(tmp_path), "show", r.run_id, "--log"]) == 0
    assert detail in out.getvalue() and "stage extract" in out.getvalue()


FLAKY = '''
from pathlib import Path


def once(df, ctx):
    marker = Path(__file__).parent / "flaked"
    if not marker.exists():
        marker.write_text("1")
        raise ConnectionError("the metadata service did not answer (a transient failure)")
    return df
'''


def test_a_deterministic_error_is_not_retried_a_transient_one_is(spark: Any, tmp_path: Path) -> None:
    """A workflow with retries (2 attempts): the job with an unparsable value (deterministic) runs once; the job
    whose first attempt met a transient failure runs twice and succeeds."""
    import sys

    from etl_framework.config.load import load_workflow
    from etl_framework.config.project import Project
    from etl_framework.engine.executors import InlineExecutor
    from etl_framework.engine.workflow import WorkflowRun, build_node_specs
    from etl_framework.state.workflows import WorkflowStore

    root = tmp_path / "proj"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n")
    write_csv(root / "data" / "good", trips(range(1, 3)))
    write_csv(root / "data" / "bad", [*trips(range(1, 3)), "9,2024-02-30 10:00:00,1,2.0,3.0"])
    (root / "jobs").mkdir()
    (root / "rt_flaky.py").write_text(FLAKY)
    schema = "{" + ", ".join(f"{k}: {v}" for k, v in SCHEMA.items()) + "}"
    for name, data, steps in (("det", "bad", ""), ("flaky", "good", "transform: [{python: 'rt_flaky:once'}]\n")):
        (root / "jobs" / f"{name}.yaml").write_text(
            f"job: {name}\nsources:\n  trips: {{format: csv, path: ../data/{data}, options: {{header: true}}, "
            f"schema: {schema}}}\n{steps}target: {{format: delta, path: ../data/lake/{name}}}\n"
            "retries: {max_attempts: 2, backoff_seconds: 0}\n")
    (root / "jobs" / "wf.yaml").write_text("workflow: wf\njobs: {det: det.yaml, flaky: flaky.yaml}\ntriggers:\n"
                                           "  - {name: go, type: on_demand, actions: [{job: det}, {job: flaky}]}\n")

    class SharedSpark(InlineExecutor):
        def spark(self) -> Any:
            return spark

    project = Project.discover(root)
    loaded = load_workflow(root / "jobs" / "wf.yaml", project)
    store = WorkflowStore(project.env_config().state.path)
    sys.path.insert(0, str(root))
    try:
        res = WorkflowRun(loaded.config, build_node_specs(loaded.config, loaded.jobs, loaded.job_paths), store,
                          SharedSpark(project), progress=None).start()
    finally:
        sys.path.remove(str(root))
    nodes = {n["node"]: n for n in store.get_run(res.run_id)["nodes"]}
    assert nodes["det"]["state"] == "FAILED" and nodes["det"]["attempts"] == 1, nodes["det"]
    assert len(nodes["det"]["job_run_ids"]) == 1
    assert nodes["flaky"]["state"] == "SUCCEEDED" and nodes["flaky"]["attempts"] == 2, nodes["flaky"]
    runs = SqliteRunStore(root / ".etl" / "state.db")
    try:
        first = runs.get_run(nodes["flaky"]["job_run_ids"][0])
    finally:
        runs.close()
    assert first["status"] == "FAILED" and first["details"]["retryable"] is True
    assert "ConnectionError" in first["details"]["error_detail"]
