"""`etl maintain` (issue 22 part 8): a Delta table of many small files gets fewer, with the same rows (delta-rs),
its bookmarks intact, and a reader that reads all the while never fails; Parquet compacts into a new manifest."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from etl_framework.cli import cli
from etl_framework.cli.common import run_cli
from etl_framework.config.load import load_job
from etl_framework.config.project import Project
from etl_framework.engine.maintain import retention_hours
from etl_framework.state.bookmarks import SqliteBookmarkStore
from etl_framework.tables import Storage, table_format
from tests.spark.test_runtime_helpers import SCHEMA, delta_rows, parquet_rows, run, trips, write_csv

JOB = """\
job: small_files
sources:
  trips:
    format: csv
    path: {src}
    options: {{header: true}}
    schema: {schema}
    incremental: {{mode: files}}
transform:
  - with_columns: {{day: to_date(pickup_ts)}}
target:
  format: {fmt}
  path: {target}
  partition_by: [day]
"""


def _project(tmp_path: Path, fmt: str) -> tuple[Path, Path, Path]:
    root = tmp_path / "proj"
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n")
    job_file = root / "jobs" / "small_files.yaml"
    job_file.write_text(JOB.format(src=tmp_path / "in", schema=json.dumps(SCHEMA), fmt=fmt, target=tmp_path / "out"))
    return root, job_file, root / ".etl" / "state.db"


def _maintain(root: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run_cli(cli, ["--project-dir", str(root), "maintain", *args])
    return rc, out.getvalue(), err.getvalue()


def _small_files(spark: Any, tmp_path: Path, fmt: str, runs: int = 3) -> tuple[Path, Path, Any]:
    root, job_file, state = _project(tmp_path, fmt)
    project = Project(root)
    cfg = load_job(job_file, project).config
    state.parent.mkdir(parents=True, exist_ok=True)
    for i in range(runs):  # one small file per run, all in one partition
        write_csv(tmp_path / "in", trips(range(i * 3, i * 3 + 3)), f"f{i}.csv")
        assert run(spark, cfg, state, env_config=project.env_config("local")).status == "SUCCEEDED"
    return root, job_file, cfg


def test_delta_maintain_fewer_files_same_rows_bookmarks_intact_reader_never_fails(spark: Any, tmp_path: Path) -> None:
    import pyarrow.fs as pafs
    from deltalake import DeltaTable

    root, job_file, cfg = _small_files(spark, tmp_path, "delta")
    target, state = tmp_path / "out", root / ".etl" / "state.db"
    before_rows = delta_rows(target)
    before_files = len(DeltaTable(str(target)).file_uris())
    fmt, storage = table_format("delta"), Storage()
    deltas_before = fmt.bookmark_deltas(str(target), cfg.job, 0, storage)
    bookmark_before = SqliteBookmarkStore(state).get(cfg.job).to_json()

    stop, reads, failures = threading.Event(), [], []

    def reader() -> None:  # an independent reader, reading while the table is compacted and vacuumed
        while not stop.is_set():
            try:
                dt = DeltaTable(str(target))
                t = dt.to_pyarrow_table(filesystem=pafs.SubTreeFileSystem(str(target), pafs.LocalFileSystem()))
                reads.append(t.num_rows)
            except Exception as e:  # noqa: BLE001 - what the test counts
                failures.append(repr(e))
            time.sleep(0.05)  # a reader, not a CPU hog: Spark shares these two cores

    th = threading.Thread(target=reader)
    th.start()
    try:
        rc, out, err = _maintain(root, str(job_file), "--json")
    finally:
        stop.set()
        th.join()
    assert rc == 0, err
    (res,) = json.loads(out)
    assert res["files_before"] == before_files == 3 and res["files_after"] == 1
    assert res["rows"] == len(before_rows) and res["files_deleted"] == 0  # replaced minutes ago: kept
    assert "small_files target" in err and "files 3 -> 1" in err
    assert DeltaTable(str(target)).file_uris() and len(DeltaTable(str(target)).file_uris()) == 1
    assert delta_rows(target) == before_rows
    assert not failures and reads and set(reads) == {len(before_rows)}
    # bookmarks: the state's and the table's deltas as before; the next run reads only the new file, once
    assert fmt.bookmark_deltas(str(target), cfg.job, 0, storage) == deltas_before
    assert SqliteBookmarkStore(state).get(cfg.job).to_json() == bookmark_before
    write_csv(tmp_path / "in", trips(range(100, 102)), "new.csv")
    assert run(spark, cfg, state, env_config=Project(root).env_config("local")).status == "SUCCEEDED"
    assert [r["trip_id"] for r in delta_rows(target)] == [r["trip_id"] for r in before_rows] + [100, 101]
    # the replaced files stay for readers of older versions (168 h): an older version still reads
    old = DeltaTable(str(target), version=0)  # the first run's commit
    assert old.to_pyarrow_table(filesystem=pafs.SubTreeFileSystem(str(target), pafs.LocalFileSystem())).num_rows == 3


def test_parquet_maintain_compacts_into_a_new_manifest(spark: Any, tmp_path: Path) -> None:
    root, job_file, cfg = _small_files(spark, tmp_path, "parquet", runs=2)
    target = tmp_path / "out"
    before = parquet_rows(target)
    deltas = table_format("parquet").bookmark_deltas(str(target), cfg.job, 0, Storage())
    rc, out, err = _maintain(root, str(job_file), "--json")
    assert rc == 0, err
    (res,) = json.loads(out)
    assert (res["files_before"], res["files_after"], res["files_deleted"]) == (2, 1, 2)
    assert parquet_rows(target) == before
    assert table_format("parquet").bookmark_deltas(str(target), cfg.job, 0, Storage()) == deltas
    files = [p for p in target.rglob("*.parquet")]
    assert len(files) == 1  # the replaced files are gone, nothing else is left


def test_retention_covers_the_oldest_running_job_and_refuses_less_than_a_week(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    class Runs:
        def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
            started = (datetime.now(UTC) - timedelta(hours=200)).isoformat()
            return [{"run_id": "r1", "job": "big", "status": "RUNNING", "started_at": started},
                    {"run_id": "r0", "job": "old", "status": "SUCCEEDED", "started_at": "2000-01-01T00:00:00"}]

    hours, why = retention_hours(Runs(), None)
    assert 200 < hours < 202 and why and "run r1 of job big" in why
    root, _, _ = _project(tmp_path, "delta")
    rc, _, err = _maintain(root, "--retain-hours", "1", str(root / "jobs" / "small_files.yaml"))
    assert rc == 2 and "give 168 or more" in err


def test_maintain_names_a_catalog_typo(tmp_path: Path) -> None:
    from etl_framework.catalog.base import Column, new_table, put_table
    from etl_framework.catalog.local import LocalCatalog

    root, _, _ = _project(tmp_path, "delta")
    (root / ".etl").mkdir()
    cat = LocalCatalog(root / ".etl" / "catalog.db")
    put_table(cat, new_table("shop", "orders", "delta", str(tmp_path / "o"), [Column("id", "int")], []))
    cat.close()
    rc, _, err = _maintain(root, "shop.ordrs")
    assert rc == 2 and "did you mean 'shop.orders'?" in err


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_iceberg_maintain_rewrites_data_files_and_keeps_bookmark_snapshots(spark: Any, tmp_path: Path) -> None:
    from etl_framework.tables import storage_for

    root, job_file, cfg = _small_files(spark, tmp_path, "iceberg", runs=2)
    target = str(tmp_path / "out")
    storage = storage_for(Project(root).env_config("local"), root)
    fmt = table_format("iceberg")
    rows = sorted(fmt.arrow_dataset(target, storage).to_table().column("trip_id").to_pylist())
    deltas = fmt.bookmark_deltas(target, cfg.job, 0, storage)
    rc, out, err = _maintain(root, str(job_file), "--json")
    assert rc == 0, err
    (res,) = json.loads(out)
    assert (res["files_before"], res["files_after"], res["rows"]) == (2, 1, len(rows))
    assert sorted(fmt.arrow_dataset(target, storage).to_table().column("trip_id").to_pylist()) == rows
    assert fmt.bookmark_deltas(target, cfg.job, 0, storage) == deltas  # no snapshot of a bookmark expired


# ---------------------------------------------------------------------------------- a workflow's maintain node

WORKFLOW = """\
workflow: load_then_maintain
jobs: {small_files: small_files.yaml}
triggers:
  - {name: start, type: on_demand, actions: [{job: small_files}]}
  - name: compact
    type: conditional
    conditions: [{job: small_files, state: SUCCEEDED}]
    actions: [{maintain: small_files}]
"""


def _cli(root: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run_cli(cli, ["--project-dir", str(root), *args])
    return rc, out.getvalue(), err.getvalue()


def test_workflow_load_then_maintain_fewer_files_same_rows_in_status_and_report(spark: Any, tmp_path: Path) -> None:
    import pyarrow.fs as pafs
    from deltalake import DeltaTable

    root, _, _ = _small_files(spark, tmp_path, "delta", runs=2)
    write_csv(tmp_path / "in", trips(range(50, 53)), "f_wf.csv")  # the workflow's load writes a third small file
    wf = root / "jobs" / "load_then_maintain.yaml"
    wf.write_text(WORKFLOW)
    rc, out, err = _cli(root, "workflow", "run", str(wf), "--json")
    assert rc == 0, err
    rec = json.loads(out)
    nodes = {n["node"]: n for n in rec["nodes"]}
    m = nodes["maintain:small_files"]
    assert nodes["small_files"]["state"] == "SUCCEEDED"
    assert (m["kind"], m["state"], m["attempts"], m["trigger"]) == ("maintain", "SUCCEEDED", 1, "compact")
    (t,) = m["result"]["tables"]
    assert (t["table"], t["format"], t["files_before"], t["files_after"]) == ("small_files target", "delta", 3, 1)
    assert "maintain maintain:small_files SUCCEEDED" in err and "small_files target: files 3 -> 1" in err
    # delta-rs: one file now, the same rows as the load's commit just before the maintenance
    target = tmp_path / "out"
    dt = DeltaTable(str(target))
    assert len(dt.file_uris()) == 1
    fs = pafs.SubTreeFileSystem(str(target), pafs.LocalFileSystem())
    loaded = DeltaTable(str(target), version=dt.version() - 1).to_pyarrow_table(filesystem=fs).to_pylist()
    rows = delta_rows(target)
    assert rows == sorted(loaded, key=lambda r: r["trip_id"]) and t["rows"] == len(rows) == 9
    # the run store: `etl workflow status` (text and JSON)
    rc, out, _ = _cli(root, "workflow", "status", rec["run_id"])
    assert rc == 0 and "maintain:small_files" in out and "small_files target: files 3 -> 1, 9 rows" in out
    rc, out, _ = _cli(root, "workflow", "status", rec["run_id"], "--json")
    status = {n["node"]: n for n in json.loads(out)["nodes"]}
    assert status["maintain:small_files"]["state"] == "SUCCEEDED"
    assert status["maintain:small_files"]["result"]["tables"][0]["files_after"] == 1
    # the HTML report: the node in the graph, the nodes table and the timeline, and what it did
    html = Path(rec["report"]).read_text()
    assert 'data-node="maintain:small_files" data-kind="maintain" data-state="SUCCEEDED"' in html
    assert "<h2>table maintenance</h2>" in html and "3 → 1" in html
    assert "small_files target: files 3 -&gt; 1" in html  # the node's detail


def test_maintain_node_fails_clearly_when_a_running_job_holds_the_lock(spark: Any, tmp_path: Path) -> None:
    from etl_framework.state import open_state
    from etl_framework.tables.fs import target_key

    root, _, _ = _small_files(spark, tmp_path, "delta", runs=1)
    wf = root / "jobs" / "only_maintain.yaml"
    wf.write_text("workflow: only_maintain\njobs: {small_files: small_files.yaml}\ntriggers:\n"
                  "  - {name: start, type: on_demand, actions: [{maintain: small_files}]}\n")
    state = open_state(Project(root).env_config("local"))
    key = target_key(str(tmp_path / "out"))
    state.runs.acquire_target_lock([key], "jr_writer", "small_files")
    try:
        rc, out, err = _cli(root, "workflow", "run", str(wf), "--json", "--no-report")
    finally:
        state.runs.release_target_lock([key], "jr_writer")
        state.close()
    rec = json.loads(out)
    m = next(n for n in rec["nodes"] if n["node"] == "maintain:small_files")
    assert rc == 1 and m["state"] == "FAILED" and m["attempts"] == 1
    assert "maintain maintain:small_files FAILED" in err and "is being written" in err
    assert "small_files target" in m["error"] and "is being written: run jr_writer of small_files" in m["error"]
    assert "run `etl maintain` again when that run has finished" in m["error"]
