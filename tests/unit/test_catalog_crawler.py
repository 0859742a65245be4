"""Crawlers (pure Python): Glue semantics over real files, a real SQLite catalog and state file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from etl_framework.catalog.crawler import run_crawler
from etl_framework.catalog.local import LocalCatalog
from etl_framework.state.crawlers import SqliteCrawlerStore


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def cat(tmp_path: Path) -> LocalCatalog:
    c = LocalCatalog(tmp_path / "catalog.db")
    yield c
    c.close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def trips(root: Path) -> Path:
    base = root / "raw" / "trips"
    write(base / "dt=2024-01-01" / "region=eu" / "part-0.csv",
          "trip_id,fare,pickup_ts,vendor\n1,10.5,2024-01-01 10:00:00,a\n2,3,2024-01-01 11:00:00,b\n")
    write(base / "dt=2024-01-02" / "region=us" / "part-0.csv",
          "trip_id,fare,pickup_ts,vendor\n3,7,2024-01-02 09:30:00,a\n")
    write(base / "_SUCCESS", "")
    return base


def snapshot(cat: LocalCatalog) -> tuple:
    tables = [t.to_dict() for t in cat.list_tables()]
    for t in tables:
        t.pop("update_time", None)
    parts = {t["name"]: [p.values for p in cat.get_partitions(t["database"], t["name"])] for t in tables}
    return json.dumps(tables, sort_keys=True), parts


def test_hive_partitioned_csv_discovers_columns_keys_and_partitions(tmp_path, cat, state):
    base = trips(tmp_path)
    res = run_crawler(cat, state, "raw_trips", str(base) + "/", "raw")
    assert res.state == "SUCCEEDED", res.message
    t = cat.get_table("raw", "trips")  # table named after the folder, as Glue does
    assert t is not None
    assert [(c.name, c.type) for c in t.columns] == [
        ("trip_id", "bigint"), ("fare", "double"), ("pickup_ts", "timestamp"), ("vendor", "string")]
    assert [(k.name, k.type) for k in t.partition_keys] == [("dt", "date"), ("region", "string")]
    assert t.classification == "csv" and t.parameters["skip.header.line.count"] == "1"
    assert t.location == str(base)
    parts = cat.get_partitions("raw", "trips")
    assert [p.values for p in parts] == [["2024-01-01", "eu"], ["2024-01-02", "us"]]
    assert parts[0].location == f"{base}/dt=2024-01-01/region=eu/"
    kinds = [c["change"] for c in res.changes]
    assert "table_created" in kinds and "partitions_added" in kinds
    runs = SqliteCrawlerStore(state).runs("raw_trips")
    assert runs[0]["state"] == "SUCCEEDED" and runs[0]["stats"]["files_read"] == 2


def test_recrawl_reads_only_the_new_partition(tmp_path, cat, state):
    base = trips(tmp_path)
    assert run_crawler(cat, state, "c", str(base), "raw").ok
    write(base / "dt=2024-01-03" / "region=eu" / "part-0.csv", "trip_id,fare,pickup_ts,vendor\n9,1,2024-01-03 08:00:00,c\n")
    res = run_crawler(cat, state, "c", str(base), "raw")
    assert res.state == "SUCCEEDED"
    assert res.stats["files_read"] == 1
    assert res.stats["partitions_added"] == 1
    assert next(c for c in res.changes if c["change"] == "partitions_added")["values"] == [["2024-01-03", "eu"]]
    assert len(cat.get_partitions("raw", "trips")) == 3
    again = run_crawler(cat, state, "c", str(base), "raw")
    assert again.ok and again.stats["files_read"] == 0 and "no new files" in again.message


def _changed_schema(base: Path) -> None:
    # a new partition whose files have a new column and a widened type (trip_id now fractional)
    write(base / "dt=2024-01-04" / "region=eu" / "part-0.csv",
          "trip_id,fare,pickup_ts,vendor,tip\n4.5,2,2024-01-04 08:00:00,a,0.5\n")


def test_schema_change_log_keeps_table_and_records_change(tmp_path, cat, state):
    base = trips(tmp_path)
    run_crawler(cat, state, "c", str(base), "raw", schema_change="log")
    before = cat.get_table("raw", "trips")
    _changed_schema(base)
    res = run_crawler(cat, state, "c", str(base), "raw", schema_change="log")
    assert res.state == "SUCCEEDED"
    after = cat.get_table("raw", "trips")
    assert after.columns == before.columns
    changes = {(c["change"], c["column"]): c for c in res.changes if "column" in c}
    assert changes[("column_added", "tip")]["applied"] is False
    assert changes[("type_changed", "trip_id")]["new_type"] == "double"
    assert len(cat.get_partitions("raw", "trips")) == 3  # the new partition is still added, as Glue's LOG does
    assert SqliteCrawlerStore(state).runs("c")[0]["changes"] == res.changes


def test_schema_change_update_updates_table(tmp_path, cat, state):
    base = trips(tmp_path)
    run_crawler(cat, state, "c", str(base), "raw", schema_change="update")
    _changed_schema(base)
    res = run_crawler(cat, state, "c", str(base), "raw", schema_change="update")
    assert res.state == "SUCCEEDED"
    t = cat.get_table("raw", "trips")
    types = {c.name: c.type for c in t.columns}
    assert types["tip"] == "double" and types["trip_id"] == "double"
    assert all(c["applied"] for c in res.changes if "column" in c)


def test_schema_change_fail_fails_and_leaves_catalog(tmp_path, cat, state):
    base = trips(tmp_path)
    run_crawler(cat, state, "c", str(base), "raw", schema_change="fail")
    before = snapshot(cat)
    _changed_schema(base)
    res = run_crawler(cat, state, "c", str(base), "raw", schema_change="fail")
    assert res.state == "FAILED"
    assert "new column tip" in res.message and "schema_change" in res.message
    assert snapshot(cat) == before
    assert SqliteCrawlerStore(state).runs("c")[0]["state"] == "FAILED"
    # the failed crawl did not mark the new files as read: switching to update picks them up
    assert run_crawler(cat, state, "c", str(base), "raw", schema_change="update").stats["files_read"] == 1


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda b: None, "does not exist"),
        (lambda b: b.mkdir(parents=True), "holds no data files"),
        (lambda b: (write(b / "a.csv", "x,y\nfoo,1\n"), write(b / "b.json", '{"x": 1}\n')), "mixed formats"),
        (lambda b: write(b / "a.csv", "1,2.5,abc\n2,3.5,def\n"), "no header row"),
        (lambda b: write(b / "2024" / "a.csv", "x,y\nfoo,1\n"), "not a Hive partition folder"),
        (lambda b: (write(b / "dt=2024-01-01" / "a.csv", "x\n1\n"), write(b / "dt=latest" / "a.csv", "x\n2\n")),
         "conflicting types"),
    ],
    ids=["missing", "empty", "mixed", "no-header", "not-key-value", "partition-types"],
)
def test_bad_input_fails_clearly_and_leaves_catalog(tmp_path, cat, state, setup, expected):
    run_crawler(cat, state, "ok", str(trips(tmp_path)), "raw")  # something already in the catalog
    before = snapshot(cat)
    base = tmp_path / "bad" / "data"
    setup(base)
    res = run_crawler(cat, state, "bad", str(base), "raw")
    assert res.state == "FAILED"
    assert expected in res.message
    assert "what to do" in res.message or expected == "does not exist"
    assert snapshot(cat) == before


def test_json_and_parquet_types_widen_across_files(tmp_path, cat, state):
    import pyarrow as pa
    import pyarrow.parquet as pq

    j = tmp_path / "events"
    write(j / "a.json", '{"id": 1, "tags": ["x"], "info": {"k": 1}}\n{"id": 2, "v": 1}\n')
    write(j / "b.json", '{"id": 3, "v": 2.5, "info": {"k": 2, "z": "s"}}\n')
    assert run_crawler(cat, state, "j", str(j), "raw").ok
    t = cat.get_table("raw", "events")
    assert {c.name: c.type for c in t.columns} == {
        "id": "bigint", "tags": "array<string>", "info": "struct<k:bigint,z:string>", "v": "double"}
    p = tmp_path / "pq"
    p.mkdir()
    pq.write_table(pa.table({"a": pa.array([1], pa.int32()), "b": ["x"]}), p / "one.parquet")
    pq.write_table(pa.table({"a": pa.array([2], pa.int64()), "c": [1.5]}), p / "two.parquet")
    assert run_crawler(cat, state, "p", str(p), "raw").ok
    t = cat.get_table("raw", "pq")
    assert {c.name: c.type for c in t.columns} == {"a": "bigint", "b": "string", "c": "double"}
    assert t.input_format.endswith("MapredParquetInputFormat")


def test_delta_folder_is_a_delta_table(tmp_path, cat, state):
    import pyarrow as pa
    from deltalake import write_deltalake

    d = tmp_path / "curated" / "sales"
    write_deltalake(str(d), pa.table({"id": [1, 2], "day": ["2024-01-01", "2024-01-02"]}), partition_by=["day"])
    res = run_crawler(cat, state, "d", str(d), "curated")
    assert res.ok, res.message
    t = cat.get_table("curated", "sales")
    assert t.format == "delta" and t.parameters["table_type"] == "DELTA"
    assert [c.name for c in t.columns] == ["id"] and [k.name for k in t.partition_keys] == ["day"]


def test_cancel_leaves_catalog_and_records_cancelled(tmp_path, cat, state):
    import threading

    ev = threading.Event()
    ev.set()
    res = run_crawler(cat, state, "c", str(trips(tmp_path)), "raw", cancel=ev)
    assert res.state == "CANCELLED"
    assert cat.list_tables() == []
    assert SqliteCrawlerStore(state).runs("c")[0]["state"] == "CANCELLED"
    assert os.path.exists(state)


def test_crawler_pointed_at_another_path_reads_it_all(tmp_path, cat, state):
    base = trips(tmp_path)
    assert run_crawler(cat, state, "c", str(base), "raw", "trips").stats["files_read"] == 2
    other = tmp_path / "copy"
    write(other / "dt=2024-02-01" / "region=eu" / "part-0.csv", "trip_id,fare,pickup_ts,vendor\n7,1,2024-02-01 08:00:00,a\n")
    import shutil

    same = other / "dt=2024-01-01" / "region=eu" / "part-0.csv"  # same relative path, size and mtime
    same.parent.mkdir(parents=True)
    shutil.copy2(base / "dt=2024-01-01" / "region=eu" / "part-0.csv", same)
    res = run_crawler(cat, state, "c", str(other), "raw", "trips")
    assert res.ok and res.stats["files_read"] == 2
