"""The SQLite run store (no Spark): run and stage records, details, target locks across processes, and the
pieces of the runtime that need no JVM (run ids, preflight checks, Parquet commit recovery)."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
from pathlib import Path

import pytest

from etl_framework.config.model import JobConfig
from etl_framework.engine.job import new_run_id
from etl_framework.errors import JobFailed
from etl_framework.state.base import TargetLocked
from etl_framework.state.runs import SqliteRunStore


def test_run_and_stage_records_round_trip(tmp_path: Path) -> None:
    s = SqliteRunStore(tmp_path / "state.db")
    s.create_run({"run_id": "jr_1", "job": "a", "env": "local", "started_at": "2024-01-01T00:00:00Z",
                  "params": {"x": 1}})
    s.start_stage("jr_1", "extract", 2, "2024-01-01T00:00:01Z")
    s.finish_stage("jr_1", "extract", status="SUCCEEDED", duration_s=1.5, metrics={"rows_out": 3})
    s.finish_stage("jr_1", "crawl", status="SKIPPED", metrics={"reason": "not configured"}, seq=1)
    s.update_stage_metrics("jr_1", "extract", {"sources": {"t": {"rows": 3}}})
    s.set_detail("jr_1", "quality", [{"rule": "r", "success": True}])
    s.set_detail("jr_1", "bookmarks", {"t": 1})
    s.update_run("jr_1", status="SUCCEEDED", exit_code=0)
    run = s.get_run("jr_1")
    assert run is not None and run["status"] == "SUCCEEDED" and run["params"] == {"x": 1}
    assert [st["stage"] for st in run["stages"]] == ["crawl", "extract"]
    assert run["stages"][1]["metrics"] == {"rows_out": 3, "sources": {"t": {"rows": 3}}}
    assert run["details"] == {"quality": [{"rule": "r", "success": True}], "bookmarks": {"t": 1}}
    s.create_run({"run_id": "jr_2", "job": "b", "env": "local", "started_at": "2024-01-02T00:00:00Z"})
    assert [r["run_id"] for r in s.list_runs()] == ["jr_2", "jr_1"]
    assert [r["run_id"] for r in s.list_runs(job="a")] == ["jr_1"]
    assert s.get_run("nope") is None
    with pytest.raises(ValueError, match="unknown run fields"):
        s.update_run("jr_1", colour="red")


def _hold_lock(db: str, started: object, release: object) -> None:
    s = SqliteRunStore(db)
    s.create_run({"run_id": "jr_holder", "job": "a", "env": "local", "started_at": "2024-01-01T00:00:00Z"})
    s.acquire_target_lock("/lake/t", "jr_holder", "a")
    started.set()  # type: ignore[attr-defined]
    release.wait(30)  # type: ignore[attr-defined]
    s.release_target_lock("/lake/t", "jr_holder")


def test_target_lock_between_two_processes(tmp_path: Path) -> None:
    db = str(tmp_path / "state.db")
    ctx = multiprocessing.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(db, started, release))
    proc.start()
    try:
        assert started.wait(60)
        s = SqliteRunStore(db)
        with pytest.raises(TargetLocked) as e:
            s.acquire_target_lock("/lake/t", "jr_me", "b")
        assert "jr_holder" in str(e.value) and f"pid {proc.pid}" in str(e.value)
        s.acquire_target_lock("/lake/other", "jr_me", "b")  # another target is free
        release.set()
        proc.join(30)
        s.acquire_target_lock("/lake/t", "jr_me", "b")  # released: ours now
        assert s.target_lock("/lake/t")["run_id"] == "jr_me"
    finally:
        release.set()
        proc.join(30)


def test_lock_of_a_dead_process_is_taken_over_and_its_run_marked(tmp_path: Path) -> None:
    s = SqliteRunStore(tmp_path / "state.db")
    dead = subprocess.Popen(["true"])
    dead.wait()
    s.create_run({"run_id": "jr_dead", "job": "a", "env": "local", "started_at": "2024-01-01T00:00:00Z",
                  "pid": dead.pid})
    s.conn.execute("INSERT INTO target_locks (target, run_id, job, host, pid, acquired_at) "
                   "VALUES ('/lake/t', 'jr_dead', 'a', ?, ?, 'x')",
                   (os.uname().nodename, dead.pid))
    s.acquire_target_lock("/lake/t", "jr_new", "a")
    assert s.get_run("jr_dead")["status"] == "FAILED"
    assert "jr_new took over" in s.get_run("jr_dead")["error"]


def test_run_ids_are_glue_like() -> None:
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"jr_\d{8}T\d{6}_[0-9a-f]{6}", i) for i in ids)


def _cfg(target: Path, fmt: str = "delta") -> JobConfig:
    return JobConfig.model_validate({"job": "p", "sources": {"s": {"format": "csv", "path": "/x"}},
                                     "target": {"format": fmt, "path": str(target)}})


def test_write_preflight(tmp_path: Path) -> None:
    from etl_framework.stages.write import preflight

    (tmp_path / "file").write_text("x")
    with pytest.raises(JobFailed, match="is a file, not a folder"):
        preflight(_cfg(tmp_path / "file"))
    with pytest.raises(JobFailed, match="inside .* which is a file"):
        preflight(_cfg(tmp_path / "file" / "t"))
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "part-0.parquet").write_text("x")
    with pytest.raises(JobFailed, match="holds files not written by this job .*part-0.parquet"):
        preflight(_cfg(tmp_path / "plain"))
    (tmp_path / "d" / "_delta_log").mkdir(parents=True)
    with pytest.raises(JobFailed, match="holds an existing delta table .* but target.format is parquet"):
        preflight(_cfg(tmp_path / "d", "parquet"))
    with pytest.raises(JobFailed, match="holds an existing delta table .* but target.format is iceberg"):
        preflight(_cfg(tmp_path / "d", "iceberg"))
    (tmp_path / "i" / "metadata").mkdir(parents=True)
    (tmp_path / "i" / "metadata" / "00000-1a2b.metadata.json").write_text("{}")
    for fmt in ("delta", "parquet"):
        with pytest.raises(JobFailed, match=f"holds an existing iceberg table .* but target.format is {fmt}"):
            preflight(_cfg(tmp_path / "i", fmt))
    preflight(_cfg(tmp_path / "new" / "t"))  # a folder to be created is fine


def test_recover_removes_staging_and_pending_files_only(tmp_path: Path) -> None:
    """A killed commit's staging and the files it was moving in (`pending`) go; a file the table never made stays."""
    from etl_framework.tables.fs import LocalFS
    from etl_framework.tables.parquet import MANIFEST, read_manifest, recover

    root = tmp_path / "t"
    (root / "_staging" / "jr_x").mkdir(parents=True)
    (root / "_staging" / "jr_x" / "part-1.parquet").write_text("x")
    (root / "d=1").mkdir()
    (root / "d=1" / "kept.parquet").write_text("k")
    (root / "d=2").mkdir()
    (root / "d=2" / "orphan.parquet").write_text("o")
    (root / "d=2" / "someone_elses.parquet").write_text("s")
    (root / MANIFEST).write_text(json.dumps({"files": [{"path": "d=1/kept.parquet", "size": 1}],
                                             "pending": {"run_id": "jr_x", "files": ["d=2/orphan.parquet"]}}))
    fs = LocalFS()
    removed = recover(fs, str(root), read_manifest(fs, str(root)))
    assert removed == 2
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == [
        "_etl_manifest.json", "d=1", "d=1/kept.parquet", "d=2", "d=2/someone_elses.parquet"]


def test_a_symlinked_or_nested_target_is_the_same_lock(tmp_path: Path) -> None:
    from etl_framework.tables.fs import target_key

    (tmp_path / "lake" / "t").mkdir(parents=True)
    os.symlink(tmp_path / "lake", tmp_path / "alias")
    assert target_key(str(tmp_path / "alias" / "t")) == target_key(str(tmp_path / "lake" / "t/"))
    s = SqliteRunStore(tmp_path / "state.db")
    s.create_run({"run_id": "jr_a", "job": "a", "env": "local", "started_at": "2024-01-01T00:00:00Z"})
    s.acquire_target_lock(target_key(str(tmp_path / "lake" / "t")), "jr_a", "a")
    for other in (tmp_path / "alias" / "t", tmp_path / "alias", tmp_path / "lake" / "t" / "day=1"):
        with pytest.raises(TargetLocked, match="jr_a"):
            s.acquire_target_lock(target_key(str(other)), "jr_b", "b")


def test_a_run_locks_its_quarantine_and_bad_records_tables_too() -> None:
    cfg = JobConfig.model_validate({
        "job": "p", "sources": {"s": {"format": "csv", "path": "/x", "bad_records": "quarantine"}},
        "quality": [{"expect": "expect_column_values_to_not_be_null", "column": "a", "on_fail": "quarantine"}],
        "target": {"format": "iceberg", "path": "/lake/t", "quarantine_path": "/lake/q"}})
    assert cfg.tables_written() == {"/lake/t": "iceberg", "/lake/q": "delta", "/lake/t_bad_records": "parquet"}
