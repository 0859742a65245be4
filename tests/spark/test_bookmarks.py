"""Incremental sources end to end on real Spark + Delta/Parquet: new files exactly once, nothing new without
Spark, the table (not the state store) as the truth after a crash between commit and cache, watermarks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from etl_framework.config.model import EnvConfig, JobConfig
from etl_framework.engine.job import JobRunResult
from etl_framework.incremental import app_id
from etl_framework.state.bookmarks import SqliteBookmarkStore
from etl_framework.state.runs import SqliteRunStore
from tests.spark.test_runtime_helpers import delta_rows, job, parquet_rows, run, trips, write_csv


def env(state: Path) -> EnvConfig:
    return EnvConfig.model_validate({"state": {"path": str(state)}})


def go(spark: Any, cfg: JobConfig, state: Path) -> JobRunResult:
    r = run(spark, cfg, state, env_config=env(state))
    assert r.ok, (r.error_stage, r.error, r.hint)
    return r


def rows(fmt: str, target: Path) -> list[dict[str, Any]]:
    return delta_rows(target) if fmt == "delta" else parquet_rows(target)


@pytest.mark.parametrize("fmt", ["delta", "parquet"])
def test_new_files_are_read_exactly_once(spark: Any, tmp_path: Path, fmt: str) -> None:
    src, target, state = tmp_path / "in", tmp_path / "out", tmp_path / "state.db"
    cfg = job(src, target, fmt=fmt, source={"incremental": {"mode": "files"}})
    write_csv(src, trips(range(5)), "a.csv")
    write_csv(src, trips(range(5, 8)), "b.csv")
    first = go(spark, cfg, state)
    assert [r["trip_id"] for r in rows(fmt, target)] == list(range(8))
    # nothing new: no Spark stage runs, nothing is written
    again = go(spark, cfg, state)
    assert again.metrics == {}
    assert [r["trip_id"] for r in rows(fmt, target)] == list(range(8))
    record = SqliteRunStore(state).get_run(again.run_id)
    assert record is not None and record["status"] == "SUCCEEDED"
    assert "no new input for trips since run " + first.run_id in str(record)
    # a new file adds exactly its rows
    write_csv(src, trips(range(8, 11)), "c.csv")
    go(spark, cfg, state)
    assert [r["trip_id"] for r in rows(fmt, target)] == list(range(11))
    bm = SqliteBookmarkStore(state).get(cfg.job)
    assert bm.version == 2 and len(bm.sources["trips"].files) == 3


def test_the_table_is_the_truth_when_the_cache_lags(spark: Any, tmp_path: Path) -> None:
    """A crash after the Delta commit but before the state store update: the next run reconciles from the
    table's own commit (txnAppId/txnVersion + userMetadata) and reads nothing twice."""
    src, target, state = tmp_path / "in", tmp_path / "out", tmp_path / "state.db"
    cfg = job(src, target, source={"incremental": {"mode": "files"}})
    write_csv(src, trips(range(4)), "a.csv")
    go(spark, cfg, state)
    write_csv(src, trips(range(4, 6)), "b.csv")
    go(spark, cfg, state)
    # Roll the cache back to before the second commit, as if the process died right after the write.
    store = SqliteBookmarkStore(state)
    first = store.history(cfg.job)[0]["run_id"]
    store.put(store.at_run(cfg.job, first), action="test-rollback")
    assert store.get(cfg.job).version == 1
    from deltalake import DeltaTable

    assert DeltaTable(str(target)).transaction_version(app_id(cfg.job)) == 2
    write_csv(src, trips(range(6, 7)), "c.csv")
    go(spark, cfg, state)
    ids = [r["trip_id"] for r in delta_rows(target)]
    assert ids == list(range(7)), "b.csv must not be read twice"
    assert SqliteBookmarkStore(state).get(cfg.job).version == 3


def test_rewritten_file_is_read_again_and_deleted_file_is_only_reported(spark: Any, tmp_path: Path) -> None:
    src, target, state = tmp_path / "in", tmp_path / "out", tmp_path / "state.db"
    cfg = job(src, target, mode="merge", partition_by=[], merge_keys=["trip_id"],
              source={"incremental": {"mode": "files"}})
    a = write_csv(src, trips(range(3)), "a.csv")
    b = write_csv(src, trips(range(3, 5)), "b.csv")
    go(spark, cfg, state)
    write_csv(src, trips(range(3), fare=50.0), "a.csv")  # rewritten in place
    os.utime(a, (a.stat().st_mtime + 10, a.stat().st_mtime + 10))
    b.unlink()
    go(spark, cfg, state)
    out = delta_rows(target)
    assert [r["trip_id"] for r in out] == [0, 1, 2, 3, 4]
    assert [r["fare"] for r in out[:3]] == [50.0, 51.0, 52.0]


def test_watermark_reads_only_newer_rows_and_skips_nulls(spark: Any, tmp_path: Path) -> None:
    src, target, state = tmp_path / "in", tmp_path / "out", tmp_path / "state.db"
    cfg = job(src, target, partition_by=[], source={"incremental": {"mode": "watermark", "column": "trip_id"}})
    write_csv(src, trips(range(5)) + [",2024-01-01 10:00:00,1,1.0,1.0"], "a.csv")
    go(spark, cfg, state)
    assert [r["trip_id"] for r in delta_rows(target)] == list(range(5))
    # the whole folder is read again (watermark sources are not file-tracked), only rows above 4 pass
    write_csv(src, trips(range(3, 9)), "b.csv")
    go(spark, cfg, state)
    assert [r["trip_id"] for r in delta_rows(target)] == list(range(9))
    assert SqliteBookmarkStore(state).get(cfg.job).sources["trips"].watermark == 8


def test_watermark_column_type_change_fails_with_reset_hint(spark: Any, tmp_path: Path) -> None:
    src, target, state = tmp_path / "in", tmp_path / "out", tmp_path / "state.db"
    cfg = job(src, target, partition_by=[], source={"incremental": {"mode": "watermark", "column": "pickup_ts"}})
    write_csv(src, trips(range(3)), "a.csv")
    go(spark, cfg, state)
    store = SqliteBookmarkStore(state)
    bm = store.get(cfg.job)
    bm.sources["trips"].watermark = "not a timestamp"
    store.put(bm, action="test")
    r = run(spark, cfg, state, env_config=env(state))
    assert not r.ok and r.error_stage == "extract"
    assert "type changed" in (r.error or "") and "etl bookmarks reset" in (r.hint or "")


def test_incremental_read_keeps_hive_partition_columns(spark: Any, tmp_path: Path) -> None:
    """Reading only the new files of a `key=value` folder tree gives the same columns as reading the folder."""
    src, target, state = tmp_path / "in", tmp_path / "out", tmp_path / "state.db"
    cfg = job(src, target, partition_by=["region"], source={"incremental": {"mode": "files"}})
    write_csv(src / "region=eu", trips(range(3)), "a.csv")
    go(spark, cfg, state)
    write_csv(src / "region=us", trips(range(3, 5)), "b.csv")
    go(spark, cfg, state)
    assert [(r["trip_id"], r["region"]) for r in delta_rows(target)] == [
        (0, "eu"), (1, "eu"), (2, "eu"), (3, "us"), (4, "us")]
