"""Every write mode on Delta and Parquet, with run records; Delta results read back with delta-rs, Parquet results
through the commit manifest with pyarrow and with plain Spark."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.spark.test_runtime_helpers import delta_rows, job, parquet_rows, run, trips, write_csv


def _day(r: dict[str, Any]) -> str:
    return str(r["day"])


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    return {"in": tmp_path / "in", "out": tmp_path / "lake" / "t", "db": tmp_path / "state.db"}


def test_delta_append_overwrite_partitions_overwrite(spark: Any, paths: dict[str, Path]) -> None:
    write_csv(paths["in"], trips(range(1, 5), "2024-01-01") + trips(range(5, 7), "2024-01-02"))
    r1 = run(spark, job(paths["in"], paths["out"], mode="append"), paths["db"])
    assert r1.ok, r1.error
    r2 = run(spark, job(paths["in"], paths["out"], mode="append"), paths["db"])
    assert r2.ok
    rows = delta_rows(paths["out"])
    assert len(rows) == 12 and sorted({_day(r) for r in rows}) == ["2024-01-01", "2024-01-02"]
    w = r2.metrics["write"]
    assert w["rows_written"] == 6 and w["files_written"] == 2 and w["partitions_touched"] == 2
    assert w["table_version"] == 1 and w["bytes_written"] > 0

    # overwrite_partitions: only 2024-01-02 is in the data, so 2024-01-01 keeps both appends
    write_csv(paths["in"], trips(range(100, 103), "2024-01-02", fare=99.0))
    r3 = run(spark, job(paths["in"], paths["out"], mode="overwrite_partitions"), paths["db"])
    assert r3.ok, r3.error
    rows = delta_rows(paths["out"])
    by_day: dict[str, list[int]] = {}
    for r in rows:
        by_day.setdefault(_day(r), []).append(r["trip_id"])
    assert sorted(by_day["2024-01-01"]) == [1, 1, 2, 2, 3, 3, 4, 4]
    assert sorted(by_day["2024-01-02"]) == [100, 101, 102]
    assert r3.metrics["write"]["partitions"] == ["day=2024-01-02"]

    # overwrite: the whole table, although the session default is dynamic partition overwrite
    write_csv(paths["in"], trips([7], "2024-01-03"))
    r4 = run(spark, job(paths["in"], paths["out"], mode="overwrite"), paths["db"])
    assert r4.ok
    assert [(r["trip_id"], _day(r)) for r in delta_rows(paths["out"])] == [(7, "2024-01-03")]
    assert spark.read.format("delta").load(str(paths["out"])).count() == 1


def test_delta_merge_upserts_on_keys(spark: Any, paths: dict[str, Path]) -> None:
    cfg = job(paths["in"], paths["out"], mode="merge", merge_keys=["trip_id"], partition_by=[])
    write_csv(paths["in"], trips(range(1, 4)))
    assert run(spark, cfg, paths["db"]).ok  # creates the table
    write_csv(paths["in"], trips(range(3, 6), fare=500.0))
    r = run(spark, cfg, paths["db"])
    assert r.ok, r.error
    rows = delta_rows(paths["out"])
    assert [(x["trip_id"], x["fare"]) for x in rows] == [(1, 11.0), (2, 12.0), (3, 503.0), (4, 504.0), (5, 505.0)]
    w = r.metrics["write"]
    assert w["rows_inserted"] == 2 and w["rows_updated"] == 1 and w["rows_written"] == 3
    assert w["operation"] == "MERGE"


def test_delta_merge_with_duplicate_keys_fails_and_leaves_target(spark: Any, paths: dict[str, Path]) -> None:
    from tests.spark.test_runtime_helpers import snapshot

    cfg = job(paths["in"], paths["out"], mode="merge", merge_keys=["trip_id"], partition_by=[])
    write_csv(paths["in"], trips(range(1, 3)))
    assert run(spark, cfg, paths["db"]).ok
    before = snapshot(paths["out"])
    write_csv(paths["in"], trips([1, 1]))
    r = run(spark, cfg, paths["db"])
    assert r.exit_code == 1 and r.error_stage == "write"
    assert "same merge_keys" in r.error and "dedupe" in (r.hint or "")
    assert snapshot(paths["out"]) == before


def test_parquet_modes_commit_through_the_manifest(spark: Any, paths: dict[str, Path]) -> None:
    from etl_framework.tables.parquet import read_committed_parquet

    write_csv(paths["in"], trips(range(1, 4), "2024-01-01") + trips(range(4, 6), "2024-01-02"))
    cfg = job(paths["in"], paths["out"], fmt="parquet", mode="append")
    assert run(spark, cfg, paths["db"]).ok
    r = run(spark, cfg, paths["db"])
    assert r.ok
    assert len(parquet_rows(paths["out"])) == 10
    manifest = json.loads((paths["out"] / "_etl_manifest.json").read_text())
    assert manifest["version"] == 2 and manifest["run_id"] == r.run_id and len(manifest["files"]) == 4
    assert not (paths["out"] / "_staging").exists()

    write_csv(paths["in"], trips(range(50, 52), "2024-01-02"))
    r = run(spark, job(paths["in"], paths["out"], fmt="parquet", mode="overwrite_partitions"), paths["db"])
    assert r.ok, r.error
    rows = parquet_rows(paths["out"])
    assert sorted((r_["trip_id"], r_["day"]) for r_ in rows) == [
        (1, "2024-01-01"), (1, "2024-01-01"), (2, "2024-01-01"), (2, "2024-01-01"), (3, "2024-01-01"),
        (3, "2024-01-01"), (50, "2024-01-02"), (51, "2024-01-02")]
    assert r.metrics["write"]["files_removed"] == 2 and r.metrics["write"]["partitions"] == ["day=2024-01-02"]
    # replaced files are gone from disk too: a plain directory reader agrees with the manifest
    assert spark.read.parquet(str(paths["out"])).count() == 8
    assert read_committed_parquet(spark, str(paths["out"])).count() == 8

    write_csv(paths["in"], trips([9], "2024-01-05"))
    r = run(spark, job(paths["in"], paths["out"], fmt="parquet", mode="overwrite"), paths["db"])
    assert r.ok
    assert [(x["trip_id"], x["day"]) for x in parquet_rows(paths["out"])] == [(9, "2024-01-05")]
    assert sorted(p.name for p in paths["out"].iterdir()) == ["_etl_manifest.json", "day=2024-01-05"]
    df = read_committed_parquet(spark, str(paths["out"]))
    assert dict(df.dtypes)["day"] == "date" and df.count() == 1


def test_parquet_append_with_other_columns_is_refused(spark: Any, paths: dict[str, Path]) -> None:
    from tests.spark.test_runtime_helpers import snapshot

    write_csv(paths["in"], trips(range(1, 3)))
    assert run(spark, job(paths["in"], paths["out"], fmt="parquet"), paths["db"]).ok
    before = snapshot(paths["out"])
    cfg = job(paths["in"], paths["out"], fmt="parquet",
              transform=[{"with_columns": {"day": "to_date(pickup_ts)", "extra": "1"}}])
    r = run(spark, cfg, paths["db"])
    assert r.exit_code == 1 and r.error_stage == "write" and "the target" in r.error and "lacks: extra" in r.error
    assert snapshot(paths["out"]) == before


def test_run_record_has_stages_with_durations_and_metrics(spark: Any, paths: dict[str, Path]) -> None:
    write_csv(paths["in"], trips(range(1, 11)))
    cfg = job(paths["in"], paths["out"], transform=[{"filter": "trip_id > 2"},
                                                    {"with_columns": {"day": "to_date(pickup_ts)"}}],
              params={"password": "${secret:RT_PW}", "n": 1})
    r = run(spark, cfg, paths["db"], params={"password": "${secret:RT_PW}", "n": 1})
    assert r.ok
    conn = sqlite3.connect(paths["db"])
    conn.row_factory = sqlite3.Row
    run_row = dict(conn.execute("SELECT * FROM job_runs WHERE run_id = ?", (r.run_id,)).fetchone())
    assert run_row["status"] == "SUCCEEDED" and run_row["exit_code"] == 0 and run_row["job"] == "rt_job"
    assert json.loads(run_row["params"]) == {"password": "***", "n": 1}
    stages = {s["stage"]: dict(s) for s in conn.execute("SELECT * FROM job_run_stages WHERE run_id = ?",
                                                        (r.run_id,))}
    assert [s for s in sorted(stages, key=lambda k: stages[k]["seq"])] == [
        "crawl", "extract", "transform", "quality", "write", "register"]
    assert stages["crawl"]["status"] == "SKIPPED" and stages["register"]["status"] == "SKIPPED"
    ext, tr, wr = (json.loads(stages[k]["metrics"]) for k in ("extract", "transform", "write"))
    assert ext["sources"]["trips"]["rows"] == 10 and ext["sources"]["trips"]["files"] == 1
    assert tr["rows_in"] == 10 and tr["rows_out"] == 8
    assert wr["rows_written"] == 8 and wr["files_written"] >= 1 and wr["partitions_touched"] == 1
    for k in ("extract", "transform", "write"):
        assert stages[k]["status"] == "SUCCEEDED" and stages[k]["duration_s"] >= 0
        assert stages[k]["started_at"] <= stages[k]["ended_at"]
    assert r.run_id.startswith("jr_") and len(r.run_id) == len("jr_20240101T000000_abcdef")


def test_bad_records_drop_and_quarantine(spark: Any, paths: dict[str, Path]) -> None:
    from etl_framework.tables.parquet import read_committed_parquet

    bad = ["100,2024-01-01 10:00:00,1,not-a-number,3.0", "101,2024-01-01 10:00:00"]
    write_csv(paths["in"], trips(range(1, 6)) + bad)
    r = run(spark, job(paths["in"], paths["out"], source={"bad_records": "drop"}), paths["db"])
    assert r.ok and len(delta_rows(paths["out"])) == 5

    out2 = paths["out"].parent / "q"
    r = run(spark, job(paths["in"], out2, source={"bad_records": "quarantine"}), paths["db"])
    assert r.ok, r.error
    assert [x["trip_id"] for x in delta_rows(out2)] == [1, 2, 3, 4, 5]
    assert r.metrics["write"]["bad_records"] == 2
    q = read_committed_parquet(spark, str(out2) + "_bad_records").orderBy("raw_record").collect()
    assert [x["raw_record"] for x in q] == bad
    assert all(x["source"] == "trips" and "malformed csv record" in x["reason"] and x["run_id"] == r.run_id
               and x["file"].endswith("part-0.csv") for x in q)
    assert q[0]["unparsed_columns"] == "distance"
