"""`format: catalog` sources with bookmarks, Glue's own pattern (issue 16): a crawler catalogs Hive-partitioned CSV,
a job reads the table with `incremental: {mode: files}` — each run reads only the files of partitions the crawler
added since, `push_down_predicate` prunes partitions before anything is listed, a partition gone from the
catalog is no error, and a table whose location changed asks for `etl bookmarks reset`. Rows are checked with
delta-rs (independent of Spark)."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

from etl_framework.catalog.crawler import run_crawler
from etl_framework.catalog.local import LocalCatalog
from etl_framework.config.project import Project
from etl_framework.engine.job import run_job
from tests.spark.test_runtime_helpers import delta_rows

JOB = """
job: flights_inc
sources:
  flights:
    format: catalog
    table: raw.flights
    options: {nullValue: NA}
    push_down_predicate: "year = 2013"
    incremental: {mode: files}
target: {format: delta, path: ../data/lake/flights, mode: append}
"""


def land(raw: Path, year: int, month: int, ids: range) -> None:
    folder = raw / f"year={year}" / f"month={month}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-0.csv").write_text("flight_id,carrier,delay\n" + "".join(
        f"{i},{'AA' if i % 2 else 'UA'},{'NA' if i % 5 == 0 else i % 40}\n" for i in ids))


def crawl(proj: Path, raw: Path) -> None:
    cat = LocalCatalog(proj / ".etl" / "catalog.db")
    try:
        r = run_crawler(cat, proj / ".etl" / "state.db", "raw_flights", str(raw), "raw", "flights",
                        schema_change="update")
    finally:
        cat.close()
    assert r.state == "SUCCEEDED", r


def go(proj: Path, spark: Any) -> Any:
    r = run_job(proj / "jobs" / "flights.yaml", project=Project(proj), spark=spark, quiet=True)
    assert r.ok, (r.error, r.hint)
    return r


def test_catalog_files_bookmark_reads_each_new_partition_once(tmp_path: Path, spark: Any) -> None:
    proj = tmp_path / "proj"
    (proj / "conf").mkdir(parents=True)
    (proj / "jobs").mkdir()
    (proj / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\n"
                                              "catalog: {backend: local, path: ../.etl/catalog.db}\n")
    (proj / "jobs" / "flights.yaml").write_text(JOB)
    (proj / ".etl").mkdir()
    raw = proj / "data" / "raw" / "flights"
    lake = proj / "data" / "lake" / "flights"
    land(raw, 2012, 12, range(900, 905))  # outside the predicate: never listed, never read
    land(raw, 2013, 1, range(10))
    land(raw, 2013, 2, range(10, 20))
    crawl(proj, raw)

    first = go(proj, spark)
    cat = first.metrics["extract"]["catalog"]["flights"]
    assert cat["partitions_listed"] == ["year=2013/month=1", "year=2013/month=2"]  # the listing, pruned first
    rows = delta_rows(lake, order="flight_id")
    assert [r["flight_id"] for r in rows] == list(range(20))
    # partition columns as a whole-table read gives them; reader options applied (NA -> NULL)
    assert {(r["year"], r["month"]) for r in rows} == {(2013, 1), (2013, 2)}
    assert rows[0]["delay"] is None and str(rows[1]["delay"]) == "1"

    # a new month lands, the crawler adds its partition: the next run reads exactly that month
    land(raw, 2013, 3, range(20, 26))
    crawl(proj, raw)
    second = go(proj, spark)
    assert second.metrics["extract"]["catalog"]["flights"]["new_files"] == 1
    assert [r["flight_id"] for r in delta_rows(lake, order="flight_id")] == list(range(26))

    # a partition removed from the catalog (Glue's BatchDeletePartition) is no error; nothing is read twice
    with sqlite3.connect(proj / ".etl" / "catalog.db") as db:
        db.execute("DELETE FROM catalog_partitions WHERE vals LIKE '%\"1\"%'")
    third = go(proj, spark)
    assert third.metrics["extract"]["catalog"]["flights"]["partitions_listed"] == [
        "year=2013/month=2", "year=2013/month=3"]
    assert [r["flight_id"] for r in delta_rows(lake, order="flight_id")] == list(range(26))

    # the table moved: the run stops before reading and asks for a bookmark reset
    c = LocalCatalog(proj / ".etl" / "catalog.db")
    t = c.get_table("raw", "flights")
    assert t is not None
    c.update_table(dataclasses.replace(t, location=str(tmp_path / "elsewhere")))
    c.close()
    moved = run_job(proj / "jobs" / "flights.yaml", project=Project(proj), spark=spark, quiet=True)
    assert moved.exit_code == 1 and "location of raw.flights changed" in moved.error
    assert "etl bookmarks reset flights_inc" in moved.hint
    assert [r["flight_id"] for r in delta_rows(lake, order="flight_id")] == list(range(26))


WATERMARK_JOB = """
job: flights_wm
sources:
  flights:
    format: catalog
    table: raw.flights
    push_down_predicate: "year = 2013 AND month >= 2"
    incremental: {mode: watermark, column: flight_id}
target: {format: delta, path: ../data/lake/flights_wm, mode: append}
"""


def test_catalog_watermark_applies_the_predicate_first(tmp_path: Path, spark: Any) -> None:
    proj = tmp_path / "proj"
    (proj / "conf").mkdir(parents=True)
    (proj / "jobs").mkdir()
    (proj / ".etl").mkdir()
    (proj / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\n"
                                              "catalog: {backend: local, path: ../.etl/catalog.db}\n")
    (proj / "jobs" / "flights.yaml").write_text(WATERMARK_JOB)
    raw = proj / "data" / "raw" / "flights"
    land(raw, 2013, 1, range(10))
    land(raw, 2013, 2, range(10, 20))
    crawl(proj, raw)
    go(proj, spark)
    land(raw, 2013, 3, range(20, 25))
    crawl(proj, raw)
    r = go(proj, spark)
    assert r.metrics["extract"]["watermarks"]["flights"]["before"] == 19
    assert [x["flight_id"] for x in delta_rows(proj / "data" / "lake" / "flights_wm", order="flight_id")] == list(
        range(10, 25))
