"""Extract beyond CSV: JSON with malformed lines, Parquet tables read through their commit manifest, Delta sources,
and sources read from exact file lists (the bookmarks interface)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from etl_framework.config.model import JobConfig
from tests.spark.test_runtime_helpers import delta_rows, job, parquet_rows, run, trips, write_csv


def test_json_source_quarantines_malformed_lines(spark: Any, tmp_path: Path) -> None:
    from etl_framework.tables.parquet import read_committed_parquet

    src = tmp_path / "in"
    src.mkdir()
    lines = [json.dumps({"trip_id": i, "pickup_ts": "2024-01-01 10:00:00", "fare": 1.5 * i}) for i in range(1, 4)]
    lines += ['{"trip_id": 9, "pickup_ts": "2024-01-01 10:00:00", "fare": "lots"}', '{"trip_id": 10, broken']
    (src / "part-0.json").write_text("\n".join(lines) + "\n")
    cfg = JobConfig.model_validate({
        "job": "rt_json",
        "sources": {"t": {"format": "json", "path": str(src), "bad_records": "quarantine",
                          "schema": {"trip_id": "long", "pickup_ts": "timestamp", "fare": "double"}}},
        "transform": [{"with_columns": {"day": "to_date(pickup_ts)"}}],
        "target": {"format": "delta", "path": str(tmp_path / "out"), "partition_by": ["day"]},
    })
    r = run(spark, cfg, tmp_path / "state.db")
    assert r.ok, r.error
    assert [x["trip_id"] for x in delta_rows(tmp_path / "out")] == [1, 2, 3]
    bad = read_committed_parquet(spark, str(tmp_path / "out") + "_bad_records").orderBy("raw_record").collect()
    assert [b["raw_record"] for b in bad] == sorted(lines[3:])
    assert all(b["reason"].startswith("malformed json record") for b in bad)


def test_parquet_source_reads_only_committed_files(spark: Any, tmp_path: Path) -> None:
    write_csv(tmp_path / "in", trips(range(1, 6)))
    first = tmp_path / "lake" / "first"
    assert run(spark, job(tmp_path / "in", first, fmt="parquet"), tmp_path / "state.db").ok
    # an uncommitted file (a killed run's leftover) must not be read
    day = next(p for p in first.iterdir() if p.name.startswith("day="))
    leftover = day / "part-99998-orphan.c000.snappy.parquet"
    leftover.write_bytes(next(day.glob("part-0*.parquet")).read_bytes())
    assert spark.read.parquet(str(first)).count() == 10  # a plain reader sees the orphan ...
    cfg = JobConfig.model_validate({
        "job": "rt_second",
        "sources": {"t": {"format": "parquet", "path": str(first)}},
        "transform": [{"select": ["trip_id", "day", "fare * 2 AS fare2"]}],
        "target": {"format": "delta", "path": str(tmp_path / "lake" / "second"), "partition_by": ["day"]},
    })
    r = run(spark, cfg, tmp_path / "state.db")
    assert r.ok, r.error
    rows = delta_rows(tmp_path / "lake" / "second")  # ... the framework reads the manifest's files only
    assert [x["trip_id"] for x in rows] == [1, 2, 3, 4, 5] and str(rows[0]["day"]) == "2024-01-01"
    assert r.metrics["extract"]["sources"]["t"]["files"] == len(
        json.loads((first / "_etl_manifest.json").read_text())["files"])
    assert len(parquet_rows(first)) == 5


def test_delta_source_and_exact_file_lists(spark: Any, tmp_path: Path) -> None:
    write_csv(tmp_path / "in", trips(range(1, 4)), name="a.csv")
    write_csv(tmp_path / "in", trips(range(4, 6)), name="b.csv")
    table = tmp_path / "lake" / "t"
    # read only b.csv, as a bookmark would after a.csv was processed
    r = run(spark, job(tmp_path / "in", table, partition_by=[]), tmp_path / "state.db",
            prepare=lambda st: st.source_paths.update(trips=[str(tmp_path / "in" / "b.csv")]))
    assert r.ok, r.error
    assert [x["trip_id"] for x in delta_rows(table)] == [4, 5]
    assert r.metrics["extract"]["sources"]["trips"]["files"] == 1
    cfg = JobConfig.model_validate({
        "job": "rt_delta_src",
        "sources": {"d": {"format": "delta", "path": str(table), "schema": {"trip_id": "long", "fare": "double"}}},
        "target": {"format": "parquet", "path": str(tmp_path / "lake" / "copy")},
    })
    r = run(spark, cfg, tmp_path / "state.db")
    assert r.ok, r.error
    assert [(x["trip_id"], x["fare"]) for x in parquet_rows(tmp_path / "lake" / "copy")] == [(4, 14.0), (5, 15.0)]
    cfg = JobConfig.model_validate({
        "job": "rt_not_delta", "sources": {"d": {"format": "delta", "path": str(tmp_path / "in")}},
        "target": {"format": "parquet", "path": str(tmp_path / "lake" / "copy2")},
    })
    r = run(spark, cfg, tmp_path / "state.db")
    assert r.exit_code == 1 and r.error_stage == "extract" and "is not a Delta table" in r.error
